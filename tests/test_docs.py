"""The Examples sections of the public docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "deephash_ext.codes",
        "deephash_ext._search",
        "deephash_ext.index",
        "deephash_ext.rbm",
        "deephash_ext.metrics",
        "deephash_ext.baselines",
        "deephash_ext.drhn",
        "deephash_ext.ssdh",
        "deephash_ext.features",
        "deephash_ext._runtime",
    ],
)
def test_docstring_examples(module):
    if module in ("deephash_ext.drhn", "deephash_ext.ssdh"):
        pytest.importorskip("torch")
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{module} has no examples"
    assert result.failed == 0
