"""Stubs of deephash_ext._core, the compiled CPU core (private; use the package API).

Arrays cross the boundary with exact dtypes: codes uint8 (n, code_bytes) with contiguous
rows, descriptors and model parameters float32 C-contiguous. Integer arguments accept any
integer (NumPy integers too, never bool) and raise TypeError/ValueError naming themselves.
"""

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from . import _testing as _testing

__version__: Final[str]
max_threads: Final[int]
"""The largest thread count set_num_threads accepts."""

# ---- codes
def pack_threshold(X: NDArray[np.float32], thresholds: NDArray[np.float32]) -> NDArray[np.uint8]:
    """Packed codes with bit j = X[:, j] > thresholds[j]."""

# ---- search
def knn_hamming(
    codes: NDArray[np.uint8],
    queries: NDArray[np.uint8],
    k: int | np.integer,
    removed: NDArray[np.uint64] | None = None,
) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
    """(distances, indices), each (nq, k), sorted by (distance, index); rows whose bit is
    set in ``removed`` (bit i % 64 of word i // 64) are never returned."""

def range_hamming(
    codes: NDArray[np.uint8],
    queries: NDArray[np.uint8],
    max_distance: int | np.integer,
    removed: NDArray[np.uint64] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.int64]]:
    """(lims, distances, indices) of every live code within max_distance (inclusive)."""

max_merge_distance: Final[int]
"""The largest distance merge_topk accepts."""

def merge_topk(
    distances: list[NDArray[np.int32]],
    payloads: list[NDArray[np.int64]] | list[NDArray[np.uint64]],
    k: int | np.integer,
    max_distance: int | np.integer,
) -> tuple[NDArray[np.int32], NDArray[Any]]:
    """Best min(k, total) per row by (distance, part, column) over per-part sorted lists."""

# ---- multi-index hashing (mih.hpp): tables are uint32 arrays held by BinaryIndex
def mih_build(
    codes: NDArray[np.uint8],
    begins: NDArray[np.uint32],
    widths: NDArray[np.uint32],
    bit_order: NDArray[np.uint32] | None = None,
) -> tuple[NDArray[np.uint32], NDArray[np.uint32]]:
    """(offsets, rows) of the tables of every row of codes."""

def mih_knn(
    codes: NDArray[np.uint8],
    queries: NDArray[np.uint8],
    k: int | np.integer,
    begins: NDArray[np.uint32],
    widths: NDArray[np.uint32],
    offsets: NDArray[np.uint32],
    rows: NDArray[np.uint32],
    n_indexed: int | np.integer,
    max_work: int | np.integer,
    removed: NDArray[np.uint64] | None = None,
    bit_order: NDArray[np.uint32] | None = None,
    max_ns: int | np.integer = 0,
) -> tuple[NDArray[np.int32], NDArray[np.int64], NDArray[np.uint8]]:
    """(distances, indices, fallback) over the first n_indexed live rows; fallback marks
    the queries that exceeded max_work or ran over max_ns (0: no time limit); their rows
    of the outputs are unset."""

def mih_range(
    codes: NDArray[np.uint8],
    queries: NDArray[np.uint8],
    max_distance: int | np.integer,
    begins: NDArray[np.uint32],
    widths: NDArray[np.uint32],
    offsets: NDArray[np.uint32],
    rows: NDArray[np.uint32],
    n_indexed: int | np.integer,
    max_work: int | np.integer,
    removed: NDArray[np.uint64] | None = None,
    bit_order: NDArray[np.uint32] | None = None,
    max_ns: int | np.integer = 0,
) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.int64], NDArray[np.uint8]]:
    """(lims, distances, indices, fallback); a fallback query has no results."""

class MihSearcher:
    """A whole search through MIH tables per call (mih.hpp MihSearcher): MIH over the
    first n_indexed rows (a multiple of 64) within the budget, the flat scan of the queries
    that give up or are skipped (adaptive), the scan of the later rows, merged: results
    equal knn_hamming / range_hamming over every live row of codes. Keeps the arrays alive."""

    def __init__(
        self,
        begins: NDArray[np.uint32],
        widths: NDArray[np.uint32],
        offsets: NDArray[np.uint32],
        rows: NDArray[np.uint32],
        n_indexed: int | np.integer,
        bit_order: NDArray[np.uint32] | None,
        code_bytes: int | np.integer,
    ) -> None: ...
    def knn(
        self,
        codes: NDArray[np.uint8],
        queries: NDArray[np.uint8],
        k: int | np.integer,
        removed: NDArray[np.uint64] | None,
        max_work: int | np.integer,
        max_ns: int | np.integer,
        adaptive: bool,
    ) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        """(distances, indices) of the k nearest live rows of codes."""
    def range(
        self,
        codes: NDArray[np.uint8],
        queries: NDArray[np.uint8],
        max_distance: int | np.integer,
        removed: NDArray[np.uint64] | None,
        max_work: int | np.integer,
        max_ns: int | np.integer,
        max_radius: int | np.integer,
        adaptive: bool,
    ) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.int64]]:
        """(lims, distances, indices); radii above max_radius (-1: none) are scanned."""
    def counts(self) -> tuple[int, int, int]:
        """Queries answered so far: (by the tables, gave up then scanned, scanned untried)."""

# ---- build and runtime information
def simd_level() -> str: ...
def detected_simd_level() -> str: ...
def compiled_simd_levels() -> list[str]: ...
def available_simd_levels() -> list[str]: ...
def set_simd_level(level: str) -> None: ...
def num_threads() -> int: ...
def set_num_threads(n: int | np.integer) -> None: ...
def set_calling_thread_num_threads(n: int | np.integer) -> int:
    """Override for kernels called from this thread (0: none); returns the previous one."""

def available_cpus() -> int: ...
def compiler() -> str: ...

# ---- BLAS and the RBM kernels
def load_blas(path: str) -> None: ...
def blas_library() -> str: ...
def rbm_cd_train(
    components: NDArray[np.float32],
    hidden_bias: NDArray[np.float32],
    visible_bias: NDArray[np.float32],
    components_velocity: NDArray[np.float32],
    hidden_velocity: NDArray[np.float32],
    visible_velocity: NDArray[np.float32],
    V: NDArray[np.float32],
    order: NDArray[np.int64],
    *,
    batch_size: int | np.integer,
    learning_rate: float | np.floating,
    momentum: float | np.floating,
    weight_decay: float | np.floating,
    hashing_reg: float | np.floating,
    cd_k: int | np.integer,
    seed: int | np.integer,
    first_step: int | np.integer,
    gaussian_visible: bool | np.bool_ = False,
) -> None:
    """CD-k training in place on the first six arrays."""

def rbm_hidden_probabilities(
    components: NDArray[np.float32], hidden_bias: NDArray[np.float32] | None, V: NDArray[np.float32]
) -> NDArray[np.float32]: ...
def rbm_visible_probabilities(
    components: NDArray[np.float32],
    visible_bias: NDArray[np.float32] | None,
    H: NDArray[np.float32],
    *,
    gaussian: bool | np.bool_ = False,
) -> NDArray[np.float32]: ...
def mean_projection(
    X: NDArray[np.float32],
    input_thresholds: NDArray[np.float32] | None,
    weights: NDArray[np.float32],
) -> NDArray[np.float32]: ...
def encode_layers(
    X: NDArray[np.float32],
    input_thresholds: NDArray[np.float32] | None,
    weights: Sequence[NDArray[np.float32]],
    offsets: Sequence[NDArray[np.float32]],
) -> NDArray[np.uint8]: ...
