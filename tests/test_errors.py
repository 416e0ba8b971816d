"""Every documented error: exception type, and a message that names the parameter.

Also: a failed call leaves its inputs unmodified, and codes are never cast.
"""

from __future__ import annotations

import deephash_ext
import numpy as np
import pytest
from deephash_ext import (
    binarize,
    pack_bits,
    range_search,
    search,
    set_num_threads,
    set_simd_level,
    unpack_bits,
)

RNG = np.random.default_rng(20240607)
CODES = RNG.integers(0, 256, size=(10, 4), dtype=np.uint8)
QUERIES = RNG.integers(0, 256, size=(3, 4), dtype=np.uint8)
BITS = RNG.integers(0, 2, size=(3, 16)).astype(np.uint8)
X = RNG.standard_normal((3, 16)).astype(np.float32)


def _c(exc, match, fn, id_):
    return pytest.param(exc, match, fn, id=id_)


SEARCH_CASES = [
    # codes: dtype (never cast), shape
    _c(TypeError, "codes", lambda: search(CODES.astype(np.int8), QUERIES, 1), "codes-int8"),
    _c(TypeError, "codes", lambda: search(CODES.astype(np.uint16), QUERIES, 1), "codes-uint16"),
    _c(TypeError, "codes", lambda: search(CODES.astype(np.int64), QUERIES, 1), "codes-int64"),
    _c(TypeError, "codes", lambda: search(CODES.astype(bool), QUERIES, 1), "codes-bool"),
    _c(TypeError, "codes", lambda: search(CODES.astype(np.float32), QUERIES, 1), "codes-float"),
    _c(TypeError, "codes", lambda: search(CODES.tolist(), QUERIES, 1), "codes-list"),
    _c(TypeError, "codes", lambda: search(CODES.view(np.int8), QUERIES, 1), "codes-int8-view"),
    _c(ValueError, "codes", lambda: search(CODES[0], QUERIES, 1), "codes-1d"),
    _c(ValueError, "codes", lambda: search(CODES[None], QUERIES, 1), "codes-3d"),
    _c(ValueError, "codes", lambda: search(np.uint8(3), QUERIES, 1), "codes-0d"),
    _c(ValueError, "codes", lambda: search(CODES[:, :0], QUERIES[:, :0], 1), "codes-0-cols"),
    # queries
    _c(TypeError, "queries", lambda: search(CODES, QUERIES.astype(np.int8), 1), "q-int8"),
    _c(TypeError, "queries", lambda: search(CODES, QUERIES.astype(np.float64), 1), "q-float"),
    _c(TypeError, "queries", lambda: search(CODES, QUERIES.tolist(), 1), "q-list"),
    _c(ValueError, "queries", lambda: search(CODES, QUERIES[:, :3], 1), "q-narrow"),
    _c(ValueError, "queries", lambda: search(CODES, np.zeros((3, 5), np.uint8), 1), "q-wide"),
    _c(ValueError, "queries", lambda: search(CODES, QUERIES[0, :2], 1), "q-1d-narrow"),
    _c(ValueError, "queries", lambda: search(CODES, QUERIES[None], 1), "q-3d"),
    _c(ValueError, "queries", lambda: search(CODES, np.uint8(1), 1), "q-0d"),
    # k
    _c(TypeError, r"\bk\b", lambda: search(CODES, QUERIES, 1.0), "k-float"),
    _c(TypeError, r"\bk\b", lambda: search(CODES, QUERIES, 2.5), "k-float2"),
    _c(TypeError, r"\bk\b", lambda: search(CODES, QUERIES, True), "k-bool"),
    _c(TypeError, r"\bk\b", lambda: search(CODES, QUERIES, np.bool_(True)), "k-np-bool"),
    _c(TypeError, r"\bk\b", lambda: search(CODES, QUERIES, "3"), "k-str"),
    _c(TypeError, r"\bk\b", lambda: search(CODES, QUERIES, None), "k-none"),
    _c(TypeError, r"\bk\b", lambda: search(CODES, QUERIES, np.float64(3)), "k-np-float"),
    _c(ValueError, r"\bk\b", lambda: search(CODES, QUERIES, 0), "k-0"),
    _c(ValueError, r"\bk\b", lambda: search(CODES, QUERIES, -1), "k-negative"),
    _c(ValueError, r"\bk\b", lambda: search(CODES, QUERIES, 11), "k-n+1"),
    _c(ValueError, r"\bk\b", lambda: search(CODES, QUERIES, np.int64(11)), "k-np-n+1"),
    _c(ValueError, r"\bk\b", lambda: search(CODES, QUERIES, 2**70), "k-huge"),
    _c(ValueError, r"\bk\b", lambda: search(CODES[:0], QUERIES, 1), "k-empty-db"),
]

RANGE_CASES = [
    _c(TypeError, "codes", lambda: range_search(CODES.astype(np.int16), QUERIES, 1), "codes-int16"),
    _c(TypeError, "codes", lambda: range_search(CODES.tolist(), QUERIES, 1), "codes-list"),
    _c(ValueError, "codes", lambda: range_search(CODES[0], QUERIES, 1), "codes-1d"),
    _c(ValueError, "codes", lambda: range_search(CODES[None], QUERIES, 1), "codes-3d"),
    _c(ValueError, "codes", lambda: range_search(CODES[:, :0], QUERIES[:, :0], 1), "codes-0-cols"),
    _c(TypeError, "queries", lambda: range_search(CODES, QUERIES.astype(np.int32), 1), "q-int32"),
    _c(ValueError, "queries", lambda: range_search(CODES, QUERIES[:, 1:], 1), "q-narrow"),
    _c(ValueError, "queries", lambda: range_search(CODES, QUERIES[None], 1), "q-3d"),
    _c(TypeError, "max_distance", lambda: range_search(CODES, QUERIES, 1.0), "r-float"),
    _c(TypeError, "max_distance", lambda: range_search(CODES, QUERIES, True), "r-bool"),
    _c(TypeError, "max_distance", lambda: range_search(CODES, QUERIES, "2"), "r-str"),
    _c(TypeError, "max_distance", lambda: range_search(CODES, QUERIES, None), "r-none"),
    _c(ValueError, "max_distance", lambda: range_search(CODES, QUERIES, -1), "r-negative"),
    _c(ValueError, "max_distance", lambda: range_search(CODES, QUERIES, np.int8(-5)), "r-np-neg"),
]

CODES_CASES = [
    # pack_bits
    _c(TypeError, "bits", lambda: pack_bits(BITS.astype(np.float32)), "pack-float32"),
    _c(TypeError, "bits", lambda: pack_bits(BITS.astype(np.float64)), "pack-float64"),
    _c(TypeError, "bits", lambda: pack_bits(BITS.astype(np.complex64)), "pack-complex"),
    _c(TypeError, "bits", lambda: pack_bits(BITS.astype(object)), "pack-object"),
    _c(TypeError, "bits", lambda: pack_bits(BITS.astype(str)), "pack-str"),
    _c(TypeError, "bits", lambda: pack_bits([[0.0] * 8]), "pack-float-list"),
    _c(ValueError, "bits", lambda: pack_bits(BITS[:, :12]), "pack-width-12"),
    _c(ValueError, "bits", lambda: pack_bits(BITS[:, :7]), "pack-width-7"),
    _c(ValueError, "bits", lambda: pack_bits(BITS[:, :0]), "pack-width-0"),
    _c(ValueError, "bits", lambda: pack_bits(np.zeros(0, dtype=np.uint8)), "pack-1d-empty"),
    _c(ValueError, "bits", lambda: pack_bits(BITS * 2), "pack-value-2"),
    _c(ValueError, "bits", lambda: pack_bits(BITS.astype(np.int8) - 1), "pack-value-neg"),
    _c(ValueError, "bits", lambda: pack_bits(np.full((1, 8), 255, np.uint8)), "pack-value-255"),
    _c(ValueError, "bits", lambda: pack_bits(BITS[None]), "pack-3d"),
    _c(ValueError, "bits", lambda: pack_bits(np.int64(1)), "pack-0d"),
    # unpack_bits
    _c(TypeError, "codes", lambda: unpack_bits(CODES.astype(np.int8)), "unpack-int8"),
    _c(TypeError, "codes", lambda: unpack_bits(CODES.astype(np.int64)), "unpack-int64"),
    _c(TypeError, "codes", lambda: unpack_bits(CODES.astype(bool)), "unpack-bool"),
    _c(TypeError, "codes", lambda: unpack_bits(CODES.tolist()), "unpack-list"),
    _c(TypeError, "n_bits", lambda: unpack_bits(CODES, 8.0), "unpack-nbits-float"),
    _c(TypeError, "n_bits", lambda: unpack_bits(CODES, True), "unpack-nbits-bool"),
    _c(TypeError, "n_bits", lambda: unpack_bits(CODES, "8"), "unpack-nbits-str"),
    _c(ValueError, "n_bits", lambda: unpack_bits(CODES, 0), "unpack-nbits-0"),
    _c(ValueError, "n_bits", lambda: unpack_bits(CODES, -8), "unpack-nbits-neg"),
    _c(ValueError, "n_bits", lambda: unpack_bits(CODES, 33), "unpack-nbits-too-many"),
    _c(ValueError, "n_bits", lambda: unpack_bits(CODES[0], 33), "unpack-1d-nbits-too-many"),
    _c(ValueError, "codes", lambda: unpack_bits(CODES[None]), "unpack-3d"),
    _c(ValueError, "codes", lambda: unpack_bits(np.uint8(3)), "unpack-0d"),
    # binarize
    _c(TypeError, r"\bX\b", lambda: binarize(X.astype(np.complex64)), "bin-complex"),
    _c(TypeError, r"\bX\b", lambda: binarize(X.astype(object)), "bin-object"),
    _c(TypeError, r"\bX\b", lambda: binarize(X.astype(str)), "bin-str"),
    _c(TypeError, "thresholds", lambda: binarize(X, 1j), "bin-t-complex"),
    _c(TypeError, "thresholds", lambda: binarize(X, np.zeros(16, complex)), "bin-t-complex-v"),
    _c(TypeError, "thresholds", lambda: binarize(X, "0"), "bin-t-str"),
    _c(TypeError, "thresholds", lambda: binarize(X, None), "bin-t-none"),
    _c(ValueError, r"\bX\b", lambda: binarize(X[:, :12]), "bin-width-12"),
    _c(ValueError, r"\bX\b", lambda: binarize(X[:, :0]), "bin-width-0"),
    _c(ValueError, r"\bX\b", lambda: binarize(X[0, :5]), "bin-1d-width-5"),
    _c(ValueError, r"\bX\b", lambda: binarize(X[None]), "bin-3d"),
    _c(ValueError, r"\bX\b", lambda: binarize(np.float32(1)), "bin-0d"),
    _c(ValueError, r"\bX\b", lambda: binarize(np.where(np.eye(3, 16) > 0, np.nan, X)), "bin-nan"),
    _c(ValueError, r"\bX\b", lambda: binarize(np.full(8, np.nan)), "bin-nan-1d"),
    _c(ValueError, "thresholds", lambda: binarize(X, np.nan), "bin-t-nan"),
    _c(ValueError, "thresholds", lambda: binarize(X, np.r_[np.zeros(15), np.nan]), "bin-t-nan-v"),
    _c(ValueError, "thresholds", lambda: binarize(X, np.zeros(8)), "bin-t-short"),
    _c(ValueError, "thresholds", lambda: binarize(X, np.zeros(17)), "bin-t-long"),
    _c(ValueError, "thresholds", lambda: binarize(X, np.zeros((1, 16))), "bin-t-2d"),
    _c(ValueError, "thresholds", lambda: binarize(X, np.zeros((3, 16))), "bin-t-per-row"),
]

RUNTIME_CASES = [
    _c(TypeError, r"\bn\b", lambda: set_num_threads(2.0), "threads-float"),
    _c(TypeError, r"\bn\b", lambda: set_num_threads("2"), "threads-str"),
    _c(TypeError, r"\bn\b", lambda: set_num_threads(True), "threads-bool"),
    _c(TypeError, r"\bn\b", lambda: set_num_threads(None), "threads-none"),
    _c(ValueError, r"\bn\b", lambda: set_num_threads(0), "threads-0"),
    _c(ValueError, r"\bn\b", lambda: set_num_threads(-3), "threads-negative"),
    _c(ValueError, r"\bn\b", lambda: set_num_threads(np.int64(0)), "threads-np-0"),
    _c(TypeError, "level", lambda: set_simd_level(1), "simd-int"),
    _c(TypeError, "level", lambda: set_simd_level(None), "simd-none"),
    _c(TypeError, "level", lambda: set_simd_level(b"avx2"), "simd-bytes"),
    _c(ValueError, "level", lambda: set_simd_level("sse"), "simd-unknown"),
    _c(ValueError, "level", lambda: set_simd_level("AVX2"), "simd-upper"),
    _c(ValueError, "level", lambda: set_simd_level(""), "simd-empty"),
]


@pytest.mark.parametrize("exc, match, fn", SEARCH_CASES + RANGE_CASES + CODES_CASES + RUNTIME_CASES)
def test_documented_error(exc, match, fn):
    with pytest.raises(exc, match=match) as info:
        fn()
    # the exact documented class, not a subclass standing in for the other one
    assert type(info.value) is exc


def test_errors_do_not_change_runtime_state():
    level, threads = deephash_ext.simd_level(), deephash_ext.get_num_threads()
    for fn in (
        lambda: set_num_threads(0),
        lambda: set_num_threads(1.5),
        lambda: set_simd_level("sse"),
        lambda: set_simd_level(3),
    ):
        with pytest.raises((TypeError, ValueError)):
            fn()
    assert (deephash_ext.simd_level(), deephash_ext.get_num_threads()) == (level, threads)


def test_set_simd_level_unavailable_on_this_cpu():
    missing = sorted({"scalar", "avx2", "avx512"} - set(deephash_ext.available_simd_levels()))
    if not missing:
        pytest.skip("this CPU can run every SIMD level")
    before = deephash_ext.simd_level()
    for level in missing:
        with pytest.raises(ValueError, match=level):
            set_simd_level(level)
    assert deephash_ext.simd_level() == before


def test_failed_calls_leave_inputs_unmodified():
    codes = RNG.integers(0, 256, size=(50, 16), dtype=np.uint8)
    queries = RNG.integers(0, 256, size=(4, 16), dtype=np.uint8)
    bad_queries = RNG.integers(0, 256, size=(4, 15), dtype=np.uint8)
    X_nan = RNG.standard_normal((5, 16))
    X_nan[2, 3] = np.nan
    thresholds = RNG.standard_normal(16)
    bits = RNG.integers(0, 3, size=(4, 16))
    saved = [a.copy() for a in (codes, queries, bad_queries, X_nan, thresholds, bits)]

    failing = [
        (ValueError, lambda: search(codes, bad_queries, 3)),
        (ValueError, lambda: search(codes, queries, 51)),
        (TypeError, lambda: search(codes, queries, 2.0)),
        (ValueError, lambda: range_search(codes, bad_queries, 3)),
        (ValueError, lambda: range_search(codes, queries, -1)),
        (ValueError, lambda: binarize(X_nan, thresholds)),
        (ValueError, lambda: binarize(X_nan[:, :8], thresholds)),
        (ValueError, lambda: pack_bits(bits)),
        (ValueError, lambda: unpack_bits(codes, 129)),
    ]
    for exc, fn in failing:
        with pytest.raises(exc):
            fn()
    for before, after in zip(saved, (codes, queries, bad_queries, X_nan, thresholds, bits)):
        np.testing.assert_array_equal(after, before)


def test_failed_calls_on_read_only_inputs():
    codes = CODES.copy()
    codes.flags.writeable = False
    with pytest.raises(ValueError, match=r"\bk\b"):
        search(codes, QUERIES, 0)
    # and a read-only array is accepted when the call is valid
    d, i = search(codes, QUERIES, 2)
    assert d.shape == i.shape == (3, 2)
