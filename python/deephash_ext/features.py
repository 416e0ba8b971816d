"""Global image descriptors: the Fisher Vector encoder of the DeepHash paper.

:class:`FisherVectorEncoder` turns grayscale images into the 8192-d Fisher Vectors the
DeepHash paper hashes (docs/algorithms.md, sec. 2.1 and 6.8): SIFT at DoG keypoints (the
strongest ``max_keypoints``), RootSIFT, PCA to ``pca_dims``, a ``n_components``-component
diagonal GMM, first-order statistics, signed square root and L2 normalisation. The
offline benchmark of :mod:`deephash_ext.datasets` is built with it, so other images can be
featurised with exactly the benchmark's pipeline.

Needs the ``demo`` extra (OpenCV for SIFT): ``pip install 'deephash_ext[demo]'``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ._io import ArrayHeader, MetaReader, header_mismatch, read_model, write_model
from ._optional import require
from ._validation import check_bool, check_int

__all__ = ["FisherVectorEncoder"]

_FORMAT = "deephash_ext.FisherVectorEncoder"
_FORMAT_VERSION = 1
_CODEBOOK_SAMPLE = 40_000  # descriptors the PCA and the GMM are fitted on, at most
_GMM_MAX_ITER = 100
_ENCODE_CHUNK = 65_536  # descriptors projected and assigned per block
_SIFT_DIMS = 128


# ---------------------------------------------------------------------------- the steps


def sift_descriptors(image: np.ndarray, max_keypoints: int) -> np.ndarray:
    """SIFT descriptors (n, 128) uint8 of the ``max_keypoints`` strongest DoG keypoints.

    Keypoints are sorted by (response descending, x, y, size, angle, octave) before the cap,
    so the kept set and the row order do not depend on OpenCV's internal threading.
    """
    cv2 = require("cv2", "SIFT descriptors", "demo")
    sift = cv2.SIFT_create()
    keypoints = sift.detect(image, None)
    keypoints = sorted(
        keypoints, key=lambda k: (-k.response, k.pt[0], k.pt[1], k.size, k.angle, k.octave)
    )[:max_keypoints]
    if not keypoints:
        return np.zeros((0, _SIFT_DIMS), dtype=np.uint8)
    _, descriptors = sift.compute(image, keypoints)
    if descriptors is None:
        return np.zeros((0, _SIFT_DIMS), dtype=np.uint8)
    # OpenCV stores SIFT values as integers 0..255 in float32: uint8 is lossless.
    return np.ascontiguousarray(np.rint(descriptors).astype(np.uint8))


def _preprocess(descriptors: np.ndarray, root_sift: bool) -> np.ndarray:
    x = descriptors.astype(np.float64)
    if root_sift:
        x /= np.maximum(x.sum(axis=1, keepdims=True), 1e-12)
        np.sqrt(x, out=x)
    return x


def fit_codebook(
    descriptors: Sequence[np.ndarray], n_components: int, pca_dims: int, root_sift: bool, seed: int
) -> tuple[Any, Any, dict[str, Any]]:
    """(PCA, diagonal GaussianMixture, statistics) fitted on at most 40,000 of the pooled
    descriptors (a seeded sample), the GMM seeded by k-means++ (not a full k-means: faster,
    and free of OpenMP reductions whose summation order is not guaranteed)."""
    from sklearn.decomposition import PCA
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    pool = np.concatenate(descriptors) if descriptors else np.zeros((0, _SIFT_DIMS), np.uint8)
    if pool.shape[0] < max(n_components, pca_dims) + 1:
        raise ValueError(
            f"the training views hold only {pool.shape[0]} SIFT descriptors, too few to fit "
            f"pca_dims={pca_dims} and n_components={n_components}: use more images, or lower "
            "pca_dims / n_components"
        )
    rng = np.random.default_rng([seed, 2])
    if pool.shape[0] > _CODEBOOK_SAMPLE:
        rows = np.sort(rng.choice(pool.shape[0], size=_CODEBOOK_SAMPLE, replace=False))
        pool = pool[rows]
    sample = _preprocess(pool, root_sift)
    pca = PCA(n_components=pca_dims, svd_solver="full").fit(sample)
    projected = pca.transform(sample)
    gmm = GaussianMixture(
        n_components=n_components,
        covariance_type="diag",
        init_params="k-means++",
        max_iter=_GMM_MAX_ITER,
        random_state=seed,
    )
    with warnings.catch_warnings():
        # Non-convergence is reported in the statistics instead of as a warning.
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm.fit(projected)
    info = {
        "n_sample": int(sample.shape[0]),
        "converged": bool(gmm.converged_),
        "n_iter": int(gmm.n_iter_),
        "explained_variance": float(pca.explained_variance_ratio_.sum()),
    }
    return pca, gmm, info


def fisher_vectors(
    descriptors: Sequence[np.ndarray],
    pca: Any,
    gmm: Any,
    root_sift: bool,
    on_progress: Callable[[int], object] | None = None,
) -> np.ndarray:
    """First-order Fisher Vectors, signed square root, L2 normalisation; float32 (n, K * D).

    A set without descriptors gives the zero vector. ``on_progress(k)`` is called after
    each block of ``k`` sets.
    """
    means = gmm.means_  # (K, D)
    sigmas = np.sqrt(gmm.covariances_)  # (K, D)
    sqrt_weights = np.sqrt(gmm.weights_)  # (K,)
    n_components, dims = means.shape
    out = np.zeros((len(descriptors), n_components * dims), dtype=np.float32)
    counts = np.array([d.shape[0] for d in descriptors], dtype=np.int64)
    start = 0
    while start < len(descriptors):
        stop = start
        rows = 0
        while stop < len(descriptors) and (stop == start or rows + counts[stop] <= _ENCODE_CHUNK):
            rows += int(counts[stop])
            stop += 1
        block = [d for d in descriptors[start:stop] if d.shape[0]]
        if block:
            x = pca.transform(_preprocess(np.concatenate(block), root_sift))
            gamma = gmm.predict_proba(x)  # (T_total, K)
            offset = 0
            for view in range(start, stop):
                t = int(counts[view])
                if t == 0:
                    continue
                g, xv = gamma[offset : offset + t], x[offset : offset + t]
                offset += t
                # sum_t g_tk (x_t - mu_k) = g^T x - (sum_t g_tk) mu_k
                stats = g.T @ xv - g.sum(axis=0)[:, None] * means
                fv = stats / (sigmas * (t * sqrt_weights)[:, None])
                fv = np.sign(fv) * np.sqrt(np.abs(fv))
                norm = np.linalg.norm(fv)
                if norm > 0:
                    out[view] = (fv / norm).ravel()
        if on_progress is not None:
            on_progress(stop - start)
        start = stop
    return out


# ---------------------------------------------------------------------------- the encoder


def _check_images(images: object) -> list[np.ndarray]:
    """A sequence of 2-D uint8 grayscale arrays (each made C-contiguous)."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = list(images)
    if isinstance(images, (str, bytes, np.ndarray)) or not isinstance(images, Sequence):
        raise TypeError(
            "images must be a sequence of 2-D uint8 grayscale arrays (or one 3-D uint8 "
            f"array of equal-sized images), got {type(images).__name__}"
        )
    out = []
    for i, image in enumerate(images):
        array = np.asarray(image)
        if array.dtype != np.uint8:
            raise TypeError(f"images[{i}] must have dtype uint8 (grayscale), got {array.dtype}")
        if array.ndim != 2 or min(array.shape) < 1:
            raise ValueError(f"images[{i}] must be a non-empty 2-D array, got {array.shape}")
        out.append(np.ascontiguousarray(array))
    return out


class FisherVectorEncoder(BaseEstimator):
    """Fisher Vectors of grayscale images, as in the DeepHash paper (8192-d by default).

    Each image gives its ``max_keypoints`` strongest SIFT descriptors at DoG keypoints
    (OpenCV), RootSIFT-normalised (L1, then square root; ``root_sift``), projected by PCA
    to ``pca_dims`` dimensions and soft-assigned to a ``n_components``-component diagonal
    Gaussian mixture. The vector holds the first-order statistics
    ``sum_t g_tk (x_t - mu_k) / (T sqrt(w_k) sigma_k)`` for every component, then the signed
    square root and L2 normalisation: ``n_components * pca_dims`` floats. An image without
    keypoints gives the zero vector. The PCA and the GMM (k-means++ seeding, at most 100 EM
    iterations) are fitted on at most 40,000 descriptors of the training images.

    Parameters
    ----------
    n_components : int, default=128
    pca_dims : int, default=64
        At most 128 (the SIFT dimension).
    max_keypoints : int, default=300
    root_sift : bool, default=True
    random_state : int, default=0
        Seeds the descriptor sample and the GMM (an integer in [0, 2**32), so the model
        file can record it).
    n_jobs : int or None, default=None
        Threads for SIFT (OpenCV releases the GIL); None: up to 4, at most the CPU count.
        Results do not depend on it.

    Attributes
    ----------
    pca_ : sklearn.decomposition.PCA
    gmm_ : sklearn.mixture.GaussianMixture
    fit_info_ : dict
        ``n_sample`` (descriptors fitted on), ``converged``, ``n_iter`` (EM),
        ``explained_variance`` (of the PCA).
    n_features_out_ : int
        ``n_components * pca_dims``.

    Examples
    --------
    >>> import numpy as np
    >>> images = [np.random.default_rng(i).integers(0, 256, (96, 96), dtype=np.uint8)
    ...           for i in range(6)]
    >>> encoder = FisherVectorEncoder(n_components=4, pca_dims=8).fit(images)
    >>> encoder.transform(images[:2]).shape
    (2, 32)
    """

    def __init__(
        self,
        n_components=128,
        pca_dims=64,
        *,
        max_keypoints=300,
        root_sift=True,
        random_state=0,
        n_jobs=None,
    ):
        self.n_components = n_components
        self.pca_dims = pca_dims
        self.max_keypoints = max_keypoints
        self.root_sift = root_sift
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _check_params(self) -> None:
        check_int(self.n_components, "n_components", minimum=1)
        check_int(self.pca_dims, "pca_dims", minimum=1, maximum=_SIFT_DIMS)
        check_int(self.max_keypoints, "max_keypoints", minimum=1)
        check_bool(self.root_sift, "root_sift")
        check_int(self.random_state, "random_state", minimum=0, maximum=2**32 - 1)
        if self.n_jobs is not None:
            check_int(self.n_jobs, "n_jobs", minimum=1)

    def _workers(self) -> int:
        return int(self.n_jobs) if self.n_jobs is not None else max(1, min(4, os.cpu_count() or 1))

    def descriptors(self, images: object) -> list[np.ndarray]:
        """The SIFT descriptors of each image, (n_i, 128) uint8, in the order of ``images``."""
        self._check_params()
        checked = _check_images(images)
        with ThreadPoolExecutor(max_workers=self._workers()) as pool:
            # map() yields in submission order: the result does not depend on the threads.
            return list(pool.map(lambda im: sift_descriptors(im, self.max_keypoints), checked))

    def fit(self, images: object, y: object = None) -> FisherVectorEncoder:
        """Fit the PCA and the GMM on the descriptors of ``images``.

        Raises
        ------
        TypeError, ValueError
            If a parameter or an image is invalid, or the images hold fewer descriptors than
            ``max(n_components, pca_dims) + 1``.
        ImportError
            If OpenCV is missing (``pip install 'deephash_ext[demo]'``).
        """
        return self.fit_descriptors(self.descriptors(images))

    def fit_descriptors(self, descriptors: Sequence[np.ndarray]) -> FisherVectorEncoder:
        """Fit on SIFT descriptors already extracted (one (n_i, 128) array per image)."""
        self._check_params()
        pca, gmm, info = fit_codebook(
            descriptors,
            int(self.n_components),
            int(self.pca_dims),
            bool(self.root_sift),
            int(self.random_state),
        )
        self.pca_, self.gmm_, self.fit_info_ = pca, gmm, info
        self.n_features_out_ = int(self.n_components) * int(self.pca_dims)
        return self

    def transform(self, images: object) -> np.ndarray:
        """Fisher Vectors, float32 of shape (len(images), n_components * pca_dims)."""
        check_is_fitted(self)
        return self.transform_descriptors(self.descriptors(images))

    def transform_descriptors(
        self,
        descriptors: Sequence[np.ndarray],
        on_progress: Callable[[int], object] | None = None,
    ) -> np.ndarray:
        """Fisher Vectors of SIFT descriptors already extracted (one array per image)."""
        check_is_fitted(self)
        for i, d in enumerate(descriptors):
            if not (isinstance(d, np.ndarray) and d.ndim == 2 and d.shape[1] == _SIFT_DIMS):
                raise ValueError(f"descriptors[{i}] must have shape (n, 128)")
        return fisher_vectors(descriptors, self.pca_, self.gmm_, bool(self.root_sift), on_progress)

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted encoder to ``path`` (one ``.npz`` of plain arrays, atomically)."""
        check_is_fitted(self)
        arrays = {
            "pca_components": self.pca_.components_,
            "pca_mean": self.pca_.mean_,
            "pca_explained_variance": self.pca_.explained_variance_,
            "gmm_weights": self.gmm_.weights_,
            "gmm_means": self.gmm_.means_,
            "gmm_covariances": self.gmm_.covariances_,
            "gmm_precisions_cholesky": self.gmm_.precisions_cholesky_,
        }
        params = {
            "n_components": int(self.n_components),
            "pca_dims": int(self.pca_dims),
            "max_keypoints": int(self.max_keypoints),
            "root_sift": bool(self.root_sift),
            "random_state": int(self.random_state),
        }
        write_model(
            path,
            arrays,
            {"params": params, "fit_info": dict(self.fit_info_)},
            format_tag=_FORMAT,
            version=_FORMAT_VERSION,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FisherVectorEncoder:
        """Read an encoder written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            If the file is corrupt, not an encoder file, or its arrays do not fit its
            parameters (the message names the path); checked before anything is allocated.
        """
        where = os.fspath(path)
        found: dict[str, Any] = {}

        def expect(meta: dict[str, Any], headers: Mapping[str, ArrayHeader]) -> None:
            reader = MetaReader(meta, where, "FisherVectorEncoder")
            params = reader.mapping("params")
            sub = MetaReader(params, where, "FisherVectorEncoder")
            model = cls(
                n_components=sub.integer("n_components", minimum=1, maximum=1 << 16),
                pca_dims=sub.integer("pca_dims", minimum=1, maximum=_SIFT_DIMS),
                max_keypoints=sub.integer("max_keypoints", minimum=1, maximum=1 << 30),
                root_sift=sub.boolean("root_sift"),
                random_state=sub.integer("random_state", minimum=0, maximum=2**32 - 1),
            )
            k, d = model.n_components, model.pca_dims
            problem = header_mismatch(
                headers,
                {
                    "pca_components": ((d, _SIFT_DIMS), "f"),
                    "pca_mean": ((_SIFT_DIMS,), "f"),
                    "pca_explained_variance": ((d,), "f"),
                    "gmm_weights": ((k,), "f"),
                    "gmm_means": ((k, d), "f"),
                    "gmm_covariances": ((k, d), "f"),
                    "gmm_precisions_cholesky": ((k, d), "f"),
                },
            )
            if problem is not None:
                raise ValueError(f"{where!r}: the arrays do not fit the encoder ({problem})")
            found["model"], found["info"] = model, reader.mapping("fit_info", default={})

        arrays, _ = read_model(
            path,
            kind="FisherVectorEncoder",
            format_tag=_FORMAT,
            version=_FORMAT_VERSION,
            expect=expect,
        )
        if np.any(arrays["gmm_covariances"] <= 0) or np.any(arrays["gmm_weights"] < 0):
            raise ValueError(f"{where!r}: the mixture has non-positive variances or weights")
        model = found["model"]
        model._restore(arrays, found["info"])
        return model

    def _restore(self, arrays: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> None:
        """Fitted sklearn objects from saved arrays (transform gives the same floats)."""
        from sklearn.decomposition import PCA
        from sklearn.mixture import GaussianMixture

        pca = PCA(n_components=self.pca_dims, svd_solver="full")
        pca.components_ = arrays["pca_components"]
        pca.mean_ = arrays["pca_mean"]
        pca.explained_variance_ = arrays["pca_explained_variance"]
        pca.n_components_ = int(self.pca_dims)
        pca.n_features_in_ = _SIFT_DIMS
        gmm = GaussianMixture(
            n_components=self.n_components, covariance_type="diag", random_state=self.random_state
        )
        gmm.weights_ = arrays["gmm_weights"]
        gmm.means_ = arrays["gmm_means"]
        gmm.covariances_ = arrays["gmm_covariances"]
        gmm.precisions_cholesky_ = arrays["gmm_precisions_cholesky"]
        gmm.n_features_in_ = int(self.pca_dims)
        self.pca_, self.gmm_, self.fit_info_ = pca, gmm, dict(info)
        self.n_features_out_ = int(self.n_components) * int(self.pca_dims)
