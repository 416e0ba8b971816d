"""The hashing baselines (deephash_ext.baselines): LSH, ITQ, BPBC and PQ.

Codes are compared with float64 NumPy formulas bit for bit, except bits whose projected
value is within MARGIN of 0 (float32 products may round those the other way). LSH is also
compared exactly with its own float32 formula, and PQ's search exactly with a brute-force
NumPy ADC that sums in the documented order.

LSH runs the full scikit-learn estimator checks. ITQ, BPBC and PQ cannot: the checks' data
has a handful of features and rows, fewer than 8 bits of PCA (ITQ), 8 code cells (BPBC) or
256 training rows (PQ), so every fit there raises by design; the contract points are tested
directly here instead (clone, get/set_params, fit returns self, fitted attributes, refit,
pickling, input layouts and dtypes, not-fitted and feature-count errors).
"""

from __future__ import annotations

import pickle

import deephash_ext
import numpy as np
import pytest
from deephash_ext.baselines import BPBC, ITQ, LSH, PQ
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

MARGIN = 1e-4


def _data(seed: int, n: int = 600, d: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


X = _data(0)
X_OTHER = _data(1, n=50)


def _make(name: str, n_bits: int = 32, random_state=0, **params):
    cls = {"LSH": LSH, "ITQ": ITQ, "BPBC": BPBC, "PQ": PQ}[name]
    defaults = {"LSH": {}, "ITQ": {"n_iter": 20}, "BPBC": {"n_iter": 20}, "PQ": {"n_iter": 5}}
    return cls(n_bits=n_bits, random_state=random_state, **{**defaults[name], **params})


NAMES = ["LSH", "ITQ", "BPBC", "PQ"]
BINARY = ["LSH", "ITQ", "BPBC"]

_FITTED: dict[tuple[str, int], object] = {}


def _fitted(name: str, n_bits: int = 32):
    """One fitted model per (name, n_bits) on X with random_state=0 (do not modify it)."""
    key = (name, n_bits)
    if key not in _FITTED:
        _FITTED[key] = _make(name, n_bits).fit(X)
    return _FITTED[key]


def _bits(codes: np.ndarray) -> np.ndarray:
    return np.unpackbits(codes, axis=1, bitorder="little").astype(bool)


def _assert_bits_match(codes: np.ndarray, values: np.ndarray) -> None:
    """codes == [values > 0] packed, except where |values| < MARGIN."""
    assert codes.dtype == np.uint8 and codes.shape == (values.shape[0], values.shape[1] // 8)
    sure = np.abs(values) >= MARGIN
    assert sure.mean() > 0.99
    np.testing.assert_array_equal(_bits(codes)[sure], (values > 0)[sure])


# ==================================================================== shapes, determinism


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n_bits", [8, 64])
def test_codes_have_the_documented_shape_and_dtype(name, n_bits):
    codes = _fitted(name, n_bits).encode(X_OTHER)
    assert codes.dtype == np.uint8 and codes.flags.c_contiguous
    assert codes.shape == (len(X_OTHER), n_bits // 8)  # PQ: M = n_bits // 8 centroid ids


@pytest.mark.parametrize("name", NAMES)
def test_same_random_state_same_codes_other_state_other_codes(name):
    first = _make(name, random_state=7).fit(X).encode(X_OTHER)
    again = _make(name, random_state=np.random.RandomState(7)).fit(X).encode(X_OTHER)
    other = _make(name, random_state=8).fit(X).encode(X_OTHER)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("name", NAMES)
def test_float64_lists_and_layouts_give_the_float32_codes(name):
    model = _fitted(name)
    expected = model.encode(X_OTHER)
    np.testing.assert_array_equal(model.encode(X_OTHER.astype(np.float64)), expected)
    np.testing.assert_array_equal(model.encode(X_OTHER.tolist()), expected)
    np.testing.assert_array_equal(model.encode(np.asfortranarray(X_OTHER)), expected)
    readonly = X_OTHER.copy()
    readonly.flags.writeable = False
    np.testing.assert_array_equal(model.encode(readonly), expected)
    # A float64 fit sees the same float32 values, so it learns the same model.
    refit = _make(name).fit(X.astype(np.float64))
    np.testing.assert_array_equal(refit.encode(X_OTHER), expected)


# ==================================================================== LSH


def test_lsh_bits_are_the_signs_of_unit_norm_projections():
    model = _fitted("LSH", 64)
    P = model.projections_
    assert P.dtype == np.float32 and P.shape == (64, 64)
    np.testing.assert_allclose(np.linalg.norm(P.astype(np.float64), axis=0), 1.0, atol=1e-6)
    expected = np.packbits(X_OTHER @ P > 0, axis=1, bitorder="little")
    np.testing.assert_array_equal(model.encode(X_OTHER), expected)


def test_lsh_is_not_centred():
    # Data far from the origin in a fixed direction: a projection's bit follows that
    # direction for every row (no centring), so most bits are constant.
    model = _fitted("LSH", 64)
    shifted = X_OTHER + 100.0 * np.ones(64, dtype=np.float32)
    bits = _bits(model.encode(shifted))
    constant = np.all(bits == bits[0], axis=0)
    assert constant.mean() > 0.9
    np.testing.assert_array_equal(bits[0][constant], (model.projections_.sum(axis=0) > 0)[constant])


@parametrize_with_checks([LSH(n_bits=8, random_state=0)])
def test_lsh_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ==================================================================== ITQ


def test_itq_learns_pca_and_an_orthogonal_rotation():
    model = _fitted("ITQ", 32)
    eye = np.eye(32)
    C = model.components_.astype(np.float64)
    R = model.rotation_.astype(np.float64)
    assert model.components_.shape == (32, 64) and model.rotation_.shape == (32, 32)
    assert model.mean_.dtype == model.components_.dtype == model.rotation_.dtype == np.float32
    np.testing.assert_allclose(model.mean_, X.mean(axis=0, dtype=np.float64), atol=1e-6)
    np.testing.assert_allclose(C @ C.T, eye, atol=1e-5)
    np.testing.assert_allclose(R.T @ R, eye, atol=1e-5)
    # The components span the top-32 principal subspace of X (float64 SVD).
    Xc = X.astype(np.float64) - X.mean(axis=0)
    top = np.linalg.svd(Xc, full_matrices=False)[2][:32]
    np.testing.assert_allclose(np.linalg.svd(C @ top.T, compute_uv=False), 1.0, atol=1e-4)


def test_itq_quantisation_loss_never_increases_and_matches_its_definition():
    model = _make("ITQ", 32, n_iter=30).fit(X)
    loss = model.quantization_loss_
    assert loss.dtype == np.float64 and loss.shape == (31,)
    assert np.all(np.diff(loss) <= 1e-6 * loss[0]), np.diff(loss).max()
    assert loss[-1] < 0.95 * loss[0]  # the rotation learns something
    V = (X.astype(np.float64) - model.mean_) @ model.components_.T.astype(np.float64)
    Y = V @ model.rotation_.astype(np.float64)
    B = np.where(Y > 0, 1.0, -1.0)
    assert loss[-1] == pytest.approx(np.sum((B - Y) ** 2), rel=1e-4)


def test_itq_codes_match_the_formula():
    model = _fitted("ITQ", 32)
    Xd = X_OTHER.astype(np.float64)
    values = (
        (Xd - model.mean_)
        @ model.components_.T.astype(np.float64)
        @ model.rotation_.astype(np.float64)
    )
    _assert_bits_match(model.encode(X_OTHER), values)


def test_itq_with_no_iteration_keeps_the_random_rotation():
    model = _make("ITQ", 16, n_iter=0).fit(X)
    assert model.quantization_loss_.shape == (1,)
    again = _make("ITQ", 16, n_iter=0).fit(X)
    np.testing.assert_array_equal(model.rotation_, again.rotation_)


def _clustered(seed: int, n: int, d: int = 64, n_clusters: int = 50) -> np.ndarray:
    """Gaussian clusters, full rank with a decaying spectrum, in a random orientation."""
    rng = np.random.default_rng(seed)
    scales = 1.0 / np.sqrt(np.arange(1, d + 1))
    centres = 3.0 * rng.standard_normal((n_clusters, d)) * scales
    Z = centres[rng.integers(0, n_clusters, n)] + rng.standard_normal((n, d)) * scales
    rotation = np.linalg.qr(rng.standard_normal((d, d)))[0]
    return (Z @ rotation).astype(np.float32)


def _recall(model, database, queries, k=10, R=50):
    """Mean fraction of each query's true Euclidean k-NN found in its Hamming top-R."""
    sq = ((queries[:, None, :].astype(np.float64) - database[None]) ** 2).sum(axis=-1)
    true = np.argsort(sq, axis=1, kind="stable")[:, :k]
    _, found = deephash_ext.search(model.encode(database), model.encode(queries), R)
    return np.mean([np.isin(t, f).mean() for t, f in zip(true, found)])


def test_itq_preserves_neighbours_better_than_lsh():
    # 16 bits on clustered 64-d data whose variance is spread over all dimensions: the
    # setting of ITQ's paper (few bits, many informative directions). Over seeds 0-5 ITQ
    # recalls 0.94-0.99 and LSH 0.78-0.84.
    data = _clustered(0, 2100)
    database, queries = data[:2000], data[2000:]
    itq = _recall(ITQ(n_bits=16, random_state=0).fit(database), database, queries)
    lsh = _recall(LSH(n_bits=16, random_state=0).fit(database), database, queries)
    assert itq > lsh + 0.05, (itq, lsh)


# ==================================================================== BPBC


def test_bpbc_projections_are_column_orthonormal_and_codes_match_the_formula():
    model = _fitted("BPBC", 32)
    assert model.shape_ == (8, 8) and model.code_shape_ == (4, 8)
    R1, R2 = model.R1_.astype(np.float64), model.R2_.astype(np.float64)
    assert model.R1_.shape == (8, 4) and model.R2_.shape == (8, 8)
    assert model.R1_.dtype == model.R2_.dtype == model.mean_.dtype == np.float32
    np.testing.assert_allclose(R1.T @ R1, np.eye(4), atol=1e-5)
    np.testing.assert_allclose(R2.T @ R2, np.eye(8), atol=1e-5)
    np.testing.assert_allclose(model.mean_, X.mean(axis=0, dtype=np.float64), atol=1e-6)
    Z = (X_OTHER.astype(np.float64) - model.mean_).reshape(-1, 8, 8)
    values = np.einsum("ia,nij,jb->nab", R1, Z, R2).reshape(len(Z), 32)  # row-major vec
    _assert_bits_match(model.encode(X_OTHER), values)


def test_bpbc_objective_never_decreases_and_matches_its_definition():
    data = _clustered(2, 600)
    model = _make("BPBC", 64, n_iter=30).fit(data)
    objective = model.objective_
    assert objective.shape == (31,)
    assert np.all(np.diff(objective) >= -1e-6 * objective[-1]), np.diff(objective).min()
    assert objective[-1] > 1.02 * objective[0], objective[[0, -1]]
    Z = data.astype(np.float64) - model.mean_
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    Y = np.einsum(
        "ia,nij,jb->nab",
        model.R1_.astype(np.float64),
        Z.reshape(-1, 8, 8),
        model.R2_.astype(np.float64),
    )
    assert objective[-1] == pytest.approx(np.abs(Y).sum(), rel=1e-5)


@pytest.mark.parametrize(
    "d, n_bits, shape, expected_shape, expected_code_shape",
    [
        (64, 8, None, (8, 8), (2, 4)),
        (64, 64, None, (8, 8), (8, 8)),
        (48, 16, None, (6, 8), (4, 4)),
        (8192, 1024, None, (64, 128), (32, 32)),
        (8192, 8192, None, (64, 128), (64, 128)),
        (64, 32, (16, 4), (16, 4), (8, 4)),  # tie between (4, 8) and (8, 4): oriented like d
        (64, 48, (2, 32), (2, 32), (2, 24)),
        (56, 56, None, (7, 8), (7, 8)),
        (104, 8, None, (8, 13), (2, 4)),
        (26, 24, None, (2, 13), (2, 12)),
    ],
)
def test_bpbc_chooses_the_most_square_factorisations(
    d, n_bits, shape, expected_shape, expected_code_shape
):
    data = np.random.default_rng(d).standard_normal((12, d)).astype(np.float32)
    model = BPBC(n_bits=n_bits, shape=shape, n_iter=1, random_state=0).fit(data)
    assert model.shape_ == expected_shape and model.code_shape_ == expected_code_shape
    assert model.encode(data[:3]).shape == (3, n_bits // 8)


def test_bpbc_zero_rows_are_allowed():
    data = np.zeros((10, 16), dtype=np.float32)
    codes = BPBC(n_bits=8, n_iter=3, random_state=0).fit(data).encode(data)
    np.testing.assert_array_equal(codes, 0)  # every projection is 0, and 0 is not > 0


# ==================================================================== PQ


def _adc_reference(centers, codes, queries, k):
    """Brute-force ADC, one query at a time, summing over m = 0 .. M-1 in float32."""
    M, _, sub = centers.shape
    distances = np.empty((len(queries), k), dtype=np.float32)
    indices = np.empty((len(queries), k), dtype=np.int64)
    for i, q in enumerate(queries.astype(np.float32)):
        total = np.zeros(len(codes), dtype=np.float32)
        for m in range(M):
            table = ((q[m * sub : (m + 1) * sub] - centers[m]) ** 2).sum(axis=1)
            total += table[codes[:, m]]
        order = np.lexsort((np.arange(len(codes)), total))[:k]  # by distance, then index
        distances[i], indices[i] = total[order], order
    return distances, indices


def test_pq_search_matches_brute_force_adc_exactly():
    model = _fitted("PQ", 64)
    codes = model.encode(X)
    codes = np.concatenate([codes, codes[::3], codes[5:9]])  # duplicates: ties by index
    queries = X_OTHER[:20]
    for k in (1, 7, 60, len(codes)):
        distances, indices = model.search(codes, queries, k)
        assert distances.dtype == np.float32 and indices.dtype == np.int64
        assert distances.shape == indices.shape == (20, k)
        ref_d, ref_i = _adc_reference(model.cluster_centers_, codes, queries, k)
        np.testing.assert_array_equal(indices, ref_i)
        np.testing.assert_array_equal(distances, ref_d)
    # Ties exist, are ordered by index, and the distances are the float64 values.
    full_d, full_i = model.search(codes, queries, len(codes))
    tied = full_d[:, 1:] == full_d[:, :-1]
    assert tied.any() and np.all(full_i[:, 1:][tied] > full_i[:, :-1][tied])
    recon = np.concatenate([model.cluster_centers_[m][codes[:, m]] for m in range(8)], axis=1)
    exact = ((queries[:, None, :].astype(np.float64) - recon[None]) ** 2).sum(axis=-1)
    np.testing.assert_allclose(full_d, np.take_along_axis(exact, full_i, axis=1), rtol=1e-5)


def test_pq_encode_picks_the_nearest_centroid():
    model = _fitted("PQ", 64)
    codes = model.encode(X_OTHER)
    C = model.cluster_centers_.astype(np.float64)
    assert C.shape == (8, 256, 8) and model.cluster_centers_.dtype == np.float32
    for m in range(8):
        sq = ((X_OTHER[:, None, m * 8 : (m + 1) * 8].astype(np.float64) - C[m]) ** 2).sum(-1)
        best = np.sort(sq, axis=1)
        clear = best[:, 1] - best[:, 0] > 1e-4  # not a near tie
        np.testing.assert_array_equal(codes[clear, m], sq.argmin(axis=1)[clear])


def test_pq_finds_true_nearest_neighbours_far_better_than_chance():
    data = _clustered(1, 1100)
    database, queries = data[:1000], data[1000:]
    model = PQ(n_bits=64, n_iter=10, random_state=0).fit(database)
    _, found = model.search(model.encode(database), queries, 10)
    sq = ((queries[:, None, :].astype(np.float64) - database[None]) ** 2).sum(axis=-1)
    recall = np.mean(np.any(found == sq.argmin(axis=1)[:, None], axis=1))
    assert recall > 0.5  # chance: 10 / 1000


# ==================================================================== sklearn contract


@pytest.mark.parametrize("name", NAMES)
def test_clone_get_set_params_and_refit(name):
    model = _make(name)
    params = model.get_params()
    assert model.fit(X) is model
    assert model.get_params() == params  # fit changes no parameter
    assert all(k.endswith("_") for k in vars(model) if k not in params)
    copy = clone(model)
    assert copy.get_params() == params
    with pytest.raises(NotFittedError):
        copy.encode(X_OTHER)
    np.testing.assert_array_equal(copy.fit(X).encode(X_OTHER), model.encode(X_OTHER))
    np.testing.assert_array_equal(model.fit(X).encode(X_OTHER), copy.encode(X_OTHER))
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.encode(X_OTHER), model.encode(X_OTHER))
    assert model.set_params(random_state=3) is model and model.random_state == 3
    assert model.n_features_in_ == 64


@pytest.mark.parametrize("name", NAMES)
def test_fit_and_encode_leave_their_input_unchanged(name):
    data, before = X.copy(), X.copy()
    model = _make(name).fit(data)
    model.encode(data)
    np.testing.assert_array_equal(data, before)


# ==================================================================== errors


def _raises(exc, match, fn):
    with pytest.raises(exc, match=match):
        fn()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "value, exc",
    [
        (8.0, TypeError),
        ("8", TypeError),
        (True, TypeError),
        (None, TypeError),
        (0, ValueError),
        (-8, ValueError),
        (12, ValueError),
    ],
)
def test_n_bits_must_be_a_positive_multiple_of_8(name, value, exc):
    _raises(exc, r"\bn_bits\b", lambda: _make(name, n_bits=value).fit(X))


@pytest.mark.parametrize(
    "name, value, exc",
    [
        ("ITQ", 1.5, TypeError),
        ("BPBC", "3", TypeError),
        ("PQ", None, TypeError),
        ("ITQ", -1, ValueError),
        ("BPBC", -1, ValueError),
        ("PQ", 0, ValueError),
    ],
)
def test_n_iter_type_and_range(name, value, exc):
    _raises(exc, r"\bn_iter\b", lambda: _make(name, n_iter=value).fit(X))


@pytest.mark.parametrize("name", NAMES)
def test_random_state_must_be_usable(name):
    _raises(ValueError, r"\brandom_state\b", lambda: _make(name, random_state="seed").fit(X))


@pytest.mark.parametrize("name", NAMES)
def test_fit_rejects_nan_and_non_2d_input(name):
    bad = X.copy()
    bad[3, 5] = np.nan
    _raises(ValueError, "NaN", lambda: _make(name).fit(bad))
    _raises(ValueError, "2D", lambda: _make(name).fit(X[0]))


@pytest.mark.parametrize("name", NAMES)
def test_encode_before_fit_raises_not_fitted(name):
    _raises(NotFittedError, name, lambda: _make(name).encode(X))


@pytest.mark.parametrize("name", NAMES)
def test_encode_checks_the_number_of_features(name):
    _raises(ValueError, r"X has 63 features", lambda: _fitted(name).encode(X[:, :63]))


@pytest.mark.parametrize("n, d", [(600, 16), (10, 64)])
def test_itq_n_bits_at_most_min_samples_features(n, d):
    _raises(ValueError, r"\bn_bits\b", lambda: ITQ(n_bits=24).fit(X[:n, :d]))
    ITQ(n_bits=8, n_iter=2).fit(X[:8, :8])  # n_bits == n_samples == n_features is allowed


@pytest.mark.parametrize(
    "shape, exc",
    [
        (8, TypeError),
        ("8x8", TypeError),
        ((8.0, 8), TypeError),
        ((8,), ValueError),
        ((8, 8, 1), ValueError),
        ((0, 64), ValueError),
        ((4, 8), ValueError),
        ((16, 8), ValueError),
    ],
)
def test_bpbc_shape_must_factor_n_features(shape, exc):
    _raises(exc, r"\bshape\b", lambda: BPBC(n_bits=8, shape=shape).fit(X))


@pytest.mark.parametrize("n_bits, shape", [(72, (8, 8)), (24, (5, 5)), (16, (1, 8))])
def test_bpbc_n_bits_needs_a_code_shape_within_the_input_shape(n_bits, shape):
    # (5, 5): 24 <= 25 cells, but no c1 * c2 = 24 has both factors <= 5.
    data = X[:, : shape[0] * shape[1]]
    _raises(ValueError, r"\bn_bits\b", lambda: BPBC(n_bits=n_bits, shape=shape).fit(data))


def test_pq_n_bits_must_split_the_features():
    _raises(ValueError, r"\bn_bits\b", lambda: PQ(n_bits=40).fit(X))  # M = 5 does not divide 64


def test_pq_needs_256_training_rows():
    _raises(ValueError, r"\bX\b.*256", lambda: PQ(n_bits=8).fit(X[:255]))


PQ_SEARCH_CASES = [
    (TypeError, "codes", lambda m, c: m.search(c.astype(np.int16), X_OTHER, 1)),
    (TypeError, "codes", lambda m, c: m.search(c.view(np.int8), X_OTHER, 1)),
    (ValueError, "codes", lambda m, c: m.search(c[:, :7], X_OTHER, 1)),
    (ValueError, "codes", lambda m, c: m.search(c[0], X_OTHER, 1)),
    (ValueError, "queries", lambda m, c: m.search(c, X_OTHER[:, :32], 1)),
    (ValueError, "queries", lambda m, c: m.search(c, X_OTHER[0], 1)),
    (ValueError, "k", lambda m, c: m.search(c, X_OTHER, 0)),
    (ValueError, "k", lambda m, c: m.search(c, X_OTHER, len(c) + 1)),
    (TypeError, "k", lambda m, c: m.search(c, X_OTHER, 2.0)),
]


@pytest.mark.parametrize("exc, match, call", PQ_SEARCH_CASES)
def test_pq_search_errors(exc, match, call):
    model = _fitted("PQ", 64)
    codes = model.encode(X[:50])
    _raises(exc, rf"\b{match}\b", lambda: call(model, codes))


def test_pq_search_before_fit_raises_not_fitted():
    codes = np.zeros((5, 8), dtype=np.uint8)
    _raises(NotFittedError, "PQ", lambda: PQ(n_bits=64).search(codes, X_OTHER, 1))
