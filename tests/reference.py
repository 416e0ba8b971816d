"""NumPy reference implementation: the specification the package is tested against.

Everything here is deliberately simple and obviously correct (no blocking tricks, no
early termination): a distance is the popcount of the XOR of two packed rows, and results
are ranked by (distance, index) with ties going to the smaller index.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "hamming_matrix",
    "knn_reference",
    "pack_reference",
    "range_reference",
    "rank_reference",
    "tie_heavy_codes",
]

# Bound the (chunk of queries, n) uint64 temporaries to about this many bytes.
_CHUNK_BYTES = 1 << 25


def _as_2d_codes(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    assert a.dtype == np.uint8, a.dtype
    return a.reshape(1, -1) if a.ndim == 1 else a


def _as_words(a: np.ndarray) -> np.ndarray:
    """Rows zero-padded to a multiple of 8 bytes and viewed as uint64 words.

    Zero padding leaves every XOR popcount unchanged; it only lets NumPy count 64 bits
    at a time instead of 8.
    """
    pad = -a.shape[1] % 8
    if pad:
        a = np.concatenate([a, np.zeros((a.shape[0], pad), dtype=np.uint8)], axis=1)
    return np.ascontiguousarray(a).view(np.uint64)


def hamming_matrix(db: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(nq, n) int64 matrix of Hamming distances: popcount(q[i] XOR db[j])."""
    db = _as_2d_codes(db)
    q = _as_2d_codes(q)
    assert db.shape[1] == q.shape[1]
    dbw, qw = _as_words(db), _as_words(q)
    n, words = dbw.shape
    out = np.empty((q.shape[0], n), dtype=np.int64)
    chunk = max(1, _CHUNK_BYTES // max(1, 8 * n))
    for s in range(0, q.shape[0], chunk):
        # sum over words of popcount(q XOR db): np.bitwise_count(q[:, None] ^ db[None]).sum(-1),
        # one word at a time so that every operation runs along the long n axis
        acc = out[s:s + chunk]
        acc[...] = 0
        for j in range(words):
            acc += np.bitwise_count(qw[s:s + chunk, None, j] ^ dbw[None, :, j])
    return out


def _stable_order(dist: np.ndarray) -> np.ndarray:
    """Per row, the column order by (distance, column)."""
    # A stable sort on the distance keeps equal distances in index order. Distances fit
    # in int16 up to 4095-byte codes, where NumPy's stable sort is a (fast) radix sort.
    keys = dist.astype(np.int16) if dist.size == 0 or dist.max() < 2**15 else dist
    return np.argsort(keys, axis=1, kind="stable")


def rank_reference(db: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every code of db ranked by (distance, index) for each query.

    Returns (distances int32 (nq, n), indices int64 (nq, n)); the top-k is the first k
    columns.
    """
    dist = hamming_matrix(db, q)
    order = _stable_order(dist)
    return (np.take_along_axis(dist, order, axis=1).astype(np.int32),
            order.astype(np.int64))


def knn_reference(db: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by (distance, index): (distances int32 (nq, k), indices int64 (nq, k))."""
    dist = hamming_matrix(db, q)
    order = _stable_order(dist)[:, :k]
    return (np.take_along_axis(dist, order, axis=1).astype(np.int32), order.astype(np.int64))


def range_reference(db: np.ndarray, q: np.ndarray,
                    r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every code with distance <= r, per query sorted by (distance, index), faiss layout."""
    dist = hamming_matrix(db, q)
    lims = [0]
    all_d, all_i = [], []
    for row in dist:
        hits = np.flatnonzero(row <= r)
        hits = hits[np.argsort(row[hits], kind="stable")]
        all_d.append(row[hits])
        all_i.append(hits)
        lims.append(lims[-1] + len(hits))
    distances = np.concatenate(all_d) if all_d else np.empty(0, dtype=np.int64)
    indices = np.concatenate(all_i) if all_i else np.empty(0, dtype=np.int64)
    return (np.asarray(lims, dtype=np.int64), distances.astype(np.int32),
            indices.astype(np.int64))


def pack_reference(bits: np.ndarray) -> np.ndarray:
    """The packed-code layout: bit j is bit j % 8 (LSB first) of byte j // 8."""
    return np.packbits(np.asarray(bits).astype(bool), axis=-1, bitorder="little")


def tie_heavy_codes(rng: np.random.Generator, n: int, code_bytes: int,
                    n_distinct: int = 3) -> np.ndarray:
    """n codes drawn from only n_distinct distinct rows, so most distances tie."""
    pool = rng.integers(0, 256, size=(n_distinct, code_bytes), dtype=np.uint8)
    return pool[rng.integers(0, n_distinct, size=n)]
