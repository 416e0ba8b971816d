"""Multi-index hashing (cpp/src/mih.cpp, deephash_ext._mih, BinaryIndex(method=...)).

MIH is exact: every result must be bit-identical to the flat scan (tests/reference.py),
ties included and broken by row (insertion) order. The kernels are checked against the
reference on the live indexed rows, their tables against a NumPy counting sort computed
from the bit layout (bit i of a code is bit i % 8 of byte i // 8), their work budget
against a NumPy model of the work, and BinaryIndex(method="mih" / "auto") against
method="flat" through sequences of mutations, budgets, SIMD levels and thread counts.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from deephash_ext import BinaryIndex, _core, _mih
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import knn_reference, range_reference, rank_reference, tie_heavy_codes

WIDTHS = [8, 64, 72, 128, 256, 520]  # code_bytes 1, 8, 9, 16, 32, 65
HUGE_WORK = 2**64 - 1
KINDS = ["ties", "clustered", "uniform"]


# ============================================================================ helpers


def u32(values) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.uint32)


def contiguous_plan(widths) -> tuple[np.ndarray, np.ndarray]:
    """(begins, widths) of substrings laid end to end from bit 0."""
    widths = u32(widths)
    return u32(np.concatenate(([0], np.cumsum(widths)[:-1]))), widths


# Hand-made partitions of each code width: unequal widths, one table, 1-bit tables, and
# substrings starting inside a byte (widths <= 14 keep building and probing cheap).
HAND_PLANS = {
    8: [[8], [1] * 8, [3, 5], [5, 1, 2]],
    64: [[1, 13, 11, 13, 13, 13], [7] * 9 + [1]],
    72: [[7, 13, 9, 13, 13, 12, 5]],
    128: [[1, 13, 12, *[13] * 7, 11]],
    256: [[3, 13] * 16],
    520: [[11, 5, 13] * 17 + [13, 14]],
}


def plans_for(n_bits: int, n_rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    plans = [_mih.plan_substrings(n_bits, n_rows)]
    plans += [contiguous_plan(w) for w in HAND_PLANS[n_bits]]
    for _, widths in plans:
        assert int(widths.sum()) == n_bits
    return plans


def substring_keys(codes: np.ndarray, begin: int, width: int, bit_order=None) -> np.ndarray:
    """Bits [begin, begin + width) of each code as an integer, from the bit layout (with a
    bit order: bits bit_order[begin:begin + width], in that order)."""
    bits = np.unpackbits(codes, axis=1, bitorder="little")
    if bit_order is not None:
        bits = bits[:, bit_order]
    bits = bits[:, begin : begin + width]
    return bits.astype(np.uint64) @ (np.uint64(1) << np.arange(width, dtype=np.uint64))


def reference_tables(codes, begins, widths, bit_order=None) -> tuple[np.ndarray, np.ndarray]:
    """The tables of mih.hpp by a stable counting sort in NumPy."""
    offsets, rows = [], []
    for begin, width in zip(begins.tolist(), widths.tolist()):
        keys = substring_keys(codes, begin, width, bit_order).astype(np.int64)
        counts = np.bincount(keys, minlength=2**width)
        offsets.append(np.concatenate(([0], np.cumsum(counts))))
        rows.append(np.argsort(keys, kind="stable"))
    return u32(np.concatenate(offsets)), u32(np.concatenate(rows))


def bitmap(rows, n: int) -> np.ndarray:
    """A removed-row bitmap: bit i % 64 of word i // 64 set for each row i."""
    rows = np.asarray(rows, dtype=np.uint64)
    words = np.zeros(-(-n // 64), dtype=np.uint64)
    np.bitwise_or.at(words, rows >> np.uint64(6), np.uint64(1) << (rows & np.uint64(63)))
    return words


def flip_bits(rng, codes: np.ndarray, max_flips: int) -> np.ndarray:
    """Copies of codes with up to max_flips random bits flipped in each."""
    out = codes.copy()
    n, n_bits = len(out), 8 * out.shape[1]
    for _ in range(max_flips):
        who = np.flatnonzero(rng.random(n) < 0.6)
        bit = rng.integers(0, n_bits, len(who))
        out[who, bit // 8] ^= (1 << (bit % 8)).astype(np.uint8)
    return out


def make_codes(kind: str, rng, n: int, code_bytes: int) -> np.ndarray:
    if kind == "ties":
        return tie_heavy_codes(rng, n, code_bytes, n_distinct=4)
    if kind == "clustered":  # a few base codes, copies with a few flipped bits
        bases = rng.integers(0, 256, (6, code_bytes), dtype=np.uint8)
        return flip_bits(rng, bases[rng.integers(0, 6, n)], 3)
    return rng.integers(0, 256, (n, code_bytes), dtype=np.uint8)


def make_queries(rng, codes: np.ndarray, n_random: int = 2) -> np.ndarray:
    picked = codes[[0, len(codes) // 2, len(codes) - 1]]
    random = rng.integers(0, 256, (n_random, codes.shape[1]), dtype=np.uint8)
    return np.ascontiguousarray(np.concatenate([picked, flip_bits(rng, picked[:2], 1), random]))


def ranking(codes: np.ndarray, queries: np.ndarray, live: np.ndarray):
    """Every live row ranked by (distance, row) per query: (distances, rows)."""
    d, order = rank_reference(codes[live], queries)
    return d, live[order]


def range_from_ranking(ranked, radius: int):
    """range_reference derived from a full ranking (its prefix within the radius)."""
    d, rows = ranked
    within = d <= radius
    lims = np.concatenate(([0], np.cumsum(within.sum(axis=1)))).astype(np.int64)
    return lims, d[within].astype(np.int32), rows[within].astype(np.int64)


def radii_for(n_bits: int, ranked_d: np.ndarray, every_up_to: int = 72) -> list[int]:
    """Every radius for narrow codes; else 0..3, the largest, and a sample of the distances
    present with their predecessors (the result changes only at a distance present)."""
    if n_bits <= every_up_to:
        radii = set(range(n_bits + 1))
    else:
        present = np.unique(ranked_d)
        sample = present[np.linspace(0, len(present) - 1, min(len(present), 10)).astype(int)]
        radii = {0, 1, 2, 3, n_bits} | {int(d) + s for d in sample for s in (-1, 0)}
    return sorted(r for r in radii | {n_bits + 1, 10**9} if r >= 0)


def ks_for(live: int) -> list[int]:
    return sorted({k for k in (1, 2, 10, live) if 1 <= k <= live})


def assert_same(got, expected) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype, (a.dtype, b.dtype)
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ the work model


def probe_work(indexed, queries, begins, widths, bit_order=None) -> list[np.ndarray]:
    """work[j][q, s]: the work of probing table j at exactly radius s for query q (one unit
    per key probed, one per row listed in the probed buckets, removed rows included)."""
    work = []
    for begin, width in zip(begins.tolist(), widths.tolist()):
        kd = substring_keys(indexed, begin, width, bit_order)
        kq = substring_keys(queries, begin, width, bit_order)
        sub = np.bitwise_count(kq[:, None] ^ kd[None, :]).astype(np.int64)
        counts = np.stack([np.bincount(row, minlength=width + 1) for row in sub])
        if len(indexed) == 0:
            counts = np.zeros((len(queries), width + 1), dtype=np.int64)
        work.append(counts + np.array([math.comb(width, s) for s in range(width + 1)]))
    return work


def knn_work(work, widths, kth_distance: np.ndarray) -> np.ndarray:
    """k-NN grows the radius r = 0, 1, ... (table r % m to radius r // m) until the k-th
    distance: the work of every probe up to it."""
    m = len(widths)
    total = np.zeros(len(kth_distance), dtype=np.int64)
    for q, stop in enumerate(kth_distance.tolist()):
        for r in range(stop + 1):
            j, s = r % m, r // m
            if s <= widths[j]:
                total[q] += work[j][q, s]
    return total


def range_work(work, widths, radius: int, n_bits: int) -> np.ndarray:
    """Radius search probes table j to radius (r - j) // m (mih.hpp's pigeonhole)."""
    m, r = len(widths), min(radius, n_bits)
    total = np.zeros(len(work[0]), dtype=np.int64)
    for j in range(min(m - 1, r) + 1):
        top = min((r - j) // m, int(widths[j]))
        total += work[j][:, : top + 1].sum(axis=1)
    return total


# ============================================================================ 1-2. kernels


def check_layout(codes, begins, widths, offsets, rows, bit_order=None) -> None:
    """mih.hpp's table layout, property by property, then equal to the NumPy tables."""
    n = len(codes)
    sizes = [2**w + 1 for w in widths.tolist()]
    assert offsets.dtype == rows.dtype == np.uint32
    assert len(offsets) == sum(sizes) and len(rows) == len(widths) * n
    base = 0
    for j, (begin, width) in enumerate(zip(begins.tolist(), widths.tolist())):
        table = offsets[base : base + sizes[j]].astype(np.int64)
        base += sizes[j]
        assert table[0] == 0 and table[-1] == n
        assert np.all(np.diff(table) >= 0)
        listed = rows[j * n : (j + 1) * n].astype(np.int64)
        np.testing.assert_array_equal(np.sort(listed), np.arange(n))
        keys = substring_keys(codes, begin, width, bit_order).astype(np.int64)
        bucket_of_slot = np.repeat(np.arange(2**width), np.diff(table))
        np.testing.assert_array_equal(keys[listed], bucket_of_slot)
        ascending = np.diff(listed) > 0
        same_bucket = np.diff(bucket_of_slot) == 0
        assert np.all(ascending | ~same_bucket)
    expected = reference_tables(codes, begins, widths, bit_order)
    np.testing.assert_array_equal(offsets, expected[0])
    np.testing.assert_array_equal(rows, expected[1])


def check_kernels(
    codes, queries, begins, widths, n_indexed, removed_rows, radii=None, bit_order=None
) -> None:
    """mih_knn / mih_range over tables of codes[:n_indexed] against the reference on the
    live indexed rows, with an unlimited budget and with budgets around each query's work.
    radii: a list, None for every radius of codes up to 72 bits, "some" for a sample."""
    n, n_bits = len(codes), 8 * codes.shape[1]
    offsets, rows = _core.mih_build(codes[:n_indexed], begins, widths, bit_order)
    check_layout(codes[:n_indexed], begins, widths, offsets, rows, bit_order)
    removed = None if removed_rows is None else bitmap(removed_rows, n)
    gone = np.zeros(n, dtype=bool)
    if removed_rows is not None:
        gone[removed_rows] = True
    live = np.flatnonzero(~gone[:n_indexed])
    ranked = ranking(codes, queries, live)
    tables = (begins, widths, offsets, rows, n_indexed)
    work = probe_work(codes[:n_indexed], queries, begins, widths, bit_order)
    removed = {"removed": removed, "bit_order": bit_order}

    for k in ks_for(len(live)):
        d, i, fallback = _core.mih_knn(codes, queries, k, *tables, HUGE_WORK, **removed)
        assert d.dtype == np.int32 and i.dtype == np.int64 and fallback.dtype == np.uint8
        np.testing.assert_array_equal(fallback, 0)
        np.testing.assert_array_equal(d, ranked[0][:, :k])
        np.testing.assert_array_equal(i, ranked[1][:, :k])
        # budgets: a query is flagged exactly when its work exceeds max_work
        needed = knn_work(work, widths, ranked[0][:, k - 1])
        for max_work in sorted({1, int(needed.min()), int(np.median(needed)) - 1}):
            max_work = max(max_work, 1)
            d, i, fallback = _core.mih_knn(codes, queries, k, *tables, max_work, **removed)
            np.testing.assert_array_equal(fallback, needed > max_work)
            ok = fallback == 0
            np.testing.assert_array_equal(d[ok], ranked[0][ok, :k])
            np.testing.assert_array_equal(i[ok], ranked[1][ok, :k])

    if radii is None or radii == "some":
        radii = radii_for(n_bits, ranked[0], 72 if radii is None else 0)
    for radius in radii:
        got = _core.mih_range(codes, queries, radius, *tables, HUGE_WORK, **removed)
        np.testing.assert_array_equal(got[3], 0)
        assert_same(got[:3], range_from_ranking(ranked, radius))
    for radius in radii[:: max(1, len(radii) // 6)]:
        needed = range_work(work, widths, radius, n_bits)
        for max_work in sorted({1, int(needed.min()), int(np.median(needed)) - 1}):
            max_work = max(max_work, 1)
            lims, d, i, fallback = _core.mih_range(
                codes, queries, radius, *tables, max_work, **removed
            )
            np.testing.assert_array_equal(fallback, needed > max_work)
            e_lims, e_d, e_i = range_from_ranking(ranked, radius)
            for q in range(len(queries)):
                got_q = slice(lims[q], lims[q + 1])
                if fallback[q]:  # an over-budget query has no results
                    assert lims[q] == lims[q + 1]
                else:
                    want = slice(e_lims[q], e_lims[q + 1])
                    np.testing.assert_array_equal(d[got_q], e_d[want])
                    np.testing.assert_array_equal(i[got_q], e_i[want])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_bits", WIDTHS)
def test_kernels_match_reference(n_bits, kind, rng):
    cb = n_bits // 8
    n = 300
    codes = make_codes(kind, rng, n, cb)
    queries = make_queries(rng, codes)
    removed_rows = np.unique(np.concatenate([[0, 63, 64, 127, n - 1], rng.choice(n, 30)]))
    n_indexed = n - 45  # not a multiple of 64; removed rows past it share its last word
    past = np.array([n_indexed, n_indexed + 3, n - 2])
    for p, (begins, widths) in enumerate(plans_for(n_bits, n)):
        check_kernels(codes, queries, begins, widths, n, None)
        check_kernels(codes, queries, begins, widths, n, removed_rows, "some")
        prefix_removed = np.concatenate([removed_rows[removed_rows < n_indexed], past])
        check_kernels(codes, queries, begins, widths, n_indexed, prefix_removed, "some")
        if p == 0:  # rows read through a stride (a column slice of a wider matrix)
            wide = np.zeros((n, cb + 5), dtype=np.uint8)
            wide[:, :cb] = codes
            check_kernels(wide[:, :cb], queries, begins, widths, n_indexed, removed_rows, "some")
    # bit orders (mih.hpp): substrings of a permutation of the bits
    begins, widths = plans_for(n_bits, n)[-1]
    shuffled = u32(rng.permutation(n_bits))
    decorrelated = _mih.decorrelated_bit_order(codes, widths)
    np.testing.assert_array_equal(np.sort(decorrelated), np.arange(n_bits))
    check_kernels(codes, queries, begins, widths, n, removed_rows, bit_order=shuffled)
    check_kernels(codes, queries, begins, widths, n_indexed, past, "some", bit_order=decorrelated)


def test_kernels_on_tiny_and_degenerate_inputs(rng):
    codes = rng.integers(0, 256, (5, 9), dtype=np.uint8)
    codes[3] = codes[1]
    queries = make_queries(rng, codes)
    begins, widths = contiguous_plan([9, 13, 2, 13, 1, 13, 12, 9])
    check_kernels(codes, queries, begins, widths, 5, None)
    check_kernels(codes, queries, begins, widths, 5, [1])
    check_kernels(codes[:1], queries, begins, widths, 1, None)
    # no rows indexed: radius search finds nothing, k-NN has no k to ask for
    offsets, rows = _core.mih_build(codes[:0], begins, widths)
    assert len(rows) == 0 and not offsets.any()
    lims, d, i, fallback = _core.mih_range(
        codes, queries, 72, begins, widths, offsets, rows, 0, HUGE_WORK
    )
    assert_same((lims, d, i), (np.zeros(len(queries) + 1, np.int64), d[:0], i[:0]))
    np.testing.assert_array_equal(fallback, 0)
    with pytest.raises(ValueError, match="k must be"):
        _core.mih_knn(codes, queries, 1, begins, widths, offsets, rows, 0, HUGE_WORK)
    # every indexed row removed
    offsets, rows = _core.mih_build(codes, begins, widths)
    every = bitmap(np.arange(5), 5)
    with pytest.raises(ValueError, match="k must be"):
        _core.mih_knn(codes, queries, 1, begins, widths, offsets, rows, 5, HUGE_WORK, every)
    lims, d, i, fallback = _core.mih_range(
        codes, queries, 72, begins, widths, offsets, rows, 5, HUGE_WORK, every
    )
    assert lims[-1] == 0
    # no queries (k-NN; radius search: see test_range_kernel_with_no_queries)
    d, i, fallback = _core.mih_knn(codes, queries[:0], 2, begins, widths, offsets, rows, 5, 1)
    assert d.shape == i.shape == (0, 2) and fallback.shape == (0,)


def test_direct_calls_agree_with_knn_and_range_reference(rng):
    """The kernels against knn_reference / range_reference called as they are."""
    codes = make_codes("clustered", rng, 400, 16)
    queries = make_queries(rng, codes)
    begins, widths = _mih.plan_substrings(128, 400)
    offsets, rows = _core.mih_build(codes, begins, widths)
    for k in (1, 2, 10, 400):
        d, i, fallback = _core.mih_knn(
            codes, queries, k, begins, widths, offsets, rows, 400, HUGE_WORK
        )
        assert not fallback.any()
        assert_same((d, i), knn_reference(codes, queries, k))
    for radius in (0, 3, 40, 60, 128):
        lims, d, i, fallback = _core.mih_range(
            codes, queries, radius, begins, widths, offsets, rows, 400, HUGE_WORK
        )
        assert not fallback.any()
        assert_same((lims, d, i), range_reference(codes, queries, radius))


def sparse_tables(codes, begins, widths):
    """The tables of reference_tables, built without writing the untouched (zero) leading
    offsets of wide tables: a 32-bit table has 2^32 + 1 offsets (16 GiB, mostly zero pages
    that are never written) when its keys all lie near the top."""
    sizes = [2**w + 1 for w in widths.tolist()]
    offsets = np.zeros(sum(sizes), dtype=np.uint32)  # lazily zeroed by the OS
    rows = []
    base = 0
    for begin, width, size in zip(begins.tolist(), widths.tolist(), sizes):
        keys = substring_keys(codes, begin, width).astype(np.int64)
        low = int(keys.min())
        at = np.searchsorted(np.sort(keys), np.arange(low, 2**width + 1), side="left")
        offsets[base + low : base + size] = at
        rows.append(np.argsort(keys, kind="stable"))
        base += size
    return offsets, u32(np.concatenate(rows))


def test_kernels_with_a_32_bit_substring(rng):
    """Widths of 32 bits, one starting inside a byte (five bytes read): 40-bit codes, plan
    bits 4..35 (32), 0..3 and 36..39; the 32-bit keys' top 16 bits are all set."""
    base = rng.integers(0, 256, (5, 5), dtype=np.uint8)
    codes = flip_bits(rng, base[rng.integers(0, 5, 400)], 2)
    codes[:, 2] |= 0xF0  # bits 20..35 set: substring bits 16..31
    codes[:, 3] = 0xFF
    codes[:, 4] |= 0x0F
    codes = np.ascontiguousarray(codes)
    begins, widths = u32([4, 0, 36]), u32([32, 4, 4])
    try:
        offsets, rows = sparse_tables(codes, begins, widths)
    except MemoryError:  # pragma: no cover - 16 GiB of address space refused
        pytest.skip("cannot map 16 GiB of zero pages for a 32-bit table")
    queries = np.concatenate([codes[:3], flip_bits(rng, codes[:3], 1)])
    queries[-1, 3] ^= 0x80  # a key in the lower half of the 32-bit table
    removed = bitmap([0, 5, 399], 400)
    live = np.setdiff1d(np.arange(400), [0, 5, 399])
    ranked = ranking(codes, queries, live)
    tables = (begins, widths, offsets, rows, 400)
    for k in (1, 2, 10):
        d, i, fallback = _core.mih_knn(codes, queries, k, *tables, HUGE_WORK, removed)
        assert not fallback.any()
        assert_same((d, i), (ranked[0][:, :k], ranked[1][:, :k]))
    for radius in range(7):
        got = _core.mih_range(codes, queries, radius, *tables, HUGE_WORK, removed)
        assert not got[3].any()
        assert_same(got[:3], range_from_ranking(ranked, radius))
    del offsets


# ======================================================== 3. corrupt tables and errors


@pytest.fixture
def tie_case(rng):
    """Tie-heavy 64-bit codes and their tables; the first query's table-0 bucket lists
    many rows (all at distance 0 from it)."""
    codes = tie_heavy_codes(rng, 500, 8, n_distinct=4)
    queries = np.ascontiguousarray(np.concatenate([codes[:3], flip_bits(rng, codes[:3], 2)]))
    begins, widths = _mih.plan_substrings(64, 500)
    offsets, rows = _core.mih_build(codes, begins, widths)
    key = int(substring_keys(queries[:1], int(begins[0]), int(widths[0]))[0])
    assert offsets[key + 1] - offsets[key] > 10
    return codes, queries, begins, widths, offsets, rows, key


def assert_exact_after(case) -> None:
    """A correct call on the same data (same thread: the per-thread "seen" bitmap must be
    clean after an exception) is exact."""
    codes, queries, begins, widths, offsets, rows, _ = case
    n = len(codes)
    ranked = ranking(codes, queries, np.arange(n))
    tables = (begins, widths, offsets, rows, n)
    for k in (1, 10, 200, n):
        d, i, fallback = _core.mih_knn(codes, queries, k, *tables, HUGE_WORK)
        assert not fallback.any()
        assert_same((d, i), (ranked[0][:, :k], ranked[1][:, :k]))
    for radius in (0, 5, 64):
        got = _core.mih_range(codes, queries, radius, *tables, HUGE_WORK)
        assert_same(got[:3], range_from_ranking(ranked, radius))


def _corrupt_bucket_past_n(offsets, rows, key, n):
    offsets[key + 1] = n + 1


def _corrupt_huge_offset(offsets, rows, key, n):
    offsets[key + 1] = 2**32 - 1


def _corrupt_decreasing(offsets, rows, key, n):
    offsets[key] = offsets[key + 1] + 1


def _corrupt_row_past_n(offsets, rows, key, n):
    rows[offsets[key + 1] - 1] = n  # the bucket's last row: the others were seen first


def _corrupt_huge_row(offsets, rows, key, n):
    rows[offsets[key + 1] - 1] = 2**32 - 1


@pytest.mark.parametrize(
    "corrupt",
    [
        _corrupt_bucket_past_n,
        _corrupt_huge_offset,
        _corrupt_decreasing,
        _corrupt_row_past_n,
        _corrupt_huge_row,
    ],
)
def test_corrupt_tables_raise_and_leave_no_state(tie_case, corrupt, num_threads):
    codes, queries, begins, widths, offsets, rows, key = tie_case
    n = len(codes)
    bad_offsets, bad_rows = offsets.copy(), rows.copy()
    corrupt(bad_offsets, bad_rows, key, n)
    bad = (begins, widths, bad_offsets, bad_rows, n)
    for _ in range(2):
        for k in (1, n):
            with pytest.raises(ValueError, match="corrupt MIH table"):
                _core.mih_knn(codes, queries, k, *bad, HUGE_WORK)
            assert_exact_after(tie_case)
        for radius in (0, 64):
            with pytest.raises(ValueError, match="corrupt MIH table"):
                _core.mih_range(codes, queries, radius, *bad, HUGE_WORK)
            assert_exact_after(tie_case)
    # the same data through the removed-row path and a single query
    removed = bitmap([1, 2], n)
    with pytest.raises(ValueError, match="corrupt MIH table"):
        _core.mih_knn(codes, queries[:1], 3, *bad, HUGE_WORK, removed)
    assert_exact_after(tie_case)


def _valid_args(case):
    codes, queries, begins, widths, offsets, rows, _ = case
    return {
        "codes": codes,
        "queries": queries,
        "begins": begins,
        "widths": widths,
        "offsets": offsets,
        "rows": rows,
        "n_indexed": len(codes),
        "max_work": HUGE_WORK,
        "removed": None,
    }


def _knn(args, k=3):
    return _core.mih_knn(k=k, **args)


def _range(args, max_distance=3):
    return _core.mih_range(max_distance=max_distance, **args)


BAD_ARGS = [
    # (name, change to the valid arguments, exception, message)
    ("offsets int64", lambda a: {"offsets": a["offsets"].astype(np.int64)}, TypeError, "offsets"),
    ("offsets int32", lambda a: {"offsets": a["offsets"].view(np.int32)}, TypeError, "offsets"),
    ("offsets short", lambda a: {"offsets": a["offsets"][:-1].copy()}, ValueError, "offsets"),
    (
        "offsets long",
        lambda a: {"offsets": np.append(a["offsets"], np.uint32(0))},
        ValueError,
        "offsets",
    ),
    ("offsets 2-D", lambda a: {"offsets": a["offsets"][None]}, ValueError, "offsets"),
    (
        "offsets strided",
        lambda a: {"offsets": np.repeat(a["offsets"], 2)[::2]},
        ValueError,
        "offsets",
    ),
    ("rows int64", lambda a: {"rows": a["rows"].astype(np.int64)}, TypeError, "rows"),
    ("rows short", lambda a: {"rows": a["rows"][:-1].copy()}, ValueError, "rows"),
    ("rows for n - 1", lambda a: {"n_indexed": len(a["codes"]) - 1}, ValueError, "rows"),
    ("begins int64", lambda a: {"begins": a["begins"].astype(np.int64)}, TypeError, "begins"),
    ("begins float", lambda a: {"begins": a["begins"].astype(np.float32)}, TypeError, "begins"),
    ("begins 2-D", lambda a: {"begins": a["begins"][None]}, ValueError, "begins"),
    ("widths short", lambda a: {"widths": a["widths"][:-1].copy()}, ValueError, "widths"),
    ("widths int32", lambda a: {"widths": a["widths"].view(np.int32)}, TypeError, "widths"),
    ("width 0", lambda a: {"widths": _set(a["widths"], -1, 0)}, ValueError, r"\[1, 32\]"),
    ("width 33", lambda a: {"widths": _set(a["widths"], 0, 33)}, ValueError, r"\[1, 32\]"),
    (
        "past the code",
        lambda a: {"begins": _set(a["begins"], -1, a["begins"][-1] + 1)},
        ValueError,
        "outside",
    ),
    ("begin huge", lambda a: {"begins": _set(a["begins"], 0, 2**32 - 1)}, ValueError, "outside"),
    ("no substring", lambda a: {"begins": u32([]), "widths": u32([])}, ValueError, "substring"),
    ("n_indexed > n", lambda a: {"n_indexed": len(a["codes"]) + 1}, ValueError, "rows"),
    ("n_indexed < 0", lambda a: {"n_indexed": -1}, ValueError, "n_indexed"),
    ("n_indexed float", lambda a: {"n_indexed": 500.0}, TypeError, "n_indexed"),
    ("max_work < 0", lambda a: {"max_work": -1}, (ValueError, OverflowError), "max_work"),
    ("max_work float", lambda a: {"max_work": 1.5}, TypeError, "max_work"),
    ("removed short", lambda a: {"removed": np.zeros(7, np.uint64)}, ValueError, "removed"),
    ("removed int64", lambda a: {"removed": np.zeros(8, np.int64)}, TypeError, "removed"),
    ("queries width", lambda a: {"queries": a["queries"][:, :7].copy()}, ValueError, "bytes"),
    ("codes int8", lambda a: {"codes": a["codes"].view(np.int8)}, TypeError, "codes"),
    ("bit_order short", lambda a: {"bit_order": u32(range(63))}, ValueError, "bit_order"),
    ("bit_order long", lambda a: {"bit_order": u32(range(65))}, ValueError, "bit_order"),
    ("bit_order int64", lambda a: {"bit_order": np.arange(64)}, TypeError, "bit_order"),
    ("bit_order list", lambda a: {"bit_order": list(range(64))}, TypeError, "bit_order"),
    ("bit_order repeats", lambda a: {"bit_order": u32([0, *range(63)])}, ValueError, "permutation"),
    ("bit_order past", lambda a: {"bit_order": u32(range(1, 65))}, ValueError, "permutation"),
]


def _set(array, at, value):
    out = array.astype(np.int64)
    out[at] = value
    return u32(out)


@pytest.mark.parametrize(
    ("change", "error", "match"), [b[1:] for b in BAD_ARGS], ids=[b[0] for b in BAD_ARGS]
)
def test_bad_arguments_raise_and_leave_no_state(tie_case, change, error, match):
    args = _valid_args(tie_case)
    args.update(change(args))
    for call in (_knn, _range):
        with pytest.raises(error, match=match):
            call(args)
    assert_exact_after(tie_case)


@pytest.mark.parametrize("kind", ["uniform", "clustered", "ties"])
@pytest.mark.parametrize(
    "begins, widths",
    [([0, 17], [17, 15]), ([0, 24, 42], [24, 18, 6]), ([8, 0], [20, 8])],
    ids=["17-bit", "24-bit", "20-bit-offset"],
)
def test_wide_tables_equal_the_reference(rng, kind, begins, widths):
    """Tables wider than 16 bits are sorted in two passes (partitions of the key's leading
    bits, then buckets in cache): the same offsets and rows as one stable counting sort,
    with and without a bit order, with rows spread over every partition or a few."""
    n_bits = 8 * -(-sum(widths) // 8)
    codes = make_codes(kind, rng, 3000, n_bits // 8)
    b, w = u32(begins), u32(widths)
    offsets, rows = _core.mih_build(codes, b, w)
    check_layout(codes, b, w, offsets, rows)
    order = u32(rng.permutation(n_bits))
    offsets, rows = _core.mih_build(codes, b, w, order)
    check_layout(codes, b, w, offsets, rows, order)


@pytest.mark.parametrize(
    ("begins", "widths", "match"),
    [
        ([0, 32], [32, 0], r"\[1, 32\]"),
        ([0, 31], [31, 33], r"\[1, 32\]"),
        ([0, 20], [20, 45], r"\[1, 32\]"),
        ([0, 40], [20, 25], "outside"),
        ([0, 60], [20, 5], "outside"),
        ([], [], "substring"),
    ],
)
def test_build_refuses_bad_plans(tie_case, begins, widths, match):
    codes = tie_case[0]
    with pytest.raises(ValueError, match=match):
        _core.mih_build(codes, u32(begins), u32(widths))
    with pytest.raises(TypeError, match="begins"):
        _core.mih_build(codes, np.array(begins, dtype=np.int64), u32(widths))
    with pytest.raises(ValueError, match="widths"):
        _core.mih_build(codes, u32([0, 8]), u32([8]))


@pytest.mark.parametrize(
    ("bit_order", "error", "match"),
    [
        (u32(range(63)), ValueError, "bit_order"),
        (np.arange(64), TypeError, "bit_order"),
        (u32([5, *range(63)]), ValueError, "permutation"),
        (u32([*range(63), 64]), ValueError, "permutation"),
    ],
)
def test_build_refuses_bad_bit_orders(tie_case, bit_order, error, match):
    codes, _, begins, widths, *_ = tie_case
    with pytest.raises(error, match=match):
        _core.mih_build(codes, begins, widths, bit_order)


def test_k_and_radius_limits(tie_case):
    codes, queries, begins, widths, offsets, rows, _ = tie_case
    n = len(codes)
    tables = (begins, widths, offsets, rows, n)
    for k in (0, -1, n + 1):
        with pytest.raises(ValueError, match="k must be"):
            _core.mih_knn(codes, queries, k, *tables, HUGE_WORK)
    removed = bitmap([0, 7, 499], n)
    with pytest.raises(ValueError, match="k must be"):
        _core.mih_knn(codes, queries, n - 2, *tables, HUGE_WORK, removed)
    _core.mih_knn(codes, queries, n - 3, *tables, HUGE_WORK, removed)
    # k counts the live *indexed* rows: rows past n_indexed (and their removed bits) do not
    sub_offsets, sub_rows = _core.mih_build(codes[:450], begins, widths)
    sub = (begins, widths, sub_offsets, sub_rows, 450)
    with pytest.raises(ValueError, match="k must be"):
        _core.mih_knn(codes, queries, 450 - 1, *sub, HUGE_WORK, removed)
    d, i, _ = _core.mih_knn(codes, queries, 450 - 2, *sub, HUGE_WORK, removed)
    assert i.max() < 450 and not np.isin(i, [0, 7]).any()
    for radius in (-1, -(2**70)):
        with pytest.raises(ValueError, match="max_distance"):
            _core.mih_range(codes, queries, radius, *tables, HUGE_WORK)
    with pytest.raises(TypeError, match="max_distance"):
        _core.mih_range(codes, queries, 2.0, *tables, HUGE_WORK)
    for radius in (64, 65, 2**31, 2**70):  # saturated: everything
        lims, _, _, _ = _core.mih_range(codes, queries, radius, *tables, HUGE_WORK)
        np.testing.assert_array_equal(np.diff(lims), n)
    assert_exact_after(tie_case)


def run_child(code: str) -> subprocess.CompletedProcess:
    """Runs code in a fresh interpreter (a crash must not take the test run with it)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_range_kernel_with_no_queries():
    child = run_child(
        """
        import numpy as np
        from deephash_ext import BinaryIndex, _core, _mih
        codes = np.random.default_rng(0).integers(0, 256, (2048, 8), dtype=np.uint8)
        none = codes[:0]
        begins, widths = _mih.plan_substrings(64, 2048)
        offsets, rows = _core.mih_build(codes, begins, widths)
        lims, d, i, fallback = _core.mih_range(
            codes, none, 3, begins, widths, offsets, rows, 2048, 10**9)
        assert lims.tolist() == [0] and len(d) == len(i) == len(fallback) == 0
        for method in ("flat", "mih", "auto"):
            index = BinaryIndex(64, method=method)
            index.add(codes)
            lims, d, i = index.range_search(none, 3)
            assert lims.tolist() == [0] and len(d) == len(i) == 0
        print("ok")
        """
    )
    assert child.returncode == 0 and child.stdout.strip() == "ok", (
        child.returncode,
        child.stderr[-2000:],
    )


def test_overlapping_substrings_are_refused_or_exact():
    child = run_child(
        """
        import numpy as np
        from deephash_ext import _core
        from reference import knn_reference, range_reference
        codes = np.random.default_rng(0).integers(0, 256, (300, 1), dtype=np.uint8)
        q = np.zeros((1, 1), np.uint8)
        begins, widths = np.zeros(4, np.uint32), np.full(4, 8, np.uint32)  # 4 x bits 0..7
        try:
            offsets, rows = _core.mih_build(codes, begins, widths)
            tables = (begins, widths, offsets, rows, 300)
            for k in (1, 50, 300):
                d, i, fallback = _core.mih_knn(codes, q, k, *tables, 10**12)
                if not fallback.any():
                    ed, ei = knn_reference(codes, q, k)
                    assert (d == ed).all() and (i == ei).all(), k
            lims, d, i, fallback = _core.mih_range(codes, q, 8, *tables, 10**12)
            if not fallback.any():
                assert lims.tolist() == range_reference(codes, q, 8)[0].tolist()
        except ValueError as error:  # refusing such a plan is fine too
            assert "overlap" in str(error) or "substring" in str(error), error
        print("ok")
        """
    )
    assert child.returncode == 0 and child.stdout.strip() == "ok", (
        child.returncode,
        child.stderr[-2000:],
    )


# ============================================================================ 4. BinaryIndex


class KernelSpy:
    """Wraps MihEngine.knn / range to record, per call, how many queries the tables
    answered, gave up (then scanned) and scanned without trying (MihSearcher.counts)."""

    def __init__(self, mp: pytest.MonkeyPatch) -> None:
        self.knn: list[tuple[int, int, int]] = []
        self.range: list[tuple[int, int, int]] = []

        def wrap(method, log):
            def spy(engine, *args, **kwargs):
                before = engine.searcher.counts()
                out = method(engine, *args, **kwargs)
                log.append(tuple(a - b for a, b in zip(engine.searcher.counts(), before)))
                return out

            return spy

        mp.setattr(_mih.MihEngine, "knn", wrap(_mih.MihEngine.knn, self.knn))
        mp.setattr(_mih.MihEngine, "range", wrap(_mih.MihEngine.range, self.range))

    def reset(self) -> None:
        self.knn.clear()
        self.range.clear()

    @staticmethod
    def total(log: list[tuple[int, int, int]]) -> tuple[int, int, int]:
        """(answered by the tables, gave up, scanned without trying) over the calls."""
        return tuple(int(sum(c[i] for c in log)) for i in range(3))  # type: ignore[return-value]


def set_budget(mp: pytest.MonkeyPatch, budget: str) -> None:
    """Budget "fallback": every budget 1 (and radius search never refused up front), so
    queries are scanned after the kernel gives up; "exact": budgets nothing exceeds."""
    if budget == "fallback":
        mp.setattr(_mih, "KNN_SHARE", {"mih": 0.0, "auto": 0.0})
        mp.setattr(_mih, "RANGE_SHARE", {"mih": 0.0, "auto": 0.0})
        mp.setattr(_mih, "MIN_WORK", 1)
        mp.setattr(_mih, "expected_range_work", lambda *args: 0.0)
    elif budget == "exact":  # no work cap, no time limit that a test could reach
        mp.setattr(_mih, "KNN_SHARE", {"mih": 1e6, "auto": 1e6})
        mp.setattr(_mih, "RANGE_SHARE", {"mih": 1e6, "auto": 1e6})
        mp.setattr(_mih, "MIN_WORK", 10**15)
        mp.setattr(_mih, "expected_range_work", lambda *args: 0.0)


def compare_methods(index: BinaryIndex, queries: np.ndarray, every_radius_up_to: int = 72):
    """mih and auto against flat (and flat against the reference), every k and radius."""
    method = index.method
    n = len(index)
    index.method = "flat"
    ids = index.ids
    ranked = (None, None)
    if n:
        d, order = rank_reference(index.get(ids), queries)
        ranked = (d, ids[order])
    radii = radii_for(index.n_bits, ranked[0] if n else np.zeros(1), every_radius_up_to)
    ks = ks_for(n)
    flat_knn = {k: index.search(queries, k) for k in ks}
    flat_one = index.search(queries[0], ks[0]) if n else None
    flat_range = {r: index.range_search(queries, r) for r in radii}
    for k in ks:
        assert_same(flat_knn[k], (ranked[0][:, :k], ranked[1][:, :k]))
    if n:
        for r in radii[:: max(1, len(radii) // 5)]:
            assert_same(flat_range[r], range_from_ranking(ranked, r))
    for other in ("mih", "auto"):
        index.method = other
        for k in ks:
            assert_same(index.search(queries, k), flat_knn[k])
        if n:
            assert_same(index.search(queries[0], ks[0]), flat_one)
        for r in radii:
            assert_same(index.range_search(queries, r), flat_range[r])
        for r in radii[:: max(1, len(radii) // 4)]:  # a 1-D query
            lims, d, i = flat_range[r]
            assert_same(index.range_search(queries[0], r), (lims[:2], d[: lims[1]], i[: lims[1]]))
    index.method = method


OPS = ["add", "add", "upsert", "remove", "remove", "compact", "save", "method"]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    n_bits=st.sampled_from(WIDTHS),
    budget=st.sampled_from(["default", "fallback", "exact"]),
    seed=st.integers(0, 2**32 - 1),
    ops=st.lists(st.sampled_from(OPS), min_size=1, max_size=8),
    data=st.data(),
)
def test_index_methods_agree(n_bits, budget, seed, ops, data):
    rng = np.random.default_rng(seed)
    cb = n_bits // 8
    bases = rng.integers(0, 256, (5, cb), dtype=np.uint8)

    def draw_codes(m):
        codes = flip_bits(rng, bases[rng.integers(0, 5, m)], 2)
        noisy = rng.random(m) < 0.2
        codes[noisy] = rng.integers(0, 256, (int(noisy.sum()), cb), dtype=np.uint8)
        return codes

    queries = np.concatenate([bases[:2], flip_bits(rng, bases[:2], 1), draw_codes(2)])
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as tmp:
        mp.setattr(_mih, "MIN_ROWS", 64)  # tables from 64 rows; rebuilt past 256 added
        set_budget(mp, budget)
        spy = KernelSpy(mp)
        path = Path(tmp) / "index.dhx"
        threshold = data.draw(st.sampled_from([None, 0.25]), label="threshold")
        method = data.draw(st.sampled_from(["flat", "mih", "auto"]), label="method")
        bits = data.draw(st.sampled_from(["contiguous", "decorrelated"]), label="mih_bits")
        index = BinaryIndex(n_bits, compact_threshold=threshold, method=method, mih_bits=bits)
        index.add(draw_codes(data.draw(st.integers(40, 300), label="n0")))
        for op in ["check", *ops]:
            if op == "add":
                index.add(draw_codes(data.draw(st.integers(1, 160), label="m")))
            elif op == "upsert":
                live = index.ids
                old = live[rng.integers(0, len(live), 4)] if len(live) else live
                new = np.arange(index.next_id, index.next_id + 3)
                ids = np.unique(np.concatenate([old, new]))
                index.add(draw_codes(len(ids)), ids=ids, upsert=True)
            elif op == "remove":
                live = index.ids
                share = data.draw(st.sampled_from([0.05, 0.3]), label="share")
                gone = live[rng.random(len(live)) < share]
                index.remove(np.concatenate([gone, live[:1], [index.next_id + 5]]))
            elif op == "compact":
                index.compact()
            elif op == "save":
                index.save(path)
                index = BinaryIndex.load(path, mmap=data.draw(st.booleans(), label="mmap"))
                index.method = method
            elif op == "method":
                method = data.draw(st.sampled_from(["flat", "mih", "auto"]), label="to")
                index.method = method
                index.mih_bits = data.draw(
                    st.sampled_from(["contiguous", "decorrelated"]), label="bits"
                )
            spy.reset()
            snapshot = index._snapshot
            compare_methods(index, queries)
            if snapshot.n_rows // 64 * 64 >= 64 and len(index):
                # the searches used tables (built, or kept with a scanned tail)
                tables = index._snapshot.mih
                assert tables is not None
                head = snapshot.removed[: tables.n_indexed // 64] if snapshot.n_removed else None
                live_head = _mih._live(head, tables.n_indexed)
                assert spy.knn and spy.range
                assert tables.n_indexed % 64 == 0 and tables.n_indexed <= snapshot.n_rows
                assert not _mih.stale(tables, snapshot.n_rows)
                knn, ranges = spy.total(spy.knn), spy.total(spy.range)
                if live_head == 0:  # k-NN has nothing to ask the tables: scanned
                    assert knn[0] == knn[1] == 0 and knn[2] > 0
                elif budget == "exact":  # every query answered by the tables, none gave up
                    assert knn[1] == knn[2] == 0 and knn[0] > 0
                elif budget == "fallback":  # every k-NN query gave up (or "auto" skipped it)
                    assert knn[0] == 0 and knn[1] > 0
                if budget == "exact":
                    assert ranges[1] == ranges[2] == 0 and ranges[0] > 0
        del index, snapshot  # unmap before the directory goes


def test_index_tail_and_rebuild_at_default_thresholds(rng):
    """No monkeypatching: tables from MIN_ROWS rows, a scanned tail, then a rebuild."""
    cb = 8
    codes = make_codes("clustered", rng, 2 * _mih.MIN_ROWS + 6000, cb)
    queries = make_queries(rng, codes)
    index = BinaryIndex(64, method="mih", compact_threshold=None)
    index.add(codes[: _mih.MIN_ROWS + 50])
    compare_methods(index, queries, every_radius_up_to=0)
    first = index._snapshot.mih
    assert first is not None and first.n_indexed == _mih.MIN_ROWS  # 50 rows in the tail
    index.add(codes[_mih.MIN_ROWS + 50 : _mih.MIN_ROWS + 3000])
    index.remove(np.arange(0, 3000, 7))
    compare_methods(index, queries, every_radius_up_to=0)
    assert index._snapshot.mih is first  # a tail of 3000 rows: scanned, no rebuild
    index.add(codes[_mih.MIN_ROWS + 3000 :])
    compare_methods(index, queries, every_radius_up_to=0)
    rebuilt = index._snapshot.mih
    assert rebuilt is not first and rebuilt.n_indexed == len(codes) // 64 * 64
    index.compact()
    compare_methods(index, queries, every_radius_up_to=0)
    assert index._snapshot.mih is not None and index._snapshot.mih is not rebuilt


def test_index_decorrelated_substrings_saved_and_mapped(rng, tmp_path):
    """mih_bits="decorrelated": tables over a learned bit order, saved with the index and
    searched in place when mapped; every result equals the flat scan's."""
    half = make_codes("clustered", rng, 3000, 8)
    codes = np.ascontiguousarray(np.concatenate([half, half ^ 0x0F], axis=1))  # correlated
    queries = make_queries(rng, codes)
    index = BinaryIndex(128, method="mih", mih_bits="decorrelated", compact_threshold=None)
    index.add(codes[:2000])
    index.remove(np.arange(0, 2000, 9))
    compare_methods(index, queries)
    tables = index._snapshot.mih
    assert tables.bit_order is not None and tables.n_indexed == 1984
    np.testing.assert_array_equal(np.sort(tables.bit_order), np.arange(128))
    path = tmp_path / "decorrelated.dhx"
    index.save(path)
    for mmap in (False, True):
        loaded = BinaryIndex.load(path, mmap=mmap)
        assert loaded.method == "auto" and loaded.mih_bits == "decorrelated"
        from_file = loaded._snapshot.mih
        assert from_file is not None and from_file.n_indexed == 1984
        np.testing.assert_array_equal(from_file.bit_order, tables.bit_order)
        compare_methods(loaded, queries)
        assert loaded._snapshot.mih is from_file  # searched in place, not rebuilt
        loaded.add(codes[2000:])  # a tail of 1,016 rows after the file's tables
        compare_methods(loaded, queries)
        assert loaded._snapshot.mih is from_file
        loaded.compact()
        compare_methods(loaded, queries)
        rebuilt = loaded._snapshot.mih
        assert rebuilt is not from_file and rebuilt.bit_order is not None
        del loaded, from_file, rebuilt


def test_index_knn_with_no_queries(rng):
    codes = make_codes("clustered", rng, 1200, 9)
    for method in ("flat", "mih", "auto"):
        index = BinaryIndex(72, method=method)
        index.add(codes[:1100])
        index.search(codes[:1], 1)
        index.add(codes[1100:])  # a tail
        index.remove([0, 5, 1150])
        d, i = index.search(codes[:0], 7)
        assert d.shape == i.shape == (0, 7) and d.dtype == np.int32 and i.dtype == np.int64
        assert (index._snapshot.mih is not None) == (method != "flat")


def test_index_errors_agree_across_methods(rng):
    codes = make_codes("ties", rng, 1100, 8)
    results = {}
    for method in ("flat", "mih", "auto"):
        index = BinaryIndex(64, method=method)
        index.add(codes)
        got = []
        for call in (
            lambda: index.search(codes[:2], 0),
            lambda: index.search(codes[:2], 1101),
            lambda: index.search(codes[:2, :7], 1),
            lambda: index.range_search(codes[:2], -1),
            lambda: index.range_search(codes[:2], 2.0),
            lambda: index.range_search(codes[:2, :7], 1),
        ):
            with pytest.raises((TypeError, ValueError)) as info:
                call()
            got.append((info.type, str(info.value)))
        results[method] = got
        assert (index._snapshot.mih is not None) == (method != "flat")
    assert results["mih"] == results["flat"] == results["auto"]


# ============================================================================ 5. SIMD x threads


@functools.cache
def simd_case(n_bits: int):
    rng = np.random.default_rng(n_bits)
    n, cb = 20_000, n_bits // 8
    codes = make_codes("clustered", rng, n, cb)
    codes[rng.random(n) < 0.3] = rng.integers(0, 256, cb, dtype=np.uint8)  # exact ties
    gone = np.unique(np.concatenate([rng.choice(n, n // 20, replace=False), [0, 63, 64, n - 1]]))
    queries = np.concatenate([codes[[0, 1, 17_999, 18_000]], make_queries(rng, codes, 46)])
    live = np.setdiff1d(np.arange(n), gone)
    ranked = ranking(codes, queries, live)
    return codes, gone, queries, ranked


@pytest.mark.parametrize("n_bits", [64, 256])
def test_methods_agree_at_every_simd_level(n_bits, simd_level, num_threads):
    codes, gone, queries, ranked = simd_case(n_bits)
    index = BinaryIndex(n_bits, method="mih", compact_threshold=None)
    index.add(codes[:18_000])
    index.search(queries[:1], 1)  # builds the tables over the first 17,984 rows
    tables = index._snapshot.mih
    assert tables is not None and tables.n_indexed == 17_984
    index.add(codes[18_000:])  # the tail: 2,016 rows, scanned
    assert index.remove(gone) == len(gone)
    live = len(codes) - len(gone)
    for nq in (1, 3, 50):
        q = queries[:nq]
        few = nq < 4  # whole-index results (every row) only for a few queries
        for k in (1, 10, 100, live) if few else (1, 10, 100):
            expected = (ranked[0][:nq, :k], ranked[1][:nq, :k])
            for method in ("flat", "mih", "auto"):
                index.method = method
                assert_same(index.search(q, k), expected)
        radii = (0, 1, 3, 8, n_bits // 4) + ((n_bits // 2, n_bits) if few else ())
        for radius in radii:
            expected = range_from_ranking((ranked[0][:nq], ranked[1][:nq]), radius)
            for method in ("flat", "mih", "auto"):
                index.method = method
                assert_same(index.range_search(q, radius), expected)
    assert index._snapshot.mih is tables


# ======================================================== 6-7. plans and the cost model


@given(n_bits=st.integers(1, 4096), n_rows=st.integers(0, 2**33))
@settings(max_examples=300)
def test_plan_substrings(n_bits, n_rows):
    begins, widths = _mih.plan_substrings(n_bits, n_rows)
    assert begins.dtype == widths.dtype == np.uint32
    m = len(widths)
    assert len(begins) == m >= 1
    assert int(widths.sum()) == n_bits
    assert widths.min() >= 1 and widths.max() <= 32
    assert widths.max() - widths.min() <= 1
    assert np.all(np.diff(widths.astype(np.int64)) <= 0)  # the wider ones first
    np.testing.assert_array_equal(begins, np.concatenate(([0], np.cumsum(widths)[:-1])))
    per_table = max(math.log2(max(n_rows, 2)), 1.0)
    ideal = n_bits / per_table
    low = max(-(-n_bits // min(32, math.ceil(per_table))), 1)  # widths <= ceil(log2 n)
    if low <= ideal <= n_bits:
        assert abs(m - ideal) <= 0.5 + 1e-9
    elif ideal < low:
        assert m == low
    else:
        assert m == n_bits


@given(
    widths=st.lists(st.integers(1, 32), min_size=1, max_size=40),
    n_indexed=st.integers(0, 2**32 - 1),
)
def test_expected_range_work_is_monotone_in_the_radius(widths, n_indexed):
    widths = u32(widths)
    n_bits = int(widths.sum())
    work = [_mih.expected_range_work(widths, n_indexed, r) for r in range(-2, n_bits + 3)]
    assert work[0] == work[1] == 0.0
    assert all(a <= b for a, b in itertools.pairwise(work))
    assert work[2] == 1.0 + n_indexed / 2.0 ** int(widths[0])
    everything = sum(2.0**w + n_indexed for w in widths.tolist())  # every key of every table
    assert _mih.expected_range_work(widths, n_indexed, 10**6) == pytest.approx(everything)


def test_expected_range_work_matches_uniform_codes(rng):
    """On uniform codes the model is the mean of the kernel's work (within noise)."""
    codes = rng.integers(0, 256, (4096, 4), dtype=np.uint8)
    queries = rng.integers(0, 256, (256, 4), dtype=np.uint8)
    begins, widths = _mih.plan_substrings(32, 4096)
    work = probe_work(codes, queries, begins, widths)
    for radius in (0, 2, 5, 9):
        model = _mih.expected_range_work(widths, 4096, radius)
        assert range_work(work, widths, radius, 32).mean() == pytest.approx(model, rel=0.1)


def test_time_budget_hands_slow_queries_to_the_scan():
    """max_ns: a query still searching after that many nanoseconds is flagged (the clock is
    read every 32 units of work), and the others stay exact; 0 means no time limit."""
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, (1 << 16, 8), dtype=np.uint8)
    begins, widths = _mih.plan_substrings(64, len(codes))
    offsets, rows = _core.mih_build(codes, begins, widths)
    tables = (begins, widths, offsets, rows, len(codes))
    far = rng.integers(0, 256, (4, 8), dtype=np.uint8)  # k = 50 needs thousands of probes
    _, _, flags = _core.mih_knn(codes, far, 50, *tables, 10**15, None, None, 1)
    assert flags.all()
    d, i, flags = _core.mih_knn(codes, far, 50, *tables, 10**15, None, None, 0)
    assert not flags.any()
    expected = knn_reference(codes, far, 50)
    np.testing.assert_array_equal(d, expected[0])
    np.testing.assert_array_equal(i, expected[1])
    with pytest.raises(TypeError, match="max_ns"):
        _core.mih_knn(codes, far, 50, *tables, 10**15, None, None, 1.5)


@pytest.mark.parametrize("tail", [0, 37])
def test_some_queries_fall_back_results_merge(monkeypatch, tail):
    """A batch where some queries give up and others do not (a small work cap): the scanned
    and the MIH results are placed per query, as the flat scan returns them."""
    rng = np.random.default_rng(5)
    bases = rng.integers(0, 256, (20, 8), dtype=np.uint8)
    codes = flip_bits(rng, bases[rng.integers(0, 20, 4096)], 3)
    codes[::3] = rng.integers(0, 256, (len(codes[::3]), 8), dtype=np.uint8)
    monkeypatch.setattr(_mih, "expected_range_work", lambda *args: 0.0)
    monkeypatch.setattr(_mih, "_budget", lambda share, scan_ns: (300, 0))  # 300 units, no clock
    spy = KernelSpy(monkeypatch)
    flat, mih = BinaryIndex(64), BinaryIndex(64, method="mih")
    for index in (flat, mih):
        index.add(codes)
    mih.search(codes[:1], 1)  # tables over the 4096 rows
    extra = rng.integers(0, 256, (tail, 8), dtype=np.uint8)
    for index in (flat, mih):
        index.add(extra)
    queries = np.concatenate(
        [flip_bits(rng, bases, 1), rng.integers(0, 256, (20, 8), dtype=np.uint8)]
    )
    mixed = []
    for radius in (0, 3, 8, 14):
        spy.reset()
        assert_same(mih.range_search(queries, radius), flat.range_search(queries, radius))
        answered, gave_up, _ = spy.total(spy.range)
        mixed.append(answered > 0 and gave_up > 0)
    for k in (1, 5, 40):
        spy.reset()
        assert_same(mih.search(queries, k), flat.search(queries, k))
        answered, gave_up, _ = spy.total(spy.knn)
        mixed.append(answered > 0 and gave_up > 0)
    assert sum(mixed) >= 2, mixed  # the merge really met batches of both kinds


def test_substrings_stay_near_log2_n_bits():
    """Never many more buckets than rows: 32-bit codes at 3M rows are not one 32-bit table
    (2^32 offsets); widths stay within ceil(log2 n)."""
    for n_bits, n_rows in [(32, 3_000_000), (64, 60_000_000), (256, 1_000_000), (64, 1100)]:
        _, widths = _mih.plan_substrings(n_bits, n_rows)
        assert int(widths.max()) <= int(np.ceil(np.log2(n_rows))), (n_bits, n_rows, widths)
        assert int(widths.sum()) == n_bits


def test_n_bits_beyond_the_file_format_is_refused():
    with pytest.raises(ValueError, match="n_bits must be at most"):
        BinaryIndex(8 * 65537)
    ids = np.array([1, 2], dtype=object)
    index = BinaryIndex(8)
    index.add(np.zeros((2, 1), np.uint8), ids=ids)  # an object array of Python ints
    assert index.ids.tolist() == [1, 2]


# ====================================================== 8. MihSearcher: one call per search


def make_searcher(codes: np.ndarray, n_indexed: int, decorrelate: bool = False):
    begins, widths = _mih.plan_substrings(8 * codes.shape[1], n_indexed)
    order = _mih.decorrelated_bit_order(codes[:n_indexed], widths) if decorrelate else None
    offsets, rows = _core.mih_build(codes[:n_indexed], begins, widths, order)
    return _core.MihSearcher(begins, widths, offsets, rows, n_indexed, order, codes.shape[1])


@pytest.mark.parametrize("tail", [0, 1, 130])
@pytest.mark.parametrize("code_bytes", [4, 9, 32])
@pytest.mark.parametrize("decorrelate", [False, True])
def test_searcher_equals_the_reference(rng, tail, code_bytes, decorrelate):
    """MIH with every budget (all answered, all given up, a mix), adaptive or not, with
    and without removed rows and a scanned tail: every call equals the reference ranking,
    single queries and batches; the counts add up to the queries asked."""
    n_indexed = 1024
    n = n_indexed + tail
    codes = make_codes("clustered", rng, n, code_bytes)
    codes[rng.random(n) < 0.2] = codes[0]  # exact ties across the head and the tail
    queries = make_queries(rng, codes, 4)
    searcher = make_searcher(codes, n_indexed, decorrelate)
    asked = 0
    for gone in (np.zeros(0, np.int64), np.unique(rng.integers(0, n, n // 3))):
        removed = bitmap(gone, n) if len(gone) else None
        live = np.setdiff1d(np.arange(n), gone)
        ranked = ranking(codes, queries, live)
        for max_work, adaptive in itertools.product((HUGE_WORK, 1, 60), (False, True)):
            for k in (1, 7, 100, len(live)):
                for rep in range(6):  # adaptive: the skipping state changes across calls
                    q = queries if rep % 2 else queries[rep // 2 : rep // 2 + 1]
                    rows = slice(None) if rep % 2 else slice(rep // 2, rep // 2 + 1)
                    got = searcher.knn(codes, q, k, removed, max_work, 0, adaptive)
                    assert_same(got, (ranked[0][rows, :k], ranked[1][rows, :k]))
                    asked += len(q)
            for radius in (0, 2, 5, 12, 8 * code_bytes, 10**9):
                expected = range_from_ranking(ranked, radius)
                for max_radius in (-1, 0, radius - 1, 10**6):
                    got = searcher.range(
                        codes, queries, radius, removed, max_work, 0, max_radius, adaptive
                    )
                    assert_same(got, expected)
                    asked += len(queries)
    assert sum(searcher.counts()) == asked
    answered, gave_up, scanned = searcher.counts()
    assert answered > 0 and gave_up > 0 and scanned > 0


def test_searcher_adaptive_skips_after_a_streak_and_retries():
    """After MihSearcher.kGiveUpStreak (4) queries of a class gave up, only every 16th
    (kTrialEvery) tries the tables; one that succeeds resets the class. k = 50 and k = 60
    share a class (bit width 6), k = 1 is another; radius classes are separate too."""
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 256, (4096, 8), dtype=np.uint8)
    searcher = make_searcher(codes, 4096)
    q = rng.integers(0, 256, (1, 8), dtype=np.uint8)
    expected = knn_reference(codes, q, 50)

    def delta(call):
        before = searcher.counts()
        got = call()
        return got, tuple(a - b for a, b in zip(searcher.counts(), before))

    for max_work, adaptive, counts in [
        (1, False, (0, 36, 0)),  # never skipped without adaptive
        (1, True, (0, 6, 30)),  # 4 give up, then calls 5 and 21 try
    ]:
        fresh = make_searcher(codes, 4096) if adaptive else searcher
        searcher = fresh
        total = (0, 0, 0)
        for _ in range(36):
            got, d = delta(lambda: searcher.knn(codes, q, 50, None, max_work, 0, adaptive))
            np.testing.assert_array_equal(got[1], expected[1])
            total = tuple(a + b for a, b in zip(total, d))
        assert total == counts
    # the 37th query of the class is a trial: with room it succeeds and resets the class
    _, d = delta(lambda: searcher.knn(codes, q, 60, None, HUGE_WORK, 0, True))
    assert d == (1, 0, 0)
    _, d = delta(lambda: searcher.knn(codes, q, 50, None, HUGE_WORK, 0, True))
    assert d == (1, 0, 0)
    # another class (k = 1) and a radius class were never skipped
    _, d = delta(lambda: searcher.knn(codes, q, 1, None, HUGE_WORK, 0, True))
    assert d == (1, 0, 0)
    # a batch decides for its queries before it searches: all of the first batch try,
    # the next one only every 16th
    batch = rng.integers(0, 256, (40, 8), dtype=np.uint8)
    _, d = delta(lambda: searcher.range(codes, batch, 30, None, 1, 0, 10**6, True))
    assert d == (0, 40, 0)
    _, d = delta(lambda: searcher.range(codes, batch, 30, None, 1, 0, 10**6, True))
    assert d == (0, 3, 37)
    # a radius above max_radius is scanned without trying
    _, d = delta(lambda: searcher.range(codes, batch, 3, None, HUGE_WORK, 0, 2, True))
    assert d == (0, 0, 40)


def test_searcher_checks_its_arguments(rng):
    codes = make_codes("clustered", rng, 1100, 8)
    begins, widths = _mih.plan_substrings(64, 1024)
    offsets, rows = _core.mih_build(codes[:1024], begins, widths)
    with pytest.raises(ValueError, match="multiple of 64"):
        offsets_o, rows_o = _core.mih_build(codes[:1000], begins, widths)
        _core.MihSearcher(begins, widths, offsets_o, rows_o, 1000, None, 8)
    with pytest.raises(ValueError, match="code_bytes"):
        _core.MihSearcher(begins, widths, offsets, rows, 1024, None, 0)
    with pytest.raises(ValueError, match="outside a code of 56 bits"):
        _core.MihSearcher(begins, widths, offsets, rows, 1024, None, 7)
    with pytest.raises(ValueError, match="rows must be a contiguous 1-D array"):
        _core.MihSearcher(begins, widths, offsets, rows[:-1], 1024, None, 8)
    with pytest.raises(TypeError, match="offsets must be a uint32 array"):
        _core.MihSearcher(begins, widths, offsets.astype(np.int64), rows, 1024, None, 8)
    searcher = _core.MihSearcher(begins, widths, offsets, rows, 1024, None, 8)
    q = codes[:2]
    with pytest.raises(ValueError, match="MIH tables index 1024 rows but the codes have 512"):
        searcher.knn(codes[:512], q, 1, None, 10, 0, False)
    wide = np.zeros((1100, 9), np.uint8)
    with pytest.raises(ValueError, match="9 bytes per code but the MIH tables were built for 8"):
        searcher.range(wide, wide[:2], 1, None, 10, 0, -1, False)
    with pytest.raises(ValueError, match="queries have 9 bytes per code but codes have 8"):
        searcher.knn(codes, wide[:2], 1, None, 10, 0, False)
    with pytest.raises(ValueError, match="k must be in"):
        searcher.knn(codes, q, 0, None, 10, 0, False)
    with pytest.raises(ValueError, match="max_distance must be >= 0"):
        searcher.range(codes, q, -1, None, 10, 0, -1, False)
    with pytest.raises(TypeError, match="max_distance must be an integer"):
        searcher.range(codes, q, 2.0, None, 10, 0, -1, False)
    with pytest.raises(ValueError, match="max_radius"):
        searcher.range(codes, q, 1, None, 10, 0, -2, False)
    with pytest.raises(ValueError, match="max_work"):
        searcher.knn(codes, q, 1, None, -1, 0, False)
    with pytest.raises(TypeError, match="max_ns"):
        searcher.knn(codes, q, 1, None, 10, 0.5, False)
    with pytest.raises(TypeError, match="adaptive"):
        searcher.knn(codes, q, 1, None, 10, 0, "yes")
    with pytest.raises(ValueError, match="removed must be a contiguous 1-D array"):
        searcher.knn(codes, q, 1, np.zeros(3, np.uint64), 10, 0, False)
    assert searcher.counts() == (0, 0, 0)
