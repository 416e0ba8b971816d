"""DeepHash (docs/algorithms.md, sec. 2): the fitted stack against NumPy, determinism, model files,
Siamese fine-tuning (torch, optional) and argument errors.

All data are small clustered float32 sets generated here (instances x views, each view a
noisy copy of its instance's centre), so every same-instance pair is a true match. The
encoder runs in float32 (BLAS), so comparisons with the float64 NumPy reference skip bits
whose projection is within 1e-4 of its threshold.
"""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import warnings

import deephash_ext
import numpy as np
import pytest
from deephash_ext import DeepHash, _io
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import parametrize_with_checks

MARGIN = 1e-4  # bits whose projection is this close to the threshold may flip in float32
SIZES = (64, 16)
FIT = dict(n_epochs=3, learning_rate=0.01, batch_size=50)


def _clustered(n_instances=150, n_views=4, n_features=128, noise=0.8, seed=0):
    """(X float32 (n_instances * n_views, n_features), instance id of every row)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_instances, 1, n_features))
    views = centres + noise * rng.normal(size=(n_instances, n_views, n_features))
    X = views.reshape(n_instances * n_views, n_features).astype(np.float32)
    return X, np.repeat(np.arange(n_instances), n_views)


def _matching_pairs(instance):
    """Every same-instance pair (i < j) of rows, as int64 (n_pairs, 2)."""
    i, j = np.triu_indices(len(instance), 1)
    same = instance[i] == instance[j]
    return np.stack([i[same], j[same]], axis=1).astype(np.int64)


def _bits(codes, n_bits):
    return np.unpackbits(codes, axis=1, bitorder="little", count=n_bits)


def _assert_same_model(a, b):
    np.testing.assert_array_equal(a.input_means_, b.input_means_)
    for name in ("components_", "offsets_", "intercepts_visible_"):
        assert len(getattr(a, name)) == len(getattr(b, name)), name
        for x, y in zip(getattr(a, name), getattr(b, name)):
            assert x.dtype == y.dtype, name
            np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.fixture(scope="module")
def data():
    return _clustered()


@pytest.fixture(scope="module")
def fitted(data):
    """A fitted (64, 16) model; tests must not modify it (finetune a clone of it)."""
    return DeepHash(SIZES, random_state=0, **FIT).fit(data[0])


def _copy(model):
    """An independent copy of a fitted model (finetune works in place)."""
    other = clone(model)
    for name in (
        "input_means_",
        "input_scales_",
        "n_features_in_",
        "finetuned_",
        "margins_",
        "hidden_units_",
    ):
        setattr(other, name, getattr(model, name))
    other.finetune_loss_, other.finetune_scores_ = model.finetune_loss_, model.finetune_scores_
    for name in ("components_", "offsets_", "intercepts_visible_"):
        setattr(other, name, [a.copy() for a in getattr(model, name)])
    return other


@pytest.fixture
def torch():
    """torch (or skip), with one intra-op thread while the test runs.

    The fine-tuning matrices are tiny; on a busy machine torch's thread pool makes them
    about 20x slower than one thread (measured: 4 s against 0.2 s for 140 minibatches).
    """
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield torch
    finally:
        torch.set_num_threads(previous)


# ==================================================================== fit and encode


def test_fit_sets_attributes(data, fitted):
    X, _ = data
    assert fitted.n_features_in_ == X.shape[1]
    assert fitted.input_means_.dtype == np.float32 and fitted.input_means_.shape == (128,)
    np.testing.assert_allclose(
        fitted.input_means_, X.mean(axis=0, dtype=np.float64), rtol=1e-6, atol=1e-6
    )
    n_in = X.shape[1]
    for name in ("components_", "offsets_", "intercepts_visible_"):
        assert isinstance(getattr(fitted, name), list) and len(getattr(fitted, name)) == 2
    for W, offsets, visible, size in zip(
        fitted.components_, fitted.offsets_, fitted.intercepts_visible_, SIZES
    ):
        assert W.dtype == offsets.dtype == visible.dtype == np.float32
        assert W.shape == (size, n_in) and offsets.shape == (size,) and visible.shape == (n_in,)
        n_in = size
    assert fitted.finetuned_ is False
    assert fitted.margins_ == [] and fitted.finetune_loss_ == []
    assert fitted.n_bits == 16


def test_fit_returns_self_and_float64_input_gives_float32(data):
    X, _ = data
    model = DeepHash((16,), n_epochs=1, random_state=0)
    assert model.fit(X.astype(np.float64)) is model
    assert model.components_[0].dtype == np.float32
    assert model.input_means_.dtype == np.float32
    np.testing.assert_array_equal(model.encode(X.astype(np.float64)), model.encode(X))


@pytest.mark.parametrize("layer, n_bytes", [(0, 8), (1, 2), (-1, 2), (-2, 8)])
def test_encode_shapes_for_every_layer(data, fitted, layer, n_bytes):
    X, _ = data
    codes = fitted.encode(X[:37], layer=layer)
    assert codes.dtype == np.uint8 and codes.shape == (37, n_bytes)
    assert codes.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(codes, fitted.encode(X, layer=layer)[:37])
    assert fitted.encode(X[:1], layer=layer).shape == (1, n_bytes)


def test_encode_default_is_last_layer(data, fitted):
    X, _ = data
    np.testing.assert_array_equal(fitted.encode(X), fitted.encode(X, layer=1))
    np.testing.assert_array_equal(fitted.encode(X, layer=np.int64(0)), fitted.encode(X, layer=0))


def test_encode_matches_numpy_reference(data, fitted):
    """z0 = [X > input_means_]; z_l = [z_{l-1} W_l^T > offsets_l]; LSB-first packing."""
    X, _ = data
    X_test = _clustered(n_instances=60, seed=1)[0]
    for rows in (X, X_test):
        z = (rows > fitted.input_means_).astype(np.float64)
        sure_rows = np.ones(len(rows), dtype=bool)  # every earlier bit far from its threshold
        for layer, (W, offsets) in enumerate(zip(fitted.components_, fitted.offsets_)):
            projection = z @ W.astype(np.float64).T
            margin = projection - offsets.astype(np.float64)
            bits = margin > 0
            sure = (np.abs(margin) > MARGIN) & sure_rows[:, None]
            assert sure.mean() > 0.9, (layer, sure.mean())
            codes = fitted.encode(rows, layer=layer)
            np.testing.assert_array_equal(
                _bits(codes, W.shape[0])[sure], bits[sure], err_msg=f"layer {layer}"
            )
            exact = sure.all(axis=1)
            np.testing.assert_array_equal(
                codes[exact], np.packbits(bits, axis=1, bitorder="little")[exact]
            )
            sure_rows &= exact
            z = bits.astype(np.float64)
            if layer > 0:  # one step from the encoder's own codes of the layer below
                below = _bits(fitted.encode(rows, layer=layer - 1), W.shape[1])
                margin = below @ W.astype(np.float64).T - offsets.astype(np.float64)
                sure = np.abs(margin) > MARGIN
                assert sure.mean() > 0.99, (layer, sure.mean())
                np.testing.assert_array_equal(
                    _bits(codes, W.shape[0])[sure], (margin > 0)[sure], err_msg=f"layer {layer}"
                )


def test_offsets_are_training_mean_projections(data, fitted):
    """docs/algorithms.md, sec. 2.5: each offset is the training mean of its projection (the next
    layer is trained on, and centred with, the previous layer's codes)."""
    X, _ = data
    z = (X > fitted.input_means_).astype(np.float64)
    for layer, (W, offsets) in enumerate(zip(fitted.components_, fitted.offsets_)):
        np.testing.assert_allclose(
            offsets,
            (z @ W.astype(np.float64).T).mean(axis=0),
            rtol=1e-5,
            atol=1e-5,
            err_msg=f"layer {layer}",
        )
        z = _bits(fitted.encode(X, layer=layer), W.shape[0]).astype(np.float64)
    # Centred bits fire for a fair share of the training data.
    rates = _bits(fitted.encode(X, layer=0), 64).mean(axis=0)
    assert np.all((rates > 0.05) & (rates < 0.95)), rates


# ==================================================================== determinism


def test_same_seed_same_model_other_seed_differs(data, fitted):
    X, _ = data
    again = DeepHash(SIZES, random_state=0, **FIT).fit(X)
    _assert_same_model(fitted, again)
    np.testing.assert_array_equal(fitted.encode(X), again.encode(X))
    other = DeepHash(SIZES, random_state=1, **FIT).fit(X)
    for a, b in zip(fitted.components_, other.components_):
        assert not np.array_equal(a, b)
    assert not np.array_equal(fitted.encode(X, layer=0), other.encode(X, layer=0))
    # A RandomState instance seeds like its integer.
    same = DeepHash(SIZES, random_state=np.random.RandomState(0), **FIT).fit(X)
    _assert_same_model(fitted, same)


def test_same_seed_shares_first_layer_across_depths(data):
    """Documented: layer l gets the l-th seed drawn from random_state."""
    X, _ = data
    a = DeepHash((32, 16), random_state=5, **FIT).fit(X)
    b = DeepHash((32, 8), random_state=5, **FIT).fit(X)
    np.testing.assert_array_equal(a.components_[0], b.components_[0])
    np.testing.assert_array_equal(a.offsets_[0], b.offsets_[0])
    np.testing.assert_array_equal(a.encode(X, layer=0), b.encode(X, layer=0))


def test_reuse_copies_first_layers_and_gives_the_same_model(data):
    X, _ = data
    deep = DeepHash((32, 16, 8), random_state=3, **FIT).fit(X)
    reused = DeepHash((32, 24), random_state=3, **FIT).fit(X, reuse=deep)
    assert reused.components_[0] is deep.components_[0]  # copied, not retrained
    _assert_same_model(reused, DeepHash((32, 24), random_state=3, **FIT).fit(X))


@pytest.mark.parametrize("change", ["seed", "params", "data", "none_seed"])
def test_reuse_ignores_models_that_do_not_qualify(data, change):
    X, _ = data
    deep = DeepHash((32, 16), random_state=3, **FIT).fit(X)
    kwargs = dict(FIT, random_state=3)
    if change == "seed":
        kwargs["random_state"] = 4
    elif change == "params":
        kwargs["hashing_reg"] = 0.3
    elif change == "none_seed":
        kwargs["random_state"] = None
    X_fit = X[::-1].copy() * 1.5 if change == "data" else X
    model = DeepHash((32, 8), **kwargs).fit(X_fit, reuse=deep)
    assert model.components_[0] is not deep.components_[0]


def test_fit_is_identical_at_any_thread_count(data, restore_num_threads):
    """1024 hidden units: more than one 512-row panel, so two threads really split work."""
    X, _ = data
    models = []
    for threads in (1, 2):
        deephash_ext.set_num_threads(threads)
        models.append(DeepHash((1024, 16), n_epochs=1, learning_rate=0.01, random_state=0).fit(X))
        assert deephash_ext.get_num_threads() == threads
    _assert_same_model(*models)
    np.testing.assert_array_equal(models[0].encode(X), models[1].encode(X))


# ==================================================================== files


def test_save_load_round_trip(data, fitted, tmp_path):
    X, _ = data
    path = tmp_path / "model.npz"
    fitted.save(path)
    loaded = DeepHash.load(path)
    assert isinstance(loaded, DeepHash)
    _assert_same_model(fitted, loaded)
    assert loaded.get_params() == fitted.get_params()
    assert loaded.n_features_in_ == fitted.n_features_in_
    assert loaded.finetuned_ is False and loaded.margins_ == [] and loaded.finetune_loss_ == []
    for layer in (0, 1):
        np.testing.assert_array_equal(loaded.encode(X, layer=layer), fitted.encode(X, layer=layer))
    # str paths and any file name work; nothing else is left in the directory.
    fitted.save(str(tmp_path / "model.bin"))
    _assert_same_model(fitted, DeepHash.load(str(tmp_path / "model.bin")))
    assert sorted(os.listdir(tmp_path)) == ["model.bin", "model.npz"]


def test_save_overwrites_and_random_state_instance_is_dropped(data, tmp_path):
    X, _ = data
    path = tmp_path / "model.npz"
    DeepHash((8,), n_epochs=1, random_state=1).fit(X).save(path)
    model = DeepHash((16,), n_epochs=1, random_state=np.random.RandomState(0)).fit(X)
    model.save(path)
    loaded = DeepHash.load(path)
    assert loaded.random_state is None
    _assert_same_model(model, loaded)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape("missing.npz")):
        DeepHash.load(tmp_path / "missing.npz")


def _corrupt_files(fitted, tmp_path):
    good = tmp_path / "good.npz"
    fitted.save(good)
    content = good.read_bytes()
    cases = {
        "truncated.npz": content[: len(content) // 2],
        "header_only.npz": content[:10],
        "empty.npz": b"",
        "random.npz": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    }
    for name, payload in cases.items():
        (tmp_path / name).write_bytes(payload)
    return [tmp_path / name for name in cases]


def test_load_corrupt_files(fitted, tmp_path):
    for path in _corrupt_files(fitted, tmp_path):
        # The ResourceWarning of a leaked file handle is the subject of the next test.
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always", ResourceWarning)
            with pytest.raises(ValueError, match=re.escape(str(path))):
                DeepHash.load(path)
            gc.collect()


def test_load_corrupt_files_closes_them(fitted, tmp_path):
    for path in _corrupt_files(fitted, tmp_path):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            with pytest.raises(ValueError):
                DeepHash.load(path)
            gc.collect()
        leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
        assert not leaks, leaks


def test_load_foreign_files(tmp_path):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.arange(3), b=np.ones((2, 2)))
    with pytest.raises(ValueError, match=re.escape(str(foreign))):
        DeepHash.load(foreign)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match=re.escape(str(pickled))):
        DeepHash.load(pickled)
    single = tmp_path / "array.npy"
    np.save(single, np.arange(10))
    with pytest.raises(ValueError, match=re.escape(str(single))):
        DeepHash.load(single)


def _rewrite(source, target, *, meta=None, drop=None, replace=None):
    arrays, old_meta = _io.read_npz(source, kind="test")
    if drop is not None:
        del arrays[drop]
    arrays.update(replace or {})
    _io.atomic_write_npz(target, arrays, {**old_meta, **(meta or {})})


def test_load_wrong_format_or_version_or_inconsistent_arrays(fitted, tmp_path):
    good = tmp_path / "good.npz"
    fitted.save(good)
    _rewrite(good, tmp_path / "v2.npz", meta={"version": 2})
    with pytest.raises(ValueError, match="version"):
        DeepHash.load(tmp_path / "v2.npz")
    _rewrite(good, tmp_path / "rbm.npz", meta={"format": "deephash_ext.RBM"})
    with pytest.raises(ValueError, match="not a DeepHash model"):
        DeepHash.load(tmp_path / "rbm.npz")
    _rewrite(good, tmp_path / "short.npz", drop="offsets_1")
    with pytest.raises(ValueError, match="incomplete"):
        DeepHash.load(tmp_path / "short.npz")
    _rewrite(good, tmp_path / "bad_param.npz", meta={"params": {"no_such_param": 1}})
    with pytest.raises(ValueError, match=re.escape("bad_param.npz")):
        DeepHash.load(tmp_path / "bad_param.npz")
    _rewrite(
        good,
        tmp_path / "shapes.npz",
        replace={"components_1": np.zeros((16, 63), dtype=np.float32)},
    )
    with pytest.raises(ValueError, match="layer 1"):
        DeepHash.load(tmp_path / "shapes.npz")
    # The rewritten-but-unchanged file still loads: the failures above are the edits.
    _rewrite(good, tmp_path / "same.npz")
    _assert_same_model(fitted, DeepHash.load(tmp_path / "same.npz"))


def test_failed_save_leaves_existing_file_and_no_temporary(data, fitted, tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    DeepHash((8,), n_epochs=1, random_state=3).fit(data[0]).save(path)
    before = path.read_bytes()

    def broken_savez(handle, **arrays):
        handle.write(b"PK\x03\x04 half an archive")
        raise RuntimeError("disk full")

    monkeypatch.setattr(_io.np, "savez", broken_savez)
    with pytest.raises(RuntimeError, match="disk full"):
        fitted.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]
    monkeypatch.undo()
    assert DeepHash.load(path).hidden_layer_sizes == (8,)


def test_save_unfitted_raises(tmp_path):
    with pytest.raises(NotFittedError):
        DeepHash((8,)).save(tmp_path / "model.npz")
    assert os.listdir(tmp_path) == []


# ==================================================================== fine-tuning


def _hamming_auc(model, X, instance, layer):
    """ROC AUC of -Hamming distance for same-instance vs other pairs of rows of X."""
    bits = _bits(model.encode(X, layer=layer), model.components_[layer].shape[0])
    bits = bits.astype(np.int32)
    distances = bits.sum(1)[:, None] + bits.sum(1)[None, :] - 2 * (bits @ bits.T)
    i, j = np.triu_indices(len(X), 1)
    return roc_auc_score(instance[i] == instance[j], -distances[i, j])


def test_finetune_improves_every_layer(torch, data):
    """Table 1 of the paper: fine-tuning improves the codes of every layer."""
    X, instance = data
    model = DeepHash(SIZES, n_epochs=10, learning_rate=0.01, random_state=0).fit(X)
    before = [_hamming_auc(model, X, instance, layer) for layer in (0, 1)]
    pairs = _matching_pairs(instance)
    assert model.finetune(X, pairs, n_epochs=5, learning_rate=1e-3, random_state=0) is model
    after = [_hamming_auc(model, X, instance, layer) for layer in (0, 1)]
    for layer, (b, a) in enumerate(zip(before, after)):
        assert a > b + 0.01, (layer, before, after)
    assert model.finetuned_ is True
    assert len(model.margins_) == 2 and all(m > 0 for m in model.margins_)
    assert all(isinstance(m, float) for m in model.margins_)
    assert len(model.finetune_loss_) == 5 and all(np.isfinite(model.finetune_loss_))
    for W, size, n_in in zip(model.components_, SIZES, (128, 64)):
        assert W.dtype == np.float32 and W.shape == (size, n_in)


def test_finetune_recentres_on_its_X(torch, data, fitted):
    X, instance = data
    X_ft, pairs = X[:300], _matching_pairs(instance[:300])
    model = _copy(fitted).finetune(X_ft, pairs, n_epochs=2, learning_rate=1e-3, random_state=0)
    z = (X_ft > model.input_means_).astype(np.float64)  # the input means stay
    np.testing.assert_array_equal(model.input_means_, fitted.input_means_)
    for layer, (W, offsets) in enumerate(zip(model.components_, model.offsets_)):
        assert not np.array_equal(W, fitted.components_[layer])
        assert offsets.dtype == np.float32
        np.testing.assert_allclose(
            offsets,
            (z @ W.astype(np.float64).T).mean(axis=0),
            rtol=1e-5,
            atol=1e-5,
            err_msg=f"layer {layer}",
        )
        z = _bits(model.encode(X_ft, layer=layer), W.shape[0]).astype(np.float64)


def test_finetune_is_reproducible_and_margins_can_be_given(torch, data, fitted):
    X, instance = data
    pairs = _matching_pairs(instance)
    kwargs = dict(n_epochs=2, learning_rate=1e-3, random_state=7)
    a = _copy(fitted).finetune(X, pairs, **kwargs)
    b = _copy(fitted).finetune(X, pairs, **kwargs)
    _assert_same_model(a, b)
    assert a.margins_ == b.margins_ and a.finetune_loss_ == b.finetune_loss_
    np.testing.assert_array_equal(a.encode(X), b.encode(X))
    c = _copy(fitted).finetune(X, pairs, **{**kwargs, "random_state": 8})
    assert not np.array_equal(a.components_[0], c.components_[0])
    given = _copy(fitted).finetune(X, pairs, margins=[2.5, 0.5], **kwargs)
    assert given.margins_ == [2.5, 0.5]
    assert len(given.finetune_loss_) == 2
    # The fitted model the copies came from is untouched.
    _assert_same_model(fitted, DeepHash(SIZES, random_state=0, **FIT).fit(X))


def test_finetune_single_margin_and_explicit_labels(torch, data, fitted):
    X, instance = data
    pairs = _matching_pairs(instance)
    single = _copy(fitted).finetune(
        X, pairs, loss="single_margin", n_epochs=1, learning_rate=1e-3, random_state=0
    )
    assert single.finetuned_ and len(single.finetune_loss_) == 1
    assert np.isfinite(single.finetune_loss_).all()
    rng = np.random.default_rng(3)
    others = np.stack([rng.permutation(len(X)), rng.permutation(len(X))], axis=1)
    others = others[instance[others[:, 0]] != instance[others[:, 1]]]
    all_pairs = np.concatenate([pairs, others])
    labels = np.concatenate([np.ones(len(pairs), int), np.zeros(len(others), int)])
    labelled = _copy(fitted).finetune(
        X, all_pairs, labels, n_epochs=2, learning_rate=1e-3, random_state=0
    )
    assert len(labelled.margins_) == 2 and all(m > 0 for m in labelled.margins_)
    assert len(labelled.finetune_loss_) == 2
    # Boolean labels are 0/1 as well.
    _copy(fitted).finetune(X, all_pairs, labels.astype(bool), n_epochs=1, random_state=0)


def test_finetune_round_trips_through_a_file(torch, data, fitted, tmp_path):
    X, instance = data
    model = _copy(fitted).finetune(X, _matching_pairs(instance), n_epochs=1, random_state=0)
    model.save(tmp_path / "tuned.npz")
    loaded = DeepHash.load(tmp_path / "tuned.npz")
    _assert_same_model(model, loaded)
    assert loaded.finetuned_ is True
    assert loaded.margins_ == model.margins_
    assert loaded.finetune_loss_ == model.finetune_loss_
    np.testing.assert_array_equal(loaded.encode(X), model.encode(X))


def test_finetune_without_torch_raises_import_error(data, fitted, monkeypatch):
    X, instance = data
    model = _copy(fitted)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="pip install"):
        model.finetune(X, _matching_pairs(instance), n_epochs=1)
    _assert_same_model(fitted, model)
    assert model.finetuned_ is False


def test_finetune_before_fit_raises(data):
    X, instance = data
    with pytest.raises(NotFittedError):
        DeepHash(SIZES).finetune(X, _matching_pairs(instance))


# ==================================================================== errors


@pytest.mark.parametrize(
    "sizes, exc",
    [
        ((), ValueError),
        ([], ValueError),
        ((64, 12), ValueError),
        ((0,), ValueError),
        ((-8,), ValueError),
        (16, TypeError),
        ("16", TypeError),
        (None, TypeError),
        ((16.0,), TypeError),
        ((16, "8"), TypeError),
        ((True,), TypeError),
    ],
)
def test_invalid_hidden_layer_sizes(data, sizes, exc):
    with pytest.raises(exc, match="hidden_layer_sizes"):
        DeepHash(sizes, n_epochs=1).fit(data[0][:50])


@pytest.mark.parametrize(
    "name, value",
    [
        ("learning_rate", 0.0),
        ("learning_rate", -0.1),
        ("momentum", 1.0),
        ("momentum", -0.1),
        ("hashing_reg", 1.5),
        ("weight_decay", -1.0),
        ("n_epochs", 0),
        ("batch_size", 0),
        ("cd_k", 0),
    ],
)
def test_invalid_rbm_parameter_raises_before_training(data, fitted, monkeypatch, name, value):
    def no_training(*args, **kwargs):
        raise AssertionError("an RBM was trained before the parameters were checked")

    monkeypatch.setattr(deephash_ext.rbm.RBM, "fit", no_training)
    model = _copy(fitted).set_params(**{name: value})
    with pytest.raises(ValueError, match=name):
        model.fit(data[0])
    # A failed fit leaves the fitted model as it was.
    _assert_same_model(fitted, model)


def test_invalid_rbm_parameter_type(data):
    with pytest.raises(TypeError, match="learning_rate"):
        DeepHash((8,), learning_rate="fast").fit(data[0])


@pytest.mark.parametrize("method", ["fit", "encode", "finetune"])
def test_non_finite_X(data, fitted, method):
    X, instance = data
    bad = X.copy()
    bad[3, 5] = np.nan
    model = _copy(fitted)
    with pytest.raises(ValueError, match="NaN"):
        if method == "fit":
            model.fit(bad)
        elif method == "encode":
            model.encode(bad)
        else:
            model.finetune(bad, _matching_pairs(instance))
    bad[3, 5] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        model.encode(bad)
    _assert_same_model(fitted, model)


def test_encode_wrong_number_of_features(data, fitted):
    X, _ = data
    with pytest.raises(ValueError, match="features"):
        fitted.encode(X[:, :100])
    with pytest.raises(ValueError, match="2D array"):
        fitted.encode(X[0])


@pytest.mark.parametrize(
    "layer, exc",
    [
        (2, ValueError),
        (-3, ValueError),
        (1.0, TypeError),
        ("0", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_encode_bad_layer(data, fitted, layer, exc):
    with pytest.raises(exc, match="layer"):
        fitted.encode(data[0][:5], layer=layer)


def test_encode_before_fit():
    with pytest.raises(NotFittedError):
        DeepHash((8,)).encode(np.zeros((2, 4), np.float32))


_BAD_FINETUNE = [
    # (keyword arguments on top of valid ones, exception, match)
    (dict(pairs=np.zeros((5, 3), np.int64)), ValueError, "pairs"),
    (dict(pairs=np.zeros((0, 2), np.int64)), ValueError, "pairs"),
    (dict(pairs=np.arange(10)), ValueError, "pairs"),
    (dict(pairs=np.array([[0.0, 1.0]])), TypeError, "pairs"),
    (dict(pairs=np.array([[0, 600]])), ValueError, "pairs"),
    (dict(pairs=np.array([[-1, 2]])), ValueError, "pairs"),
    (dict(pairs=np.array([[0, 1], [4, 4]])), ValueError, r"pairs.*\(i, i\)"),
    (dict(pairs=np.array([[0, 1], [2, 3]]), pair_labels=[1]), ValueError, "pair_labels"),
    (dict(pairs=np.array([[0, 1], [2, 3]]), pair_labels=[1, 2]), ValueError, "pair_labels"),
    (dict(pairs=np.array([[0, 1], [2, 3]]), pair_labels=[1, 0.5]), ValueError, "pair_labels"),
    (dict(pairs=np.array([[0, 1], [2, 3]]), pair_labels=[1, 1]), ValueError, "pair_labels"),
    (dict(loss="hinge"), ValueError, "loss"),
    (dict(margins=[1.0]), ValueError, "margins"),
    (dict(margins=[1.0, 0.0]), ValueError, "margins"),
    (dict(margins=[1.0, -2.0]), ValueError, "margins"),
    (dict(margins=[1.0, np.nan]), ValueError, "margins"),
    (dict(n_epochs=0), ValueError, "n_epochs"),
    (dict(n_epochs=1.5), TypeError, "n_epochs"),
    (dict(matching_per_batch=0), ValueError, "matching_per_batch"),
    (dict(learning_rate=0.0), ValueError, "learning_rate"),
    (dict(learning_rate=-1e-3), ValueError, "learning_rate"),
    (dict(learning_rate=np.inf), ValueError, "learning_rate"),
    (dict(learning_rate="1e-3"), TypeError, "learning_rate"),
]


@pytest.mark.parametrize(
    "kwargs, exc, match",
    _BAD_FINETUNE,
    ids=[f"{list(k)[-1]}-{i}" for i, (k, _, _) in enumerate(_BAD_FINETUNE)],
)
def test_finetune_invalid_arguments_leave_model_unchanged(data, fitted, kwargs, exc, match):
    """Checked before torch is imported, so these run without torch too."""
    X, instance = data
    model = _copy(fitted)
    arguments = {"X": X, "pairs": _matching_pairs(instance), **kwargs}
    with pytest.raises(exc, match=match):
        model.finetune(**arguments)
    _assert_same_model(fitted, model)
    assert model.finetuned_ is False and model.margins_ == [] and model.finetune_loss_ == []


def test_finetune_wrong_number_of_features(data, fitted):
    X, instance = data
    with pytest.raises(ValueError, match="features"):
        _copy(fitted).finetune(X[:, :64], _matching_pairs(instance))


# ==================================================================== package and sklearn


def test_package_exposes_deephash():
    assert deephash_ext.DeepHash is DeepHash
    assert "DeepHash" in deephash_ext.__all__


def test_import_does_not_load_torch():
    code = (
        "import sys, deephash_ext.deephash, deephash_ext; deephash_ext.DeepHash; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, timeout=60)


def test_clone_and_get_params(fitted):
    params = dict(
        hidden_layer_sizes=(32, 8),
        learning_rate=0.05,
        momentum=0.5,
        weight_decay=0.0,
        batch_size=20,
        n_epochs=2,
        cd_k=2,
        hashing_reg=0.3,
        random_state=4,
        verbose=False,
        device="cpu",
        input_threshold="zero",
        visible_units="gaussian",
        finetune_method="spectral",
    )
    model = DeepHash(**params)
    assert model.get_params() == params
    copy = clone(model)
    assert copy is not model and copy.get_params() == params
    assert DeepHash(**model.get_params()).get_params() == params
    unfitted = clone(fitted)
    assert unfitted.get_params() == fitted.get_params()
    assert not hasattr(unfitted, "components_")
    with pytest.raises(NotFittedError):
        unfitted.encode(np.zeros((1, 128), np.float32))


@parametrize_with_checks([DeepHash((8,), n_epochs=1, random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
