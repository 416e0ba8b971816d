"""Distributed encoding, search and sharded indexes on Dask (``pip install ".[dask]"``).

Importing :mod:`deephash_ext` never imports Dask; this module does, on first use. Every
function runs on whatever Dask scheduler is active: a ``distributed.Client`` (a laptop's
``LocalCluster`` or a cluster started with ``dask scheduler`` / ``dask worker``,
dask-jobqueue or Kubernetes), or Dask's local threads.

Exactness. Searches run per block (or per shard) with :mod:`deephash_ext.shards` and merge
the results as a tree over *adjacent* groups, ranking by (distance, global position): the
results equal :func:`deephash_ext.search` on the concatenated codes, ties included, for any
block layout.

Threads. Dask runs one task per worker thread. Each task's kernels use ``threads_per_task``
threads (default 1, set for the calling thread only with
:func:`deephash_ext.calling_thread_num_threads`), so a worker never runs more kernel threads
than worker threads times ``threads_per_task``: with the default, never more than the cores
Dask gave it. On hosts with one single-threaded worker per machine, pass the machine's
core count as ``threads_per_task``. The torch heads (SSDH, DLBHC, DRHN) follow torch's own
thread count, which Dask's nanny sets to 1 in each worker process (``OMP_NUM_THREADS=1``).

Failures. A worker that dies during a call is handled by Dask's own rule: its tasks (the
per-block searches, or the opening of a shard, which only maps a file) run again on the
other workers, and the call returns the same results. A task that kills its worker
``distributed.scheduler.allowed-failures`` times (default 3) makes the call raise
``distributed.KilledWorker``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._optional import require
from ._runtime import calling_thread_num_threads
from ._validation import check_codes, check_int, check_queries
from .index import BinaryIndex
from .shards import merge_range, merge_topk, range_search_shard, search_shard

_dask = require("dask", "deephash_ext.dask", "dask")
_da = require("dask.array", "deephash_ext.dask", "dask")

__all__ = ["ShardedIndex", "build_shards", "encode", "range_search", "search"]

MANIFEST = "shards.json"
DEFAULT_SHARD_ROWS = 1 << 20  # rows per shard that add() starts when build_shards wrote none
_FORMAT = "deephash_ext.sharded-index"
_VERSION = 1
_SHARD_NAME = re.compile(r"shard-[0-9]{6}(-[0-9a-f]{8})?\.dhx")


# ----------------------------------------------------------------------------- arguments
def _threads(threads_per_task: object) -> int:
    if threads_per_task is None:
        return 1
    return check_int(threads_per_task, "threads_per_task", minimum=1, maximum=4096)


def _dask_codes(codes: object, name: str = "codes") -> Any:
    """A 2-D uint8 dask array with one chunk across the bytes of a code."""
    if not isinstance(codes, _da.Array):
        raise TypeError(f"{name} must be a dask array, got {type(codes).__name__}")
    if codes.dtype != np.uint8:
        raise TypeError(f"{name} must have dtype uint8 (packed codes), got {codes.dtype}")
    if codes.ndim != 2 or codes.shape[1] < 1:
        raise ValueError(f"{name} must be 2-D (n, code_bytes), got shape {codes.shape}")
    return codes.rechunk({1: -1}) if len(codes.chunks[1]) > 1 else codes


def _dask_ids(ids: object, codes: Any) -> Any:
    """ids as a 1-D int64 / uint64 dask array chunked like the rows of codes."""
    if not isinstance(ids, _da.Array):
        raise TypeError(f"ids must be a dask array, got {type(ids).__name__}")
    if ids.dtype not in (np.int64, np.uint64):
        raise TypeError(f"ids must have dtype int64 or uint64, got {ids.dtype}")
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {ids.shape}")
    if ids.chunks[0] != codes.chunks[0]:
        if np.isnan(codes.shape[0]) or np.isnan(ids.shape[0]):
            raise ValueError(
                "ids and codes have unknown chunk sizes that may differ; "
                "call compute_chunk_sizes() on both"
            )
        if ids.shape[0] != codes.shape[0]:
            raise ValueError(f"ids has {ids.shape[0]} entries but codes has {codes.shape[0]} rows")
        ids = ids.rechunk((codes.chunks[0],))
    return ids


def _queries(queries: object, code_bytes: int) -> tuple[np.ndarray, bool]:
    q, single = check_queries(queries)
    if q.shape[1] != code_bytes:
        raise ValueError(f"queries have {q.shape[1]} bytes per code but codes have {code_bytes}")
    return q, single


def _over_blocks(
    blocks: Any,
    ids: object,
    split_every: int,
    leaf: tuple[Any, ...],
    merge: tuple[Any, ...],
) -> Any:
    """Run ``leaf[0](block, queries, leaf[2], ids_of_block, leaf[3])`` on every block, then
    ``merge[0](nodes, *merge[1:])`` over ``split_every`` *adjacent* nodes at a time (leaves
    and merged nodes have one form, so any tree of them is exact), and compute the root."""
    id_blocks: list[Any] = [None] * blocks.numblocks[0]
    if ids is not None:
        id_blocks = list(_dask_ids(ids, blocks).to_delayed().ravel())
    func, queries, arg, threads = leaf
    q_node = _dask.delayed(queries, pure=True)  # one node: each worker fetches it once
    nodes = [
        _dask.delayed(func, pure=True)(block, q_node, arg, id_block, threads)
        for block, id_block in zip(blocks.to_delayed().ravel(), id_blocks)
    ]
    while len(nodes) > 1:
        nodes = [
            _dask.delayed(merge[0], pure=True)(nodes[i : i + split_every], *merge[1:])
            for i in range(0, len(nodes), split_every)
        ]
    return _dask.compute(nodes[0])[0]


# ----------------------------------------------------------------------------- encode
def _encode_block(block: np.ndarray, model: Any, threads: int, width: int) -> np.ndarray:
    if len(block) == 0:  # the estimators refuse empty input; an empty block has no codes
        return np.empty((0, width), np.uint8)
    with calling_thread_num_threads(threads):
        return np.asarray(model.encode(block))


def encode(model: Any, X: object, *, threads_per_task: int | None = None) -> Any:
    """Encode a dask array of descriptors into a dask array of packed codes, block by block.

    Parameters
    ----------
    model : fitted encoder
        Any fitted model of the library with an ``encode`` method (DeepHash, RBM, LSH, ITQ,
        BPBC, PQ, SSDH, DLBHC, DRHN). It enters the graph as one node, so each worker
        receives it once, not once per block.
    X : dask array, shape (n, ...)
        Descriptors (or images, for DRHN); rechunked to whole rows if needed.
    threads_per_task : int, optional
        Kernel threads per task (default 1, see the module notes).

    Returns
    -------
    codes : dask array of uint8, shape (n, code_bytes)
        Lazy; chunked like the rows of ``X``.

    Raises
    ------
    TypeError
        If ``X`` is not a dask array or ``model`` has no ``encode`` method.
    ValueError
        If ``X`` has fewer than 2 dimensions.
    sklearn.exceptions.NotFittedError
        If ``model`` is not fitted (it encodes one zero row on the client to learn the width).
    """
    if not isinstance(X, _da.Array):
        raise TypeError(f"X must be a dask array, got {type(X).__name__}")
    rows: Any = X
    if not callable(getattr(model, "encode", None)):
        raise TypeError(
            f"model must be a fitted encoder with an encode method, got {type(model).__name__}"
        )
    if rows.ndim < 2:
        raise ValueError(f"X must have a row axis and at least one more, got shape {rows.shape}")
    threads = _threads(threads_per_task)
    rows = rows.rechunk({axis: -1 for axis in range(1, rows.ndim)})
    probe = np.asarray(model.encode(np.zeros((1, *rows.shape[1:]), dtype=rows.dtype)))
    if probe.ndim != 2 or probe.dtype != np.uint8:
        raise TypeError(
            f"model.encode must return a 2-D uint8 array, got {probe.dtype} {probe.shape}"
        )
    model_node = _dask.delayed(model, pure=True)
    return _da.map_blocks(
        _encode_block,
        rows,
        model_node,
        threads,
        probe.shape[1],
        dtype=np.uint8,
        chunks=(rows.chunks[0], (probe.shape[1],)),
        drop_axis=list(range(2, rows.ndim)),
        meta=np.empty((0, 0), np.uint8),
        name="deephash-encode-" + _dask.base.tokenize(rows, model_node, threads),
    )


# ----------------------------------------------------------------------------- search
def _search_leaf(
    block: np.ndarray, queries: np.ndarray, k: int, ids: np.ndarray | None, threads: int
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """(distances, positions or ids, rows, payload is ids) of one block."""
    with calling_thread_num_threads(threads):
        distances, rows = search_shard(block, queries, k)
    return (distances, rows if ids is None else ids[rows], len(block), ids is not None)


def _shifted(parts: Sequence[tuple[Any, ...]], payload: int) -> list[np.ndarray]:
    """Payloads of adjacent parts, positions made relative to the first part's start."""
    out, start = [], 0
    for part in parts:
        out.append(part[payload] + start if start and not part[-1] else part[payload])
        start += part[-2]
    return out


def _merge_topk_node(
    parts: Sequence[tuple[np.ndarray, np.ndarray, int, bool]], k: int, threads: int
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    with calling_thread_num_threads(threads):
        distances, payloads = merge_topk(list(zip([p[0] for p in parts], _shifted(parts, 1))), k)
    return distances, payloads, sum(p[2] for p in parts), parts[0][3]


def search(
    codes: object,
    queries: object,
    k: int,
    *,
    ids: object = None,
    split_every: int = 8,
    threads_per_task: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest codes over a dask array of codes; :func:`deephash_ext.search` results.

    Each block is searched where it lives; the per-block top-k lists (``nq x k`` each) are
    merged as a tree by (distance, global position), so only queries and results travel.

    Parameters
    ----------
    codes : dask array of uint8, shape (n, code_bytes)
        Any row chunking, empty blocks and unknown chunk sizes included.
    queries : ndarray of uint8, shape (nq, code_bytes) or (code_bytes,)
        Sent once to each worker that needs them.
    k : int
        ``1 <= k <= n``.
    ids : dask array of int64 or uint64, shape (n,), optional
        Returned instead of row positions (rechunked like ``codes``).
    split_every : int, default 8
        Results merged per tree node (``>= 2``).
    threads_per_task : int, optional
        Kernel threads per task (default 1, see the module notes).

    Returns
    -------
    distances : ndarray of int32, shape (nq, k)
    indices : ndarray of int64, shape (nq, k)
        Global row positions (or ``ids``); ties ordered by position. 1-D for a 1-D query.

    Raises
    ------
    TypeError
        If ``codes`` / ``ids`` are not dask arrays of the right dtype, ``queries`` is not
        uint8, or an integer argument is not an integer.
    ValueError
        For wrong shapes or widths, ``k`` outside ``[1, n]`` (checked after the search when
        the chunk sizes are unknown), or ``split_every < 2``.
    """
    blocks = _dask_codes(codes)
    q, single = _queries(queries, blocks.shape[1])
    k = check_int(k, "k", minimum=1)
    split_every = check_int(split_every, "split_every", minimum=2)
    threads = _threads(threads_per_task)
    if not np.isnan(blocks.shape[0]) and k > blocks.shape[0]:
        raise ValueError(f"k must be in [1, n] = [1, {blocks.shape[0]}], got {k}")
    distances, indices, n, _ = _over_blocks(
        blocks, ids, split_every, (_search_leaf, q, k, threads), (_merge_topk_node, k, threads)
    )
    if k > n:
        raise ValueError(f"k must be in [1, n] = [1, {n}], got {k}")
    return (distances[0], indices[0]) if single else (distances, indices)


def _range_leaf(
    block: np.ndarray, queries: np.ndarray, radius: int, ids: np.ndarray | None, threads: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, bool]:
    with calling_thread_num_threads(threads):
        lims, distances, rows = range_search_shard(block, queries, radius)
    return (lims, distances, rows if ids is None else ids[rows], len(block), ids is not None)


def _merge_range_node(
    parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, int, bool]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, bool]:
    lims, distances, payloads = merge_range(
        list(zip([p[0] for p in parts], [p[1] for p in parts], _shifted(parts, 2)))
    )
    return lims, distances, payloads, sum(p[3] for p in parts), parts[0][4]


def range_search(
    codes: object,
    queries: object,
    max_distance: int,
    *,
    ids: object = None,
    split_every: int = 8,
    threads_per_task: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every code within a Hamming radius, over a dask array of codes.

    The contract of :func:`deephash_ext.range_search` (the ``lims`` layout, results sorted by
    (distance, global position)); parameters as :func:`search`, with ``max_distance >= 0``.

    Raises
    ------
    TypeError, ValueError
        As :func:`search`, with ``max_distance >= 0``.
    """
    blocks = _dask_codes(codes)
    q, _ = _queries(queries, blocks.shape[1])
    radius = check_int(max_distance, "max_distance", minimum=0)
    split_every = check_int(split_every, "split_every", minimum=2)
    threads = _threads(threads_per_task)
    lims, distances, indices, _, _ = _over_blocks(
        blocks, ids, split_every, (_range_leaf, q, radius, threads), (_merge_range_node,)
    )
    return lims, distances, indices


# ----------------------------------------------------------------------------- sharded index
class _Shard:
    """A shard opened on a worker: its BinaryIndex, memory-mapped. It pickles as its path, so
    a shard that Dask moves between processes moves as a path (and is mapped again there),
    never as codes."""

    __slots__ = ("index", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self.index = BinaryIndex.load(path, mmap=True)

    def __reduce__(self) -> tuple[type[_Shard], tuple[str]]:
        return (_Shard, (self.path,))


def _shard_info(shard: _Shard) -> tuple[int, int, str, int]:
    index = shard.index
    return len(index), index.n_bits, index.id_dtype, index.next_id


def _search_in_shard(
    shard: _Shard, queries: np.ndarray, k: int, threads: int
) -> tuple[np.ndarray, np.ndarray]:
    index = shard.index
    width = min(k, len(index))
    if width == 0:
        return np.empty((len(queries), 0), np.int32), np.empty((len(queries), 0), index.id_dtype)
    with calling_thread_num_threads(threads):
        return index.search(queries, width)


def _range_in_shard(
    shard: _Shard, queries: np.ndarray, radius: int, threads: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with calling_thread_num_threads(threads):
        return shard.index.range_search(queries, radius)


def _merge_ids(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int, threads: int) -> Any:
    with calling_thread_num_threads(threads):
        return merge_topk(parts, k)


def _merge_range_ids(parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Any:
    return merge_range(parts)


def _write_shard(
    codes: np.ndarray, ids: np.ndarray | None, first_id: int, path: str, n_bits: int, id_dtype: str
) -> tuple[int, int]:
    """Write one shard file (atomically); (rows, next id). An empty block writes nothing."""
    if len(codes) == 0:
        return 0, first_id
    index = BinaryIndex(n_bits, id_dtype=id_dtype)
    index.add(
        codes, np.arange(first_id, first_id + len(codes), dtype=np.int64) if ids is None else ids
    )
    index.save(path)
    return len(index), index.next_id


def _append_to_shard(shard: _Shard, codes: np.ndarray, ids: np.ndarray, path: str) -> int:
    """Write the shard with rows added to a new file (the old file stays as it was)."""
    index = BinaryIndex.load(shard.path)
    index.add(codes, ids)
    index.save(path)
    return len(index)


def _contains_any(shard: _Shard, ids: np.ndarray) -> np.ndarray:
    return ids[np.asarray(shard.index.contains(ids), dtype=bool)]


def _check_manifest(meta: object, where: str) -> dict[str, Any]:
    """The manifest's fields, every one checked before use."""

    def fail(what: str) -> ValueError:
        return ValueError(f"{where} is not a sharded-index manifest: {what}")

    def count(value: object, what: str, low: int = 0, high: int = 2**63 - 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise fail(f"{what} must be an integer in [{low}, {high}], got {value!r}")
        return value

    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise fail(f"'format' must be {_FORMAT!r}")
    if meta.get("version") != _VERSION:
        raise fail(f"version {meta.get('version')!r} is not supported (this reader: {_VERSION})")
    if meta.get("id_dtype") not in ("int64", "uint64"):
        raise fail(f"'id_dtype' must be 'int64' or 'uint64', got {meta.get('id_dtype')!r}")
    shards = meta.get("shards")
    if not isinstance(shards, list):
        raise fail("'shards' must be a list")
    files = []
    for i, shard in enumerate(shards):
        if not isinstance(shard, dict) or not isinstance(shard.get("file"), str):
            raise fail(f"shards[{i}] must hold a 'file' name")
        if not _SHARD_NAME.fullmatch(shard["file"]):
            raise fail(f"shards[{i}] file {shard['file']!r} is not a shard file name")
        files.append(
            {"file": shard["file"], "rows": count(shard.get("rows"), f"shards[{i}].rows", 1)}
        )
    if len({f["file"] for f in files}) != len(files):
        raise fail("a shard file is listed twice")
    return {
        "format": _FORMAT,
        "version": _VERSION,
        "n_bits": count(meta.get("n_bits"), "'n_bits'", 1, 8 * 1 << 20),
        "id_dtype": meta["id_dtype"],
        "shard_rows": count(meta.get("shard_rows"), "'shard_rows'", 1),
        "next_id": count(meta.get("next_id"), "'next_id'", 0, 2**64 - 1),
        "shards": files,
    }


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    with open(path, "rb") as handle:
        raw = handle.read(1 << 26)
        if handle.read(1):
            raise ValueError(f"{path} is larger than 64 MiB: not a sharded-index manifest")
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"{path} is not a sharded-index manifest: {error}") from None
    return _check_manifest(meta, str(path))


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    from ._io import atomic_write

    text = json.dumps(manifest, indent=1).encode("utf-8")
    atomic_write(directory / MANIFEST, lambda handle: handle.write(text))


def build_shards(
    codes: object, path: str | os.PathLike[str], *, ids: object = None, n_bits: int | None = None
) -> None:
    """Write one :class:`~deephash_ext.BinaryIndex` file per block of a dask array of codes.

    Each block is written by the task that holds it, into ``path`` (a directory on storage
    every worker and the client can reach: a network file system, or a local disk for a
    one-machine cluster), then ``path/shards.json`` lists the shards in row order. Open the
    result with :meth:`ShardedIndex.open`.

    Parameters
    ----------
    codes : dask array of uint8, shape (n, code_bytes)
        One shard per non-empty block, in block order.
    path : str or path-like
        The directory; created if needed. It must not hold a manifest already.
    ids : dask array of int64 or uint64, shape (n,), optional
        Unique ids (checked within each shard). The default is the row position, as
        :meth:`BinaryIndex.add` gives (which needs known chunk sizes).
    n_bits : int, optional
        Bits per code, ``8 * code_bytes - 7 <= n_bits <= 8 * code_bytes``; default
        ``8 * code_bytes``.

    Raises
    ------
    TypeError, ValueError
        For bad ``codes``, ``ids`` or ``n_bits``, or unknown chunk sizes without ``ids``.
    FileExistsError
        If ``path`` already holds a sharded index.
    OSError
        If the files cannot be written (nothing is listed until every shard is written).
    """
    blocks = _dask_codes(codes)
    code_bytes = int(blocks.shape[1])
    n_bits = 8 * code_bytes if n_bits is None else check_int(n_bits, "n_bits", minimum=1)
    if not 8 * code_bytes - 7 <= n_bits <= 8 * code_bytes:
        raise ValueError(
            f"n_bits must be in [{8 * code_bytes - 7}, {8 * code_bytes}] for "
            f"{code_bytes}-byte codes, got {n_bits}"
        )
    id_dtype = "int64"
    id_blocks: list[Any] = [None] * blocks.numblocks[0]
    if ids is not None:
        id_array = _dask_ids(ids, blocks)
        id_dtype = str(id_array.dtype)
        id_blocks = list(id_array.to_delayed().ravel())
    elif any(np.isnan(blocks.chunks[0])):
        raise ValueError(
            "codes have unknown chunk sizes: call codes.compute_chunk_sizes() or pass ids"
        )
    directory = Path(path).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / MANIFEST).exists():
        raise FileExistsError(f"{directory} already holds a sharded index ({MANIFEST})")
    offsets = np.concatenate([[0], np.cumsum(blocks.chunks[0])]) if ids is None else None
    files = [f"shard-{i:06d}.dhx" for i in range(blocks.numblocks[0])]
    tasks = [
        _dask.delayed(_write_shard, pure=False)(
            block,
            id_block,
            0 if offsets is None else int(offsets[i]),
            str(directory / files[i]),
            n_bits,
            id_dtype,
        )
        for i, (block, id_block) in enumerate(zip(blocks.to_delayed().ravel(), id_blocks))
    ]
    written = _dask.compute(*tasks)
    shards = [{"file": f, "rows": rows} for f, (rows, _) in zip(files, written) if rows]
    _write_manifest(
        directory,
        {
            "format": _FORMAT,
            "version": _VERSION,
            "n_bits": n_bits,
            "id_dtype": id_dtype,
            "shard_rows": max([s["rows"] for s in shards], default=DEFAULT_SHARD_ROWS),
            "next_id": max([next_id for _, next_id in written], default=0),
            "shards": shards,
        },
    )


class ShardedIndex:
    """A sharded index on a Dask cluster: one memory-mapped BinaryIndex per shard, pinned to
    a worker.

    Open it with :meth:`open`. Each shard is mapped by one worker from the shared directory
    (the codes never pass through the scheduler or the client); a search sends the queries
    once to each worker, searches every shard where it lives and merges the results on the
    workers as a tree by (distance, shard order, insertion order), so the results equal one
    :class:`BinaryIndex` holding every row in order, ties included. Each worker holds its
    shards' pages (the operating system's page cache) plus O(batch x k) results.

    If a worker dies, Dask opens its shards again on the other workers (mapping a file is
    cheap) and reruns the lost searches: the call returns the same results.

    Searches may run from several threads at once; :meth:`add` takes a lock, and readers in
    other processes see the new rows when they open the index again.
    """

    _client: Any
    _directory: Path
    _lock: threading.Lock
    _token: str
    _manifest: dict[str, Any]
    _futures: list[Any]  # one per shard: the _Shard held on a worker
    _workers: list[str]  # where each shard was opened

    def __init__(self) -> None:  # use ShardedIndex.open
        raise TypeError("use ShardedIndex.open(path, client) to open a sharded index")

    @classmethod
    def open(cls, path: str | os.PathLike[str], client: Any = None) -> ShardedIndex:
        """Open the sharded index written by :func:`build_shards` at ``path``.

        Parameters
        ----------
        path : str or path-like
            The directory, as every worker sees it.
        client : distributed.Client, optional
            Default: the current client (``distributed.get_client()``).

        Raises
        ------
        ValueError
            If there is no client, the cluster has no workers, or the manifest or a shard
            file is damaged or does not match the manifest.
        FileNotFoundError
            If ``path`` holds no manifest.
        """
        distributed = require("distributed", "ShardedIndex", "dask")
        if client is None:
            client = distributed.get_client()
        elif not isinstance(client, distributed.Client):
            raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
        self = object.__new__(cls)
        self._client = client
        self._directory = Path(path).absolute()
        self._lock = threading.Lock()
        self._token = secrets.token_hex(6)
        manifest = _read_manifest(self._directory)
        self._manifest = manifest
        # Consecutive shards on one worker: the first merges of a search need no transfer.
        workers = self._live_workers()
        n = len(manifest["shards"])
        self._workers = [workers[i * len(workers) // n] for i in range(n)]
        self._futures = self._open_files([s["file"] for s in manifest["shards"]], self._workers)
        self._check_shards(self._futures, manifest["shards"])
        return self

    # -- state
    def _live_workers(self) -> list[str]:
        workers = sorted(self._client.scheduler_info()["workers"])
        if not workers:
            raise ValueError("the client's cluster has no workers")
        return workers

    def _open_files(self, files: list[str], placed: list[str]) -> list[Any]:
        """Futures of the shards ``files`` opened on the workers ``placed`` (preferred: if
        one dies, Dask opens its shards elsewhere)."""
        return [
            self._client.submit(
                _Shard,
                str(self._directory / name),
                key=f"deephash-shard-{self._token}-{name}",
                workers=[worker],
                allow_other_workers=True,
            )
            for name, worker in zip(files, placed)
        ]

    def _check_shards(self, futures: list[Any], listed: list[dict[str, Any]]) -> None:
        infos = self._client.gather(
            [self._client.submit(_shard_info, f, pure=False) for f in futures]
        )
        for info, shard in zip(infos, listed):
            rows, n_bits, id_dtype, _ = info
            expected = (shard["rows"], self._manifest["n_bits"], self._manifest["id_dtype"])
            if (rows, n_bits, id_dtype) != expected:
                raise ValueError(
                    f"shard {shard['file']} holds (rows, n_bits, id_dtype) = "
                    f"{(rows, n_bits, id_dtype)} but the manifest lists {expected}"
                )

    @property
    def path(self) -> Path:
        """The directory."""
        return self._directory

    @property
    def n_bits(self) -> int:
        return int(self._manifest["n_bits"])

    @property
    def code_bytes(self) -> int:
        return -(-self.n_bits // 8)

    @property
    def id_dtype(self) -> str:
        return str(self._manifest["id_dtype"])

    @property
    def n_shards(self) -> int:
        return len(self._manifest["shards"])

    @property
    def shard_sizes(self) -> list[int]:
        """Rows per shard, in order."""
        return [int(s["rows"]) for s in self._manifest["shards"]]

    @property
    def workers(self) -> list[str]:
        """The worker each shard was opened on (Dask moves it if that worker dies)."""
        return list(self._workers)

    def __len__(self) -> int:
        return sum(self.shard_sizes)

    def __repr__(self) -> str:
        return (
            f"ShardedIndex({str(self._directory)!r}, n={len(self)}, "
            f"n_shards={self.n_shards}, n_bits={self.n_bits})"
        )

    def __reduce__(self) -> tuple[Callable[..., ShardedIndex], tuple[str]]:
        return (ShardedIndex.open, (str(self._directory),))  # a path, never codes

    def close(self) -> None:
        """Release the shards on the workers."""
        self._client.cancel(self._futures)
        self._futures = []

    def __enter__(self) -> ShardedIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- search
    def _submit(
        self, futures: list[Any], workers: list[str], func: Callable[..., Any], *args: Any
    ) -> list[Any]:
        return [
            self._client.submit(func, f, *args, pure=False, workers=[w], allow_other_workers=True)
            for f, w in zip(futures, workers)
        ]

    def _reduce(
        self,
        parts: list[Any],
        workers: list[str],
        func: Callable[..., Any],
        *args: Any,
        split_every: int = 8,
    ) -> Any:
        """Merge the per-shard results (in shard order) as a tree and gather the root. The
        first level merges runs of consecutive shards held by one worker, on that worker,
        so only merged results travel."""
        groups: list[list[int]] = []
        for i, worker in enumerate(workers):
            if groups and workers[groups[-1][0]] == worker and len(groups[-1]) < split_every:
                groups[-1].append(i)
            else:
                groups.append([i])
        if len(parts) > 1:
            parts = [
                self._client.submit(
                    func,
                    [parts[i] for i in group],
                    *args,
                    pure=False,
                    workers=[workers[group[0]]],
                    allow_other_workers=True,
                )
                for group in groups
            ]
        while len(parts) > 1:
            parts = [
                self._client.submit(func, parts[i : i + split_every], *args, pure=False)
                for i in range(0, len(parts), split_every)
            ]
        return self._client.gather(parts[0])

    def search(
        self, queries: object, k: int, *, threads_per_task: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest codes; the contract of :meth:`BinaryIndex.search`.

        Raises
        ------
        TypeError, ValueError
            As :meth:`BinaryIndex.search`, with ``k`` in ``[1, len(index)]``.
        """
        futures, workers, n = self._futures, self._workers, len(self)
        q, single = _queries(queries, self.code_bytes)
        k = check_int(k, "k")
        if not 1 <= k <= n:
            raise ValueError(f"k must be in [1, len(index)] = [1, {n}], got {k}")
        threads = _threads(threads_per_task)
        q_future = self._client.scatter(q, broadcast=True, hash=False)
        parts = self._submit(futures, workers, _search_in_shard, q_future, k, threads)
        distances, ids = self._reduce(parts, workers, _merge_ids, k, threads)
        return (distances[0], ids[0]) if single else (distances, ids)

    def range_search(
        self, queries: object, max_distance: int, *, threads_per_task: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every code within a radius; the contract of :meth:`BinaryIndex.range_search`."""
        futures, workers = self._futures, self._workers
        q, _ = _queries(queries, self.code_bytes)
        radius = check_int(max_distance, "max_distance", minimum=0)
        threads = _threads(threads_per_task)
        if not futures:  # an index without shards finds nothing
            empty = np.empty(0, np.int32), np.empty(0, self.id_dtype)
            return (np.zeros(len(q) + 1, np.int64), *empty)
        q_future = self._client.scatter(q, broadcast=True, hash=False)
        parts = self._submit(futures, workers, _range_in_shard, q_future, radius, threads)
        return self._reduce(parts, workers, _merge_range_ids)

    # -- add
    def add(self, codes: object, ids: object = None) -> None:
        """Add codes: they fill the last shard up to ``shard_rows`` rows, the rest go to new
        shards of at most ``shard_rows`` rows (the largest shard written by
        :func:`build_shards`).

        The new and rewritten shard files are written first (new names), then the manifest
        is replaced atomically: a failed call leaves the files and this object as they were.

        Parameters
        ----------
        codes : ndarray of uint8, shape (n, code_bytes)
        ids : array_like of int, shape (n,), optional
            New unique ids; by default ids continue after the largest id ever added.

        Raises
        ------
        TypeError, ValueError
            As :meth:`BinaryIndex.add`; also when an id is already in any shard.
        """
        with self._lock:
            manifest = self._manifest
            new_codes = check_codes(codes, "codes")
            if new_codes.shape[1] != self.code_bytes:
                raise ValueError(
                    f"codes have {new_codes.shape[1]} bytes per code but the index has "
                    f"{self.code_bytes}"
                )
            if len(new_codes) == 0:
                return
            if ids is None:
                start = manifest["next_id"]
                ids = np.arange(start, start + len(new_codes), dtype=np.uint64).astype(
                    self.id_dtype
                )
            batch = BinaryIndex(self.n_bits, id_dtype=self.id_dtype)
            batch.add(new_codes, ids)  # checks the ids: type, range, unique within the batch
            new_ids = batch.ids
            present = np.concatenate(
                self._client.gather(
                    [
                        self._client.submit(_contains_any, f, new_ids, pure=False)
                        for f in self._futures
                    ]
                )
                or [new_ids[:0]]
            )
            if len(present):
                raise ValueError(f"ids already in the index: {present[:10].tolist()}")
            self._add_locked(new_codes, new_ids, max(manifest["next_id"], int(new_ids.max()) + 1))

    def _add_locked(self, codes: np.ndarray, ids: np.ndarray, next_id: int) -> None:
        manifest = self._manifest
        shards = [dict(s) for s in manifest["shards"]]
        limit = manifest["shard_rows"]
        client, directory = self._client, self._directory
        # The plan: the last shard is rewritten under a new name with the rows it has room
        # for; the rest go to new shards. Old files stay until the manifest is replaced.
        jobs: list[tuple[int, str, Any]] = []  # (position in the shard list, file, rows future)
        start = 0
        if shards and shards[-1]["rows"] < limit:
            start, last = limit - shards[-1]["rows"], len(shards) - 1
            name = f"shard-{last:06d}-{secrets.token_hex(4)}.dhx"
            rows = client.submit(
                _append_to_shard, self._futures[last], codes[:start], ids[:start],
                str(directory / name), pure=False, workers=[self._workers[last]],
                allow_other_workers=True,
            )  # fmt: skip
            jobs.append((last, name, rows))
        number = max((int(s["file"][6:12]) for s in shards), default=-1) + 1
        for position, first in enumerate(range(start, len(codes), limit), start=len(shards)):
            name = f"shard-{number + position - len(shards):06d}.dhx"
            rows = client.submit(
                _write_shard, codes[first : first + limit], ids[first : first + limit], 0,
                str(directory / name), self.n_bits, self.id_dtype, pure=False,
            )  # fmt: skip
            jobs.append((position, name, rows))
        first_changed = jobs[0][0]
        try:
            counts = client.gather([rows for _, _, rows in jobs])
            for (position, name, _), count in zip(jobs, counts):
                entry = {"file": name, "rows": count if isinstance(count, int) else count[0]}
                shards[position : position + 1] = [entry]
            # The rewritten last shard stays where it was; new shards go to the worker
            # holding the fewest (the earliest such worker first).
            workers = self._workers[first_changed : first_changed + 1]
            live = self._live_workers()
            for _ in shards[first_changed + len(workers) :]:
                held = self._workers[:first_changed] + workers
                workers.append(min(live, key=lambda w: (held.count(w), live.index(w))))
            futures = self._open_files([s["file"] for s in shards[first_changed:]], workers)
            self._check_shards(futures, shards[first_changed:])
            new_manifest = {**manifest, "next_id": next_id, "shards": shards}
            _write_manifest(directory, new_manifest)  # the commit point
        except BaseException:
            for _, name, _ in jobs:
                (directory / name).unlink(missing_ok=True)
            raise
        replaced = [s["file"] for s in manifest["shards"][first_changed:]]
        client.cancel(self._futures[first_changed:])
        self._futures = self._futures[:first_changed] + futures
        self._workers = self._workers[:first_changed] + workers
        self._manifest = new_manifest
        for name in replaced:  # processes that map them keep their pages (Unix unlink)
            (directory / name).unlink(missing_ok=True)
