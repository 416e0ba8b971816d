"""Model selection by validation AUC: pair_auc against its definition, and the greedy
architecture search on a toy problem."""

from __future__ import annotations

import numpy as np
import pytest
from deephash_ext.selection import pair_auc, select_architecture
from sklearn.metrics import roc_auc_score


def _toy(n_clusters=40, per=6, d=64, seed=0):
    """Clusters in d dims: pairs within a cluster match, pairs across do not."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, d))
    X = np.repeat(centres, per, axis=0) + 0.3 * rng.normal(size=(n_clusters * per, d))
    labels = np.repeat(np.arange(n_clusters), per)
    return X.astype(np.float32), labels


def _pairs(labels, rng):
    n = len(labels)
    a, b = rng.integers(0, n, size=(2, 600))
    keep = a != b
    a, b = a[keep], b[keep]
    return np.stack([a, b], axis=1), (labels[a] == labels[b]).astype(np.int64)


def test_pair_auc_is_roc_auc_of_minus_the_hamming_distance():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, size=(50, 4), dtype=np.uint8)
    pairs = rng.integers(0, 50, size=(200, 2))
    labels = rng.integers(0, 2, size=200)
    bits = np.unpackbits(codes, axis=1)
    distances = (bits[pairs[:, 0]] != bits[pairs[:, 1]]).sum(axis=1)
    assert pair_auc(codes, pairs, labels) == pytest.approx(roc_auc_score(labels, -distances))


def test_pair_auc_checks_its_pairs():
    codes = np.zeros((5, 2), np.uint8)
    with pytest.raises(ValueError, match="pairs"):
        pair_auc(codes, [[0, 5]], [1])
    with pytest.raises(ValueError, match="labels"):
        pair_auc(codes, [[0, 1]], [1, 0])


def test_select_architecture_grows_while_auc_improves():
    X, y = _toy()
    X_val, y_val = _toy(seed=1)
    pairs, labels = _pairs(y_val, np.random.default_rng(2))
    seen = []
    best, report = select_architecture(
        X,
        X_val,
        pairs,
        labels,
        8,
        n_epochs=3,
        learning_rate=0.05,
        random_state=0,
        on_candidate=lambda sizes, auc: seen.append(sizes),
    )
    sizes = [s for s, _ in report]
    assert sizes[0] == (8,) and all(s[-1] == 8 for s in sizes)
    assert sizes == seen
    assert sizes[1:] == [(32, 8), (32, 16, 8)][: len(sizes) - 1]  # halving widths
    aucs = [a for _, a in report]
    # every candidate kept improved on the best so far; the search stopped at the first that
    # did not (or ran out of widths)
    assert all(aucs[i] > max(aucs[:i]) for i in range(1, len(aucs) - 1))
    assert best == max(report, key=lambda r: r[1])[0]
    assert all(0.0 <= a <= 1.0 for a in aucs)


def test_select_architecture_arguments():
    X, y = _toy(n_clusters=4)
    pairs = np.array([[0, 1], [0, 10]])
    with pytest.raises(ValueError, match="random_state"):
        select_architecture(X, X, pairs, [1, 0], 8)
    with pytest.raises(TypeError, match="hidden_layer_sizes"):
        select_architecture(X, X, pairs, [1, 0], 8, hidden_layer_sizes=(8,), random_state=0)
    with pytest.raises(ValueError, match="n_bits"):
        select_architecture(X, X, pairs, [1, 0], 4, random_state=0)


def test_a_diverged_candidate_ends_the_search(monkeypatch):
    from deephash_ext import DeepHash

    X, y = _toy()
    X_val, y_val = _toy(seed=1)
    pairs, labels = _pairs(y_val, np.random.default_rng(2))
    real_fit = DeepHash.fit
    diverging_depth = [2]  # candidates this deep or deeper "diverge"

    def fit(self, X, y=None, *, reuse=None):
        if len(self.hidden_layer_sizes) >= diverging_depth[0]:
            raise RuntimeError("RBM training diverged")
        return real_fit(self, X, y, reuse=reuse)

    monkeypatch.setattr(DeepHash, "fit", fit)
    params = dict(n_epochs=2, learning_rate=0.05, random_state=0)
    best, report = select_architecture(X, X_val, pairs, labels, 8, **params)
    assert best == (8,) and [s for s, _ in report] == [(8,), (32, 8)]
    assert np.isnan(report[1][1])
    diverging_depth[0] = 1  # nothing to select: the first candidate's error is raised
    with pytest.raises(RuntimeError, match="diverged"):
        select_architecture(X, X_val, pairs, labels, 8, **params)
