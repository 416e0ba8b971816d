"""The house rules that issue 12 consolidated: failed or interrupted training leaves the
estimator as it was, diverging training raises, one device rule for every estimator, and
the package's import-time promises (lazy submodules, no torch outside deephash_ext._torch)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from deephash_ext import RBM, DeepHash

V = (np.random.default_rng(0).random((300, 32)) < 0.3).astype(np.float32)
X = np.random.default_rng(1).normal(size=(300, 32)).astype(np.float32)
PAIRS = np.array([[i, i + 1] for i in range(0, 100, 2)])


def _state(estimator) -> dict:
    """Every attribute, with arrays (and lists of arrays) copied."""
    out = {}
    for name, value in vars(estimator).items():
        if isinstance(value, np.ndarray):
            value = value.copy()
        elif isinstance(value, list):
            value = [v.copy() if isinstance(v, np.ndarray) else v for v in value]
        out[name] = value
    return out


def _assert_same_state(estimator, before: dict) -> None:
    after = vars(estimator)
    assert sorted(after) == sorted(before)
    for name, value in before.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(after[name], value, err_msg=name)
        elif isinstance(value, list):
            assert len(after[name]) == len(value), name
            for a, b in zip(after[name], value):
                np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            assert after[name] == value, name


def _interrupt_on_call(monkeypatch, n_calls_ok: int) -> None:
    """Make RBM._train raise KeyboardInterrupt (Ctrl-C) after ``n_calls_ok`` calls."""
    original = RBM._train
    calls = {"n": 0}

    def train(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_calls_ok:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RBM, "_train", train)


@pytest.mark.parametrize("fitted_before", [False, True])
def test_interrupted_rbm_fit_leaves_the_model_as_it_was(monkeypatch, fitted_before):
    model = RBM(n_hidden=16, n_epochs=3, learning_rate=0.05, random_state=0)
    if fitted_before:
        model.fit(V)
    before = _state(model)
    _interrupt_on_call(monkeypatch, n_calls_ok=1)  # the second epoch is interrupted
    with pytest.raises(KeyboardInterrupt):
        model.set_params(random_state=1).fit(V[:200])
    model.set_params(random_state=0)
    _assert_same_state(model, before)


def test_interrupted_partial_fit_leaves_the_weights_as_they_were(monkeypatch):
    model = RBM(n_hidden=16, n_epochs=1, learning_rate=0.05, random_state=0).fit(V)
    before = _state(model)
    original = RBM._train

    def train_then_interrupt(self, *args, **kwargs):
        original(self, *args, **kwargs)  # the weights really change in place...
        raise KeyboardInterrupt  # ...before Ctrl-C

    monkeypatch.setattr(RBM, "_train", train_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        model.partial_fit(V)
    _assert_same_state(model, before)


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_diverging_rbm_raises_and_leaves_the_model(method):
    model = RBM(n_hidden=16, n_epochs=2, learning_rate=0.05, random_state=0).fit(V)
    before = _state(model)
    model.set_params(learning_rate=1e30)
    with pytest.raises(RuntimeError, match=r"diverged.*learning_rate"):
        getattr(model, method)(V)
    model.set_params(learning_rate=0.05)
    _assert_same_state(model, before)


def test_diverging_deephash_fit_raises():
    model = DeepHash((16, 8), n_epochs=1, learning_rate=0.05, random_state=0).fit(X)
    before = _state(model)
    model.set_params(learning_rate=1e30)
    with pytest.raises(RuntimeError, match="diverged"):
        model.fit(X)
    model.set_params(learning_rate=0.05)
    _assert_same_state(model, before)


def test_margins_beyond_float32_are_rejected():
    pytest.importorskip("torch")
    model = DeepHash((16, 8), n_epochs=1, learning_rate=0.05, random_state=0).fit(X)
    before = _state(model)
    with pytest.raises(ValueError, match="margins"):
        model.finetune(X, PAIRS, margins=[1e308, 1e308], n_epochs=1)
    _assert_same_state(model, before)


def test_diverging_finetune_raises_and_leaves_the_model():
    """A margin of 1e38 fits float32 but the summed loss overflows: before, this stored
    a non-finite loss history and meaningless weights without a word."""
    pytest.importorskip("torch")
    model = DeepHash((16, 8), n_epochs=1, learning_rate=0.05, random_state=0).fit(X)
    before = _state(model)
    with pytest.raises(RuntimeError, match="diverged"):
        model.finetune(X, PAIRS, margins=[1e38, 1e38], n_epochs=1)
    _assert_same_state(model, before)


# ------------------------------------------------------------------------- devices


def _estimators():
    from deephash_ext import DLBHC, DRHN, SSDH

    return [RBM(n_hidden=8), DeepHash((8,)), SSDH(n_bits=8), DLBHC(n_bits=8), DRHN(n_bits=8)]


def _fit_args(model):
    from deephash_ext import DRHN

    if isinstance(model, DRHN):
        return np.zeros((4, 32, 32), np.float32), np.array([0, 1, 0, 1])
    if isinstance(model, RBM):
        return (V,)
    if isinstance(model, DeepHash):
        return (X,)
    return X[:20], np.repeat([0, 1], 10)


@pytest.mark.parametrize(
    "device, error",
    [("gpu", ValueError), ("cuda:x", ValueError), (3, TypeError), (None, TypeError)],
)
def test_every_estimator_checks_device_the_same_way(device, error):
    for model in _estimators():
        model.set_params(device=device)
        with pytest.raises(error, match="device"):
            model.fit(*_fit_args(model))


def test_auto_means_the_cpu_when_no_engine_has_a_gpu():
    torch = pytest.importorskip("torch")
    import deephash_ext
    from deephash_ext import _gpu
    from deephash_ext._torch.common import resolve_device

    assert _gpu.resolve_device("auto") == ("cuda" if deephash_ext.cuda_available() else "cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


# ------------------------------------------------------------------------- imports


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_submodules_are_lazy_attributes():
    out = _run(
        "import sys, deephash_ext as dh\n"
        "print(any(m in sys.modules for m in ('deephash_ext.metrics', "
        "'deephash_ext.baselines', 'deephash_ext.datasets', 'sklearn')))\n"
        "print(dh.metrics.recall_at.__module__, dh.baselines.ITQ.__name__, "
        "dh.datasets.load_descriptors.__name__)"
    )
    assert out.splitlines() == ["False", "deephash_ext.metrics ITQ load_descriptors"]


def test_no_module_outside_the_torch_subpackage_imports_torch():
    out = _run(
        "import sys, deephash_ext as dh\n"
        "from deephash_ext import baselines, cli, datasets, deephash, drhn, metrics, "
        "rbm, ssdh\n"
        "print('torch' in sys.modules)"
    )
    assert out == "False"


def test_unknown_attribute_is_an_attribute_error():
    import deephash_ext

    with pytest.raises(AttributeError, match="no_such_thing"):
        deephash_ext.no_such_thing  # noqa: B018
