"""Multi-index hashing for BinaryIndex (docs/index_format.md sec. 7): substring plans,
table building, and exact k-NN / radius search that merges the tables' rows with the rows
added since they were built (the "tail", scanned) and answers over-budget queries with
the flat scan.

The kernels are ``_core.mih_build`` / ``mih_knn`` / ``mih_range`` (cpp/src/mih.cpp). Every
result is ranked by (distance, row), exactly as the flat scan ranks it, so the two paths
return the same arrays, ties included.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import _core

__all__ = [
    "MihTables",
    "build_tables",
    "decorrelated_bit_order",
    "expected_range_work",
    "knn_budget",
    "measure_scan_speed",
    "mih_knn",
    "mih_range",
    "plan_substrings",
    "range_budget",
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
# verified) and also stops at a work cap, four times the budget at WORK_NS per unit (the
# cost measured on the development machine, 55-120 ns: cache misses), which also decides
# whether a radius is worth trying at all (its expected work on uniform codes).
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


def knn_budget(
    method: str, speed: tuple[float, float], n_rows: int, code_bytes: int, n_queries: int
) -> tuple[int, int]:
    """(max_work, max_ns) of a k-NN query before it is scanned."""
    return _budget(KNN_SHARE[method], _scan_ns(speed, n_rows, code_bytes, n_queries))


def range_budget(
    method: str,
    tables: MihTables,
    speed: tuple[float, float],
    n_rows: int,
    code_bytes: int,
    n_queries: int,
    radius: int,
) -> tuple[int, int] | None:
    """(max_work, max_ns) of a radius query before it is scanned, or None when its
    expected time (uniform codes) already exceeds that: the batch is then scanned. Kept
    per table build for each (method, radius, speed, rows, single or batch)."""
    radius = min(radius, 8 * code_bytes)  # larger radii are all the same
    key = (method, radius, speed, n_rows, n_queries < 4)
    if key in tables.budgets:
        return tables.budgets[key]
    scan_ns = _scan_ns(speed, n_rows, code_bytes, n_queries)
    expected = expected_range_work(tables.widths, tables.n_indexed, radius)
    budget = None
    if expected * WORK_NS <= RANGE_SHARE[method] * scan_ns:
        budget = _budget(RANGE_SHARE[method], scan_ns)
    if len(tables.budgets) < 4096:
        tables.budgets[key] = budget
    return budget


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
    budgets: dict[tuple[object, ...], tuple[int, int] | None] = field(default_factory=dict)

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


def _split(removed: np.ndarray | None, n_indexed: int) -> tuple[np.ndarray | None, ...]:
    if removed is None:
        return None, None
    return removed[: n_indexed // 64], removed[n_indexed // 64 :]


def removed_count(removed: np.ndarray) -> int:
    """Rows a removed-row bitmap (knn.hpp RemovedRows) marks: its set bits."""
    return int(np.bitwise_count(removed).sum(dtype=np.int64))


def _live(removed: np.ndarray | None, n: int) -> int:
    return n if removed is None else n - removed_count(removed)


def _merge_knn(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best k of several (nq, k_i) rankings of disjoint rows, by (distance, row)."""
    distances = np.concatenate([d for d, _ in parts], axis=1)
    rows = np.concatenate([r for _, r in parts], axis=1)
    order = np.lexsort((rows, distances), axis=1)[:, :k]
    return np.take_along_axis(distances, order, 1), np.take_along_axis(rows, order, 1)


def mih_knn(
    codes: np.ndarray,
    removed: np.ndarray | None,
    tables: MihTables,
    queries: np.ndarray,
    k: int,
    budget: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over every live row of ``codes`` (k already checked against them)."""
    n_indexed = tables.n_indexed
    removed_head, removed_tail = _split(removed, n_indexed)
    parts = []
    k_head = min(k, _live(removed_head, n_indexed))
    if k_head:
        distances, rows, fallback = _core.mih_knn(
            codes, queries, k_head, tables.begins, tables.widths, tables.offsets, tables.rows,
            n_indexed, budget[0], removed, tables.bit_order, budget[1],
        )  # fmt: skip
        over = np.flatnonzero(fallback)
        if len(over):
            distances[over], rows[over] = _core.knn_hamming(
                codes[:n_indexed], queries[over], k_head, removed_head
            )
        parts.append((distances, rows))
    k_tail = min(k, _live(removed_tail, len(codes) - n_indexed))
    if k_tail:
        distances, rows = _core.knn_hamming(codes[n_indexed:], queries, k_tail, removed_tail)
        parts.append((distances, rows + n_indexed))
    return parts[0] if len(parts) == 1 else _merge_knn(parts, k)


def mih_range(
    codes: np.ndarray,
    removed: np.ndarray | None,
    tables: MihTables,
    queries: np.ndarray,
    max_distance: int,
    budget: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every live row of ``codes`` within ``max_distance``, in the lims layout."""
    n_indexed = tables.n_indexed
    removed_head, removed_tail = _split(removed, n_indexed)
    lims, distances, rows, fallback = _core.mih_range(
        codes, queries, max_distance, tables.begins, tables.widths, tables.offsets, tables.rows,
        n_indexed, budget[0], removed, tables.bit_order, budget[1],
    )  # fmt: skip
    if len(codes) == n_indexed and not fallback.any():
        return lims, distances, rows
    over = np.flatnonzero(fallback)
    if len(over):  # over-budget queries have no MIH results: scan the indexed rows
        lims_o, distances_o, rows_o = _core.range_hamming(
            codes[:n_indexed], queries[over], max_distance, removed_head
        )
        # Each query's results come from one of the two pieces, each sorted: place them.
        counts = np.diff(lims)
        counts[over] += np.diff(lims_o)
        merged = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        total = int(merged[-1])
        out_d = np.empty(total, dtype=distances.dtype)
        out_r = np.empty(total, dtype=rows.dtype)
        for piece_lims, piece_d, piece_r, piece_q in (
            (lims, distances, rows, np.arange(len(queries))),
            (lims_o, distances_o, rows_o, over),
        ):
            owner = np.repeat(piece_q, np.diff(piece_lims))
            first = np.repeat(piece_lims[:-1], np.diff(piece_lims))
            at = merged[owner] + np.arange(len(piece_d)) - first
            out_d[at] = piece_d
            out_r[at] = piece_r
        lims, distances, rows = merged, out_d, out_r
    if len(codes) == n_indexed:
        return lims, distances, rows
    # rows added since the build: scanned, and merged by (distance, row) within each query
    lims_t, distances_t, rows_t = _core.range_hamming(
        codes[n_indexed:], queries, max_distance, removed_tail
    )
    query = np.concatenate(
        [
            np.repeat(np.arange(len(queries)), np.diff(lims)),
            np.repeat(np.arange(len(queries)), np.diff(lims_t)),
        ]
    )
    distances = np.concatenate([distances, distances_t])
    rows = np.concatenate([rows, rows_t + n_indexed])
    order = np.lexsort((rows, distances, query))
    counts = np.bincount(query, minlength=len(queries))
    lims = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    return lims, distances[order], rows[order]
