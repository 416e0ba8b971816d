"""DRHN (docs/algorithms.md, sec. 5): architecture, block formula, image layouts, the code rule
and padding, model files, determinism, learning, errors, and the lazy torch import.

Most models are tiny (widths (4, 8), a few dozen images, one or two epochs); the tests of
the architecture itself use the paper's widths on a handful of images.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import deephash_ext
import numpy as np
import pytest
from deephash_ext import DRHN, _io, search, unpack_bits
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

torch = pytest.importorskip("torch")

from deephash_ext._torch.drhn_net import (  # noqa: E402
    ResidualBlock,
    ZeroPadShortcut,
    flushing_denormals,
)

TINY = dict(widths=(4, 8), n_epochs=2, batch_size=16, random_state=0)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: the networks are tiny, and results then do not depend on the
    machine's core count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _blobs(n_per_class=16, n_classes=2, channels=None, seed=0):
    """Images whose class is the orientation of a stripe pattern (horizontal, vertical,
    diagonal, anti-diagonal; period 4, random phase) under Gaussian noise. Orientation
    survives global average pooling, unlike the position of an object.

    Returns (images float32 (n, 32, 32) or (n, channels, 32, 32), labels int64)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    rows, cols = np.mgrid[:32, :32]
    directions = [rows, cols, rows + cols, rows - cols]
    phase = rng.integers(0, 4, size=len(labels))
    stripes = np.stack([np.cos(np.pi / 2 * (directions[c] + p)) for c, p in zip(labels, phase)])
    shape = (len(labels), 32, 32) if channels is None else (len(labels), channels, 32, 32)
    noise = 0.5 * rng.standard_normal(shape)
    images = (noise + (stripes if channels is None else stripes[:, None])).astype(np.float32)
    order = rng.permutation(len(labels))
    return images[order], labels[order]


@pytest.fixture(scope="module")
def data():
    return _blobs()


@pytest.fixture(scope="module")
def tiny(data):
    """A fitted tiny model; tests must not modify it."""
    with torch_threads(1):
        return DRHN(n_bits=12, **TINY).fit(*data)


class torch_threads:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.previous = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.previous)


def _same_state(a, b):
    assert a.network_state_.keys() == b.network_state_.keys()
    for name in a.network_state_:
        np.testing.assert_array_equal(a.network_state_[name], b.network_state_[name], err_msg=name)


# ==================================================================== architecture


@pytest.mark.parametrize("depth", [1, 2])
def test_architecture_matches_table_1(depth):
    images, labels = _blobs(n_per_class=3, n_classes=3)
    model = DRHN(n_bits=24, depth=depth, n_epochs=1, batch_size=9, random_state=0)
    model.fit(images, labels)
    net = model.to_torch()
    blocks = [m for m in net.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == 6 * depth
    assert [len(group) for group in net.groups] == [depth] * 6
    x = torch.from_numpy(images[:5, None])
    with torch.no_grad():
        assert net.stem(x).shape == (5, 16, 32, 32)
        shapes = []
        y = net.stem(x)
        for group in net.groups:
            y = group(y)
            shapes.append(tuple(y.shape[1:]))
        assert shapes == [
            (16, 32, 32),
            (32, 16, 16),
            (64, 8, 8),
            (64, 8, 8),
            (64, 8, 8),
            (128, 4, 4),
        ]
        assert net.features(x).shape == (5, 128)
        H, logits = net(x)
    assert H.shape == (5, 24) and logits.shape == (5, 3)
    assert torch.all((H >= 0) & (H <= 1))
    # stride 2 exactly where the channels grow, with a 1x1 stride-2 projection shortcut
    for g, group in enumerate(net.groups):
        first = group[0]
        grows = g in (1, 2, 5)
        assert first.conv1.stride == ((2, 2) if grows else (1, 1))
        assert first.conv1.kernel_size == first.conv2.kernel_size == (3, 3)
        if grows:
            conv = first.shortcut[0]
            assert conv.kernel_size == (1, 1) and conv.stride == (2, 2)
        else:
            assert isinstance(first.shortcut, torch.nn.Identity)
        for block in group[1:]:
            assert isinstance(block.shortcut, torch.nn.Identity)
    assert model.transform(images).shape == (len(images), 24)
    assert model.transform(images).dtype == np.float32
    proba = model.predict_proba(images)
    assert proba.shape == (len(images), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def _formula(block, x, shortcut):
    return shortcut + block.bn2(block.conv2(block.bn1(torch.relu(block.conv1(x)))))


@pytest.mark.parametrize("shortcut", ["projection", "identity"])
def test_block_is_x_plus_bn_conv_bn_relu_conv(data, shortcut):
    model = DRHN(
        n_bits=8,
        widths=(4, 4, 8),
        depth=2,
        shortcut=shortcut,
        n_epochs=2,
        batch_size=16,
        random_state=0,
    ).fit(*data)
    net = model.to_torch()
    assert not net.training
    x = torch.randn(3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    checked = 0
    with torch.no_grad():
        for group in net.groups:
            for block in group:
                assert not block.training
                # trained batch-norm statistics, so the check is not vacuous
                assert not torch.allclose(
                    block.bn1.running_mean, torch.zeros_like(block.bn1.running_mean)
                )
                if isinstance(block.shortcut, torch.nn.Identity):
                    expected = _formula(block, x, x)
                elif shortcut == "identity":
                    assert isinstance(block.shortcut, ZeroPadShortcut)
                    sub = x[:, :, ::2, ::2]
                    pad = torch.zeros(3, block.conv1.out_channels - x.shape[1], *sub.shape[2:])
                    expected = _formula(block, x, torch.cat([sub, pad], dim=1))
                else:
                    conv, bn = block.shortcut
                    expected = _formula(block, x, bn(conv(x)))
                torch.testing.assert_close(block(x), expected, rtol=0, atol=0)
                x = block(x)
                checked += 1
    assert checked == 6


def test_stem_is_bn_of_relu_of_conv(tiny, data):
    net = tiny.to_torch()
    conv, relu, bn = net.stem
    x = torch.from_numpy(data[0][:4, None])
    with torch.no_grad():
        torch.testing.assert_close(net.stem(x), bn(torch.relu(conv(x))), rtol=0, atol=0)


# ==================================================================== image layouts


def test_single_channel_layouts_give_the_same_model(data):
    images, labels = data
    fits = [
        DRHN(n_bits=8, **TINY).fit(layout, labels)
        for layout in (images, images[:, None], images[..., None])
    ]
    for other in fits[1:]:
        _same_state(fits[0], other)
    codes = fits[0].encode(images)
    for model in fits:
        for layout in (images, images[:, None], images[..., None], images.astype(np.float64)):
            np.testing.assert_array_equal(model.encode(layout), codes)


def test_channels_first_and_last_agree():
    images, labels = _blobs(channels=3)
    first = DRHN(n_bits=8, **TINY).fit(images, labels)
    last = DRHN(n_bits=8, **TINY).fit(np.ascontiguousarray(images.transpose(0, 2, 3, 1)), labels)
    _same_state(first, last)
    assert first.n_channels_in_ == 3
    np.testing.assert_array_equal(
        first.transform(images), first.transform(images.transpose(0, 2, 3, 1))
    )
    with pytest.raises(ValueError, match="images must have 3 channel"):
        first.predict(images[:, 0])


def test_fit_does_not_modify_its_input(data):
    images, labels = data
    copy = images.copy()
    DRHN(n_bits=8, **TINY).fit(images, labels).transform(images)
    np.testing.assert_array_equal(images, copy)


# ==================================================================== codes


@pytest.mark.parametrize("n_bits", [12, 16])
def test_encode_is_h_above_half_packed_lsb_first(data, n_bits):
    images, labels = data
    model = DRHN(n_bits=n_bits, **TINY).fit(images, labels)
    H = model.transform(images)
    codes = model.encode(images)
    n_bytes = -(-n_bits // 8)
    assert codes.dtype == np.uint8 and codes.shape == (len(images), n_bytes)
    bits = unpack_bits(codes)
    np.testing.assert_array_equal(bits[:, :n_bits], (H > 0.5).astype(np.uint8))
    assert not bits[:, n_bits:].any()  # zero padding bits
    weights = 1 << np.arange(8)
    manual = [
        [
            int((H[i, 8 * b : 8 * b + 8] > 0.5) @ weights[: len(H[i, 8 * b : 8 * b + 8])])
            for b in range(n_bytes)
        ]
        for i in range(len(H))
    ]
    np.testing.assert_array_equal(codes, np.array(manual, dtype=np.uint8))


def test_padded_codes_give_the_true_hamming_distance(tiny, data):
    images, _ = data
    codes = tiny.encode(images)
    bits = (tiny.transform(images) > 0.5).astype(np.int32)
    distances, indices = search(codes, codes[:5], k=len(codes))
    truth = (bits[:5, None, :] != bits[None, :, :]).sum(axis=2)
    np.testing.assert_array_equal(distances, np.take_along_axis(truth, indices, axis=1))
    assert distances.max() <= 12


def test_activation_of_exactly_half_gives_bit_zero(data):
    images, labels = data
    model = DRHN(n_bits=16, **TINY).fit(images, labels)
    state = dict(model.network_state_)
    state["hash.weight"] = np.zeros_like(state["hash.weight"])
    state["hash.bias"] = np.zeros_like(state["hash.bias"])
    model.network_state_ = state
    assert np.all(model.transform(images) == 0.5)
    assert not model.encode(images).any()
    state["hash.bias"] = np.full_like(state["hash.bias"], 1e-3)
    assert np.all(model.encode(images) == 255)


# ==================================================================== files, pickling


def test_save_load_round_trip(tiny, data, tmp_path):
    images, _ = data
    path = tmp_path / "drhn.npz"
    tiny.save(path)
    loaded = DRHN.load(path)
    assert loaded.get_params() == tiny.get_params()
    _same_state(tiny, loaded)
    np.testing.assert_array_equal(loaded.encode(images), tiny.encode(images))
    np.testing.assert_array_equal(loaded.transform(images), tiny.transform(images))
    np.testing.assert_array_equal(loaded.predict_proba(images), tiny.predict_proba(images))
    np.testing.assert_array_equal(loaded.classes_, tiny.classes_)
    assert loaded.loss_curve_ == tiny.loss_curve_ and loaded.n_iter_ == tiny.n_iter_
    with np.load(path, allow_pickle=False) as archive:  # plain arrays, no pickle
        assert "classes" in archive.files and "state/hash.weight" in archive.files


def test_load_rejects_bad_files(tiny, tmp_path):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="not a readable DRHN model"):
        DRHN.load(corrupt)
    foreign = tmp_path / "foreign.npz"
    _io.atomic_write_npz(
        foreign, {"x": np.zeros(3)}, {"format": "deephash_ext.DeepHash", "version": 1}
    )
    with pytest.raises(ValueError, match="not a DRHN model"):
        DRHN.load(foreign)
    good = tmp_path / "good.npz"
    tiny.save(good)
    arrays, meta = _io.read_npz(good, kind="x")
    _io.atomic_write_npz(tmp_path / "v2.npz", arrays, {**meta, "version": 2})
    with pytest.raises(ValueError, match="format version 2"):
        DRHN.load(tmp_path / "v2.npz")
    missing = {k: v for k, v in arrays.items() if k != "state/hash.bias"}
    _io.atomic_write_npz(tmp_path / "missing.npz", missing, meta)
    with pytest.raises(ValueError, match="do not fit"):
        DRHN.load(tmp_path / "missing.npz")
    wrong = {**meta, "params": {**meta["params"], "n_bits": 16}}
    _io.atomic_write_npz(tmp_path / "wrong.npz", arrays, wrong)
    with pytest.raises(ValueError, match="do not fit"):
        DRHN.load(tmp_path / "wrong.npz")
    no_classes = {k: v for k, v in arrays.items() if k != "classes"}
    _io.atomic_write_npz(tmp_path / "noclasses.npz", no_classes, meta)
    with pytest.raises(ValueError, match="incomplete"):
        DRHN.load(tmp_path / "noclasses.npz")
    with pytest.raises(FileNotFoundError):
        DRHN.load(tmp_path / "absent.npz")


def test_clone_and_pickle(tiny, data):
    images, _ = data
    fresh = clone(tiny)
    assert fresh.get_params() == tiny.get_params()
    assert not hasattr(fresh, "network_state_")
    again = pickle.loads(pickle.dumps(tiny))
    np.testing.assert_array_equal(again.encode(images), tiny.encode(images))


# ==================================================================== determinism, learning


def test_same_seed_same_model_other_seed_differs(tiny, data):
    images, labels = data
    again = DRHN(n_bits=12, **TINY).fit(images, labels)
    _same_state(tiny, again)
    assert again.loss_curve_ == tiny.loss_curve_
    np.testing.assert_array_equal(again.encode(images), tiny.encode(images))
    other = DRHN(n_bits=12, **{**TINY, "random_state": 1}).fit(images, labels)
    assert not np.array_equal(
        other.network_state_["hash.weight"], tiny.network_state_["hash.weight"]
    )


def test_fit_leaves_torch_global_rng_alone(data):
    state = torch.random.get_rng_state()
    DRHN(n_bits=8, **{**TINY, "mirror": True}).fit(*data)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_denormal_flushing_is_restored(data):
    before = flushing_denormals()
    model = DRHN(n_bits=8, **TINY).fit(*data)
    model.transform(data[0])
    assert flushing_denormals() == before


def test_mirror_is_reproducible(data):
    a = DRHN(n_bits=8, **{**TINY, "mirror": True}).fit(*data)
    b = DRHN(n_bits=8, **{**TINY, "mirror": True}).fit(*data)
    _same_state(a, b)
    c = DRHN(n_bits=8, **TINY).fit(*data)
    assert a.loss_curve_ != c.loss_curve_


def test_learns_an_easy_problem():
    images, labels = _blobs(n_per_class=30, n_classes=4, seed=0)
    test_images, test_labels = _blobs(n_per_class=15, n_classes=4, seed=1)
    labels, test_labels = labels * 10 + 3, test_labels * 10 + 3  # arbitrary class values
    model = DRHN(
        n_bits=16, widths=(8, 16), n_epochs=6, batch_size=16, learning_rate=0.05, random_state=0
    ).fit(images, labels)
    np.testing.assert_array_equal(model.classes_, [3, 13, 23, 33])
    assert model.loss_curve_[-1] < model.loss_curve_[0]
    assert model.score(test_images, test_labels) > 0.75  # chance: 0.25
    assert set(np.unique(model.predict(test_images))) <= {3, 13, 23, 33}
    # codes retrieve the query's class: precision@10 above chance
    db, queries = model.encode(images), model.encode(test_images)
    _, indices = search(db, queries, k=10)
    assert (labels[indices] == test_labels[:, None]).mean() > 0.6


def test_verbose_shows_progress(data, capsys):
    DRHN(n_bits=8, **{**TINY, "verbose": True, "n_epochs": 1}).fit(*data)
    assert "DRHN" in capsys.readouterr().err


# ==================================================================== errors


@pytest.mark.parametrize(
    "shape",
    [
        (8, 28, 28),
        (8, 32, 32, 2),
        (8, 2, 32, 32),
        (8, 1024),
        (8, 1, 1, 32, 32),
        (32, 32),
        (0, 32, 32),
        (8, 4, 32, 32),
    ],
)
def test_bad_image_shapes(data, shape, tiny):
    images = np.zeros(shape, dtype=np.float32)
    labels = np.arange(shape[0]) % 2
    with pytest.raises(ValueError, match="images"):
        DRHN(n_bits=8, **TINY).fit(images, labels)
    with pytest.raises(ValueError, match="images"):
        tiny.encode(images)


def test_bad_image_values(data, tiny):
    images, labels = data
    with pytest.raises(TypeError, match="images"):
        DRHN(**TINY).fit(images.astype(str), labels)
    bad = images.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="images must be finite"):
        DRHN(**TINY).fit(bad, labels)
    with pytest.raises(ValueError, match="images must be finite"):
        tiny.predict(bad)
    with pytest.raises(ValueError, match="at least 2 images"):
        DRHN(**TINY).fit(images[:1], labels[:1])


def test_bad_labels(data):
    images, labels = data
    with pytest.raises(ValueError, match="labels must have one entry per sample"):
        DRHN(**TINY).fit(images, labels[:-1])
    with pytest.raises(TypeError, match="labels must hold integer"):
        DRHN(**TINY).fit(images, labels.astype(np.float64))
    with pytest.raises(TypeError, match="labels must hold integer"):
        DRHN(**TINY).fit(images, labels.astype(str))
    with pytest.raises(ValueError, match="labels must contain at least 2 classes"):
        DRHN(**TINY).fit(images, np.zeros(len(images), dtype=int))
    with pytest.raises(ValueError, match="labels must be 1-D"):
        DRHN(**TINY).fit(images, labels[:, None])


@pytest.mark.parametrize(
    "param, value, error",
    [
        ("n_bits", 0, ValueError),
        ("n_bits", 12.0, TypeError),
        ("n_bits", True, TypeError),
        ("depth", 0, ValueError),
        ("widths", (), ValueError),
        ("widths", (4, 0), ValueError),
        ("widths", 16, TypeError),
        ("widths", (4, 8.5), TypeError),
        ("shortcut", "conv", ValueError),
        ("n_epochs", 0, ValueError),
        ("batch_size", 1, ValueError),
        ("learning_rate", 0.0, ValueError),
        ("learning_rate", float("nan"), ValueError),
        ("learning_rate", "0.1", TypeError),
        ("weight_decay", -1e-4, ValueError),
        ("momentum", 1.0, ValueError),
        ("momentum", -0.1, ValueError),
        ("mirror", "yes", TypeError),
        ("device", "tpu", ValueError),
        ("device", 3, TypeError),
    ],
)
def test_bad_parameters_name_themselves(data, param, value, error):
    model = DRHN(n_bits=8, **TINY).set_params(**{param: value})
    with pytest.raises(error, match=param):
        model.fit(*data)


def test_identity_shortcut_needs_growing_widths(data):
    with pytest.raises(ValueError, match="shortcut='identity' needs non-decreasing widths"):
        DRHN(n_bits=8, **{**TINY, "widths": (8, 4)}, shortcut="identity").fit(*data)
    DRHN(n_bits=8, **{**TINY, "widths": (8, 4), "n_epochs": 1}).fit(*data)  # projection: ok


def test_failed_fit_keeps_the_fitted_model(data):
    images, labels = data
    model = DRHN(n_bits=8, **TINY).fit(images, labels)
    codes = model.encode(images)
    with pytest.raises(ValueError):
        model.fit(images[..., :28], labels)
    np.testing.assert_array_equal(model.encode(images), codes)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_raises_runtime_error(data, tiny):
    with pytest.raises(RuntimeError, match="cuda"):
        DRHN(n_bits=8, **{**TINY, "device": "cuda"}).fit(*data)
    with pytest.raises(RuntimeError, match="cuda"):
        clone(tiny).set_params(device="cuda").fit(*data)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_agrees_with_cpu(data):
    images, labels = data
    gpu = DRHN(n_bits=12, **{**TINY, "device": "cuda"}).fit(images, labels)
    cpu = DRHN(n_bits=12, **TINY).fit(images, labels)
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(gpu.transform(images), cpu.transform(images), atol=1e-3)
    np.testing.assert_allclose(
        gpu.set_params(device="cpu").transform(images),
        gpu.set_params(device="cuda").transform(images),
        atol=1e-4,
    )


def test_not_fitted(data):
    for method in ("encode", "transform", "predict", "predict_proba", "to_torch"):
        with pytest.raises(NotFittedError):
            getattr(DRHN(), method)(*([] if method == "to_torch" else [data[0]]))
    with pytest.raises(NotFittedError):
        DRHN().save("never-written.npz")


def test_missing_torch_raises_import_error(data, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="pip install"):
        DRHN(n_bits=8, **TINY).fit(*data)


def test_import_does_not_load_torch():
    code = (
        "import sys, deephash_ext, deephash_ext.drhn; deephash_ext.DRHN; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert "DRHN" in deephash_ext.__all__
