"""Retrieval protocols: hand-computed values, conventions, cross-checks and every error."""

from __future__ import annotations

import numpy as np
import pytest
from deephash_ext import metrics
from deephash_ext.metrics import (
    average_precision,
    four_recall_at_4,
    mean_average_precision,
    paired_bootstrap_interval,
    precision_at,
    precision_within_radius,
    rank_by_distance,
    recall_at,
    recall_per_query,
    relevance_from_labels,
    retrieval_report,
    roc_auc_pairs,
)
from sklearn.metrics import average_precision_score, roc_auc_score


def ap_by_definition(row, n_rel, K=None):
    """AP from the written definition, one rank at a time (slow, obvious)."""
    row = list(row) if K is None else list(row[:K])
    total, hits = 0.0, 0
    for i, r in enumerate(row, start=1):
        if r:
            hits += 1
            total += hits / i
    return total / (n_rel if K is None else min(n_rel, K))


# ---------------------------------------------------------------------------- rank_by_distance


def test_rank_by_distance_ties_go_to_the_smaller_index():
    d = np.array([[3, 1, 3, 1, 0], [2, 2, 2, 2, 2]], dtype=np.int32)
    idx = rank_by_distance(d)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, [[4, 1, 3, 0, 2], [0, 1, 2, 3, 4]])


def test_rank_by_distance_float_ties_and_1d():
    np.testing.assert_array_equal(rank_by_distance([0.5, -1.0, 0.5, 0.25]), [1, 3, 0, 2])
    assert rank_by_distance([0.5, -1.0]).ndim == 1
    # -0.0 and 0.0 are equal distances: tie by index
    np.testing.assert_array_equal(rank_by_distance([0.0, -0.0, 0.0]), [0, 1, 2])


def test_rank_by_distance_matches_lexicographic_order():
    rng = np.random.default_rng(0)
    d = rng.integers(0, 4, size=(6, 50)).astype(np.uint8)  # many ties
    idx = rank_by_distance(d)
    cols = np.arange(50)
    for q in range(6):
        np.testing.assert_array_equal(idx[q], np.lexsort((cols, d[q])))


@pytest.mark.parametrize(
    ("bad", "exc", "match"),
    [
        (np.array([["a", "b"]]), TypeError, "distances must hold real numbers"),
        (np.array([[True, False]]), TypeError, "distances must hold real numbers"),
        (np.zeros((2, 2, 2)), ValueError, "distances must be 1-D"),
        (np.array([[0.0, np.nan]]), ValueError, "distances contains NaN"),
    ],
)
def test_rank_by_distance_errors(bad, exc, match):
    with pytest.raises(exc, match=match):
        rank_by_distance(bad)


# ----------------------------------------------------------------------- relevance_from_labels


def test_relevance_from_labels_by_hand():
    rel, n_rel = relevance_from_labels(
        [[3, 0, 4], [1, 2, 0]], query_labels=[1, 9], db_labels=[1, 2, 2, 1, 1]
    )
    np.testing.assert_array_equal(rel, [[True, True, True], [False, False, False]])
    assert rel.dtype == np.bool_
    np.testing.assert_array_equal(n_rel, [3, 0])  # label 9 is absent from the database
    assert n_rel.dtype == np.int64


def test_relevance_from_labels_counts_the_whole_database_and_takes_strings():
    rel, n_rel = relevance_from_labels(
        [[2]], query_labels=["cat"], db_labels=["cat", "dog", "cat", "cat"]
    )
    np.testing.assert_array_equal(rel, [[True]])
    np.testing.assert_array_equal(n_rel, [3])


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"indices": [[0.0, 1.0]]}, TypeError, "indices must hold integer"),
        ({"indices": [0, 1]}, ValueError, "indices must be 2-D"),
        ({"indices": [[0, 3]]}, ValueError, r"indices must lie in \[0, 3\)"),
        ({"indices": [[-1, 0]]}, ValueError, r"indices must lie in \[0, 3\)"),
        ({"query_labels": [0, 1]}, ValueError, "query_labels must have one label per row"),
        ({"query_labels": [[0]]}, ValueError, "query_labels must be 1-D"),
        ({"db_labels": [[0, 1, 0]]}, ValueError, "db_labels must be 1-D"),
        ({"db_labels": [0.0, np.nan, 1.0]}, ValueError, "db_labels contains NaN"),
        ({"query_labels": ["a"]}, TypeError, r"query_labels .* cannot be compared with db_labels"),
    ],
)
def test_relevance_from_labels_errors(kwargs, exc, match):
    args = {"indices": [[0, 1]], "query_labels": [0], "db_labels": [0, 1, 0]} | kwargs
    with pytest.raises(exc, match=match):
        relevance_from_labels(**args)


# --------------------------------------------------------------------------------- recall_at


def test_recall_at_by_hand():
    rel = [[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    n_rel = [2, 1, 4]
    # R=1: (1/2 + 0 + 0) / 3; R=2: (1/2 + 1 + 0) / 3; R=3: (1 + 1 + 0) / 3
    assert recall_at(rel, n_rel, 1) == pytest.approx(0.5 / 3)
    assert recall_at(rel, n_rel, 2) == pytest.approx(1.5 / 3)
    assert recall_at(rel, n_rel, 3) == pytest.approx(2 / 3)
    assert recall_at(rel, n_rel, 4) == pytest.approx(2 / 3)
    assert isinstance(recall_at(rel, n_rel, 4), float)


def test_recall_per_query_by_hand_and_recall_at_is_its_mean():
    rel = [[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    n_rel = [2, 1, 4]
    np.testing.assert_array_equal(recall_per_query(rel, n_rel, 2), [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(recall_per_query(rel, n_rel, 3), [1.0, 1.0, 0.0])
    rng = np.random.default_rng(0)
    rel = rng.random((50, 30)) < 0.2
    n_rel = rel.sum(axis=1) + rng.integers(1, 4, 50)
    for R in (1, 7, 30):
        assert recall_at(rel, n_rel, R) == float(np.mean(recall_per_query(rel, n_rel, R)))
    with pytest.raises(ValueError, match="R=31 exceeds the ranking length"):
        recall_per_query(rel, n_rel, 31)


def test_relevance_accepts_bool_and_01_ints_alike():
    rel = np.array([[1, 0, 1, 0], [0, 1, 1, 1]])
    for R in (1, 2, 3, 4):
        assert recall_at(rel, [2, 3], R) == recall_at(rel.astype(bool), [2, 3], R)
    np.testing.assert_array_equal(
        average_precision(rel.astype(np.uint8), [2, 3]), average_precision(rel.astype(bool), [2, 3])
    )


def test_recall_errors():
    rel = [[1, 0, 1]]
    with pytest.raises(ValueError, match=r"n_relevant must be >= 1 .*no relevant item"):
        recall_at([[0, 0, 0], [1, 0, 0]], [0, 1], 1)
    with pytest.raises(ValueError, match=r"R=4 exceeds the ranking length L=3.*too short"):
        recall_at(rel, [2], 4)
    with pytest.raises(ValueError, match="R must be >= 1"):
        recall_at(rel, [2], 0)
    with pytest.raises(TypeError, match="R must be an integer"):
        recall_at(rel, [2], 2.0)
    with pytest.raises(ValueError, match=r"n_relevant must have shape \(1,\)"):
        recall_at(rel, [2, 2], 1)
    with pytest.raises(TypeError, match="n_relevant must hold integers"):
        recall_at(rel, [2.0], 1)
    with pytest.raises(ValueError, match="n_relevant is smaller than the number of relevant"):
        recall_at(rel, [1], 1)


@pytest.mark.parametrize(
    ("relevance", "exc", "match"),
    [
        ([1, 0, 1], ValueError, "relevance must be 2-D"),
        (np.zeros((0, 3), dtype=bool), ValueError, "relevance must have at least one query"),
        ([[1, 2, 0]], ValueError, "relevance must hold only 0 and 1"),
        ([[1.0, 0.0, 0.0]], TypeError, "relevance must be bool or 0/1 integers"),
    ],
)
def test_relevance_errors(relevance, exc, match):
    with pytest.raises(exc, match=match):
        recall_at(relevance, [1], 1)
    with pytest.raises(exc, match=match):
        precision_at(relevance, 1)


# ------------------------------------------------------------------------- four_recall_at_4


def test_four_recall_at_4_by_hand():
    rel = [[1, 1, 1, 1, 1], [0, 1, 0, 1, 1], [0, 0, 0, 0, 1]]
    assert four_recall_at_4(rel) == pytest.approx((4 + 2 + 0) / 3)
    assert four_recall_at_4([[1, 1, 1, 1]]) == 4.0


def test_four_recall_at_4_needs_four_ranks():
    with pytest.raises(ValueError, match="relevance must have at least 4 columns"):
        four_recall_at_4([[1, 1, 1]])


# ------------------------------------------------------------------------ average precision


def test_average_precision_by_hand():
    ap = average_precision([[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 0, 1]], [2, 2, 1])
    assert ap.dtype == np.float64 and ap.shape == (3,)
    np.testing.assert_allclose(ap, [(1 / 2) * (1 / 1 + 2 / 3), (1 / 2) * (1 / 2 + 2 / 4), 1 / 4])
    assert mean_average_precision(
        [[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 0, 1]], [2, 2, 1]
    ) == pytest.approx(((5 / 6) + (1 / 2) + (1 / 4)) / 3)
    assert isinstance(mean_average_precision([[1]], [1]), float)


def test_average_precision_at_k_divides_by_min_of_n_relevant_and_k():
    rel = [[1, 1, 0, 1, 0, 0]]
    # 5 relevant in the database, top 2 both relevant: (1 + 1) / min(5, 2) = 1
    np.testing.assert_allclose(average_precision(rel, [5], K=2), [1.0])
    # K=4: (1/1 + 2/2 + 3/4) / min(5, 4)
    np.testing.assert_allclose(average_precision(rel, [5], K=4), [(1 + 1 + 3 / 4) / 4])
    # fewer relevant than K: divide by n_relevant = 3 (the full-ranking AP here)
    np.testing.assert_allclose(average_precision(rel, [3], K=6), [(1 + 1 + 3 / 4) / 3])
    np.testing.assert_allclose(average_precision(rel, [3], K=6), average_precision(rel, [3]))
    # a relevant item beyond K does not count: [0, 1] @1 with one relevant item is 0
    np.testing.assert_allclose(average_precision([[0, 1]], [1], K=1), [0.0])
    assert mean_average_precision(
        [[1, 1, 0, 1, 0, 0], [0, 1, 0, 0, 0, 0]], [5, 1], K=2
    ) == pytest.approx((1 + 1 / 2) / 2)


@pytest.mark.parametrize("density", [0.02, 0.3, 1.0])  # sparse and dense code paths
def test_average_precision_matches_the_definition_on_random_data(monkeypatch, density):
    # a tiny block size makes the vectorised AP cross several row blocks
    monkeypatch.setattr(metrics, "_BLOCK_ENTRIES", 64)
    rng = np.random.default_rng(1)
    rel = rng.random((37, 30)) < density
    rel[:, 0] |= ~rel.any(axis=1)
    n_full = rel.sum(axis=1)
    ap = average_precision(rel, n_full)
    n_more = n_full + rng.integers(0, 5, size=37)
    ap_k = average_precision(rel, n_more, K=13)
    for q in range(37):
        assert ap[q] == pytest.approx(ap_by_definition(rel[q], n_full[q]), rel=1e-12)
        assert ap_k[q] == pytest.approx(ap_by_definition(rel[q], n_more[q], K=13), rel=1e-12)


def test_average_precision_matches_sklearn_without_ties():
    rng = np.random.default_rng(2)
    nq, nb = 12, 300
    scores = rng.random((nq, nb))  # continuous: no ties
    y = rng.random((nq, nb)) < 0.1
    y[:, 0] = True
    order = rank_by_distance(-scores)  # larger score = nearer
    relevance = np.take_along_axis(y, order, axis=1)
    ap = average_precision(relevance, y.sum(axis=1))
    expected = [average_precision_score(y[q], scores[q]) for q in range(nq)]
    np.testing.assert_allclose(ap, expected, rtol=1e-12)


def test_average_precision_errors():
    with pytest.raises(ValueError, match=r"relevance misses relevant items.*full ranking.*K"):
        average_precision([[1, 0, 0]], [2])
    with pytest.raises(ValueError, match="K=4 exceeds the ranking length L=3"):
        average_precision([[1, 0, 0]], [2], K=4)
    with pytest.raises(ValueError, match="K must be >= 1"):
        average_precision([[1, 0, 0]], [2], K=0)
    with pytest.raises(TypeError, match="K must be an integer"):
        mean_average_precision([[1, 0, 0]], [2], K=1.5)
    with pytest.raises(ValueError, match="n_relevant must be >= 1"):
        mean_average_precision([[0, 0, 0]], [0])


# ---------------------------------------------------------------------------- precision_at


def test_precision_at_by_hand():
    rel = [[1, 0, 1, 1], [0, 0, 0, 1], [1, 1, 1, 1]]
    assert precision_at(rel, 1) == pytest.approx((1 + 0 + 1) / 3)
    assert precision_at(rel, 3) == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert precision_at(rel, 4) == pytest.approx((3 / 4 + 1 / 4 + 1) / 3)


def test_precision_at_errors():
    with pytest.raises(ValueError, match="k=5 exceeds the ranking length L=4"):
        precision_at([[1, 0, 1, 1]], 5)
    with pytest.raises(ValueError, match="k must be >= 1"):
        precision_at([[1, 0, 1, 1]], 0)
    with pytest.raises(TypeError, match="k must be an integer"):
        precision_at([[1, 0, 1, 1]], True)


# ----------------------------------------------------------------- precision_within_radius


def test_precision_within_radius_by_hand_and_empty_ball_counts_zero():
    d = [[0, 2, 2, 3], [1, 1, 4, 5], [3, 3, 4, 4]]
    rel = [[0, 1, 1, 1], [1, 0, 1, 1], [1, 1, 1, 1]]
    # r=2 (inclusive): 2/3, 1/2, empty ball -> 0
    assert precision_within_radius(d, rel, 2) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    # r=0: 0/1, empty, empty
    assert precision_within_radius(d, rel, 0) == 0.0
    # r=1: 0/1, 1/2, empty
    assert precision_within_radius(d, rel, 1) == pytest.approx((0 + 1 / 2 + 0) / 3)


def test_precision_within_radius_errors():
    rel = [[1, 0, 1]]
    with pytest.raises(ValueError, match="distances of 1 queries end within the radius"):
        precision_within_radius([[0, 1, 2]], rel, 2)
    for dtype in (np.int32, np.uint8):
        with pytest.raises(ValueError, match="distances must be sorted ascending"):
            precision_within_radius(np.array([[0, 3, 2]], dtype=dtype), rel, 1)
    with pytest.raises(ValueError, match=r"distances must have the shape of relevance"):
        precision_within_radius([[0, 1, 2, 3]], rel, 1)
    with pytest.raises(TypeError, match="distances must hold integer"):
        precision_within_radius([[0.0, 1.0, 2.0]], rel, 1)
    with pytest.raises(ValueError, match="distances must be >= 0"):
        precision_within_radius([[-1, 1, 2]], rel, 1)
    with pytest.raises(ValueError, match="r must be >= 0"):
        precision_within_radius([[0, 1, 2]], rel, -1)
    with pytest.raises(TypeError, match="r must be an integer"):
        precision_within_radius([[0, 1, 2]], rel, 1.0)
    with pytest.raises(ValueError, match="distances must have at least one column"):
        precision_within_radius(np.zeros((1, 0), dtype=int), np.zeros((1, 0), dtype=bool), 1)


# -------------------------------------------------------------------------- roc_auc_pairs


def test_roc_auc_pairs_by_hand_with_ties():
    # matches at 1, 3; non-matches at 3, 4: 1<3, 1<4, 3=3 (half), 3<4 -> 3.5 / 4
    assert roc_auc_pairs([1, 3, 3, 4], [1, 1, 0, 0]) == 0.875
    assert roc_auc_pairs([0, 5], [True, False]) == 1.0
    assert roc_auc_pairs([5, 0], [True, False]) == 0.0
    assert roc_auc_pairs([2, 2, 2], [True, False, True]) == 0.5


def test_roc_auc_pairs_is_the_mann_whitney_count_and_sklearn():
    rng = np.random.default_rng(3)
    d = rng.integers(0, 6, size=80)  # Hamming-like: many ties
    match = rng.random(80) < 0.4
    pos, neg = d[match], d[~match]
    wins = (pos[:, None] < neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    auc = roc_auc_pairs(d, match)
    assert auc == pytest.approx(wins / (pos.size * neg.size), rel=1e-15)
    assert auc == pytest.approx(roc_auc_score(match, -d), rel=1e-12)
    df = rng.random(80)
    assert roc_auc_pairs(df, match) == pytest.approx(roc_auc_score(match, -df), rel=1e-12)


@pytest.mark.parametrize(
    ("distances", "is_match", "exc", "match"),
    [
        ([1, 2, 3], [1, 1, 1], ValueError, "is_match must contain both matching and non-matching"),
        ([1, 2, 3], [0, 0, 0], ValueError, "is_match must contain both"),
        ([1, 2, 3], [1, 0], ValueError, "is_match must have the shape of distances"),
        ([[1, 2]], [1, 0], ValueError, "distances must be 1-D"),
        ([1.0, np.nan], [1, 0], ValueError, "distances contains NaN"),
        (["a", "b"], [1, 0], TypeError, "distances must hold real numbers"),
        ([1, 2], [1, 2], ValueError, "is_match must hold only 0 and 1"),
        ([1, 2], [0.5, 0.5], TypeError, "is_match must be bool"),
    ],
)
def test_roc_auc_pairs_errors(distances, is_match, exc, match):
    with pytest.raises(exc, match=match):
        roc_auc_pairs(distances, is_match)


# ------------------------------------------------------------------------ retrieval_report

DB_LABELS = [0, 1, 0, 1, 2]


def test_retrieval_report_full_ranking_by_hand():
    indices = [[0, 1, 2, 3, 4], [3, 4, 1, 0, 2]]
    distances = [[0, 1, 1, 1, 1], [0, 2, 2, 3, 3]]
    # query 0 (label 0): relevance 1 0 1 0 0, 2 relevant; query 1 (label 1): 1 0 1 0 0
    report = retrieval_report(
        indices, [0, 1], DB_LABELS, distances, recall_ranks=(1, 3, 10), radius=1
    )
    assert list(report) == [
        "mAP",
        "4xrecall@4",
        "recall@1",
        "recall@3",
        "recall@10",
        "precision@r<=1",
    ]
    assert report["mAP"] == pytest.approx((1 / 2) * (1 + 2 / 3))
    assert report["4xrecall@4"] == 2.0
    assert report["recall@1"] == 0.5
    assert report["recall@3"] == 1.0
    assert report["recall@10"] == 1.0  # full ranking: clipped to L = 5
    # query 0: the whole list is in the ball (allowed: full ranking), 2/5; query 1: 1/1
    assert report["precision@r<=1"] == pytest.approx((2 / 5 + 1) / 2)


def test_retrieval_report_truncated_ranking():
    rng = np.random.default_rng(4)
    db = rng.integers(0, 3, size=40)
    queries = np.array([0, 1, 2, 0])
    order = rank_by_distance(rng.random((4, 40)))[:, :12]
    report = retrieval_report(order, queries, db, recall_ranks=(1, 12, 100))
    assert list(report) == ["mAP@12", "4xrecall@4", "recall@1", "recall@12", "precision@10"]
    rel, n_rel = relevance_from_labels(order, queries, db)
    assert report["mAP@12"] == mean_average_precision(rel, n_rel, K=12)
    assert report["recall@12"] == recall_at(rel, n_rel, 12)
    assert report["precision@10"] == precision_at(rel, 10)


def test_retrieval_report_errors():
    with pytest.raises(ValueError, match="radius needs distances"):
        retrieval_report([[0, 1]], [0], DB_LABELS, radius=2)
    with pytest.raises(ValueError, match="recall_ranks must be >= 1"):
        retrieval_report([[0, 1]], [0], DB_LABELS, recall_ranks=(0,))
    with pytest.raises(TypeError, match="recall_ranks must be an integer"):
        retrieval_report([[0, 1]], [0], DB_LABELS, recall_ranks=(1.5,))
    with pytest.raises(ValueError, match="n_relevant must be >= 1"):
        retrieval_report([[0, 1]], [7], DB_LABELS)
    with pytest.raises(ValueError, match="distances of 1 queries end within the radius"):
        retrieval_report([[0, 1]], [0], DB_LABELS, [[0, 1]], radius=1)


# ------------------------------------------------------------------ paired_bootstrap_interval


def test_paired_bootstrap_interval_brackets_the_mean_difference():
    rng = np.random.default_rng(0)
    b = rng.random(400)
    a = b + rng.normal(0.0, 0.2, 400)
    d, low, high = paired_bootstrap_interval(a, b)
    assert d == pytest.approx(float(np.mean(a - b)))
    assert low < d < high
    # the percentile interval of a mean: about +-1.96 standard errors of the differences
    se = float(np.std(a - b) / np.sqrt(400))
    assert high - low == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert paired_bootstrap_interval(a, b) == (d, low, high)  # same seed, same interval
    wider = paired_bootstrap_interval(a, b, confidence=0.99)
    assert wider[1] < low and wider[2] > high


def test_paired_bootstrap_interval_keeps_the_pairing():
    """Scores that move together: the interval of their difference is narrow although each
    score spreads widely (an unpaired comparison could not resolve the shift)."""
    rng = np.random.default_rng(1)
    b = rng.random(300)
    a = b + 0.01
    d, low, high = paired_bootstrap_interval(a, b, n_resamples=500)
    assert d == pytest.approx(0.01)
    assert low == pytest.approx(0.01) and high == pytest.approx(0.01)
    d, low, high = paired_bootstrap_interval(b, a[::-1], n_resamples=500)
    assert low < 0 < high


def test_paired_bootstrap_interval_of_equal_scores_is_zero():
    assert paired_bootstrap_interval([0.5, 0.25, 1.0], [0.5, 0.25, 1.0]) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(scores_a=[1.0], scores_b=[1.0]), ValueError, "scores_a must be 1-D with at least 2"),
        (dict(scores_a=[[1.0, 2.0]], scores_b=[1.0, 2.0]), ValueError, "scores_a must be 1-D"),
        (dict(scores_a=[1.0, 2.0], scores_b=[1.0, 2.0, 3.0]), ValueError, "same length"),
        (dict(scores_a=["a", "b"], scores_b=[1.0, 2.0]), TypeError, "scores_a must hold real"),
        (dict(scores_a=[1.0, 2.0], scores_b=[1.0, np.nan]), ValueError, "scores_b contains NaN"),
        (dict(scores_a=[1.0, np.inf], scores_b=[1.0, 2.0]), ValueError, "scores_a must be finite"),
        (dict(confidence=1.0), ValueError, "confidence"),
        (dict(confidence=0.0), ValueError, "confidence"),
        (dict(confidence="0.9"), TypeError, "confidence must be a real number"),
        (dict(n_resamples=0), ValueError, "n_resamples must be >= 1"),
        (dict(n_resamples=10.0), TypeError, "n_resamples must be an integer"),
        (dict(random_state=-1), ValueError, "random_state"),
    ],
)
def test_paired_bootstrap_interval_errors(kwargs, exc, match):
    arguments = {"scores_a": [0.5, 0.25, 1.0], "scores_b": [0.25, 0.25, 0.5], **kwargs}
    with pytest.raises(exc, match=match):
        paired_bootstrap_interval(arguments.pop("scores_a"), arguments.pop("scores_b"), **arguments)
