"""RBM training and encoding: deephash_ext against scikit-learn and torch, same data, one run.

Usage::

    pip install . torch==2.13.0
    python benchmarks/bench_rbm.py            # the full sizes (about 4 minutes)
    python benchmarks/bench_rbm.py --quick    # small sizes, a smoke run

Training: one CD-1 epoch over n x d binary data into h hidden units, minibatches of 100:
deephash_ext's C++ epoch (the kernel behind RBM.fit, without the final offsets pass);
sklearn.neural_network.BernoulliRBM.fit with n_iter=1 (PCD-1, its own algorithm); and a
plain torch CD-1 loop written here (probabilities for reconstructions, sampled hiddens,
momentum and weight decay: the same arithmetic as ours). Each reports seconds and
achieved GFLOP/s (10 * B * d * h flops per minibatch: three products of 2Bdh and the
gradient of 4Bdh), next to the sgemm rates measured in the same run.
Encoding: n descriptors through d -> h1 -> h2 -> bits (threshold at the input means, then
each layer's centring offsets, then pack) against a torch forward pass with the same weights.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time

import deephash_ext as dh
import numpy as np
from _common import best_time, cpu_model  # run as a script: benchmarks/ is on sys.path
from deephash_ext import _core
from deephash_ext._blas import ensure_blas


def best(fn, repeats: int) -> float:
    return best_time(fn, repeats)[0]


def sgemm_rates(size: int, repeats: int, torch) -> dict[str, float]:
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    flops = 2.0 * size**3
    rates = {
        "deephash_ext core (scipy-openblas32, panels)": flops
        / best(lambda: _core._testing.sgemm_nt(a, b), repeats),
        "numpy (its OpenBLAS)": flops / best(lambda: a @ b.T, repeats),
    }
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        rates["torch"] = flops / best(lambda: ta @ tb.T, repeats)
    return rates


def torch_cd1_epoch(torch, V, W, hb, vb, batch, lr, momentum, wd, seed):
    """Plain CD-1 in torch: the same update rule as deephash_ext's kernel."""
    g = torch.Generator().manual_seed(seed)
    dW, dhb, dvb = torch.zeros_like(W), torch.zeros_like(hb), torch.zeros_like(vb)
    order = torch.randperm(len(V), generator=g)
    for start in range(0, len(V), batch):
        v = V[order[start : start + batch]]
        ph0 = torch.sigmoid(v @ W.T + hb)
        h = torch.bernoulli(ph0, generator=g)
        pv = torch.sigmoid(h @ W + vb)
        ph = torch.sigmoid(pv @ W.T + hb)
        n = len(v)
        dW.mul_(momentum).add_((ph0.T @ v - ph.T @ pv), alpha=lr / n).sub_(W, alpha=lr * wd)
        dhb.mul_(momentum).add_((ph0 - ph).mean(0), alpha=lr)
        dvb.mul_(momentum).add_((v - pv).mean(0), alpha=lr)
        W.add_(dW)
        hb.add_(dhb)
        vb.add_(dvb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--d", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--encode-n", type=int, default=100_000)
    parser.add_argument("--encode-layers", type=int, nargs="+", default=[2048, 1024, 64])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="training rounds (interleaved) and encoding repeats; best of each",
    )
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.n, args.d, args.hidden, args.encode_n = 2000, 512, 256, 5000
        args.encode_layers = [256, 128, 64]

    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    dh.set_num_threads(args.threads)
    blas = ensure_blas()
    info = dh.build_info()
    print(f"machine: {cpu_model()} | {os.cpu_count()} CPUs | python {platform.python_version()}")
    print(
        f"deephash_ext {info['version']}: threads {dh.get_num_threads()}, "
        f"SIMD {info['simd_active']}, BLAS {os.path.basename(blas)} "
        "(single-threaded inside deephash_ext's workers)"
    )
    if torch is not None:
        print(f"torch {torch.__version__}: threads {torch.get_num_threads()}")
    import sklearn

    print(f"scikit-learn {sklearn.__version__} (numpy's BLAS)")

    rates = sgemm_rates(2048 if args.quick else 4096, args.repeats, torch)
    print(
        "\nsgemm, square, float32 (GFLOP/s): "
        + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in rates.items())
    )
    peak = max(rates.values())

    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.5, args.d).astype(np.float32)
    V = (rng.random((args.n, args.d), dtype=np.float32) < p).astype(np.float32)
    flops = 10.0 * args.n * args.d * args.hidden
    lr, momentum, wd = 0.01, 0.9, 1e-4
    print(
        f"\nOne CD-1 epoch: {args.n:,} x {args.d} -> {args.hidden}, batch {args.batch} "
        f"({flops / 1e9:.0f} GFLOP)"
    )
    print("| implementation | seconds | GFLOP/s | % of best sgemm | time vs deephash_ext |")
    print("|---|---:|---:|---:|---:|")

    def ours(hashing_reg=0.0):
        W = rng.normal(0, 0.01, (args.hidden, args.d)).astype(np.float32)
        arrays = [
            W,
            np.zeros(args.hidden, np.float32),
            np.zeros(args.d, np.float32),
            np.zeros_like(W),
            np.zeros(args.hidden, np.float32),
            np.zeros(args.d, np.float32),
        ]
        order = np.random.default_rng(1).permutation(args.n).astype(np.int64)
        t0 = time.perf_counter()
        _core.rbm_cd_train(
            *arrays,
            V,
            order,
            batch_size=args.batch,
            learning_rate=lr,
            momentum=momentum,
            weight_decay=wd,
            hashing_reg=hashing_reg,
            cd_k=1,
            seed=7,
            first_step=0,
        )
        return time.perf_counter() - t0

    runs = {"deephash_ext (C++ CD-1 epoch)": ours}
    if torch is not None:
        Vt = torch.from_numpy(V)

        def torch_run():
            W = torch.from_numpy(rng.normal(0, 0.01, (args.hidden, args.d)).astype(np.float32))
            hb, vb = torch.zeros(args.hidden), torch.zeros(args.d)
            t0 = time.perf_counter()
            torch_cd1_epoch(torch, Vt, W, hb, vb, args.batch, lr, momentum, wd, 0)
            return time.perf_counter() - t0

        runs["torch CD-1 loop"] = torch_run
    if not args.no_sklearn:
        from sklearn.neural_network import BernoulliRBM

        def sklearn_run():
            model = BernoulliRBM(
                n_components=args.hidden,
                batch_size=args.batch,
                n_iter=1,
                learning_rate=lr,
                random_state=0,
            )
            t0 = time.perf_counter()
            model.fit(V)
            return time.perf_counter() - t0

        runs["scikit-learn BernoulliRBM (PCD-1)"] = sklearn_run
    # The floor that BLAS sets: the same four products per minibatch (W v^T, h W, W pv^T and
    # the K = 2B gradient), nothing else, in numpy's own multi-threaded OpenBLAS.
    a_ = np.empty((args.hidden, args.batch), np.float32)
    b_ = np.empty((args.batch, args.d), np.float32)
    g_ = np.empty((args.hidden, args.d), np.float32)
    W_ = rng.normal(0, 0.01, (args.hidden, args.d)).astype(np.float32)
    h_ = (rng.random((args.batch, args.hidden)) < 0.5).astype(np.float32)
    p_ = rng.random((args.hidden, 2 * args.batch), dtype=np.float32)
    x_ = rng.random((2 * args.batch, args.d), dtype=np.float32)

    def products_alone():
        t0 = time.perf_counter()
        for start in range(0, args.n, args.batch):
            v = V[start : start + args.batch]
            np.matmul(W_, v.T, out=a_)
            np.matmul(h_, W_, out=b_)
            np.matmul(W_, v.T, out=a_)
            np.matmul(p_, x_, out=g_)
        return time.perf_counter() - t0

    runs["the four products alone (numpy's OpenBLAS, its threads)"] = products_alone
    # Interleaved rounds (each implementation once per round), best round of each: a slow
    # spell of the shared machine then hits every implementation alike.
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(run())
    t_ours = min(times["deephash_ext (C++ CD-1 epoch)"])
    rows = [(name, min(t)) for name, t in times.items()]
    rows.insert(1, ("deephash_ext, hashing_reg = 0.1 (rank targets each minibatch)", ours(0.1)))
    for name, t in rows:
        print(
            f"| {name} | {t:.2f} | {flops / t / 1e9:.0f} | {100 * flops / t / peak:.0f} % | "
            f"{t / t_ours:.2f}x |"
        )
    ours_rounds = times["deephash_ext (C++ CD-1 epoch)"]
    print(
        "\nPer round (time / deephash_ext's time in the same round): "
        + "; ".join(
            f"{name.split(' (')[0]} " + " ".join(f"{t / o:.2f}x" for t, o in zip(ts, ours_rounds))
            for name, ts in times.items()
            if ts is not ours_rounds
        )
    )

    # ---------------------------------------------------------------- encoding
    sizes = [args.d, *args.encode_layers]
    X = rng.standard_normal((args.encode_n, args.d), dtype=np.float32)
    mu = X.mean(axis=0)
    weights = [rng.normal(0, 0.05, (o, i)).astype(np.float32) for i, o in itertools.pairwise(sizes)]
    offsets = [rng.normal(0, 0.1, o).astype(np.float32) for o in sizes[1:]]
    enc_flops = 2.0 * args.encode_n * sum(i * o for i, o in itertools.pairwise(sizes))
    print(
        f"\nEncoding {args.encode_n:,} x {' -> '.join(map(str, sizes))} bits "
        f"({enc_flops / 1e9:.0f} GFLOP)"
    )
    print("| implementation | seconds | GFLOP/s | codes identical |")
    print("|---|---:|---:|:---:|")
    ours_codes = _core.encode_layers(X, mu, weights, offsets)
    t_enc = best(lambda: _core.encode_layers(X, mu, weights, offsets), args.repeats)
    print(
        f"| deephash_ext encode_layers (blocks of 512 rows) | {t_enc:.2f} | "
        f"{enc_flops / t_enc / 1e9:.0f} | - |"
    )
    if torch is not None:
        Xt, mut = torch.from_numpy(X), torch.from_numpy(mu)
        Wt = [torch.from_numpy(w) for w in weights]
        Ot = [torch.from_numpy(o) for o in offsets]

        def torch_encode():
            z = (Xt > mut).float()
            for w, o in zip(Wt, Ot):
                z = ((z @ w.T) > o).float()
            return np.packbits(z.numpy().astype(bool), axis=1, bitorder="little")

        torch_codes = torch_encode()
        t_torch = best(torch_encode, args.repeats)
        agree = float(np.mean(np.unpackbits(torch_codes ^ ours_codes)) == 0)
        mismatch = np.unpackbits(torch_codes ^ ours_codes).mean()
        same = "yes" if agree else f"{mismatch:.2e} of bits differ"
        print(
            f"| torch forward (whole matrix per layer) | {t_torch:.2f} | "
            f"{enc_flops / t_torch / 1e9:.0f} | {same} |"
        )
        print(f"\ndeephash_ext encoding is {t_torch / t_enc:.2f}x torch")


if __name__ == "__main__":
    main()
