"""The RBM: the C++ kernels (deephash_ext._core) against float64 NumPy references, and the
scikit-learn estimator deephash_ext.RBM (contract, reproducibility, learning, errors).

The kernels compute in float32 (BLAS sgemm, a polynomial sigmoid), so they are compared
with float64 references within ~1e-5. A sampled hidden bit u < p, or a rank of the hashing
regulariser, may legitimately go the other way when |u - p| (or the gap between two ranked
probabilities) is tiny: the CD-k comparisons pick the sampling seed so that no decision is
that close, and the encoder comparisons skip bits whose margin is below 1e-4.

Estimator checks that feed data outside [0, 1] are expected failures (rejected by design); a
SquashedRBM run shows every check passes on valid data.
"""

from __future__ import annotations

import deephash_ext
import numpy as np
import pytest
from deephash_ext import RBM, _core
from deephash_ext._blas import ensure_blas
from deephash_ext.rbm import _check_unit_interval
from devices import DEVICES, rbm_kernels
from reference import (
    cd_step_reference,
    encode_layers_reference,
    exact_log_likelihood,
    joint_log_likelihood_bruteforce,
    pack_reference,
    rbm_uniforms_reference,
    sigmoid,
    sigmoid_float32,
    uniform_rank_targets_reference,
)
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import validate_data

TOL = {"rtol": 1e-5, "atol": 1e-5}
SAMPLE_MARGIN = 1e-4  # |u - p| below this: the float32 kernel may sample the other way
RANK_GAP = 2e-6  # two ranked probabilities closer than this may swap in float32


@pytest.fixture(scope="module", autouse=True)
def _blas():
    """The _core RBM kernels need the BLAS loaded (the estimator does this itself)."""
    ensure_blas()


def _model(rng, n_hidden, n_visible, scale=0.1, velocity_scale=0.01):
    """Random float32 (components, hidden_bias, visible_bias, and their three velocities)."""
    shapes = [(n_hidden, n_visible), (n_hidden,), (n_visible,)]
    params = [rng.normal(0.0, scale, s).astype(np.float32) for s in shapes]
    velocities = [rng.normal(0.0, velocity_scale, s).astype(np.float32) for s in shapes]
    return params + velocities


def _binary(rng, shape, density=0.4):
    return (rng.random(shape) < density).astype(np.float32)


def _bits(codes, n_bits):
    return np.unpackbits(codes, axis=1, bitorder="little", count=n_bits)


# ==================================================================== random numbers


@pytest.mark.parametrize(
    "seed, step", [(0, 0), (1, 1), (123456789, 7), (2**62 - 1, 10**6), (2**64 - 1, 2**64 - 1)]
)
def test_rbm_uniforms_match_reference_bit_for_bit(seed, step):
    got = _core._testing.rbm_uniforms(seed, step, 5000)
    assert got.dtype == np.float32 and got.shape == (5000,)
    np.testing.assert_array_equal(got, rbm_uniforms_reference(seed, step, 5000))
    assert got.min() >= 0.0 and got.max() < 1.0


def test_rbm_uniforms_streams_differ_and_look_uniform():
    a = _core._testing.rbm_uniforms(5, 0, 100_000)
    assert not np.array_equal(a[:1000], _core._testing.rbm_uniforms(5, 1, 1000))
    assert not np.array_equal(a[:1000], _core._testing.rbm_uniforms(6, 0, 1000))
    # A prefix of a longer request is the shorter request (values depend on the index only).
    np.testing.assert_array_equal(a[:777], _core._testing.rbm_uniforms(5, 0, 777))
    hist = np.histogram(a, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(hist - 10_000) < 500), hist  # ~5 sigma
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 0.02


# ==================================================================== rank targets


def _rank_inputs():
    rng = np.random.default_rng(7)
    return {
        "random": rng.random((13, 9)).astype(np.float32),
        "ties": rng.choice(np.float32([0.0, 0.25, 1.0]), size=(17, 11)),
        "constant": np.full((6, 5), 0.5, dtype=np.float32),
        "one-row": rng.random((1, 12)).astype(np.float32),
        "one-col": rng.random((12, 1)).astype(np.float32),
        "one-cell": np.float32([[0.3]]),
        "duplicate-rows": np.repeat(rng.random((3, 8)).astype(np.float32), 4, axis=0),
    }


@pytest.mark.parametrize("name", list(_rank_inputs()))
def test_uniform_rank_targets_match_stable_argsort_reference(name):
    p = _rank_inputs()[name]
    t = _core._testing.uniform_rank_targets(p)
    assert t.dtype == np.float32 and t.shape == p.shape
    np.testing.assert_allclose(t, uniform_rank_targets_reference(p), rtol=0, atol=1e-6)


def test_uniform_rank_targets_ties_go_to_the_smaller_index():
    # All equal: ranks are the indices, so t[r, c] = ((c + .5) / m + (r + .5) / n) / 2.
    n, m = 4, 6
    t = _core._testing.uniform_rank_targets(np.zeros((n, m), dtype=np.float32))
    expected = 0.5 * ((np.arange(m) + 0.5)[None, :] / m + (np.arange(n) + 0.5)[:, None] / n)
    np.testing.assert_allclose(t, expected, rtol=0, atol=1e-7)


def test_uniform_rank_targets_large_threaded(rng, num_threads):
    # The size inside a real training step (hidden-major 1024 x 100), large enough to split.
    p = rng.random((1024, 100)).astype(np.float32)
    p[:, 50:60] = p[:, 40:50]  # some exact ties across columns
    np.testing.assert_allclose(
        _core._testing.uniform_rank_targets(p), uniform_rank_targets_reference(p), rtol=0, atol=1e-6
    )


def test_uniform_rank_targets_are_quantiles(rng):
    p = rng.random((40, 24)).astype(np.float32)
    t = _core._testing.uniform_rank_targets(p)
    assert t.mean() == pytest.approx(0.5, abs=1e-6)
    assert 0.0 < t.min() and t.max() < 1.0
    # Ordered like p along both axes where the two rankings agree: the largest entry of
    # the matrix has the largest target, the smallest the smallest.
    assert t.flat[p.argmax()] == t.max() and t.flat[p.argmin()] == t.min()


# ==================================================================== CD-k kernel


def _reference_problem(rng, n_rows, n_visible, n_hidden, n_order, data="binary", **hyper):
    """Draws (V, order, model arrays, sampling seed) with no near-boundary decision (see the
    module docstring; most draws qualify) and returns them with the reference result."""
    for seed in range(100):
        if data == "binary":
            V = _binary(rng, (n_rows, n_visible))
        elif data == "gaussian":  # standardised real values, for Gaussian visible units
            V = rng.normal(0.0, 1.0, (n_rows, n_visible)).astype(np.float32)
        else:
            V = rng.random((n_rows, n_visible)).astype(np.float32)
        order = rng.permutation(n_rows)[:n_order].astype(np.int64)
        arrays = _model(rng, n_hidden, n_visible, scale=0.3)
        ref = cd_step_reference(
            *arrays, V, order, seed=seed, gaussian_visible=data == "gaussian", **hyper
        )
        info = ref[-1]
        if info["min_sample_margin"] > SAMPLE_MARGIN and info["min_rank_gap"] > RANK_GAP:
            return V, order, arrays, seed, ref
    pytest.fail("every draw had a near-boundary decision")


# (cd_k, hashing_reg, first_step, batch_size); 29 rows in order, so batch_size 8 leaves a
# partial last batch of 5 rows (whose samples still use index (g * 8 + r) * n_hidden + j).
CD_CASES = [
    (1, 0.0, 0, 8),
    (1, 0.3, 11, 8),
    (2, 0.0, 11, 8),
    (2, 0.3, 0, 8),
    (2, 1.0, 3, 8),
    (3, 0.5, 5, 64),  # one batch, B = len(order) = 29
    (2, 0.3, 2, 1),  # batches of one row
]


@pytest.mark.parametrize(
    "cd_k, hashing_reg, first_step, batch_size",
    CD_CASES,
    ids=[f"k{k}-lam{lam}-step{s}-bs{bs}" for k, lam, s, bs in CD_CASES],
)
@pytest.mark.parametrize("data", ["binary", "probabilities", "gaussian"])
@pytest.mark.parametrize("device", DEVICES)
def test_cd_train_matches_reference(rng, device, data, cd_k, hashing_reg, first_step, batch_size):
    n_visible, n_hidden, n_rows = 20, 16, 40
    hyper = dict(
        batch_size=batch_size,
        learning_rate=0.1,
        momentum=0.5,
        weight_decay=0.01,
        hashing_reg=hashing_reg,
        cd_k=cd_k,
        first_step=first_step,
    )
    V, order, arrays, seed, ref = _reference_problem(
        rng, n_rows, n_visible, n_hidden, 29, data, **hyper
    )
    assert ref[-1]["n_batches"] == -(-29 // batch_size)

    got = [a.copy() for a in arrays]
    kernels, where = rbm_kernels(device)
    kernels.rbm_cd_train(
        *got,
        V,
        order,
        batch_size=batch_size,
        learning_rate=0.1,
        momentum=0.5,
        weight_decay=0.01,
        hashing_reg=hashing_reg,
        cd_k=cd_k,
        seed=seed,
        first_step=first_step,
        gaussian_visible=data == "gaussian",
        **where,
    )
    names = [
        "components",
        "hidden_bias",
        "visible_bias",
        "components_velocity",
        "hidden_velocity",
        "visible_velocity",
    ]
    for name, g, r in zip(names, got, ref[:6]):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, r, **TOL, err_msg=name)
    # The comparison is not vacuous: the update is far larger than the tolerance.
    assert np.abs(got[0] - arrays[0]).max() > 1e-2


def test_cd_train_sampling_matters(rng):
    """Another seed (or another first_step) gives another result: samples are really used."""
    V = _binary(rng, (30, 12))
    order = np.arange(30, dtype=np.int64)
    arrays = _model(rng, 8, 12)

    def run(seed, first_step, cd_k):
        out = [a.copy() for a in arrays]
        _core.rbm_cd_train(
            *out,
            V,
            order,
            batch_size=10,
            learning_rate=0.1,
            momentum=0.5,
            weight_decay=0.0,
            hashing_reg=0.0,
            cd_k=cd_k,
            seed=seed,
            first_step=first_step,
        )
        return out[0]

    base = run(1, 0, 1)
    np.testing.assert_array_equal(base, run(1, 0, 1))
    assert np.abs(base - run(2, 0, 1)).max() > 1e-3
    assert np.abs(base - run(1, 1, 1)).max() > 1e-3
    assert np.abs(run(1, 0, 2) - base).max() > 1e-3


def test_cd_train_split_into_calls_equals_one_call(rng):
    """Minibatch b uses stream first_step + b: full batches may be trained call by call."""
    V = _binary(rng, (50, 12))
    order = rng.permutation(50).astype(np.int64)
    arrays = _model(rng, 8, 12)
    one = [a.copy() for a in arrays]
    _core.rbm_cd_train(
        *one,
        V,
        order,
        batch_size=10,
        learning_rate=0.1,
        momentum=0.5,
        weight_decay=0.01,
        hashing_reg=0.3,
        cd_k=2,
        seed=42,
        first_step=3,
    )
    split = [a.copy() for a in arrays]
    for b in range(5):
        _core.rbm_cd_train(
            *split,
            V,
            np.ascontiguousarray(order[b * 10 : (b + 1) * 10]),
            batch_size=10,
            learning_rate=0.1,
            momentum=0.5,
            weight_decay=0.01,
            hashing_reg=0.3,
            cd_k=2,
            seed=42,
            first_step=3 + b,
        )
    for a, b in zip(one, split):
        np.testing.assert_array_equal(a, b)


def test_cd_train_empty_order_changes_nothing(rng):
    arrays = _model(rng, 8, 12)
    got = [a.copy() for a in arrays]
    _core.rbm_cd_train(
        *got,
        _binary(rng, (5, 12)),
        np.zeros(0, dtype=np.int64),
        batch_size=10,
        learning_rate=0.1,
        momentum=0.5,
        weight_decay=0.01,
        hashing_reg=0.0,
        cd_k=1,
        seed=0,
        first_step=0,
    )
    for a, b in zip(arrays, got):
        np.testing.assert_array_equal(a, b)


def test_cd_train_rejects_bad_order(rng):
    arrays = _model(rng, 8, 12)
    V = _binary(rng, (5, 12))
    with pytest.raises(TypeError, match="order"):
        _core.rbm_cd_train(
            *arrays,
            V,
            np.arange(5, dtype=np.int32),
            batch_size=10,
            learning_rate=0.1,
            momentum=0.5,
            weight_decay=0.0,
            hashing_reg=0.0,
            cd_k=1,
            seed=0,
            first_step=0,
        )
    for bad in (5, -1):
        before = [a.copy() for a in arrays]
        with pytest.raises(ValueError, match="order"):
            _core.rbm_cd_train(
                *arrays,
                V,
                np.array([0, bad], dtype=np.int64),
                batch_size=10,
                learning_rate=0.1,
                momentum=0.5,
                weight_decay=0.0,
                hashing_reg=0.0,
                cd_k=1,
                seed=0,
                first_step=0,
            )
        for a, b in zip(before, arrays):  # validated before any update
            np.testing.assert_array_equal(a, b)


# ======================================================= element-wise kernels per SIMD level


def _exact_layer(rng, n_hidden, n_visible):
    """Weights and biases on a 2^-10 grid small enough that every sgemm sum is exact in
    float32 whatever its order; biases reach past the sigmoid's +-87 clamp."""
    W = (rng.integers(-64, 65, (n_hidden, n_visible)) / 1024).astype(np.float32)
    b = (rng.integers(-100 * 1024, 100 * 1024, n_hidden) / 1024).astype(np.float32)
    c = (rng.integers(-100 * 1024, 100 * 1024, n_visible) / 1024).astype(np.float32)
    return W, b, c


def test_sigmoid_is_bit_exact_at_every_simd_level(rng, simd_level):
    """With exact pre-activations, the probabilities equal the float32 reference sigmoid bit
    for bit at every level; 1021 and 603 units leave vector tails."""
    W, b, c = _exact_layer(rng, 1021, 603)
    V = _binary(rng, (37, 603), 0.3)
    H = _binary(rng, (37, 1021), 0.5)
    ph = _core.rbm_hidden_probabilities(W, b, V)
    np.testing.assert_array_equal(ph, sigmoid_float32(V.astype(np.float64) @ W.T + b))
    pv = _core.rbm_visible_probabilities(W, c, H)
    np.testing.assert_array_equal(pv, sigmoid_float32(H.astype(np.float64) @ W + c))
    assert (ph == 1).any() and (ph < 1e-30).any()  # the clamps were reached


@pytest.mark.parametrize("hashing_reg", [0.0, 0.3])
def test_cd_train_is_identical_at_every_simd_level(rng, simd_level, hashing_reg):
    """Every level's element-wise loops (sigmoid, Bernoulli sampling, bias sums) give the
    same weights as the scalar ones, bit for bit. Minibatches of 300 rows draw their
    samples in two chunks; 37 hidden and 53 visible units leave vector tails."""
    V = rng.random((620, 53)).astype(np.float32)
    order = rng.permutation(620).astype(np.int64)
    arrays = _model(rng, 37, 53, scale=0.3)

    def train():
        out = [a.copy() for a in arrays]
        _core.rbm_cd_train(
            *out,
            V,
            order,
            batch_size=300,
            learning_rate=0.1,
            momentum=0.5,
            weight_decay=0.01,
            hashing_reg=hashing_reg,
            cd_k=2,
            seed=7,
            first_step=0,
        )
        return out

    got = train()
    deephash_ext.set_simd_level("scalar")
    try:
        scalar = train()
    finally:
        deephash_ext.set_simd_level(simd_level)
    for a, b in zip(got, scalar):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("hashing_reg", [0.0, 0.3])
def test_cd_train_matches_reference_beyond_one_sampling_chunk(rng, simd_level, hashing_reg):
    """Minibatches of 300 rows (samples drawn 256 at a time) against the reference."""
    n_visible, n_hidden, n_rows = 20, 4, 310
    hyper = dict(
        batch_size=300,
        learning_rate=0.1,
        momentum=0.5,
        weight_decay=0.01,
        hashing_reg=hashing_reg,
        cd_k=2,
        first_step=5,
    )
    V, order, arrays, seed, ref = _reference_problem(
        rng, n_rows, n_visible, n_hidden, n_rows, **hyper
    )
    got = [a.copy() for a in arrays]
    _core.rbm_cd_train(
        *got,
        V,
        order,
        batch_size=300,
        learning_rate=0.1,
        momentum=0.5,
        weight_decay=0.01,
        hashing_reg=hashing_reg,
        cd_k=2,
        seed=seed,
        first_step=5,
    )
    for g, r in zip(got, ref[:6]):
        np.testing.assert_allclose(g, r, **TOL)


@pytest.mark.parametrize("cd_k", [1, 2])
def test_cd_train_matches_reference_with_minibatches_wider_than_a_panel(rng, num_threads, cd_k):
    """Minibatches of 1100 rows with 2 hidden and 20 visible units: the hidden products are
    cut into minibatch (column) panels and the reconstruction into row panels, so every
    element-wise step must keep to its panel (a panel-blind epilogue applied the sigmoid
    twice here) and the bias sums must wait for the whole product. (Without the hashing
    regulariser: ranks among 1100 probabilities are too close for a float32 comparison.)"""
    n_visible, n_hidden, n_rows = 20, 2, 2300
    hyper = dict(
        batch_size=1100,
        learning_rate=0.1,
        momentum=0.5,
        weight_decay=0.01,
        hashing_reg=0.0,
        cd_k=cd_k,
        first_step=0,
    )
    V, order, arrays, seed, ref = _reference_problem(
        rng, n_rows, n_visible, n_hidden, n_rows, **hyper
    )
    assert ref[-1]["n_batches"] == 3
    got = [a.copy() for a in arrays]
    _core.rbm_cd_train(
        *got,
        V,
        order,
        batch_size=1100,
        learning_rate=0.1,
        momentum=0.5,
        weight_decay=0.01,
        hashing_reg=0.0,
        cd_k=cd_k,
        seed=seed,
        first_step=0,
    )
    for g, r in zip(got, ref[:6]):
        np.testing.assert_allclose(g, r, **TOL)


# ==================================================================== inference kernels


def test_hidden_and_visible_probabilities_match_reference(rng, num_threads):
    # Large enough for several sgemm panels and several threads in the sigmoid pass.
    W, b, c = (rng.normal(0, 0.05, s).astype(np.float32) for s in [(1024, 600), 1024, 600])
    V = _binary(rng, (200, 600), 0.3)
    ph = _core.rbm_hidden_probabilities(W, b, V)
    assert ph.dtype == np.float32 and ph.shape == (200, 1024)
    np.testing.assert_allclose(ph, sigmoid(V.astype(np.float64) @ W.T + b), **TOL)
    pv = _core.rbm_visible_probabilities(W, c, ph)
    assert pv.dtype == np.float32 and pv.shape == (200, 600)
    np.testing.assert_allclose(pv, sigmoid(ph.astype(np.float64) @ W + c), **TOL)


def test_sigmoid_saturates_cleanly():
    W = np.float32([[1.0]])
    x = np.float32([[0.0], [1.0]])
    for bias, expected in [(200.0, 1.0), (-200.0, 0.0), (30.0, 1.0), (-30.0, sigmoid(-30.0))]:
        p = _core.rbm_hidden_probabilities(W, np.float32([bias]), x)
        assert np.all(np.isfinite(p))
        np.testing.assert_allclose(p[0, 0], expected, rtol=1e-5, atol=1e-30)
    p = _core.rbm_hidden_probabilities(W, np.float32([0.0]), np.float32([[0.0]]))
    assert p[0, 0] == 0.5


@pytest.mark.parametrize("with_thresholds", [False, True])
def test_mean_projection_matches_reference(rng, num_threads, with_thresholds):
    X = rng.random((1100, 40)).astype(np.float32)  # > 512 rows: several row blocks
    W = rng.normal(0, 0.1, (24, 40)).astype(np.float32)
    thr = rng.random(40).astype(np.float32) if with_thresholds else None
    Z = (X > thr) if with_thresholds else X
    got = _core.mean_projection(X, thr, W)
    assert got.dtype == np.float32 and got.shape == (24,)
    np.testing.assert_allclose(got, (Z.astype(np.float64) @ W.T).mean(axis=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("widths", [[16], [24, 16], [32, 20, 8]], ids=lambda w: f"layers{len(w)}")
@pytest.mark.parametrize("with_thresholds", [False, True])
@pytest.mark.parametrize("device", DEVICES)
def test_encode_layers_matches_reference(rng, num_threads, device, widths, with_thresholds):
    n, d = 1300, 40  # > 512 rows: several row blocks
    X = rng.random((n, d)).astype(np.float32)
    thr = rng.random(d).astype(np.float32) if with_thresholds else None
    weights, offsets, z = [], [], (X > thr) if with_thresholds else X
    for width in widths:
        W = rng.normal(0, 1.0, (width, z.shape[1])).astype(np.float32)
        off = (z.astype(np.float64) @ W.T).mean(axis=0).astype(np.float32)  # balanced bits
        weights.append(W)
        offsets.append(off)
        z = (z.astype(np.float64) @ W.T > off).astype(np.float32)
    kernels, where = rbm_kernels(device)
    codes = kernels.encode_layers(X, thr, weights, offsets, **where)
    assert codes.dtype == np.uint8 and codes.shape == (n, widths[-1] // 8)
    ref_bits, margin = encode_layers_reference(X, thr, weights, offsets)
    sure = margin >= 1e-4
    assert sure.mean() > 0.95  # only a few rows have a near-boundary unit anywhere
    np.testing.assert_array_equal(_bits(codes, widths[-1])[sure], ref_bits[sure])
    np.testing.assert_array_equal(codes[sure], pack_reference(ref_bits)[sure])
    # Bits are neither all 0 nor all 1 (the comparison is not vacuous).
    assert 0.2 < ref_bits.mean() < 0.8


def test_encode_layers_rejects_last_width_not_multiple_of_8(rng):
    X = rng.random((4, 6)).astype(np.float32)
    W = rng.random((12, 6)).astype(np.float32)
    with pytest.raises(ValueError, match="multiple of 8"):
        _core.encode_layers(X, None, [W], [np.zeros(12, np.float32)])


# ==================================================================== exact likelihood


def test_exact_log_likelihood_reference_agrees_with_joint_enumeration(rng):
    W, b, c = rng.normal(0, 1, (4, 6)), rng.normal(0, 1, 4), rng.normal(0, 1, 6)
    V = _binary(rng, (30, 6))
    assert exact_log_likelihood(W, b, c, V) == pytest.approx(
        joint_log_likelihood_bruteforce(W, b, c, V), rel=1e-10
    )
    # A model with no weights is a product of Bernoullis.
    p = sigmoid(c)
    expected = np.mean(np.sum(V * np.log(p) + (1 - V) * np.log1p(-p), axis=1))
    assert exact_log_likelihood(np.zeros((4, 6)), b, c, V) == pytest.approx(expected, rel=1e-10)


def _two_prototypes(rng, n=200, noise=0.05):
    protos = np.float32([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]])
    V = protos[rng.integers(0, 2, n)]
    return np.abs(V - (rng.random(V.shape) < noise)).astype(np.float32)


def test_training_raises_exact_log_likelihood(rng):
    """6 visible, 4 hidden units: the partition function sums 2**6 free energies exactly."""
    V = _two_prototypes(rng)
    kwargs = dict(n_hidden=4, batch_size=10, momentum=0.5, random_state=0)
    # The initial model: a learning rate too small to move any float32 parameter.
    initial = RBM(learning_rate=1e-20, n_epochs=1, **kwargs).fit(V)
    trained = RBM(learning_rate=0.1, n_epochs=15, **kwargs).fit(V)  # 300 steps
    assert trained.n_steps_ == 300

    def ll(m):
        return exact_log_likelihood(m.components_, m.intercept_hidden_, m.intercept_visible_, V)

    ll0, ll1 = ll(initial), ll(trained)
    # Initial: ~6 log(1/2) = -4.16 (independent fair bits); the data's own entropy bound is
    # log(1/2) + 6 H(0.05) = -1.89.
    assert ll0 < -4.0
    assert ll1 > ll0 + 1.5, (ll0, ll1)
    # Reconstructions also improve.
    assert trained.reconstruction_error(V).mean() < 0.5 * initial.reconstruction_error(V).mean()


# ==================================================================== reproducibility


def _fit_big(threads, random_state=0, n_features=600, **kwargs):
    deephash_ext.set_num_threads(threads)
    V = _binary(np.random.default_rng(11), (250, n_features), 0.3)  # batches of 100, 100, 50
    params = dict(
        n_hidden=1024,
        batch_size=100,
        n_epochs=1,
        cd_k=2,
        hashing_reg=0.3,
        learning_rate=0.05,
        random_state=random_state,
    )
    params.update(kwargs)
    return RBM(**params).fit(V), V


@pytest.mark.parametrize("n_features", [600, 4200])
def test_fit_is_identical_at_any_thread_count(restore_num_threads, n_features):
    """Panels of 512 rows or columns (1024 columns from 4096 on: 4200 features) and
    element-wise passes of >= 32768 elements per thread: 1024 hidden units x 100 rows per
    batch use 2-3 threads."""
    ref, V = _fit_big(1, n_features=n_features)
    for threads in (2, 3):
        model, _ = _fit_big(threads, n_features=n_features)
        for name in ("components_", "intercept_hidden_", "intercept_visible_", "hidden_offsets_"):
            np.testing.assert_array_equal(
                getattr(model, name), getattr(ref, name), err_msg=f"{name} at {threads} threads"
            )
        np.testing.assert_array_equal(model.encode(V), ref.encode(V))
        np.testing.assert_array_equal(model.transform(V), ref.transform(V))
    # The comparison is not vacuous: training moved the weights.
    assert np.abs(ref.components_).max() > 0.05


def test_random_state_controls_the_model(rng):
    V = _binary(rng, (120, 20))
    kwargs = dict(n_hidden=8, n_epochs=3, batch_size=20, learning_rate=0.05)
    a = RBM(random_state=3, **kwargs).fit(V)
    b = RBM(random_state=3, **kwargs).fit(V)
    c = RBM(random_state=4, **kwargs).fit(V)
    np.testing.assert_array_equal(a.components_, b.components_)
    np.testing.assert_array_equal(a.intercept_hidden_, b.intercept_hidden_)
    np.testing.assert_array_equal(a.hidden_offsets_, b.hidden_offsets_)
    assert not np.array_equal(a.components_, c.components_)
    # A RandomState instance seeds like its integer; refitting the same instance goes on.
    d = RBM(random_state=np.random.RandomState(3), **kwargs).fit(V)
    np.testing.assert_array_equal(a.components_, d.components_)
    assert not np.array_equal(d.components_, d.fit(V).components_)
    # Refitting an estimator with an integer seed starts over: fit is idempotent.
    np.testing.assert_array_equal(a.fit(V).components_, b.components_)


def test_partial_fit_twice_from_scratch_is_reproducible(rng):
    V1, V2 = _binary(rng, (70, 20)), _binary(rng, (45, 20))
    models = []
    for _ in range(2):
        m = RBM(n_hidden=8, batch_size=20, learning_rate=0.05, cd_k=2, random_state=5)
        assert m.partial_fit(V1) is m
        assert m.partial_fit(V2) is m
        models.append(m)
    a, b = models
    for name in ("components_", "intercept_hidden_", "intercept_visible_", "hidden_offsets_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.n_steps_ == b.n_steps_ == 4 + 3


def test_partial_fit_running_offsets_and_steps(rng):
    V1, V2 = _binary(rng, (70, 20)), _binary(rng, (45, 20))
    m = RBM(n_hidden=8, batch_size=20, learning_rate=0.05, random_state=5).partial_fit(V1)
    assert m.n_steps_ == 4
    W1 = m.components_.astype(np.float64)
    np.testing.assert_allclose(m.hidden_offsets_, (V1 @ W1.T).mean(axis=0), rtol=1e-5, atol=1e-6)
    m.partial_fit(V2)
    assert m.n_steps_ == 4 + 3
    W2 = m.components_.astype(np.float64)
    expected = (70 * (V1 @ W1.T).mean(axis=0) + 45 * (V2 @ W2.T).mean(axis=0)) / 115
    np.testing.assert_allclose(m.hidden_offsets_, expected, rtol=1e-5, atol=1e-6)


def test_partial_fit_after_fit_continues(rng):
    V = _binary(rng, (60, 20))
    m = RBM(n_hidden=8, n_epochs=2, batch_size=20, learning_rate=0.05, random_state=0).fit(V)
    assert m.n_steps_ == 6
    W = m.components_.copy()
    m.partial_fit(V)
    assert m.n_steps_ == 9
    assert m.components_.shape == W.shape and not np.array_equal(m.components_, W)


# ==================================================================== hashing regulariser


def test_hashing_regulariser_balances_bit_rates():
    """Sparse data (5 % ones): a plain RBM's hidden units fire (p > 0.5) for almost all or
    almost no samples; lambda = 0.5 pushes every unit to fire for half of them."""
    V = _binary(np.random.default_rng(3), (1000, 64), 0.05)
    kwargs = dict(n_hidden=32, learning_rate=0.05, n_epochs=10, batch_size=50, random_state=0)

    def imbalance(model):
        rates = (model.transform(V) > 0.5).mean(axis=0)
        return float(np.abs(rates - 0.5).mean())

    plain = imbalance(RBM(hashing_reg=0.0, **kwargs).fit(V))
    regularised = imbalance(RBM(hashing_reg=0.5, **kwargs).fit(V))
    assert plain > 0.3, plain  # the data does make the plain RBM's bits unbalanced
    assert regularised < 0.5 * plain, (plain, regularised)


# ==================================================================== scikit-learn checks

DATA_OUTSIDE_UNIT_INTERVAL = "data outside [0, 1] is rejected by design"
# Determined empirically (scikit-learn 1.9): each of these feeds data outside [0, 1]
# (positive_only only makes it non-negative) and gets the documented ValueError.
EXPECTED_FAILED_CHECKS = {
    name: DATA_OUTSIDE_UNIT_INTERVAL
    for name in [
        "check_dict_unchanged",
        "check_dont_overwrite_parameters",
        "check_estimators_dtypes",
        "check_estimators_fit_returns_self",
        "check_estimators_overwrite_params",
        "check_estimators_pickle",
        "check_f_contiguous_array_estimator",
        "check_fit2d_1feature",
        "check_fit2d_1sample",
        "check_fit2d_predict1d",
        "check_fit_check_is_fitted",
        "check_fit_idempotent",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_n_features_in",
        "check_n_features_in_after_fitting",
        "check_pipeline_consistency",
        "check_readonly_memmap_input",
        "check_transformer_data_not_an_array",
        "check_transformer_general",
    ]
}
EXPECTED_FAILED_CHECKS.update(
    {
        # Also fed data outside [0, 1]; on valid data it passes (see the SquashedRBM run below).
        "check_transformer_preserve_dtypes": DATA_OUTSIDE_UNIT_INTERVAL,
    }
)


@parametrize_with_checks(
    [RBM(n_hidden=8, n_epochs=2, random_state=0, learning_rate=0.05)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
    xfail_strict=True,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


class SquashedRBM(RBM):
    """RBM seeing logistic(x) element-wise instead of x: every check's data is then valid,
    so the checks that RBM fails only for data outside [0, 1] exercise its real behaviour
    here (guarding against failures hidden behind the range check)."""

    def _validate_V(self, V, *, reset):
        V = validate_data(self, V, dtype=np.float32, order="C", reset=reset)
        V = sigmoid(V).astype(np.float32)
        _check_unit_interval(V)
        return V

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = False  # negative input is valid after squashing
        return tags


@parametrize_with_checks(
    [SquashedRBM(n_hidden=8, n_epochs=2, random_state=0, learning_rate=0.05)], xfail_strict=True
)
def test_sklearn_estimator_checks_on_valid_data(estimator, check):
    check(estimator)


# ==================================================================== errors

V_OK = _binary(np.random.default_rng(0), (30, 10))

INVALID_PARAMS = [
    # integers: type, then range
    *[
        (name, value, TypeError)
        for name in ("n_hidden", "batch_size", "n_epochs", "cd_k")
        for value in (2.0, 2.5, True, np.bool_(True), "2", None)
    ],
    *[
        (name, value, ValueError)
        for name in ("n_hidden", "batch_size", "n_epochs", "cd_k")
        for value in (0, -1, np.int64(0))
    ],
    # reals: type, then range (non-finite included)
    *[
        (name, value, TypeError)
        for name in ("learning_rate", "momentum", "weight_decay", "hashing_reg")
        for value in ("0.1", None, True, [0.1], 1j)
    ],
    ("learning_rate", 0.0, ValueError),
    ("learning_rate", -0.1, ValueError),
    ("learning_rate", np.inf, ValueError),
    ("learning_rate", np.nan, ValueError),
    ("momentum", -0.1, ValueError),
    ("momentum", 1.0, ValueError),
    ("momentum", 1.5, ValueError),
    ("momentum", np.nan, ValueError),
    ("weight_decay", -1e-6, ValueError),
    ("weight_decay", np.inf, ValueError),
    ("weight_decay", np.nan, ValueError),
    ("hashing_reg", -0.1, ValueError),
    ("hashing_reg", 1.0001, ValueError),
    ("hashing_reg", np.nan, ValueError),
    ("hashing_reg", -np.inf, ValueError),
]


@pytest.mark.parametrize(
    "name, value, exc", INVALID_PARAMS, ids=[f"{n}={v!r}" for n, v, _ in INVALID_PARAMS]
)
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_invalid_hyper_parameter_raises_in_fit(name, value, exc, method):
    model = RBM(**{"n_hidden": 8, "n_epochs": 1, "random_state": 0, name: value})  # accepted
    assert getattr(model, name) is value
    with pytest.raises(exc, match=rf"\b{name}\b"):
        getattr(model, method)(V_OK)
    assert not hasattr(model, "components_")


@pytest.mark.parametrize(
    "name, value",
    [
        ("n_hidden", np.int32(8)),
        ("batch_size", 1000),
        ("n_epochs", np.int64(1)),
        ("cd_k", 3),
        ("learning_rate", np.float32(0.01)),
        ("learning_rate", 1),
        ("momentum", 0.0),
        ("momentum", 0.999),
        ("weight_decay", 0),
        ("hashing_reg", 0.0),
        ("hashing_reg", 1.0),
        ("hashing_reg", 1),
    ],
)
def test_valid_edge_hyper_parameters_fit(name, value):
    model = RBM(**{"n_hidden": 8, "n_epochs": 1, "random_state": 0, name: value}).fit(V_OK)
    assert np.all(np.isfinite(model.components_))


@pytest.mark.parametrize(
    "name, value",
    [("learning_rate", -1.0), ("momentum", 1.5), ("hashing_reg", 2.0), ("batch_size", 0)],
)
def test_partial_fit_on_fitted_model_validates_hyper_parameters(name, value):
    model = RBM(n_hidden=8, n_epochs=1, random_state=0).fit(V_OK).set_params(**{name: value})
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        model.partial_fit(V_OK)


BAD_V = {
    "above-1": np.full((5, 10), 1.5),
    "below-0": np.full((5, 10), -0.01),
    "one-bad-cell": np.vstack([np.zeros((4, 10)), np.r_[np.zeros(9), 1.0001]]),
    "nan": np.where(np.eye(5, 10) > 0, np.nan, 0.5),
    "inf": np.where(np.eye(5, 10) > 0, np.inf, 0.5),
    "neg-inf": np.where(np.eye(5, 10) > 0, -np.inf, 0.5),
}


OUT_OF_RANGE = ("above-1", "below-0", "one-bad-cell")


@pytest.mark.parametrize("kind", list(BAD_V))
@pytest.mark.parametrize(
    "method", ["fit", "partial_fit", "transform", "encode", "reconstruction_error"]
)
def test_invalid_V_raises(kind, method):
    """Training rejects values outside [0, 1]; every method rejects non-finite values."""
    model = RBM(n_hidden=8, n_epochs=1, random_state=0)
    if method in ("transform", "encode", "reconstruction_error"):
        if kind in OUT_OF_RANGE:
            pytest.skip("new data outside [0, 1] is clipped: see the test below")
        model.fit(V_OK)
    match = r"\[0, 1\]" if kind in OUT_OF_RANGE else "(?i)nan|inf"
    with pytest.raises(ValueError, match=match):
        getattr(model, method)(BAD_V[kind])


@pytest.mark.parametrize("kind", OUT_OF_RANGE)
@pytest.mark.parametrize("method", ["transform", "encode", "reconstruction_error"])
def test_new_data_outside_unit_interval_is_clipped(kind, method):
    model = RBM(n_hidden=8, n_epochs=1, random_state=0).fit(V_OK)
    V = BAD_V[kind]
    got = getattr(model, method)(V)
    np.testing.assert_array_equal(got, getattr(model, method)(np.clip(V, 0.0, 1.0)))


def test_minmax_rbm_logistic_pipeline_scores_every_fold():
    """MinMaxScaler -> RBM -> LogisticRegression in cross_val_score: the scaler maps the held
    out folds slightly outside [0, 1]; before clipping every such fold scored NaN."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    X = rng.normal(size=(120, 12)) + y[:, None]
    pipe = make_pipeline(
        MinMaxScaler(),
        RBM(n_hidden=8, n_epochs=3, learning_rate=0.05, random_state=0),
        LogisticRegression(),
    )
    scores = cross_val_score(pipe, X, y, cv=3)
    assert np.isfinite(scores).all() and scores.mean() > 0.5


def test_boundary_values_0_and_1_are_valid():
    V = np.vstack([np.zeros(10), np.ones(10), np.full(10, 0.5)])
    model = RBM(n_hidden=8, n_epochs=1, random_state=0).fit(V)
    assert model.transform(V).shape == (3, 8)


@pytest.mark.parametrize("method", ["transform", "encode", "reconstruction_error"])
def test_not_fitted(method):
    with pytest.raises(NotFittedError):
        getattr(RBM(n_hidden=8), method)(V_OK)


@pytest.mark.parametrize("method", ["transform", "encode", "reconstruction_error", "partial_fit"])
@pytest.mark.parametrize("n_features", [9, 11])
def test_wrong_number_of_features(method, n_features):
    model = RBM(n_hidden=8, n_epochs=1, random_state=0).fit(V_OK)
    with pytest.raises(ValueError, match="features"):
        getattr(model, method)(V_OK[:, :1].repeat(n_features, axis=1))


@pytest.mark.parametrize("shape", [(10,), (1, 3, 10)])
def test_V_must_be_2d(shape):
    with pytest.raises(ValueError):
        RBM(n_hidden=8, n_epochs=1).fit(np.zeros(shape))


@pytest.mark.parametrize("n_hidden", [1, 4, 12, 20])
def test_encode_needs_multiple_of_8_hidden_units(n_hidden):
    model = RBM(n_hidden=n_hidden, n_epochs=1, random_state=0).fit(V_OK)
    with pytest.raises(ValueError, match="n_hidden"):
        model.encode(V_OK)
    assert model.transform(V_OK).shape == (30, n_hidden)  # everything else works


def _state(model):
    return {
        k: (v.copy() if isinstance(v, np.ndarray) else v)
        for k, v in vars(model).items()
        if k.endswith("_") and not k.startswith("__")
    }


def _assert_same_state(model, state):
    assert _state(model).keys() == state.keys()
    for k, v in state.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(getattr(model, k), v, err_msg=k)
        else:
            assert getattr(model, k) == v, k


@pytest.mark.parametrize("bad", ["outside", "nan", "param"])
def test_failed_fit_leaves_fitted_model_unchanged(bad):
    model = RBM(n_hidden=8, n_epochs=1, random_state=0).fit(V_OK)
    state = _state(model)
    codes = model.encode(V_OK)
    if bad == "param":
        model.set_params(momentum=2.0)
        with pytest.raises(ValueError, match="momentum"):
            model.fit(V_OK)
        model.set_params(momentum=0.9)
    else:
        with pytest.raises(ValueError):
            model.fit(V_OK * 2.0 if bad == "outside" else np.where(V_OK > 0, np.nan, 0.5))
    _assert_same_state(model, state)
    np.testing.assert_array_equal(model.encode(V_OK), codes)


def test_failed_fit_with_other_feature_count_leaves_fitted_model_unchanged():
    model = RBM(n_hidden=8, n_epochs=1, random_state=0).fit(V_OK)
    with pytest.raises(ValueError):
        model.fit(np.full((5, 7), 2.0))
    assert model.n_features_in_ == 10
    model.transform(V_OK)


# ==================================================================== estimator behaviour


def test_fit_and_partial_fit_return_self_and_set_attributes(rng):
    V = _binary(rng, (95, 12))
    model = RBM(n_hidden=16, n_epochs=2, batch_size=20, random_state=0)
    assert model.fit(V) is model
    assert model.n_features_in_ == 12
    assert model.n_steps_ == 2 * 5
    for name, shape in [
        ("components_", (16, 12)),
        ("intercept_hidden_", (16,)),
        ("intercept_visible_", (12,)),
        ("hidden_offsets_", (16,)),
    ]:
        value = getattr(model, name)
        assert value.dtype == np.float32 and value.shape == shape, name
        assert np.all(np.isfinite(value)), name
    other = RBM(n_hidden=16, random_state=0)
    assert other.partial_fit(V) is other
    assert other.n_steps_ == 1  # default batch_size 100 > 95 rows


def test_get_feature_names_out(rng):
    model = RBM(n_hidden=16, n_epochs=1, random_state=0).fit(_binary(rng, (20, 12)))
    assert model.get_feature_names_out().tolist() == [f"rbm{i}" for i in range(16)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8, np.int64, bool])
def test_transform_is_float32_for_any_input_dtype(rng, dtype):
    V = _binary(rng, (40, 12))
    model = RBM(n_hidden=8, n_epochs=2, batch_size=10, random_state=0).fit(V.astype(dtype))
    h = model.transform(V.astype(dtype))
    assert h.dtype == np.float32 and h.shape == (40, 8)
    np.testing.assert_array_equal(h, model.transform(V))
    assert model.fit_transform(V.astype(dtype)).dtype == np.float32


def test_transform_and_reconstruction_error_match_reference(rng):
    V = rng.random((50, 12))  # float64 probabilities; lists work too
    model = RBM(n_hidden=8, n_epochs=3, batch_size=10, learning_rate=0.05, random_state=0).fit(V)
    W = model.components_.astype(np.float64)
    V32 = V.astype(np.float32).astype(np.float64)
    h = sigmoid(V32 @ W.T + model.intercept_hidden_)
    np.testing.assert_allclose(model.transform(V), h, **TOL)
    np.testing.assert_allclose(model.transform(V.tolist()), h, **TOL)
    v = sigmoid(h @ W + model.intercept_visible_)
    err = model.reconstruction_error(V)
    assert err.shape == (50,)
    np.testing.assert_allclose(err, np.mean((V32 - v) ** 2, axis=1), **TOL)


def test_encode_matches_numpy_and_offsets_are_training_means(rng):
    V = _binary(rng, (700, 40), 0.3)  # > 512 rows: several row blocks
    model = RBM(n_hidden=32, n_epochs=3, batch_size=50, learning_rate=0.05, random_state=0).fit(V)
    W = model.components_.astype(np.float64)
    projection = V @ W.T
    np.testing.assert_allclose(model.hidden_offsets_, projection.mean(axis=0), rtol=1e-5, atol=1e-6)
    Vt = _binary(rng, (300, 40), 0.3)
    codes = model.encode(Vt)
    assert codes.dtype == np.uint8 and codes.shape == (300, 4)
    margin = Vt @ W.T - model.hidden_offsets_
    sure = np.abs(margin) >= 1e-4
    assert sure.mean() > 0.99
    np.testing.assert_array_equal(_bits(codes, 32)[sure], (margin > 0)[sure])
    # Packed layout: bit j is bit j % 8 (LSB first) of byte j // 8, as pack_bits writes it.
    exact = np.all(sure, axis=1)
    np.testing.assert_array_equal(codes[exact], pack_reference(margin > 0)[exact])
    np.testing.assert_array_equal(codes[exact], deephash_ext.pack_bits(margin > 0)[exact])
    # The centring offsets make every bit fire for a fair share of the training data.
    rates = _bits(model.encode(V), 32).mean(axis=0)
    assert np.all((rates > 0.05) & (rates < 0.95)), rates


def test_encode_empty_and_single_row(rng):
    model = RBM(n_hidden=16, n_epochs=1, random_state=0).fit(_binary(rng, (30, 10)))
    assert model.encode(_binary(rng, (1, 10))).shape == (1, 2)
    assert model.transform(_binary(rng, (1, 10))).shape == (1, 16)


def test_fit_does_not_modify_input(rng):
    V = rng.random((40, 12)).astype(np.float32)
    copy = V.copy()
    model = RBM(n_hidden=8, n_epochs=2, batch_size=10, random_state=0).fit(V)
    model.partial_fit(V)
    model.transform(V)
    model.encode(V)
    np.testing.assert_array_equal(V, copy)


def test_clone_is_unfitted_with_same_params(rng):
    model = RBM(n_hidden=8, n_epochs=1, hashing_reg=0.2, random_state=0).fit(_binary(rng, (20, 6)))
    c = clone(model)
    assert c.get_params() == model.get_params()
    assert not hasattr(c, "components_")


def test_verbose_shows_progress_without_warnings(rng, capfd):
    V = _binary(rng, (1005, 12), 0.3)
    kwargs = dict(n_hidden=8, batch_size=10, n_epochs=2, learning_rate=0.05, random_state=0)
    quiet = RBM(**kwargs).fit(V)
    assert capfd.readouterr().err == ""
    loud = RBM(verbose=True, **kwargs).fit(V)  # filterwarnings=error: any warning fails here
    err = capfd.readouterr().err
    assert "RBM" in err and "reconstruction_error" in err and "202/202" in err
    # The progress bar splits the work into chunks of calls; the model is the same.
    np.testing.assert_array_equal(loud.components_, quiet.components_)
    np.testing.assert_array_equal(loud.hidden_offsets_, quiet.hidden_offsets_)
    assert loud.n_steps_ == quiet.n_steps_ == 202


def test_verbose_does_not_change_the_model_with_cd_k_2(rng, capfd):
    V = _binary(rng, (1005, 12), 0.3)  # 101 batches; chunks of 5 leave batch 100 alone
    kwargs = dict(n_hidden=8, batch_size=10, n_epochs=1, cd_k=2, learning_rate=0.05, random_state=0)
    quiet = RBM(**kwargs).fit(V)
    loud = RBM(verbose=True, **kwargs).fit(V)
    np.testing.assert_array_equal(loud.components_, quiet.components_)
