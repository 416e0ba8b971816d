"""SSDH / DLBHC (docs/algorithms.md, sec. 4): the losses against hand-computed values, what E2, E3
do to the codes, the code rule, model files, determinism, coarse-to-fine search against
NumPy, and argument errors.

Data are small Gaussian blobs made here. torch runs on one thread (restored afterwards):
these networks are tiny, and a second thread only adds contention on a busy machine.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import deephash_ext
import numpy as np
import pytest
from deephash_ext import _io
from deephash_ext._random import stream_key
from deephash_ext._torch import ssdh_net
from deephash_ext.ssdh import DLBHC, SSDH, coarse_to_fine_search
from sklearn.base import clone
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

torch = pytest.importorskip("torch")

FAST = dict(n_bits=16, hidden_layer_sizes=(32,), n_epochs=30, batch_size=16)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _blobs(n_per_class=30, n_classes=3, n_features=8, spread=3.0, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    centres = spread * rng.normal(size=(n_classes, n_features))
    X = (centres[y] + rng.normal(size=(len(y), n_features))).astype(np.float32)
    return X, y


@pytest.fixture(scope="module")
def data():
    return _blobs()


@pytest.fixture(scope="module")
def fitted(data):
    return SSDH(random_state=0, **FAST).fit(*data)


@pytest.fixture(scope="module")
def indicator(data):
    _, y = data
    return np.stack([y == 0, y >= 1, y == 2], axis=1).astype(np.int64)


def _bits(codes, n_bits):
    return np.unpackbits(codes, axis=1, bitorder="little", count=n_bits)


# ==================================================================== losses


def _t(values):
    return torch.tensor(values, dtype=torch.float32)


def test_e1_softmax_by_hand():
    logits = _t([[0.0, np.log(3.0)], [0.0, 0.0]])
    target = torch.tensor([1, 0])
    expected = (np.log(4 / 3) + np.log(2)) / 2  # softmax rows (1/4, 3/4) and (1/2, 1/2)
    assert float(ssdh_net.e1_softmax(logits, target)) == pytest.approx(expected, rel=1e-6)


def test_e1_multilabel_by_hand():
    y = _t([[1, 0, 1, 0], [0, 1, 0, 1]])
    yhat = _t([[1.5, -0.2, 0.4, 0.3], [2.0, 0.5, 0.0, 1.0]])
    # row 0: 0 (y=1, yhat>=1), 0 (y=0, yhat<=0), 0.5*0.6^2, 0.5*0.3^2      = 0.225
    # row 1: 0.5*2^2, 0.5*0.5^2, 0 (y=0, yhat=0), 0 (y=1, yhat=1)         = 2.125
    assert float(ssdh_net.e1_multilabel(yhat, y)) == pytest.approx((0.225 + 2.125) / 2, rel=1e-6)
    # p = 1: row 0 = 0.5*(0.6 + 0.3), row 1 = 0.5*(2 + 0.5)
    assert float(ssdh_net.e1_multilabel(yhat, y, p=1.0)) == pytest.approx(
        (0.45 + 1.25) / 2, rel=1e-6
    )


def test_e2_e3_by_hand():
    a = _t([[0.0, 1.0, 0.5, 0.5], [0.75, 0.75, 0.75, 0.75]])
    # E2: row 0 (0.25 + 0.25) / 4 = 0.125, row 1 4 * 0.0625 / 4 = 0.0625; mean over rows
    assert float(ssdh_net.e2(a)) == pytest.approx((0.125 + 0.0625) / 2)
    # E3: row means 0.5 and 0.75 -> (0 + 0.0625) / 2
    assert float(ssdh_net.e3(a)) == pytest.approx(0.03125)


def test_objective_combines_the_terms():
    logits = _t([[0.2, -0.1, 0.4]])
    target = torch.tensor([2])
    a = _t([[0.1, 0.9, 0.6, 0.3]])
    e1, e2, e3 = (
        float(ssdh_net.e1_softmax(logits, target)),
        float(ssdh_net.e2(a)),
        float(ssdh_net.e3(a)),
    )
    total = ssdh_net.objective(logits, target, a, multilabel=False, alpha=2.0, beta=3.0, gamma=5.0)
    assert float(total) == pytest.approx(2 * e1 - 3 * e2 + 5 * e3, rel=1e-6)


def test_weight_penalty_counts_weights_not_biases():
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    with torch.no_grad():
        for param in net.parameters():
            param.fill_(2.0)
    assert float(ssdh_net.weight_penalty(net).detach()) == pytest.approx(4.0 * (6 + 3))


# ==================================================================== what the terms do


def _activations(data, **params):
    return SSDH(**{"random_state": 0, **FAST, **params}).fit(*data).transform(data[0])


def test_e2_pushes_activations_to_0_or_1(data):
    plain = _activations(data, beta=0.0, gamma=0.0)
    pushed = _activations(data, beta=5.0, gamma=0.0)
    assert np.abs(pushed - 0.5).mean() > np.abs(plain - 0.5).mean() + 0.03


def test_e3_balances_the_bits(data):
    """E3 penalises each code's mean activation away from 0.5, so codes hold about half
    ones. Averaged over three seeds: one seed alone can give the plain model a balanced
    overall rate by chance (seed 0 does, at 0.0007)."""

    def imbalance(a):
        return abs((a > 0.5).mean() - 0.5), np.abs((a > 0.5).mean(axis=1) - 0.5).mean()

    plain, balanced = [], []
    for seed in range(3):
        plain.append(imbalance(_activations(data, beta=0.0, gamma=0.0, random_state=seed)))
        balanced.append(imbalance(_activations(data, beta=0.0, gamma=5.0, random_state=seed)))
    (rate_plain, per_code_plain), (rate_bal, per_code_bal) = (
        np.mean(plain, axis=0),
        np.mean(balanced, axis=0),
    )
    assert rate_bal < rate_plain
    assert per_code_bal < per_code_plain


def test_dlbhc_is_ssdh_without_e2_e3(data):
    params = dict(random_state=3, **FAST)
    dl = DLBHC(**params).fit(*data)
    ss = SSDH(beta=0.0, gamma=0.0, **params).fit(*data)
    np.testing.assert_array_equal(dl.encode(data[0]), ss.encode(data[0]))
    assert "beta" not in dl.get_params() and (dl.alpha, dl.beta, dl.gamma) == (1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="beta"):
        dl.set_params(beta=1.0)


# ==================================================================== fit / predict / codes


def test_single_label_fit_predict(data, fitted):
    X, y = data
    assert fitted.score(X, y) >= 0.9
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(fitted.classes_[proba.argmax(axis=1)], fitted.predict(X))
    assert fitted.decision_function(X).shape == (len(X), 3)
    assert fitted.extract_features(X).shape == (len(X), 32)
    assert fitted.loss_curve_[-1] < fitted.loss_curve_[0]
    assert fitted.multilabel_ is False and fitted.device_ == "cpu"


def test_string_labels(data):
    X, y = data
    names = np.array(["cat", "dog", "emu"])[y]
    model = SSDH(random_state=0, **FAST).fit(X, names)
    assert list(model.classes_) == ["cat", "dog", "emu"]
    assert set(model.predict(X)) <= set(names)


def test_multilabel_fit_predict(data, indicator):
    X, _ = data
    model = SSDH(random_state=0, **FAST).fit(X, indicator)
    assert model.multilabel_ is True
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    pred = model.predict(X)
    assert pred.shape == indicator.shape and pred.dtype == np.int64
    assert set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, (model.decision_function(X) > 0.5).astype(np.int64))
    assert (pred == indicator).mean() > 0.8
    assert not hasattr(model, "predict_proba")
    assert model.encode(X).shape == (len(X), 2)


def test_encode_is_transform_above_one_half(data, fitted):
    X, _ = data
    a = fitted.transform(X)
    assert a.dtype == np.float32 and a.shape == (len(X), 16)
    assert a.min() >= 0.0 and a.max() <= 1.0
    codes = fitted.encode(X)
    assert codes.dtype == np.uint8 and codes.shape == (len(X), 2)
    np.testing.assert_array_equal(_bits(codes, 16), (a > 0.5).astype(np.uint8))
    # bit j is bit j % 8 of byte j // 8 (LSB first)
    expected = sum((a[:, j] > 0.5).astype(np.uint8) << j for j in range(8))
    np.testing.assert_array_equal(codes[:, 0], expected)


def test_n_bits_not_a_multiple_of_8_pads_with_zeros(data):
    X, y = data
    model = SSDH(n_bits=12, hidden_layer_sizes=(16,), n_epochs=3, random_state=0).fit(X, y)
    a, codes = model.transform(X), model.encode(X)
    assert a.shape == (len(X), 12) and codes.shape == (len(X), 2)
    bits = _bits(codes, 16)
    np.testing.assert_array_equal(bits[:, :12], (a > 0.5).astype(np.uint8))
    assert not bits[:, 12:].any()


def test_activation_exactly_one_half_is_bit_0(data, fitted):
    model = copy.deepcopy(fitted)
    with torch.no_grad():
        model.network_["hash"].weight.zero_()
        model.network_["hash"].bias.zero_()
    assert np.all(model.transform(data[0]) == 0.5)
    assert not model.encode(data[0]).any()


def test_same_seed_same_model_and_other_seed_differs(data, fitted):
    X, y = data
    again = SSDH(random_state=0, **FAST).fit(X, y)
    np.testing.assert_array_equal(again.encode(X), fitted.encode(X))
    np.testing.assert_array_equal(again.transform(X), fitted.transform(X))
    assert again.loss_curve_ == fitted.loss_curve_
    other = SSDH(random_state=1, **FAST).fit(X, y)
    assert not np.array_equal(other.transform(X), fitted.transform(X))


def test_fit_leaves_torch_global_rng_alone(data):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    SSDH(random_state=0, **{**FAST, "n_epochs": 1}).fit(*data)
    assert torch.equal(torch.rand(3), expected)


def test_backbone(data, tmp_path):
    X, y = data
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Linear(8, 24), torch.nn.Tanh())
    before = copy.deepcopy(backbone.state_dict())
    model = SSDH(
        backbone=backbone,
        hidden_layer_sizes=(999,),
        n_bits=16,
        n_epochs=20,
        batch_size=16,
        random_state=0,
    ).fit(X, y)
    for name, value in backbone.state_dict().items():  # the module passed is not trained
        assert torch.equal(value, before[name])
    assert model.extract_features(X).shape == (len(X), 24)  # hidden_layer_sizes ignored
    assert model.score(X, y) >= 0.9
    model.save(tmp_path / "bb.npz")
    with pytest.raises(ValueError, match="backbone"):
        SSDH.load(tmp_path / "bb.npz")
    fresh = torch.nn.Sequential(torch.nn.Linear(8, 24), torch.nn.Tanh())
    loaded = SSDH.load(tmp_path / "bb.npz", backbone=fresh)
    np.testing.assert_array_equal(loaded.encode(X), model.encode(X))
    with pytest.raises(ValueError, match="do not fit"):
        SSDH.load(tmp_path / "bb.npz", backbone=torch.nn.Linear(8, 24, bias=False))


def test_backbone_over_images():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    X = (rng.normal(size=(40, 1, 4, 4)) + 2 * y[:, None, None, None]).astype(np.float32)
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8))
    model = SSDH(n_bits=8, backbone=backbone, n_epochs=5, random_state=0).fit(X, y)
    assert model.encode(X).shape == (40, 1) and model.input_shape_ == (1, 4, 4)
    with pytest.raises(ValueError, match="backbone"):
        SSDH(n_bits=8, backbone=torch.nn.Identity(), n_epochs=1).fit(X, y)


def test_no_hidden_layer_puts_h_on_the_input(data):
    X, y = data
    model = SSDH(n_bits=8, hidden_layer_sizes=(), n_epochs=5, random_state=0).fit(X, y)
    np.testing.assert_array_equal(model.extract_features(X), X)
    assert model.transform(X).shape == (len(X), 8)


# ==================================================================== model files


@pytest.mark.parametrize("kind", ["single", "multi", "dlbhc"])
def test_save_load_round_trip(data, indicator, fitted, tmp_path, kind):
    X, y = data
    if kind == "single":
        model = fitted
    elif kind == "multi":
        model = SSDH(random_state=0, **{**FAST, "n_epochs": 5}).fit(X, indicator)
    else:
        model = DLBHC(random_state=0, **{**FAST, "n_epochs": 5}).fit(X, y)
    model.save(tmp_path / "m.npz")
    loaded = SSDH.load(tmp_path / "m.npz")
    assert type(loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.encode(X), model.encode(X))
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    assert loaded.loss_curve_ == model.loss_curve_
    assert loaded.multilabel_ == model.multilabel_ and loaded.n_features_in_ == 8


def test_load_errors(data, fitted, tmp_path):
    path = tmp_path / "m.npz"
    _io.atomic_write_npz(path, {"a": np.zeros(2)}, {"format": "something else"})
    with pytest.raises(ValueError, match="not an SSDH model"):
        SSDH.load(path)
    fitted.save(path)
    arrays, meta = _io.read_npz(path, kind="x")
    _io.atomic_write_npz(path, arrays, {**meta, "version": 99})
    with pytest.raises(ValueError, match="version"):
        SSDH.load(path)
    _io.atomic_write_npz(path, arrays, meta)
    with pytest.raises(ValueError, match="not a DLBHC"):
        DLBHC.load(path)
    with pytest.raises(ValueError, match="backbone must be None"):
        SSDH.load(path, backbone=torch.nn.Identity())
    del arrays["net.hash.weight"]
    _io.atomic_write_npz(path, arrays, meta)
    with pytest.raises(ValueError, match="incomplete"):
        SSDH.load(path)
    with pytest.raises(FileNotFoundError):
        SSDH.load(tmp_path / "missing.npz")


# ==================================================================== coarse-to-fine search


def _reference_coarse_to_fine(codes, feats, q_codes, q_feats, k, pool):
    bits, q_bits = _bits(codes, 8 * codes.shape[1]), _bits(q_codes, 8 * codes.shape[1])
    out_d, out_i = [], []
    for qb, qf in zip(q_bits, q_feats):
        ham = (bits != qb).sum(axis=1)
        cand = sorted(range(len(codes)), key=lambda j: (ham[j], j))[:pool]
        dist = {
            j: np.sqrt(((feats[j].astype(np.float64) - qf.astype(np.float64)) ** 2).sum())
            for j in cand
        }
        best = sorted(cand, key=lambda j: (dist[j], j))[:k]
        out_i.append(best)
        out_d.append([dist[j] for j in best])
    return np.array(out_d, np.float32), np.array(out_i, np.int64)


@pytest.mark.parametrize("k, pool", [(1, 1), (5, 12), (12, 12), (10, 40), (40, 40)])
def test_coarse_to_fine_matches_numpy_reference(rng, k, pool):
    n = 40
    codes = rng.integers(0, 4, size=(n, 2), dtype=np.uint8)  # few distinct codes: many ties
    feats = rng.integers(0, 3, size=(n, 3)).astype(np.float32)  # many equal distances
    feats[7] = feats[3]
    q_codes = np.concatenate([codes[:3], rng.integers(0, 4, size=(4, 2), dtype=np.uint8)])
    q_feats = np.concatenate([feats[:3], rng.integers(0, 3, size=(4, 3)).astype(np.float32)])
    dist, idx = coarse_to_fine_search(codes, feats, q_codes, q_feats, k=k, pool=pool)
    ref_d, ref_i = _reference_coarse_to_fine(codes, feats, q_codes, q_feats, k, pool)
    assert dist.dtype == np.float32 and idx.dtype == np.int64
    assert dist.shape == idx.shape == (7, k)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_array_equal(dist, ref_d)


def test_coarse_to_fine_full_pool_is_euclidean_ranking(rng):
    feats = rng.normal(size=(30, 4)).astype(np.float32)
    codes = rng.integers(0, 256, size=(30, 1), dtype=np.uint8)
    q = rng.normal(size=(5, 4)).astype(np.float32)
    q_codes = rng.integers(0, 256, size=(5, 1), dtype=np.uint8)
    _, idx = coarse_to_fine_search(codes, feats, q_codes, q, k=30, pool=30)
    full = np.sqrt(((q[:, None, :].astype(np.float64) - feats[None]) ** 2).sum(-1))
    np.testing.assert_array_equal(idx, np.argsort(full, axis=1, kind="stable"))


_C2F = dict(
    codes=np.zeros((6, 1), np.uint8),
    features=np.zeros((6, 2), np.float32),
    q_codes=np.zeros((2, 1), np.uint8),
    q_features=np.zeros((2, 2), np.float32),
    k=2,
    pool=4,
)


@pytest.mark.parametrize(
    "change, exc, match",
    [
        (dict(k=5), ValueError, "k"),
        (dict(k=0), ValueError, "k"),
        (dict(pool=7), ValueError, "pool"),
        (dict(pool=0), ValueError, "pool"),
        (dict(k=1.0), TypeError, "k"),
        (dict(pool="4"), TypeError, "pool"),
        (dict(codes=np.zeros((6, 1), np.int64)), TypeError, "codes"),
        (dict(q_codes=np.zeros((2, 1), np.float32)), TypeError, "queries"),
        (dict(codes=np.zeros(6, np.uint8)), ValueError, "codes"),
        (dict(features=np.zeros((5, 2))), ValueError, "features"),
        (dict(features=np.zeros(6)), ValueError, "features"),
        (dict(q_features=np.zeros((3, 2))), ValueError, "q_features"),
        (dict(q_features=np.zeros((2, 3))), ValueError, "q_features"),
        (dict(q_features=np.full((2, 2), np.nan)), ValueError, "q_features"),
        (dict(q_codes=np.zeros((2, 2), np.uint8)), ValueError, "bytes per code"),
    ],
)
def test_coarse_to_fine_errors(change, exc, match):
    with pytest.raises(exc, match=match):
        coarse_to_fine_search(**{**_C2F, **change})


# ==================================================================== errors


@pytest.mark.parametrize(
    "labels, exc",
    [
        (lambda y: y + 0.5, ValueError),  # continuous floats
        (lambda y: y[:-1], ValueError),  # wrong length
        (lambda y: np.stack([y, y], axis=1), ValueError),  # 2-D, not 0/1
        (lambda y: np.zeros_like(y), ValueError),  # a single class
        (lambda y: np.zeros((len(y), 3), np.int64), ValueError),  # indicator of only zeros
        (lambda y: y.reshape(-1, 1, 1), ValueError),  # 3-D
        (lambda y: np.stack([y.astype(str)] * 2, 1), TypeError),  # 2-D strings
        (lambda y: None, ValueError),
    ],
)
def test_bad_labels(data, labels, exc):
    X, y = data
    with pytest.raises(exc, match="y"):
        SSDH(**FAST).fit(X, labels(y))


def test_integral_float_labels_are_classes(data):
    X, y = data
    model = SSDH(random_state=0, **{**FAST, "n_epochs": 2}).fit(X, y.astype(np.float64))
    np.testing.assert_array_equal(model.classes_, [0.0, 1.0, 2.0])


def test_column_vector_y_warns_and_is_single_label(data):
    X, y = data
    with pytest.warns(DataConversionWarning, match="column-vector"):
        model = SSDH(random_state=0, **{**FAST, "n_epochs": 2}).fit(X, y[:, None])
    assert model.multilabel_ is False


@pytest.mark.parametrize(
    "name, value, exc",
    [
        ("n_bits", 0, ValueError),
        ("n_bits", -8, ValueError),
        ("n_bits", 16.0, TypeError),
        ("hidden_layer_sizes", 32, TypeError),
        ("hidden_layer_sizes", (32, 0), ValueError),
        ("hidden_layer_sizes", (32.0,), TypeError),
        ("alpha", -1.0, ValueError),
        ("beta", np.nan, ValueError),
        ("gamma", "1", TypeError),
        ("weight_decay", -1e-4, ValueError),
        ("p", 0.5, ValueError),
        ("n_epochs", 0, ValueError),
        ("batch_size", 0, ValueError),
        ("learning_rate", 0.0, ValueError),
        ("learning_rate", np.inf, ValueError),
        ("device", "gpu", ValueError),
        ("device", 0, TypeError),
        ("backbone", "resnet", TypeError),
    ],
)
def test_bad_parameters(data, fitted, name, value, exc):
    model = copy.deepcopy(fitted).set_params(**{name: value})
    with pytest.raises(exc, match=name):
        model.fit(*data)
    # a failed fit leaves the fitted model as it was
    np.testing.assert_array_equal(model.encode(data[0]), fitted.encode(data[0]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_raises(data):
    with pytest.raises(RuntimeError, match="device"):
        SSDH(device="cuda", **FAST).fit(*data)


def test_device_auto_and_cpu(data):
    model = SSDH(device="auto", random_state=0, **{**FAST, "n_epochs": 1}).fit(*data)
    assert model.device_ == ("cuda:0" if torch.cuda.is_available() else "cpu")


def test_bad_X(data, fitted):
    X, y = data
    bad = X.copy()
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SSDH(**FAST).fit(bad, y)
    with pytest.raises(ValueError, match="NaN"):
        fitted.encode(bad)
    with pytest.raises(ValueError, match="features"):
        fitted.predict(X[:, :5])
    with pytest.raises(ValueError, match="2D"):
        fitted.transform(X[0])


def test_not_fitted():
    for method in ("encode", "transform", "predict", "predict_proba", "extract_features"):
        with pytest.raises(NotFittedError):
            getattr(SSDH(), method)(np.zeros((2, 3), np.float32))
    with pytest.raises(NotFittedError):
        SSDH().save("never-written.npz")


# ==================================================================== shared torch helpers


def test_torch_common_helpers():
    from deephash_ext._torch import common as tc

    assert tc.resolve_device("cpu") == torch.device("cpu")
    assert tc.resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert tc.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cpu:0"):
        with pytest.raises(ValueError, match="device"):
            tc.resolve_device(bad)
    for bad in (3, None):  # not a name at all: the type is wrong
        with pytest.raises(TypeError, match="device"):
            tc.resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="device"):
            tc.resolve_device("cuda")
    g1, r1 = tc.seeded_generator(5)
    g2, r2 = tc.seeded_generator(5)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))
    np.testing.assert_array_equal(r1.permutation(10), r2.permutation(10))
    assert stream_key(5) != stream_key(6)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    arrays = tc.state_dict_to_arrays(net, prefix="m.")
    assert arrays["m.0.weight"].dtype == np.float32
    assert arrays["m.1.num_batches_tracked"].dtype == np.int64
    other = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    other.load_state_dict(tc.arrays_to_state_dict(arrays, prefix="m."))
    assert torch.equal(other[0].weight, net[0].weight)
    x = torch.ones(2, 3, requires_grad=True, dtype=torch.float64)
    out = tc.to_numpy_float32(x * 2)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.sum() == 12


# ==================================================================== package and sklearn


def test_package_exports():
    assert deephash_ext.SSDH is SSDH and deephash_ext.DLBHC is DLBHC
    assert deephash_ext.coarse_to_fine_search is coarse_to_fine_search
    assert {"SSDH", "DLBHC", "coarse_to_fine_search"} <= set(deephash_ext.__all__)


def test_import_does_not_load_torch():
    code = (
        "import sys, deephash_ext.ssdh, deephash_ext; deephash_ext.SSDH; "
        "deephash_ext.DLBHC; deephash_ext.coarse_to_fine_search; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, timeout=60)


def test_clone_keeps_params():
    params = dict(FAST, alpha=0.5, beta=0.25, gamma=2.0, random_state=7, device="cpu")
    model = SSDH(**params)
    copy_ = clone(model)
    assert copy_.get_params() == model.get_params()


@parametrize_with_checks(
    [SSDH(n_bits=8, hidden_layer_sizes=(16,), n_epochs=20, learning_rate=0.01, random_state=0)]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_auto_device_picks_cuda_when_torch_sees_a_gpu(monkeypatch):
    """The selection rule, checked without a GPU: "auto" and "cuda" resolve to CUDA as soon as
    torch reports one (the GPU run itself needs a machine with a GPU)."""
    from deephash_ext._torch import common as tc

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert tc.resolve_device("auto") == torch.device("cuda")
    assert tc.resolve_device("cuda") == torch.device("cuda")
