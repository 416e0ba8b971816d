"""Sharded exact search: per-shard searches and the merges that make them one search.

A database split into shards (consecutive row ranges, or one :class:`BinaryIndex` per
shard) is searched shard by shard, and the per-shard results are merged. Ranking by
(distance, global position) is what a single search over all rows does, so results never
depend on how the rows were split: each shard's results come sorted by (distance, row), and
the merges below keep, among equal distances, the earlier shard first. Merges are
associative over *adjacent* groups of shards, so they can run as a tree (a reduction on a
cluster) as long as each group lists its shards in order.

These functions import nothing beyond NumPy and the compiled core: any engine (Dask, Ray,
multiprocessing, a job queue) can call them. :mod:`deephash_ext.dask` is the Dask layer
over them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _core
from ._validation import check_codes, check_int, check_queries

__all__ = ["merge_range", "merge_topk", "range_search_shard", "search_shard"]


def search_shard(
    codes: object, queries: object, k: int, *, offset: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The top ``min(k, n)`` of one shard, with global positions.

    Parameters
    ----------
    codes : ndarray of uint8, shape (n, code_bytes)
        The shard's rows; ``n`` may be 0.
    queries : ndarray of uint8, shape (nq, code_bytes) or (code_bytes,)
    k : int
        ``k >= 1``; a shard with fewer rows returns all of them.
    offset : int, default 0
        Global position of the shard's first row, added to its row numbers.

    Returns
    -------
    distances : ndarray of int32, shape (nq, min(k, n))
    positions : ndarray of int64, shape (nq, min(k, n))
        Sorted by (distance, position); always 2-D.

    Raises
    ------
    TypeError, ValueError
        As :func:`deephash_ext.search`, with ``k >= 1`` and ``offset >= 0``.
    """
    db = check_codes(codes, "codes")
    q, _ = check_queries(queries)
    k = check_int(k, "k", minimum=1)
    offset = check_int(offset, "offset", minimum=0)
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} bytes per code but codes have {db.shape[1]}")
    width = min(k, db.shape[0])
    if width == 0:
        return np.empty((len(q), 0), np.int32), np.empty((len(q), 0), np.int64)
    distances, rows = _core.knn_hamming(db, q, width)
    if offset:
        rows += offset
    return distances, rows


def range_search_shard(
    codes: object, queries: object, max_distance: int, *, offset: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every code of one shard within ``max_distance``, with global positions.

    Returns ``(lims, distances, positions)`` in the layout of
    :func:`deephash_ext.range_search`, positions shifted by ``offset``; an empty shard
    returns no results.

    Raises
    ------
    TypeError, ValueError
        As :func:`deephash_ext.range_search`, with ``offset >= 0``.
    """
    db = check_codes(codes, "codes")
    q, _ = check_queries(queries)
    offset = check_int(offset, "offset", minimum=0)
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} bytes per code but codes have {db.shape[1]}")
    if db.shape[0] == 0:
        check_int(max_distance, "max_distance", minimum=0)
        return np.zeros(len(q) + 1, np.int64), np.empty(0, np.int32), np.empty(0, np.int64)
    lims, distances, rows = _core.range_hamming(db, q, max_distance)
    if offset:
        rows += offset
    return lims, distances, rows


def _payload(values: object, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype not in (np.int64, np.uint64):
        raise TypeError(f"{name} must be int64 or uint64 (positions or ids), got {array.dtype}")
    return array


def _distances(values: object, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype != np.int32:
        raise TypeError(f"{name} must be int32 (search distances), got {array.dtype}")
    return array


def merge_topk(
    parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard top-k lists into the top-k of their union.

    Parameters
    ----------
    parts : sequence of (distances, payloads)
        One pair per shard, **in the order of the shards' rows**: ``distances`` int32 of
        shape (nq, c_i), each row sorted ascending (as :func:`search_shard` returns it), and
        ``payloads`` of the same shape, int64 (positions) or uint64 (ids), the same dtype in
        every part. ``c_i`` may differ between parts and may be 0.
    k : int
        ``k >= 1``.

    Returns
    -------
    distances : ndarray of int32, shape (nq, min(k, sum c_i))
    payloads : ndarray, shape (nq, min(k, sum c_i))
        Ranked by (distance, shard, column): for shards of consecutive row ranges, exactly
        the result of one search over all rows, ties included.

    Raises
    ------
    TypeError
        If a part has another dtype, or ``k`` is not an integer.
    ValueError
        If ``parts`` is empty, shapes differ, a row of distances is not sorted or holds a
        negative value, or ``k < 1``.

    Notes
    -----
    Linear in the input (the compiled core counts results per distance, then places them),
    and parallel over queries with the library's threads.
    """
    k = check_int(k, "k", minimum=1)
    if len(parts) == 0:
        raise ValueError("parts must hold at least one (distances, payloads) pair")
    distances = [
        np.ascontiguousarray(_distances(d, f"parts[{i}][0]")) for i, (d, _) in enumerate(parts)
    ]
    payloads = [
        np.ascontiguousarray(_payload(p, f"parts[{i}][1]")) for i, (_, p) in enumerate(parts)
    ]
    return _core.merge_topk(distances, payloads, k, _core.max_merge_distance)


def merge_range(
    parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge per-shard range results into the range result of their union.

    Parameters
    ----------
    parts : sequence of (lims, distances, payloads)
        One triple per shard, in the order of the shards' rows, each in the layout of
        :func:`deephash_ext.range_search` for the same ``nq`` queries; payloads int64 or
        uint64, the same dtype in every part.

    Returns
    -------
    lims : ndarray of int64, shape (nq + 1,)
    distances : ndarray of int32
    payloads : ndarray
        Each query's results ranked by (distance, shard, position within the shard).

    Raises
    ------
    TypeError
        If a part has another dtype.
    ValueError
        If ``parts`` is empty or a part's ``lims`` do not describe its arrays.
    """
    if len(parts) == 0:
        raise ValueError("parts must hold at least one (lims, distances, payloads) triple")
    nq = len(np.asarray(parts[0][0])) - 1
    payload_dtype = _payload(parts[0][2], "parts[0][2]").dtype
    queries, distances, payloads = [], [], []
    for i, (lims, d, p) in enumerate(parts):
        lims = np.asarray(lims)
        d = _distances(d, f"parts[{i}][1]")
        p = _payload(p, f"parts[{i}][2]")
        if p.dtype != payload_dtype:
            raise TypeError(f"parts[{i}][2] has dtype {p.dtype}, unlike parts[0][2]")
        counts = np.diff(lims)
        if (
            lims.dtype != np.int64
            or lims.shape != (nq + 1,)
            or lims[0] != 0
            or (counts < 0).any()
            or d.shape != (int(lims[-1]),)
            or p.shape != d.shape
        ):
            raise ValueError(
                f"parts[{i}] is not a range result for {nq} queries: lims must be int64 of "
                f"shape ({nq + 1},), start at 0, not decrease, and end at the result count"
            )
        queries.append(np.repeat(np.arange(nq, dtype=np.int64), counts))
        distances.append(d)
        payloads.append(p)
    query = np.concatenate(queries)
    distance = np.concatenate(distances)
    # lexsort is stable: within (query, distance), shards keep their order and each shard
    # its (distance, position) order.
    order = np.lexsort((distance, query))
    lims = np.zeros(nq + 1, np.int64)
    np.cumsum(np.bincount(query, minlength=nq), out=lims[1:])
    return lims, distance[order], np.concatenate(payloads)[order]
