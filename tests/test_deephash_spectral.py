"""Spectral Siamese fine-tuning (docs/algorithms.md sec. 2.8), linear hidden units, and
DeepHash.for_bits, against NumPy transcriptions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from deephash_ext import DeepHash
from deephash_ext._io import read_npz, write_model
from deephash_ext.selection import pair_auc, select_architecture

rng = np.random.default_rng(0)
# 120 "regions", two noisy views each: rows 2i and 2i + 1 match
BASE = rng.normal(size=(120, 48)).astype(np.float32) * np.linspace(2.0, 0.2, 48, dtype=np.float32)
X = np.repeat(BASE, 2, axis=0) + rng.normal(scale=0.5, size=(240, 48)).astype(np.float32)
PAIRS = np.arange(240).reshape(-1, 2)
FAST = dict(n_epochs=2, learning_rate=0.01, random_state=0)


def spectral_reference(model: DeepHash, X: np.ndarray, pairs: np.ndarray, shrinkage: float):
    """The fine-tuned top layer, in float64 NumPy: z = centred output of layer 0 (linear),
    generalised eigenvectors of (total covariance, shrunk matching covariance)."""
    W0 = model.components_[0].astype(np.float64)
    inputs = X.astype(np.float64)
    if model.visible_units == "binary":
        inputs = (X > model.input_means_).astype(np.float64)
    Z = inputs @ W0.T
    Z -= Z.mean(axis=0)
    h, b = Z.shape[1], model.components_[1].shape[0]
    St = Z.T @ Z / len(Z)
    D = Z[pairs[:, 0]] - Z[pairs[:, 1]]
    Sm = D.T @ D / (2 * len(D))
    S = (1 - shrinkage) * Sm + shrinkage * np.trace(Sm) / h * np.eye(h)
    values, vectors = scipy.linalg.eigh(St, S)
    return values[::-1][:b], vectors[:, ::-1][:, :b], Z


def reference_codes(model: DeepHash, X: np.ndarray) -> np.ndarray:
    """encode() of a spectrally fine-tuned two-layer model, in NumPy."""
    inputs = X.astype(np.float64)
    if model.visible_units == "binary":
        inputs = (X > model.input_means_).astype(np.float64)
    z0 = inputs @ model.components_[0].T.astype(np.float64) - model.offsets_[0]
    z1 = z0 @ model.components_[1].T.astype(np.float64) - model.offsets_[1]
    return np.packbits(z1 > 0, axis=1, bitorder="little")


@pytest.mark.parametrize("visible_units", ["binary", "gaussian"])
@pytest.mark.parametrize("shrinkage", [0.0, 0.5, 1.0])
def test_spectral_top_layer_solves_the_generalised_eigenproblem(visible_units, shrinkage):
    model = DeepHash((32, 8), visible_units=visible_units, finetune_method="spectral", **FAST)
    model.fit(X)
    W0 = model.components_[0].copy()
    values, vectors, Z = spectral_reference(model, X, PAIRS, shrinkage)
    model.finetune(X, PAIRS, shrinkage=shrinkage)
    assert model.finetuned_ and model.hidden_units_ == "linear" and model.margins_ == []
    np.testing.assert_array_equal(model.components_[0], W0)  # the pre-trained layer is kept
    top = model.components_[1].astype(np.float64).T  # (32, 8)
    # each column is an eigenvector of the reference problem, up to its sign
    for j in range(8):
        cosine = abs(top[:, j] @ vectors[:, j]) / np.linalg.norm(top[:, j])
        assert cosine == pytest.approx(np.linalg.norm(vectors[:, j]), rel=1e-3)
        assert top[np.abs(top[:, j]).argmax(), j] > 0  # the deterministic sign
    # the projected items spread along each direction by its eigenvalue (S-normalised)
    spread = np.var(Z @ top, axis=0)
    np.testing.assert_allclose(spread, values, rtol=1e-3)
    np.testing.assert_array_equal(model.offsets_[1], np.zeros(8, np.float32))
    np.testing.assert_allclose(
        model.offsets_[0], (model._first_layer_input(X) @ W0.T).mean(axis=0), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("visible_units", ["binary", "gaussian"])
def test_linear_hidden_units_encode_the_folded_stack(visible_units):
    model = DeepHash((32, 8), visible_units=visible_units, finetune_method="spectral", **FAST)
    model.fit(X).finetune(X, PAIRS)
    codes = model.encode(X)
    expected = reference_codes(model, X)
    # the folded float32 projection may flip a bit whose value is within rounding of 0
    assert np.unpackbits(codes ^ expected).sum() <= 2
    np.testing.assert_array_equal(model.encode(X, layer=0), DeepHash.encode(model, X, layer=0))
    inputs = model._first_layer_input(X).astype(np.float64)
    layer0 = np.packbits(
        inputs @ model.components_[0].T.astype(np.float64) > model.offsets_[0], 1, bitorder="little"
    )
    assert np.unpackbits(model.encode(X, layer=0) ^ layer0).sum() <= 2


def test_spectral_finetuning_brings_matching_views_together():
    model = DeepHash((32, 8), visible_units="gaussian", finetune_method="spectral", **FAST).fit(X)
    rest = np.stack([np.arange(0, 240, 2), np.roll(np.arange(1, 240, 2), 7)], axis=1)
    pairs_val = np.r_[PAIRS, rest]
    labels = np.r_[np.ones(120, int), np.zeros(120, int)]
    before = pair_auc(model.encode(X), pairs_val, labels)
    after = pair_auc(model.finetune(X, PAIRS).encode(X), pairs_val, labels)
    assert after > before


def test_spectral_finetuning_is_reproducible_and_round_trips(tmp_path):
    def trained():
        return DeepHash((32, 8), finetune_method="spectral", **FAST).fit(X).finetune(X, PAIRS)

    model, again = trained(), trained()
    for a, b in zip(model.components_, again.components_):
        np.testing.assert_array_equal(a, b)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = DeepHash.load(path)
    assert loaded.hidden_units_ == "linear" and loaded.finetune_method == "spectral"
    np.testing.assert_array_equal(loaded.encode(X), model.encode(X))
    # a file that says linear hidden units but not fine-tuned is refused
    arrays, meta = read_npz(path, kind="DeepHash")
    fields = {k: v for k, v in meta.items() if k not in ("format", "version", "deephash_ext")}
    fields["finetuned"] = False
    bad = tmp_path / "bad.npz"
    write_model(bad, arrays, fields, format_tag="deephash_ext.DeepHash", version=1)
    with pytest.raises(ValueError, match=r"bad\.npz.*hidden_units"):
        DeepHash.load(bad)
    # files written before spectral fine-tuning existed: binary hidden units
    old = DeepHash((32, 8), **FAST).fit(X)
    old.save(tmp_path / "o.npz")
    old_arrays, old_meta = read_npz(tmp_path / "o.npz", kind="DeepHash")
    old_fields = {
        k: v for k, v in old_meta.items() if k not in ("format", "version", "deephash_ext")
    }
    del old_fields["hidden_units"]
    old_fields["params"].pop("finetune_method")
    legacy = tmp_path / "legacy.npz"
    write_model(legacy, old_arrays, old_fields, format_tag="deephash_ext.DeepHash", version=1)
    loaded = DeepHash.load(legacy)
    assert loaded.hidden_units_ == "binary" and loaded.finetune_method == "gradient"
    np.testing.assert_array_equal(loaded.encode(X), old.encode(X))


def test_validation_keeps_the_better_of_before_and_after():
    model = DeepHash((32, 8), finetune_method="spectral", **FAST).fit(X)
    before = [W.copy() for W in model.components_]
    # validation pairs that reward what fine-tuning removes: labels inverted
    rest = np.stack([np.arange(0, 240, 2), np.roll(np.arange(1, 240, 2), 7)], axis=1)
    pairs_val = np.r_[PAIRS, rest]
    inverted = np.r_[np.zeros(120, int), np.ones(120, int)]
    model.finetune(X, PAIRS, validation=(X, pairs_val, inverted))
    assert len(model.finetune_scores_) == 2
    assert model.finetune_scores_[1] <= model.finetune_scores_[0]
    assert not model.finetuned_ and model.hidden_units_ == "binary"
    for a, b in zip(model.components_, before):
        np.testing.assert_array_equal(a, b)
    labels = 1 - inverted
    model.finetune(X, PAIRS, validation=(X, pairs_val, labels))
    assert model.finetuned_ and model.finetune_scores_[1] > model.finetune_scores_[0]


def test_spectral_errors_name_the_problem_and_leave_the_model_unchanged():
    model = DeepHash((32, 8), finetune_method="spectral", **FAST).fit(X)
    before = [W.copy() for W in model.components_]
    with pytest.raises(ValueError, match="shrinkage"):
        model.finetune(X, PAIRS, shrinkage=1.5)
    with pytest.raises(TypeError, match="shrinkage"):
        model.finetune(X, PAIRS, shrinkage="0.5")
    with pytest.raises(TypeError, match="validation"):
        model.finetune(X, PAIRS, validation=(X, PAIRS))
    few = PAIRS[:3]  # 3 pairs cannot span 32 units: singular without shrinkage
    with pytest.raises(ValueError, match="shrinkage"):
        model.finetune(X, few, shrinkage=0.0)
    for a, b in zip(model.components_, before):
        np.testing.assert_array_equal(a, b)
    assert not model.finetuned_
    with pytest.raises(ValueError, match="at least two layers"):
        DeepHash((8,), finetune_method="spectral", **FAST).fit(X).finetune(X, PAIRS)
    with pytest.raises(ValueError, match="no wider"):
        DeepHash((8, 16), finetune_method="spectral", **FAST).fit(X).finetune(X, PAIRS)
    with pytest.raises(ValueError, match="finetune_method"):
        DeepHash((32, 8), finetune_method="sgd", **FAST).fit(X).finetune(X, PAIRS)


def test_gradient_finetuning_refuses_linear_hidden_units():
    pytest.importorskip("torch")
    model = DeepHash((32, 8), finetune_method="spectral", **FAST).fit(X).finetune(X, PAIRS)
    model.set_params(finetune_method="gradient")
    with pytest.raises(ValueError, match="fit it again"):
        model.finetune(X, PAIRS)
    model.fit(X)  # a new fit: binary hidden units again
    assert model.hidden_units_ == "binary" and not model.finetuned_


def test_matching_pairs_only_are_used_with_labels():
    model = DeepHash((32, 8), finetune_method="spectral", **FAST).fit(X)
    other = np.stack([np.arange(0, 240, 2), np.roll(np.arange(1, 240, 2), 7)], axis=1)
    with_labels = DeepHash((32, 8), finetune_method="spectral", **FAST).fit(X)
    with_labels.finetune(X, np.r_[PAIRS, other], np.r_[np.ones(120, int), np.zeros(120, int)])
    model.finetune(X, PAIRS)
    np.testing.assert_array_equal(with_labels.components_[1], model.components_[1])


# ------------------------------------------------------------ for_bits and selection


def test_for_bits_is_the_selected_unfitted_recipe():
    model = DeepHash.for_bits(64)
    assert not hasattr(model, "components_")
    params = model.get_params()
    assert params["hidden_layer_sizes"][-1] == 64 and len(params["hidden_layer_sizes"]) == 2
    assert params["hidden_layer_sizes"][0] > 64
    assert params["finetune_method"] == "spectral" and params["visible_units"] == "gaussian"
    widths = {64: 1024, 96: 1024, 256: 2048, 512: 2048, 1024: 2048, 4096: 4096}
    for bits, width in widths.items():  # the selected widths; others: the nearest, >= bits
        assert DeepHash.for_bits(bits).hidden_layer_sizes == (width, bits)
    custom = DeepHash.for_bits(64, random_state=3, hidden_layer_sizes=(128, 64))
    assert custom.random_state == 3 and custom.hidden_layer_sizes == (128, 64)


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((60,), {}, ValueError, "multiple of 8"),
        ((0,), {}, ValueError, "n_bits"),
        (("64",), {}, TypeError, "n_bits"),
        ((64,), {"n_layers": 3}, TypeError, "n_layers"),
    ],
)
def test_for_bits_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        DeepHash.for_bits(*args, **kwargs)


def test_for_bits_fits_and_finetunes_with_default_arguments():
    model = DeepHash.for_bits(8, hidden_layer_sizes=(32, 8), n_epochs=2, random_state=0)
    model.fit(X).finetune(X, PAIRS)
    assert model.hidden_units_ == "linear" and model.encode(X).shape == (240, 1)


def test_select_architecture_spectral_widens_the_hidden_layer_while_auc_improves():
    rest = np.stack([np.arange(0, 240, 2), np.roll(np.arange(1, 240, 2), 7)], axis=1)
    pairs_val = np.r_[PAIRS, rest]
    labels = np.r_[np.ones(120, int), np.zeros(120, int)]
    params = dict(visible_units="gaussian", finetune_method="spectral", **FAST)
    best, report = select_architecture(X, X, pairs_val, labels, 8, pairs=PAIRS, **params)
    widths = [sizes[0] for sizes, _ in report]
    assert widths == [16 * 2**i for i in range(len(widths))] and widths[-1] < 48
    assert all(sizes[-1] == 8 and len(sizes) == 2 for sizes, _ in report)
    aucs = [auc for _, auc in report]
    assert best == report[int(np.argmax(aucs))][0]
    for i in range(1, len(aucs) - 1):  # it went on only while the AUC improved
        assert aucs[i] > aucs[i - 1]
    # each candidate is the spectral fine-tuned model
    model = DeepHash(best, **params).fit(X).finetune(X, PAIRS)
    assert pair_auc(model.encode(X), pairs_val, labels) == pytest.approx(max(aucs))
    with pytest.raises(ValueError, match="pairs"):
        select_architecture(X, X, pairs_val, labels, 8, **params)
    with pytest.raises(ValueError, match="hidden width"):
        select_architecture(X, X, pairs_val, labels, 24, pairs=PAIRS, **params)


def test_the_pair_covariance_is_accumulated_in_blocks(monkeypatch):
    import deephash_ext.deephash as module

    whole = DeepHash((32, 8), finetune_method="spectral", **FAST).fit(X).finetune(X, PAIRS)
    monkeypatch.setattr(module, "_PAIR_CHUNK", 7)  # 120 pairs: 17 full blocks and a partial one
    blocks = DeepHash((32, 8), finetune_method="spectral", **FAST).fit(X).finetune(X, PAIRS)
    np.testing.assert_allclose(blocks.components_[1], whole.components_[1], rtol=1e-4, atol=1e-5)


def test_the_folded_encoder_follows_replaced_arrays():
    model = DeepHash((32, 8), finetune_method="spectral", **FAST).fit(X).finetune(X, PAIRS)
    codes = model.encode(X)
    np.testing.assert_array_equal(model.encode(X), codes)  # the kept fold gives the same codes
    model.components_ = [model.components_[0], -model.components_[1]]  # a new top layer
    flipped = model.encode(X)
    assert np.unpackbits(flipped ^ ~codes).sum() <= 2  # every bit flips (up to values at 0)
