"""The ``deephash`` command line (also ``python -m deephash_ext``).

* ``deephash demo``: the main job. Builds (or loads from the cache) the paper-shaped
  benchmark of :func:`deephash_ext.datasets.load_retrieval_benchmark` (``--scale demo``),
  trains DeepHash and DeepHash+ (``DeepHash.for_bits``) at 64, 256 and 1024 bits next to
  LSH, ITQ, BPBC, PQ and the uncompressed Fisher Vector, prints a table and the paper's
  claims, and writes a plot of recall against bits.
* ``deephash fit`` / ``encode`` / ``search``: train a model on descriptors, encode
  descriptors to packed codes, search codes, with .npy / .fvecs files.
* ``deephash search-demo``: exact search on generated codes with planted near-duplicates.
* ``deephash index build|add|remove|search|info``: a :class:`deephash_ext.BinaryIndex`
  file (``.dhx``) built from codes (.npy), grown, pruned, searched (top-k or radius) and
  described. Every change is written atomically over the index file.

Exit status (also in ``deephash --help``):

* 0: success.
* 1: a user error found while running: a missing, unreadable, corrupt or foreign input file,
  an output path that cannot be written (a directory, a read-only file or folder, a missing
  folder), a value the library rejects, a network too large for this machine's memory, a
  missing optional dependency. One line on stderr, ``deephash: error: ...``, naming the path
  or the argument; no traceback, and no output file is written.
* 2: a command-line usage error (unknown command or option, a value that is not a number),
  reported by :mod:`argparse` in its own style (usage line, then ``deephash ...: error: ...``).
* 130: interrupted (Ctrl-C): one line, ``deephash: interrupted``; outputs are written
  atomically, so an interrupted command leaves no partial file.

When stdout is closed early (``deephash search ... | head``) the command stops quietly with
status 1, as Python's own advice for a broken pipe has it.

Only the exception types the library documents for bad input are reported this way (in one
place, :func:`main`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._io import atomic_write, read_npy
from ._optional import require
from ._runtime import build_info
from ._search import range_search, search
from .codes import binarize

EPILOG = """exit status: 0 success; 1 error (bad or missing file, unwritable output, rejected value,
too little memory, missing dependency: one line on stderr, 'deephash: error: ...'); 2 usage
error (argparse's message); 130 interrupted (Ctrl-C; no partial output file is left)."""

# What main() reports as one line (exit 1): the exception types the library documents for
# bad input and for its environment. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, TypeError, OverflowError, OSError, MemoryError, ImportError)


# ---------------------------------------------------------------------- user errors
def _one_line(error: BaseException) -> str:
    """The message of a user error as one line (no path of ours, no traceback)."""
    if (
        isinstance(error, OSError)
        and error.strerror
        and error.filename is not None
        and error.filename2 is None
    ):
        text = f"{os.fsdecode(error.filename)}: {error.strerror}"
    else:
        text = str(error)
    if isinstance(error, MemoryError):
        text = f"out of memory: {text}" if text else "out of memory"
    text = " ".join(text.split())  # e.g. scikit-learn's multi-line advice
    return text or type(error).__name__


def _check_output(path: str, name: str) -> None:
    """Fail before any work if ``path`` cannot become a file written by this command.

    Raises
    ------
    ValueError
        If ``path`` is empty.
    IsADirectoryError
        If ``path`` is a directory.
    FileNotFoundError
        If its folder does not exist.
    PermissionError
        If ``path`` is an existing read-only file (the atomic rename would replace it
        regardless of its mode; like ``cp``, the CLI refuses) or its folder is not writable.
    """
    if not path:
        raise ValueError(f"{name} path is empty")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"{name} {path!r} is a directory, not a file")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{name} {path!r}: no such folder {folder!r}")
    if os.path.exists(path) and (not os.access(path, os.W_OK) or not os.stat(path).st_mode & 0o222):
        raise PermissionError(f"{name} {path!r} is a read-only file")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"{name} {path!r}: the folder {folder!r} is not writable")


def _check_output_folder(path: str, name: str) -> None:
    """Fail before any work if ``path`` cannot be (or become) a writable folder."""
    if not path:
        raise ValueError(f"{name} path is empty")
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"{name} {path!r} exists and is not a folder")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):  # the nearest existing folder must be writable
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{name} {path!r}: {existing!r} is not a writable folder")


def _physical_memory() -> int | None:
    """Bytes of physical memory, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def _check_network_fits(sizes: tuple[int, ...], n_samples: int, n_features: int) -> None:
    """Reject ``--layers`` whose training cannot fit in this machine's memory, before any
    allocation. The bound is a floor of what ``DeepHash.fit`` needs: every layer's float32
    weights, the float64 initial draw of the largest, and one float32 activation matrix of
    the widest layer. (Sizes the library rejects anyway are left to its message.)"""
    memory = _physical_memory()
    if memory is None or n_features < 1 or any(s < 1 for s in sizes):
        return
    fan = [a * b for a, b in zip((n_features, *sizes), sizes)]
    need = 4 * sum(fan) + 8 * max(fan) + 4 * n_samples * max(sizes)
    if need > memory:
        raise ValueError(
            f"--layers {','.join(map(str, sizes))} on {n_samples} x {n_features} "
            f"descriptors needs at least {_bytes(need)}, more than this "
            f"machine's {_bytes(memory)} of memory"
        )


def _bytes(n: int) -> str:
    """``n`` bytes for people (exact integers in, so any size works)."""
    if n >= 1024**7:
        return "more than 1024 EiB"
    power = 0
    while power < 6 and n >= 1024 ** (power + 1):
        power += 1
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    return f"{n} B" if power == 0 else f"{n / 1024**power:.3g} {units[power]}"


# ---------------------------------------------------------------------- the demo
def _ranking_report(indices, data, seconds, scheme, bits, extra=None):
    from .metrics import (
        average_precision,
        recall_per_query,
        relevance_from_labels,
        retrieval_report,
    )

    report = retrieval_report(indices, data.y_query, data.y_db, recall_ranks=(10, 100))
    relevance, n_relevant = relevance_from_labels(indices, data.y_query, data.y_db)
    row = {
        "scheme": scheme,
        "bits": bits,
        "mAP": report["mAP"],
        "4xrecall@4": report["4xrecall@4"],
        "recall@10": report["recall@10"],
        "recall@100": report["recall@100"],
        "encode_s": seconds,
        # each query's AP and recall@10, for the intervals of the claims (not in results.json)
        "per_query": {
            "mAP": average_precision(relevance, n_relevant),
            "recall@10": recall_per_query(relevance, n_relevant, 10),
        },
    }
    row.update(extra or {})
    return row


def _hamming_row(encode, data, scheme, bits):
    """Retrieval figures of one encoder, and its validation pair AUC (paper Fig. 5a) when
    ``data`` has validation pairs."""
    t0 = time.perf_counter()
    db, queries = encode(data.X_db), encode(data.X_query)
    seconds = time.perf_counter() - t0
    _, indices = search(db, queries, k=len(db))
    extra = {}
    if "pairs_val" in data:
        from .selection import pair_auc

        extra["val_auc"] = pair_auc(encode(data.X_val), data.pairs_val, data.labels_val)
    return _ranking_report(indices, data, seconds, scheme, bits, extra)


def _print_row(row):
    bits = "float" if row["bits"] is None else row["bits"]
    print(
        f"| {row['scheme']:<28} | {bits!s:>5} | {row['mAP']:.3f} | {row['4xrecall@4']:.2f} | "
        f"{row['recall@10']:.3f} | {row['recall@100']:.3f} | {row['encode_s']:7.2f} |",
        flush=True,
    )


def _demo(args) -> int:
    matplotlib = require("matplotlib", "deephash demo (the recall plot)", "demo")
    matplotlib.use("Agg")
    import copy

    import matplotlib.pyplot as plt

    from .baselines import BPBC, ITQ, LSH, PQ
    from .datasets import load_retrieval_benchmark
    from .deephash import DeepHash
    from .metrics import rank_by_distance

    _check_output_folder(args.out, "--out")
    started = time.perf_counter()
    info = build_info()
    print(
        f"deephash_ext {info['version']} | SIMD {info['simd_active']} | "
        f"{info['num_threads']} threads",
        flush=True,
    )
    data = load_retrieval_benchmark(args.scale, random_state=args.seed, verbose=not args.quiet)
    print(data.description, flush=True)
    print(
        f"train {data.X_train.shape[0]} descriptors ({len(data.pairs_train)} matching pairs) "
        f"from {len(data.photos_train)} photos; validation {len(data.pairs_val)} pairs from "
        f"{len(data.photos_val)} others; test {len(data.X_query)} queries against "
        f"{len(data.X_db)} database items (4 relevant each) from {len(data.photos_eval)} more; "
        f"data ready after {time.perf_counter() - started:.0f} s\n",
        flush=True,
    )
    print("| scheme                       |  bits |  mAP  | 4xR@4 | R@10  | R@100 | encode s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = []

    # Uncompressed Fisher Vector: L2 ranking (ties by index).
    t0 = time.perf_counter()
    sq = (
        (data.X_query.astype(np.float64) ** 2).sum(1)[:, None]
        - 2.0 * (data.X_query.astype(np.float64) @ data.X_db.astype(np.float64).T)
        + (data.X_db.astype(np.float64) ** 2).sum(1)[None, :]
    )
    rows.append(
        _ranking_report(
            rank_by_distance(sq),
            data,
            time.perf_counter() - t0,
            "Fisher Vector (float32, L2)",
            None,
        )
    )
    _print_row(rows[-1])

    # The input of the paper's DeepHash networks: the descriptor binarised at the training
    # means (docs/algorithms.md, sec. 2.1).
    means = data.X_train.mean(axis=0)
    n_features = data.X_train.shape[1]
    rows.append(_hamming_row(lambda X: binarize(X, means), data, "FV > training means", n_features))
    _print_row(rows[-1])

    seed = args.seed
    for bits in args.bits:
        for name, model in (
            ("LSH", LSH(n_bits=bits, random_state=seed)),
            ("ITQ", ITQ(n_bits=bits, random_state=seed)),
            ("BPBC", BPBC(n_bits=bits, random_state=seed)),
        ):
            model.fit(data.X_train)
            rows.append(_hamming_row(model.encode, data, name, bits))
            _print_row(rows[-1])
        if len(data.X_train) < 256:  # PQ trains 256 centroids per sub-quantiser
            print(f"| PQ skipped: {len(data.X_train)} training rows, it needs 256 |", flush=True)
            continue
        pq = PQ(n_bits=bits, random_state=seed).fit(data.X_train)
        t0 = time.perf_counter()
        db_codes = pq.encode(data.X_db)
        seconds = time.perf_counter() - t0
        _, indices = pq.search(db_codes, data.X_query, k=len(db_codes))
        rows.append(_ranking_report(indices, data, seconds, "PQ (ADC, not binary)", bits))
        _print_row(rows[-1])

    # DeepHash as model selection chose it (DeepHash.for_bits): pre-trained, then fine-tuned
    # with default arguments (spectral, docs/algorithms.md sec. 2.8). Code lengths with the
    # same hidden width share the pre-trained first layer (same data, parameters and seed).
    pretrained: list[Any] = []
    for bits in args.bits:
        t0 = time.perf_counter()
        model = DeepHash.for_bits(bits, random_state=seed, verbose=not args.quiet)
        reuse = next(
            (m for m in pretrained if m.components_[0].shape[0] == model.hidden_layer_sizes[0]),
            None,
        )
        model.fit(data.X_train, reuse=reuse)
        pretrained.append(model)
        net = "-".join(str(s) for s in (n_features, *model.hidden_layer_sizes))
        fit_s = time.perf_counter() - t0
        rows.append(dict(_hamming_row(model.encode, data, f"DeepHash {net}", bits), fit_s=fit_s))
        _print_row(rows[-1])
        t0 = time.perf_counter()
        plus = copy.deepcopy(model).finetune(data.X_train, data.pairs_train)
        fit_s += time.perf_counter() - t0
        rows.append(dict(_hamming_row(plus.encode, data, f"DeepHash+ {net}", bits), fit_s=fit_s))
        _print_row(rows[-1])

    # Fig. 6a: the paper's single layer d-64 (binary input), with and without the hashing
    # regulariser.
    ablation = []
    for reg in (0.0, 0.2):
        single = DeepHash(
            (64,), n_epochs=10, hashing_reg=reg, learning_rate=0.01, random_state=seed
        ).fit(data.X_train)
        ablation.append(
            _hamming_row(single.encode, data, f"{n_features}-64, hashing_reg={reg}", 64)
        )
        _print_row(ablation[-1])

    print(
        "\nValidation ROC AUC of the Hamming distance (paper Fig. 5a; validation photos, never "
        "the test photos):"
    )
    for row in rows:
        if "val_auc" in row and row["bits"] in args.bits:
            took = f"  (trained in {row['fit_s']:.0f} s)" if "fit_s" in row else ""
            print(f"  {row['scheme']:<28} {row['bits']:>5} bits: {row['val_auc']:.4f}{took}")

    _print_claims(rows, ablation)

    os.makedirs(args.out, exist_ok=True)
    plot_path = os.path.join(args.out, "recall_vs_bits.png")
    figure, axis = plt.subplots(figsize=(7, 4.5))
    schemes = [r["scheme"].split(" ")[0] for r in rows if r["bits"] in args.bits]
    for scheme in dict.fromkeys(schemes):
        points = [
            (r["bits"], r["recall@10"])
            for r in rows
            if r["bits"] in args.bits and r["scheme"].split(" ")[0] == scheme
        ]
        axis.plot(*zip(*points), marker="o", label=scheme)
    axis.axhline(
        rows[0]["recall@10"], color="black", linestyle="--", label="Fisher Vector (uncompressed)"
    )
    axis.set_xscale("log", base=2)
    axis.set_xticks(args.bits, [str(b) for b in args.bits])
    axis.set_xlabel("bits per code")
    axis.set_ylabel("recall@10")
    axis.set_title(f"deephash_ext demo: instance retrieval on bundled photos ({args.scale})")
    axis.legend(fontsize=8)
    figure.tight_layout()
    atomic_write(plot_path, lambda handle: figure.savefig(handle, format="png", dpi=120))
    plt.close(figure)
    results_path = os.path.join(args.out, "results.json")
    results = json.dumps(
        {
            "rows": [_without_per_query(r) for r in rows],
            "ablation": [_without_per_query(r) for r in ablation],
            "args": vars(args),
        },
        indent=1,
    )
    atomic_write(results_path, lambda handle: handle.write(results.encode("utf-8")))
    print(
        f"\nplot: {plot_path}\nresults: {results_path}\ntotal {time.perf_counter() - started:.0f} s"
    )
    return 0


def _without_per_query(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key != "per_query"}


def _comparison(plus, other, peer: str) -> str:
    """The verdict "beats PEER" (both point margins positive) or "does not beat PEER", the
    mAP and recall@10 margins with their intervals, and whether the test queries resolve a
    win."""
    from .metrics import paired_bootstrap_interval

    parts, resolved = [], True
    for key in ("mAP", "recall@10"):
        d, low, high = paired_bootstrap_interval(plus["per_query"][key], other["per_query"][key])
        parts.append(f"{key} {d:+.3f} [{low:+.3f}, {high:+.3f}]")
        resolved = resolved and low > 0
    beats = plus["mAP"] > other["mAP"] and plus["recall@10"] > other["recall@10"]
    text = f"{'beats' if beats else 'does not beat'} {peer}: " + ", ".join(parts)
    return text + ("; not resolved at 95 %" if beats and not resolved else "")


def _print_claims(rows, ablation) -> None:
    """The paper's claims (docs/algorithms.md, sec. 2.9), checked on the rows just measured."""

    def find(prefix, bits):
        return next(
            (r for r in rows if r["scheme"].split(" ")[0] == prefix and r["bits"] == bits), None
        )

    fv = rows[0]
    print(
        "\nThe paper's claims on this data (recall@10 unless stated; [low, high]: 95 % paired "
        "bootstrap interval of a margin over the test queries):"
    )
    if len(ablation) == 2:
        off, on = ablation
        print(
            f"  hashing regularisation at 64 bits (single layer): {off['recall@10']:.3f} -> "
            f"{on['recall@10']:.3f} ({100 * (on['recall@10'] - off['recall@10']):+.1f} points;"
            f" paper: about +10)"
        )
    bits_seen = sorted({r["bits"] for r in rows if r["bits"]})
    for bits in bits_seen:
        before, plus = find("DeepHash", bits), find("DeepHash+", bits)
        if before and plus:
            print(
                f"  {bits} bits: fine-tuning {before['recall@10']:.3f} -> {plus['recall@10']:.3f}"
                f" (mAP {before['mAP']:.3f} -> {plus['mAP']:.3f})"
            )
    for bits in bits_seen:
        plus = find("DeepHash+", bits)
        if not plus:
            continue
        for peer in ("ITQ", "LSH", "BPBC", "PQ"):
            other = find(peer, bits)
            if other:
                print(f"  {bits} bits: DeepHash+ {_comparison(plus, other, peer)}")
    plus = find("DeepHash+", 256)
    if plus:
        gap = 100 * (fv["mAP"] - plus["mAP"])
        print(
            f"  256-bit DeepHash+ mAP {plus['mAP']:.3f} vs uncompressed FV {fv['mAP']:.3f}: "
            f"{gap:.1f} points below ({'within' if gap <= 5 else 'not within'} 5 points)"
        )


# ---------------------------------------------------------------------- file commands
def _fit(args) -> int:
    from .datasets import load_descriptors
    from .deephash import DeepHash

    X = load_descriptors(args.input)
    _check_output(args.model, "model")
    sizes = tuple(args.layers)
    _check_network_fits(sizes, X.shape[0], X.shape[1])
    model = DeepHash(
        sizes,
        n_epochs=args.epochs,
        hashing_reg=args.hashing_reg,
        learning_rate=args.learning_rate,
        random_state=args.seed,
        verbose=not args.quiet,
        input_threshold=args.input_threshold,
    ).fit(X)
    model.save(args.model)
    print(
        f"trained {X.shape[1]}-{'-'.join(map(str, sizes))} on {len(X)} descriptors -> {args.model}"
    )
    return 0


def _encode(args) -> int:
    from .datasets import load_descriptors
    from .deephash import DeepHash

    model = DeepHash.load(args.model)
    X = load_descriptors(args.input)
    _check_output(args.output, "output")
    codes = model.encode(X, layer=args.layer)
    atomic_write(args.output, lambda handle: np.save(handle, codes))
    print(f"{len(codes)} codes of {codes.shape[1] * 8} bits -> {args.output}")
    return 0


def _search(args) -> int:
    database = read_npy(args.database, kind="database (codes .npy)")
    queries = read_npy(args.queries, kind="queries (codes .npy)")
    if args.output:
        _check_output(args.output, "--output")
    distances, indices = search(database, queries, k=args.k)
    if queries.ndim == 1:  # one query saved as a 1-D array: the API's answer is 1-D too
        distances, indices = distances[None], indices[None]
    if args.output:
        atomic_write(
            args.output, lambda handle: np.savez(handle, distances=distances, indices=indices)
        )
        print(f"{len(indices)} queries, top {args.k} -> {args.output}")
    else:
        for q in range(len(indices)):
            print(q, " ".join(f"{i}:{d}" for i, d in zip(indices[q], distances[q])))
    return 0


def _read_ids(path: str | None) -> np.ndarray | None:
    return None if path is None else read_npy(path, kind="ids (integers .npy)")


def _index_build(args) -> int:
    from .index import BinaryIndex

    codes = read_npy(args.codes, kind="codes (.npy, uint8)")
    ids = _read_ids(args.ids)
    _check_output(args.index, "index")
    if codes.ndim != 2:
        raise ValueError(f"codes {args.codes!r} must be 2-D (n, code_bytes), got {codes.shape}")
    index = BinaryIndex(8 * codes.shape[1], id_dtype=args.id_dtype, method=args.method)
    index.add(codes, ids)
    index.save(args.index)  # with MIH tables unless --method flat
    print(f"{len(index)} codes of {index.n_bits} bits -> {args.index}")
    return 0


def _update_index(path: str, input_path: str, kind: str, change: Any) -> tuple[Any, Any]:
    """Load the index at ``path``, apply ``change(index, array read from input_path)``, and
    write it back atomically (nothing is written when anything fails); the index is returned
    with what ``change`` returned."""
    from .index import BinaryIndex

    index = BinaryIndex.load(path)
    array = read_npy(input_path, kind=kind)
    _check_output(path, "index")
    result = change(index, array)
    index.save(path)
    return index, result


def _index_add(args) -> int:
    index, _ = _update_index(
        args.index,
        args.codes,
        "codes (.npy, uint8)",
        lambda index, codes: index.add(codes, _read_ids(args.ids), upsert=args.upsert),
    )
    print(f"{len(index)} codes in {args.index}")
    return 0


def _index_remove(args) -> int:
    def remove(index, ids):
        removed = index.remove(ids)
        if args.compact:
            index.compact()
        return removed

    index, removed = _update_index(args.index, args.ids, "ids (integers .npy)", remove)
    print(f"removed {removed}; {len(index)} codes in {args.index}")
    return 0


def _index_search(args) -> int:
    from .index import BinaryIndex

    index = BinaryIndex.load(args.index, mmap=True)  # searches MIH tables when it has them
    queries = read_npy(args.queries, kind="queries (codes .npy)")
    if args.output:
        _check_output(args.output, "--output")
    if args.radius is not None:
        lims, distances, ids = index.range_search(queries, args.radius)
        results: dict[str, Any] = {"lims": lims, "distances": distances, "ids": ids}
        rows = [
            (ids[lims[q] : lims[q + 1]], distances[lims[q] : lims[q + 1]])
            for q in range(len(lims) - 1)
        ]
    else:
        distances, ids = index.search(queries, args.k)
        if distances.ndim == 1:
            distances, ids = distances[None], ids[None]
        results = {"distances": distances, "ids": ids}
        rows = list(zip(ids, distances))
    if args.output:
        atomic_write(args.output, lambda handle: np.savez(handle, **results))
        print(f"{len(rows)} queries -> {args.output}")
    else:
        for q, (found, dist) in enumerate(rows):
            print(q, " ".join(f"{i}:{d}" for i, d in zip(found, dist)))
    return 0


def _index_info(args) -> int:
    from .index import BinaryIndex

    index = BinaryIndex.load(args.index, mmap=True, verify=args.verify)
    info = {
        "path": args.index,
        "bytes": os.path.getsize(args.index),
        "n_bits": index.n_bits,
        "len": len(index),
        "n_removed": index.n_removed,
        "id_dtype": index.id_dtype,
        "mih_tables": index._snapshot.mih is not None,
        "next_id": index.next_id,
        "checksums": "verified" if args.verify else "not checked (--verify reads every byte)",
    }
    print(json.dumps(info, indent=1))
    return 0


def _search_demo(args) -> int:
    rng = np.random.default_rng(args.seed)
    n, n_bits, n_queries, max_flips = args.n, args.bits, args.queries, args.max_flips
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
    in_ball = float(np.mean([t in hits[lims[i] : lims[i + 1]] for i, t in enumerate(targets)]))
    print(
        f"{n:,} random {n_bits}-bit codes, {n_queries} queries = database codes with "
        f"0..{max_flips} bits flipped"
    )
    print(
        f"search(k=10): {t_knn * 1e3:.2f} ms, planted code first for {top1:.1%} of queries "
        f"(median top-1 distance {np.median(distances[:, 0]):.0f})"
    )
    print(
        f"range_search(max_distance={max_flips}): {t_range * 1e3:.2f} ms, planted code found "
        f"for {in_ball:.1%} of queries, {len(hits) / n_queries:.2f} hits per query"
    )
    return 0 if in_ball == 1.0 else 1


_INDEX_HANDLERS = {
    "build": _index_build,
    "add": _index_add,
    "remove": _index_remove,
    "search": _index_search,
    "info": _index_info,
}


def _bits_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated integers, got {text!r}"
        ) from None
    if any(v < 8 or v % 8 or v > 4096 for v in values):
        raise argparse.ArgumentTypeError(f"must be multiples of 8 from 8 to 4096, got {text!r}")
    return values


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated integers, got {text!r}"
        ) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deephash",
        description="deephash_ext command line",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the whole pipeline on the bundled-photo retrieval set")
    demo.add_argument(
        "--scale",
        choices=("tiny", "demo", "paper"),
        default="demo",
        help="benchmark size (load_retrieval_benchmark): demo takes minutes, paper about an hour",
    )
    demo.add_argument("--bits", type=_bits_list, default=[64, 256, 1024])
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="deephash_demo", help="folder for the plot and results")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")

    fit = sub.add_parser("fit", help="train DeepHash on descriptors (.npy / .fvecs)")
    fit.add_argument("input")
    fit.add_argument("model", help="output model file (.npz)")
    fit.add_argument(
        "--layers", type=_int_list, default="4096,256", help="hidden layer sizes, comma-separated"
    )
    fit.add_argument("--epochs", type=int, default=30)
    fit.add_argument("--hashing-reg", type=float, default=0.0)
    fit.add_argument("--learning-rate", type=float, default=0.001)
    fit.add_argument(
        "--input-threshold",
        choices=("mean", "zero"),
        default="mean",
        help="binarise the input at the training means (the paper) or at zero",
    )
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--quiet", action="store_true")

    enc = sub.add_parser("encode", help="descriptors (.npy / .fvecs) -> packed codes (.npy)")
    enc.add_argument("model")
    enc.add_argument("input")
    enc.add_argument("output")
    enc.add_argument("--layer", type=int, default=-1)

    srch = sub.add_parser("search", help="exact Hamming top-k of query codes in database codes")
    srch.add_argument("database", help="codes (.npy, uint8)")
    srch.add_argument("queries", help="codes (.npy, uint8; one query may be saved 1-D)")
    srch.add_argument("-k", type=int, default=10)
    srch.add_argument("--output", help="write distances and indices to this .npz")

    planted = sub.add_parser("search-demo", help="find planted near-duplicates in random codes")
    planted.add_argument("--n", type=int, default=1_000_000, help="database codes")
    planted.add_argument("--bits", type=int, default=256, help="bits per code (multiple of 8)")
    planted.add_argument("--queries", type=int, default=1000)
    planted.add_argument("--max-flips", type=int, default=8)
    planted.add_argument("--seed", type=int, default=0)

    index = sub.add_parser("index", help="build, grow, prune, search and describe a .dhx index")
    actions = index.add_subparsers(dest="index_command", required=True)
    build = actions.add_parser("build", help="codes (.npy) -> a new index file")
    build.add_argument("codes", help="codes (.npy, uint8, (n, code_bytes))")
    build.add_argument("index", help="the index file to write (.dhx)")
    build.add_argument("--ids", help="ids (.npy, integers; default 0..n-1)")
    build.add_argument("--id-dtype", choices=("int64", "uint64"), default="int64")
    build.add_argument(
        "--method",
        choices=("flat", "mih", "auto"),
        default="flat",
        help="mih / auto: build multi-index hashing tables and save them with the index",
    )
    grow = actions.add_parser("add", help="append codes (.npy) to an index file")
    grow.add_argument("index")
    grow.add_argument("codes")
    grow.add_argument("--ids", help="ids (.npy; default: after the largest id so far)")
    grow.add_argument("--upsert", action="store_true", help="replace the codes of present ids")
    prune = actions.add_parser("remove", help="remove the ids (.npy) from an index file")
    prune.add_argument("index")
    prune.add_argument("ids")
    prune.add_argument("--compact", action="store_true", help="also drop removed rows now")
    find = actions.add_parser("search", help="top-k (or radius) search of query codes (.npy)")
    find.add_argument("index")
    find.add_argument("queries", help="codes (.npy, uint8; one query may be saved 1-D)")
    find.add_argument("-k", type=int, default=10)
    find.add_argument("--radius", type=int, help="every code within this distance instead")
    find.add_argument("--output", help="write the results to this .npz")
    describe = actions.add_parser("info", help="what an index file holds (JSON)")
    describe.add_argument("index")
    describe.add_argument("--verify", action="store_true", help="check every checksum")

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``deephash`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``sys.argv[1:]`` if None.

    Returns
    -------
    status : int
        0 on success, 1 after a user error (one line on stderr), 130 when interrupted.

    Raises
    ------
    SystemExit
        With status 2 on a usage error (argparse's message), or 0 after ``--help``.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "search-demo" and (
        args.bits <= 0
        or args.bits % 8
        or args.n < 10
        or not 0 < args.queries <= args.n
        or not 0 <= args.max_flips <= args.bits
        or args.seed < 0
    ):
        parser.error(
            "need --bits a positive multiple of 8, --n >= 10, 0 < --queries <= --n, "
            "0 <= --max-flips <= --bits, --seed >= 0"
        )
    handlers = {
        "demo": _demo,
        "fit": _fit,
        "encode": _encode,
        "search": _search,
        "search-demo": _search_demo,
        "index": lambda a: _INDEX_HANDLERS[a.index_command](a),
    }
    # The one place where user errors become one line (see the module docstring).
    try:
        status = handlers[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at exit
        return status
    except KeyboardInterrupt:
        print("deephash: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (deephash search ... | head): stop quietly
        _silence_stdout()
        return 1
    except USER_ERRORS as error:
        print(f"deephash: error: {_one_line(error)}", file=sys.stderr)
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (e.g. captured)
        pass
