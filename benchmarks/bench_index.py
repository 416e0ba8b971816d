"""BinaryIndex: build, save, search in RAM and mapped, open, removal, against faiss; one run.

Usage::

    pip install faiss-cpu                                  # benchmark-only peer
    python benchmarks/bench_index.py                       # n = 100M codes of 64 bits
    python benchmarks/bench_index.py --n 1000000           # a small smoke run

On n uniformly random codes (ids 0..n-1, the index's default ids) and --queries random
queries, k = 10, this measures in one run:

1. build: one ``BinaryIndex(bits).add(codes)`` in RAM, then ``save`` to ``<dir>/index.dhx``
   (the file size is printed);
2. search in RAM: ``deephash_ext.search`` on the bare array against ``index.search``, for the
   batch of queries and for single queries (a loop of up to 20, reported per query);
3. faiss: ``IndexBinaryIDMap(IndexBinaryFlat)`` built with ``add_with_ids`` on the same data
   and searched with the same queries (distances checked equal to ours; ids may differ
   among ties, which faiss does not order by insertion);
4. open: ``BinaryIndex.load(path, mmap=True)``, the best of several opens, and the growth
   of VmRSS (/proc/self/status) over the first open in a fresh subprocess;
5. mapped search: cold (the file evicted from the page cache with
   ``posix_fadvise(DONTNEED)`` while nothing maps it, its residency checked with
   ``mincore``) then warm, against the in-RAM index;
6. removal: 10 % and 50 % of the ids removed with ``compact_threshold = None``, search
   before removal, after removal and after ``compact()``, and the time of both calls.

Timings use time.perf_counter(); warm timings are the best of --repeat runs, and runs that
are compared with each other are interleaved (except faiss's: its OpenMP threads spin for a
while after each call and would slow the next search down, so it is compared with step 2).
A summary of the targets ends the run. The generated file is deleted at the end unless
--keep.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import mmap
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import deephash_ext as dh
import numpy as np
from _common import (
    best_of_rounds,
    best_time,
    cpu_model,
    random_codes,
)  # run as a script: benchmarks/ is on sys.path

K = 10
N_SINGLE = 20  # single queries per loop
CHUNK_BYTES = 256 << 20  # codes are generated this many bytes at a time

# The subprocess that measures the first mapped open: VmRSS before and after it.
RSS_SCRIPT = """
import json, sys, time
import deephash_ext as dh

def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])
    return out

before = status()
t0 = time.perf_counter()
index = dh.BinaryIndex.load(sys.argv[1], mmap=True)
seconds = time.perf_counter() - t0
after = status()
print(json.dumps({"before": before, "after": after, "seconds": seconds, "len": len(index),
                  "mapped": index.mapped}))
"""


# ---------------------------------------------------------------------- helpers
class Report:
    """Prints markdown table rows as they come and keeps the targets for the summary."""

    def __init__(self) -> None:
        self.targets: list[tuple[str, str, str, bool]] = []

    @staticmethod
    def header() -> None:
        print("| step | measurement | time (ms) | ratio | target | result |")
        print("|---|---|---:|---:|---|:---:|")

    def row(
        self,
        step: str,
        what: str,
        seconds: float | None,
        ratio: float | None = None,
        limit: float | None = None,
        target: str = "",
        value: str | None = None,
        name: str | None = None,
    ) -> None:
        """One row; with ``limit``, the target is ``ratio <= limit`` (or ``value`` vs
        ``target`` text when given) and counts in the summary, as ``name``."""
        ms = "-" if seconds is None else f"{seconds * 1e3:.3f}"
        ratio_cell = "-" if ratio is None else f"{ratio:.3f}"
        result = "-"
        if limit is not None:
            measured = ratio if value is None else float(value)
            strict = target.startswith("< ")
            ok = measured is not None and (measured < limit if strict else measured <= limit)
            result = "PASS" if ok else "FAIL"
            target = target or f"<= {limit:g}"
            shown = ratio_cell if value is None else value
            self.targets.append((name or f"{step}: {what}", shown, target, ok))
        print(f"| {step} | {what} | {ms} | {ratio_cell} | {target or '-'} | {result} |", flush=True)

    def summary(self) -> None:
        print()
        print("Targets:")
        print("| target | measured | must be | result |")
        print("|---|---:|---|:---:|")
        for what, shown, target, ok in self.targets:
            print(f"| {what} | {shown} | {target} | {'PASS' if ok else 'FAIL'} |")
        failed = sum(not ok for *_, ok in self.targets)
        print(f"\n{len(self.targets) - failed} of {len(self.targets)} targets met.")


def best_interleaved(fns: list, repeat: int) -> list[float]:
    """Best wall time of each function over `repeat` interleaved rounds, after one untimed
    call each."""
    for fn in fns:
        fn()
    best = best_of_rounds(dict(enumerate(fns)), dict.fromkeys(range(len(fns)), repeat))
    return [best[i] for i in range(len(fns))]


def singles(search, queries: np.ndarray):
    """A function running `search(query, K)` for each query in turn, one at a time."""

    def run() -> None:
        for query in queries:
            search(query, K)

    return run


def free() -> None:
    gc.collect()


def evict(path: Path) -> None:
    """Drops the file's pages from the page cache (only those no process maps)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident_share(path: Path) -> float | None:
    """Share of the file's pages in the page cache (mincore on a fresh mapping that touches
    nothing), or None where that cannot be asked."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        ]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        size = path.stat().st_size
        pages = -(-size // mmap.PAGESIZE)
        fd = os.open(path, os.O_RDONLY)
        try:
            address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        finally:
            os.close(fd)
        if address in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            vector = (ctypes.c_ubyte * pages)()
            if libc.mincore(address, size, vector) != 0:
                return None
            resident = int((np.frombuffer(vector, dtype=np.uint8) & 1).sum())
        finally:
            libc.munmap(address, size)
        return resident / pages
    except (OSError, AttributeError):
        return None


def share_text(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.1f}%"


# ---------------------------------------------------------------------- phases
def phase_build(report: Report, args, rng, path: Path):
    """Generates the codes and queries, builds the index in RAM and saves it."""
    code_bytes = args.bits // 8
    t0 = time.perf_counter()
    codes = random_codes(rng, args.n, code_bytes, CHUNK_BYTES)
    queries = random_codes(rng, args.queries, code_bytes, CHUNK_BYTES)
    report.row(
        "build",
        f"generate {args.n:,} codes ({codes.nbytes / 2**20:,.0f} MiB)",
        time.perf_counter() - t0,
    )
    index = dh.BinaryIndex(args.bits)
    t0 = time.perf_counter()
    index.add(codes)
    report.row(
        "build", "BinaryIndex(bits) + add(codes) (default ids 0..n-1)", time.perf_counter() - t0
    )
    t0 = time.perf_counter()
    index.save(path)
    seconds = time.perf_counter() - t0
    size = path.stat().st_size
    report.row("build", f"save -> {path.name}, {size:,} bytes ({size / 2**30:.2f} GiB)", seconds)
    return codes, queries, index


def phase_in_ram(report: Report, args, codes, queries, index) -> dict[str, float]:
    """Bare array against the in-RAM index, batch and single queries."""
    single = queries[:N_SINGLE]
    d_bare, i_bare = dh.search(codes, queries, K)
    d_index, i_index = index.search(queries, K)
    same = np.array_equal(d_bare, d_index) and np.array_equal(i_bare, i_index)
    t_bare, t_index = best_interleaved(
        [lambda: dh.search(codes, queries, K), lambda: index.search(queries, K)], args.repeat
    )
    nq = len(queries)
    report.row("search RAM", f"bare array dh.search, batch of {nq}", t_bare)
    report.row(
        "search RAM",
        f"index.search, batch of {nq} (vs bare; same results: {'yes' if same else 'NO'})",
        t_index,
        t_index / t_bare,
        1.05,
        name="in-RAM index / bare array, batch",
    )
    s_bare, s_index = best_interleaved(
        [
            singles(lambda q, k: dh.search(codes, q, k), single),
            singles(index.search, single),
        ],
        args.repeat,
    )
    s_bare, s_index = s_bare / len(single), s_index / len(single)
    report.row("search RAM", "bare array dh.search, single query (per query)", s_bare)
    report.row(
        "search RAM",
        "index.search, single query (per query, vs bare)",
        s_index,
        s_index / s_bare,
        1.05,
        name="in-RAM index / bare array, single query",
    )
    return {"batch": t_index, "single": s_index}


def phase_faiss(report: Report, args, codes, queries, index, ours: dict[str, float]) -> None:
    """faiss IndexBinaryIDMap(IndexBinaryFlat) on the same data."""
    import faiss  # benchmark-only dependency: pip install faiss-cpu

    ids = np.arange(len(codes), dtype=np.int64)
    t0 = time.perf_counter()
    peer = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(args.bits))
    peer.add_with_ids(codes, ids)
    report.row(
        "faiss", "IndexBinaryIDMap(IndexBinaryFlat) + add_with_ids", time.perf_counter() - t0
    )
    del ids
    single = queries[:N_SINGLE]
    d_faiss, _ = peer.search(queries, K)
    d_ours, _ = index.search(queries, K)
    same = np.array_equal(d_faiss, d_ours)
    # Not interleaved with our searches: faiss's OpenMP threads keep spinning for a while
    # after each call and would slow ours down. Ours are the times of the in-RAM step.
    t_faiss, _ = best_time(lambda: peer.search(queries, K), args.repeat)
    report.row(
        "faiss",
        f"faiss search, batch of {len(queries)} (ratio: faiss / index in RAM; "
        f"distances = ours: {'yes' if same else 'NO'})",
        t_faiss,
        t_faiss / ours["batch"],
    )
    s_faiss, _ = best_time(
        singles(lambda q, k: peer.search(q.reshape(1, -1), k), single), args.repeat
    )
    s_faiss /= len(single)
    report.row(
        "faiss",
        "faiss search, single query (per query; ratio: faiss / index in RAM)",
        s_faiss,
        s_faiss / ours["single"],
    )
    peer = None  # the lambdas above hold it through a cell: release it here
    free()


def phase_open(report: Report, args, path: Path) -> None:
    """Mapped opens: best of several in this process, and VmRSS over the first open in a
    fresh one."""
    opens = max(10, args.repeat)

    def open_once() -> None:
        index = dh.BinaryIndex.load(path, mmap=True)
        assert index.mapped
        del index

    t_open, _ = best_time(open_once, opens)
    report.row(
        "open",
        f"BinaryIndex.load(path, mmap=True), best of {opens}",
        t_open,
        limit=10.0,
        name="mapped open, best of several (ms)",
        target="< 10 ms",
        value=f"{t_open * 1e3:.3f}",
    )
    done = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        print(f"| open | subprocess failed: {done.stderr.strip()[-300:]} | - | - | - | FAIL |")
        report.targets.append(("open: VmRSS growth", "failed", "< 5 MB (5120 kB)", False))
        return
    out = json.loads(done.stdout.strip().splitlines()[-1])
    before, after = out["before"], out["after"]
    growth = after["VmRSS"] - before["VmRSS"]
    report.row(
        "open",
        f"first open in a fresh process (len {out['len']:,}, mapped {out['mapped']})",
        out["seconds"],
    )
    report.row(
        "open",
        f"VmRSS growth over that open: {before['VmRSS']:,} -> {after['VmRSS']:,} kB "
        f"(RssAnon {after.get('RssAnon', 0) - before.get('RssAnon', 0):+,} kB, "
        f"RssFile {after.get('RssFile', 0) - before.get('RssFile', 0):+,} kB)",
        None,
        limit=5120,
        name="VmRSS growth over the first mapped open (kB)",
        target="< 5 MB (5120 kB)",
        value=str(growth),
    )


def phase_mapped(report: Report, args, path: Path, queries, ram_index) -> None:
    """Cold then warm searches of the mapped file, against the in-RAM index."""
    single = queries[:N_SINGLE]
    for label, run in (
        ("single query", lambda index: index.search(single[0], K)),
        (f"batch of {len(queries)}", lambda index: index.search(queries, K)),
    ):
        free()  # no mapped index may be alive: mapped pages are not evicted
        cached = resident_share(path)
        evict(path)
        evicted = resident_share(path)
        index = dh.BinaryIndex.load(path, mmap=True)
        t0 = time.perf_counter()
        run(index)
        seconds = time.perf_counter() - t0
        after = resident_share(path)
        report.row(
            "mapped",
            f"cold, first search, {label} (file in page cache: {share_text(cached)} before "
            f"eviction, {share_text(evicted)} after, {share_text(after)} after the search)",
            seconds,
        )
        del index
        free()
    index = dh.BinaryIndex.load(path, mmap=True)
    same = all(
        np.array_equal(a, b) for a, b in zip(index.search(queries, K), ram_index.search(queries, K))
    )
    t_mapped, t_ram = best_interleaved(
        [lambda: index.search(queries, K), lambda: ram_index.search(queries, K)], args.repeat
    )
    report.row("mapped", f"in-RAM index, batch of {len(queries)} (same rounds)", t_ram)
    report.row(
        "mapped",
        f"warm mapped, batch of {len(queries)} (vs in-RAM; same results: "
        f"{'yes' if same else 'NO'})",
        t_mapped,
        t_mapped / t_ram,
        1.05,
        name="warm mapped / in-RAM index, batch",
    )
    s_mapped, s_ram = best_interleaved(
        [singles(index.search, single), singles(ram_index.search, single)], args.repeat
    )
    s_mapped, s_ram = s_mapped / len(single), s_ram / len(single)
    report.row("mapped", "in-RAM index, single query (per query, same rounds)", s_ram)
    report.row(
        "mapped",
        "warm mapped, single query (per query, vs in-RAM)",
        s_mapped,
        s_mapped / s_ram,
        1.05,
        name="warm mapped / in-RAM index, single query",
    )
    index = None  # closes the mapping
    free()


def phase_removal(report: Report, args, path: Path, queries) -> None:
    """Removal of 10 % and 50 % of the ids from fresh in-RAM copies, then compaction; each
    search is timed in the same rounds as an untouched in-RAM copy (before removal)."""
    rng = np.random.default_rng([args.seed, 1])
    baseline = dh.BinaryIndex.load(path, verify=False)  # in RAM, never changed
    nq = len(queries)
    for share, limit in ((0.10, 1.1), (0.50, None)):
        index = dh.BinaryIndex.load(path, verify=False)  # in RAM
        index.compact_threshold = None
        n = len(index)
        gone = rng.choice(n, size=int(share * n), replace=False).astype(np.int64)
        step = f"remove {share:.0%}"
        t0 = time.perf_counter()
        removed = index.remove(gone)
        report.row(
            step, f"remove({len(gone):,} ids) -> {removed:,} removed", time.perf_counter() - t0
        )
        t_before, t_removed = best_interleaved(
            [lambda: baseline.search(queries, K), lambda: index.search(queries, K)], args.repeat
        )
        _, ids_removed = index.search(queries, K)
        clean = not np.isin(ids_removed, gone).any()
        report.row(step, f"search before removal, batch of {nq} (same rounds)", t_before)
        report.row(
            step,
            f"search with {share:.0%} removed, before compact (vs before removal; no removed "
            f"id returned: {'yes' if clean else 'NO'})",
            t_removed,
            t_removed / t_before,
            limit,
            name=f"search with {share:.0%} removed / before removal, batch",
        )
        t0 = time.perf_counter()
        index.compact()
        report.row(step, f"compact() -> {len(index):,} rows", time.perf_counter() - t0)
        t_before, t_compact = best_interleaved(
            [lambda: baseline.search(queries, K), lambda: index.search(queries, K)], args.repeat
        )
        _, ids_compact = index.search(queries, K)
        same = np.array_equal(ids_removed, ids_compact)
        report.row(step, f"search before removal, batch of {nq} (same rounds)", t_before)
        report.row(
            step,
            f"search after compact (vs before removal; results as before compact: "
            f"{'yes' if same else 'NO'})",
            t_compact,
            t_compact / t_before,
        )
        index = gone = ids_removed = ids_compact = None
        free()
    baseline = None
    free()


# ---------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000_000, help="number of codes")
    parser.add_argument("--bits", type=int, default=64, help="bits per code (multiple of 8)")
    parser.add_argument("--queries", type=int, default=100, help="queries per batch")
    parser.add_argument("--repeat", type=int, default=5, help="runs per warm timing (best of)")
    parser.add_argument(
        "--dir", type=Path, default=None, help="folder for the index file (default: a temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the index file at the end")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.bits <= 0 or args.bits % 8:
        parser.error("--bits must be a positive multiple of 8")
    if args.n < K or args.queries < 1 or args.repeat < 1:
        parser.error(f"need --n >= {K}, --queries >= 1 and --repeat >= 1")

    import faiss  # benchmark-only dependency: pip install faiss-cpu

    faiss.omp_set_num_threads(dh.get_num_threads())
    info = dh.build_info()
    print(
        f"machine: {cpu_model()} | {os.cpu_count()} CPUs, {info['available_cpus']} available "
        f"| {platform.system()} {platform.machine()} | python {platform.python_version()}"
    )
    print(
        f"deephash_ext {dh.__version__}: SIMD {dh.simd_level()} "
        f"(compiled {info['simd_compiled']}), threads {dh.get_num_threads()}, "
        f"{info['threading']}"
    )
    print(
        f"faiss {faiss.__version__}: IndexBinaryIDMap(IndexBinaryFlat), "
        f"threads {faiss.omp_get_max_threads()}"
    )

    made_dir = args.dir is None or not args.dir.exists()
    if args.dir is None:
        folder = Path(tempfile.mkdtemp(prefix="bench_index_"))
    else:
        folder = args.dir
        folder.mkdir(parents=True, exist_ok=True)
    path = folder / "index.dhx"
    print(
        f"n {args.n:,} codes of {args.bits} bits, {args.queries} queries per batch, "
        f"{min(N_SINGLE, args.queries)} single queries per loop, k {K}, best of {args.repeat}, "
        f"seed {args.seed}, file {path}"
    )
    print()
    report = Report()
    report.header()
    try:
        rng = np.random.default_rng(args.seed)
        codes, queries, index = phase_build(report, args, rng, path)
        ours = phase_in_ram(report, args, codes, queries, index)
        phase_faiss(report, args, codes, queries, index, ours)
        del codes
        free()
        phase_open(report, args, path)
        phase_mapped(report, args, path, queries, index)
        del index
        free()
        phase_removal(report, args, path, queries)
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
            if made_dir:
                shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"\nkept {path}")
    report.summary()


if __name__ == "__main__":
    main()
