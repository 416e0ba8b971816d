"""deephash_ext.shards (per-shard search and the merges) and calling_thread_num_threads.

Every merge is compared with the NumPy reference run on the concatenated rows: a database
cut into shards anywhere, searched shard by shard and merged, must give exactly the single
search's result, ties included (tie-heavy codes make many).
"""

from __future__ import annotations

import itertools
import threading

import deephash_ext
import numpy as np
import pytest
from deephash_ext import _core
from deephash_ext.shards import merge_range, merge_topk, range_search_shard, search_shard
from reference import knn_reference, range_reference, tie_heavy_codes


def random_cuts(rng: np.random.Generator, n: int, n_shards: int) -> list[int]:
    """Shard boundaries 0 = c_0 <= ... <= c_S = n, empty shards allowed."""
    inner = np.sort(rng.integers(0, n + 1, size=n_shards - 1))
    return [0, *inner.tolist(), n]


def sharded_search(codes, queries, k, cuts):
    parts = [search_shard(codes[a:b], queries, k, offset=a) for a, b in itertools.pairwise(cuts)]
    return merge_topk(parts, k)


@pytest.mark.parametrize("n_shards", [1, 2, 3, 7, 33])
@pytest.mark.parametrize("k", [1, 5, 40, 300])
def test_sharded_topk_equals_single_search(rng, n_shards, k, num_threads, simd_level):
    codes = tie_heavy_codes(rng, 300, 8, n_distinct=5)
    codes[::7] = rng.integers(0, 256, size=(len(codes[::7]), 8), dtype=np.uint8)
    queries = np.concatenate([codes[:3], rng.integers(0, 256, (4, 8), dtype=np.uint8)])
    for _ in range(3):
        distances, positions = sharded_search(codes, queries, k, random_cuts(rng, 300, n_shards))
        ref_d, ref_i = knn_reference(codes, queries, k)
        np.testing.assert_array_equal(distances, ref_d)
        np.testing.assert_array_equal(positions, ref_i)


@pytest.mark.parametrize("n_shards", [1, 4, 17])
@pytest.mark.parametrize("radius", [0, 3, 64])
def test_sharded_range_equals_single_search(rng, n_shards, radius):
    codes = tie_heavy_codes(rng, 200, 8, n_distinct=4)
    queries = np.concatenate([codes[:2], rng.integers(0, 256, (3, 8), dtype=np.uint8)])
    cuts = random_cuts(rng, 200, n_shards)
    parts = [
        range_search_shard(codes[a:b], queries, radius, offset=a)
        for a, b in itertools.pairwise(cuts)
    ]
    lims, distances, positions = merge_range(parts)
    ref = range_reference(codes, queries, radius)
    for got, want in zip((lims, distances, positions), ref):
        np.testing.assert_array_equal(got, want)


def test_merges_are_associative_over_adjacent_groups(rng):
    """A tree of merges (what a cluster runs) equals one flat merge."""
    codes = tie_heavy_codes(rng, 400, 4, n_distinct=6)
    queries = rng.integers(0, 256, (5, 4), dtype=np.uint8)
    cuts = random_cuts(rng, 400, 9)
    parts = [search_shard(codes[a:b], queries, 50, offset=a) for a, b in itertools.pairwise(cuts)]
    tree = merge_topk([merge_topk(parts[i : i + 2], 50) for i in range(0, 9, 2)], 50)
    flat = merge_topk(parts, 50)
    np.testing.assert_array_equal(tree[0], flat[0])
    np.testing.assert_array_equal(tree[1], flat[1])


def test_merge_topk_keeps_uint64_payloads_and_widths(rng):
    d = [np.array([[0, 2, 2]], np.int32), np.empty((1, 0), np.int32), np.array([[2]], np.int32)]
    ids = [
        np.array([[2**64 - 1, 5, 6]], np.uint64),
        np.empty((1, 0), np.uint64),
        np.array([[1]], np.uint64),
    ]
    distances, payloads = merge_topk(list(zip(d, ids)), 10)
    assert payloads.dtype == np.uint64
    np.testing.assert_array_equal(distances, [[0, 2, 2, 2]])
    np.testing.assert_array_equal(payloads, np.array([[2**64 - 1, 5, 6, 1]], np.uint64))
    distances, payloads = merge_topk(list(zip(d, ids)), 2)
    np.testing.assert_array_equal(payloads, np.array([[2**64 - 1, 5]], np.uint64))


def test_merge_topk_of_empty_parts_and_no_queries():
    empty = (np.empty((3, 0), np.int32), np.empty((3, 0), np.int64))
    distances, payloads = merge_topk([empty, empty], 4)
    assert distances.shape == payloads.shape == (3, 0)
    none = (np.empty((0, 5), np.int32), np.empty((0, 5), np.int64))
    assert merge_topk([none], 2)[0].shape == (0, 2)


def test_search_shard_of_an_empty_or_small_shard(rng):
    queries = rng.integers(0, 256, (2, 4), dtype=np.uint8)
    d, p = search_shard(np.empty((0, 4), np.uint8), queries, 5, offset=10)
    assert d.shape == p.shape == (2, 0) and d.dtype == np.int32 and p.dtype == np.int64
    codes = rng.integers(0, 256, (3, 4), dtype=np.uint8)
    d, p = search_shard(codes, queries[0], 5, offset=10)
    assert d.shape == (1, 3) and set(p[0].tolist()) == {10, 11, 12}
    lims, d, p = range_search_shard(np.empty((0, 4), np.uint8), queries, 3)
    np.testing.assert_array_equal(lims, [0, 0, 0])
    assert len(d) == len(p) == 0


@pytest.mark.parametrize(
    ("parts", "k", "error", "match"),
    [
        ([], 3, ValueError, "at least one"),
        (
            [(np.array([[1, 0]], np.int32), np.array([[0, 1]], np.int64))],
            2,
            ValueError,
            "non-decreasing",
        ),
        (
            [(np.array([[-1]], np.int32), np.array([[0]], np.int64))],
            2,
            ValueError,
            "non-decreasing",
        ),
        (
            [(np.array([[1]], np.int64), np.array([[0]], np.int64))],
            2,
            TypeError,
            r"parts\[0\]\[0\]",
        ),
        (
            [(np.array([[1]], np.int32), np.array([[0]], np.int32))],
            2,
            TypeError,
            r"parts\[0\]\[1\]",
        ),
        ([(np.array([[1]], np.int32), np.array([[0, 1]], np.int64))], 2, ValueError, "shape"),
        (
            [
                (np.array([[1]], np.int32), np.array([[0]], np.int64)),
                (np.array([[1], [2]], np.int32), np.array([[0], [1]], np.int64)),
            ],
            2,
            ValueError,
            "rows",
        ),
        (
            [
                (np.array([[1]], np.int32), np.array([[0]], np.int64)),
                (np.array([[1]], np.int32), np.array([[0]], np.uint64)),
            ],
            2,
            TypeError,
            "dtype",
        ),
        (
            [(np.array([[2**25]], np.int32), np.array([[0]], np.int64))],
            2,
            ValueError,
            "16777216",
        ),
        ([(np.array([[1]], np.int32), np.array([[0]], np.int64))], 0, ValueError, "k must be"),
        ([(np.array([[1]], np.int32), np.array([[0]], np.int64))], 1.5, TypeError, "k must be"),
    ],
)
def test_merge_topk_errors(parts, k, error, match):
    with pytest.raises(error, match=match):
        merge_topk(parts, k)


def test_merge_range_errors():
    good = (np.array([0, 1], np.int64), np.array([3], np.int32), np.array([7], np.int64))
    with pytest.raises(ValueError, match="at least one"):
        merge_range([])
    with pytest.raises(ValueError, match="not a range result"):
        merge_range([good, (np.array([0, 2], np.int64), *good[1:])])
    with pytest.raises(ValueError, match="not a range result"):
        merge_range([good, (np.array([0, 0, 1], np.int64), *good[1:])])
    with pytest.raises(TypeError, match="dtype"):
        merge_range([good, (good[0], good[1], good[2].astype(np.uint64))])
    with pytest.raises(TypeError, match="int32"):
        merge_range([(good[0], good[1].astype(np.int64), good[2])])


def test_shard_argument_errors(rng):
    codes = rng.integers(0, 256, (4, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="offset"):
        search_shard(codes, codes[0], 1, offset=-1)
    with pytest.raises(ValueError, match="k must be"):
        search_shard(codes, codes[0], 0)
    with pytest.raises(ValueError, match="bytes per code"):
        search_shard(np.empty((0, 4), np.uint8), codes[0, :2], 1)
    with pytest.raises(TypeError, match="uint8"):
        search_shard(codes.astype(np.int16), codes[0], 1)
    with pytest.raises(ValueError, match="max_distance"):
        range_search_shard(np.empty((0, 4), np.uint8), codes[0], -1)


def test_merge_topk_core_is_linear_in_parts_and_checks_each(rng):
    """The compiled merge against a stable sort of the concatenation, 64 parts of width k."""
    nq, k = 50, 20
    d = [np.sort(rng.integers(0, 9, (nq, k)), axis=1).astype(np.int32) for _ in range(64)]
    p = [rng.integers(0, 2**40, (nq, k)) for _ in range(64)]
    got_d, got_p = _core.merge_topk(d, p, k, 8)
    order = np.argsort(np.concatenate(d, axis=1), axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(got_d, np.take_along_axis(np.concatenate(d, axis=1), order, 1))
    np.testing.assert_array_equal(got_p, np.take_along_axis(np.concatenate(p, axis=1), order, 1))
    with pytest.raises(ValueError, match=r"in \[0, 7\], got 8"):
        _core.merge_topk(d, p, k, 7)  # a distance of 8 is out of the declared range


# ------------------------------------------------------------ calling_thread_num_threads
def test_calling_thread_num_threads_is_per_thread_and_nests():
    outer = deephash_ext.get_num_threads()
    seen = []
    with deephash_ext.calling_thread_num_threads(3):
        assert deephash_ext.get_num_threads() == 3
        other = threading.Thread(target=lambda: seen.append(deephash_ext.get_num_threads()))
        other.start()
        other.join()
        with deephash_ext.calling_thread_num_threads(1):
            assert deephash_ext.get_num_threads() == 1
        assert deephash_ext.get_num_threads() == 3
    assert seen == [outer]
    assert deephash_ext.get_num_threads() == outer


def test_calling_thread_num_threads_restores_after_an_error():
    outer = deephash_ext.get_num_threads()
    with pytest.raises(RuntimeError), deephash_ext.calling_thread_num_threads(2):
        raise RuntimeError
    assert deephash_ext.get_num_threads() == outer


def test_calling_thread_num_threads_limits_the_kernels(rng):
    codes = rng.integers(0, 256, (200_000, 8), dtype=np.uint8)
    before = _core._testing.threads_started()
    with deephash_ext.calling_thread_num_threads(1):
        deephash_ext.search(codes, codes[:64], 5)
    assert _core._testing.threads_started() == before  # one thread: the calling one
    with deephash_ext.calling_thread_num_threads(2):
        deephash_ext.search(codes, codes[:64], 5)
    assert _core._testing.threads_started() > before  # so the check above can fail


@pytest.mark.parametrize(
    ("n", "error"), [(0, ValueError), (4097, ValueError), ("2", TypeError), (True, TypeError)]
)
def test_calling_thread_num_threads_errors(n, error):
    with pytest.raises(error, match="n must"), deephash_ext.calling_thread_num_threads(n):
        pass
