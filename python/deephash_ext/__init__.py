"""deephash_ext: learned binary hashing and exact Hamming search.

The public API lives here; ``_core`` (compiled) is private. Importing this package never
imports torch and never warns.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._core import __version__
from ._gpu import cuda_available, cuda_unavailable_reason
from ._runtime import (
    available_simd_levels,
    build_info,
    calling_thread_num_threads,
    get_num_threads,
    set_num_threads,
    set_simd_level,
    simd_level,
)
from ._search import GpuCodes, range_search, search
from .codes import binarize, code_bytes, pack_bits, unpack_bits
from .index import BinaryIndex, GpuBinaryIndex

__all__ = [
    "DLBHC",
    "DRHN",
    "RBM",
    "SSDH",
    "BinaryIndex",
    "DeepHash",
    "GpuBinaryIndex",
    "GpuCodes",
    "__version__",
    "available_simd_levels",
    "binarize",
    "build_info",
    "calling_thread_num_threads",
    "coarse_to_fine_search",
    "code_bytes",
    "cuda_available",
    "cuda_unavailable_reason",
    "get_num_threads",
    "pack_bits",
    "range_search",
    "search",
    "set_num_threads",
    "set_simd_level",
    "simd_level",
    "unpack_bits",
]


if TYPE_CHECKING:
    from . import baselines as baselines
    from . import cli as cli
    from . import dask as dask
    from . import datasets as datasets
    from . import features as features
    from . import metrics as metrics
    from . import selection as selection
    from . import shards as shards
    from .deephash import DeepHash
    from .drhn import DRHN
    from .rbm import RBM
    from .ssdh import DLBHC, SSDH, coarse_to_fine_search


# Loaded on first use (they import scikit-learn), so that `import deephash_ext` and search
# stay light: public names to the module defining them, and the public submodules.
_LAZY_NAMES = {
    "RBM": "rbm",
    "DeepHash": "deephash",
    "DRHN": "drhn",
    "SSDH": "ssdh",
    "DLBHC": "ssdh",
    "coarse_to_fine_search": "ssdh",
}
_LAZY_SUBMODULES = (
    "baselines",
    "cli",
    "dask",
    "datasets",
    "features",
    "metrics",
    "selection",
    "shards",
)


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'deephash_ext' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_NAMES, *_LAZY_SUBMODULES})
