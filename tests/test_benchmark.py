"""load_retrieval_benchmark on its tiny scale: roles kept apart by photo, shapes, pairs,
determinism, the cache and the fitted encoder."""

from __future__ import annotations

import numpy as np
import pytest
from deephash_ext.datasets import _BENCHMARK_ARRAYS, load_retrieval_benchmark

pytest.importorskip("cv2")
pytest.importorskip("skimage")

ARRAYS = tuple(name for name in _BENCHMARK_ARRAYS if name != "build_seconds")  # not a timing


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("benchmark_cache")


@pytest.fixture(scope="module")
def bench(cache):
    return load_retrieval_benchmark("tiny", cache_dir=cache, verbose=False)


def test_shapes_and_pairs(bench):
    n_pair, n_val, n_eval = 40, 16, 16
    d = bench.encoder.n_features_out_
    assert bench.X_train.shape == (2 * n_pair, d) and bench.X_train.dtype == np.float32
    np.testing.assert_array_equal(bench.pairs_train, np.arange(2 * n_pair).reshape(-1, 2))
    assert bench.X_val.shape == (2 * n_val, d)
    n_other = min(50, n_val - 1)  # non-matching pairs per validation region
    assert bench.pairs_val.shape == (n_val * (1 + n_other), 2)
    assert bench.pairs_val.min() >= 0 and bench.pairs_val.max() < len(bench.X_val)
    np.testing.assert_array_equal(
        bench.labels_val, np.r_[np.ones(n_val, np.int64), np.zeros(n_val * n_other, np.int64)]
    )
    matching = bench.pairs_val[bench.labels_val == 1]
    other = bench.pairs_val[bench.labels_val == 0]
    np.testing.assert_array_equal(matching, np.arange(2 * n_val).reshape(-1, 2))
    assert np.all(other[:, 0] % 2 == 0) and np.all(other[:, 1] % 2 == 1)  # view 0 with a view 1
    assert np.all(other[:, 0] // 2 != other[:, 1] // 2)  # views of two regions
    # each region's negatives are distinct regions
    for region in range(n_val):
        partners = other[other[:, 0] == 2 * region, 1]
        assert len(partners) == n_other and len(set(partners.tolist())) == n_other
    assert bench.X_query.shape == (n_eval, d) and bench.X_db.shape == (4 * n_eval, d)
    np.testing.assert_array_equal(bench.y_db, np.repeat(bench.y_query, 4))
    assert np.isfinite(bench.X_train).all()


def test_roles_never_share_a_photo_or_a_region(bench):
    role = bench.photo_role
    assert set(role.tolist()) == {0, 1, 2}  # training, validation, evaluation photos
    assert np.all(role[bench.regions_train[:, 0]] == 0)
    assert np.all(role[bench.regions_val[:, 0]] == 1)
    assert np.all(role[bench.regions_eval[:, 0]] == 2)
    names = [set(bench.photos_train), set(bench.photos_val), set(bench.photos_eval)]
    assert all(names[i].isdisjoint(names[j]) for i in range(3) for j in range(i + 1, 3))
    # the two photos of one scene share a role
    for group in names:
        if "motorcycle_left.png" in group or "motorcycle_right.png" in group:
            assert {"motorcycle_left.png", "motorcycle_right.png"} <= group


def test_cached_and_rebuilt_results_are_identical(bench, cache, tmp_path):
    again = load_retrieval_benchmark("tiny", cache_dir=cache, verbose=False)
    new_dir = tmp_path / "not" / "yet"  # a fresh machine: the cache folder is created
    fresh = load_retrieval_benchmark("tiny", cache_dir=new_dir, verbose=False)
    for name in ARRAYS:
        np.testing.assert_array_equal(again[name], bench[name], err_msg=name)
        np.testing.assert_array_equal(fresh[name], bench[name], err_msg=name)
    assert fresh.build_seconds > 0 and "built in" in fresh.description


def test_a_corrupt_cache_is_rebuilt(bench, tmp_path):
    load_retrieval_benchmark("tiny", cache_dir=tmp_path, verbose=False)
    for path in tmp_path.iterdir():
        path.write_bytes(path.read_bytes()[:100])
    rebuilt = load_retrieval_benchmark("tiny", cache_dir=tmp_path, verbose=False)
    np.testing.assert_array_equal(rebuilt.X_db, bench.X_db)


def test_another_seed_gives_other_data(bench, tmp_path):
    other = load_retrieval_benchmark("tiny", random_state=1, cache_dir=tmp_path, verbose=False)
    assert not np.array_equal(other.regions_train, bench.regions_train)


def test_the_encoder_is_the_benchmark_pipeline(bench):
    assert bench.encoder.get_params()["n_components"] == 8
    assert bench.encoder.get_params()["pca_dims"] == 16
    flat = np.full((64, 64), 128, dtype=np.uint8)  # no keypoint: the zero vector
    np.testing.assert_array_equal(bench.encoder.transform([flat]), np.zeros((1, 128)))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"scale": "huge"}, ValueError, "scale"),
        ({"scale": 3}, ValueError, "scale"),
        ({"random_state": -1}, ValueError, "random_state"),
        ({"max_keypoints": 0}, ValueError, "max_keypoints"),
        ({"verbose": 1}, TypeError, "verbose"),
    ],
)
def test_bad_arguments(kwargs, error, match, tmp_path):
    with pytest.raises(error, match=match):
        load_retrieval_benchmark(cache_dir=tmp_path, **kwargs)
