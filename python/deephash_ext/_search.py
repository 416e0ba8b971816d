"""Exact Hamming search over packed codes (CPU).

Both functions scan every code (no approximation) and rank by (distance, index): ties go
to the smaller index, so results are deterministic and the top-k for a smaller k is a
prefix of the top-k for a larger k. The GIL is released while the kernels run.
"""

from __future__ import annotations

import numpy as np

from . import _core
from ._validation import check_codes, check_int, check_queries

__all__ = ["range_search", "search"]


def search(codes: object, queries: object, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest codes by Hamming distance.

    Parameters
    ----------
    codes : ndarray of uint8, shape (n, code_bytes)
        The database, packed as in :mod:`deephash_ext.codes`. Row-contiguous views (for
        example ``codes[1000:]`` or ``codes[:, :8]``) are searched in place; other layouts
        are copied once.
    queries : ndarray of uint8, shape (nq, code_bytes) or (code_bytes,)
        A 1-D array is one query, and the results are then 1-D of shape (k,).
    k : int
        Neighbours per query, ``1 <= k <= n``.

    Returns
    -------
    distances : ndarray of int32, shape (nq, k)
        Sorted ascending.
    indices : ndarray of int64, shape (nq, k)
        Row numbers in ``codes``; equal distances are ordered by index.

    Raises
    ------
    TypeError
        If ``codes`` or ``queries`` is not uint8 (codes are never cast), or ``k`` is not an
        integer.
    ValueError
        If ``codes`` is not 2-D or has no bytes per code, ``queries`` is not 1-D or 2-D or
        differs in width, or ``k`` is outside ``[1, n]``.

    Examples
    --------
    >>> import numpy as np
    >>> codes = np.array([[0b0000], [0b0111], [0b0001], [0b0011]], dtype=np.uint8)
    >>> search(codes, np.array([0b0001], dtype=np.uint8), k=3)
    (array([0, 1, 1], dtype=int32), array([2, 0, 3]))
    """
    db = check_codes(codes, "codes")
    q, single = check_queries(queries, db.shape[1])
    k = check_int(k, "k", minimum=1, maximum=db.shape[0])
    distances, indices = _core.knn_hamming(db, q, k)
    return (distances[0], indices[0]) if single else (distances, indices)


def range_search(codes: object, queries: object,
                 max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every code within a Hamming radius (inclusive) of each query.

    Parameters
    ----------
    codes : ndarray of uint8, shape (n, code_bytes)
    queries : ndarray of uint8, shape (nq, code_bytes) or (code_bytes,)
        A 1-D array is one query (``nq = 1``); the result has the same form.
    max_distance : int
        Radius, ``>= 0``: a code is returned iff its distance is ``<= max_distance``.

    Returns
    -------
    lims : ndarray of int64, shape (nq + 1,)
        Query ``i``'s results are ``distances[lims[i]:lims[i + 1]]`` and
        ``indices[lims[i]:lims[i + 1]]`` (the faiss ``range_search`` layout).
    distances : ndarray of int32, shape (lims[-1],)
    indices : ndarray of int64, shape (lims[-1],)
        Each query's results are sorted by (distance, index).

    Raises
    ------
    TypeError
        If ``codes`` or ``queries`` is not uint8, or ``max_distance`` is not an integer.
    ValueError
        For wrong shapes or widths (as :func:`search`), or ``max_distance < 0``.

    Examples
    --------
    >>> import numpy as np
    >>> codes = np.array([[0b0000], [0b0111], [0b0001], [0b0011]], dtype=np.uint8)
    >>> range_search(codes, np.array([[0b0001]], dtype=np.uint8), max_distance=1)
    (array([0, 3]), array([0, 1, 1], dtype=int32), array([2, 0, 3]))
    """
    db = check_codes(codes, "codes")
    q, _ = check_queries(queries, db.shape[1])
    max_distance = check_int(max_distance, "max_distance", minimum=0)
    # No distance exceeds the code width, so any larger radius means the same (and fits C).
    return _core.range_hamming(db, q, min(max_distance, 8 * db.shape[1]))
