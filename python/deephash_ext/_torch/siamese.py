"""Siamese fine-tuning of an unrolled RBM stack (docs/algorithms.md, sec. 2.7), in torch.

Imported only by :meth:`deephash_ext.DeepHash.finetune`, so that ``import deephash_ext``
never loads torch. The network, the losses and the minibatch sampling live here; the
estimator checks the arguments and re-centres the layers afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import import_torch

__all__ = ["siamese_finetune"]

_MARGIN_PAIRS = 20_000  # pairs sampled to set the margins (the paper's Fig. 4 uses 20,000)


def _other_items(
    rng: np.random.RandomState, n: int, first: np.ndarray, second: np.ndarray
) -> np.ndarray:
    """For each pair, a uniformly random row of [0, n) that is neither of its two rows."""
    others = rng.randint(0, n, size=len(first))
    clash = (others == first) | (others == second)
    while clash.any():
        others[clash] = rng.randint(0, n, size=int(clash.sum()))
        clash = (others == first) | (others == second)
    return others


def _minibatches(
    pairs: np.ndarray,
    labels: np.ndarray | None,
    n_items: int,
    matching_per_batch: int,
    rng: np.random.RandomState,
    negatives: str = "random",
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One epoch of (left rows, right rows, y) minibatches.

    With labels the given pairs are shuffled and cut into minibatches of
    ``3 * matching_per_batch``. Without labels every pair matches, and its non-matching
    pairs are, by ``negatives``: ``"random"``, two with a random third item (1:2, the
    paper); ``"batch"``, the pairs ``(a_i, b_j)``, ``i != j``, of the minibatch's own
    matching pairs ``(a_i, b_i)`` (no extra rows; the distances are computed anyway).
    """
    order = rng.permutation(len(pairs))
    step = matching_per_batch if labels is None else 3 * matching_per_batch
    for start in range(0, len(order), step):
        chosen = pairs[order[start : start + step]]
        if labels is not None:
            yield chosen[:, 0], chosen[:, 1], labels[order[start : start + step]]
            continue
        a, b = chosen[:, 0], chosen[:, 1]
        if negatives == "batch":
            n = len(a)
            left, right = np.repeat(a, n), np.tile(b, n)
            y = np.eye(n, dtype=np.float32).reshape(-1)
            yield left, right, y
            continue
        k = _other_items(rng, n_items, a, b)
        y = np.concatenate([np.ones(len(a)), np.zeros(2 * len(a))]).astype(np.float32)
        yield np.concatenate([a, a, b]), np.concatenate([b, k, k]), y


def siamese_finetune(
    Z0: np.ndarray,
    components: list[np.ndarray],
    biases: list[np.ndarray],
    pairs: np.ndarray,
    labels: np.ndarray | None,
    *,
    loss: str,
    margins: np.ndarray | None,
    n_epochs: int,
    matching_per_batch: int,
    learning_rate: float,
    rng: np.random.RandomState,
    verbose: bool,
    negatives: str = "random",
    score: Callable[[list[np.ndarray]], float] | None = None,
    patience: int = 0,
) -> tuple[list[np.ndarray], np.ndarray, list[float], list[float]]:
    """Fine-tune the sigmoid network ``a_l = sigmoid(a_{l-1} W_l^T + b_l)`` on pairs.

    ``Z0`` (float32, n x d) are the network's inputs for the items that ``pairs`` index.
    With ``score`` (weights -> a number to maximise, e.g. a validation AUC), the
    network is scored before training and after every epoch; training stops once more
    than ``patience`` epochs in a row bring no better score, and the best weights are returned (the
    initial ones if no epoch beat them). Returns the weights (float32 arrays), the margins
    used, the mean loss of every epoch and the scores (empty without ``score``); the
    inputs are not modified.
    """
    torch = import_torch("DeepHash fine-tuning")
    weights = [
        torch.nn.Parameter(torch.from_numpy(np.array(W, dtype=np.float32))) for W in components
    ]
    offsets = [torch.nn.Parameter(torch.from_numpy(np.array(b, dtype=np.float32))) for b in biases]
    items = torch.from_numpy(np.ascontiguousarray(Z0, dtype=np.float32))

    def layer_distances(left: np.ndarray, right: np.ndarray) -> list[Any]:
        """Squared distances ||a_l - a'_l||^2 of each pair at every layer (one forward pass
        over the distinct rows of the minibatch)."""
        rows, inverse = np.unique(np.concatenate([left, right]), return_inverse=True)
        a = items[torch.from_numpy(rows)]
        where_left = torch.from_numpy(inverse[: len(left)])
        where_right = torch.from_numpy(inverse[len(left) :])
        out = []
        for W, b in zip(weights, offsets):
            a = torch.sigmoid(torch.addmm(b, a, W.t()))
            out.append(((a[where_left] - a[where_right]) ** 2).sum(dim=1))
        return out

    if margins is None:  # Fig. 4: mean of the two medians, per layer, before fine-tuning
        matching: list[list[np.ndarray]] = [[] for _ in weights]
        non_matching: list[list[np.ndarray]] = [[] for _ in weights]
        seen = 0
        with torch.no_grad():
            for left, right, y in _minibatches(
                pairs, labels, len(Z0), 3 * matching_per_batch, rng, negatives
            ):
                for depth, d in enumerate(layer_distances(left, right)):
                    d = d.numpy()
                    matching[depth].append(d[y == 1])
                    non_matching[depth].append(d[y == 0])
                seen += len(y)
                if seen >= _MARGIN_PAIRS:
                    break
        margins = np.array(
            [
                0.5 * (np.median(np.concatenate(m)) + np.median(np.concatenate(n)))
                for m, n in zip(matching, non_matching)
            ]
        )
    margin_list = [float(m) for m in margins]

    # Adam: its steps do not depend on the loss scale, which varies by orders of magnitude
    # with the layer widths and with how saturated the sigmoids are.
    optimiser = torch.optim.Adam([*weights, *offsets], lr=learning_rate)
    n_batches = -(-len(pairs) // (matching_per_batch if labels is None else 3 * matching_per_batch))
    progress = None
    if verbose:
        from tqdm.auto import tqdm

        progress = tqdm(total=n_epochs * n_batches, desc="Siamese fine-tuning", unit="batch")
    history: list[float] = []
    scores: list[float] = []

    def snapshot() -> list[np.ndarray]:
        return [W.detach().numpy().copy() for W in weights]

    best = snapshot() if score is not None else []
    if score is not None:
        scores.append(score(best))
    try:
        for _ in range(n_epochs):
            total, count = 0.0, 0
            for left, right, y in _minibatches(
                pairs, labels, len(Z0), matching_per_batch, rng, negatives
            ):
                target = torch.from_numpy(y)
                value: Any = 0.0  # a tensor after the first layer
                for d, m in zip(layer_distances(left, right), margin_list):
                    pull = d if loss == "single_margin" else torch.relu(d - m)
                    push = torch.relu(m - d)
                    if negatives == "batch":  # n^2 - n negatives: the two kinds weigh the same
                        value = value + pull[target == 1].mean()
                        if len(target) > 1:  # a last minibatch of one pair has no negative
                            value = value + push[target == 0].mean()
                    else:
                        value = value + (target * pull + (1 - target) * push).mean()
                optimiser.zero_grad()
                value.backward()
                optimiser.step()
                batch_loss = float(value.detach())
                total += batch_loss * len(y)
                count += len(y)
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(loss=batch_loss)
            history.append(total / count)
            if score is None:
                continue
            current = snapshot()
            scores.append(score(current))
            if scores[-1] > max(scores[:-1]):
                best = current
            elif len(scores) - 1 - int(np.argmax(scores)) > patience:
                break  # early stopping
    finally:
        if progress is not None:
            progress.close()
    if score is None:
        best = snapshot()
    return best, np.asarray(margins, dtype=np.float64), history, scores
