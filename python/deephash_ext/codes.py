"""Packed binary codes: the layout every part of deephash_ext shares.

A code of ``n_bits`` bits is ``n_bits // 8`` bytes (``uint8``), one row per item. Bit ``j``
of a row is bit ``j % 8`` of byte ``j // 8``, least significant bit first: the layout of
faiss binary indexes and of ``numpy.packbits(bits, axis=-1, bitorder="little")``, so codes
move between them without conversion. ``n_bits`` is a positive multiple of 8.
"""

from __future__ import annotations

import numpy as np

from . import _core
from ._validation import check_float_rows, check_int

__all__ = ["binarize", "code_bytes", "pack_bits", "unpack_bits"]


def code_bytes(n_bits: int) -> int:
    """Bytes per packed code of ``n_bits`` bits.

    Raises
    ------
    TypeError
        If ``n_bits`` is not an integer.
    ValueError
        If ``n_bits`` is not a positive multiple of 8.
    """
    n_bits = check_int(n_bits, "n_bits", minimum=1)
    if n_bits % 8:
        raise ValueError(f"n_bits must be a positive multiple of 8, got {n_bits}")
    return n_bits // 8


def pack_bits(bits: object) -> np.ndarray:
    """Pack rows of bits into codes.

    Parameters
    ----------
    bits : array_like of bool or integers 0/1, shape (n, n_bits) or (n_bits,)
        ``n_bits`` must be a positive multiple of 8.

    Returns
    -------
    codes : ndarray of uint8, shape (n, n_bits // 8) or (n_bits // 8,)
        Bit ``j`` in byte ``j // 8`` at position ``j % 8`` (least significant first).

    Raises
    ------
    TypeError
        If ``bits`` is not boolean or integer.
    ValueError
        If ``bits`` is not 1-D or 2-D, its width is not a positive multiple of 8, or a value
        is neither 0 nor 1.

    Examples
    --------
    >>> import numpy as np
    >>> pack_bits(np.array([[1, 0, 0, 0, 0, 0, 0, 1]]))
    array([[129]], dtype=uint8)
    """
    array = np.asarray(bits)
    if array.dtype.kind not in "biu":
        raise TypeError(f"bits must be boolean or integer 0/1, got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise ValueError(f"bits must be 1-D or 2-D, got shape {array.shape}")
    if array.shape[-1] == 0 or array.shape[-1] % 8:
        raise ValueError(
            f"bits must have a positive multiple of 8 columns, got shape {array.shape}"
        )
    if array.dtype.kind != "b" and ((array != 0) & (array != 1)).any():
        raise ValueError("bits must contain only 0 and 1")
    return np.packbits(array.astype(bool, copy=False), axis=-1, bitorder="little")


def pack_bits_padded(bits: np.ndarray) -> np.ndarray:
    """Pack boolean rows of any width (e.g. 12-bit codes) into whole bytes, LSB first; the
    bits after ``n_bits`` in the last byte are 0 for every row, so Hamming distances count
    only the real bits. For the estimators' ``encode``; no checks (``bits`` is bool)."""
    return np.packbits(bits, axis=-1, bitorder="little")


def unpack_bits(codes: object, n_bits: int | None = None) -> np.ndarray:
    """Unpack codes into rows of 0/1.

    Parameters
    ----------
    codes : ndarray of uint8, shape (n, code_bytes) or (code_bytes,)
    n_bits : int, optional
        Bits to return per row, ``1 <= n_bits <= 8 * code_bytes`` (the first ``n_bits``);
        default ``8 * code_bytes``.

    Returns
    -------
    bits : ndarray of uint8, shape (n, n_bits) or (n_bits,)

    Raises
    ------
    TypeError
        If ``codes`` is not uint8 or ``n_bits`` is not an integer.
    ValueError
        If ``codes`` is not 1-D or 2-D, or ``n_bits`` is out of range.
    """
    array = np.asarray(codes)
    if array.dtype != np.uint8:
        raise TypeError(f"codes must have dtype uint8, got {array.dtype}")
    if array.ndim not in (1, 2):
        raise ValueError(f"codes must be 1-D or 2-D, got shape {array.shape}")
    width = 8 * array.shape[-1]
    n_bits = width if n_bits is None else check_int(n_bits, "n_bits", minimum=1, maximum=width)
    return np.unpackbits(array, axis=-1, count=n_bits, bitorder="little")


def binarize(X: object, thresholds: object = 0.0) -> np.ndarray:
    """Threshold descriptors into packed codes: bit ``j`` is ``X[:, j] > thresholds[j]``.

    The rule is strict (a value equal to its threshold gives 0), as everywhere in
    deephash_ext; never ``sign()``. The comparison runs in float32: other real dtypes
    are converted first (as every deephash_ext encoder does), and values beyond the
    float32 range become +-inf.

    Parameters
    ----------
    X : array_like of real numbers, shape (n, d) or (d,)
        ``d`` must be a positive multiple of 8. NaN is rejected.
    thresholds : float or array_like of shape (d,), default 0.0

    Returns
    -------
    codes : ndarray of uint8, shape (n, d // 8) or (d // 8,)

    Raises
    ------
    TypeError
        If ``X`` or ``thresholds`` does not hold real numbers.
    ValueError
        If a shape is wrong, ``d`` is not a positive multiple of 8, or a value is NaN.

    Examples
    --------
    >>> binarize([[0.5, -1, 0, 2, 3, -3, 0.1, 0]], 0.0)
    array([[89]], dtype=uint8)
    """
    x, single = check_float_rows(X, "X")
    d = x.shape[1]
    if d == 0 or d % 8:
        raise ValueError(f"X must have a positive multiple of 8 columns, got {d}")
    t = np.asarray(thresholds)
    if t.dtype.kind not in "biuf":
        raise TypeError(f"thresholds must hold real numbers, got dtype {t.dtype}")
    if t.ndim == 0:
        t = np.full(d, t, dtype=np.float32)
    elif t.shape != (d,):
        raise ValueError(f"thresholds must be a scalar or have shape ({d},), got shape {t.shape}")
    with np.errstate(over="ignore"):
        t = np.ascontiguousarray(t, dtype=np.float32)
    if np.isnan(t).any():
        raise ValueError("thresholds contains NaN")
    out = _core.pack_threshold(x, t)
    return out[0] if single else out
