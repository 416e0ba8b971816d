"""Multi-index hashing for BinaryIndex (docs/index_format.md sec. 7): substring plans,
table building, and the policy of a search (:class:`MihEngine`: budgets from the scan's
measured speed, radii not worth trying).

A search is one call of ``_core.MihSearcher.knn`` / ``range`` (cpp/src/mih.cpp): MIH over
the indexed rows, the flat scan of the queries that give up (or that "auto" skips), the
scan of the rows added since the build (the "tail"), merged by (distance, row), exactly as
the flat scan ranks them, so every path returns the same arrays, ties included.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from . import _core

__all__ = [
    "MihEngine",
    "MihTables",
    "build_tables",
    "decorrelated_bit_order",
    "expected_range_work",
    "max_range_radius",
    "measure_scan_speed",
    "plan_substrings",
    "removed_count",
    "stale",
]

MAX_WIDTH = 32  # bits per substring (the kernels' limit)
MIN_ROWS = 1024  # below this the scan is as fast as anything
ALIGN = 64  # tables cover a multiple of 64 rows, so the tail's removed-row bitmap is a slice


# The budget of a query (docs/index_format.md sec. 7). A query may spend a share of the
# time its flat scan would take before it is handed to the scan instead: "mih" as long as
# the scan, "auto" little enough that a query MIH cannot finish costs at most about 1.1x
# its scan. The scan's speed is measured on the index's own codes (measure_scan_speed);
# the kernel reads the clock every 32 units of work (a bucket probed or a candidate
# verified, within a bucket too) and also stops at a work cap, four times the budget at
# WORK_NS per unit (the cost measured on the development machine, 55-120 ns: cache
# misses), which also decides whether a radius is worth trying at all (its expected work
# on uniform codes).
KNN_SHARE = {"mih": 1.0, "auto": 0.03}
RANGE_SHARE = {"mih": 1.0, "auto": 0.1}
WORK_NS = 55.0
MIN_WORK = 64
SPEED_ROWS = 1 << 20  # rows timed by measure_scan_speed (the scan is linear in rows)
# Queries of the timed batch: the scan's cost per query falls with the batch (its blocks
# are reused by more queries), and a budget measured on a small batch would be too large
# for the batches of hundreds that benefit from MIH (measured: 64 queries overestimated a
# 1,000-query batch's per-query cost several times).
SPEED_BATCH = 512


def measure_scan_speed(codes: np.ndarray) -> tuple[float, float]:
    """Nanoseconds per code word per query of the flat scan of these codes: for a single
    query (streaming the codes) and in a batch of SPEED_BATCH (blocks reused by many
    queries); the best of three timings, after one untimed, on at most SPEED_ROWS rows."""
    rows = codes[: min(len(codes), SPEED_ROWS)]
    words = max(len(rows) * -(-rows.shape[1] // 8), 1)

    def best(queries: np.ndarray) -> float:
        _core.knn_hamming(rows, queries, 1)  # warm the codes up: searches find them warm
        times = []
        for _ in range(3):
            start = time.perf_counter()
            _core.knn_hamming(rows, queries, 1)
            times.append(time.perf_counter() - start)
        return min(times) * 1e9 / len(queries) / words

    return best(rows[:1]), best(rows[: min(SPEED_BATCH, len(rows))])


def _scan_ns(speed: tuple[float, float], n_rows: int, code_bytes: int, n_queries: int) -> float:
    """One query's scan time, in a call of n_queries queries."""
    per_word = speed[0] if n_queries < 4 else speed[1]
    return n_rows * -(-code_bytes // 8) * per_word


def _budget(share: float, scan_ns: float) -> tuple[int, int]:
    max_ns = share * scan_ns
    return max(int(4 * max_ns / WORK_NS), MIN_WORK), max(int(max_ns), 1)


def max_range_radius(widths: np.ndarray, n_indexed: int, n_bits: int, max_ns: float) -> int:
    """The largest radius whose expected MIH work (uniform codes, at WORK_NS per unit) fits
    in max_ns, or -1 when none does (the work grows with the radius, so a larger radius is
    scanned from the start)."""
    radius = -1
    while (
        radius < n_bits and expected_range_work(widths, n_indexed, radius + 1) * WORK_NS <= max_ns
    ):
        radius += 1
    return radius


def expected_range_work(widths: np.ndarray, n_indexed: int, radius: int) -> float:
    """The MIH work of one radius query on uniformly distributed codes: the keys probed
    in each table, each with its expected n / 2^width candidates."""
    m = len(widths)
    total = 0.0
    for j, width in enumerate(int(w) for w in widths):
        if radius >= j:
            probes = sum(math.comb(width, s) for s in range(min((radius - j) // m, width) + 1))
            total += probes * (1.0 + n_indexed / 2.0**width)
    return total


@dataclass(frozen=True, eq=False)
class MihTables:
    """Tables over the first ``n_indexed`` rows of a snapshot's codes."""

    begins: np.ndarray  # uint32 (m,)
    widths: np.ndarray  # uint32 (m,)
    offsets: np.ndarray  # uint32, sum of 2**width + 1
    rows: np.ndarray  # uint32 (m * n_indexed,)
    n_indexed: int
    bit_order: np.ndarray | None = None  # uint32 (n_bits,): substrings take bits in this order

    @property
    def n_tables(self) -> int:
        return len(self.widths)

    @property
    def nbytes(self) -> int:
        return int(self.offsets.nbytes + self.rows.nbytes)


def plan_substrings(n_bits: int, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(begins, widths) of m contiguous substrings: m = round(n_bits / log2 n_rows) as in
    Norouzi et al. (about one row per bucket), substrings of at most min(32, ceil(log2
    n_rows)) bits (so never many more buckets than rows), at most n_bits substrings;
    the widths differ by at most one bit (the wider ones first)."""
    per_table = max(math.log2(max(n_rows, 2)), 1.0)
    widest = min(MAX_WIDTH, math.ceil(per_table))  # never many more buckets than rows
    m = min(n_bits, max(-(-n_bits // widest), round(n_bits / per_table), 1))
    widths = np.full(m, n_bits // m, dtype=np.uint32)
    widths[: n_bits % m] += 1
    begins = np.concatenate(([0], np.cumsum(widths)[:-1])).astype(np.uint32)
    return begins, widths


def decorrelated_bit_order(
    codes: np.ndarray, widths: np.ndarray, sample: int = 1 << 16
) -> np.ndarray:
    """A permutation of the bits that puts weakly correlated bits in the same substring
    (Norouzi et al., TPAMI 2014, sec. 5.3: correlated bits in one substring crowd its
    buckets). Greedy on |correlation| over an evenly spaced sample of rows: bits in order of
    decreasing total correlation, each to the substring with room whose bits so far it
    correlates least with (ties: the emptier substring, then the first). Deterministic."""
    n = len(codes)
    rows = codes if n <= sample else codes[np.linspace(0, n - 1, sample).astype(np.int64)]
    bits = np.unpackbits(rows, axis=1, bitorder="little").astype(np.float32)
    bits -= bits.mean(axis=0)
    scale = bits.std(axis=0)
    bits /= np.where(scale > 0, scale, 1.0)
    corr = np.abs(bits.T @ bits) / max(len(bits), 1)
    np.fill_diagonal(corr, 0.0)
    m = len(widths)
    members: list[list[int]] = [[] for _ in range(m)]
    load = np.zeros((corr.shape[0], m))  # load[i, j]: correlation of bit i with substring j
    for bit in np.argsort(-corr.sum(axis=1), kind="stable"):
        room = [j for j in range(m) if len(members[j]) < int(widths[j])]
        j = min(room, key=lambda j: (load[bit, j], len(members[j]), j))
        members[j].append(int(bit))
        load[:, j] += corr[:, bit]
    return np.concatenate([np.array(sorted(g), dtype=np.uint32) for g in members])


def build_tables(codes: np.ndarray, decorrelate: bool = False) -> MihTables | None:
    """Tables over the leading multiple of 64 rows of ``codes`` (None when too few), with
    substrings of contiguous bits or of bits chosen by :func:`decorrelated_bit_order`."""
    n_indexed = len(codes) // ALIGN * ALIGN
    if n_indexed < MIN_ROWS:
        return None
    begins, widths = plan_substrings(8 * codes.shape[1], n_indexed)
    head = codes[:n_indexed]
    bit_order = decorrelated_bit_order(head, widths) if decorrelate else None
    offsets, rows = _core.mih_build(head, begins, widths, bit_order)
    return MihTables(begins, widths, offsets, rows, n_indexed, bit_order)


def stale(tables: MihTables | None, n_rows: int) -> bool:
    """Whether to rebuild: no tables yet (and enough rows), or the rows added since the
    build (scanned on every search) exceed an eighth of the indexed ones (which also
    revisits the substring plan as the index grows)."""
    if tables is None:
        return n_rows // ALIGN * ALIGN >= MIN_ROWS
    return n_rows - tables.n_indexed > max(tables.n_indexed // 8, 4 * MIN_ROWS)


def removed_count(removed: np.ndarray) -> int:
    """Rows a removed-row bitmap (knn.hpp RemovedRows) marks: its set bits."""
    return int(np.bitwise_count(removed).sum(dtype=np.int64))


def _live(removed: np.ndarray | None, n: int) -> int:
    return n if removed is None else n - removed_count(removed)


KnnPlan = tuple[int, int]  # max_work, max_ns
RangePlan = tuple[int, int, int]  # max_work, max_ns, max_radius


class MihEngine:
    """The search of one table build: a ``_core.MihSearcher`` over the tables and the
    budgets of the index's policy, kept per number of rows (the scan's cost grows with the
    rows, tail included).

    Parameters
    ----------
    tables : MihTables
    speed : tuple of float
        The flat scan's ns per code word per query (single, batch): measure_scan_speed.
    code_bytes : int

    Notes
    -----
    Contracts of :meth:`knn` / :meth:`range`: ``codes`` hold at least ``tables.n_indexed``
    rows, of which the tables index the first; ``removed`` is the bitmap of every row (or
    None); ``queries`` are 2-D. The results equal ``_core.knn_hamming`` / ``range_hamming``
    over ``codes``. The searcher's adaptive state (method "auto") is shared by every
    snapshot searched with these tables.
    """

    __slots__ = ("_n_rows", "_plans", "_speed", "code_bytes", "rebuild_above", "searcher", "tables")

    def __init__(self, tables: MihTables, speed: tuple[float, float], code_bytes: int) -> None:
        self.tables = tables
        self.code_bytes = code_bytes
        self.searcher = _core.MihSearcher(
            tables.begins, tables.widths, tables.offsets, tables.rows, tables.n_indexed,
            tables.bit_order, code_bytes,
        )  # fmt: skip
        # stale(tables, n_rows) exactly when n_rows > rebuild_above
        self.rebuild_above = tables.n_indexed + max(tables.n_indexed // 8, 4 * MIN_ROWS)
        self._speed = speed
        self._n_rows = -1
        self._plans: tuple[list[list[KnnPlan]], list[list[RangePlan]]] = ([], [])

    def plans(self, n_rows: int) -> tuple[list[list[KnnPlan]], list[list[RangePlan]]]:
        """(k-NN plans, radius plans), each indexed [method is "auto"][batch of >= 4]."""
        if n_rows != self._n_rows:  # a benign race: two threads may compute the same plans
            knn: list[list[KnnPlan]] = []
            ranges: list[list[RangePlan]] = []
            for method in ("mih", "auto"):
                knn.append([])
                ranges.append([])
                for n_queries in (1, SPEED_BATCH):
                    scan_ns = _scan_ns(self._speed, n_rows, self.code_bytes, n_queries)
                    knn[-1].append(_budget(KNN_SHARE[method], scan_ns))
                    work, ns = _budget(RANGE_SHARE[method], scan_ns)
                    radius = max_range_radius(
                        self.tables.widths, self.tables.n_indexed, 8 * self.code_bytes,
                        RANGE_SHARE[method] * scan_ns,
                    )  # fmt: skip
                    ranges[-1].append((work, ns, radius))
            self._plans = (knn, ranges)
            self._n_rows = n_rows
        return self._plans

    def knn(
        self, codes: np.ndarray, removed: np.ndarray | None, queries: np.ndarray, k: int, auto: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k (distances, rows) over every live row of ``codes``."""
        work, ns = self.plans(len(codes))[0][auto][len(queries) >= 4]
        return self.searcher.knn(codes, queries, k, removed, work, ns, auto)

    def range(
        self,
        codes: np.ndarray,
        removed: np.ndarray | None,
        queries: np.ndarray,
        max_distance: int,
        auto: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every live row of ``codes`` within ``max_distance``: (lims, distances, rows)."""
        work, ns, radius = self.plans(len(codes))[1][auto][len(queries) >= 4]
        return self.searcher.range(codes, queries, max_distance, removed, work, ns, radius, auto)
