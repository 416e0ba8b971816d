"""Model selection by ROC AUC on validation pairs, as in the DeepHash paper.

The paper (sec. 4.2, Fig. 5a) picks the network for each bit budget by the ROC AUC of
Hamming distance over matching / non-matching validation pairs (SMVS), never on the
retrieval data, and finds that AUC predicts the retrieval ordering. Here:
:func:`pair_auc` scores any encoder on such pairs, and :func:`select_architecture`
grows the network greedily: a candidate is the input width halved ``m`` times, then the
code layer (``d-b``, ``d-d/2-b``, ``d-d/2-d/4-b``, ...), and ``m`` grows while the AUC
improves. Shared first layers are trained once (``DeepHash.fit(reuse=...)``).

With spectral fine-tuning (``finetune_method="spectral"``, which needs two layers) the
candidates are ``d-w-b`` with the hidden width ``w = 2b, 4b, 8b, ...`` (below ``d``),
each fine-tuned on the training pairs before it is scored, and ``w`` doubles while the
AUC improves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._validation import check_codes, check_int
from .metrics import roc_auc_pairs

__all__ = ["pair_auc", "select_architecture"]


def _pair_distances(codes: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Hamming distance between the two codes of each pair, int64."""
    return np.unpackbits(codes[pairs[:, 0]] ^ codes[pairs[:, 1]], axis=1).sum(
        axis=1, dtype=np.int64
    )


def _check_pairs(pairs: object, labels: object, n: int) -> tuple[np.ndarray, np.ndarray]:
    P = np.asarray(pairs)
    if P.dtype.kind not in "iu" or P.ndim != 2 or P.shape[1] != 2 or len(P) == 0:
        raise ValueError(f"pairs must be integers of shape (n_pairs, 2), got {P.dtype} {P.shape}")
    if P.min() < 0 or P.max() >= n:
        raise ValueError(f"pairs must index the {n} rows of X_val")
    y = np.asarray(labels)
    if y.shape != (len(P),):
        raise ValueError(f"labels must have shape ({len(P)},), got {y.shape}")
    return P.astype(np.int64), y


def pair_auc(codes: np.ndarray, pairs: object, labels: object) -> float:
    """ROC AUC of the Hamming distance between the codes of each pair (1 = matching).

    Parameters
    ----------
    codes : ndarray of uint8, shape (n, code_bytes)
    pairs : array_like of int, shape (n_pairs, 2)
        Rows of ``codes``.
    labels : array_like of {0, 1}, shape (n_pairs,)

    Returns
    -------
    float
        :func:`deephash_ext.metrics.roc_auc_pairs` of the distances (ties count half).
    """
    codes = check_codes(codes)
    P, y = _check_pairs(pairs, labels, len(codes))
    return roc_auc_pairs(_pair_distances(codes, P), y)


def select_architecture(
    X: object,
    X_val: object,
    pairs_val: object,
    labels_val: object,
    n_bits: int,
    *,
    max_depth: int = 4,
    on_candidate: Callable[[tuple[int, ...], float], object] | None = None,
    pairs: object = None,
    **params: Any,
) -> tuple[tuple[int, ...], list[tuple[tuple[int, ...], float]]]:
    """The DeepHash layer sizes for ``n_bits``, chosen greedily by validation AUC.

    Candidates, in order: ``(n_bits,)``, ``(d/2, n_bits)``, ``(d/2, d/4, n_bits)``, ... with
    ``d`` the input width, while the hidden width stays above ``n_bits`` and the depth at
    most ``max_depth``. The search stops at the first candidate whose AUC is not higher than
    the best so far (the greedy rule of the paper). Every candidate is a
    :class:`~deephash_ext.DeepHash` fitted on ``X`` with ``params`` (``random_state`` must be
    an integer, so that deeper candidates reuse the shallower ones' layers).

    Parameters
    ----------
    X : array_like, shape (n_samples, d)
        Training descriptors.
    X_val : array_like, shape (n_val, d)
        Validation descriptors that ``pairs_val`` index (never the evaluation data).
    pairs_val, labels_val
        Validation pairs and their labels (1 matching, 0 not), both classes present.
    n_bits : int
        Code length, a positive multiple of 8.
    max_depth : int, default=4
        Most layers in a candidate.
    on_candidate : callable, optional
        Called with ``(sizes, auc)`` after each candidate (progress reports).
    pairs : array_like of int, shape (n_pairs, 2), optional
        Matching training pairs (rows of ``X``). When given, every candidate is scored
        after ``finetune(X, pairs)`` (with its default arguments). Needed with
        ``finetune_method="spectral"``, which then selects the hidden width (see the
        module docstring) instead of the depth.
    **params
        DeepHash parameters shared by every candidate (``hidden_layer_sizes`` excluded).

    Returns
    -------
    best : tuple of int
        The chosen ``hidden_layer_sizes``.
    report : list of (sizes, auc)
        Every candidate tried, in order. A candidate whose training diverged (RuntimeError
        from ``fit``) ends the search with AUC NaN; if the first one diverges, its error is
        raised.
    """
    from .deephash import DeepHash

    n_bits = check_int(n_bits, "n_bits", minimum=8)
    max_depth = check_int(max_depth, "max_depth", minimum=1)
    if "hidden_layer_sizes" in params:
        raise TypeError("hidden_layer_sizes is what select_architecture chooses; do not pass it")
    if not isinstance(params.get("random_state"), (int, np.integer)):
        raise ValueError("select_architecture needs an integer random_state (shared layers)")
    X_val = np.asarray(X_val, dtype=np.float32)
    P, y = _check_pairs(pairs_val, labels_val, len(X_val))
    width = np.asarray(X).shape[1]
    spectral = params.get("finetune_method") == "spectral"
    if spectral and pairs is None:
        raise ValueError('finetune_method="spectral" needs the training pairs: pass pairs')
    report: list[tuple[tuple[int, ...], float]] = []
    best: tuple[tuple[int, ...], float] | None = None
    previous: DeepHash | None = None
    hidden: list[int] = []
    if spectral:
        if 2 * n_bits >= width:
            raise ValueError(
                f"n_bits={n_bits} leaves no hidden width 2 * n_bits below the input width {width}"
            )
        hidden = [2 * n_bits]
    while len(hidden) + 1 <= max_depth:
        sizes = (*hidden, n_bits)
        try:
            model = DeepHash(sizes, **params).fit(X, reuse=previous)
        except RuntimeError:  # training diverged: this candidate and the larger ones are out
            if best is None:
                raise
            report.append((sizes, float("nan")))
            if on_candidate is not None:
                on_candidate(sizes, float("nan"))
            break
        if pairs is not None:
            model.finetune(X, pairs)
        auc = roc_auc_pairs(_pair_distances(model.encode(X_val), P), y)
        report.append((sizes, auc))
        if on_candidate is not None:
            on_candidate(sizes, auc)
        if best is not None and auc <= best[1]:
            break
        best = (sizes, auc)
        if spectral:  # the next candidate: the hidden layer twice as wide
            if 2 * hidden[0] >= width:
                break
            hidden = [2 * hidden[0]]
            continue
        previous = model if pairs is None else None  # a fine-tuned model is not reusable
        width //= 2
        if width <= n_bits or width % 8:
            break
        hidden.append(width)
    assert best is not None  # the first candidate always sets it
    return best[0], report
