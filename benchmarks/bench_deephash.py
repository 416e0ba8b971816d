"""DeepHash against ITQ on the paper-shaped retrieval benchmark: validation AUC, then retrieval.

Usage::

    pip install torch==2.13.0 && pip install ".[demo]"
    python benchmarks/bench_deephash.py --scale demo            # ~3 min after a 45 s data build
    python benchmarks/bench_deephash.py --scale paper           # ~10 min after an 8 min build
    python benchmarks/bench_deephash.py --scale demo --finetune # adds DeepHash+ rows

Data: ``deephash_ext.datasets.load_retrieval_benchmark(scale)`` (docs/algorithms.md,
sec. 6.9). Every scheme is trained on ``X_train``. The settings are fixed before anything is
evaluated; the validation AUC is the only number used to compare settings. The retrieval
figures on the evaluation instances are reported, never used to choose.

Protocols:

* validation AUC: ROC AUC of the Hamming distance over ``pairs_val`` (half matching, half
  hard non-matching), :func:`deephash_ext.selection.pair_auc`;
* evaluation: every query (view 0 of an evaluation instance) ranks the whole database
  (views 1-4 of every instance, 4 relevant each) by Hamming distance, ties by index;
  mAP over the full ranking, recall@10 and recall@100
  (:func:`deephash_ext.metrics.retrieval_report`).

Rows: ITQ (the peer); DeepHash with the paper's input rule (training means, learning rate
0.01 as in the demo); DeepHash with the input thresholded at zero (learning rate 0.05); all
single-layer, 10 RBM epochs, ``hashing_reg = 0.2``. ``--finetune`` adds one epoch of Siamese
fine-tuning on ``pairs_train`` (double margin, Adam 0.001) to the zero-threshold model.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import deephash_ext as dh
from _common import cpu_model  # run as a script: benchmarks/ is on sys.path
from deephash_ext.baselines import ITQ
from deephash_ext.datasets import load_retrieval_benchmark
from deephash_ext.metrics import retrieval_report
from deephash_ext.selection import pair_auc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("tiny", "demo", "paper"), default="demo")
    parser.add_argument("--bits", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--finetune", action="store_true")
    args = parser.parse_args()

    print(f"machine: {cpu_model()} | {os.cpu_count()} CPUs | python {platform.python_version()}")
    print(
        f"deephash_ext {dh.__version__} | SIMD {dh.simd_level()} | {dh.get_num_threads()} threads"
    )
    started = time.perf_counter()
    bench = load_retrieval_benchmark(args.scale, verbose=False)
    print(
        f"data ({args.scale}): {time.perf_counter() - started:.0f} s to load; {bench.description}"
    )

    def report(name: str, bits: int, model, seconds: float) -> None:
        auc = pair_auc(model.encode(bench.X_val), bench.pairs_val, bench.labels_val)
        db, queries = model.encode(bench.X_db), model.encode(bench.X_query)
        _, indices = dh.search(db, queries, len(db))
        r = retrieval_report(indices, bench.y_query, bench.y_db, recall_ranks=(10, 100))
        print(
            f"| {name:<34} | {bits:>5} | {auc:.4f} | {r['mAP']:.3f} | {r['recall@10']:.3f} | "
            f"{r['recall@100']:.3f} | {seconds:7.1f} |",
            flush=True,
        )

    print("| scheme | bits | val AUC | mAP | R@10 | R@100 | train s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    common = dict(hashing_reg=0.2, n_epochs=10, random_state=0)
    for bits in args.bits:
        t0 = time.perf_counter()
        itq = ITQ(bits, random_state=0).fit(bench.X_train)
        report("ITQ", bits, itq, time.perf_counter() - t0)
        for name, params in (
            ("DeepHash, input > means, lr 0.01", dict(learning_rate=0.01)),
            ("DeepHash, input > 0, lr 0.05", dict(input_threshold="zero", learning_rate=0.05)),
        ):
            t0 = time.perf_counter()
            model = dh.DeepHash((bits,), **params, **common).fit(bench.X_train)
            report(name, bits, model, time.perf_counter() - t0)
        if args.finetune:
            t0 = time.perf_counter()
            model.finetune(bench.X_train, bench.pairs_train, n_epochs=1, random_state=0)
            report("DeepHash+, input > 0", bits, model, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
