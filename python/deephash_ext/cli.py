"""The ``deephash`` command line (``python -m deephash_ext``).

``demo`` plants near-duplicates in generated codes and finds them again with exact top-k
and radius search: the package's main job until the learned hashers arrive.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

from ._runtime import build_info
from ._search import range_search, search


def _demo(n: int, n_bits: int, n_queries: int, max_flips: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, size=(n, n_bits // 8), dtype=np.uint8)
    # Each query is a copy of a database code with up to max_flips bits flipped.
    targets = rng.choice(n, size=n_queries, replace=False)
    queries = codes[targets].copy()
    for q in range(n_queries):
        flips = rng.choice(n_bits, size=rng.integers(0, max_flips + 1), replace=False)
        np.bitwise_xor.at(queries[q], flips // 8, (1 << (flips % 8)).astype(np.uint8))

    t0 = time.perf_counter()
    distances, indices = search(codes, queries, k=10)
    t_knn = time.perf_counter() - t0
    t0 = time.perf_counter()
    lims, _, hits = range_search(codes, queries, max_distance=max_flips)
    t_range = time.perf_counter() - t0

    top1 = float(np.mean(indices[:, 0] == targets))
    in_ball = float(np.mean([t in hits[lims[i]:lims[i + 1]] for i, t in enumerate(targets)]))
    info = build_info()
    print(f"deephash_ext {info['version']} | SIMD {info['simd_active']} | "
          f"{info['num_threads']} threads")
    print(f"{n:,} random {n_bits}-bit codes, {n_queries} queries = database codes with "
          f"0..{max_flips} bits flipped")
    print(f"search(k=10):                    {t_knn * 1e3:8.2f} ms, planted code ranked first "
          f"for {top1:.1%} of queries (median top-1 distance {np.median(distances[:, 0]):.0f})")
    print(f"range_search(max_distance={max_flips}):  {t_range * 1e3:8.2f} ms, planted code found "
          f"for {in_ball:.1%} of queries, {len(hits) / n_queries:.2f} hits per query")
    return 0 if in_ball == 1.0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deephash", description="deephash_ext command line")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="find planted near-duplicates in generated codes")
    demo.add_argument("--n", type=int, default=1_000_000, help="database codes")
    demo.add_argument("--bits", type=int, default=256, help="bits per code (multiple of 8)")
    demo.add_argument("--queries", type=int, default=1000)
    demo.add_argument("--max-flips", type=int, default=8, help="bits flipped per query, at most")
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.bits <= 0 or args.bits % 8 or args.n < 10 or not 0 < args.queries <= args.n:
        parser.error("need --bits a positive multiple of 8, --n >= 10, 0 < --queries <= --n")
    return _demo(args.n, args.bits, args.queries, args.max_flips, args.seed)
