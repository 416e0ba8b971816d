"""deephash_ext: learned binary hashing and exact Hamming search.

The public API lives here; ``_core`` (compiled) is private. Importing this package never
imports torch and never warns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._core import __version__
from ._gpu import cuda_available, cuda_unavailable_reason
from ._runtime import (
    available_simd_levels,
    build_info,
    get_num_threads,
    set_num_threads,
    set_simd_level,
    simd_level,
)
from ._search import GpuCodes, range_search, search
from .codes import binarize, code_bytes, pack_bits, unpack_bits

__all__ = [
    "DLBHC",
    "DRHN",
    "RBM",
    "SSDH",
    "DeepHash",
    "GpuCodes",
    "__version__",
    "available_simd_levels",
    "binarize",
    "build_info",
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
    from .deephash import DeepHash
    from .drhn import DRHN
    from .rbm import RBM
    from .ssdh import DLBHC, SSDH, coarse_to_fine_search


def __getattr__(name: str):
    # The estimators import scikit-learn: load them on first use, so that
    # `import deephash_ext` and search stay light.
    if name == "RBM":
        from .rbm import RBM
        return RBM
    if name == "DeepHash":
        from .deephash import DeepHash
        return DeepHash
    if name == "DRHN":
        from .drhn import DRHN
        return DRHN
    if name in ("SSDH", "DLBHC", "coarse_to_fine_search"):
        from . import ssdh
        return getattr(ssdh, name)
    raise AttributeError(f"module 'deephash_ext' has no attribute {name!r}")
