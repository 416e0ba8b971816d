"""deephash_ext.dask: distributed encoding, search and the sharded index.

Every result is compared exactly with the single-process search (or the NumPy reference) on
the concatenated codes, ties included, on Dask's local threads and on a LocalCluster of two
worker processes with one thread each (this machine's two cores).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import deephash_ext
import numpy as np
import pytest
from reference import knn_reference, range_reference, tie_heavy_codes

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
dhd = pytest.importorskip("deephash_ext.dask")

pytestmark = pytest.mark.filterwarnings(
    # distributed's own shutdown chatter (ports, heartbeats), not ours
    "ignore::ResourceWarning",
    "ignore:.*Port.*is already in use.*:UserWarning",
    "ignore::DeprecationWarning:distributed.*",
)


def tie_codes(rng: np.random.Generator, n: int, code_bytes: int = 8) -> np.ndarray:
    codes = tie_heavy_codes(rng, n, code_bytes, n_distinct=6)
    codes[::5] = rng.integers(0, 256, size=(len(codes[::5]), code_bytes), dtype=np.uint8)
    return codes


def random_chunks(rng: np.random.Generator, n: int, n_blocks: int) -> tuple[int, ...]:
    cuts = np.sort(rng.integers(0, n + 1, size=n_blocks - 1))
    return tuple(np.diff([0, *cuts.tolist(), n]).tolist())


def queries_for(rng: np.random.Generator, codes: np.ndarray) -> np.ndarray:
    return np.concatenate([codes[:3], rng.integers(0, 256, (5, codes.shape[1]), dtype=np.uint8)])


def assert_same(got, want) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype, (a.dtype, b.dtype)
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def client():
    """Two worker processes with one thread each (the machine's two cores)."""
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


# ============================================================ search over dask arrays
@pytest.mark.parametrize("n_blocks", [1, 2, 5, 16])
@pytest.mark.parametrize("k", [1, 7, 60, 400])
def test_search_equals_single_process_for_any_layout(rng, n_blocks, k):
    codes = tie_codes(rng, 400)
    queries = queries_for(rng, codes)
    want = deephash_ext.search(codes, queries, k)
    for _ in range(3):
        dcodes = da.from_array(codes, chunks=(random_chunks(rng, 400, n_blocks), 8))
        assert_same(dhd.search(dcodes, queries, k, split_every=2 + n_blocks % 3), want)


@pytest.mark.parametrize("radius", [0, 5, 64])
def test_range_search_equals_single_process(rng, radius):
    codes = tie_codes(rng, 300)
    queries = queries_for(rng, codes)
    dcodes = da.from_array(codes, chunks=(random_chunks(rng, 300, 6), 8))
    assert_same(
        dhd.range_search(dcodes, queries, radius, split_every=2),
        range_reference(codes, queries, radius),
    )


def test_search_with_ids_and_a_single_query(rng):
    codes = tie_codes(rng, 250)
    dcodes = da.from_array(codes, chunks=((100, 0, 50, 100), 8))
    for dtype in (np.int64, np.uint64):
        ids = (np.arange(250)[::-1] * 3 + 2**62).astype(dtype)
        dids = da.from_array(ids, chunks=50)  # chunked unlike the codes: rechunked
        ref_d, ref_i = knn_reference(codes, codes[:4], 30)
        d, i = dhd.search(dcodes, codes[:4], 30, ids=dids)
        assert i.dtype == dtype
        np.testing.assert_array_equal(d, ref_d)
        np.testing.assert_array_equal(i, ids[ref_i])
        lims, rd, ri = dhd.range_search(dcodes, codes[:4], 10, ids=dids)
        ref = range_reference(codes, codes[:4], 10)
        np.testing.assert_array_equal(ri, ids[ref[2]])
    d, i = dhd.search(dcodes, codes[7], 5)
    assert d.shape == i.shape == (5,)
    assert_same((d, i), deephash_ext.search(codes, codes[7], 5))


def test_search_with_unknown_chunk_sizes(rng):
    codes = tie_codes(rng, 300)
    keep = rng.random(300) < 0.5
    dcodes = da.from_array(codes, chunks=(60, 8))[da.from_array(keep, chunks=60)]
    assert np.isnan(dcodes.shape[0])
    queries = queries_for(rng, codes)
    assert_same(dhd.search(dcodes, queries, 20), deephash_ext.search(codes[keep], queries, 20))
    with pytest.raises(ValueError, match="k must be in"):
        dhd.search(dcodes, queries, int(keep.sum()) + 1)


def test_codes_chunked_across_bytes_are_rechunked(rng):
    codes = tie_codes(rng, 120, code_bytes=16)
    dcodes = da.from_array(codes, chunks=(50, 4))
    assert_same(dhd.search(dcodes, codes[:3], 9), deephash_ext.search(codes, codes[:3], 9))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda c, q: dhd.search(np.zeros((4, 8), np.uint8), q, 1), TypeError, "dask array"),
        (lambda c, q: dhd.search(c.astype(np.int16), q, 1), TypeError, "uint8"),
        (lambda c, q: dhd.search(c[:, 0], q, 1), ValueError, "2-D"),
        (lambda c, q: dhd.search(c, q[:, :4], 1), ValueError, "bytes per code"),
        (lambda c, q: dhd.search(c, q.astype(np.int8), 1), TypeError, "uint8"),
        (lambda c, q: dhd.search(c, q, 0), ValueError, "k must be"),
        (lambda c, q: dhd.search(c, q, 41), ValueError, "k must be"),
        (lambda c, q: dhd.search(c, q, 2.0), TypeError, "k must be"),
        (lambda c, q: dhd.search(c, q, 1, split_every=1), ValueError, "split_every"),
        (lambda c, q: dhd.search(c, q, 1, threads_per_task=0), ValueError, "threads_per_task"),
        (lambda c, q: dhd.search(c, q, 1, ids=np.arange(40)), TypeError, "ids must be a dask"),
        (lambda c, q: dhd.search(c, q, 1, ids=da.arange(40, dtype=np.int32)), TypeError, "int64"),
        (lambda c, q: dhd.search(c, q, 1, ids=da.arange(39)), ValueError, "39 entries"),
        (lambda c, q: dhd.search(c, q, 1, ids=da.zeros((40, 1), dtype="i8")), ValueError, "1-D"),
        (lambda c, q: dhd.range_search(c, q, -1), ValueError, "max_distance"),
        (lambda c, q: dhd.range_search(c, q, "3"), TypeError, "max_distance"),
    ],
)
def test_search_errors(rng, call, error, match):
    codes = da.from_array(tie_codes(rng, 40), chunks=(10, 8))
    with pytest.raises(error, match=match):
        call(codes, codes[:2].compute())


# ============================================================ encode
@pytest.fixture(scope="module")
def descriptors():
    rng = np.random.default_rng(7)
    return rng.standard_normal((600, 48)).astype(np.float32)


@pytest.fixture(scope="module", params=["LSH", "ITQ", "BPBC", "PQ", "RBM", "DeepHash", "SSDH"])
def fitted(request, descriptors):
    from deephash_ext import baselines

    name = request.param
    if name == "SSDH":
        pytest.importorskip("torch")
        labels = np.arange(len(descriptors)) % 4
        model = deephash_ext.SSDH(16, hidden_layer_sizes=(32,), n_epochs=1, random_state=0)
        return model.fit(descriptors, labels), descriptors
    if name == "RBM":
        model = deephash_ext.RBM(n_hidden=32, n_epochs=2, random_state=0)
        return model.fit(1 / (1 + np.exp(-descriptors))), 1 / (1 + np.exp(-descriptors))
    if name == "DeepHash":
        model = deephash_ext.DeepHash(hidden_layer_sizes=(64, 32), n_epochs=2, random_state=0)
        return model.fit(descriptors), descriptors
    params = {
        "LSH": {"n_bits": 64},
        "ITQ": {"n_bits": 32},
        "BPBC": {"n_bits": 48},
        "PQ": {"n_bits": 32},
    }
    model = getattr(baselines, name)(**params[name], random_state=0)
    return model.fit(descriptors), descriptors


def test_encode_equals_the_model_on_every_block_layout(fitted, rng):
    model, X = fitted
    want = model.encode(X)
    for chunks in [(600, 48), (100, 48), ((250, 0, 350), 16)]:
        got = dhd.encode(model, da.from_array(X, chunks=chunks))
        assert got.dtype == np.uint8 and got.shape == want.shape
        np.testing.assert_array_equal(got.compute(), want)


def test_encode_puts_the_model_in_the_graph_once(fitted):
    model, X = fitted
    codes = dhd.encode(model, da.from_array(X, chunks=(50, 48)))
    graph = dict(codes.__dask_graph__())
    holders = [
        key
        for key, task in graph.items()
        if "DataNode" in type(task).__name__ and getattr(task, "value", None) is model
    ]
    assert len(holders) == 1  # one node: each worker fetches the model once
    blocks = [
        key for key in graph if isinstance(key, tuple) and key[0].startswith("deephash-encode")
    ]
    assert len(blocks) == 12
    assert all(holders[0] in graph[key].dependencies for key in blocks)


def test_encode_errors(fitted, descriptors):
    model, X = fitted
    with pytest.raises(TypeError, match="X must be a dask array"):
        dhd.encode(model, X)
    with pytest.raises(TypeError, match="encode method"):
        dhd.encode(object(), da.from_array(X))
    with pytest.raises(ValueError, match="row axis"):
        dhd.encode(model, da.from_array(X[:, 0]))
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        dhd.encode(deephash_ext.baselines.ITQ(n_bits=8), da.from_array(descriptors))


# ============================================================ on a cluster
def test_cluster_search_encode_and_range(client, rng, fitted):
    model, X = fitted
    codes = dhd.encode(model, da.from_array(X, chunks=(77, 48)))
    local = model.encode(X)
    queries = local[:9]
    for k in (1, 10, 100, 600):
        assert_same(dhd.search(codes, queries, k), deephash_ext.search(local, queries, k))
    assert_same(dhd.range_search(codes, queries, 3), deephash_ext.range_search(local, queries, 3))


def test_cluster_tasks_do_not_oversubscribe(client, rng):
    """2 workers x 1 thread x 1 kernel thread per task = the 2 cores; kernels start no thread."""
    codes = rng.integers(0, 256, (400_000, 8), dtype=np.uint8)
    dcodes = da.from_array(codes, chunks=(100_000, 8))

    def started(dask_worker=None):
        from deephash_ext._core import _testing

        return _testing.threads_started()

    nthreads = client.run(lambda dask_worker: dask_worker.state.nthreads)
    assert sum(nthreads.values()) <= os.cpu_count()
    before = client.run(started)
    assert_same(dhd.search(dcodes, codes[:256], 10), deephash_ext.search(codes, codes[:256], 10))
    assert client.run(started) == before  # each task ran its kernels on its own thread
    dhd.search(dcodes, codes[:256], 10, threads_per_task=2)
    assert any(client.run(started)[w] > before[w] for w in before)  # the check can fail


# ============================================================ sharded index
def test_sharded_index_build_open_search_add(client, rng, tmp_path):
    codes = tie_codes(rng, 700)
    dcodes = da.from_array(codes, chunks=((300, 0, 150, 250), 8))
    dhd.build_shards(dcodes, tmp_path)
    manifest = json.loads((tmp_path / "shards.json").read_text())
    assert [s["rows"] for s in manifest["shards"]] == [300, 150, 250]
    queries = queries_for(rng, codes)
    with dhd.ShardedIndex.open(tmp_path, client) as index:
        assert len(index) == 700 and index.n_shards == 3 and index.n_bits == 64
        assert len(set(index.workers)) == 2
        for k in (1, 25, 260, 700):
            d, i = index.search(queries, k)
            assert_same((d, i), deephash_ext.search(codes, queries, k))
        assert_same(index.range_search(queries, 6), range_reference(codes, queries, 6))
        more = tie_codes(rng, 500)
        index.add(more[:40])
        index.add(more[40:])  # fills the last shard to 300 rows, then new shards
        assert index.shard_sizes == [300, 150, 300, 300, 150]
        everything = np.concatenate([codes, more])
        for k in (3, 1200):
            assert_same(index.search(queries, k), deephash_ext.search(everything, queries, k))
        names = sorted(p.name for p in tmp_path.iterdir())
        assert len(names) == 6  # five shards and the manifest: replaced files are gone
    with dhd.ShardedIndex.open(tmp_path, client) as again:
        assert_same(again.search(queries, 30), deephash_ext.search(everything, queries, 30))


def test_sharded_index_with_explicit_ids(client, rng, tmp_path):
    codes = tie_codes(rng, 200)
    ids = (np.arange(200, dtype=np.uint64) * 7 + 2**63)[::-1].copy()
    dhd.build_shards(
        da.from_array(codes, chunks=(64, 8)), tmp_path, ids=da.from_array(ids, chunks=64)
    )
    index = dhd.ShardedIndex.open(tmp_path, client)
    assert index.id_dtype == "uint64"
    ref_d, ref_i = knn_reference(codes, codes[:5], 50)
    d, i = index.search(codes[:5], 50)
    np.testing.assert_array_equal(d, ref_d)
    np.testing.assert_array_equal(i, ids[ref_i])
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ValueError, match="already in the index"):
        index.add(codes[:2], ids=np.array([5, int(ids[3])], np.uint64))
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    assert len(index) == 200
    index.add(codes[:2])  # default ids continue after the largest
    d, i = index.search(codes[0], 3)
    assert int(ids.max()) + 1 in i.tolist()
    index.close()


def test_an_empty_sharded_index(client, rng, tmp_path):
    dhd.build_shards(da.zeros((0, 8), dtype=np.uint8, chunks=(10, 8)), tmp_path)
    index = dhd.ShardedIndex.open(tmp_path, client)
    assert len(index) == 0 and index.n_shards == 0
    queries = rng.integers(0, 256, (3, 8), dtype=np.uint8)
    lims, distances, ids = index.range_search(queries, 64)
    np.testing.assert_array_equal(lims, [0, 0, 0, 0])
    assert len(distances) == len(ids) == 0
    with pytest.raises(ValueError, match="k must be in"):
        index.search(queries, 1)
    codes = tie_codes(rng, 30)
    index.add(codes)  # one new shard (DEFAULT_SHARD_ROWS rows at most)
    assert index.shard_sizes == [30]
    assert_same(index.search(queries, 30), deephash_ext.search(codes, queries, 30))
    index.close()


def test_sharded_index_pickles_as_a_path(client, rng, tmp_path):
    codes = tie_codes(rng, 5000)
    dhd.build_shards(da.from_array(codes, chunks=(2500, 8)), tmp_path)
    index = dhd.ShardedIndex.open(tmp_path, client)
    data = pickle.dumps(index)
    assert len(data) < 1000
    clone = pickle.loads(data)  # reopened with the default client
    assert_same(clone.search(codes[:3], 4), index.search(codes[:3], 4))
    clone.close()
    index.close()


def test_sharded_index_refuses_damaged_manifests(client, rng, tmp_path):
    codes = tie_codes(rng, 100)
    dhd.build_shards(da.from_array(codes, chunks=(50, 8)), tmp_path)
    manifest_path = tmp_path / "shards.json"
    good = json.loads(manifest_path.read_text())
    with pytest.raises(FileExistsError):
        dhd.build_shards(da.from_array(codes, chunks=(50, 8)), tmp_path)
    cases = [
        ("{", "not a sharded-index manifest"),
        (json.dumps({**good, "format": "x"}), "format"),
        (json.dumps({**good, "version": 2}), "version"),
        (json.dumps({**good, "n_bits": -1}), "n_bits"),
        (json.dumps({**good, "id_dtype": "float"}), "id_dtype"),
        (
            json.dumps({**good, "shards": [{"file": "../shard-000000.dhx", "rows": 50}]}),
            "file name",
        ),
        (json.dumps({**good, "shards": [{"file": "shard-000000.dhx", "rows": "50"}]}), "rows"),
        (json.dumps({**good, "shards": good["shards"] * 2}), "twice"),
        (
            json.dumps({**good, "shards": [{"file": "shard-000000.dhx", "rows": 51}]}),
            "manifest lists",
        ),
    ]
    for text, match in cases:
        manifest_path.write_text(text)
        with pytest.raises(ValueError, match=match):
            dhd.ShardedIndex.open(tmp_path, client)
    manifest_path.unlink()
    with pytest.raises(FileNotFoundError):
        dhd.ShardedIndex.open(tmp_path, client)


def test_manifest_reader_fuzz(rng, tmp_path):
    """Damaged manifests (bytes flipped, cut, inserted; deep nesting) are a ValueError or a
    manifest whose every field passed the checks, never another exception."""
    good = {
        "format": "deephash_ext.sharded-index",
        "version": 1,
        "n_bits": 64,
        "id_dtype": "int64",
        "shard_rows": 50,
        "next_id": 100,
        "shards": [
            {"file": "shard-000000.dhx", "rows": 50},
            {"file": "shard-000001.dhx", "rows": 50},
        ],
    }
    raw = json.dumps(good).encode()
    assert dhd._read_manifest(_write(tmp_path, raw)) == good
    accepted = 0
    for trial in range(3000):
        data = bytearray(raw)
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, max(len(data), 1)))
            action = trial % 3
            if action == 0:
                data[at] = int(rng.integers(0, 256))
            elif action == 1:
                del data[at:]
                data += raw[: int(rng.integers(0, 8))]
            else:
                data[at:at] = bytes(rng.integers(0, 256, int(rng.integers(1, 4)), dtype=np.uint8))
        try:
            manifest = dhd._read_manifest(_write(tmp_path, bytes(data)))
        except ValueError:
            continue
        accepted += 1
        assert all(isinstance(s["rows"], int) and s["rows"] >= 1 for s in manifest["shards"])
    assert accepted < 3000
    with pytest.raises(ValueError, match="not a sharded-index manifest"):
        dhd._read_manifest(_write(tmp_path, b"[" * 100_000))


def _write(directory, data: bytes):
    (directory / "shards.json").write_bytes(data)
    return directory


def test_build_shards_errors(rng, tmp_path):
    codes = da.from_array(tie_codes(rng, 40), chunks=(10, 8))
    with pytest.raises(ValueError, match="n_bits"):
        dhd.build_shards(codes, tmp_path, n_bits=56)
    unknown = codes[da.from_array(rng.random(40) < 0.5, chunks=10)]
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        dhd.build_shards(unknown, tmp_path)
    with pytest.raises(TypeError, match=r"use ShardedIndex\.open"):
        dhd.ShardedIndex()


def test_importing_the_package_does_not_import_dask():
    code = "import sys, deephash_ext; deephash_ext.search; print('dask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ============================================================ a worker dies
def test_a_worker_killed_during_a_search_is_retried(rng, tmp_path):
    """The killed worker's shards are opened again elsewhere; results are unchanged."""
    codes = rng.integers(0, 256, (400_000, 32), dtype=np.uint8)
    with dask.config.set(scheduler="threads"):  # written here, not through a cluster
        dhd.build_shards(da.from_array(codes, chunks=(50_000, 32)), tmp_path)
    queries = codes[:2000]
    want = deephash_ext.search(codes, queries, 20)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        index = dhd.ShardedIndex.open(tmp_path, c)
        pids = c.run(os.getpid)
        victim = index.workers[0]
        result: list = []
        searcher = threading.Thread(target=lambda: result.append(index.search(queries, 20)))
        searcher.start()
        deadline = time.monotonic() + 30
        while not any(c.processing().values()) and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(pids[victim], signal.SIGKILL)
        searcher.join(timeout=120)
        assert not searcher.is_alive()
        assert result, "the search raised"
        assert_same(result[0], want)
        assert victim not in c.scheduler_info()["workers"]
        index.close()


def test_the_readme_example_runs(tmp_path):
    """The README's Dask example, verbatim, as a script."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("## Beyond one machine (Dask)") :]
    code = section[section.index("```python\n") + 10 :]
    code = code[: code.index("```")]
    script = tmp_path / "dask_example.py"
    script.write_text(code)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("200005 ")  # len(index) after adding the 5 queries
