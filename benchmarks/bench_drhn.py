"""DRHN on scikit-learn's digits upsampled to 32 x 32: retrieval and classification, one run.

Usage::

    pip install . torch==2.13.0
    python benchmarks/bench_drhn.py            # 12/24/32/48 bits, depths 1 and 2 (~10 min)
    python benchmarks/bench_drhn.py --quick    # smoke run (1 epoch, 12 and 48 bits, depth 1)

Data: ``sklearn.datasets.load_digits`` (1797 grey 8 x 8 images, 10 classes, values 0..16),
scaled to [0, 1] and upsampled to 32 x 32 (the paper's input size) with
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``. A stratified
split (``train_test_split(test_size=1/3, stratify=labels, random_state=0)``) gives the
training set, which is also the retrieval database, and the held-out queries. No mirroring
(digits are not mirror-symmetric).

Protocols (``deephash_ext.metrics``; relevant = same class; Hamming ranking by
:func:`deephash_ext.search`, ties by index):

* mAP: over the full ranking of the database;
* mAP@1000: AP@K with K = min(1000, database size) and the ``min(n_relevant, K)``
  normaliser (the DRHN / SSDH convention). With about 1200 database items and ~120 relevant
  per query, it is close to the full mAP;
* precision@10, precision@100;
* precision within Hamming radius 2 (inclusive; a query with an empty ball counts 0);
* accuracy of the softmax classifier on the queries.

Peers in the same run: the same network without the hash layer (the classifier reads the
128 pooled features; accuracy only, the paper's claim that the hash layer costs no
accuracy), and unsupervised ITQ (``deephash_ext.ITQ``) on the raw 64 pixels at the bit
lengths it supports (multiples of 8, at most 64).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import deephash_ext as dh
import numpy as np
from _common import cpu_model  # run as a script: benchmarks/ is on sys.path
from deephash_ext.baselines import ITQ
from deephash_ext.drhn import DRHN
from deephash_ext.metrics import (
    mean_average_precision,
    precision_at,
    relevance_from_labels,
    retrieval_report,
)
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "bench_drhn.md")


class DRHNWithoutHash(DRHN):
    """The same network and training, with the classifier on the pooled features."""

    def _hash_units(self):
        return None


def digits_32(torch):
    """(images float32 (n, 1, 32, 32) in [0, 1], labels int64 (n,))."""
    digits = load_digits()
    small = torch.from_numpy(digits.images.astype(np.float32)[:, None] / 16.0)
    big = torch.nn.functional.interpolate(
        small, size=(32, 32), mode="bilinear", align_corners=False
    )
    return big.numpy(), digits.target.astype(np.int64)


def retrieval(db_codes, query_codes, db_labels, query_labels):
    """The protocols above for one code set (full Hamming ranking of the database)."""
    distances, indices = dh.search(db_codes, query_codes, k=len(db_codes))
    relevance, n_relevant = relevance_from_labels(indices, query_labels, db_labels)
    K = min(1000, len(db_codes))
    out = {
        "mAP": mean_average_precision(relevance, n_relevant),
        f"mAP@{K}": mean_average_precision(relevance, n_relevant, K=K),
        "P@10": precision_at(relevance, 10),
        "P@100": precision_at(relevance, 100),
    }
    # full ranking: retrieval_report accepts rows that lie entirely within the radius
    report = retrieval_report(
        indices, query_labels, db_labels, distances, recall_ranks=(), radius=2
    )
    out["P@r<=2"] = report["precision@r<=2"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bits", type=int, nargs="+", default=[12, 24, 32, 48])
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-save", action="store_true", help="do not write results/")
    args = parser.parse_args()
    if args.quick:
        args.bits, args.depths, args.epochs = [12, 48], [1], 1

    import torch

    torch.set_num_threads(args.threads)
    dh.set_num_threads(args.threads)
    lines = []

    def emit(text=""):
        print(text, flush=True)
        lines.append(text)

    info = dh.build_info()
    emit(f"machine: {cpu_model()} | {os.cpu_count()} CPUs | python {platform.python_version()}")
    emit(
        f"deephash_ext {info['version']} (SIMD {info['simd_active']}), torch "
        f"{torch.__version__}: {torch.get_num_threads()} threads, device cpu"
    )

    images, labels = digits_32(torch)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=1 / 3, stratify=labels, random_state=0
    )
    raw = load_digits().data.astype(np.float32) / 16.0
    raw_train, raw_test = train_test_split(raw, test_size=1 / 3, stratify=labels, random_state=0)
    K = min(1000, len(train_x))
    emit(
        f"data: sklearn digits 8x8 -> 32x32 bilinear; database (train) {len(train_x)}, "
        f"queries (test) {len(test_x)}, 10 classes; stratified split, seed 0"
    )
    emit(
        f"training: {args.epochs} epochs, batch {args.batch_size}, SGD lr {args.learning_rate} "
        "(/10 at 50 % and 75 % of the epochs), momentum 0.9, weight decay 1e-4, "
        f"widths (16, 32, 64, 64, 64, 128), projection shortcuts, random_state {args.seed}"
    )
    emit()
    header = (
        f"| network | bits | fit s | s/epoch | accuracy | mAP | mAP@{K} | P@10 | P@100 | P@r<=2 |"
    )
    emit(header)
    emit("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    common = dict(
        n_epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        random_state=args.seed,
    )
    total = time.perf_counter()
    for depth in args.depths:
        for n_bits in args.bits:
            t0 = time.perf_counter()
            model = DRHN(n_bits=n_bits, depth=depth, **common).fit(train_x, train_y)
            seconds = time.perf_counter() - t0
            scores = retrieval(model.encode(train_x), model.encode(test_x), train_y, test_y)
            accuracy = model.score(test_x, test_y)
            emit(
                f"| DRHN-{depth} | {n_bits} | {seconds:.1f} | {seconds / args.epochs:.2f} | "
                f"{accuracy:.4f} | {scores['mAP']:.4f} | {scores[f'mAP@{K}']:.4f} | "
                f"{scores['P@10']:.4f} | {scores['P@100']:.4f} | {scores['P@r<=2']:.4f} |"
            )
        t0 = time.perf_counter()
        plain = DRHNWithoutHash(depth=depth, **common).fit(train_x, train_y)
        seconds = time.perf_counter() - t0
        emit(
            f"| DRHN-{depth} without hash layer | - | {seconds:.1f} | "
            f"{seconds / args.epochs:.2f} | {plain.score(test_x, test_y):.4f} | - | - | - | - "
            "| - |"
        )
    for n_bits in args.bits:
        if n_bits % 8 or n_bits > raw.shape[1]:
            continue
        t0 = time.perf_counter()
        itq = ITQ(n_bits=n_bits, random_state=args.seed).fit(raw_train)
        seconds = time.perf_counter() - t0
        scores = retrieval(itq.encode(raw_train), itq.encode(raw_test), train_y, test_y)
        emit(
            f"| ITQ (raw 64 pixels, unsupervised) | {n_bits} | {seconds:.2f} | - | - | "
            f"{scores['mAP']:.4f} | {scores[f'mAP@{K}']:.4f} | {scores['P@10']:.4f} | "
            f"{scores['P@100']:.4f} | {scores['P@r<=2']:.4f} |"
        )
    emit()
    emit(f"total {time.perf_counter() - total:.0f} s")
    if not args.no_save and not args.quick:
        os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
        with open(RESULTS, "w") as f:
            f.write(f"# bench_drhn.py ({time.strftime('%Y-%m-%d')})\n\n")
            f.write(f"`python benchmarks/bench_drhn.py --epochs {args.epochs}`\n\n")
            f.write("\n".join(lines) + "\n")
        print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
