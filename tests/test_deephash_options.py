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


# ------------------------------------------------------------ Gaussian visible units


def test_rbm_gaussian_visible_units_take_real_values_and_reconstruct_the_mean():
    Z = (X - X.mean(0)) / X.std(0)
    rbm = RBM(16, visible_units="gaussian", **FAST).fit(Z)  # negative values are accepted
    h = rbm.transform(Z)
    expected = h @ rbm.components_ + rbm.intercept_visible_  # the mean, no sigmoid
    np.testing.assert_allclose(
        rbm.reconstruction_error(Z), ((Z - expected) ** 2).mean(axis=1), rtol=1e-4, atol=1e-5
    )
    with pytest.raises(ValueError, match="V must lie in"):
        RBM(16, **FAST).fit(Z)  # binary units still reject them


@pytest.mark.parametrize("value, error", [("normal", ValueError), (1, TypeError)])
def test_bad_visible_units_name_themselves(value, error):
    with pytest.raises(error, match="visible_units"):
        RBM(16, visible_units=value, **FAST).fit(np.abs(X) / np.abs(X).max())
    with pytest.raises(error, match="visible_units"):
        DeepHash((16,), visible_units=value, **FAST).fit(X)


def test_gaussian_first_layer_is_an_rbm_on_the_standardised_input_folded_back():
    model = DeepHash((16, 8), visible_units="gaussian", **FAST).fit(X)
    means = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    scales = X.std(axis=0, dtype=np.float64).astype(np.float32)
    np.testing.assert_array_equal(model.input_means_, means)
    np.testing.assert_allclose(model.input_scales_, scales, rtol=1e-6)
    seed = draw_random_state(check_rng(0))
    rbm = RBM(16, visible_units="gaussian", n_epochs=2, learning_rate=0.05, random_state=seed)
    rbm.fit((X - means) / model.input_scales_)
    np.testing.assert_allclose(model.components_[0] * model.input_scales_, rbm.components_, 1e-6)
    # encoding projects the raw input through the folded layer, as a NumPy transcription
    first = (X.astype(np.float64) @ model.components_[0].T.astype(np.float64)) > model.offsets_[0]
    np.testing.assert_array_equal(
        model.encode(X, layer=0), np.packbits(first, axis=1, bitorder="little")
    )
    # the folded layer is centred on the training data: every bit fires for some rows
    assert 0 < first.mean() < 1


def test_gaussian_model_round_trips_and_old_files_have_unit_scales(tmp_path):
    model = DeepHash((16,), visible_units="gaussian", **FAST).fit(X)
    path = tmp_path / "g.npz"
    model.save(path)
    loaded = DeepHash.load(path)
    assert loaded.visible_units == "gaussian"
    np.testing.assert_array_equal(loaded.input_scales_, model.input_scales_)
    np.testing.assert_array_equal(loaded.encode(X), model.encode(X))

    binary = DeepHash((16,), **FAST).fit(X)
    binary.save(path)
    arrays, meta = read_npz(path, kind="DeepHash")
    fields = {k: v for k, v in meta.items() if k not in ("format", "version", "deephash_ext")}
    del arrays["input_scales"]  # a file written before the option existed
    del fields["params"]["visible_units"]
    old = tmp_path / "old.npz"
    write_model(old, arrays, fields, format_tag="deephash_ext.DeepHash", version=1)
    loaded = DeepHash.load(old)
    assert loaded.visible_units == "binary"
    np.testing.assert_array_equal(loaded.input_scales_, np.ones(40, np.float32))
    np.testing.assert_array_equal(loaded.encode(X), binary.encode(X))

    arrays["input_scales"] = np.zeros(40, np.float32)
    bad = tmp_path / "bad.npz"
    write_model(bad, arrays, fields, format_tag="deephash_ext.DeepHash", version=1)
    with pytest.raises(ValueError, match=r"bad\.npz.*input_scales"):
        DeepHash.load(bad)


# ------------------------------------------------------------ fine-tuning options

PAIRS = np.stack([np.arange(0, 300, 2), np.arange(1, 300, 2)], axis=1)
X_PAIRED = X.copy()
X_PAIRED[1::2] = X[0::2] + np.random.default_rng(1).normal(0, 0.3, (150, 40)).astype(np.float32)


def _val():
    rng = np.random.default_rng(2)
    base = rng.normal(0.2, 1.0, (40, 40)).astype(np.float32)
    Xv = np.repeat(base, 2, axis=0)
    Xv[1::2] += rng.normal(0, 0.3, (40, 40)).astype(np.float32)
    matching = np.stack([np.arange(0, 80, 2), np.arange(1, 80, 2)], axis=1)
    others = np.stack([np.arange(0, 80, 2), np.roll(np.arange(1, 80, 2), 1)], axis=1)
    labels = np.r_[np.ones(40, np.int64), np.zeros(40, np.int64)]
    return Xv, np.concatenate([matching, others]), labels


@pytest.mark.parametrize("visible_units", ["binary", "gaussian"])
def test_finetune_with_in_batch_negatives_changes_the_model(visible_units):
    model = DeepHash((16,), visible_units=visible_units, **FAST).fit(X_PAIRED)
    before = model.components_[0].copy()
    model.finetune(X_PAIRED, PAIRS, negatives="batch", n_epochs=2, learning_rate=0.01)
    assert model.finetuned_ and len(model.finetune_loss_) == 2
    assert np.abs(model.components_[0] - before).max() > 1e-3
    assert model.finetune_scores_ == []
    # re-centred on the training data, through the folded first layer
    bits = (X_PAIRED.astype(np.float64) @ model.components_[0].T) > model.offsets_[0]
    if visible_units == "binary":
        z = (X_PAIRED > model.input_means_).astype(np.float64)
        bits = (z @ model.components_[0].T) > model.offsets_[0]
    np.testing.assert_array_equal(model.encode(X_PAIRED), np.packbits(bits, 1, bitorder="little"))


def test_early_stopping_keeps_the_best_validation_auc():
    from deephash_ext.selection import pair_auc

    Xv, pv, lv = _val()
    model = DeepHash((16,), visible_units="gaussian", **FAST).fit(X_PAIRED)
    start = pair_auc(model.encode(Xv), pv, lv)
    model.finetune(
        X_PAIRED, PAIRS, n_epochs=6, learning_rate=0.05, validation=(Xv, pv, lv), patience=1
    )
    scores = model.finetune_scores_
    assert scores[0] == pytest.approx(start)
    assert 2 <= len(scores) <= 7 and len(model.finetune_loss_) == len(scores) - 1
    best = int(np.argmax(scores))
    assert len(scores) - 1 - best <= 2  # stopped within patience + 1 epochs of the best
    assert pair_auc(model.encode(Xv), pv, lv) == pytest.approx(max(scores))


def test_finetune_option_errors_leave_the_model_unchanged():
    Xv, pv, lv = _val()
    model = DeepHash((16,), **FAST).fit(X_PAIRED)
    before = model.components_[0].copy()
    labels = np.r_[np.ones(100), np.zeros(50)]
    cases = [
        (dict(negatives="hard"), ValueError, "negatives"),
        (dict(negatives="batch", pair_labels=labels), ValueError, "pair_labels"),
        (dict(patience=-1), ValueError, "patience"),
        (dict(validation=Xv), TypeError, "validation"),
        (dict(validation=(Xv[:, :5], pv, lv)), ValueError, "features"),
        (dict(validation=(Xv, pv[:5], lv)), ValueError, "labels"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            model.finetune(X_PAIRED, PAIRS, **kwargs)
        np.testing.assert_array_equal(model.components_[0], before)
        assert not model.finetuned_


def test_in_batch_negatives_with_a_last_minibatch_of_one_pair_stay_finite():
    model = DeepHash((16,), **FAST).fit(X_PAIRED)
    model.finetune(X_PAIRED, PAIRS[:5], negatives="batch", matching_per_batch=4, n_epochs=2)
    assert np.isfinite(model.finetune_loss_).all() and model.finetuned_
