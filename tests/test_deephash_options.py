"""DeepHash options beyond the paper's recipe (the paper's value stays the default)."""

from __future__ import annotations

import numpy as np
import pytest
from deephash_ext import RBM, DeepHash
from deephash_ext._io import read_npz, write_model
from deephash_ext._random import check_rng, draw_random_state

X = np.random.default_rng(0).normal(0.2, 1.0, size=(300, 40)).astype(np.float32)
FAST = dict(n_epochs=2, learning_rate=0.05, random_state=0)


def test_default_is_the_paper_rule_training_means():
    model = DeepHash((16,), **FAST).fit(X)
    assert model.input_threshold == "mean"
    np.testing.assert_array_equal(
        model.input_means_, X.mean(axis=0, dtype=np.float64).astype(np.float32)
    )


def test_zero_threshold_trains_the_rbm_on_the_signs():
    model = DeepHash((16,), input_threshold="zero", **FAST).fit(X)
    np.testing.assert_array_equal(model.input_means_, np.zeros(40, np.float32))
    seed = draw_random_state(check_rng(0))  # the first layer's seed
    rbm = RBM(16, n_epochs=2, learning_rate=0.05, random_state=seed).fit((X > 0).astype(np.float32))
    np.testing.assert_array_equal(model.components_[0], rbm.components_)
    np.testing.assert_array_equal(model.encode(X), rbm.encode((X > 0).astype(np.float32)))


@pytest.mark.parametrize(
    "value, error", [("median", ValueError), (0, TypeError), (None, TypeError)]
)
def test_bad_input_threshold_names_itself(value, error):
    with pytest.raises(error, match="input_threshold"):
        DeepHash((16,), input_threshold=value, **FAST).fit(X)


def test_input_threshold_round_trips_and_old_files_mean_training_means(tmp_path):
    model = DeepHash((16,), input_threshold="zero", **FAST).fit(X)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = DeepHash.load(path)
    assert loaded.input_threshold == "zero"
    np.testing.assert_array_equal(loaded.encode(X), model.encode(X))

    arrays, meta = read_npz(path, kind="DeepHash")
    fields = {k: v for k, v in meta.items() if k not in ("format", "version", "deephash_ext")}
    del fields["params"]["input_threshold"]  # a file written before the option existed
    old = tmp_path / "old.npz"
    write_model(old, arrays, fields, format_tag="deephash_ext.DeepHash", version=1)
    assert DeepHash.load(old).input_threshold == "mean"

    fields["params"]["input_threshold"] = "median"
    bad = tmp_path / "bad.npz"
    write_model(bad, arrays, fields, format_tag="deephash_ext.DeepHash", version=1)
    with pytest.raises(ValueError, match=r"bad\.npz.*input_threshold"):
        DeepHash.load(bad)


def test_cli_fit_takes_the_input_threshold(tmp_path, capsys):
    from deephash_ext.cli import main

    data, model_path = tmp_path / "x.npy", tmp_path / "m.npz"
    np.save(data, X)
    args = ["fit", str(data), str(model_path), "--layers", "16", "--epochs", "1", "--quiet"]
    assert main([*args, "--input-threshold", "zero"]) == 0
    assert DeepHash.load(model_path).input_threshold == "zero"
    with pytest.raises(SystemExit) as info:
        main([*args, "--input-threshold", "median"])
    assert info.value.code == 2
    capsys.readouterr()
