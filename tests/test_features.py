"""FisherVectorEncoder: the Fisher Vector against a NumPy transcription of its formula,
determinism, files, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from deephash_ext.features import FisherVectorEncoder

pytest.importorskip("cv2")


def _photo_patches(n: int, side: int = 128) -> list[np.ndarray]:
    """Grayscale patches of a bundled photo (real texture: SIFT finds keypoints)."""
    import skimage.data

    camera = skimage.data.camera()
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        y, x = rng.integers(0, camera.shape[0] - side, size=2)
        out.append(np.ascontiguousarray(camera[y : y + side, x : x + side]))
    return out


@pytest.fixture(scope="module")
def images():
    return _photo_patches(12)


@pytest.fixture(scope="module")
def encoder(images):
    return FisherVectorEncoder(n_components=4, pca_dims=8, max_keypoints=50).fit(images)


def _reference_fisher_vector(descriptors: np.ndarray, encoder) -> np.ndarray:
    """The formula, one descriptor and one component at a time, in float64."""
    x = descriptors.astype(np.float64)
    x = np.sqrt(x / np.maximum(x.sum(axis=1, keepdims=True), 1e-12))  # RootSIFT
    x = (x - encoder.pca_.mean_) @ encoder.pca_.components_.T
    weights, means, variances = (
        encoder.gmm_.weights_,
        encoder.gmm_.means_,
        encoder.gmm_.covariances_,
    )
    n_components, dims = means.shape
    fv = np.zeros((n_components, dims))
    for t in range(len(x)):
        log_p = np.array(
            [
                np.log(weights[k])
                - 0.5 * np.sum(np.log(2 * np.pi * variances[k]))
                - 0.5 * np.sum((x[t] - means[k]) ** 2 / variances[k])
                for k in range(n_components)
            ]
        )
        posterior = np.exp(log_p - log_p.max())
        posterior /= posterior.sum()
        for k in range(n_components):
            fv[k] += posterior[k] * (x[t] - means[k]) / np.sqrt(variances[k])
    fv /= len(x) * np.sqrt(weights)[:, None]
    fv = np.sign(fv) * np.sqrt(np.abs(fv))
    return (fv / np.linalg.norm(fv)).ravel()


def test_fisher_vector_matches_the_formula(images, encoder):
    descriptors = encoder.descriptors(images[:3])
    got = encoder.transform_descriptors(descriptors)
    assert got.dtype == np.float32 and got.shape == (3, 32)
    for row, d in zip(got, descriptors):
        assert d.shape[0] > 0
        np.testing.assert_allclose(row, _reference_fisher_vector(d, encoder), atol=1e-6)


def test_transform_is_descriptors_then_fisher_vectors(images, encoder):
    np.testing.assert_array_equal(
        encoder.transform(images[:4]),
        encoder.transform_descriptors(encoder.descriptors(images[:4])),
    )


def test_threads_do_not_change_the_result(images):
    one = FisherVectorEncoder(4, 8, max_keypoints=50, n_jobs=1).fit(images)
    two = FisherVectorEncoder(4, 8, max_keypoints=50, n_jobs=2).fit(images)
    np.testing.assert_array_equal(one.transform(images), two.transform(images))


def test_image_without_keypoints_is_the_zero_vector(encoder):
    flat = np.full((64, 64), 128, dtype=np.uint8)
    np.testing.assert_array_equal(encoder.transform([flat]), np.zeros((1, 32), np.float32))


def test_save_load_round_trip_is_exact(images, encoder, tmp_path):
    path = tmp_path / "encoder.npz"
    encoder.save(path)
    loaded = FisherVectorEncoder.load(path)
    assert loaded.get_params() == {**encoder.get_params(), "n_jobs": None}
    np.testing.assert_array_equal(loaded.transform(images), encoder.transform(images))


def test_load_rejects_arrays_that_do_not_fit(encoder, tmp_path):
    from deephash_ext._io import read_npz, write_model

    path = tmp_path / "encoder.npz"
    encoder.save(path)
    arrays, meta = read_npz(path, kind="encoder")
    arrays["gmm_means"] = arrays["gmm_means"][:, :3]
    bad = tmp_path / "bad.npz"
    meta = {k: v for k, v in meta.items() if k not in ("format", "version", "deephash_ext")}
    write_model(bad, arrays, meta, format_tag="deephash_ext.FisherVectorEncoder", version=1)
    with pytest.raises(ValueError, match="gmm_means"):
        FisherVectorEncoder.load(bad)
    bad.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"bad\.npz"):
        FisherVectorEncoder.load(bad)


@pytest.mark.parametrize(
    "bad, error, match",
    [
        ("photo.png", TypeError, "sequence"),
        ([np.zeros((8, 8), np.float32)], TypeError, "uint8"),
        ([np.zeros((8, 8, 3), np.uint8)], ValueError, "2-D"),
        ([np.zeros((0, 8), np.uint8)], ValueError, "2-D"),
    ],
)
def test_bad_images(encoder, bad, error, match):
    with pytest.raises(error, match=match):
        encoder.transform(bad)


@pytest.mark.parametrize(
    "param, value, error",
    [
        ("pca_dims", 129, ValueError),
        ("n_components", 0, ValueError),
        ("root_sift", 1, TypeError),
        ("random_state", -1, ValueError),
        ("n_jobs", 0, ValueError),
    ],
)
def test_bad_parameters_name_themselves(images, param, value, error):
    with pytest.raises(error, match=param):
        FisherVectorEncoder(4, 8).set_params(**{param: value}).fit(images)


def test_too_few_descriptors(images):
    with pytest.raises(ValueError, match="too few"):
        FisherVectorEncoder(n_components=4, pca_dims=8, max_keypoints=1).fit(images[:3])


def test_submodule_is_a_lazy_attribute():
    import deephash_ext

    assert deephash_ext.features.FisherVectorEncoder is FisherVectorEncoder
