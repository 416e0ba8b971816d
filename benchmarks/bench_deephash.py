"""DeepHash against ITQ on the paper-shaped retrieval benchmark: validation AUC, then retrieval.

Usage::

    pip install torch==2.13.0 && pip install ".[demo]"
    python benchmarks/bench_deephash.py --scale demo    # ~6 min after a 2 min data build
    python benchmarks/bench_deephash.py --scale paper   # ~1 h after a 15 min data build

Data: ``deephash_ext.datasets.load_retrieval_benchmark(scale)`` (docs/algorithms.md,
sec. 6.9). Every scheme is trained on ``X_train``. Settings are compared on the validation
AUC only (validation photos are disjoint from the training and the evaluation photos); the
retrieval figures on the evaluation instances are reported, never used to choose.

Protocols:

* validation AUC: ROC AUC of the Hamming distance over ``pairs_val`` (each validation region
  matched with its other view and with 50 random other regions),
  :func:`deephash_ext.selection.pair_auc`;
* evaluation: every query (view 0 of an evaluation instance) ranks the whole database
  (views 1-4 of every instance, 4 relevant each) by Hamming distance, ties by index;
  mAP over the full ranking, recall@10 and recall@100
  (:func:`deephash_ext.metrics.retrieval_report`).

Rows, all single-layer: ITQ (the peer); DeepHash with the paper's recipe (input binarised at
the training means, learning rate 0.001, momentum 0.9, 30 epochs, hashing_reg 0.2); with the
input thresholded at zero (learning rate 0.05, 10 epochs); with Gaussian visible units
(learning rate 0.003, 20 epochs: the best validation AUC among the Gaussian settings tried,
see benchmarks/results/bench_deephash.md); then DeepHash+: the Gaussian model fine-tuned
with the paper's double-margin loss and 1:2 random negatives (Adam 0.001, 33 matching pairs
per minibatch, up to 5 epochs), stopped early on the validation AUC (patience 1).
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
            f"| {name:<42} | {bits:>5} | {auc:.4f} | {r['mAP']:.3f} | {r['recall@10']:.3f} | "
            f"{r['recall@100']:.3f} | {seconds:7.1f} |",
            flush=True,
        )

    print("| scheme | bits | val AUC | mAP | R@10 | R@100 | train s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    common = dict(hashing_reg=0.2, random_state=0)
    variants = (
        ("DeepHash, paper (input > means, lr 0.001)", dict(n_epochs=30)),
        (
            "DeepHash, input > 0, lr 0.05",
            dict(input_threshold="zero", learning_rate=0.05, n_epochs=10),
        ),
        (
            "DeepHash, Gaussian visible, lr 0.003",
            dict(visible_units="gaussian", learning_rate=0.003, n_epochs=20),
        ),
    )
    validation = (bench.X_val, bench.pairs_val, bench.labels_val)
    for bits in args.bits:
        t0 = time.perf_counter()
        itq = ITQ(bits, random_state=0).fit(bench.X_train)
        report("ITQ", bits, itq, time.perf_counter() - t0)
        for name, params in variants:
            t0 = time.perf_counter()
            model = dh.DeepHash((bits,), **params, **common).fit(bench.X_train)
            report(name, bits, model, time.perf_counter() - t0)
        t0 = time.perf_counter()
        model.finetune(
            bench.X_train, bench.pairs_train, random_state=0, validation=validation, patience=1
        )
        report("DeepHash+ (Gaussian), early stopping", bits, model, time.perf_counter() - t0)
        print(f"|   validation AUC per epoch: {[round(v, 4) for v in model.finetune_scores_]} |")


if __name__ == "__main__":
    main()
