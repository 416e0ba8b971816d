"""SSDH and DLBHC on scikit-learn's digits: retrieval quality and classification accuracy.

Usage::

    pip install . torch
    python benchmarks/bench_ssdh.py            # 12/24/32/48 bits, 3 seeds (a few minutes)
    python benchmarks/bench_ssdh.py --quick    # 48 bits, 1 seed, fewer epochs (smoke run)
    python benchmarks/bench_ssdh.py --tune     # first pick learning rate and epochs on a
                                               # validation split of the training part

Data: ``sklearn.datasets.load_digits`` (1797 8x8 images, 10 classes), features = pixel
values / 16; a stratified split with 1/3 held out as queries (``random_state=0``); the
remaining 2/3 are the training set and the retrieval database.

Protocols (docs/algorithms.md, sec. 6), test queries vs the training set, relevance = same label:
mAP over the full Hamming ranking (ties by index), precision@10 and @100 of that ranking,
precision within Hamming radius 2 (inclusive; a query whose ball is empty counts 0), and
the classifier's test accuracy. The "no hash layer" network has the same ReLU feature
layers feeding the linear classifier directly, trained the same way (Adam, same learning
rate, epochs, minibatches, weight decay and initialisation rule) with softmax
cross-entropy. DLBHC is SSDH with beta = gamma = 0. Each number is the mean (and standard
deviation) over the seeds. Coarse-to-fine: DLBHC's search (a Hamming pool of 500, re-ranked
by Euclidean distance on the 512-d features), reported as mAP@100 next to the Hamming
ranking's mAP@100, at 48 bits.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import deephash_ext as dh
import numpy as np
from _common import cpu_model  # run as a script: benchmarks/ is on sys.path
from deephash_ext.metrics import (
    mean_average_precision,
    precision_at,
    relevance_from_labels,
    retrieval_report,
)
from deephash_ext.ssdh import SSDH, coarse_to_fine_search
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "bench_ssdh.md")


def digits():
    data = load_digits()
    X = (data.data / 16.0).astype(np.float32)
    return train_test_split(X, data.target, test_size=1 / 3, stratify=data.target, random_state=0)


def retrieval(model, X_db, y_db, X_q, y_q) -> dict[str, float]:
    db, q = model.encode(X_db), model.encode(X_q)
    distances, indices = dh.search(db, q, k=len(db))
    report = retrieval_report(indices, y_q, y_db, distances, recall_ranks=(), radius=2)
    relevance, _ = relevance_from_labels(indices, y_q, y_db)
    return {
        "mAP": report["mAP"],
        "P@10": report["precision@10"],
        "P@100": precision_at(relevance, 100),
        "P@r<=2": report["precision@r<=2"],
        "acc": float(model.score(X_q, y_q)),
    }


def no_hash_accuracy(torch, params, X_tr, y_tr, X_te, y_te, seed) -> float:
    """The SSDH network without H: ReLU layers -> linear classifier, trained the same way."""
    from deephash_ext._torch import ssdh_net
    from deephash_ext._torch.common import seeded_generator

    generator, rng = seeded_generator(seed)
    layers, width = [], X_tr.shape[1]
    for size in params["hidden_layer_sizes"]:
        linear = torch.nn.Linear(width, size)
        ssdh_net.init_linear(torch, linear, generator, relu=True)
        layers += [linear, torch.nn.ReLU()]
        width = size
    out = torch.nn.Linear(width, 10)
    ssdh_net.init_linear(torch, out, generator, relu=False)
    net = torch.nn.Sequential(*layers, out)
    opt = torch.optim.Adam(net.parameters(), lr=params["learning_rate"])
    X, y = torch.from_numpy(X_tr), torch.from_numpy(y_tr.astype(np.int64))
    for _ in range(params["n_epochs"]):
        order = torch.from_numpy(rng.permutation(len(X)))
        for start in range(0, len(X), params["batch_size"]):
            rows = order[start : start + params["batch_size"]]
            loss = ssdh_net.e1_softmax(net(X[rows]), y[rows])
            loss = loss + 0.5 * params["weight_decay"] * ssdh_net.weight_penalty(net)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = net(torch.from_numpy(X_te)).argmax(1).numpy()
    return float((pred == y_te).mean())


def tune(params, X_tr, y_tr, grid_lr, grid_epochs):
    """Pick learning rate and epochs by SSDH-48 validation mAP (+ accuracy) on a split of
    the training part only (the test queries are never looked at)."""
    X_fit, X_val, y_fit, y_val = train_test_split(
        X_tr, y_tr, test_size=0.25, stratify=y_tr, random_state=1
    )
    rows, best = [], None
    for lr in grid_lr:
        for epochs in grid_epochs:
            model = SSDH(
                48, **{**params, "learning_rate": lr, "n_epochs": epochs}, random_state=0
            ).fit(X_fit, y_fit)
            r = retrieval(model, X_fit, y_fit, X_val, y_val)
            rows.append((lr, epochs, r["mAP"], r["acc"]))
            key = (r["mAP"] + r["acc"], -epochs)
            if best is None or key > best[0]:
                best = (key, lr, epochs)
            print(
                f"  validation: lr {lr:g}, {epochs} epochs: mAP {r['mAP']:.4f}, "
                f"accuracy {r['acc']:.4f}"
            )
    return best[1], best[2], rows


def fmt(values) -> str:
    values = np.asarray(values)
    return (
        f"{values.mean():.4f}" if len(values) == 1 else f"{values.mean():.4f} ± {values.std():.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bits", type=int, nargs="+", default=[12, 24, 32, 48])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="default: SSDH's (50)")
    parser.add_argument("--lr", type=float, default=None, help="default: SSDH's (1e-3)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (the networks are tiny; 1 is fastest)"
    )
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.bits, args.seeds, args.epochs = [48], [0], args.epochs or 10

    import torch

    torch.set_num_threads(args.threads)
    X_tr, X_te, y_tr, y_te = digits()
    defaults = SSDH().get_params()
    params = dict(
        hidden_layer_sizes=(512,),
        n_epochs=args.epochs or defaults["n_epochs"],
        learning_rate=args.lr or defaults["learning_rate"],
        batch_size=defaults["batch_size"],
        weight_decay=defaults["weight_decay"],
    )
    lines = [
        f"machine: {cpu_model()} | {os.cpu_count()} CPUs | python {platform.python_version()}",
        f"torch {torch.__version__}: threads {torch.get_num_threads()}, device cpu",
        f"data: sklearn digits, pixels / 16, stratified split: {len(X_tr)} train = "
        f"database, {len(X_te)} test = queries (random_state=0)",
    ]
    print("\n".join(lines))
    tuning = []
    if args.tune:
        lr, epochs, tuning = tune(params, X_tr, y_tr, [1e-3, 3e-3, 1e-2], [50, 100])
        params.update(learning_rate=lr, n_epochs=epochs)
    lines.append(
        f"training: hidden_layer_sizes=(512,), Adam lr {params['learning_rate']:g}, "
        f"{params['n_epochs']} epochs, batch {params['batch_size']}, weight_decay "
        f"{params['weight_decay']:g}, alpha = beta = gamma = 1 (SSDH); seeds "
        f"{args.seeds}"
    )
    print(lines[-1])

    table = [
        "| method | bits | mAP | precision@10 | precision@100 | precision r<=2 | "
        "accuracy | fit s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    results = {}
    c2f = {"hamming": [], "c2f": []}
    for bits in args.bits:
        for name, extra in (("SSDH", {}), ("DLBHC", dict(beta=0.0, gamma=0.0))):
            runs, seconds = [], []
            for seed in args.seeds:
                t0 = time.perf_counter()
                model = SSDH(bits, **params, **extra, random_state=seed).fit(X_tr, y_tr)
                seconds.append(time.perf_counter() - t0)
                runs.append(retrieval(model, X_tr, y_tr, X_te, y_te))
                if name == "SSDH" and bits == max(args.bits):
                    f_db, f_q = model.extract_features(X_tr), model.extract_features(X_te)
                    db, q = model.encode(X_tr), model.encode(X_te)
                    _, ham = dh.search(db, q, k=100)
                    _, fine = coarse_to_fine_search(db, f_db, q, f_q, k=100, pool=500)
                    for key, ids in (("hamming", ham), ("c2f", fine)):
                        rel, n_rel = relevance_from_labels(ids, y_te, y_tr)
                        c2f[key].append(mean_average_precision(rel, n_rel, K=100))
            results[name, bits] = runs
            cols = [
                fmt([r[key] for r in runs]) for key in ("mAP", "P@10", "P@100", "P@r<=2", "acc")
            ]
            table.append(
                f"| {name} | {bits} | " + " | ".join(cols) + f" | {np.mean(seconds):.1f} |"
            )
            print(table[-1], flush=True)
    plain = [no_hash_accuracy(torch, params, X_tr, y_tr, X_te, y_te, seed) for seed in args.seeds]
    table.append(
        f"| no hash layer (same MLP + classifier) | - | - | - | - | - | {fmt(plain)} | - |"
    )
    print(table[-1])

    top = max(args.bits)
    ssdh_map = np.mean([r["mAP"] for r in results["SSDH", top]])
    ssdh_acc = np.mean([r["acc"] for r in results["SSDH", top]])
    summary = [
        f"SSDH {top} bits: mAP {ssdh_map:.4f} (target >= 0.90: "
        f"{'met' if ssdh_map >= 0.90 else 'NOT met'}); accuracy {100 * ssdh_acc:.2f} % vs "
        f"{100 * np.mean(plain):.2f} % without the hash layer (difference "
        f"{100 * (ssdh_acc - np.mean(plain)):+.2f} points; target within 1 point: "
        f"{'met' if abs(ssdh_acc - np.mean(plain)) <= 0.01 else 'NOT met'})",
        f"coarse-to-fine at {top} bits (pool 500, 512-d ReLU features): mAP@100 "
        f"{fmt(c2f['c2f'])} vs Hamming ranking mAP@100 {fmt(c2f['hamming'])}",
    ]
    print("\n".join(summary))
    if args.no_write or args.quick:
        return
    with open(RESULTS, "w") as f:
        f.write(f"# bench_ssdh.py ({time.strftime('%Y-%m-%d')})\n\n")
        f.write(
            "Protocol: test queries against the training set as database, relevance = "
            "same digit; mAP over the full Hamming ranking (ties by index); precision "
            "within Hamming radius 2 counts a query with an empty ball as 0; accuracy = "
            "the classifier on the test split. Mean ± std over seeds. Training parameters "
            "are SSDH's defaults unless a validation grid is shown (chosen on a split of "
            "the training part, never on the test queries). 12-bit codes take 2 bytes; "
            "their 4 padding bits are 0 for every item, so distances are over 12 bits.\n\n"
        )
        f.write("\n".join(f"{line}  " for line in lines) + "\n\n")
        if tuning:
            f.write(
                "Validation grid (25 % of the training part, SSDH 48 bits, seed 0):\n\n"
                "| learning rate | epochs | val mAP | val accuracy |\n|---:|---:|---:|---:|\n"
            )
            f.writelines(f"| {lr:g} | {ep} | {m:.4f} | {a:.4f} |\n" for lr, ep, m, a in tuning)
            f.write("\n")
        f.write("\n".join(table) + "\n\n" + "\n\n".join(summary) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
