"""Shared fixtures: SIMD level and thread count (always restored), and seeded RNGs."""

from __future__ import annotations

import zlib

import deephash_ext
import numpy as np
import pytest
from hypothesis import settings

# Deterministic property tests: no example database, no time-based seeds, no deadline
# (the first call of a test may pay for page faults or thread start-up).
settings.register_profile(
    "deephash", database=None, derandomize=True, deadline=None, print_blob=True
)
settings.load_profile("deephash")

SIMD_LEVELS = deephash_ext.available_simd_levels()


def pytest_configure(config: pytest.Config) -> None:
    # When a property test fails, Hypothesis imports libcst (to write a patch file), which
    # triggers a third-party DeprecationWarning from mypy_extensions; with
    # filterwarnings=error that turns a readable failure report into an INTERNALERROR.
    config.addinivalue_line(
        "filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
    )


@pytest.fixture(params=SIMD_LEVELS)
def simd_level(request: pytest.FixtureRequest):
    """Runs the test once per SIMD level this CPU can run; restores the previous level."""
    previous = deephash_ext.simd_level()
    deephash_ext.set_simd_level(request.param)
    assert deephash_ext.simd_level() == request.param
    try:
        yield request.param
    finally:
        deephash_ext.set_simd_level(previous)


@pytest.fixture
def restore_num_threads():
    """Lets a test call set_num_threads freely; the previous count is restored afterwards."""
    previous = deephash_ext.get_num_threads()
    try:
        yield previous
    finally:
        deephash_ext.set_num_threads(previous)


@pytest.fixture(params=[1, 2], ids=lambda t: f"threads{t}")
def num_threads(request: pytest.FixtureRequest, restore_num_threads):
    """Runs the test with 1 and with 2 kernel threads (restored afterwards)."""
    deephash_ext.set_num_threads(request.param)
    return request.param


@pytest.fixture(autouse=True)
def _no_leaked_runtime_state():
    """Safety net: a test that changes the SIMD level or thread count must restore it."""
    level, threads = deephash_ext.simd_level(), deephash_ext.get_num_threads()
    yield
    leaked = (deephash_ext.simd_level(), deephash_ext.get_num_threads())
    deephash_ext.set_simd_level(level)
    deephash_ext.set_num_threads(threads)
    assert leaked == (level, threads), "test changed the SIMD level or thread count"


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A generator with a fixed seed per test (derived from the test id, never the time)."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
