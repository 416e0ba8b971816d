"""Exact Hamming search (search, range_search) against the NumPy reference.

Every comparison is exact (distances AND indices, np.array_equal): the contract ranks by
(distance, index) with ties going to the smaller index, so there is exactly one right
answer. Internals the data is shaped to reach:

* kernels specialised for 1, 2, 4, 8 and 16 64-bit words per code, a generic path
  otherwise; widths that are not a multiple of 8 bytes have a zero-padded tail word;
* 8-byte codes with an 8-byte row stride are scanned in place (other widths/strides are
  transposed per block);
* blocks of 32 KiB (4096 codes at 64 bits, 256 at 1024 bits, 64 at 4096 bits);
* threads only when nq * n * words >= 2 * 65536; with nq >= 4 * threads the batch is split
  by queries, otherwise the database is split into ranges that are merged;
* the top-k collector buffers max(2k, 64) candidates and cuts to k (k = 63, 64, 65 ...).
"""

from __future__ import annotations

import concurrent.futures
import functools

import deephash_ext
import numpy as np
import pytest
from deephash_ext import pack_bits, range_search, search
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import (
    hamming_matrix,
    knn_reference,
    range_reference,
    rank_reference,
    tie_heavy_codes,
)

WIDTHS_BITS = [8, 24, 64, 96, 128, 200, 256, 320, 512, 1000, 1024, 1984, 2048, 4096]
BLOCK_BYTES = 32 * 1024
THREAD_MIN_WORDS = 2 * 65536


def words_of(code_bytes: int) -> int:
    return -(-code_bytes // 8)


def assert_knn_equal(got, expected):
    (d, i), (ed, ei) = got, expected
    assert d.dtype == np.int32 and i.dtype == np.int64
    assert d.shape == ed.shape and i.shape == ei.shape
    if not np.array_equal(d, ed) or not np.array_equal(i, ei):
        bad = np.argwhere((d != ed) | (i != ei))
        q, r = bad[0] if bad.ndim == 2 and bad.shape[1] == 2 else (0, bad[0][0])
        raise AssertionError(
            f"{len(bad)} mismatching entries; first at query {q} rank {r}: got "
            f"(d={np.atleast_2d(d)[q, r]}, i={np.atleast_2d(i)[q, r]}) expected "
            f"(d={np.atleast_2d(ed)[q, r]}, i={np.atleast_2d(ei)[q, r]})"
        )


def assert_range_equal(got, expected):
    (lims, d, i), (elims, ed, ei) = got, expected
    assert lims.dtype == np.int64 and d.dtype == np.int32 and i.dtype == np.int64
    assert lims.ndim == d.ndim == i.ndim == 1
    np.testing.assert_array_equal(lims, elims)
    np.testing.assert_array_equal(d, ed)
    np.testing.assert_array_equal(i, ei)


def check_search(codes, queries, k):
    """search() == reference (distances and indices)."""
    expected = knn_reference(codes, queries, k)
    assert_knn_equal(search(codes, queries, k), expected)


def planted_queries(rng, codes, n_from_db, n_near, n_random):
    """Queries that are database rows (distance-0 hits), near them, and random."""
    n, cb = codes.shape
    rows = rng.integers(0, n, size=n_from_db + n_near)
    q = codes[rows].copy()
    for r in range(n_from_db, n_from_db + n_near):  # flip a few bits
        for bit in rng.integers(0, 8 * cb, size=3):
            q[r, bit // 8] ^= np.uint8(1 << (bit % 8))
    rand = rng.integers(0, 256, size=(n_random, cb), dtype=np.uint8)
    return np.concatenate([q, rand])


# ------------------------------------------------------------------ widths x SIMD level


@functools.cache
def width_problem(n_bits: int):
    rng = np.random.default_rng(1000 + n_bits)
    cb = n_bits // 8
    n = 5003  # > one 32 KiB block at every width, not a multiple of 8
    assert n > BLOCK_BYTES // (8 * words_of(cb))
    codes = rng.integers(0, 256, size=(n, cb), dtype=np.uint8)
    # duplicates of a few rows later in the database, some in other blocks
    for src, dst in [(3, 4), (3, 4097), (3, 5002), (100, 2500), (100, 101)]:
        codes[dst] = codes[src]
    queries = np.concatenate([codes[[3, 100]], planted_queries(rng, codes, 1, 2, 2)])
    ranked = rank_reference(codes, queries)
    return codes, queries, ranked


@pytest.mark.parametrize("n_bits", WIDTHS_BITS)
def test_search_matches_reference_at_every_width(n_bits, simd_level, num_threads):
    codes, queries, (rd, ri) = width_problem(n_bits)
    n = len(codes)
    for k in (1, 10, 64, 65, 300, n):
        assert_knn_equal(search(codes, queries, k), (rd[:, :k], ri[:, :k]))
    # the planted duplicates tie at distance 0 and come in index order
    duplicates = np.flatnonzero(np.all(codes == codes[3], axis=1))
    assert {3, 4, 4097, 5002} <= set(duplicates.tolist())
    d, i = search(codes, queries[:1], len(duplicates))
    np.testing.assert_array_equal(i[0], duplicates)
    np.testing.assert_array_equal(d[0], 0)


@pytest.mark.parametrize("n_bits", WIDTHS_BITS)
def test_range_search_matches_reference_at_every_width(n_bits, simd_level, num_threads):
    codes, queries, (rd, _) = width_problem(n_bits)
    radii = {0, int(rd[:, 1].min()), int(rd[:, 50].max()), int(np.median(rd[:, 200])), n_bits}
    for r in sorted(radii):
        assert_range_equal(range_search(codes, queries, r), range_reference(codes, queries, r))


@pytest.mark.parametrize("n_bits", WIDTHS_BITS)
def test_extreme_distances(n_bits, simd_level):
    """All-zero codes against an all-ones query: every distance is n_bits (no overflow)."""
    cb = n_bits // 8
    codes = np.zeros((301, cb), dtype=np.uint8)
    ones = np.full((2, cb), 255, dtype=np.uint8)
    d, i = search(codes, ones, 301)
    np.testing.assert_array_equal(d, np.full((2, 301), n_bits))
    np.testing.assert_array_equal(i, np.tile(np.arange(301), (2, 1)))
    lims, rd, ri = range_search(codes, ones, n_bits - 1)
    np.testing.assert_array_equal(lims, [0, 0, 0])
    lims, rd, ri = range_search(codes, ones, n_bits)
    np.testing.assert_array_equal(lims, [0, 301, 602])
    np.testing.assert_array_equal(rd, n_bits)
    np.testing.assert_array_equal(ri, np.tile(np.arange(301), 2))
    # and complements at distance n_bits from random codes
    rng = np.random.default_rng(n_bits)
    codes = rng.integers(0, 256, size=(37, cb), dtype=np.uint8)
    d, i = search(codes, ~codes[5], 1)
    assert d.shape == (1,)
    check_search(codes, ~codes, 37)


@pytest.mark.parametrize("n_bits", [8, 64, 72, 128, 200, 1000, 1024, 1032, 2048])
def test_every_bit_position_counts(n_bits, simd_level):
    """Codes with one bit set each: catches a dropped/misplaced bit in any (tail) word."""
    codes = pack_bits(np.eye(n_bits, dtype=np.uint8))
    zero = np.zeros((1, n_bits // 8), dtype=np.uint8)
    d, i = search(codes, zero, n_bits)
    np.testing.assert_array_equal(d, np.ones((1, n_bits)))
    np.testing.assert_array_equal(i, np.arange(n_bits)[None, :])
    # query = each code: distance 0 to itself and 2 to every other code
    d, i = search(codes, codes, 2)
    np.testing.assert_array_equal(d, np.tile([0, 2], (n_bits, 1)))
    np.testing.assert_array_equal(i[:, 0], np.arange(n_bits))
    np.testing.assert_array_equal(i[:, 1], np.where(np.arange(n_bits) == 0, 1, 0))


# ------------------------------------------------------------------------------ ties


@pytest.mark.parametrize("code_bytes", [1, 3, 8, 16, 25, 40, 128])
@pytest.mark.parametrize("n_distinct", [1, 2, 5])
def test_tie_heavy_data(code_bytes, n_distinct, simd_level, rng):
    n = 4103 if code_bytes <= 16 else 1203
    codes = tie_heavy_codes(rng, n, code_bytes, n_distinct)
    queries = np.concatenate(
        [codes[:3], rng.integers(0, 256, size=(2, code_bytes), dtype=np.uint8)]
    )
    rd, ri = rank_reference(codes, queries)
    for k in (1, 5, 63, 64, 65, 127, 128, 129, 200, n):
        assert_knn_equal(search(codes, queries, k), (rd[:, :k], ri[:, :k]))
    for r in (0, int(rd[0, -1]), 8 * code_bytes):
        assert_range_equal(range_search(codes, queries, r), range_reference(codes, queries, r))


def test_all_codes_identical_returns_smallest_indices(simd_level):
    codes = np.full((10_007, 8), 0xA5, dtype=np.uint8)
    for k in (1, 63, 64, 65, 200, 10_007):
        d, i = search(codes, codes[:2], k)
        np.testing.assert_array_equal(d, 0)
        np.testing.assert_array_equal(i, np.tile(np.arange(k), (2, 1)))


# ------------------------------------------------------------------------- edge cases


def test_docstring_examples():
    codes = np.array([[0b0000], [0b0111], [0b0001], [0b0011]], dtype=np.uint8)
    d, i = search(codes, np.array([0b0001], dtype=np.uint8), k=3)
    np.testing.assert_array_equal(d, [0, 1, 1])
    np.testing.assert_array_equal(i, [2, 0, 3])
    lims, d, i = range_search(codes, np.array([[0b0001]], dtype=np.uint8), max_distance=1)
    np.testing.assert_array_equal(lims, [0, 3])
    np.testing.assert_array_equal(d, [0, 1, 1])
    np.testing.assert_array_equal(i, [2, 0, 3])


@pytest.mark.parametrize("code_bytes", [1, 8, 13, 64])
def test_single_code_database(code_bytes, simd_level, rng):
    codes = rng.integers(0, 256, size=(1, code_bytes), dtype=np.uint8)
    queries = rng.integers(0, 256, size=(4, code_bytes), dtype=np.uint8)
    d, i = search(codes, queries, 1)
    assert d.shape == i.shape == (4, 1)
    np.testing.assert_array_equal(i, 0)
    np.testing.assert_array_equal(d[:, 0], hamming_matrix(codes, queries)[:, 0])
    assert_range_equal(
        range_search(codes, queries, 8 * code_bytes),
        range_reference(codes, queries, 8 * code_bytes),
    )


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 17, 64, 65, 129])
def test_k_equals_n_is_a_full_ranking(n, simd_level, rng):
    for cb in (1, 8, 12, 40):
        codes = rng.integers(0, 256, size=(n, cb), dtype=np.uint8)
        codes[n // 2] = codes[0]
        queries = np.concatenate([codes[:1], rng.integers(0, 256, size=(2, cb), dtype=np.uint8)])
        d, i = search(codes, queries, n)
        assert_knn_equal((d, i), knn_reference(codes, queries, n))
        for row in i:  # a permutation of the database
            np.testing.assert_array_equal(np.sort(row), np.arange(n))


def test_k_equal_one(simd_level, rng):
    codes = rng.integers(0, 256, size=(9001, 12), dtype=np.uint8)
    queries = planted_queries(rng, codes, 3, 3, 3)
    check_search(codes, queries, 1)


@pytest.mark.parametrize("code_bytes", [1, 8, 12])
def test_zero_queries(code_bytes, rng):
    codes = rng.integers(0, 256, size=(20, code_bytes), dtype=np.uint8)
    empty = codes[:0]  # (0, code_bytes), strides (code_bytes, 1)
    for k in (1, 7, 20):
        d, i = search(codes, empty, k)
        assert d.shape == i.shape == (0, k)
        assert d.dtype == np.int32 and i.dtype == np.int64
    lims, d, i = range_search(codes, empty, 5)
    np.testing.assert_array_equal(lims, [0])
    assert lims.dtype == np.int64 and d.dtype == np.int32 and i.dtype == np.int64
    assert d.shape == i.shape == (0,)


def test_range_search_over_empty_database(rng):
    queries = rng.integers(0, 256, size=(3, 4), dtype=np.uint8)
    lims, d, i = range_search(queries[:0], queries, 32)
    np.testing.assert_array_equal(lims, [0, 0, 0, 0])
    assert d.shape == i.shape == (0,)


# Some NumPy versions give freshly allocated empty arrays (np.zeros((0, w)), np.empty,
# np.concatenate of nothing, ...) zero strides. They are still valid (0, w) uint8 matrices.
def test_zero_queries_freshly_allocated(rng):
    codes = rng.integers(0, 256, size=(20, 8), dtype=np.uint8)
    d, i = search(codes, np.zeros((0, 8), dtype=np.uint8), 3)
    assert d.shape == i.shape == (0, 3)


def test_range_search_zero_queries_freshly_allocated(rng):
    codes = rng.integers(0, 256, size=(20, 12), dtype=np.uint8)
    lims, d, i = range_search(codes, np.empty((0, 12), dtype=np.uint8), 3)
    np.testing.assert_array_equal(lims, [0])


def test_range_search_over_freshly_allocated_empty_database(rng):
    queries = rng.integers(0, 256, size=(3, 4), dtype=np.uint8)
    lims, d, i = range_search(np.zeros((0, 4), dtype=np.uint8), queries, 32)
    np.testing.assert_array_equal(lims, [0, 0, 0, 0])


def test_zero_queries_freshly_allocated_one_byte_codes(rng):
    # width 1 is not affected (the binding does not check the column stride then)
    codes = rng.integers(0, 256, size=(20, 1), dtype=np.uint8)
    d, i = search(codes, np.zeros((0, 1), dtype=np.uint8), 3)
    assert d.shape == i.shape == (0, 3)


@pytest.mark.parametrize("code_bytes", [1, 8, 12, 128])
def test_one_dimensional_query(code_bytes, simd_level, rng):
    codes = rng.integers(0, 256, size=(500, code_bytes), dtype=np.uint8)
    q = codes[17].copy()
    d, i = search(codes, q, 10)
    assert d.shape == i.shape == (10,)
    assert d.dtype == np.int32 and i.dtype == np.int64
    d2, i2 = search(codes, q[None, :], 10)
    np.testing.assert_array_equal(d, d2[0])
    np.testing.assert_array_equal(i, i2[0])
    assert i[0] == 17 and d[0] == 0
    lims, rd, ri = range_search(codes, q, 4 * code_bytes)
    assert lims.shape == (2,)
    assert_range_equal((lims, rd, ri), range_reference(codes, q[None, :], 4 * code_bytes))
    # a 2-D single-row query keeps its 2-D form
    assert search(codes, q[None, :], 3)[0].shape == (1, 3)


def test_integer_like_k_and_radius(rng):
    codes = rng.integers(0, 256, size=(50, 8), dtype=np.uint8)
    expected = knn_reference(codes, codes[:3], 7)
    for k in (7, np.int64(7), np.uint8(7), np.int32(7)):
        assert_knn_equal(search(codes, codes[:3], k), expected)
    expected = range_reference(codes, codes[:3], 20)
    for r in (20, np.int16(20), np.uint64(20)):
        assert_range_equal(range_search(codes, codes[:3], r), expected)


def test_outputs_are_fresh_c_contiguous_arrays(rng):
    codes = rng.integers(0, 256, size=(300, 16), dtype=np.uint8)
    d, i = search(codes, codes[:4], 5)
    for a in (d, i):
        assert a.flags.c_contiguous and a.flags.writeable
    lims, rd, ri = range_search(codes, codes[:4], 50)
    for a in (lims, rd, ri):
        assert a.flags.c_contiguous
    assert not np.shares_memory(d, codes) and not np.shares_memory(i, codes)


def test_inputs_are_not_modified(rng, simd_level):
    codes = rng.integers(0, 256, size=(5000, 24), dtype=np.uint8)
    queries = rng.integers(0, 256, size=(9, 24), dtype=np.uint8)
    c0, q0 = codes.copy(), queries.copy()
    search(codes, queries, 100)
    range_search(codes, queries, 90)
    search(codes[:, :8], queries[:, :8], 10)  # the in-place 8-byte path
    np.testing.assert_array_equal(codes, c0)
    np.testing.assert_array_equal(queries, q0)


def test_read_only_inputs(rng):
    codes = rng.integers(0, 256, size=(400, 8), dtype=np.uint8)
    queries = codes[:5].copy()
    expected = knn_reference(codes, queries, 9)
    codes.flags.writeable = False
    queries.flags.writeable = False
    assert_knn_equal(search(codes, queries, 9), expected)
    ro = np.frombuffer(codes.tobytes(), dtype=np.uint8).reshape(codes.shape)
    assert_knn_equal(search(ro, queries, 9), expected)


# -------------------------------------------------------------- non-contiguous inputs


def _views(codes: np.ndarray):
    """(name, view) pairs of the 16-byte code matrix `codes`, each a valid uint8 matrix."""
    n = len(codes)
    unaligned = np.empty(n * 8 + 1, dtype=np.uint8)[1:].reshape(n, 8)
    unaligned[...] = codes[:, :8]
    return [
        ("rows-step2", codes[::2]),
        ("rows-step3", codes[::3]),
        ("rows-reversed", codes[::-1]),
        ("cols-reversed", codes[:, ::-1]),
        ("fortran", np.asfortranarray(codes)),
        ("cols-first8", codes[:, :8]),  # 8-byte codes with a 16-byte row stride
        ("cols-last8", codes[:, 8:]),
        ("cols-3-to-11", codes[:, 3:11]),  # unaligned start, stride 16
        ("cols-1-to-13", codes[:, 1:13]),
        ("cols-step2", codes[:, ::2]),
        ("row-offset", codes[1001:]),
        ("unaligned-8", unaligned),  # 8-byte codes, contiguous, odd address
        ("broadcast", np.broadcast_to(codes[7], (300, codes.shape[1]))),
        ("transposed-back", np.ascontiguousarray(codes.T).T),
    ]


@pytest.mark.parametrize("name", [name for name, _ in _views(np.zeros((8, 16), np.uint8))])
def test_non_contiguous_codes(name, simd_level, num_threads):
    rng = np.random.default_rng(77)
    base = rng.integers(0, 256, size=(20_011, 16), dtype=np.uint8)
    base[20_000] = base[5]
    view = dict(_views(base))[name]
    dense = np.ascontiguousarray(view)
    cb = view.shape[1]
    queries = np.concatenate(
        [dense[[0, 5, len(dense) // 2]], rng.integers(0, 256, size=(6, cb), dtype=np.uint8)]
    )
    k = min(70, len(dense))
    expected = knn_reference(dense, queries, k)
    assert_knn_equal(search(view, queries, k), expected)
    assert_knn_equal(search(dense, queries, k), expected)
    r = 4 * cb - 8
    assert_range_equal(range_search(view, queries, r), range_reference(dense, queries, r))
    # non-contiguous queries too
    for qview in (queries[:, ::-1], np.asfortranarray(queries), queries[::2]):
        qd = np.ascontiguousarray(qview)
        assert_knn_equal(search(view, qview, k), knn_reference(dense, qd, k))
        assert_range_equal(range_search(view, qview, r), range_reference(dense, qd, r))


def test_query_column_slice_and_1d_strided_query(rng):
    codes = rng.integers(0, 256, size=(3000, 8), dtype=np.uint8)
    wide = rng.integers(0, 256, size=(4, 24), dtype=np.uint8)
    q = wide[:, 5:13]  # row stride 24
    assert_knn_equal(search(codes, q, 12), knn_reference(codes, np.ascontiguousarray(q), 12))
    q1 = wide[0, ::3]  # a 1-D query with stride 3
    d, i = search(codes, q1, 12)
    ed, ei = knn_reference(codes, np.ascontiguousarray(q1)[None], 12)
    np.testing.assert_array_equal(d, ed[0])
    np.testing.assert_array_equal(i, ei[0])


# ---------------------------------------------------------------------- range search


def test_range_radius_boundary_is_inclusive(simd_level, rng):
    for cb in (1, 8, 12, 32, 125):
        codes = rng.integers(0, 256, size=(2000, cb), dtype=np.uint8)
        queries = rng.integers(0, 256, size=(5, cb), dtype=np.uint8)
        dist = hamming_matrix(codes, queries)
        for q in range(5):
            j = int(rng.integers(0, 2000))
            r = int(dist[q, j])
            lims, d, i = range_search(codes, queries[q], r)
            assert j in i and np.all(d <= r) and r in d
            assert lims[1] == np.count_nonzero(dist[q] <= r)
            if r > 0:
                lims, d, i = range_search(codes, queries[q], r - 1)
                assert j not in i and np.all(d <= r - 1)
                assert lims[1] == np.count_nonzero(dist[q] <= r - 1)
        for r in (0, 4 * cb - 3, 4 * cb, 4 * cb + 3):
            assert_range_equal(range_search(codes, queries, r), range_reference(codes, queries, r))


def test_range_radius_zero_finds_exact_duplicates(simd_level, rng):
    for cb in (1, 8, 20, 64):
        codes = rng.integers(0, 256, size=(6001, cb), dtype=np.uint8)
        dup_at = [17, 4095, 4096, 6000]
        codes[dup_at] = codes[2]
        queries = np.stack([codes[2], ~codes[2], codes[3]])
        lims, d, i = range_search(codes, queries, 0)
        expected_q0 = np.flatnonzero(np.all(codes == codes[2], axis=1))
        assert set(dup_at) <= set(expected_q0.tolist())
        np.testing.assert_array_equal(i[lims[0] : lims[1]], expected_q0)
        np.testing.assert_array_equal(d, 0)
        assert_range_equal((lims, d, i), range_reference(codes, queries, 0))


@pytest.mark.parametrize("code_bytes", [1, 8, 12, 64])
def test_range_radius_at_least_n_bits_returns_everything(code_bytes, simd_level, rng):
    n = 3001
    codes = rng.integers(0, 256, size=(n, code_bytes), dtype=np.uint8)
    queries = rng.integers(0, 256, size=(3, code_bytes), dtype=np.uint8)
    n_bits = 8 * code_bytes
    expected = range_reference(codes, queries, n_bits)
    np.testing.assert_array_equal(expected[0], [0, n, 2 * n, 3 * n])
    for r in (n_bits, n_bits + 1, 10 * n_bits, 2**31 - 1, 2**31, 2**40, 2**63 - 1):
        lims, d, i = range_search(codes, queries, r)
        assert_range_equal((lims, d, i), expected)
        for q in range(3):  # every item exactly once
            np.testing.assert_array_equal(np.sort(i[lims[q] : lims[q + 1]]), np.arange(n))
    # with all distances equal, "sorted by (distance, index)" is plain index order
    same = np.zeros((n, code_bytes), dtype=np.uint8)
    lims, d, i = range_search(same, np.full(code_bytes, 255, np.uint8), n_bits)
    np.testing.assert_array_equal(lims, [0, n])
    np.testing.assert_array_equal(i, np.arange(n))


def test_range_radius_beyond_int64_returns_everything(rng):
    r = 2**63  # a valid radius (an int >= 0): every item is within it
    codes = rng.integers(0, 256, size=(50, 4), dtype=np.uint8)
    lims, d, i = range_search(codes, codes[:2], r)
    assert_range_equal((lims, d, i), range_reference(codes, codes[:2], 32))


def test_range_results_are_prefixes_for_growing_radius(simd_level, rng):
    codes = tie_heavy_codes(rng, 5000, 8, 6)
    codes[::7] = rng.integers(0, 256, size=(len(codes[::7]), 8), dtype=np.uint8)
    queries = codes[:4]
    previous = None
    for r in range(0, 65, 4):
        lims, d, i = range_search(codes, queries, r)
        if previous is not None:
            plims, pd, pi = previous
            for q in range(4):
                m = plims[q + 1] - plims[q]
                np.testing.assert_array_equal(d[lims[q] : lims[q] + m], pd[plims[q] : plims[q + 1]])
                np.testing.assert_array_equal(i[lims[q] : lims[q] + m], pi[plims[q] : plims[q + 1]])
        previous = (lims, d, i)


def test_range_and_knn_agree(simd_level, rng):
    codes = tie_heavy_codes(rng, 3000, 12, 8)
    queries = codes[:5]
    d, i = search(codes, queries, 40)
    for q in range(5):
        r = int(d[q, -1])
        lims, rd, ri = range_search(codes, queries[q], r)
        # the top-40 is a prefix of the radius-r result (same order, same tie-breaking)
        np.testing.assert_array_equal(rd[:40], d[q])
        np.testing.assert_array_equal(ri[:40], i[q])
        assert np.all(rd[40:] == r)


# ------------------------------------------------------------------- top-k prefixes


def test_topk_prefix_property(simd_level, rng):
    for cb, n_distinct in ((8, 3), (12, 50), (40, 2), (16, 4000)):
        codes = tie_heavy_codes(rng, 9000, cb, n_distinct)
        queries = np.concatenate([codes[:3], rng.integers(0, 256, (3, cb), dtype=np.uint8)])
        ks = [1, 5, 63, 64, 65, 128, 129, 200, 1000, 9000]
        results = {k: search(codes, queries, k) for k in ks}
        big_d, big_i = results[ks[-1]]
        for k in ks:
            d, i = results[k]
            np.testing.assert_array_equal(d, big_d[:, :k])
            np.testing.assert_array_equal(i, big_i[:, :k])
        assert_knn_equal(results[9000], knn_reference(codes, queries, 9000))


# ----------------------------------------------------------------------- threading


@functools.cache
def threaded_problem(name: str):
    rng = np.random.default_rng({"uniform-8B": 11, "ties-16B": 12, "sparse-12B": 13}[name])
    if name == "uniform-8B":  # 1 word, scanned in place (no transpose)
        codes = rng.integers(0, 256, size=(140_003, 8), dtype=np.uint8)
        codes[[9, 70_001, 140_002]] = codes[2]
    elif name == "ties-16B":  # 2 words, 4 distinct rows only
        codes = tie_heavy_codes(rng, 70_001, 16, 4)
    elif name == "sparse-12B":  # 2 words with a padded tail; small distances, many ties
        codes = pack_bits(rng.random((70_001, 96)) < 0.04)
    else:
        raise KeyError(name)
    queries = planted_queries(rng, codes, 20, 15, 15)
    queries[1] = codes[2]
    return codes, queries


@functools.cache
def threaded_expected(name: str, nq: int):
    codes, queries = threaded_problem(name)
    kmax = len(codes) if nq <= 3 else 200
    return knn_reference(codes, queries[:nq], kmax)


@pytest.mark.parametrize("nq", [1, 3, 50])
@pytest.mark.parametrize("name", ["uniform-8B", "ties-16B", "sparse-12B"])
def test_threaded_search_matches_reference(name, nq, simd_level, num_threads):
    codes, queries = threaded_problem(name)
    q = queries[:nq]
    n, cb = codes.shape
    # the workload is large enough to be split across threads (when 2 are allowed):
    assert nq * n * words_of(cb) >= THREAD_MIN_WORDS
    ed, ei = threaded_expected(name, nq)
    ks = [1, 5, 63, 64, 65, 200] + ([n] if nq <= 3 else [])
    for k in ks:
        assert_knn_equal(search(codes, q, k), (ed[:, :k], ei[:, :k]))
    r = int(ed[:, 30].max())
    assert_range_equal(range_search(codes, q, r), range_reference(codes, q, r))


@pytest.mark.parametrize("name", ["uniform-8B", "ties-16B", "sparse-12B"])
def test_results_do_not_depend_on_thread_count(name, restore_num_threads, simd_level):
    codes, queries = threaded_problem(name)
    results = {}
    for threads in (1, 2, 3, 4, 7):
        deephash_ext.set_num_threads(threads)
        results[threads] = [
            search(codes, queries[:nq], k) + range_search(codes, queries[:nq], 2)
            for nq in (1, 3, 50)
            for k in (1, 64, 65, 200)
        ]
    for threads, res in results.items():
        for got, ref in zip(res, results[1]):
            for a, b in zip(got, ref):
                assert np.array_equal(a, b), f"{threads} threads differ from 1 thread"


def test_concurrent_calls_from_python_threads(simd_level, num_threads):
    # the GIL is released during the scan, so calls really overlap; each must stay exact

    codes, queries = threaded_problem("ties-16B")
    ed, ei = threaded_expected("ties-16B", 3)
    expected_range = {r: range_reference(codes, queries[:3], r) for r in (0, 5)}
    jobs = [(k, r) for k in (1, 64, 65, 200) for r in (0, 5)] * 2
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(
                lambda k=k, r=r: (
                    k,
                    search(codes, queries[:3], k),
                    range_search(codes, queries[:3], r),
                    r,
                )
            )
            for k, r in jobs
        ]
        for future in futures:
            k, got, got_range, r = future.result()
            assert_knn_equal(got, (ed[:, :k], ei[:, :k]))
            assert_range_equal(got_range, expected_range[r])


def test_many_queries_small_database(simd_level, num_threads, rng):
    # nq >= 4 * threads and nq * n * words above the threading threshold: split by queries
    codes = tie_heavy_codes(rng, 700, 24, 30)
    queries = rng.integers(0, 256, size=(2003, 24), dtype=np.uint8)
    assert 2003 * 700 * 3 >= THREAD_MIN_WORDS
    check_search(codes, queries, 65)
    assert_range_equal(range_search(codes, queries, 70), range_reference(codes, queries, 70))


# ------------------------------------------------------------------ property tests


@st.composite
def problems(draw):
    code_bytes = draw(st.integers(1, 80))
    n = draw(st.one_of(st.integers(1, 70), st.integers(1, 700)))
    nq = draw(st.integers(0, 5))
    mode = draw(st.sampled_from(["uniform", "ties", "sparse", "dense"]))
    n_distinct = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if mode == "uniform":
        codes = rng.integers(0, 256, size=(n, code_bytes), dtype=np.uint8)
    elif mode == "ties":
        codes = tie_heavy_codes(rng, n, code_bytes, n_distinct)
    else:  # mostly-0 or mostly-1 bits: small distances with many ties
        p = 0.03 if mode == "sparse" else 0.97
        codes = pack_bits(rng.random((n, 8 * code_bytes)) < p)
    n_from_db = draw(st.integers(0, nq))
    queries = np.concatenate(
        [
            codes[rng.integers(0, n, size=n_from_db)],
            rng.integers(0, 256, size=(nq - n_from_db + 1, code_bytes), dtype=np.uint8),
        ]
    )
    # Slice the queries out of a non-empty array: nq = 0 then keeps ordinary strides
    # (freshly allocated empty arrays hit a known bug, see test_zero_queries_freshly_allocated)
    return codes, queries[:nq]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    problem=problems(),
    k_choice=st.one_of(st.integers(1, 700), st.sampled_from([1, 63, 64, 65, 128, 129, 10**9])),
)
def test_property_search_matches_reference(simd_level, problem, k_choice):
    codes, queries = problem
    k = min(k_choice, len(codes))
    assert_knn_equal(search(codes, queries, k), knn_reference(codes, queries, k))


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=problems(), r=st.integers(0, 700))
def test_property_range_search_matches_reference(simd_level, problem, r):
    codes, queries = problem
    r = min(r, 8 * codes.shape[1] + 2)
    assert_range_equal(range_search(codes, queries, r), range_reference(codes, queries, r))
