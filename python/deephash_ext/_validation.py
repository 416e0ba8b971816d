"""Argument checks shared by the public API.

Every check raises a typed exception whose message names the parameter, the expected
value and the value received. Codes are never cast (a non-uint8 array is a TypeError,
because cast and view would mean different things); rows that are not contiguous are
copied once with :func:`numpy.ascontiguousarray`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

__all__ = ["check_codes", "check_float_rows", "check_int", "check_layer_sizes", "check_queries"]


def check_int(value: object, name: str, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """Return ``value`` as a Python int, or raise TypeError / ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    out = int(value)
    if (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
        lo = "-inf" if minimum is None else minimum
        hi = "inf" if maximum is None else maximum
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {out}")
    return out


def check_layer_sizes(value: object, name: str, *, minimum: int = 1, multiple: int = 1,
                      allow_empty: bool = True) -> list[int]:
    """A sequence (or 1-D array) of layer widths as a list of ints, each ``>= minimum`` and a
    multiple of ``multiple``; TypeError / ValueError naming ``name`` otherwise."""
    sizes = value.tolist() if isinstance(value, np.ndarray) and value.ndim == 1 else value
    if isinstance(sizes, (numbers.Integral, str, bytes)) or not isinstance(sizes, Sequence):
        raise TypeError(f"{name} must be a sequence of integers, got {type(sizes).__name__}")
    if not allow_empty and len(sizes) == 0:
        raise ValueError(f"{name} must name at least one layer")
    for size in sizes:
        if isinstance(size, (bool, np.bool_)) or not isinstance(size, numbers.Integral):
            raise TypeError(f"{name} must hold integers, got {size!r}")
        if size < minimum or size % multiple:
            rule = "positive" if multiple == 1 else f"positive multiples of {multiple}"
            raise ValueError(f"{name} must be {rule}, got {tuple(sizes)}")
    return [int(size) for size in sizes]


def _as_code_array(codes: object, name: str) -> np.ndarray:
    array = np.asarray(codes)
    if array.dtype != np.uint8:
        raise TypeError(
            f"{name} must have dtype uint8 (packed codes), got {array.dtype}; codes are never "
            "cast: build them with deephash_ext.pack_bits or deephash_ext.binarize")
    return array


def _row_contiguous(array: np.ndarray) -> np.ndarray:
    """The array itself when its rows are contiguous and its row stride is valid, else a copy."""
    n, width = array.shape
    rows_ok = width <= 1 or array.strides[1] == 1
    stride_ok = n <= 1 or array.strides[0] >= width
    return array if rows_ok and stride_ok else np.ascontiguousarray(array)


def check_codes(codes: object, name: str = "codes") -> np.ndarray:
    """A 2-D uint8 code matrix (n, code_bytes) with contiguous rows."""
    array = _as_code_array(codes, name)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, code_bytes), got shape {array.shape}")
    if array.shape[1] < 1:
        raise ValueError(f"{name} must have at least one byte per code, got shape {array.shape}")
    return _row_contiguous(array)


def check_queries(queries: object) -> tuple[np.ndarray, bool]:
    """Queries as a 2-D code matrix, and whether a single 1-D query was given. Their width
    is checked against the codes by the search kernels."""
    array = _as_code_array(queries, "queries")
    single = array.ndim == 1
    if single:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise ValueError(
            f"queries must be 1-D (code_bytes,) or 2-D (nq, code_bytes), got shape {array.shape}")
    return _row_contiguous(array), single


def check_float_rows(X: object, name: str = "X") -> tuple[np.ndarray, bool]:
    """Descriptors as C-contiguous float32 rows (converted if needed), and whether X was 1-D."""
    array = np.asarray(X)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    single = array.ndim == 1
    if single:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {array.shape}")
    with np.errstate(over="ignore"):  # values beyond float32 become +-inf, as documented
        array = np.ascontiguousarray(array, dtype=np.float32)
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    return array, single
