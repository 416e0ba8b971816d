"""DeepHash against ITQ on the paper-shaped retrieval benchmark: validation AUC, then retrieval.

Usage::

    pip install torch==2.13.0 && pip install ".[demo]"
    python benchmarks/bench_deephash.py --scale demo    # ~4 min after a 1.5 min data build
    python benchmarks/bench_deephash.py --scale paper   # ~1 h after a 23 min data build

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

Rows: ITQ (the peer); DeepHash with the paper's recipe (one layer, input binarised at the
training means, learning rate 0.001, momentum 0.9, 30 epochs, hashing_reg 0.2); the
stack ``DeepHash.for_bits(b)`` selected (a Gaussian-visible RBM of width w, then a b-bit
layer) before fine-tuning; DeepHash+: the same after ``finetune(X_train, pairs_train)``
with default arguments (spectral Siamese fine-tuning, docs/algorithms.md sec. 2.8); and the
uncompressed float descriptor ranked by L2 distance. The margins of DeepHash+ over ITQ are
printed with 95 % paired bootstrap intervals over the evaluation queries, then (paper
Table 1) recall@10 and @100 of every layer's code of each for_bits stack, before and after
fine-tuning. ``--select`` first runs the model selection that
``DeepHash.for_bits`` encodes (:func:`deephash_ext.selection.select_architecture`,
spectral: the hidden width, by validation AUC).

``--figures [6a] [6b]`` adds the paper's ablations (``--figures-only``: only them),
pre-trained with its recipe (no fine-tuning):
Fig. 6a, single-layer d-b models with and without the hashing regulariser (hashing_reg 0
against 0.2), and Fig. 6b, depth at each code length: d-b, d-w-b and d-2w-w-b with w =
max(1024, 2b) (the widths of the paper's deeper stacks halve towards the code).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time

import deephash_ext as dh
import numpy as np
from _common import cpu_model  # run as a script: benchmarks/ is on sys.path
from deephash_ext.baselines import ITQ
from deephash_ext.datasets import load_retrieval_benchmark
from deephash_ext.metrics import (
    average_precision,
    paired_bootstrap_interval,
    rank_by_distance,
    recall_per_query,
    relevance_from_labels,
    retrieval_report,
)
from deephash_ext.selection import pair_auc, select_architecture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("tiny", "demo", "paper"), default="demo")
    parser.add_argument("--bits", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--select", action="store_true", help="run the model selection first")
    parser.add_argument(
        "--figures",
        nargs="*",
        choices=("6a", "6b"),
        help="also the paper's Fig. 6a and / or 6b (ablations; no argument: both)",
    )
    parser.add_argument(
        "--figures-only", action="store_true", help="only the figures (no main table)"
    )
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

    def report(name: str, bits: int, model, seconds: float) -> dict:
        return score_row(f"{name:<42} | {bits:>5}", model, bench, seconds)

    if args.select:
        for bits in args.bits:
            params = dh.DeepHash.for_bits(bits, random_state=0).get_params()
            params.pop("hidden_layer_sizes")
            t0 = time.perf_counter()
            best, _ = select_architecture(
                bench.X_train,
                bench.X_val,
                bench.pairs_val,
                bench.labels_val,
                bits,
                pairs=bench.pairs_train,
                on_candidate=lambda sizes, auc, b=bits: print(
                    f"select {b} bits: {sizes} val AUC {auc:.4f}", flush=True
                ),
                **params,
            )
            print(f"select {bits} bits: best {best} ({time.perf_counter() - t0:.0f} s)")

    paper = dict(hashing_reg=0.2, n_epochs=30, random_state=0)
    figures = None if args.figures is None else (args.figures or ["6a", "6b"])
    if args.figures_only:
        paper_figures(bench, args.bits, paper, [], figures or ["6a", "6b"])
        return
    print("| scheme | bits | val AUC | mAP | R@10 | R@100 | train s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    pretrained = None
    stacks = []  # (pre-trained, fine-tuned) for the per-layer table
    paper_models = []  # fitted with the paper's recipe: reused by the figures
    for bits in args.bits:
        t0 = time.perf_counter()
        itq = ITQ(bits, random_state=0).fit(bench.X_train)
        itq_scores = report("ITQ", bits, itq, time.perf_counter() - t0)
        t0 = time.perf_counter()
        model = dh.DeepHash((bits,), **paper).fit(bench.X_train)
        report("DeepHash, paper recipe (input > means)", bits, model, time.perf_counter() - t0)
        paper_models.append(model)
        t0 = time.perf_counter()
        model = dh.DeepHash.for_bits(bits, random_state=0).fit(bench.X_train, reuse=pretrained)
        pretrained = model  # not fine-tuned: the next code length reuses its first layer
        sizes = "-".join(str(s) for s in model.hidden_layer_sizes)
        report(f"DeepHash {sizes}, pre-trained", bits, model, time.perf_counter() - t0)
        t0 = time.perf_counter()
        model = copy.deepcopy(model).finetune(bench.X_train, bench.pairs_train)
        scores = report(
            "DeepHash+ (for_bits, spectral fine-tuning)", bits, model, time.perf_counter() - t0
        )
        print(f"|   DeepHash+ - ITQ at {bits} bits: {margins(scores, itq_scores)} |", flush=True)
        stacks.append((pretrained, model))
    t0 = time.perf_counter()
    order = rank_by_distance(pairwise_sq_l2(bench.X_query, bench.X_db))  # ties by index
    r = retrieval_report(order, bench.y_query, bench.y_db, recall_ranks=(10, 100))
    print(
        f"| float descriptor, L2 (uncompressed) | {32 * bench.X_db.shape[1]} | - | "
        f"{r['mAP']:.3f} | {r['recall@10']:.3f} | {r['recall@100']:.3f} | "
        f"{time.perf_counter() - t0:7.1f} |"
    )

    # Paper Table 1: the code of every layer of the DeepHash+ stacks, before and after
    # fine-tuning (spectral fine-tuning replaces the top layer; the layers below pass their
    # projection up instead of their bits).
    print("\n| stack | layer | bits | R@10 before | R@10 after | R@100 before | R@100 after |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for before, after in stacks:
        sizes = "-".join(str(s) for s in after.hidden_layer_sizes)
        for layer, width in enumerate(after.hidden_layer_sizes):
            pair = [evaluate(m, layer, bench) for m in (before, after)]
            print(
                f"| {sizes} | {layer + 1} | {width} | {pair[0]['recall@10']:.3f} | "
                f"{pair[1]['recall@10']:.3f} | {pair[0]['recall@100']:.3f} | "
                f"{pair[1]['recall@100']:.3f} |",
                flush=True,
            )
    if figures:
        paper_figures(bench, args.bits, paper, paper_models, figures)


def paper_figures(
    bench, bit_lengths: list[int], paper: dict, fitted: list, figures: list[str]
) -> None:
    """Fig. 6a (hashing regulariser, one layer) and / or Fig. 6b (depth), as ``figures``
    names them, pre-trained with the paper's recipe ``paper``; ``fitted``: models already
    trained with it, whose leading layers a deeper stack reuses (DeepHash.fit(reuse=...))."""

    def row(label: str, model, seconds: float) -> None:
        score_row(label, model, bench, seconds)

    def fit(sizes: tuple[int, ...], **settings):
        params = {**paper, **settings}
        reuse = max(
            (m for m in fitted if m.get_params() == {**m.get_params(), **params}),
            key=lambda m: shared_prefix(m.hidden_layer_sizes, sizes),
            default=None,
        )
        t0 = time.perf_counter()
        model = dh.DeepHash(sizes, **params).fit(bench.X_train, reuse=reuse)
        fitted.append(model)
        return model, time.perf_counter() - t0

    d = bench.X_train.shape[1]
    if "6a" in figures:
        fig_6a(bench, bit_lengths, paper, fit, row, d)
    if "6b" in figures:
        fig_6b(bit_lengths, fit, row, d)


def fig_6a(bench, bit_lengths, paper, fit, row, d) -> None:
    print("\nPaper Fig. 6a: hashing regularisation, single layer, pre-trained (paper recipe)\n")
    print("| model | val AUC | mAP | R@10 | R@100 | train s |")
    print("|---|---:|---:|---:|---:|---:|")
    for bits in bit_lengths:
        for reg in (0.0, paper["hashing_reg"]):
            model, seconds = fit((bits,), hashing_reg=reg)
            row(f"{d}-{bits}, hashing_reg {reg:g}", model, seconds)


def fig_6b(bit_lengths, fit, row, d) -> None:
    print("\nPaper Fig. 6b: depth, pre-trained (paper recipe, hashing_reg 0.2)\n")
    print("| model | val AUC | mAP | R@10 | R@100 | train s (reused layers not counted) |")
    print("|---|---:|---:|---:|---:|---:|")
    for bits in bit_lengths:
        width = max(1024, 2 * bits)
        for sizes in ((bits,), (width, bits), (2 * width, width, bits)):
            model, seconds = fit(sizes)
            row("-".join(str(s) for s in (d, *sizes)), model, seconds)


def shared_prefix(a, b) -> int:
    """How many leading entries two layer-size tuples share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def score_row(label: str, model, bench, seconds: float) -> dict:
    """Prints ``| label | val AUC | mAP | R@10 | R@100 | seconds |`` for the model's code;
    returns its retrieval_report on the evaluation instances."""
    auc = pair_auc(model.encode(bench.X_val), bench.pairs_val, bench.labels_val)
    r = evaluate(model, -1, bench)
    print(
        f"| {label} | {auc:.4f} | {r['mAP']:.3f} | {r['recall@10']:.3f} | "
        f"{r['recall@100']:.3f} | {seconds:7.1f} |",
        flush=True,
    )
    return r


def margins(a: dict, b: dict) -> str:
    """``a - b`` in mAP and recall@10 (dicts of :func:`evaluate`), each with its 95 %
    paired bootstrap interval over the evaluation queries (the sampling noise of the query
    set, which the point margins alone do not show)."""
    parts = []
    for name, key in (("mAP", "AP"), ("R@10", "recall@10")):
        d, low, high = paired_bootstrap_interval(a["per_query"][key], b["per_query"][key])
        parts.append(f"{name} {d:+.3f} (95 % CI {low:+.3f} to {high:+.3f})")
    return ", ".join(parts)


def evaluate(model, layer: int, bench) -> dict:
    """retrieval_report (recall@10 and @100) of one layer's code on the evaluation
    instances (layer -1: the model's code; baselines take no layer), and under
    ``"per_query"`` each query's AP and recall@10 (their means are mAP and recall@10)."""
    if layer == -1:
        db, queries = model.encode(bench.X_db), model.encode(bench.X_query)
    else:
        db, queries = (
            model.encode(bench.X_db, layer=layer),
            model.encode(bench.X_query, layer=layer),
        )
    _, indices = dh.search(db, queries, len(db))
    report: dict = retrieval_report(indices, bench.y_query, bench.y_db, recall_ranks=(10, 100))
    relevance, n_relevant = relevance_from_labels(indices, bench.y_query, bench.y_db)
    report["per_query"] = {
        "AP": average_precision(relevance, n_relevant),
        "recall@10": recall_per_query(relevance, n_relevant, 10),
    }
    return report


def pairwise_sq_l2(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    A, B = A.astype(np.float64), B.astype(np.float64)
    return (A * A).sum(1)[:, None] - 2 * A @ B.T + (B * B).sum(1)[None, :]


if __name__ == "__main__":
    main()
