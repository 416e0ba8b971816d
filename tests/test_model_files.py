"""Model files and descriptor files as a hostile user writes them (issue 12, item 5).

Every corrupt, foreign or inconsistent file is a ValueError naming the path, checked
before anything is allocated; saving names the target (never the temporary file), keeps
the target's mode, flushes the directory and leaves nothing behind when it fails.
"""

from __future__ import annotations

import os
import stat
import tracemalloc

import numpy as np
import pytest
from deephash_ext import DeepHash, _io
from deephash_ext.datasets import load_descriptors, save_fvecs
from npz_tools import (
    META,
    central_entries,
    meta_of,
    npy_bytes,
    npy_header,
    read_members,
    replaced,
    with_meta,
    write_members,
    write_with_bomb,
)

torch = pytest.importorskip("torch")
from deephash_ext import DRHN, SSDH  # noqa: E402

# Peak Python-tracked memory (numpy arrays included) a rejected file may cost.
SMALL_PEAK = 16 << 20


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(0).normal(size=(120, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def deephash(X):
    return DeepHash((16, 8), n_epochs=2, learning_rate=0.05, batch_size=40, random_state=0).fit(X)


@pytest.fixture(scope="module")
def ssdh(X):
    y = np.repeat([0, 1, 2], 40)
    return SSDH(n_bits=8, hidden_layer_sizes=(), n_epochs=2, batch_size=40, random_state=0).fit(
        X, y
    )


@pytest.fixture(scope="module")
def ssdh_hidden(X):
    y = np.repeat([0, 1, 2], 40)
    return SSDH(n_bits=8, hidden_layer_sizes=(16,), n_epochs=2, batch_size=40, random_state=0).fit(
        X, y
    )


@pytest.fixture(scope="module")
def drhn():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 8)
    images = rng.random((16, 32, 32), dtype=np.float32) + labels[:, None, None]
    return DRHN(n_bits=8, widths=(2, 4), n_epochs=1, batch_size=8, random_state=0).fit(
        images, labels
    )


def _members(model, tmp_path):
    path = tmp_path / "good.npz"
    model.save(path)
    return read_members(path)


def _load_error(loader, path, **kwargs) -> str:
    """The ValueError message of loading ``path`` (any other exception fails the test)."""
    with pytest.raises(ValueError) as info:
        loader(path, **kwargs)
    assert type(info.value) is ValueError
    message = str(info.value)
    assert str(path) in message
    return message


def _peak_of(function) -> int:
    tracemalloc.start()
    try:
        function()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


# ==================================================================== sizes before allocation


def test_member_declaring_a_huge_array_is_rejected_before_allocating(deephash, tmp_path):
    # Old code: np.load allocated the declared 4 TB and raised a bare MemoryError.
    members = _members(deephash, tmp_path)
    path = tmp_path / "huge.npz"
    forged = npy_header("<f4", (10**12, 32)) + bytes(64)
    write_members(path, replaced(members, "components_0.npy", forged))

    def load():
        message = _load_error(DeepHash.load, path)
        assert "components_0" in message

    assert _peak_of(load) < SMALL_PEAK


def test_small_file_that_inflates_to_a_large_array_is_rejected_unread(deephash, tmp_path):
    # 96 MiB of zeros deflate to ~100 kB. Old code inflated and allocated all of it.
    members = _members(deephash, tmp_path)
    path = tmp_path / "bomb.npz"
    n = 24 << 20
    write_with_bomb(path, members, "components_0.npy", npy_header("<f4", (n,)), 4 * n)
    assert path.stat().st_size < 1 << 20
    peak = _peak_of(lambda: _load_error(DeepHash.load, path))
    assert peak < SMALL_PEAK


def test_bomb_with_the_expected_shape_is_still_rejected_unread(ssdh_hidden, tmp_path):
    # The header agrees with the metadata (input_shape made huge to match): the archive's
    # declared size against its length stops it.
    members = _members(ssdh_hidden, tmp_path)
    meta = meta_of(members)
    n_in = 1 << 21  # 16 x 2**21 float32 = 128 MiB
    meta["input_shape"] = [n_in]
    path = tmp_path / "bomb.npz"
    header = npy_header("<f4", (16, n_in))
    write_with_bomb(
        path, with_meta(members, meta), "net.features.0.weight.npy", header, 4 * 16 * n_in
    )
    message = ""

    def load():
        nonlocal message
        message = _load_error(SSDH.load, path)

    assert _peak_of(load) < SMALL_PEAK
    assert "zip bomb" in message


# ==================================================================== the zip directory


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (10, 99),  # compression method 99: old code raised NotImplementedError
        (8, 0x01),  # the "encrypted" flag: old code raised RuntimeError
        (10, 14),  # LZMA
    ],
)
def test_flipped_bits_in_the_zip_directory_are_value_errors(deephash, tmp_path, field, value):
    path = tmp_path / "good.npz"
    deephash.save(path)
    data = bytearray(path.read_bytes())
    for entry in central_entries(bytes(data)):
        data[entry + field] = value
        data[entry + field + 1] = 0
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(data))
    _load_error(DeepHash.load, bad)


def test_duplicate_and_foreign_members(deephash, tmp_path):
    members = _members(deephash, tmp_path)
    path = tmp_path / "dup.npz"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate
        write_members(path, [*members, members[0]])
    assert "twice" in _load_error(DeepHash.load, path)
    write_members(path, [*members, ("notes.txt", b"hello")])
    assert "not a .npy array" in _load_error(DeepHash.load, path)
    pickled = npy_bytes(np.array([{"a": 1}], dtype=object))
    write_members(path, replaced(members, "offsets_0.npy", pickled))
    assert "Python objects" in _load_error(DeepHash.load, path)


# ==================================================================== DeepHash metadata


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ({"n_layers": 1}, "n_layers"),  # old: loaded one layer of a two-layer model
        ({"n_layers": -1}, "n_layers"),  # old: a model without layers
        ({"n_layers": "2"}, "n_layers"),  # old: int("2") accepted
        ({"n_layers": 10**9}, "n_layers"),
        ({"margins": 5}, "margins"),  # old: TypeError
        ({"margins": ["a", "b"]}, "margins"),  # old: ValueError without the path
        ({"margins": [float("nan"), 1.0]}, "margins"),  # old: accepted
        ({"finetuned": "yes"}, "finetuned"),
        ({"finetune_loss": [None]}, "finetune_loss"),
        ({"params": {"hidden_layer_sizes": [16, 8], "device": 3}}, "device"),
        ({"params": {"hidden_layer_sizes": [16, 8], "learning_rate": "fast"}}, "learning_rate"),
        ({"params": {"hidden_layer_sizes": [16, 8], "random_state": 1.5}}, "random_state"),
        ({"params": {"hidden_layer_sizes": [16, 16]}}, "layer 1"),
        ({"params": []}, "params"),
    ],
)
def test_deephash_metadata_is_checked(deephash, tmp_path, edit, words):
    members = _members(deephash, tmp_path)
    path = tmp_path / "edited.npz"
    write_members(path, with_meta(members, {**meta_of(members), **edit}))
    assert words in _load_error(DeepHash.load, path)


def test_deephash_nan_weights_are_rejected(deephash, tmp_path):
    # Old code accepted NaN weights (and encoded garbage).
    members = _members(deephash, tmp_path)
    W = deephash.components_[1].copy()
    W[0, 0] = np.nan
    path = tmp_path / "nan.npz"
    write_members(path, replaced(members, "components_1.npy", npy_bytes(W)))
    assert "NaN" in _load_error(DeepHash.load, path)


def test_deephash_valid_edits_still_load(deephash, X, tmp_path):
    members = _members(deephash, tmp_path)
    meta = meta_of(members)
    meta.pop("finetune_loss")  # optional keys keep their defaults
    path = tmp_path / "ok.npz"
    write_members(path, with_meta(members, meta))
    loaded = DeepHash.load(path)
    np.testing.assert_array_equal(loaded.encode(X), deephash.encode(X))


# ==================================================================== SSDH metadata and weights


@pytest.mark.parametrize(
    ("input_shape", "words"),
    [
        ([10**8], "do not fit"),  # old: built a 6.4 GB layer
        ([2**40], "input_shape"),  # old: RuntimeError from torch's allocator
        ([], "input_shape"),  # old: IndexError
        ("8", "input_shape"),
        ([8, 2], "input_shape"),  # more than one entry needs a backbone
    ],
)
def test_ssdh_input_shape_is_checked_before_the_network_is_built(
    ssdh_hidden, tmp_path, monkeypatch, input_shape, words
):
    built = []
    original = torch.nn.Linear.reset_parameters

    def spy(layer):  # runs in every Linear's constructor
        if layer.weight.device.type != "meta":
            built.append(layer.in_features)
            assert layer.in_features <= 10**6, "a huge layer was allocated"
        original(layer)

    monkeypatch.setattr(torch.nn.Linear, "reset_parameters", spy)
    members = _members(ssdh_hidden, tmp_path)
    path = tmp_path / "shape.npz"
    write_members(path, with_meta(members, {**meta_of(members), "input_shape": input_shape}))
    assert words in _load_error(SSDH.load, path)
    assert not built


def test_ssdh_wrong_shaped_weights_are_rejected(ssdh, X, tmp_path):
    members = _members(ssdh, tmp_path)
    path = tmp_path / "wrong.npz"
    # Old code built the hash layer from this weight: the model loaded, and encode failed
    # with a RuntimeError on inputs of input_shape's width.
    wide = npy_bytes(np.zeros((8, 33), np.float32))
    write_members(path, replaced(members, "net.hash.weight.npy", wide))
    assert "net.hash.weight" in _load_error(SSDH.load, path)
    # Old code: three classes for a classifier with two outputs loaded too.
    write_members(path, replaced(members, "classes.npy", npy_bytes(np.arange(2))))
    assert "classifier" in _load_error(SSDH.load, path)
    bad = ssdh.network_["hash"].weight.detach().numpy().copy()
    bad[0, 0] = np.inf
    write_members(path, replaced(members, "net.hash.weight.npy", npy_bytes(bad)))
    assert "NaN or infinite" in _load_error(SSDH.load, path)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ({"class": ["SSDH"]}, "model, not a SSDH"),
        ({"multilabel": "no"}, "multilabel"),
        ({"backbone": 0}, "backbone"),
        ({"loss_curve": {"a": 1}}, "loss_curve"),
        ({"params": {"n_bits": 0}}, "n_bits"),
        ({"params": {"n_bits": 8, "hidden_layer_sizes": [10**9] * 10**4}}, "hidden_layer_sizes"),
        ({"version": True}, "version"),
    ],
)
def test_ssdh_metadata_is_checked(ssdh, tmp_path, edit, words):
    members = _members(ssdh, tmp_path)
    path = tmp_path / "edited.npz"
    write_members(path, with_meta(members, {**meta_of(members), **edit}))
    assert words in _load_error(SSDH.load, path)


# ==================================================================== DRHN


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ({"n_channels_in": 2}, "n_channels_in"),
        ({"n_channels_in": True}, "n_channels_in"),
        ({"params": {"n_bits": 8, "widths": [2, 4], "depth": 10**6}}, "do not fit"),
        ({"params": {"n_bits": 8, "widths": [2, 10**9]}}, "do not fit"),
        ({"params": {"n_bits": 8, "widths": [2, 4], "device": "tpu"}}, "device"),
        ({"loss_curve": [float("inf")]}, "loss_curve"),
        ({"n_iter": -1}, "n_iter"),
    ],
)
def test_drhn_metadata_is_checked(drhn, tmp_path, edit, words):
    members = _members(drhn, tmp_path)
    path = tmp_path / "edited.npz"
    write_members(path, with_meta(members, {**meta_of(members), **edit}))
    assert words in _load_error(DRHN.load, path)


def test_drhn_zero_std_and_unsorted_classes(drhn, tmp_path):
    members = _members(drhn, tmp_path)
    path = tmp_path / "bad.npz"
    write_members(path, replaced(members, "channel_std.npy", npy_bytes(np.zeros(1, np.float32))))
    _load_error(DRHN.load, path)
    write_members(path, replaced(members, "classes.npy", npy_bytes(np.array([1, 0]))))
    _load_error(DRHN.load, path)


# ==================================================================== .npy / .fvecs loaders


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"1.0 2.0 3.0\n4.0 5.0 6.0\n", "looks like text"),
        (np.array([3, 0, 0, 0], "<i4").tobytes(), "starts with"),  # an .fvecs file
        (b"", "empty"),
    ],
)
def test_npy_loader_says_what_the_file_is_not_and_never_mentions_pickle(tmp_path, content, words):
    # Old code: numpy's "Failed to interpret file ... as a pickle ... allow_pickle" text.
    path = tmp_path / "x.npy"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        load_descriptors(path)
    message = str(info.value)
    assert str(path) in message and words in message
    assert "pickle" not in message.replace("need pickle", "")
    assert "allow_pickle" not in message


def test_npy_loader_object_arrays_and_huge_shapes(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([[1.0, None]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="Python objects") as info:
        load_descriptors(path)
    assert "allow_pickle" not in str(info.value)
    huge = tmp_path / "huge.npy"
    huge.write_bytes(npy_header("<f4", (10**9, 10**3)) + bytes(16))

    def load():
        with pytest.raises(ValueError, match="only 16 bytes follow"):
            load_descriptors(huge)

    assert _peak_of(load) < SMALL_PEAK
    long_header = tmp_path / "long.npy"
    long_header.write_bytes(b"\x93NUMPY\x02\x00" + (10**6).to_bytes(4, "little") + b"{")
    with pytest.raises(ValueError, match="header") as info:
        load_descriptors(long_header)
    assert "allow_pickle" not in str(info.value)


def test_fvecs_loader_recognises_a_npy_file(tmp_path):
    path = tmp_path / "x.fvecs"
    path.write_bytes(npy_bytes(np.zeros((2, 2), np.float32)))
    with pytest.raises(ValueError, match=r"\.npy file"):
        load_descriptors(path)


# ==================================================================== saving


def _no_temporaries(directory) -> None:
    assert not [name for name in os.listdir(directory) if name.endswith(".tmp")]


def test_save_errors_name_the_target_not_the_temporary(deephash, tmp_path):
    target = tmp_path / "missing" / "model.npz"
    with pytest.raises(FileNotFoundError) as info:
        deephash.save(target)
    assert str(target) in str(info.value) and ".tmp" not in str(info.value)
    directory = tmp_path / "adir.npz"
    directory.mkdir()
    with pytest.raises(IsADirectoryError) as info:
        deephash.save(directory)
    assert str(directory) in str(info.value) and ".tmp" not in str(info.value)
    _no_temporaries(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        save_fvecs(tmp_path / "missing" / "x.fvecs", np.ones((2, 2)))
    assert ".tmp" not in str(info.value)


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions that apply (not root)"
)
def test_save_into_a_read_only_directory_names_the_target(deephash, tmp_path):
    directory = tmp_path / "ro"
    directory.mkdir()
    directory.chmod(0o555)
    try:
        with pytest.raises(PermissionError) as info:
            deephash.save(directory / "model.npz")
    finally:
        directory.chmod(0o755)
    assert str(directory / "model.npz") in str(info.value)
    assert ".tmp" not in str(info.value)


def test_long_target_name_saves(deephash, tmp_path):
    # The temporary name was the target's plus ~25 characters: past NAME_MAX (255).
    path = tmp_path / ("m" * 240 + ".npz")
    deephash.save(path)
    assert DeepHash.load(path).n_bits == deephash.n_bits
    _no_temporaries(tmp_path)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_save_keeps_the_mode_of_the_file_it_replaces(deephash, tmp_path):
    old_umask = os.umask(0o022)
    try:
        path = tmp_path / "model.npz"
        deephash.save(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # a new file: 0o666 - umask
        path.chmod(0o600)
        deephash.save(path)  # old code: 0o644 again
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        fvecs = tmp_path / "x.fvecs"
        save_fvecs(fvecs, np.ones((2, 2)))
        fvecs.chmod(0o640)
        save_fvecs(fvecs, np.ones((3, 2)))
        assert stat.S_IMODE(fvecs.stat().st_mode) == 0o640
    finally:
        os.umask(old_umask)


def test_save_flushes_the_directory_after_the_rename(deephash, tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    deephash.save(tmp_path / "model.npz")
    assert synced == [False, True]  # the file, then its directory


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_failed_save_leaves_the_old_file_and_no_temporary(deephash, tmp_path, monkeypatch, error):
    path = tmp_path / "model.npz"
    deephash.save(path)
    before = path.read_bytes()
    real_savez = np.savez

    def savez(handle, **arrays):  # half the archive, then the failure
        real_savez(handle, **dict(list(arrays.items())[:2]))
        raise error

    monkeypatch.setattr(np, "savez", savez)
    with pytest.raises(type(error)):
        deephash.save(path)
    assert path.read_bytes() == before
    _no_temporaries(tmp_path)


def test_failed_rename_leaves_no_temporary(deephash, tmp_path, monkeypatch):
    path = tmp_path / "model.npz"

    def replace(source, target):
        raise OSError(28, "No space left on device", str(source))

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError) as info:
        deephash.save(path)
    assert str(path) in str(info.value) and ".tmp" not in str(info.value)
    _no_temporaries(tmp_path)
    assert not path.exists()


# ==================================================================== the generic reader


def test_read_npz_expectation_runs_before_any_array_is_read(tmp_path, monkeypatch):
    path = tmp_path / "a.npz"
    _io.atomic_write_npz(path, {"a": np.arange(6.0).reshape(2, 3)}, {"k": 1})
    seen = {}

    def expect(meta, headers):
        seen.update(meta=meta, shape=headers["a"].shape, dtype=headers["a"].dtype)
        raise ValueError(f"{path}: no thanks")

    real_read = _io._read_data

    def read(stream, header):  # the metadata is read first; the arrays must not be
        assert header.shape != (2, 3), "an array was read"
        return real_read(stream, header)

    monkeypatch.setattr(_io, "_read_data", read)
    with pytest.raises(ValueError, match="no thanks"):
        _io.read_npz(path, kind="test", expect=expect)
    assert seen == {"meta": {"k": 1}, "shape": (2, 3), "dtype": np.dtype("<f8")}


def test_dataset_cache_reader_uses_the_checked_reader(tmp_path):
    from deephash_ext.datasets import _read_cache

    path = tmp_path / "cache.npz"
    write_members(path, [("key.npy", npy_header("<U64", (10**12,)) + bytes(256))])
    assert _peak_of(lambda: _read_cache(path, "k")) < SMALL_PEAK
    assert _read_cache(path, "k") is None
    write_members(path, [(META, b"junk")])
    assert _read_cache(path, "k") is None
