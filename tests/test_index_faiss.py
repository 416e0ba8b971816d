"""BinaryIndex <-> faiss: objects and files written by faiss round-trip exactly (codes, ids,
search results)."""

from __future__ import annotations

import numpy as np
import pytest
from deephash_ext import BinaryIndex

faiss = pytest.importorskip("faiss")


def _faiss_of(kind: str, codes: np.ndarray, ids: np.ndarray):
    flat = faiss.IndexBinaryFlat(8 * codes.shape[1])
    if kind == "flat":
        flat.add(codes)
        return flat
    wrapper = (faiss.IndexBinaryIDMap if kind == "idmap" else faiss.IndexBinaryIDMap2)(flat)
    wrapper.add_with_ids(codes, ids)
    wrapper.own_fields = True
    flat.this.disown()
    return wrapper


def _same_ranking(ours, theirs):
    """Equal distances; equal id sets at every distance (faiss does not order ties)."""
    d_ours, i_ours = ours
    d_theirs, i_theirs = theirs
    np.testing.assert_array_equal(d_ours, d_theirs)
    for row in range(len(d_ours)):
        last = d_ours[row, -1]  # the k-th distance may cut a tie differently
        inside = d_ours[row] < last
        assert set(i_ours[row][inside]) == set(i_theirs[row][inside])


@pytest.fixture
def data():
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 256, size=(500, 16), dtype=np.uint8)
    codes[::7] = codes[3]  # ties
    ids = rng.permutation(10_000)[:500].astype(np.int64)
    queries = np.concatenate([codes[:5], rng.integers(0, 256, (5, 16), dtype=np.uint8)])
    return codes, ids, queries


@pytest.mark.parametrize("kind", ["flat", "idmap", "idmap2"])
def test_from_faiss_object_and_file(kind, data, tmp_path):
    codes, ids, queries = data
    source = _faiss_of(kind, codes, ids)
    expected_ids = np.arange(len(codes)) if kind == "flat" else ids
    path = tmp_path / "faiss.index"
    faiss.write_index_binary(source, str(path))
    for index in (BinaryIndex.from_faiss(source), BinaryIndex.load(path)):
        assert index.n_bits == 128 and len(index) == len(codes)
        np.testing.assert_array_equal(index.ids, expected_ids)
        np.testing.assert_array_equal(index.get(expected_ids), codes)
        _same_ranking(index.search(queries, 20), source.search(queries, 20))


def test_to_faiss_round_trip(data):
    codes, ids, queries = data
    index = BinaryIndex(128, compact_threshold=None)
    index.add(codes, ids)
    index.remove(ids[::3])
    live = np.setdiff1d(np.arange(len(ids)), np.arange(0, len(ids), 3))
    exported = index.to_faiss()
    assert exported.ntotal == len(index)
    np.testing.assert_array_equal(faiss.vector_to_array(exported.id_map), ids[live])
    _same_ranking(index.search(queries, 20), exported.search(queries, 20))
    back = BinaryIndex.from_faiss(exported)
    np.testing.assert_array_equal(back.ids, index.ids)
    np.testing.assert_array_equal(back.get(back.ids), index.get(index.ids))
    for q in queries:  # ties included: both keep the insertion order
        for k in (1, 10, len(index)):
            np.testing.assert_array_equal(back.search(q, k)[1], index.search(q, k)[1])


def test_faiss_file_written_from_to_faiss_loads_back(data, tmp_path):
    codes, ids, _ = data
    index = BinaryIndex(128)
    index.add(codes, ids)
    path = tmp_path / "exported.index"
    faiss.write_index_binary(index.to_faiss(), str(path))
    loaded = BinaryIndex.load(path)
    np.testing.assert_array_equal(loaded.ids, ids)
    np.testing.assert_array_equal(loaded.get(ids), codes)
    with pytest.raises(ValueError, match="faiss index file, which cannot be mapped"):
        BinaryIndex.load(path, mmap=True)


def test_faiss_ids_that_a_binary_index_refuses(data):
    codes, ids, _ = data
    repeated = ids.copy()
    repeated[1] = repeated[0]
    with pytest.raises(ValueError, match="unique"):
        BinaryIndex.from_faiss(_faiss_of("idmap", codes, repeated))
    negative = ids.copy()
    negative[4] = -1
    with pytest.raises(ValueError, match="ids must be in"):
        BinaryIndex.from_faiss(_faiss_of("idmap2", codes, negative))


def test_uint64_ids_beyond_int64_cannot_go_to_faiss():
    index = BinaryIndex(8, id_dtype="uint64")
    index.add(np.zeros((2, 1), np.uint8), ids=np.array([1, 2**63], np.uint64))
    with pytest.raises(ValueError, match="int64"):
        index.to_faiss()
    index.remove([2**63])
    assert index.to_faiss().ntotal == 1


def test_from_faiss_rejects_other_objects():
    with pytest.raises(TypeError):
        BinaryIndex.from_faiss(np.zeros((3, 8), np.uint8))
