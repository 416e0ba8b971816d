"""BinaryIndex (deephash_ext.index) against a NumPy model of its contents.

The model is the list of live (id, code) entries in insertion order (a dict: an upsert
deletes and re-inserts, moving the entry to the end) plus the next default id. Every
result is compared exactly with the reference of tests/reference.py run on the model's
live codes in insertion order, row positions mapped to ids: ties (tie-heavy codes make
many) go to the earlier insertion, whatever removals and compactions happened.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import deephash_ext
import numpy as np
import pytest
from deephash_ext import BinaryIndex, GpuBinaryIndex
from devices import requires_cuda
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import knn_reference, range_reference, rank_reference, tie_heavy_codes

INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
ID_MAX = {"int64": INT64_MAX, "uint64": UINT64_MAX}


# ============================================================================ the model


class Model:
    """What a BinaryIndex must hold: live entries in insertion order, the next default id,
    and (for the automatic compaction) the rows that still take space."""

    def __init__(self, n_bits: int, id_dtype: str = "int64", threshold: float | None = 0.25):
        self.n_bits, self.code_bytes, self.id_dtype = n_bits, n_bits // 8, id_dtype
        self.entries: dict[int, np.ndarray] = {}
        self.next_id = 0
        self.threshold = threshold
        self.n_slots = 0  # rows in the index, removed ones included
        self.n_removed = 0
        self.mapped: bool | None = False  # None: not asserted

    def ids(self) -> np.ndarray:
        return np.array(list(self.entries), dtype=self.id_dtype)

    def codes(self) -> np.ndarray:
        if not self.entries:
            return np.empty((0, self.code_bytes), dtype=np.uint8)
        return np.stack(list(self.entries.values()))

    def _compact_if_due(self) -> None:
        if self.threshold is not None and self.n_removed > self.threshold * self.n_slots:
            self.compact()

    def compact(self) -> None:
        if self.n_removed:
            self.n_slots, self.n_removed = len(self.entries), 0
            if self.mapped:
                self.mapped = False
        # compacting an index with nothing removed may or may not copy a mapping

    def add(self, codes: np.ndarray, ids: list[int] | None, upsert: bool) -> str | None:
        """Applies an add; returns the expected error message fragment, or None."""
        m = len(codes)
        if ids is None:
            if m and self.next_id + m - 1 > ID_MAX[self.id_dtype]:
                return "default ids"
            ids = list(range(self.next_id, self.next_id + m))
        else:
            if len(set(ids)) != len(ids):
                return "unique"
            present = [i for i in ids if i in self.entries]
            if present and not upsert:
                return "already in the index"
            for i in present:
                del self.entries[i]
            self.n_removed += len(present)
        if m == 0:
            return None
        for i, code in zip(ids, codes):
            self.entries[i] = code.copy()
        self.n_slots += m
        self.next_id = max(self.next_id, max(ids) + 1)
        self.mapped = False
        self._compact_if_due()
        return None

    def remove(self, ids: list[int]) -> int:
        present = {i for i in ids if i in self.entries}
        for i in present:
            del self.entries[i]
        self.n_removed += len(present)
        if present:  # a remove that removes nothing changes nothing
            self._compact_if_due()
        return len(present)


def expected_knn(model_ids, model_codes, queries, k):
    d, rows = knn_reference(model_codes, queries, k)
    return d, model_ids[rows]


def assert_knn(got, expected, id_dtype):
    (d, i), (ed, ei) = got, expected
    assert d.dtype == np.int32 and i.dtype == np.dtype(id_dtype)
    assert d.shape == ed.shape and i.shape == ei.shape
    np.testing.assert_array_equal(d, ed)
    np.testing.assert_array_equal(i, ei)


def assert_range(got, expected, id_dtype):
    (lims, d, i), (elims, ed, ei) = got, expected
    assert lims.dtype == np.int64 and d.dtype == np.int32 and i.dtype == np.dtype(id_dtype)
    np.testing.assert_array_equal(lims, elims)
    np.testing.assert_array_equal(d, ed)
    np.testing.assert_array_equal(i, ei)


def range_from_rank(ranked, model_ids, radius):
    """range_reference derived from a full ranking (the prefix within the radius)."""
    rd, ri = ranked
    within = rd <= radius
    lims = np.concatenate([[0], np.cumsum(within.sum(axis=1))]).astype(np.int64)
    return lims, rd[within].astype(np.int32), model_ids[ri[within]]


def ks_for(n: int) -> list[int]:
    return sorted({k for k in (1, 2, 3, n // 2, n - 1, n) if 1 <= k <= n})


def check_against_model(index: BinaryIndex, model: Model, queries: np.ndarray, absent: list[int]):
    ids, codes = model.ids(), model.codes()
    n = len(ids)
    assert len(index) == n
    got_ids = index.ids
    assert got_ids.dtype == np.dtype(model.id_dtype)
    np.testing.assert_array_equal(got_ids, ids)
    assert index.next_id == model.next_id
    assert index.n_removed == model.n_removed
    assert index.compact_threshold == model.threshold
    if model.mapped is not None:
        assert index.mapped == model.mapped
    # contains / get
    probe = [*ids.tolist(), *(a for a in absent if a not in model.entries)]
    found = index.contains(np.array(probe, dtype=model.id_dtype))
    np.testing.assert_array_equal(found, [i in model.entries for i in probe])
    for a in absent:
        assert index.contains(a) is (a in model.entries)
    if n:
        np.testing.assert_array_equal(index.get(ids), codes)
        np.testing.assert_array_equal(index.get(int(ids[-1])), codes[-1])
    for a in absent:
        if a not in model.entries:
            with pytest.raises(KeyError):
                index.get([a])
    # search for every k in a small set, and a 1-D query
    if n == 0:
        with pytest.raises(ValueError, match="k must be"):
            index.search(queries, 1)
        lims, d, i = index.range_search(queries, model.n_bits)
        np.testing.assert_array_equal(lims, np.zeros(len(queries) + 1))
        assert len(d) == len(i) == 0
        return
    ranked = rank_reference(codes, queries)
    for k in ks_for(n):
        assert_knn(
            index.search(queries, k), (ranked[0][:, :k], ids[ranked[1][:, :k]]), model.id_dtype
        )
    k = min(n, 2)
    ed, ei = expected_knn(ids, codes, queries[0], k)
    assert_knn(index.search(queries[0], k), (ed[0], ei[0]), model.id_dtype)
    # range search: the result only changes at radii equal to a distance present, so
    # those (+-1), 0 and n_bits cover every radius in 0..n_bits (all of them for <= 72 bits)
    if model.n_bits <= 72:
        radii = set(range(model.n_bits + 1))
    else:
        present = np.unique(ranked[0])
        radii = {0, model.n_bits} | {int(r) + s for r in present for s in (-1, 0, 1)}
    radii |= {model.n_bits + 1, 10**9}
    for radius in sorted(r for r in radii if r >= 0):
        got = index.range_search(queries, radius)
        assert_range(got, range_from_rank(ranked, ids, radius), model.id_dtype)


# ============================================================================ 1. property test

WIDTHS = [8, 64, 72, 128, 256, 520]  # code_bytes 1, 8, 9, 16, 32, 65
OPS = ["add", "add", "add_ids", "add_ids", "remove", "remove", "compact", "save", "threshold"]


@settings(
    derandomize=True,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    n_bits=st.sampled_from(WIDTHS),
    id_dtype=st.sampled_from(["int64", "uint64"]),
    seed=st.integers(0, 2**32 - 1),
    ops=st.lists(st.sampled_from(OPS), min_size=1, max_size=18),
    data=st.data(),
)
def test_index_matches_model(n_bits, id_dtype, seed, ops, data):
    rng = np.random.default_rng(seed)
    cb = n_bits // 8
    pool = tie_heavy_codes(rng, 4, cb, n_distinct=4)
    pool[3] = pool[0]
    pool[3, 0] ^= 1  # one bit from pool[0]: small distances next to exact ties
    near = pool[2].copy()
    near[-1] ^= 0x81
    queries = np.stack([pool[0], pool[1], near, rng.integers(0, 256, cb, dtype=np.uint8)])
    top = ID_MAX[id_dtype]
    big_ids = [top, top - 1, INT64_MAX - 5] + ([2**63, 2**63 + 7] if id_dtype == "uint64" else [])
    id_strategy = st.one_of(st.integers(0, 40), st.sampled_from(big_ids))
    absent = [0, 7, 41, top]

    def draw_codes(m):
        which = rng.integers(0, 5, m)
        codes = pool[np.minimum(which, 3)].copy()
        codes[which == 4] = rng.integers(0, 256, (int((which == 4).sum()), cb), dtype=np.uint8)
        return codes

    threshold = data.draw(st.sampled_from([None, 0.25, 0.05, 0.5, 1.0]), label="threshold")
    index = BinaryIndex(n_bits, id_dtype=id_dtype, compact_threshold=threshold)
    model = Model(n_bits, id_dtype, threshold)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.dhx"
        for op in ops:
            if op == "add":
                codes = draw_codes(data.draw(st.integers(0, 6), label="m"))
                error = model.add(codes, None, False)
                if error:
                    before = index.ids
                    with pytest.raises(ValueError, match=error):
                        index.add(codes)
                    np.testing.assert_array_equal(index.ids, before)
                else:
                    index.add(codes if len(codes) != 1 or rng.random() < 0.5 else codes[0])
            elif op == "add_ids":
                ids = data.draw(st.lists(id_strategy, min_size=0, max_size=6), label="ids")
                upsert = data.draw(st.booleans(), label="upsert")
                codes = draw_codes(len(ids))
                error = model.add(codes, ids, upsert)
                if error:
                    with pytest.raises(ValueError, match=error):
                        index.add(codes, ids=np.array(ids, dtype=id_dtype), upsert=upsert)
                else:
                    index.add(codes, ids=np.array(ids, dtype=id_dtype), upsert=upsert)
            elif op == "remove":
                ids = data.draw(st.lists(id_strategy, min_size=0, max_size=8), label="remove")
                live = list(model.entries)
                if live and data.draw(st.booleans(), label="remove_live"):
                    ids += [live[j] for j in rng.integers(0, len(live), 3)]  # repeats too
                expected = model.remove(ids)
                assert index.remove(np.array(ids, dtype=id_dtype)) == expected
            elif op == "compact":
                index.compact()
                model.compact()
                assert index.n_removed == 0
            elif op == "save":
                mmap = data.draw(st.booleans(), label="mmap")
                index.save(path)
                index = BinaryIndex.load(path, mmap=mmap)
                model.threshold = 0.25  # a loaded index has the default threshold
                model.mapped = mmap
                assert index.compact_threshold == 0.25
            elif op == "threshold":
                value = data.draw(st.sampled_from([None, 0.01, 0.1, 0.3, 1.0]), label="value")
                index.compact_threshold = value
                model.threshold = value  # takes effect at the next mutation
            check_against_model(index, model, queries, absent)
        del index  # unmap before the directory goes


# ============================================================================ 2. SIMD x threads


def mid_scenario(n_bits: int, n: int):
    rng = np.random.default_rng(n_bits * 7 + n)
    cb = n_bits // 8
    codes = tie_heavy_codes(rng, n, cb, n_distinct=6)
    noisy = rng.random(n) < 0.5
    codes[noisy] = rng.integers(0, 256, (int(noisy.sum()), cb), dtype=np.uint8)
    ids = rng.choice(10 * n, size=n, replace=False)
    gone = rng.choice(ids, size=n // 10, replace=False)
    gone = np.concatenate([gone, ids[:3], ids[-3:], ids[60:70]])  # block/word edges too
    queries = np.concatenate([codes[[0, 5]], rng.integers(0, 256, (62, cb), dtype=np.uint8)])
    return codes, ids, np.unique(gone), queries


@pytest.mark.parametrize(("n_bits", "n"), [(64, 5000), (1024, 3000)])
def test_index_matches_reference_at_every_simd_level(n_bits, n, simd_level, num_threads, tmp_path):
    codes, ids, gone, queries = mid_scenario(n_bits, n)
    index = BinaryIndex(n_bits, compact_threshold=None)
    index.add(codes, ids=ids)
    assert index.remove(gone) == len(gone)
    keep = ~np.isin(ids, gone)
    live_codes, live_ids = codes[keep], ids[keep]
    ranked = rank_reference(live_codes, queries)
    m = len(live_ids)

    def check(ix):
        assert len(ix) == m
        for batch in (slice(0, 1), slice(0, 3), slice(0, 64)):  # few and many queries
            q = queries[batch]
            for k in (1, 10, 64, 65, 300, m - 1, m):
                d, i = ix.search(q, k)
                np.testing.assert_array_equal(d, ranked[0][batch, :k])
                np.testing.assert_array_equal(i, live_ids[ranked[1][batch, :k]])
        for radius in (0, n_bits // 2 - 8, n_bits // 2, n_bits):
            got = ix.range_search(queries[:3], radius)
            for a, b in zip(got, range_from_rank((r[:3] for r in ranked), live_ids, radius)):
                np.testing.assert_array_equal(a, b)
            got = ix.range_search(queries, radius)
            for a, b in zip(got, range_from_rank(ranked, live_ids, radius)):
                np.testing.assert_array_equal(a, b)

    check(index)
    path = tmp_path / "mid.dhx"
    index.save(path)
    mapped = BinaryIndex.load(path, mmap=True)
    assert mapped.mapped
    check(mapped)
    index.compact()
    assert index.n_removed == 0
    check(index)


def test_range_from_rank_is_range_reference(rng):
    """The helper above is range_reference, derived from one ranking."""
    codes = tie_heavy_codes(rng, 300, 9)
    queries = np.concatenate([codes[:2], rng.integers(0, 256, (3, 9), dtype=np.uint8)])
    ids = rng.choice(10**6, size=300, replace=False)
    ranked = rank_reference(codes, queries)
    for radius in range(0, 74):
        lims, d, rows = range_reference(codes, queries, radius)
        for a, b in zip(range_from_rank(ranked, ids, radius), (lims, d, ids[rows])):
            np.testing.assert_array_equal(a, b)


# ============================================================================ 3. k with removals


@pytest.mark.parametrize("n_bits", [64, 256])
def test_k_results_come_back_with_most_rows_removed(rng, n_bits):
    cb = n_bits // 8
    codes = tie_heavy_codes(rng, 2000, cb, n_distinct=3)
    index = BinaryIndex(n_bits, compact_threshold=None)
    index.add(codes)
    gone = rng.choice(2000, size=1800, replace=False)
    index.remove(gone)
    assert len(index) == 200 and index.n_removed == 1800
    keep = np.setdiff1d(np.arange(2000), gone)
    queries = np.concatenate([codes[keep[:2]], codes[gone[:2]]])
    for k in (1, 100, 199, 200):
        for q in (queries[:1], queries):
            d, i = index.search(q, k)
            assert d.shape == i.shape == (len(q), k)
            ed, ei = expected_knn(keep, codes[keep], q, k)
            np.testing.assert_array_equal(d, ed)
            np.testing.assert_array_equal(i, ei)
    with pytest.raises(ValueError, match="k must be"):
        index.search(queries, 201)


# ============================================================================ 4. errors


@pytest.fixture
def small_index():
    index = BinaryIndex(16)
    codes = np.array([[0, 0], [1, 0], [3, 0], [0, 0]], dtype=np.uint8)
    index.add(codes, ids=[5, 6, 7, 8])
    return index


def snapshot_of(index):
    q = np.zeros((2, index.code_bytes), dtype=np.uint8)
    return len(index), index.ids, index.next_id, index.search(q, len(index))


def assert_unchanged(index, before):
    after = snapshot_of(index)
    assert after[0] == before[0] and after[2] == before[2]
    np.testing.assert_array_equal(after[1], before[1])
    for a, b in zip(after[3], before[3]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda ix: ix.add(np.zeros((1, 2), dtype=np.int8)), TypeError, "codes"),
        (lambda ix: ix.add(np.zeros((1, 2), dtype=np.float32)), TypeError, "codes"),
        (lambda ix: ix.add(np.zeros((1, 3), dtype=np.uint8)), ValueError, "codes"),
        (lambda ix: ix.add(np.zeros((2, 2), np.uint8), ids=[1.0, 2.0]), TypeError, "ids"),
        (lambda ix: ix.add(np.zeros((2, 2), np.uint8), ids=[[1, 2]]), ValueError, "ids"),
        (lambda ix: ix.add(np.zeros((2, 2), np.uint8), ids=[1, 2, 3]), ValueError, "ids"),
        (lambda ix: ix.add(np.zeros((2, 2), np.uint8), ids=[1, 1]), ValueError, "ids"),
        (lambda ix: ix.add(np.zeros((2, 2), np.uint8), ids=[1, 6]), ValueError, "upsert"),
        (lambda ix: ix.add(np.zeros((1, 2), np.uint8), ids=[-1]), ValueError, "ids"),
        (lambda ix: ix.add(np.zeros((1, 2), np.uint8), ids=[2**63]), ValueError, "ids"),
        (lambda ix: ix.add(np.zeros((1, 2), np.uint8), upsert=1), TypeError, "upsert"),
        (lambda ix: ix.add(np.zeros((1, 2), np.uint8), upsert="yes"), TypeError, "upsert"),
        (lambda ix: ix.remove([1.5]), TypeError, "ids"),
        (lambda ix: ix.remove([-3]), ValueError, "ids"),
        (lambda ix: ix.search(np.zeros(2, np.uint8), 0), ValueError, "k"),
        (lambda ix: ix.search(np.zeros(2, np.uint8), 5), ValueError, "k"),
        (lambda ix: ix.search(np.zeros(2, np.uint8), 2.0), TypeError, "k"),
        (lambda ix: ix.search(np.zeros(2, np.uint8), True), TypeError, "k"),
        (lambda ix: ix.search(np.zeros(3, np.uint8), 1), ValueError, "queries"),
        (lambda ix: ix.search(np.zeros(2, np.int16), 1), TypeError, "queries"),
        (lambda ix: ix.range_search(np.zeros((1, 1), np.uint8), 1), ValueError, "queries"),
        (lambda ix: ix.range_search(np.zeros(2, np.uint8), -1), ValueError, "max_distance"),
        (lambda ix: ix.range_search(np.zeros(2, np.uint8), 1.0), TypeError, "max_distance"),
        (lambda ix: ix.contains([0.5]), TypeError, "ids"),
    ],
)
def test_errors_are_typed_name_the_parameter_and_change_nothing(small_index, call, error, match):
    before = snapshot_of(small_index)
    with pytest.raises(error, match=match):
        call(small_index)
    assert_unchanged(small_index, before)


def test_duplicate_of_existing_id_without_upsert_changes_nothing(small_index):
    before = snapshot_of(small_index)
    with pytest.raises(ValueError, match=r"already in the index.*upsert=True"):
        small_index.add(np.zeros((3, 2), np.uint8), ids=[100, 7, 101])
    assert_unchanged(small_index, before)
    assert not small_index.contains([100, 101]).any()
    small_index.add(np.full((1, 2), 255, np.uint8), ids=[7], upsert=True)
    np.testing.assert_array_equal(small_index.ids, [5, 6, 8, 7])  # moved to the end
    np.testing.assert_array_equal(small_index.get(7), [255, 255])


def test_get_missing_id_is_a_key_error(small_index):
    with pytest.raises(KeyError, match="99"):
        small_index.get(99)
    with pytest.raises(KeyError, match="99"):
        small_index.get([5, 99])
    small_index.remove([5])
    with pytest.raises(KeyError, match="5"):
        small_index.get(5)


@pytest.mark.parametrize("id_dtype", ["int64", "uint64"])
def test_default_ids_exhausting_the_range_changes_nothing(id_dtype):
    top = ID_MAX[id_dtype]
    index = BinaryIndex(8, id_dtype=id_dtype)
    index.add(np.array([[1], [2]], np.uint8), ids=np.array([3, top - 1], dtype=id_dtype))
    assert index.next_id == top
    index.add(np.array([[4]], np.uint8))  # the last default id
    np.testing.assert_array_equal(index.ids, np.array([3, top - 1, top], dtype=id_dtype))
    before = snapshot_of(index)
    with pytest.raises(ValueError, match="default ids"):
        index.add(np.array([[5]], np.uint8))
    assert_unchanged(index, before)
    index.add(np.array([[5]], np.uint8), ids=[0])  # explicit ids still work
    assert index.next_id == top + 1
    if id_dtype == "int64":  # next_id 2**63 fits the file's u64 field
        with tempfile.TemporaryDirectory() as tmp:
            index.save(Path(tmp) / "a.dhx")
            assert BinaryIndex.load(Path(tmp) / "a.dhx").next_id == top + 1


def test_default_ids_batch_exhausting_the_range():
    index = BinaryIndex(8)
    index.add(np.array([[1]], np.uint8), ids=[INT64_MAX - 2])
    with pytest.raises(ValueError, match="default ids"):
        index.add(np.zeros((3, 1), np.uint8))
    assert len(index) == 1
    index.add(np.zeros((2, 1), np.uint8))
    np.testing.assert_array_equal(index.ids, [INT64_MAX - 2, INT64_MAX - 1, INT64_MAX])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_bits": 7}, ValueError, "n_bits"),
        ({"n_bits": 0}, ValueError, "n_bits"),
        ({"n_bits": -8}, ValueError, "n_bits"),
        ({"n_bits": 8.0}, TypeError, "n_bits"),
        ({"n_bits": 8, "id_dtype": "int32"}, ValueError, "id_dtype"),
        ({"n_bits": 8, "id_dtype": np.int64}, TypeError, "id_dtype"),
        ({"n_bits": 8, "compact_threshold": 0}, ValueError, "compact_threshold"),
        ({"n_bits": 8, "compact_threshold": 1.5}, ValueError, "compact_threshold"),
        ({"n_bits": 8, "compact_threshold": float("nan")}, ValueError, "compact_threshold"),
        ({"n_bits": 8, "compact_threshold": "x"}, TypeError, "compact_threshold"),
    ],
)
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        BinaryIndex(**kwargs)


def test_compact_threshold_setter_errors(small_index):
    for value, error in [(0, ValueError), (1.5, ValueError), (-0.1, ValueError), ("x", TypeError)]:
        with pytest.raises(error, match="compact_threshold"):
            small_index.compact_threshold = value
        assert small_index.compact_threshold == 0.25
    small_index.compact_threshold = 1
    assert small_index.compact_threshold == 1.0


def test_search_on_an_empty_index():
    index = BinaryIndex(64)
    q = np.zeros(8, np.uint8)
    with pytest.raises(ValueError, match=r"k must be in \[1, len\(index\)\]"):
        index.search(q, 1)
    lims, d, i = index.range_search(q, 64)
    np.testing.assert_array_equal(lims, [0, 0])
    assert d.dtype == np.int32 and i.dtype == np.int64 and len(d) == len(i) == 0
    index.add(np.zeros((2, 8), np.uint8))
    index.remove([0, 1])
    assert len(index) == 0
    with pytest.raises(ValueError, match="k must be"):
        index.search(q, 1)


def test_load_flag_errors(tmp_path, small_index):
    path = tmp_path / "a.dhx"
    small_index.save(path)
    for kwargs in ({"mmap": 1}, {"mmap": "yes"}, {"verify": 0}, {"verify": "no"}):
        with pytest.raises(TypeError, match=next(iter(kwargs))):
            BinaryIndex.load(path, **kwargs)
    with pytest.raises(FileNotFoundError):
        BinaryIndex.load(tmp_path / "missing.dhx")


# ============================================================================ 5. uint64 ids


def test_uint64_ids_round_trip(tmp_path):
    ids = np.array([UINT64_MAX - 1, 2**63, 2**63 - 1, 0, 12345], dtype=np.uint64)
    codes = np.array([[1, 2], [1, 2], [0, 0], [1, 2], [255, 255]], dtype=np.uint8)
    index = BinaryIndex(16, id_dtype="uint64")
    index.add(codes, ids=ids)
    assert index.next_id == UINT64_MAX
    q = np.array([[1, 2], [0, 0]], dtype=np.uint8)
    expected = expected_knn(ids, codes, q, 5)
    assert_knn(index.search(q, 5), expected, "uint64")
    assert index.contains(int(UINT64_MAX - 1)) and not index.contains(UINT64_MAX)
    np.testing.assert_array_equal(index.get(2**63), [1, 2])
    for mmap in (False, True):
        index.save(tmp_path / "u.dhx")
        loaded = BinaryIndex.load(tmp_path / "u.dhx", mmap=mmap, verify=True)
        assert loaded.id_dtype == "uint64" and loaded.next_id == UINT64_MAX
        np.testing.assert_array_equal(loaded.ids, ids)
        assert_knn(loaded.search(q, 5), expected, "uint64")
        del loaded
    # the last default id is 2**64 - 1, then the range is exhausted
    index.add(np.zeros((1, 2), np.uint8))
    assert index.ids[-1] == UINT64_MAX
    with pytest.raises(ValueError, match="default ids"):
        index.add(np.zeros((1, 2), np.uint8))
    with pytest.raises(ValueError, match="ids"):
        index.add(np.zeros((1, 2), np.uint8), ids=[-1])


def test_uint64_max_id_saves(tmp_path):
    index = BinaryIndex(8, id_dtype="uint64")
    index.add(np.array([[7], [9]], np.uint8), ids=np.array([UINT64_MAX, 3], np.uint64))
    index.save(tmp_path / "max.dhx")
    loaded = BinaryIndex.load(tmp_path / "max.dhx", verify=True)
    np.testing.assert_array_equal(loaded.ids, np.array([UINT64_MAX, 3], np.uint64))
    with pytest.raises(ValueError, match="default ids"):
        loaded.add(np.array([[1]], np.uint8))


def test_uint64_ids_as_a_python_list():
    index = BinaryIndex(8, id_dtype="uint64")
    index.add(np.array([[1], [2]], np.uint8), ids=[3, 2**63 + 1])
    np.testing.assert_array_equal(index.contains([3, 2**63 + 1, 4]), [True, True, False])
    assert index.remove([3, 2**63 + 1]) == 2


@pytest.mark.parametrize("emptied", [False, True])
def test_empty_index_saves(tmp_path, emptied):
    index = BinaryIndex(64)
    if emptied:
        index.add(np.zeros((3, 8), np.uint8))
        index.remove([0, 1, 2])  # compacts (threshold 0.25)
        assert index.n_removed == 0
    index.save(tmp_path / "empty.dhx")
    for mmap in (False, True):
        loaded = BinaryIndex.load(tmp_path / "empty.dhx", mmap=mmap, verify=True)
        assert len(loaded) == 0 and loaded.next_id == index.next_id


# ============================================================================ 6. pickle


def assert_same_index(a: BinaryIndex, b: BinaryIndex, queries):
    assert (len(a), a.n_removed, a.next_id, a.n_bits, a.id_dtype) == (
        len(b),
        b.n_removed,
        b.next_id,
        b.n_bits,
        b.id_dtype,
    )
    np.testing.assert_array_equal(a.ids, b.ids)
    for k in ks_for(len(a)):
        for x, y in zip(a.search(queries, k), b.search(queries, k)):
            np.testing.assert_array_equal(x, y)
    for radius in (0, 5, a.n_bits):
        for x, y in zip(a.range_search(queries, radius), b.range_search(queries, radius)):
            np.testing.assert_array_equal(x, y)


def test_pickle_round_trip(rng, tmp_path):
    codes = tie_heavy_codes(rng, 300, 9, n_distinct=4)
    index = BinaryIndex(72, compact_threshold=None)
    index.add(codes)
    index.add(codes[:5], ids=[1000, 2, 3, 1001, 4], upsert=True)
    index.remove(rng.choice(300, 40, replace=False))
    assert index.n_removed > 0
    queries = np.concatenate([codes[:3], rng.integers(0, 256, (2, 9), dtype=np.uint8)])
    restored = pickle.loads(pickle.dumps(index))
    assert restored.compact_threshold is None
    assert_same_index(restored, index, queries)
    # both go on identically
    for ix in (index, restored):
        ix.add(codes[10:20])
        ix.remove([1000, 7])
        ix.compact_threshold = 0.1
        ix.remove(list(range(100, 140)))
    assert_same_index(restored, index, queries)
    # a mapped index
    index.save(tmp_path / "p.dhx")
    mapped = BinaryIndex.load(tmp_path / "p.dhx", mmap=True)
    mapped.remove([11, 12])
    assert mapped.mapped
    restored = pickle.loads(pickle.dumps(mapped))
    assert_same_index(restored, mapped, queries)
    restored.add(codes[:3])
    mapped.add(codes[:3])
    assert_same_index(restored, mapped, queries)


# ============================================================================ 7. concurrency


def test_concurrent_searches_see_whole_states():
    n_bits, cb = 64, 8
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, (300, cb), dtype=np.uint8)
    queries = np.zeros((2, cb), dtype=np.uint8)
    queries[1] = 255
    k, radius = 12, 4

    index = BinaryIndex(n_bits, compact_threshold=0.2)
    model = Model(n_bits, threshold=0.2)
    index.add(base)
    model.add(base, None, False)
    states = [(model.ids(), model.codes())]
    done = threading.Event()
    seen: list[tuple[str | bytes, ...]] = []
    lock = threading.Lock()

    def marker_codes(step: int) -> np.ndarray:
        # close to one of the queries (distance 0..3): every batch changes the top-k
        codes = np.zeros((4, cb), dtype=np.uint8) if step % 2 else np.full((4, cb), 255, np.uint8)
        codes[np.arange(4), np.arange(4)] ^= np.uint8(step % 8)
        return codes

    errors: list[BaseException] = []

    def writer():
        try:
            batches: list[list[int]] = []
            deadline = time.monotonic() + 1.0
            step = 0
            while time.monotonic() < deadline and step < 400:
                step += 1
                codes = marker_codes(step)
                if step % 5 == 0 and batches:  # upsert two ids of an older batch
                    ids = batches[0][:2]
                    index.add(codes[:2], ids=ids, upsert=True)
                    model.add(codes[:2], ids, True)
                else:
                    start = index.next_id
                    index.add(codes)
                    model.add(codes, None, False)
                    batches.append(list(range(start, start + 4)))
                states.append((model.ids(), model.codes()))
                if len(batches) > 6:
                    gone = batches.pop(0)
                    assert index.remove(gone) == model.remove(gone)
                    states.append((model.ids(), model.codes()))
        except BaseException as error:
            errors.append(error)
        finally:
            done.set()

    def reader():
        local = []
        try:
            while not done.is_set():
                d, i = index.search(queries, k)
                local.append(("knn", d.tobytes(), i.tobytes()))
                lims, rd, ri = index.range_search(queries, radius)  # maybe another state
                local.append(("range", lims.tobytes(), rd.tobytes(), ri.tobytes()))
        except BaseException as error:
            errors.append(error)
        with lock:
            seen.extend(local)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]
    check_against_model(index, model, queries, [])

    expected = set()
    for ids, codes in states:
        d, i = expected_knn(ids, codes, queries, k)
        lims, rd, rows = range_reference(codes, queries, radius)
        expected.add(("knn", d.tobytes(), i.tobytes()))
        expected.add(("range", lims.tobytes(), rd.tobytes(), ids[rows].tobytes()))
    assert len(states) > 50 and len(seen) > 10
    mixtures = [s for s in seen if s not in expected]
    assert not mixtures, f"{len(mixtures)} of {len(seen)} searches saw no state the index had"


# ============================================================================ 8. killed save

CHILD = r"""
import sys
import numpy as np
from deephash_ext import BinaryIndex

def big_index():
    rng = np.random.default_rng(20240)
    index = BinaryIndex(256, compact_threshold=None)
    index.add(rng.integers(0, 256, (120_000, 32), dtype=np.uint8))
    index.remove(np.arange(0, 120_000, 7))
    return index

if __name__ == "__main__":
    path = sys.argv[1]
    old = BinaryIndex.load(path, verify=True)
    big = big_index()
    print("ready", len(old), flush=True)
    while True:
        big.save(path)
"""


def _namespace_of(source: str) -> dict:
    namespace: dict = {"__name__": "child_module"}
    exec(compile(source, "<child>", "exec"), namespace)
    return namespace


def test_killed_save_leaves_a_loadable_file(tmp_path):
    path = tmp_path / "A.dhx"
    rng = np.random.default_rng(3)
    old = BinaryIndex(256)
    old.add(rng.integers(0, 256, (50, 32), dtype=np.uint8))
    old.remove([3, 4])
    new = _namespace_of(CHILD)["big_index"]()
    new_ids = new.ids
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    outcomes = []
    for delay in (0.0, *rng.uniform(0.0, 0.3, 3)):
        old.save(path)
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        try:
            line = child.stdout.readline()
            assert line.startswith("ready 48"), line
            time.sleep(delay)
        finally:
            child.kill()  # SIGKILL
            child.wait(timeout=30)
            child.stdout.close()
        loaded = BinaryIndex.load(path, verify=True)  # never a half file
        if len(loaded) == len(old):
            assert_same_index(loaded, old, old.get(old.ids[:3]))
            outcomes.append("old")
        else:
            assert len(loaded) == len(new) and loaded.n_removed == new.n_removed
            assert loaded.next_id == new.next_id
            np.testing.assert_array_equal(loaded.ids, new_ids)
            np.testing.assert_array_equal(loaded.get(new_ids), new.get(new_ids))
            outcomes.append("new")
    assert len(outcomes) == 4


# ============================================================================ 9. mmap


def test_mmap_copy_on_write_and_saving_over_the_mapped_file(rng, tmp_path):
    path = tmp_path / "m.dhx"
    codes = tie_heavy_codes(rng, 500, 16, n_distinct=4)
    model = Model(128)
    index = BinaryIndex(128)
    index.add(codes)
    model.add(codes, None, False)
    index.remove([1, 2, 3])
    model.remove([1, 2, 3])
    index.save(path)
    on_disk = path.read_bytes()
    queries = np.concatenate([codes[:3], rng.integers(0, 256, (2, 16), dtype=np.uint8)])

    for verify in (None, False, True):
        mapped = BinaryIndex.load(path, mmap=True, verify=verify)
        assert mapped.mapped and not BinaryIndex.load(path).mapped
        model.mapped = True
        check_against_model(mapped, model, queries, [1, 999])
    assert "mapped=True" in repr(mapped)

    assert mapped.remove([10, 11]) == 2  # remove keeps the mapping
    model.remove([10, 11])
    assert mapped.mapped
    check_against_model(mapped, model, queries, [10])

    mapped.add(codes[:4])  # add copies (copy on write)
    model.add(codes[:4], None, False)
    assert not mapped.mapped
    model.mapped = False
    check_against_model(mapped, model, queries, [10])
    assert path.read_bytes() == on_disk

    # saving over the file a live index maps: the old mapping keeps the old content
    reader = BinaryIndex.load(path, mmap=True)
    reader_model = Model(128)
    reader_model.entries = {int(i): c for i, c in zip(reader.ids, reader.get(reader.ids))}
    reader_model.next_id, reader_model.n_slots, reader_model.n_removed = 500, 500, 3
    reader_model.mapped = True
    reader.save(path)  # its own file
    assert path.read_bytes() == on_disk
    mapped.save(path)  # another index over it
    check_against_model(reader, reader_model, queries, [])
    model.mapped = True
    check_against_model(BinaryIndex.load(path, mmap=True, verify=True), model, queries, [])
    model.mapped = False
    check_against_model(BinaryIndex.load(path), model, queries, [])

    # compaction of a mapped index with removed rows copies too
    again = BinaryIndex.load(path, mmap=True)
    again.compact()
    assert not again.mapped and again.n_removed == 0


# ============================================================================ 10. GPU


@pytest.mark.skipif(deephash_ext.cuda_available(), reason="a GPU is visible")
def test_to_gpu_without_cuda_raises_runtime_error(small_index):
    with pytest.raises(RuntimeError):
        small_index.to_gpu()


@pytest.mark.cuda
@requires_cuda
def test_to_gpu_matches_the_cpu_index(rng):
    codes = tie_heavy_codes(rng, 3000, 16, n_distinct=5)
    index = BinaryIndex(128, compact_threshold=None)
    index.add(codes, ids=rng.choice(10**9, 3000, replace=False))
    index.remove(index.ids[::9])
    gpu = index.to_gpu()
    assert isinstance(gpu, GpuBinaryIndex) and len(gpu) == len(index)
    queries = np.concatenate([codes[:4], rng.integers(0, 256, (30, 16), dtype=np.uint8)])
    for k in (1, 10, 100, len(index)):
        for a, b in zip(gpu.search(queries, k), index.search(queries, k)):
            np.testing.assert_array_equal(a, b)
    for radius in (0, 30, 64, 128):
        for a, b in zip(gpu.range_search(queries, radius), index.range_search(queries, radius)):
            np.testing.assert_array_equal(a, b)


# ============================================================================ 11. docstring


def test_docstring_example():
    index = BinaryIndex(8)
    index.add(np.array([[0b0000], [0b0111], [0b0001]], dtype=np.uint8), ids=[10, 20, 30])
    d, i = index.search(np.array([0b0011], dtype=np.uint8), k=2)
    assert d.dtype == np.int32
    np.testing.assert_array_equal(d, [1, 1])
    np.testing.assert_array_equal(i, [20, 30])
    assert index.remove([30]) == 1
    d, i = index.search(np.array([0b0011], dtype=np.uint8), k=2)
    np.testing.assert_array_equal(d, [1, 2])
    np.testing.assert_array_equal(i, [20, 10])
