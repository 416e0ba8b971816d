"""deephash_ext: learned binary hashing and exact Hamming search.

The public API lives here; ``_core`` (compiled) is private. Importing this package never
imports torch and never warns.
"""

from __future__ import annotations

from ._core import __version__
from ._runtime import (
    available_simd_levels,
    build_info,
    get_num_threads,
    set_num_threads,
    set_simd_level,
    simd_level,
)
from ._search import range_search, search
from .codes import binarize, code_bytes, pack_bits, unpack_bits

__all__ = [
    "__version__",
    "available_simd_levels",
    "binarize",
    "build_info",
    "code_bytes",
    "get_num_threads",
    "pack_bits",
    "range_search",
    "search",
    "set_num_threads",
    "set_simd_level",
    "simd_level",
    "unpack_bits",
]
