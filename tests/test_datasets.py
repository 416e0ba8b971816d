"""Offline benchmark data (datasets.py): shapes, splits, determinism, cache, file formats.

Every build here uses a tiny configuration (12 instances x 3 views, an 8-component GMM over
16 PCA dimensions: 128-dim Fisher Vectors) so that the whole module runs in seconds.
"""

from __future__ import annotations

import doctest
import os
import time

import numpy as np
import pytest
from deephash_ext import datasets
from deephash_ext.datasets import load_descriptors, load_instances, save_fvecs

TINY = dict(
    n_instances=12,
    n_views=3,
    test_fraction=0.4,
    random_state=0,
    n_components=8,
    pca_dims=16,
    max_keypoints=150,
    verbose=False,
)
ARRAYS = ("X_train", "y_train", "X_query", "y_query", "X_db", "y_db", "pairs_train")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(data, cache_dir, build seconds) of one tiny build, shared by the module."""
    cache_dir = tmp_path_factory.mktemp("tiny_cache")
    start = time.perf_counter()
    data = load_instances(cache_dir=cache_dir, **TINY)
    return data, cache_dir, time.perf_counter() - start


def assert_same_arrays(a, b):
    for name in ARRAYS:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        assert np.array_equal(a[name], b[name]), name
    assert a.description == b.description
    assert a.images == b.images
    assert a.params == b.params


def cache_files(directory):
    return sorted(p.name for p in directory.iterdir())


# ---------------------------------------------------------------------------------------
# content
# ---------------------------------------------------------------------------------------


def test_shapes_dtypes_and_split_by_instance(tiny):
    data, _, _ = tiny
    n_views, dim = TINY["n_views"], TINY["n_components"] * TINY["pca_dims"]
    n_test = round(TINY["test_fraction"] * TINY["n_instances"])
    n_train = TINY["n_instances"] - n_test
    assert data.X_train.shape == (n_train * n_views, dim)
    assert data.X_query.shape == (n_test, dim)
    assert data.X_db.shape == (n_test * (n_views - 1), dim)
    for name in ("X_train", "X_query", "X_db"):
        assert data[name].dtype == np.float32
        assert data[name].flags.c_contiguous
        assert np.isfinite(data[name]).all()
    for name in ("y_train", "y_query", "y_db", "pairs_train"):
        assert data[name].dtype == np.int64
    train_ids = data.y_train[::n_views]
    assert np.array_equal(data.y_train, np.repeat(train_ids, n_views))
    assert np.array_equal(data.y_db, np.repeat(data.y_query, n_views - 1))
    # sorted, unique, disjoint, and together all the instances
    assert np.all(np.diff(train_ids) > 0) and np.all(np.diff(data.y_query) > 0)
    assert not set(train_ids) & set(data.y_query)
    assert sorted({*train_ids, *data.y_query}) == list(range(TINY["n_instances"]))
    assert isinstance(data.description, str) and "8 x 16 = 128 dims" in data.description
    assert data.images and all(isinstance(n, str) for n in data.images)
    assert "china.jpg" in data.images and "chessboard_GRAY.png" not in data.images
    expected = {k: v for k, v in TINY.items() if k != "verbose"}
    assert {k: data.params[k] for k in expected} == expected
    assert data.params["recipe_version"] == datasets._RECIPE_VERSION


def test_pairs_are_every_same_instance_training_pair(tiny):
    data, _, _ = tiny
    y = data.y_train
    expected = {(i, j) for i in range(len(y)) for j in range(i + 1, len(y)) if y[i] == y[j]}
    pairs = data.pairs_train
    assert pairs.shape == (len(expected), 2)
    assert {tuple(map(int, p)) for p in pairs} == expected
    assert np.all(pairs[:, 0] < pairs[:, 1])


def test_rows_have_unit_norm_or_are_zero(tiny):
    data, _, _ = tiny
    for name in ("X_train", "X_query", "X_db"):
        norms = np.linalg.norm(data[name].astype(np.float64), axis=1)
        assert np.all((np.abs(norms - 1.0) < 1e-5) | (norms == 0.0)), name
        assert (norms > 0).mean() > 0.9, name


def test_views_of_one_instance_are_closer_than_views_of_different_instances(tiny):
    data, _, _ = tiny
    X = np.concatenate([data.X_train, data.X_query, data.X_db]).astype(np.float64)
    y = np.concatenate([data.y_train, data.y_query, data.y_db])
    keep = np.linalg.norm(X, axis=1) > 0  # zero vectors (no keypoints) carry no instance
    X, y = X[keep], y[keep]
    d2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    same = (y[:, None] == y[None, :]) & ~np.eye(len(y), dtype=bool)
    different = y[:, None] != y[None, :]
    assert d2[same].mean() < 0.9 * d2[different].mean()
    # and on the benchmark protocol: each query's nearest database view is a match more
    # often than chance (1 / n_test)
    Q, D = data.X_query.astype(np.float64), data.X_db.astype(np.float64)
    nearest = ((Q[:, None, :] - D[None, :, :]) ** 2).sum(-1).argmin(axis=1)
    assert (data.y_db[nearest] == data.y_query).mean() > 2.0 / len(data.y_query)


# ---------------------------------------------------------------------------------------
# determinism and cache
# ---------------------------------------------------------------------------------------


def test_rebuild_without_cache_is_bit_identical(tiny, tmp_path):
    data, _, _ = tiny
    again = load_instances(cache_dir=tmp_path, **TINY)
    assert_same_arrays(data, again)


def test_another_seed_gives_other_data(tiny, tmp_path):
    data, _, _ = tiny
    other = load_instances(cache_dir=tmp_path, **dict(TINY, random_state=1))
    assert not np.array_equal(data.y_query, other.y_query) or not np.array_equal(
        data.X_query, other.X_query
    )


def test_cache_hit_returns_the_same_arrays_faster(tiny):
    data, cache_dir, build_seconds = tiny
    start = time.perf_counter()
    cached = load_instances(cache_dir=cache_dir, **TINY)
    hit_seconds = time.perf_counter() - start
    assert_same_arrays(data, cached)
    assert hit_seconds < build_seconds / 3
    names = cache_files(cache_dir)
    assert len(names) == 1 and names[0].endswith(".npz")  # no temporary file left behind


def test_default_cache_dir_comes_from_environment(tiny, monkeypatch):
    data, cache_dir, _ = tiny
    monkeypatch.setenv("DEEPHASH_DATA", str(cache_dir))
    before = cache_files(cache_dir)
    cached = load_instances(**TINY)  # cache_dir=None: a hit in $DEEPHASH_DATA
    assert_same_arrays(data, cached)
    assert cache_files(cache_dir) == before


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "other_key"])
def test_corrupt_or_stale_cache_is_rebuilt(tiny, tmp_path, damage, capsys):
    data, cache_dir, _ = tiny
    (name,) = cache_files(cache_dir)
    good = (cache_dir / name).read_bytes()
    target = tmp_path / name
    if damage == "truncated":
        target.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        target.write_bytes(b"\x00not a zip file" * 100)
    elif damage == "empty":
        target.write_bytes(b"")
    else:  # a readable file whose key does not match (e.g. a hash prefix collision)
        with np.load(cache_dir / name, allow_pickle=False) as stored:
            arrays = {k: stored[k] for k in stored.files}
        arrays["key"] = np.array("0" * 64)
        with open(target, "wb") as handle:
            np.savez(handle, **arrays)
    rebuilt = load_instances(cache_dir=tmp_path, **dict(TINY, verbose=True))
    assert_same_arrays(data, rebuilt)
    captured = capsys.readouterr()
    assert captured.out == ""  # progress and notes go to stderr
    assert "rebuilding" in captured.err
    assert cache_files(tmp_path) == [name]  # rewritten in place, no temporary file left
    start = time.perf_counter()
    assert_same_arrays(data, load_instances(cache_dir=tmp_path, **TINY))  # now a hit
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------------------------------
# parameter errors
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        (dict(n_instances=1), ValueError, "n_instances"),
        (dict(n_instances=12.0), TypeError, "n_instances"),
        (dict(n_instances=True), TypeError, "n_instances"),
        (dict(n_views=1), ValueError, "n_views"),
        (dict(n_views="3"), TypeError, "n_views"),
        (dict(test_fraction=0.0), ValueError, "test_fraction"),
        (dict(test_fraction=1.0), ValueError, "test_fraction"),
        (dict(test_fraction=0.01), ValueError, "test_fraction"),
        (dict(test_fraction=0.99), ValueError, "test_fraction"),
        (dict(test_fraction="0.4"), TypeError, "test_fraction"),
        (dict(random_state=-1), ValueError, "random_state"),
        (dict(random_state=None), TypeError, "random_state"),
        (dict(random_state=np.random.RandomState(0)), TypeError, "random_state"),
        (dict(cache_dir=3), TypeError, "cache_dir"),
        (dict(verbose="yes"), TypeError, "verbose"),
        (dict(n_components=0), ValueError, "n_components"),
        (dict(pca_dims=129), ValueError, "pca_dims"),
        (dict(pca_dims=0), ValueError, "pca_dims"),
        (dict(max_keypoints=0), ValueError, "max_keypoints"),
        (dict(root_sift=1), TypeError, "root_sift"),
    ],
)
def test_parameter_errors_name_the_parameter(kwargs, error, name, tmp_path):
    with pytest.raises(error, match=name):
        load_instances(cache_dir=tmp_path, **dict(TINY, **kwargs))
    assert cache_files(tmp_path) == []


def test_too_few_descriptors_for_the_codebook(tmp_path):
    with pytest.raises(ValueError, match="n_components=100000"):
        load_instances(
            n_instances=2,
            n_views=2,
            test_fraction=0.5,
            cache_dir=tmp_path,
            n_components=100_000,
            pca_dims=8,
            verbose=False,
        )
    assert cache_files(tmp_path) == []


# ---------------------------------------------------------------------------------------
# descriptor files
# ---------------------------------------------------------------------------------------


def test_fvecs_round_trip_and_layout(tmp_path, rng):
    X = rng.standard_normal((7, 5)).astype(np.float32)
    path = tmp_path / "x.fvecs"
    save_fvecs(path, X)
    raw = path.read_bytes()
    assert len(raw) == 7 * (4 + 4 * 5)
    records = np.frombuffer(raw, dtype="<i4").reshape(7, 6)
    assert np.all(records[:, 0] == 5)
    assert np.array_equal(records[:, 1:].view("<f4"), X)
    out = load_descriptors(path)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert np.array_equal(out, X)
    # str paths, non-contiguous float64 input, overwriting, and no temporary files left
    Y = rng.standard_normal((4, 6))[:, ::2]
    save_fvecs(str(path), Y)
    assert np.array_equal(load_descriptors(str(path)), Y.astype(np.float32))
    assert cache_files(tmp_path) == ["x.fvecs"]


def test_fvecs_empty_matrix(tmp_path):
    path = tmp_path / "empty.fvecs"
    save_fvecs(path, np.zeros((0, 3)))
    assert path.stat().st_size == 0
    out = load_descriptors(path)
    assert out.shape == (0, 0) and out.dtype == np.float32


def test_npy_is_read_as_float32(tmp_path, rng):
    X = rng.standard_normal((3, 4))
    path = tmp_path / "x.npy"
    np.save(path, X)
    out = load_descriptors(path)
    assert out.dtype == np.float32 and np.array_equal(out, X.astype(np.float32))


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("short.fvecs", b"\x01\x00", "shorter than"),
        ("zero_dim.fvecs", np.array([0], "<i4").tobytes(), "dimension header is 0"),
        ("negative_dim.fvecs", np.array([-3, 0], "<i4").tobytes(), "dimension header is -3"),
        ("truncated.fvecs", np.array([2, 0, 0, 2, 0], "<i4").tobytes(), "not a multiple"),
        ("mixed.fvecs", np.array([2, 0, 0, 3, 0, 0], "<i4").tobytes(), "vector 1 has dimension"),
        ("garbage.npy", b"this is not a numpy file", "not a readable .npy"),
        ("x.txt", b"1 2 3", "unsupported descriptor file extension"),
    ],
)
def test_malformed_files_raise_value_error_naming_the_path(tmp_path, name, content, match):
    path = _write(tmp_path / name, content)
    with pytest.raises(ValueError, match=match) as info:
        load_descriptors(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros(4), "2-D"),
        (np.zeros((2, 2), dtype=np.int32), "floating-point"),
        (np.array([[1, None]], dtype=object), "not a readable .npy"),
    ],
)
def test_npy_with_wrong_content(tmp_path, array, match):
    path = tmp_path / "bad.npy"
    np.save(path, array, allow_pickle=True)
    with pytest.raises(ValueError, match=match) as info:
        load_descriptors(path)
    assert str(path) in str(info.value)


def test_npz_archive_named_npy(tmp_path):
    path = tmp_path / "archive.npy"
    with open(path, "wb") as handle:
        np.savez(handle, a=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"not a single \.npy array") as info:
        load_descriptors(path)
    assert str(path) in str(info.value)


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_descriptors(tmp_path / "missing.fvecs")
    with pytest.raises(TypeError, match="path"):
        load_descriptors(3)
    with pytest.raises(TypeError, match="path"):
        save_fvecs(None, np.zeros((1, 1)))
    with pytest.raises(ValueError, match="X must be 2-D"):
        save_fvecs(tmp_path / "a.fvecs", np.zeros(3))
    with pytest.raises(ValueError, match="at least one column"):
        save_fvecs(tmp_path / "a.fvecs", np.zeros((3, 0)))
    with pytest.raises(TypeError, match="X must hold real numbers"):
        save_fvecs(tmp_path / "a.fvecs", np.array([["a"]]))
    assert cache_files(tmp_path) == []


def test_public_names_and_docstring_examples():
    assert sorted(datasets.__all__) == ["load_descriptors", "load_instances", "save_fvecs"]
    result = doctest.testmod(datasets, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_listed_photos_exist_and_are_grey_uint8():
    paths = datasets._photo_paths()
    assert len(paths) >= 2
    assert all(os.path.isfile(p) for p in paths)
    image = datasets._read_gray(paths[0])
    assert image.ndim == 2 and image.dtype == np.uint8
    assert max(image.shape) <= datasets._MAX_PHOTO_SIDE
