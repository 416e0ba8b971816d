"""The scan kernels' removed-row bitmap (knn.hpp RemovedRows), which BinaryIndex uses:
results equal the NumPy reference on the live rows, at every SIMD level and thread count,
for heap and buffer top-k, few and many queries, and every code-width path."""

from __future__ import annotations

import numpy as np
import pytest
from deephash_ext import _core
from reference import knn_reference, range_reference


def _bitmap(removed_rows: np.ndarray, n: int) -> np.ndarray:
    rows = np.asarray(removed_rows, dtype=np.uint64)
    words = np.zeros((n + 63) // 64, dtype=np.uint64)
    np.bitwise_or.at(words, rows >> np.uint64(6), np.uint64(1) << (rows & np.uint64(63)))
    return words


def _live_reference(codes, queries, removed_rows, k):
    live = np.setdiff1d(np.arange(len(codes)), removed_rows)
    distances, positions = knn_reference(codes[live], queries, k)
    return distances, live[positions]


@pytest.mark.parametrize("code_bytes", [1, 8, 9, 32, 64, 130])
@pytest.mark.parametrize("n_queries", [1, 3, 40])
def test_knn_skips_removed_rows(code_bytes, n_queries, simd_level, num_threads):
    rng = np.random.default_rng(code_bytes * 100 + n_queries)
    n = 3000
    base = rng.integers(0, 256, size=(5, code_bytes), dtype=np.uint8)  # few codes: ties
    codes = base[rng.integers(0, 5, size=n)] ^ (rng.random((n, code_bytes)) < 0.02).astype(np.uint8)
    queries = codes[rng.integers(0, n, size=n_queries)]
    removed_rows = rng.choice(n, size=n // 3, replace=False)
    removed = _bitmap(removed_rows, n)
    for k in (1, 10, 200, n - len(removed_rows)):  # heap and buffer collectors; every live row
        distances, indices = _core.knn_hamming(codes, queries, k, removed)
        expected = _live_reference(codes, queries, removed_rows, k)
        np.testing.assert_array_equal(distances, expected[0])
        np.testing.assert_array_equal(indices, expected[1])


@pytest.mark.parametrize("code_bytes", [8, 16, 33])
def test_range_skips_removed_rows(code_bytes, simd_level, num_threads):
    rng = np.random.default_rng(code_bytes)
    n = 2000
    codes = rng.integers(0, 256, size=(n, code_bytes), dtype=np.uint8)
    codes[::3] = codes[0]
    queries = np.concatenate([codes[:2], rng.integers(0, 256, (30, code_bytes), dtype=np.uint8)])
    removed_rows = rng.choice(n, size=700, replace=False)
    live = np.setdiff1d(np.arange(n), removed_rows)
    for radius in (0, 4 * code_bytes, 8 * code_bytes):
        lims, distances, indices = _core.range_hamming(
            codes, queries, radius, _bitmap(removed_rows, n)
        )
        e_lims, e_dist, e_pos = range_reference(codes[live], queries, radius)
        np.testing.assert_array_equal(lims, e_lims)
        np.testing.assert_array_equal(distances, e_dist)
        np.testing.assert_array_equal(indices, live[e_pos])


def test_bits_past_the_last_row_are_ignored():
    codes = np.arange(70, dtype=np.uint8).reshape(70, 1)
    removed = np.full(2, np.iinfo(np.uint64).max, dtype=np.uint64)
    removed[1] = np.uint64(0xFFFF_FFFF_FFFF_FFC0)  # rows 64..69 live, bits 70..127 set
    removed[0] = np.uint64(0)
    distances, indices = _core.knn_hamming(codes, codes[:1], 70, removed)
    assert sorted(indices[0]) == list(range(70))


def test_removed_argument_errors():
    codes = np.zeros((70, 2), dtype=np.uint8)
    q = codes[:1]
    with pytest.raises(TypeError, match="removed"):
        _core.knn_hamming(codes, q, 1, np.zeros(2, dtype=np.int64))
    with pytest.raises(TypeError, match="removed"):
        _core.range_hamming(codes, q, 1, [0, 0])
    with pytest.raises(ValueError, match="removed must be a contiguous 1-D array of 2 words"):
        _core.knn_hamming(codes, q, 1, np.zeros(1, dtype=np.uint64))
    with pytest.raises(ValueError, match="removed"):
        _core.range_hamming(codes, q, 1, np.zeros(4, dtype=np.uint64)[::2])
    all_but_two = _bitmap(np.arange(68), 70)
    with pytest.raises(ValueError, match=r"k must be in \[1, 2\] \(the live rows\), got 3"):
        _core.knn_hamming(codes, q, 3, all_but_two)
    assert _core.knn_hamming(codes, q, 2, all_but_two)[1].tolist() == [[68, 69]]
    empty = np.zeros((0, 2), dtype=np.uint8)
    lims, _, _ = _core.range_hamming(empty, q, 3, np.zeros(0, dtype=np.uint64))
    assert lims.tolist() == [0, 0]


@pytest.mark.parametrize("n_queries", [2, 16])  # database split across threads / queries split
def test_threaded_paths_skip_removed_rows(n_queries, simd_level, num_threads):
    rng = np.random.default_rng(n_queries)
    n, code_bytes = 300_000, 8  # enough work (n x queries x words >= 2**20) for two threads
    codes = rng.integers(0, 256, size=(n, code_bytes), dtype=np.uint8)
    codes[rng.integers(0, n, 5000)] = codes[0]
    queries = np.concatenate([codes[:1], codes[rng.integers(0, n, n_queries - 1)]])
    removed_rows = rng.choice(n, size=n // 10, replace=False)
    removed_rows = np.union1d(removed_rows, np.flatnonzero((codes == codes[0]).all(axis=1))[::2])
    distances, indices = _core.knn_hamming(codes, queries, 50, _bitmap(removed_rows, n))
    expected = _live_reference(codes, queries, removed_rows, 50)
    np.testing.assert_array_equal(distances, expected[0])
    np.testing.assert_array_equal(indices, expected[1])
