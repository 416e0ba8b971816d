"""Exact Hamming top-k: deephash_ext.search against faiss IndexBinaryFlat, same data, one run.

A third column times a plain hand-written AVX-512 loop (benchmarks/_naive_avx512.c, compiled
here with cc): blocks of the database stay in cache across the queries, the query is broadcast,
8 codes at a time are filtered against the current k-th distance. It is the reference the library
must clear at every width; it runs on batches (nq > 1) with the same thread count.

Usage::

    pip install faiss-cpu            # benchmark-only peer
    python benchmarks/bench_search.py                 # the full grid (about 2 minutes)
    python benchmarks/bench_search.py --quick         # a small smoke run

For every code width, database size n, query count nq and k, both libraries search the
same uniformly random codes with the same number of threads; each timing is the best of
--repeats runs. Cold single-query runs (nq = 1) start from a cold cache (a 256 MiB buffer
is read before each run), so they measure a pass over the codes in main memory; they are
compared with the time to read the codes once at the read bandwidth measured here (numpy
reductions over a 1 GiB array, the best of 1 and all threads). Single queries are also
timed warm (codes in cache, as in a stream of queries). Distances are checked equal to
faiss's (indices may differ only among ties, which faiss does not order by index).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor

import deephash_ext as dh
import numpy as np
from _common import best_time, cpu_model  # run as a script: benchmarks/ is on sys.path

try:
    from _naive import naive_available, naive_search
except ImportError:  # pragma: no cover
    naive_available = None


def read_bandwidth(max_threads: int, gib: float = 1.0, repeats: int = 5) -> float:
    """Bytes per second for reading a large array once: the best over 1..max_threads threads
    (on some machines one core already saturates memory)."""
    # Random contents: pages of identical bytes may be merged by the host and read from cache.
    data = np.random.default_rng(1).integers(0, 2**63, int(gib * (1 << 30)) // 8, dtype=np.uint64)
    best = float("inf")
    for threads in range(1, max_threads + 1):
        parts = np.array_split(data, threads)
        with ThreadPoolExecutor(threads) as pool:
            for _ in range(repeats):
                t0 = time.perf_counter()
                list(pool.map(np.add.reduce, parts))
                best = min(best, time.perf_counter() - t0)
    return data.nbytes / best


class CacheFlusher:
    """Reads a buffer larger than the last-level cache, evicting the codes."""

    def __init__(self, mib: int = 256) -> None:
        self.buffer = np.random.default_rng(2).integers(0, 2**63, (mib << 20) // 8, dtype=np.uint64)

    def __call__(self) -> None:
        np.add.reduce(self.buffer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="database size")
    parser.add_argument(
        "--n-1024",
        type=int,
        default=250_000,
        help="database size at 1024 bits (the issue's setting)",
    )
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--nq", type=int, nargs="+", default=[1, 1000])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3, help="runs per batch timing")
    parser.add_argument("--repeats-single", type=int, default=15, help="runs per nq=1 timing")
    parser.add_argument(
        "--levels", action="store_true", help="also time every SIMD level at nq=max, k=10"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.n, args.n_1024, args.nq, args.k = 50_000, 20_000, [1, 100], [10]
        args.repeats_single = 3

    import faiss  # benchmark-only dependency: pip install faiss-cpu

    faiss.omp_set_num_threads(args.threads)
    dh.set_num_threads(args.threads)
    info = dh.build_info()
    bandwidth = read_bandwidth(args.threads)
    flush = CacheFlusher()

    print(
        f"machine: {cpu_model()} | {os.cpu_count()} CPUs, {info['available_cpus']} available "
        f"| {platform.system()} {platform.machine()} | python {platform.python_version()}"
    )
    print(
        f"deephash_ext {info['version']}: SIMD {info['simd_active']} "
        f"(compiled {info['simd_compiled']}), threads {dh.get_num_threads()}, "
        f"{info['threading']}"
    )
    print(f"faiss {faiss.__version__}: IndexBinaryFlat, threads {faiss.omp_get_max_threads()}")
    print(
        f"memory read bandwidth (best of 1..{args.threads} threads, numpy, 1 GiB): "
        f"{bandwidth / 1e9:.1f} GB/s"
    )
    naive_ok, naive_reason = naive_available() if naive_available else (False, "not found")
    print(f"plain AVX-512 loop: {'yes' if naive_ok else 'skipped (' + naive_reason + ')'}")
    print()
    print(
        "| bits | n | nq | k | faiss (s) | plain loop (s) | deephash_ext (s) | vs faiss "
        "| vs loop | Gpair/s | distances = faiss |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")

    rng = np.random.default_rng(12345)
    single_rows = []
    for bits in args.widths:
        n = args.n_1024 if bits == 1024 else args.n
        code_bytes = bits // 8
        codes = rng.integers(0, 256, size=(n, code_bytes), dtype=np.uint8)
        index = faiss.IndexBinaryFlat(bits)
        index.add(codes)
        runs = [(nq, None) for nq in args.nq if nq > 1]
        if 1 in args.nq:  # single queries: codes already in cache, and read from memory
            runs = [(1, "warm"), (1, "cold"), *runs]
        for nq, cache in runs:
            queries = rng.integers(0, 256, size=(nq, code_bytes), dtype=np.uint8)
            cold = flush if cache == "cold" else None
            repeats = args.repeats_single if nq == 1 else args.repeats
            for k in args.k:
                t_faiss, (fd, _) = best_time(lambda: index.search(queries, k), repeats, cold)
                t_ours, (od, oi) = best_time(lambda: dh.search(codes, queries, k), repeats, cold)
                same = np.array_equal(fd, od)
                loop_cells = ["-", "-"]
                if naive_ok and nq > 1:
                    t_loop, (ld, li) = best_time(
                        lambda: naive_search(codes, queries, k, args.threads), repeats
                    )
                    same = same and np.array_equal(ld, od) and np.array_equal(li, oi)
                    loop_cells = [f"{t_loop:.4f}", f"{t_loop / t_ours:.1f}x"]
                label = f"{nq} ({cache})" if cache else str(nq)
                print(
                    f"| {bits} | {n:,} | {label} | {k} | {t_faiss:.4f} | {loop_cells[0]} | "
                    f"{t_ours:.4f} | {t_faiss / t_ours:.1f}x | {loop_cells[1]} | "
                    f"{n * nq / t_ours / 1e9:.2f} | {'yes' if same else 'NO'} |",
                    flush=True,
                )
                if cache == "cold":
                    single_rows.append((bits, n, k, t_ours, codes.nbytes / bandwidth))

    if single_rows:
        print()
        print("Single query, cold cache, against one read of the codes at the measured bandwidth:")
        print("| bits | n | k | deephash_ext (s) | read once (s) | ratio |")
        print("|---:|---:|---:|---:|---:|---:|")
        for bits, n, k, t, t_read in single_rows:
            print(f"| {bits} | {n:,} | {k} | {t:.5f} | {t_read:.5f} | {t / t_read:.2f} |")

    if args.levels:
        nq, k = max(args.nq), 10
        print()
        print(f"Per SIMD level (nq = {nq}, k = {k}, {dh.get_num_threads()} threads), seconds:")
        levels = dh.available_simd_levels()
        print("| bits | n | " + " | ".join(levels) + " |")
        print("|---:|---:|" + "---:|" * len(levels))
        active = dh.simd_level()
        for bits in args.widths:
            n = args.n_1024 if bits == 1024 else args.n
            codes = rng.integers(0, 256, size=(n, bits // 8), dtype=np.uint8)
            queries = rng.integers(0, 256, size=(nq, bits // 8), dtype=np.uint8)
            cells = []
            for level in levels:
                dh.set_simd_level(level)
                cells.append(best_time(lambda: dh.search(codes, queries, k), args.repeats)[0])
            dh.set_simd_level(active)
            print(f"| {bits} | {n:,} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
