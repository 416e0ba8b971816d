"""Named retrieval evaluation protocols (numpy only).

Every number a benchmark reports names its protocol; this module is where each protocol is
defined, once. Each function's docstring states its exact formula, how ties count and what
happens in empty cases. The building blocks are:

* a **ranking**: ``indices`` of shape ``(nq, L)``, row ``q`` listing database ids from the
  nearest to the farthest. Hamming rankings come from :func:`deephash_ext.search`; float or
  product-quantisation distances are ranked with :func:`rank_by_distance`. Ties are ordered
  by index (the smaller id first), as everywhere in the package, so results are deterministic.
* a **relevance matrix**: ``relevance[q, i]`` is true iff the item at rank ``i + 1`` of query
  ``q`` is relevant to it, with ``n_relevant[q]`` relevant items in the whole database
  (:func:`relevance_from_labels` builds both from class labels).

Protocols: recall@R (:func:`recall_at`; per query: :func:`recall_per_query`), the UKB
score 4 x recall@4 (:func:`four_recall_at_4`), average precision and mAP, over the full
ranking or @K (:func:`average_precision`, :func:`mean_average_precision`), precision@k
(:func:`precision_at`), precision within a Hamming radius (:func:`precision_within_radius`),
ROC AUC of distance as a match score over pairs (:func:`roc_auc_pairs`), and all of the
ranking ones at once (:func:`retrieval_report`). :func:`paired_bootstrap_interval` says how
far a difference between two schemes' per-query scores (AP, recall) exceeds the sampling
noise of the query set.

Queries with no relevant item in the database make recall and AP undefined: those functions
raise instead of silently counting such queries as 0 or 1 (drop them before evaluating).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import numpy as np

from ._random import check_rng, draw_random_state
from ._validation import check_class_labels, check_int, check_real, check_real_array

__all__ = [
    "average_precision",
    "four_recall_at_4",
    "mean_average_precision",
    "paired_bootstrap_interval",
    "precision_at",
    "precision_within_radius",
    "rank_by_distance",
    "recall_at",
    "recall_per_query",
    "relevance_from_labels",
    "retrieval_report",
    "roc_auc_pairs",
]

# Rows are processed in blocks of about this many matrix entries, so that the temporaries of
# the vectorised AP stay small whatever nq and L are.
_BLOCK_ENTRIES = 1 << 20


# --------------------------------------------------------------------------------------------
# argument checks (every message names the parameter)
# --------------------------------------------------------------------------------------------


def _check_boolean_matrix(values: object, name: str, ndim: int) -> np.ndarray:
    """``values`` as a bool array of ``ndim`` dimensions; bool or 0/1 integers accepted."""
    array = np.asarray(values)
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {array.shape}")
    if array.dtype == np.bool_:
        return array
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must be bool or 0/1 integers, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(
            f"{name} must hold only 0 and 1, got values in [{array.min()}, {array.max()}]"
        )
    return array.astype(np.bool_)


def _check_relevance(relevance: object) -> np.ndarray:
    rel = _check_boolean_matrix(relevance, "relevance", 2)
    if rel.shape[0] < 1:
        raise ValueError(f"relevance must have at least one query (row), got shape {rel.shape}")
    return rel


def _row_hits(rel: np.ndarray) -> np.ndarray:
    """Number of true entries per row, int64."""
    return np.count_nonzero(rel, axis=1).astype(np.int64, copy=False)


def _check_n_relevant(n_relevant: object, rel: np.ndarray) -> np.ndarray:
    """Per-query relevant counts: 1-D integers, length nq, all >= 1 and >= the hits listed."""
    counts = np.asarray(n_relevant)
    if counts.dtype.kind not in "iu" or counts.dtype == np.bool_:
        raise TypeError(f"n_relevant must hold integers, got dtype {counts.dtype}")
    if counts.ndim != 1 or counts.shape[0] != rel.shape[0]:
        raise ValueError(
            f"n_relevant must have shape ({rel.shape[0]},) (one count per row of "
            f"relevance), got shape {counts.shape}"
        )
    counts = counts.astype(np.int64)
    empty = np.flatnonzero(counts <= 0)
    if empty.size:
        raise ValueError(
            f"n_relevant must be >= 1 for every query: {empty.size} queries (first: "
            f"{empty[:5].tolist()}) have no relevant item, so recall / AP are undefined for "
            "them; drop those queries before evaluating"
        )
    listed = _row_hits(rel)
    over = np.flatnonzero(listed > counts)
    if over.size:
        q = int(over[0])
        raise ValueError(
            f"n_relevant is smaller than the number of relevant items in the ranking for "
            f"{over.size} queries (query {q}: n_relevant={counts[q]}, listed {listed[q]})"
        )
    return counts


def _check_depth(value: object, name: str, length: int) -> int:
    depth = check_int(value, name, minimum=1)
    if depth > length:
        raise ValueError(
            f"{name}={depth} exceeds the ranking length L={length}: the ranking is too short; "
            f"search with k >= {depth}"
        )
    return depth


def _label_kind(labels: np.ndarray) -> str:
    kind = labels.dtype.kind
    if kind in "biuf":
        return "numeric"
    return {"U": "str", "S": "bytes"}.get(kind, "object")


# --------------------------------------------------------------------------------------------
# rankings and relevance
# --------------------------------------------------------------------------------------------


def rank_by_distance(distances: object) -> np.ndarray:
    """Rank items by distance, ties to the smaller index.

    Row ``q`` of the result lists the column indices of ``distances[q]`` sorted by the key
    ``(distances[q, j], j)``: ascending distance, and among equal distances ascending index
    (a stable argsort). This is the ranking order of the whole package, so float or
    product-quantisation rankings built here are comparable with Hamming rankings from
    :func:`deephash_ext.search`.

    Parameters
    ----------
    distances : array_like of real numbers, shape (nq, n) or (n,)
        Any integer or float dtype; NaN is rejected. A 1-D array is one query and gives a
        1-D result.

    Returns
    -------
    indices : ndarray of int64, shape (nq, n) or (n,)

    Raises
    ------
    TypeError
        If ``distances`` is not of a real (integer or float) dtype.
    ValueError
        If ``distances`` is not 1-D or 2-D, or contains NaN.

    Examples
    --------
    >>> rank_by_distance([[0.5, 0.1, 0.5, 0.0]])
    array([[3, 1, 0, 2]])
    >>> rank_by_distance([2, 1, 2, 1])
    array([1, 3, 0, 2])
    """
    array = check_real_array(distances, "distances")
    if array.ndim not in (1, 2):
        raise ValueError(f"distances must be 1-D (n,) or 2-D (nq, n), got shape {array.shape}")
    return np.argsort(array, axis=-1, kind="stable").astype(np.int64, copy=False)


def relevance_from_labels(
    indices: object, query_labels: object, db_labels: object
) -> tuple[np.ndarray, np.ndarray]:
    """Relevance of a ranking from single class labels.

    ``relevance[q, i] = db_labels[indices[q, i]] == query_labels[q]``, and
    ``n_relevant[q]`` = the number of database items ``j`` with
    ``db_labels[j] == query_labels[q]`` (counted over the whole database, not the ranking).

    Parameters
    ----------
    indices : array_like of int, shape (nq, L)
        Ranked database ids, each in ``[0, nb)``; a row should list distinct ids (not
        checked). Padding such as ``-1`` for missing results is rejected.
    query_labels : array_like, shape (nq,)
        One label per query (integers, strings, ...; float NaN is rejected).
    db_labels : array_like, shape (nb,)
        One label per database item, comparable with ``query_labels``.

    Returns
    -------
    relevance : ndarray of bool, shape (nq, L)
    n_relevant : ndarray of int64, shape (nq,)
        May contain 0 (a query whose class is absent from the database); the recall and AP
        functions reject such queries.

    Raises
    ------
    TypeError
        If ``indices`` is not of an integer dtype, or the two label arrays cannot be
        compared.
    ValueError
        If ``indices`` is not 2-D or holds an id outside ``[0, nb)``, a label array is not
        1-D or contains NaN, or ``query_labels`` does not have one label per row of
        ``indices``.

    Examples
    --------
    >>> relevance, n_relevant = relevance_from_labels(
    ...     [[2, 0, 1], [1, 3, 0]], query_labels=[7, 5], db_labels=[7, 5, 7, 5])
    >>> relevance
    array([[ True,  True, False],
           [ True,  True, False]])
    >>> n_relevant
    array([2, 2])
    """
    ids = np.asarray(indices)
    if ids.dtype.kind not in "iu" or ids.dtype == np.bool_:
        raise TypeError(f"indices must hold integer ids, got dtype {ids.dtype}")
    if ids.ndim != 2:
        raise ValueError(f"indices must be 2-D (nq, L), got shape {ids.shape}")
    q_labels = check_class_labels(query_labels, "query_labels")
    d_labels = check_class_labels(db_labels, "db_labels")
    if q_labels.shape[0] != ids.shape[0]:
        raise ValueError(
            f"query_labels must have one label per row of indices "
            f"({ids.shape[0]}), got shape {q_labels.shape}"
        )
    kinds = {_label_kind(q_labels), _label_kind(d_labels)}
    if len(kinds) > 1 and "object" not in kinds:
        raise TypeError(
            f"query_labels ({q_labels.dtype}) cannot be compared with db_labels "
            f"({d_labels.dtype}): {' and '.join(sorted(kinds))} labels do not "
            "mix"
        )
    nb = d_labels.shape[0]
    if ids.size and (ids.min() < 0 or ids.max() >= nb):
        raise ValueError(
            f"indices must lie in [0, {nb}) (db_labels has {nb} items), got "
            f"values in [{ids.min()}, {ids.max()}]"
        )
    try:
        relevance = np.asarray(d_labels[ids] == q_labels[:, None], dtype=np.bool_)
        uniq, counts = np.unique(d_labels, return_counts=True)
        pos = np.searchsorted(uniq, q_labels)
    except TypeError as exc:  # includes numpy's DTypePromotionError / no-loop errors
        raise TypeError(
            f"query_labels ({q_labels.dtype}) cannot be compared with db_labels ({d_labels.dtype})"
        ) from exc
    if relevance.shape != ids.shape:  # an elementwise comparison numpy refused
        raise TypeError(
            f"query_labels ({q_labels.dtype}) cannot be compared with db_labels ({d_labels.dtype})"
        )
    n_relevant = np.zeros(q_labels.shape[0], dtype=np.int64)
    if uniq.size:
        pos = np.minimum(pos, uniq.size - 1)
        found = uniq[pos] == q_labels
        n_relevant[found] = counts[pos[found]]
    return relevance, n_relevant


# --------------------------------------------------------------------------------------------
# ranking metrics
# --------------------------------------------------------------------------------------------


def recall_at(relevance: object, n_relevant: object, R: int) -> float:
    """Recall@R: the fraction of a query's relevant items found in its top R, averaged.

    ``recall@R = (1/nq) * sum_q hits_q(R) / n_relevant[q]``, where ``hits_q(R)`` is the
    number of true entries in ``relevance[q, :R]``. Ties were resolved when the ranking was
    built (by index); every query weighs the same.

    Parameters
    ----------
    relevance : array_like of bool or 0/1 int, shape (nq, L)
        Relevance of the ranked lists (see :func:`relevance_from_labels`).
    n_relevant : array_like of int, shape (nq,)
        Relevant items per query in the whole database; each must be ``>= 1`` and at least
        the number of relevant items listed in its row.
    R : int
        Cut-off, ``1 <= R <= L``.

    Returns
    -------
    float

    Raises
    ------
    TypeError
        If ``relevance`` or ``n_relevant`` has the wrong dtype, or ``R`` is not an integer.
    ValueError
        If ``relevance`` is not 2-D with at least one row or holds values other than 0/1,
        ``n_relevant`` has the wrong shape, is 0 for some query (recall is undefined there)
        or is below the relevant items listed, ``R < 1``, or ``R > L`` (the ranking is too
        short).

    Examples
    --------
    >>> recall_at([[1, 0, 1, 0], [0, 0, 0, 1]], n_relevant=[2, 4], R=3)
    0.5
    """
    return float(np.mean(recall_per_query(relevance, n_relevant, R)))


def recall_per_query(relevance: object, n_relevant: object, R: int) -> np.ndarray:
    """Recall@R of each query, ``hits_q(R) / n_relevant[q]``: the terms that
    :func:`recall_at` averages (arguments and errors as there).

    Returns
    -------
    ndarray of float64, shape (nq,)

    Examples
    --------
    >>> recall_per_query([[1, 0, 1, 0], [0, 0, 0, 1]], n_relevant=[2, 4], R=3)
    array([1., 0.])
    """
    rel = _check_relevance(relevance)
    counts = _check_n_relevant(n_relevant, rel)
    R = _check_depth(R, "R", rel.shape[1])
    return _row_hits(rel[:, :R]) / counts


def four_recall_at_4(relevance: object) -> float:
    """The UKB score (4 x recall@4): relevant items in the top 4, averaged over queries.

    ``score = (1/nq) * sum_q #{i < 4 : relevance[q, i]}``, between 0 and 4. On UKB every
    query has exactly 4 relevant images (itself included), so this is 4 x recall@4.

    Parameters
    ----------
    relevance : array_like of bool or 0/1 int, shape (nq, L)
        Needs ``L >= 4``.

    Returns
    -------
    float

    Raises
    ------
    TypeError
        If ``relevance`` is not bool or integer.
    ValueError
        If ``relevance`` is not 2-D with at least one row, holds values other than 0/1, or
        has fewer than 4 columns.

    Examples
    --------
    >>> four_recall_at_4([[1, 1, 0, 1, 1], [1, 0, 0, 0, 1]])
    2.0
    """
    rel = _check_relevance(relevance)
    if rel.shape[1] < 4:
        raise ValueError(
            f"relevance must have at least 4 columns (ranks) for 4 x recall@4, "
            f"got shape {rel.shape}: the ranking is too short"
        )
    return float(np.mean(_row_hits(rel[:, :4])))


def _ap_sums(rel: np.ndarray) -> np.ndarray:
    """Per row, sum over 1-based ranks i with relevance of precision@i (float64).

    Row blocks with few relevant entries go through their positions only; dense blocks use a
    running count. Which path a block takes depends on its data alone, so results are
    deterministic.
    """
    m, k = rel.shape
    out = np.zeros(m, dtype=np.float64)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    count_dtype = np.int32 if k < 2**31 else np.int64
    block = max(1, _BLOCK_ENTRIES // max(k, 1))
    for start in range(0, m, block):
        part = rel[start : start + block]
        rows_here = part.shape[0]
        if np.count_nonzero(part) * 10 >= part.size:  # dense: hits so far at every rank
            hits = np.cumsum(part, axis=1, dtype=count_dtype)
            hits = hits * part
            out[start : start + rows_here] = (hits / ranks).sum(axis=1)
            continue
        flat = np.flatnonzero(part)
        rows, cols = np.divmod(flat, k)
        per_row = np.bincount(rows, minlength=rows_here)
        first = np.cumsum(per_row) - per_row
        # hits up to and including each relevant position, within its row
        hits = np.arange(1, flat.size + 1, dtype=np.int64) - np.repeat(first, per_row)
        out[start : start + rows_here] = np.bincount(
            rows, weights=hits / (cols + 1), minlength=rows_here
        )
    return out


def average_precision(relevance: object, n_relevant: object, K: int | None = None) -> np.ndarray:
    """Average precision of each query, over the full ranking or @K.

    With ``prec(i) = #{relevant among ranks 1..i} / i`` (ranks 1-based):

    * full ranking (``K=None``): ``AP_q = (1/n_relevant[q]) * sum_{i : rel_q(i)} prec(i)``.
      The ranking must contain every relevant item (``sum(relevance[q]) == n_relevant[q]``);
      otherwise the unlisted items would silently count as precision 0, so this raises:
      pass the full ranking, or name a cut-off ``K``.
    * @K: ``AP@K_q = (1/min(n_relevant[q], K)) * sum_{i <= K : rel_q(i)} prec(i)``. The
      ``min(n_rel, K)`` normaliser means a query whose top K are all relevant scores 1 even
      when it has more than K relevant items (the convention of DRHN / SSDH-style mAP@K).

    Ties were resolved when the ranking was built (by index), so AP is deterministic.

    Parameters
    ----------
    relevance : array_like of bool or 0/1 int, shape (nq, L)
    n_relevant : array_like of int, shape (nq,)
        Relevant items per query in the whole database, each ``>= 1``.
    K : int, optional
        Cut-off, ``1 <= K <= L``.

    Returns
    -------
    ndarray of float64, shape (nq,)

    Raises
    ------
    TypeError
        If ``relevance`` or ``n_relevant`` has the wrong dtype, or ``K`` is not an integer.
    ValueError
        If ``relevance`` is not 2-D with at least one row or holds values other than 0/1,
        ``n_relevant`` has the wrong shape, is 0 for some query (AP is undefined there) or
        is below the relevant items listed; without ``K``, if a ranking misses a relevant
        item; with ``K``, if ``K < 1`` or ``K > L``.

    Examples
    --------
    Relevant at ranks 1 and 3: AP = (1/1 + 2/3) / 2.

    >>> average_precision([[1, 0, 1, 0]], n_relevant=[2])
    array([0.83333333])
    >>> average_precision([[1, 1, 0, 1]], n_relevant=[5], K=2)
    array([1.])
    """
    rel = _check_relevance(relevance)
    counts = _check_n_relevant(n_relevant, rel)
    if K is None:
        listed = _row_hits(rel)
        short = np.flatnonzero(listed != counts)
        if short.size:
            q = int(short[0])
            raise ValueError(
                f"relevance misses relevant items for {short.size} queries (query {q}: "
                f"n_relevant={counts[q]}, listed {listed[q]}): pass the full ranking, or a "
                "cut-off K for AP@K"
            )
        return _ap_sums(rel) / counts
    K = _check_depth(K, "K", rel.shape[1])
    return _ap_sums(rel[:, :K]) / np.minimum(counts, K)


def mean_average_precision(relevance: object, n_relevant: object, K: int | None = None) -> float:
    """mAP: the mean over queries of :func:`average_precision` (full ranking, or @K).

    ``mAP = (1/nq) * sum_q AP_q`` with ``AP_q`` exactly as in :func:`average_precision`
    (same conventions, same errors). Report it as "mAP" without ``K`` and "mAP@K" with.

    Parameters
    ----------
    relevance : array_like of bool or 0/1 int, shape (nq, L)
    n_relevant : array_like of int, shape (nq,)
    K : int, optional

    Returns
    -------
    float

    Raises
    ------
    TypeError, ValueError
        As :func:`average_precision`.

    Examples
    --------
    >>> mean_average_precision([[1, 0, 1, 0], [0, 1, 0, 0]], n_relevant=[2, 1])
    0.6666666666666666
    """
    return float(np.mean(average_precision(relevance, n_relevant, K)))


def precision_at(relevance: object, k: int) -> float:
    """Precision@k: relevant items in the top k, divided by k, averaged over queries.

    ``precision@k = (1/nq) * sum_q #{i < k : relevance[q, i]} / k``. The divisor is always
    ``k`` (a query with fewer than k relevant items cannot reach 1).

    Parameters
    ----------
    relevance : array_like of bool or 0/1 int, shape (nq, L)
    k : int
        Cut-off, ``1 <= k <= L``.

    Returns
    -------
    float

    Raises
    ------
    TypeError
        If ``relevance`` is not bool or integer, or ``k`` is not an integer.
    ValueError
        If ``relevance`` is not 2-D with at least one row or holds values other than 0/1,
        ``k < 1``, or ``k > L`` (the ranking is too short).

    Examples
    --------
    >>> precision_at([[1, 0, 1, 1], [0, 0, 0, 1]], k=2)
    0.25
    """
    rel = _check_relevance(relevance)
    k = _check_depth(k, "k", rel.shape[1])
    return float(np.mean(_row_hits(rel[:, :k]) / k))


def _precision_within_radius(
    distances: object, relevance: object, r: int, *, full_ranking: bool
) -> float:
    rel = _check_relevance(relevance)
    dist = np.asarray(distances)
    if dist.dtype.kind not in "iu" or dist.dtype == np.bool_:
        raise TypeError(f"distances must hold integer (Hamming) distances, got dtype {dist.dtype}")
    if dist.shape != rel.shape:
        raise ValueError(
            f"distances must have the shape of relevance {rel.shape}, got shape {dist.shape}"
        )
    r = check_int(r, "r", minimum=0)
    if rel.shape[1] < 1:
        raise ValueError("distances must have at least one column (ranked item) per query")
    if dist.min() < 0:
        raise ValueError(f"distances must be >= 0, got {dist.min()}")
    if (dist[:, 1:] < dist[:, :-1]).any():  # not np.diff: it wraps for unsigned
        raise ValueError("distances must be sorted ascending along each row (a ranked list)")
    if not full_ranking:
        cut = np.flatnonzero(dist[:, -1] <= r)
        if cut.size:
            q = int(cut[0])
            raise ValueError(
                f"distances of {cut.size} queries end within the radius (query {q}: last "
                f"distance {dist[q, -1]} <= r={r}), so items within the radius may be missing: "
                "pass a ranking that reaches past the radius (or use retrieval_report with the "
                "full ranking)"
            )
    inside = dist <= r
    n_inside = _row_hits(inside)
    n_good = _row_hits(inside & rel)
    precision = np.divide(n_good, n_inside, out=np.zeros(rel.shape[0]), where=n_inside > 0)
    return float(np.mean(precision))


def precision_within_radius(distances: object, relevance: object, r: int) -> float:
    """Precision within Hamming radius r (inclusive), averaged over queries.

    For query ``q`` let ``B_q = {i : distances[q, i] <= r}`` (its Hamming ball, inclusive as
    in :func:`deephash_ext.range_search`). ``p_q = #{i in B_q : relevance[q, i]} / |B_q|``,
    and ``p_q = 0`` when the ball is empty (the SSDH evaluation convention: a query that
    retrieves nothing scores 0, it is not dropped). The result is ``(1/nq) * sum_q p_q``.
    Items at equal distance are all inside or all outside the ball, so ties do not matter.

    Parameters
    ----------
    distances : array_like of int, shape (nq, L)
        Hamming distances of the ranked lists, ascending along each row. The lists must
        contain every item within the radius, so each row's last distance must be ``> r``
        (search with a large enough k). Because a full ranking cannot be told apart from a
        truncated one here, a row whose every item lies within ``r`` is rejected;
        :func:`retrieval_report`, which knows the database size, accepts it.
    relevance : array_like of bool or 0/1 int, shape (nq, L)
    r : int
        Radius, ``>= 0`` (SSDH uses 2).

    Returns
    -------
    float

    Raises
    ------
    TypeError
        If ``distances`` is not of an integer dtype, ``relevance`` is not bool or integer,
        or ``r`` is not an integer.
    ValueError
        If the shapes differ, ``relevance`` is not 2-D with at least one row and column or
        holds values other than 0/1, ``distances`` is negative or not sorted ascending along
        a row, a row's last distance is ``<= r`` (items in the ball may be missing), or
        ``r < 0``.

    Examples
    --------
    Query 0's ball holds 3 items, 2 relevant; query 1's ball is empty and counts 0.

    >>> precision_within_radius([[0, 1, 2, 5], [3, 4, 4, 6]],
    ...                         [[1, 0, 1, 1], [1, 1, 0, 0]], r=2)
    0.3333333333333333
    """
    return _precision_within_radius(distances, relevance, r, full_ranking=False)


def roc_auc_pairs(distances: object, is_match: object) -> float:
    """ROC AUC of distance as a match score over matching / non-matching pairs.

    The score of a pair is ``-distance`` (closer pairs are more likely matches). With
    ``P`` the matching and ``N`` the non-matching pairs,
    ``AUC = (1/(|P| |N|)) * sum_{p in P, n in N} ([d_p < d_n] + 0.5 [d_p == d_n])``: the
    Mann-Whitney statistic, ties counted half. This equals
    ``sklearn.metrics.roc_auc_score(is_match, -distances)``; it is computed exactly in
    integers (twice the count) and divided once.

    Parameters
    ----------
    distances : array_like of real numbers, shape (n_pairs,)
        Distance of each pair (Hamming or any real distance; NaN is rejected).
    is_match : array_like of bool or 0/1 int, shape (n_pairs,)
        True for a matching pair. Both classes must be present.

    Returns
    -------
    float

    Raises
    ------
    TypeError
        If ``distances`` is not real or ``is_match`` not bool / integer.
    ValueError
        If either is not 1-D, their lengths differ, ``distances`` contains NaN,
        ``is_match`` holds values other than 0/1, or only one class is present.

    Examples
    --------
    Match distances 1, 3; non-match distances 3, 4: pairs (1<3, 1<4, 3=3, 3<4) give
    (1 + 1 + 0.5 + 1) / 4.

    >>> roc_auc_pairs([1, 3, 3, 4], [True, True, False, False])
    0.875
    """
    d = check_real_array(distances, "distances")
    if d.ndim != 1:
        raise ValueError(f"distances must be 1-D (n_pairs,), got shape {d.shape}")
    match = _check_boolean_matrix(is_match, "is_match", 1)
    if match.shape != d.shape:
        raise ValueError(
            f"is_match must have the shape of distances {d.shape}, got shape {match.shape}"
        )
    pos, neg = d[match], np.sort(d[~match])
    if pos.size == 0 or neg.size == 0:
        raise ValueError(
            f"is_match must contain both matching and non-matching pairs, got "
            f"{pos.size} matching and {neg.size} non-matching"
        )
    below = np.searchsorted(neg, pos, side="left")  # negatives closer than the positive
    upto = np.searchsorted(neg, pos, side="right")  # ... or at equal distance
    twice = 2 * (neg.size - upto) + (upto - below)  # 2 per win, 1 per tie
    return float(int(twice.sum(dtype=np.int64)) / (2 * pos.size * neg.size))


# --------------------------------------------------------------------------------------------
# everything at once
# --------------------------------------------------------------------------------------------


def paired_bootstrap_interval(
    scores_a: object,
    scores_b: object,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    random_state: object = 0,
) -> tuple[float, float, float]:
    """Mean difference of paired per-query scores and its bootstrap confidence interval.

    ``scores_a[q]`` and ``scores_b[q]`` are one query's scores under two schemes (e.g. AP
    from :func:`average_precision`, or :func:`recall_per_query`); the queries are the sample.
    Returns ``mean(scores_a - scores_b)`` and the percentile bootstrap interval of that mean
    (``scipy.stats.bootstrap`` on the per-query differences: queries resampled with
    replacement, the pairing kept). An interval that excludes 0 says the ordering of the two
    schemes is not an accident of which queries were drawn; it says nothing about other
    training seeds or data, which vary the schemes themselves.

    Parameters
    ----------
    scores_a, scores_b : array_like of real, shape (nq,)
        Finite per-query scores, ``nq >= 2``, in the same query order.
    confidence : float, keyword-only
        Confidence level, in (0, 1).
    n_resamples : int, keyword-only
        Bootstrap resamples, ``>= 1``.
    random_state : None, int or numpy.random.RandomState, keyword-only
        Seed of the resampling (the default gives the same interval on every call).

    Returns
    -------
    difference, low, high : float

    Raises
    ------
    TypeError
        If the scores are not real numbers, or ``confidence`` / ``n_resamples`` have the
        wrong type.
    ValueError
        If the scores are not 1-D, differ in length, have fewer than 2 queries or non-finite
        values, ``confidence`` is not in (0, 1), ``n_resamples < 1`` or ``random_state`` is
        invalid.

    Examples
    --------
    >>> d, low, high = paired_bootstrap_interval([0.5, 0.75, 1.0, 0.5], [0.25, 0.5, 1.0, 0.5])
    >>> round(d, 4), low <= d <= high
    (0.125, True)
    """
    import scipy.stats

    a = _check_paired_scores(scores_a, "scores_a")
    b = _check_paired_scores(scores_b, "scores_b")
    if a.shape != b.shape:
        raise ValueError(
            f"scores_a and scores_b must have the same length (one score per query each), "
            f"got {a.shape[0]} and {b.shape[0]}"
        )
    confidence = check_real(
        confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True
    )
    n_resamples = check_int(n_resamples, "n_resamples", minimum=1)
    seed = draw_random_state(check_rng(random_state))
    differences = a - b
    interval = scipy.stats.bootstrap(
        (differences,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return float(differences.mean()), float(interval.low), float(interval.high)


def _check_paired_scores(values: object, name: str) -> np.ndarray:
    array = check_real_array(values, name)
    if array.ndim != 1 or array.shape[0] < 2:
        raise ValueError(f"{name} must be 1-D with at least 2 queries, got shape {array.shape}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite")
    return array


def retrieval_report(
    indices: object,
    query_labels: object,
    db_labels: object,
    distances: object = None,
    *,
    recall_ranks: Iterable[int] = (1, 10, 100),
    radius: int | None = None,
) -> dict[str, float]:
    """The ranking protocols of this module for a labelled ranking, by name.

    Builds the relevance with :func:`relevance_from_labels` and reports, in this order:

    * ``"mAP"`` (:func:`mean_average_precision` over the full ranking) when the ranking is
      full (``L == nb``); otherwise ``"mAP@L"`` (the @K convention with ``K = L``, e.g.
      ``"mAP@1000"`` for the top 1000), since a truncated ranking cannot give the full mAP;
    * ``"4xrecall@4"`` (:func:`four_recall_at_4`), when ``L >= 4``;
    * ``"recall@R"`` (:func:`recall_at`) for each ``R`` in ``recall_ranks``. A rank
      ``R > L`` is clipped to ``L`` when the ranking is full (the top R of the database is
      then the whole database, so recall@R = recall@L) and skipped otherwise (unknown);
    * ``"precision@10"`` (:func:`precision_at`), when ``L >= 10``;
    * ``"precision@r<=RADIUS"`` (:func:`precision_within_radius`, empty balls count 0), when
      both ``distances`` and ``radius`` are given; with a full ranking a row may lie entirely
      within the radius.

    Parameters
    ----------
    indices : array_like of int, shape (nq, L)
        Ranked database ids (e.g. from :func:`deephash_ext.search` or
        :func:`rank_by_distance`).
    query_labels : array_like, shape (nq,)
    db_labels : array_like, shape (nb,)
        Every query's label must occur in ``db_labels`` (recall and AP are undefined
        otherwise).
    distances : array_like of int, shape (nq, L), optional
        Hamming distances of the ranked lists; used only for the radius metric.
    recall_ranks : iterable of int, keyword-only
        Cut-offs for recall@R, each ``>= 1``.
    radius : int, optional, keyword-only
        Hamming radius (inclusive) for precision within a radius; needs ``distances``.

    Returns
    -------
    dict of str to float

    Raises
    ------
    TypeError, ValueError
        As the functions it calls; also ValueError if ``radius`` is given without
        ``distances``, and TypeError / ValueError if a ``recall_ranks`` entry is not an
        integer >= 1.

    Examples
    --------
    >>> report = retrieval_report([[0, 2, 1, 3], [1, 3, 2, 0]], query_labels=[0, 1],
    ...                           db_labels=[0, 1, 0, 1], distances=[[0, 1, 3, 3], [1, 1, 1, 1]],
    ...                           recall_ranks=(1, 2, 8), radius=1)
    >>> report
    {'mAP': 1.0, '4xrecall@4': 2.0, 'recall@1': 0.5, 'recall@2': 1.0, 'recall@8': 1.0, \
'precision@r<=1': 0.75}
    """
    if radius is not None and distances is None:
        raise ValueError("radius needs distances (the Hamming distances of the ranked lists)")
    ranks = []
    for R in recall_ranks if not isinstance(recall_ranks, numbers.Integral) else [recall_ranks]:
        ranks.append(check_int(R, "recall_ranks", minimum=1))
    relevance, n_relevant = relevance_from_labels(indices, query_labels, db_labels)
    L, nb = relevance.shape[1], np.asarray(db_labels).shape[0]
    full = L == nb
    report: dict[str, float] = {}
    if full:
        report["mAP"] = mean_average_precision(relevance, n_relevant)
    else:
        report[f"mAP@{L}"] = mean_average_precision(relevance, n_relevant, K=L)
    if L >= 4:
        report["4xrecall@4"] = four_recall_at_4(relevance)
    for R in ranks:
        if R <= L or full:
            report[f"recall@{R}"] = recall_at(relevance, n_relevant, min(R, L))
    if L >= 10:
        report["precision@10"] = precision_at(relevance, 10)
    if radius is not None:
        report[f"precision@r<={radius}"] = _precision_within_radius(
            distances, relevance, radius, full_ranking=full
        )
    return report
