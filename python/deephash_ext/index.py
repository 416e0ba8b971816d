"""BinaryIndex: a growable, prunable, savable and memory-mappable index of packed codes.

State and concurrency (docs/index_format.md): the index is an immutable *snapshot* (codes,
ids, a removed-row bitmap, the next default id) that every mutation replaces as a whole
under one writer lock. A search reads the current snapshot once and scans it, so any
number of threads may search while another adds or removes, and each search sees the
index as it was before or after a mutation, never half of one. Snapshots share memory:
``add`` appends to owned buffers with spare capacity (rows past a snapshot's end are
invisible to it), ``remove`` copies only the bitmap (n / 8 bytes), ``compact`` builds new
arrays.

Rows are kept in insertion order and removed rows stay in place (skipped inside the scan
kernels) until compaction, which keeps the order: ties always go to the earlier insertion,
whenever compaction ran.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from . import _core
from ._index_file import (
    ID_KINDS,
    MAX_CODE_BYTES,
    IndexArrays,
    read_index_file,
    removed_mask,
    strictly_increasing,
    write_index_file,
)
from ._io import atomic_write
from ._mih import MihEngine, MihTables, build_tables, measure_scan_speed, stale
from ._search import GpuCodes
from ._validation import check_bool, check_choice, check_codes, check_int, check_queries, check_real
from .codes import code_bytes as _code_bytes

__all__ = ["BinaryIndex", "GpuBinaryIndex"]

_ID_LIMITS = {
    "int64": (0, int(np.iinfo(np.int64).max)),
    "uint64": (0, int(np.iinfo(np.uint64).max)),
}
_MIN_CAPACITY = 64
METHODS = ("flat", "mih", "auto")
MIH_BITS = ("contiguous", "decorrelated")


def _bits_set(removed: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Whether each row's bit is set in a removed-row bitmap."""
    rows = rows.astype(np.uint64, copy=False)
    return ((removed[rows >> np.uint64(6)] >> (rows & np.uint64(63))) & np.uint64(1)).astype(bool)


def _with_bits(removed: np.ndarray | None, n_rows: int, rows: np.ndarray) -> np.ndarray:
    """A new bitmap for n_rows rows: ``removed`` (or none) extended, with ``rows`` set."""
    out = np.zeros(-(-n_rows // 64), dtype=np.uint64)
    if removed is not None:
        out[: len(removed)] = removed
    rows = rows.astype(np.uint64, copy=False)
    np.bitwise_or.at(out, rows >> np.uint64(6), np.uint64(1) << (rows & np.uint64(63)))
    return out


class _Snapshot:
    """One immutable state of an index. ``runs`` (the id lookup) is built on first use:
    sorted runs of (id, row) pairs, searched with binary search; a run may list rows that
    were removed later (the bitmap says so), never two live rows with one id."""

    __slots__ = ("codes", "ids", "mih", "n_removed", "next_id", "removed", "runs")
    runs: list[tuple[np.ndarray, np.ndarray | None]] | None

    def __init__(
        self,
        codes: np.ndarray,
        ids: np.ndarray,
        removed: np.ndarray | None,
        n_removed: int,
        next_id: int,
        runs: list[tuple[np.ndarray, np.ndarray | None]] | None = None,
        mih: MihTables | None = None,
    ) -> None:
        self.codes = codes
        self.ids = ids
        self.removed = removed if n_removed else None
        self.n_removed = n_removed
        self.next_id = next_id
        self.runs = runs
        self.mih = mih  # MIH tables over a prefix of the rows (built on first use)

    @property
    def n_rows(self) -> int:
        return len(self.ids)

    def live_rows(self) -> np.ndarray | slice:
        """The live rows, in insertion order (a slice when none is removed)."""
        if self.removed is None:
            return slice(None)
        return np.flatnonzero(~removed_mask(self.removed, self.n_rows))

    def id_runs(self) -> list[tuple[np.ndarray, np.ndarray | None]]:
        if self.runs is None:  # a benign race: two threads may both build the same runs
            if strictly_increasing(self.ids):  # default ids: the ids are their own run
                self.runs = [(self.ids, None)]
            else:
                rows = np.arange(self.n_rows, dtype=np.int64)[self.live_rows()]
                self.runs = [_sorted_run(self.ids[rows], rows)]
        return self.runs

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """The live row of each id, or -1."""
        found = np.full(len(ids), -1, dtype=np.int64)
        for run_ids, run_rows in self.id_runs():
            if len(run_ids) == 0 or len(ids) == 0:
                continue
            at = np.minimum(np.searchsorted(run_ids, ids), len(run_ids) - 1)
            hit = run_ids[at] == ids
            rows = at.astype(np.int64) if run_rows is None else run_rows[at]
            if self.removed is not None:
                hit &= ~_bits_set(self.removed, rows)
            found = np.where(hit, rows, found)
        return found


def _sorted_run(ids: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    order = np.argsort(ids, kind="stable")
    return ids[order], rows[order]


def _distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values, sorted (a sort: NumPy's unique may hash, much slower here)."""
    ordered = np.sort(values)
    return (
        ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))] if len(ordered) else ordered
    )


def _rows_of_run(ids: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    return np.arange(len(ids), dtype=np.int64) if rows is None else rows


def _merged_runs(
    runs: list[tuple[np.ndarray, np.ndarray | None]], removed: np.ndarray | None
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Merges the newest runs while a run is at least half the size of the one before it
    (so there are O(log n) runs and each pair is re-sorted O(log n) times), dropping rows
    that are removed."""
    runs = list(runs)
    while len(runs) > 1 and 2 * len(runs[-1][0]) >= len(runs[-2][0]):
        (ids_a, rows_a), (ids_b, rows_b) = runs[-2], runs[-1]
        ids = np.concatenate([ids_a, ids_b])
        rows = np.concatenate([_rows_of_run(ids_a, rows_a), _rows_of_run(ids_b, rows_b)])
        if removed is not None:
            keep = ~_bits_set(removed, rows)
            ids, rows = ids[keep], rows[keep]
        runs[-2:] = [_sorted_run(ids, rows)]
    return runs


class BinaryIndex:
    """An exact Hamming-search index of packed codes with ids, removal and files.

    Codes keep their insertion order; ``search`` and ``range_search`` scan every live code
    with the kernels of :func:`deephash_ext.search` (same SIMD levels and threads, GIL
    released) and return ids instead of row numbers, ranked by (distance, insertion
    order). Removed rows are skipped inside the kernels, so ``k`` results come back
    whenever ``k <= len(index)``.

    Parameters
    ----------
    n_bits : int
        Bits per code, a positive multiple of 8 (codes are ``n_bits // 8`` bytes, laid out
        as :func:`deephash_ext.pack_bits` and faiss binary indexes lay them out).
    id_dtype : {"int64", "uint64"}, default="int64"
        The type of the ids. int64 ids must be ``>= 0`` (faiss's ``-1`` means "none").
    compact_threshold : float in (0, 1] or None, default=0.25
        ``remove`` compacts the index automatically once more than this share of its rows
        is removed (None: only :meth:`compact` does). Below it, removed rows cost scan
        time but no extra results.
    method : {"flat", "mih", "auto"}, default="flat"
        ``"flat"`` scans every code. ``"mih"`` and ``"auto"`` search multi-index hashing
        tables (docs/index_format.md sec. 7), exact and sublinear for small radii and near
        neighbours: built on the first search, rebuilt when the rows added since exceed an
        eighth of the indexed ones (those are scanned meanwhile). A query that has searched
        as long as its scan would take (``"mih"``), or a small share of that (``"auto"``: 3 %
        for k-NN, 10 % for a radius, so never much slower than the scan), is scanned
        instead, the scan's speed being measured on the index's codes; a radius whose
        expected MIH work exceeds that is scanned from the start, and ``"auto"`` scans at
        once the queries of a k or radius whose last queries all gave up (trying one in
        16 until one succeeds; ``deephash_ext._mih``).
        Every method returns the same arrays, ties included. An attribute: set it on a
        loaded index too.
    mih_bits : {"contiguous", "decorrelated"}, default="contiguous"
        How MIH cuts codes into substrings: runs of contiguous bits, or bits grouped so
        that each substring's bits are weakly correlated (learned from the codes at each
        build; Norouzi et al., TPAMI 2014), which balances the buckets of codes whose bits
        are correlated. Results are the same either way.

    Attributes
    ----------
    n_bits, code_bytes, id_dtype : int, int, str
    compact_threshold : float or None
    method : str
    n_removed : int
        Removed rows that still take space (until compaction).
    mapped : bool
        Whether the codes are read in place from a memory-mapped file.

    Notes
    -----
    Thread safety: searches never block; mutations (``add``, ``remove``, ``compact``)
    take one lock and publish a new snapshot atomically, so a concurrent search sees the
    index before or after each mutation. An index opened with ``mmap=True`` is searched in
    place; ``remove`` then keeps the mapping (only the bitmap moves to memory) and
    ``add`` or ``compact`` copies the codes and ids into memory first (copy on write). The
    file itself is never modified; :meth:`save` writes a new file and renames it, so
    processes that map the old file keep a consistent view.

    Examples
    --------
    >>> import numpy as np
    >>> index = BinaryIndex(8)
    >>> index.add(np.array([[0b0000], [0b0111], [0b0001]], dtype=np.uint8), ids=[10, 20, 30])
    >>> index.search(np.array([0b0011], dtype=np.uint8), k=2)
    (array([1, 1], dtype=int32), array([20, 30]))
    >>> index.remove([30])
    1
    >>> index.search(np.array([0b0011], dtype=np.uint8), k=2)
    (array([1, 2], dtype=int32), array([20, 10]))
    """

    def __init__(
        self,
        n_bits: int,
        *,
        id_dtype: str = "int64",
        compact_threshold: float | None = 0.25,
        method: str = "flat",
        mih_bits: str = "contiguous",
    ) -> None:
        self._code_bytes = _code_bytes(n_bits)
        if self._code_bytes > MAX_CODE_BYTES:  # what the file format (and the readers) hold
            raise ValueError(f"n_bits must be at most {8 * MAX_CODE_BYTES}, got {n_bits}")
        self._n_bits = int(n_bits)
        self._id_dtype = check_choice(id_dtype, "id_dtype", ID_KINDS)
        self.compact_threshold = compact_threshold
        self.method = method
        self.mih_bits = mih_bits
        self._lock = threading.Lock()
        self._tables_lock = threading.Lock()
        self._scan_speed: tuple[float, float] | None = None
        self._engine: MihEngine | None = None  # the search of the latest tables searched
        self._mapped = False
        self._publish(
            _Snapshot(
                np.empty((0, self._code_bytes), dtype=np.uint8),
                np.empty(0, dtype=self._id_dtype),
                None,
                0,
                0,
            ),
            buffers=None,
        )

    # ------------------------------------------------------------------ properties
    @property
    def n_bits(self) -> int:
        return self._n_bits

    @property
    def code_bytes(self) -> int:
        return self._code_bytes

    @property
    def id_dtype(self) -> str:
        return self._id_dtype

    @property
    def compact_threshold(self) -> float | None:
        return self._compact_threshold

    @compact_threshold.setter
    def compact_threshold(self, value: float | None) -> None:
        if value is not None:
            value = check_real(value, "compact_threshold", low=0.0, high=1.0, low_open=True)
        self._compact_threshold = value

    @property
    def method(self) -> str:
        return self._method

    @method.setter
    def method(self, value: str) -> None:
        self._method = check_choice(value, "method", METHODS)

    @property
    def mih_bits(self) -> str:
        return self._mih_bits

    @mih_bits.setter
    def mih_bits(self, value: str) -> None:
        self._mih_bits = check_choice(value, "mih_bits", MIH_BITS)

    @property
    def n_removed(self) -> int:
        return self._snapshot.n_removed

    @property
    def mapped(self) -> bool:
        return self._mapped and self._buffers is None

    @property
    def ids(self) -> np.ndarray:
        """The live ids in insertion order (a copy)."""
        snapshot = self._snapshot
        return np.array(snapshot.ids[snapshot.live_rows()], dtype=self._id_dtype)

    def __len__(self) -> int:
        snapshot = self._snapshot
        return snapshot.n_rows - snapshot.n_removed

    def __repr__(self) -> str:
        snapshot = self._snapshot
        return (
            f"BinaryIndex(n_bits={self._n_bits}, len={snapshot.n_rows - snapshot.n_removed}, "
            f"n_removed={snapshot.n_removed}, id_dtype={self._id_dtype!r}, mapped={self.mapped})"
        )

    # ------------------------------------------------------------------ checks
    def _check_ids(self, ids: object, name: str = "ids") -> tuple[np.ndarray, bool]:
        """(ids as a 1-D array of the id dtype, whether a scalar was given); integer values
        only, each in the id type's range (never wrapped or cast from floats)."""
        array = np.asarray(ids)
        if array.dtype.kind not in "iu" and (
            not isinstance(ids, np.ndarray) or array.dtype == object
        ):
            # Python ints NumPy cannot type as one integer dtype ([3, 2**63 + 1] becomes
            # float64) or no values at all ([] is float64): take them as Python ints.
            array = np.asarray(ids, dtype=object)
            if all(isinstance(v, int) and not isinstance(v, bool) for v in array.flat):
                low, high = _ID_LIMITS[self._id_dtype]
                for value in array.flat:
                    if not low <= value <= high:
                        raise ValueError(
                            f"{name} must be in [{low}, {high}] for id_dtype="
                            f"{self._id_dtype!r}, got {value}"
                        )
                array = array.astype(self._id_dtype)
        if array.dtype.kind not in "iu":
            raise TypeError(f"{name} must be integers, got dtype {array.dtype}")
        scalar = array.ndim == 0
        if array.ndim > 1:
            raise ValueError(f"{name} must be a scalar or 1-D, got shape {array.shape}")
        array = array.reshape(-1)
        low, high = _ID_LIMITS[self._id_dtype]
        if array.size and (int(array.min()) < low or int(array.max()) > high):
            bad = int(array.min()) if int(array.min()) < low else int(array.max())
            raise ValueError(
                f"{name} must be in [{low}, {high}] for id_dtype={self._id_dtype!r}, got {bad}"
            )
        return array.astype(self._id_dtype, copy=False), scalar

    def _check_new_codes(self, codes: object) -> np.ndarray:
        array = check_codes(codes, "codes")
        if array.shape[1] != self._code_bytes:
            raise ValueError(
                f"codes must have {self._code_bytes} bytes per code (n_bits={self._n_bits}), "
                f"got shape {array.shape}"
            )
        return array

    # ------------------------------------------------------------------ mutations
    def _publish(self, snapshot: _Snapshot, buffers: tuple[np.ndarray, np.ndarray] | None) -> None:
        self._buffers = buffers  # owned arrays whose leading rows are the snapshot's
        self._snapshot = snapshot

    def _grown(self, snapshot: _Snapshot, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Owned buffers holding the snapshot's rows with room for n_rows (the same ones
        when they have room: rows past the snapshot's end are invisible to it)."""
        if self._buffers is not None and len(self._buffers[1]) >= n_rows:
            return self._buffers
        capacity = max(n_rows, 2 * snapshot.n_rows, _MIN_CAPACITY)
        codes = np.empty((capacity, self._code_bytes), dtype=np.uint8)
        ids = np.empty(capacity, dtype=self._id_dtype)
        codes[: snapshot.n_rows] = snapshot.codes
        ids[: snapshot.n_rows] = snapshot.ids
        return codes, ids

    def add(self, codes: object, ids: object = None, *, upsert: bool = False) -> None:
        """Append codes with their ids.

        Parameters
        ----------
        codes : ndarray of uint8, shape (m, code_bytes) or (code_bytes,)
        ids : array_like of int, shape (m,), optional
            Unique within the call. Default: consecutive ids from :attr:`next_id` (one more
            than the largest id ever added, so they never collide).
        upsert : bool, default=False
            If True, an id already present is replaced: its old row is removed and the new
            code is appended (it ranks as the newest insertion). If False, it is an error.

        Raises
        ------
        TypeError
            If ``codes`` is not uint8 or ``ids`` not integers.
        ValueError
            If the code width differs, ``ids`` has the wrong length, repeats an id, holds an
            id outside the id type's range, or (``upsert=False``) an id already present;
            or the default ids would leave the id type's range. The index is unchanged.
        """
        upsert = check_bool(upsert, "upsert")
        array = np.asarray(codes)
        new_codes = self._check_new_codes(array.reshape(1, -1) if array.ndim == 1 else array)
        m = len(new_codes)
        with self._lock:
            snapshot = self._snapshot
            if ids is None:
                start = snapshot.next_id
                if m == 0:
                    return
                if start + m - 1 > _ID_LIMITS[self._id_dtype][1]:
                    raise ValueError(
                        f"the default ids {start}..{start + m - 1} leave the {self._id_dtype} "
                        "range; pass ids"
                    )
                new_ids = np.arange(m, dtype=self._id_dtype) + np.array(start, self._id_dtype)
                present = np.empty(0, dtype=np.int64)
            else:
                new_ids, _ = self._check_ids(ids)
                if len(new_ids) != m:
                    raise ValueError(f"ids has {len(new_ids)} entries for {m} codes")
                ordered = np.sort(new_ids)
                repeated = ordered[1:][ordered[1:] == ordered[:-1]]
                if len(repeated):
                    raise ValueError(f"ids must be unique within one call; {repeated[0]} repeats")
                rows = snapshot.rows_of(new_ids)
                present = rows[rows >= 0]
                if len(present) and not upsert:
                    raise ValueError(
                        f"{len(present)} of the ids are already in the index (for example "
                        f"{new_ids[rows >= 0][0]}); pass upsert=True to replace them"
                    )
            if m == 0:
                return
            n_rows = snapshot.n_rows + m
            codes_buffer, ids_buffer = self._grown(snapshot, n_rows)
            codes_buffer[snapshot.n_rows : n_rows] = new_codes
            ids_buffer[snapshot.n_rows : n_rows] = new_ids
            n_removed = snapshot.n_removed + len(present)
            removed = None
            if n_removed:
                removed = _with_bits(snapshot.removed, n_rows, present)
            runs = None
            if snapshot.runs is not None:
                new_rows = np.arange(snapshot.n_rows, n_rows, dtype=np.int64)
                runs = _merged_runs([*snapshot.runs, _sorted_run(new_ids, new_rows)], removed)
            next_id = max(snapshot.next_id, int(new_ids.max()) + 1)
            self._publish(
                _Snapshot(
                    codes_buffer[:n_rows],
                    ids_buffer[:n_rows],
                    removed,
                    n_removed,
                    next_id,
                    runs,
                    snapshot.mih,  # the first rows are unchanged: the tables still hold
                ),
                buffers=(codes_buffer, ids_buffer),
            )
            self._compact_if_due()

    def remove(self, ids: object) -> int:
        """Remove the codes of ``ids``; ids not in the index are ignored.

        Returns
        -------
        int
            How many of the (distinct) ids were present.

        Raises
        ------
        TypeError
            If ``ids`` are not integers.
        ValueError
            If an id is outside the id type's range (a negative int64 id, for example).
        """
        wanted, _ = self._check_ids(ids)
        with self._lock:
            snapshot = self._snapshot
            rows = snapshot.rows_of(_distinct(wanted))
            rows = rows[rows >= 0]
            if len(rows) == 0:
                return 0
            removed = _with_bits(snapshot.removed, snapshot.n_rows, rows)
            self._publish(
                _Snapshot(
                    snapshot.codes,
                    snapshot.ids,
                    removed,
                    snapshot.n_removed + len(rows),
                    snapshot.next_id,
                    snapshot.runs,
                    snapshot.mih,
                ),
                buffers=self._buffers,
            )
            self._compact_if_due()
            return len(rows)

    def _compact_if_due(self) -> None:
        snapshot = self._snapshot
        threshold = self._compact_threshold
        if threshold is not None and snapshot.n_removed > threshold * snapshot.n_rows:
            self._compact_locked()

    def compact(self) -> None:
        """Drop removed rows from memory, keeping the insertion order of the others (so
        results, ties included, are the same before and after)."""
        with self._lock:
            self._compact_locked()

    def _compact_locked(self) -> None:
        snapshot = self._snapshot
        if snapshot.n_removed == 0:
            return
        live = snapshot.live_rows()
        codes = np.ascontiguousarray(snapshot.codes[live])
        ids = np.ascontiguousarray(snapshot.ids[live])
        self._publish(_Snapshot(codes, ids, None, 0, snapshot.next_id), buffers=(codes, ids))

    # ------------------------------------------------------------------ queries
    @property
    def next_id(self) -> int:
        """The first default id of the next :meth:`add` without ids."""
        return self._snapshot.next_id

    def contains(self, ids: object) -> np.ndarray | bool:
        """Whether each id is in the index (a bool for a scalar id)."""
        wanted, scalar = self._check_ids(ids)
        found = self._snapshot.rows_of(wanted) >= 0
        return bool(found[0]) if scalar else found

    def get(self, ids: object) -> np.ndarray:
        """The codes of ``ids``, shape (m, code_bytes) (or (code_bytes,) for a scalar id).

        Raises
        ------
        KeyError
            If an id is not in the index (the first one is named).
        """
        wanted, scalar = self._check_ids(ids)
        snapshot = self._snapshot
        rows = snapshot.rows_of(wanted)
        if np.any(rows < 0):
            raise KeyError(f"id {wanted[rows < 0][0]} is not in the index")
        codes = snapshot.codes[rows]
        return codes[0] if scalar else codes

    def search(self, queries: object, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest live codes; the contract of :func:`deephash_ext.search` with ids.

        Returns
        -------
        distances : ndarray of int32, shape (nq, k)
        ids : ndarray of the id dtype, shape (nq, k)
            Equal distances are ordered by insertion (1-D results for a 1-D query).

        Raises
        ------
        TypeError, ValueError
            As :func:`deephash_ext.search`, with ``k`` in ``[1, len(index)]``.
        """
        snapshot = self._snapshot
        live = snapshot.n_rows - snapshot.n_removed
        if type(k) is not int:  # (the check's isinstance on numbers.Integral is slow)
            k = check_int(k, "k")
        if not 1 <= k <= live:
            raise ValueError(f"k must be in [1, len(index)] = [1, {live}], got {k}")
        q, single = check_queries(queries)
        method = self._method  # read once: another thread may change it
        engine = None if method == "flat" else self._engine_of(snapshot, method)
        if engine is None:
            distances, rows = _core.knn_hamming(snapshot.codes, q, k, snapshot.removed)
        else:  # MIH, the scan of what it does not answer, and the tail, in one call
            distances, rows = engine.knn(snapshot.codes, snapshot.removed, q, k, method == "auto")
        ids = snapshot.ids[rows]
        return (distances[0], ids[0]) if single else (distances, ids)

    def range_search(
        self, queries: object, max_distance: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every live code within ``max_distance`` (inclusive) of each query.

        Returns
        -------
        lims, distances, ids
            The layout of :func:`deephash_ext.range_search`, with ids for row numbers;
            each query's results are sorted by (distance, insertion order).
        """
        snapshot = self._snapshot
        q, _ = check_queries(queries)
        method = self._method  # read once: another thread may change it
        engine = None if method == "flat" else self._engine_of(snapshot, method)
        if engine is None:
            lims, distances, rows = _core.range_hamming(
                snapshot.codes, q, max_distance, snapshot.removed
            )
        else:  # MIH, the scan of what it does not answer, and the tail, in one call
            lims, distances, rows = engine.range(
                snapshot.codes, snapshot.removed, q, max_distance, method == "auto"
            )
        return lims, distances, snapshot.ids[rows]

    # ------------------------------------------------------------------ MIH
    def _tables(self, snapshot: _Snapshot, method: str) -> MihTables | None:
        """The snapshot's MIH tables (method "mih" or "auto"), built or rebuilt when missing
        or stale (one build at a time; a search of another snapshot meanwhile scans or
        uses its own)."""
        if method == "flat":
            return None
        if stale(snapshot.mih, snapshot.n_rows):
            with self._tables_lock:
                if stale(snapshot.mih, snapshot.n_rows):
                    decorrelate = self._mih_bits == "decorrelated"
                    snapshot.mih = build_tables(snapshot.codes, decorrelate)
                    self._scan_speed = None  # measured again on the new tables' codes
        return snapshot.mih

    def _engine_of(self, snapshot: _Snapshot, method: str) -> MihEngine | None:
        """The search of the snapshot's MIH tables (None when it has too few rows for
        tables): the engine of the latest search when it serves these tables and they are
        not stale, else one made now (tables built or rebuilt first when due, the scan's
        speed measured once per build)."""
        engine = self._engine
        if (
            engine is not None
            and engine.tables is snapshot.mih
            and snapshot.n_rows <= engine.rebuild_above
        ):
            return engine
        tables = self._tables(snapshot, method)
        if tables is None:
            return None
        engine = MihEngine(tables, self._scan_speed_of(snapshot), self._code_bytes)
        self._engine = engine  # a benign race: the latest engine made is kept
        return engine

    def _scan_speed_of(self, snapshot: _Snapshot) -> tuple[float, float]:
        """The flat scan's speed on this index's codes (ns per code word per query, single
        and batched), measured once per table build: the MIH budgets are shares of it."""
        speed = self._scan_speed
        if speed is None:
            with self._tables_lock:
                if self._scan_speed is None:
                    self._scan_speed = measure_scan_speed(snapshot.codes)
                speed = self._scan_speed
        return speed

    # ------------------------------------------------------------------ files
    def _arrays(self, snapshot: _Snapshot | None = None) -> IndexArrays:
        snapshot = self._snapshot if snapshot is None else snapshot
        return IndexArrays(
            n_bits=self._n_bits,
            id_dtype=self._id_dtype,
            codes=snapshot.codes,
            ids=snapshot.ids,
            removed=snapshot.removed,
            n_removed=snapshot.n_removed,
            next_id=snapshot.next_id,
            mih=snapshot.mih,
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` atomically (temporary file, fsync, rename, directory
        fsync); an existing file keeps its permission bits. Removed rows are saved as
        such (compact first to drop them). With ``method`` "mih" or "auto" the MIH tables
        are saved too (built first if needed), so a mapped index searches them in place.
        The format: docs/index_format.md.

        Raises
        ------
        OSError
            If the file cannot be written; an existing ``path`` is then unchanged.
        """
        snapshot = self._snapshot
        self._tables(snapshot, self._method)  # builds them if the method uses them
        arrays = self._arrays(snapshot)
        atomic_write(path, lambda handle: write_index_file(handle, arrays))

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        mmap: bool = False,
        verify: bool | None = None,
        method: str | None = None,
    ) -> BinaryIndex:
        """Open an index file (or a faiss binary index file).

        Parameters
        ----------
        path : path-like
            A file written by :meth:`save`, or by ``faiss.write_index_binary`` for an
            ``IndexBinaryFlat``, ``IndexBinaryIDMap`` or ``IndexBinaryIDMap2`` (ids
            0..n-1 for a flat index).
        mmap : bool, default=False
            Map the file read-only and search it in place (zero-copy, shared by every
            process mapping it); opening reads only the header and section table.
        verify : bool, optional
            Check every section's CRC-32 and the ids (unique, in range). Default: True
            when reading into memory, False when mapping (it reads the whole file).
        method : {"flat", "mih", "auto"}, optional
            The index's ``method``; default "auto" when the file holds MIH tables (they are
            then searched in place when mapped), else "flat".

        Raises
        ------
        ValueError
            If the file is truncated, damaged, foreign or of another format version (the
            message names the path), or ``mmap=True`` for a faiss file.
        OSError
            If the file cannot be read.
        """
        from . import _faiss

        mmap = check_bool(mmap, "mmap")
        verify = (not mmap) if verify is None else check_bool(verify, "verify")
        if _faiss.is_faiss_binary_file(path):  # (faiss files hold no MIH tables)
            if mmap:
                raise ValueError(
                    f"{os.fspath(path)!r} is a faiss index file, which cannot be mapped: load "
                    "it with mmap=False (and save it as a BinaryIndex file to map it)"
                )
            data = _faiss.read_faiss_binary_file(path)
            return cls._from_arrays_checked(data.n_bits, data.codes, data.ids)
        if method is not None:
            check_choice(method, "method", METHODS)
        arrays = read_index_file(path, mmap_mode=mmap, verify=verify)
        if method is None:
            method = "flat" if arrays.mih is None else "auto"
        ordered = arrays.mih is not None and arrays.mih.bit_order is not None
        index = cls(
            arrays.n_bits,
            id_dtype=arrays.id_dtype,
            method=method,
            mih_bits="decorrelated" if ordered else "contiguous",
        )
        index._mapped = mmap
        index._publish(
            _Snapshot(
                arrays.codes,
                arrays.ids,
                arrays.removed,
                arrays.n_removed,
                arrays.next_id,
                mih=arrays.mih,
            ),
            buffers=None,
        )
        return index

    @classmethod
    def _from_arrays_checked(
        cls, n_bits: int, codes: np.ndarray, ids: np.ndarray | None
    ) -> BinaryIndex:
        index = cls(n_bits)
        index.add(codes, ids)
        return index

    # ------------------------------------------------------------------ interop
    @classmethod
    def from_faiss(cls, index: Any) -> BinaryIndex:
        """A BinaryIndex holding the codes and ids of a faiss ``IndexBinaryFlat`` (ids
        0..n-1), ``IndexBinaryIDMap`` or ``IndexBinaryIDMap2`` (over a flat index).

        Raises
        ------
        ImportError
            If faiss is not installed.
        TypeError
            For any other object.
        ValueError
            If the faiss ids are negative or repeat.
        """
        from . import _faiss

        data = _faiss.from_faiss_object(index)
        return cls._from_arrays_checked(data.n_bits, data.codes, data.ids)

    def to_faiss(self) -> Any:
        """The live codes and ids as a faiss ``IndexBinaryIDMap2(IndexBinaryFlat)``, in
        insertion order (so faiss ranks ties as this index does).

        Raises
        ------
        ImportError
            If faiss is not installed.
        ValueError
            If a uint64 id does not fit faiss's int64 ids.
        """
        from . import _faiss

        snapshot = self._snapshot
        live = snapshot.live_rows()
        ids = snapshot.ids[live]
        if self._id_dtype == "uint64" and len(ids) and int(ids.max()) > _ID_LIMITS["int64"][1]:
            raise ValueError("an id does not fit faiss's int64 ids")
        codes = np.ascontiguousarray(snapshot.codes[live])
        return _faiss.to_faiss_object(self._n_bits, codes, ids.astype(np.int64))

    def to_gpu(self, device_id: int = 0) -> GpuBinaryIndex:
        """The live codes and ids resident on a CUDA GPU: a :class:`GpuBinaryIndex` with the
        same results as this index at the time of the call (later changes to this index
        do not reach it).

        Raises
        ------
        RuntimeError
            If CUDA cannot be used (see :func:`deephash_ext.cuda_unavailable_reason`).
        ValueError
            If the index is empty or its codes are wider than the GPU kernels take.
        """
        snapshot = self._snapshot
        live = snapshot.live_rows()
        return GpuBinaryIndex(
            np.ascontiguousarray(snapshot.codes[live]), np.array(snapshot.ids[live]), device_id
        )

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        arrays = self._arrays()
        return {
            "n_bits": arrays.n_bits,
            "id_dtype": arrays.id_dtype,
            "compact_threshold": self._compact_threshold,
            "method": self._method,
            "mih_bits": self._mih_bits,
            "codes": np.array(arrays.codes),
            "ids": np.array(arrays.ids),
            "removed": None if arrays.removed is None else np.array(arrays.removed),
            "n_removed": arrays.n_removed,
            "next_id": arrays.next_id,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["n_bits"],
            id_dtype=state["id_dtype"],
            compact_threshold=state["compact_threshold"],
            method=state.get("method", "flat"),
            mih_bits=state.get("mih_bits", "contiguous"),
        )
        self._publish(
            _Snapshot(
                state["codes"], state["ids"], state["removed"], state["n_removed"], state["next_id"]
            ),
            buffers=(state["codes"], state["ids"]),
        )


class GpuBinaryIndex:
    """A :class:`BinaryIndex`'s live codes and ids on a CUDA GPU (from
    :meth:`BinaryIndex.to_gpu`): the same search results, ids and tie order."""

    def __init__(self, codes: np.ndarray, ids: np.ndarray, device_id: int = 0) -> None:
        self._codes = GpuCodes(codes, device_id)
        self._ids = ids

    def __len__(self) -> int:
        return len(self._ids)

    def search(self, queries: object, k: int) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`BinaryIndex.search`."""
        distances, rows = self._codes.search(queries, k)
        return distances, self._ids[rows]

    def range_search(
        self, queries: object, max_distance: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As :meth:`BinaryIndex.range_search`."""
        lims, distances, rows = self._codes.range_search(queries, max_distance)
        return lims, distances, self._ids[rows]
