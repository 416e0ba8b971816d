"""Classic hashing baselines with one interface: LSH, ITQ, BPBC (binary) and PQ (not binary).

Each is a scikit-learn estimator: ``fit(X)`` learns from float descriptors and returns
``self``; ``encode(X)`` returns one row of ``uint8`` per descriptor. For :class:`LSH`,
:class:`ITQ` and :class:`BPBC` the rows are packed binary codes of ``n_bits`` bits in the
layout of :mod:`deephash_ext.codes` (bit ``j`` is bit ``j % 8`` of byte ``j // 8``, least
significant first), with the rule used everywhere in deephash_ext: bit = 1 iff the
projected value is ``> 0`` (never ``sign()``), so they go straight to
:func:`deephash_ext.search`. :class:`PQ` returns centroid ids, a non-binary reference that
has its own :meth:`PQ.search` (asymmetric distances).

Descriptors are converted to C-contiguous float32 (other real dtypes are cast; NaN and
infinity are rejected), and the linear algebra runs in float32 through NumPy / SciPy
(BLAS, LAPACK) except where noted. Results are deterministic for a given
``random_state``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.linalg
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._random import check_rng, draw_random_state
from ._validation import check_codes, check_int
from .codes import code_bytes, pack_bits

__all__ = ["BPBC", "ITQ", "LSH", "PQ"]

_PQ_CENTROIDS = 256  # one byte per sub-quantiser id


# ---------------------------------------------------------------------------- helpers


def _check_fit_data(estimator: BaseEstimator, X: object) -> np.ndarray:
    """X as C-contiguous float32 (n_samples, n_features), finite. Sets nothing."""
    return check_array(X, dtype=np.float32, order="C", estimator=estimator)


def _set_n_features(estimator: BaseEstimator, X: object) -> None:
    """Record n_features_in_ (and feature names) once every check of fit has passed."""
    validate_data(estimator, X, skip_check_array=True, reset=True)


def _check_encode_data(estimator: BaseEstimator, X: object) -> np.ndarray:
    """X as C-contiguous float32 with the fitted number of features (ValueError otherwise)."""
    return validate_data(estimator, X, dtype=np.float32, order="C", reset=False)


def _random_orthonormal(rows: int, cols: int, rng: np.random.RandomState) -> np.ndarray:
    """A random (rows, cols) float32 matrix with orthonormal columns (rows >= cols).

    The Q factor of a Gaussian matrix, with the signs fixed so that R has a positive
    diagonal: uniformly distributed (Haar) on the Stiefel manifold.
    """
    q, r = np.linalg.qr(rng.standard_normal((rows, cols)))
    q *= np.where(np.diag(r) < 0, -1.0, 1.0)
    return np.ascontiguousarray(q, dtype=np.float32)


def _polar_factor(M: np.ndarray) -> np.ndarray:
    """The matrix with orthonormal columns closest to M: ``U @ Wt`` for ``M = U S Wt``.

    It maximises ``trace(R.T @ M)`` over column-orthonormal R (orthogonal Procrustes).
    """
    u, _, wt = scipy.linalg.svd(M, full_matrices=False, check_finite=False)
    return np.ascontiguousarray(u @ wt, dtype=np.float32)


def _principal_axes(Xc: np.ndarray, k: int) -> np.ndarray:
    """The top-k principal axes of centred rows Xc, as orthonormal float32 rows (k, d).

    Eigendecomposition of the smaller of the covariance ``Xc.T @ Xc`` (d <= n) and the
    Gram matrix ``Xc @ Xc.T`` (n < d; the axes are then ``Xc.T @ u / sqrt(lambda)``,
    orthonormalised by a QR factorisation, which also completes directions without
    variance when ``k`` reaches the rank). Only the top-k eigenpairs are computed
    (LAPACK ``syevr``). Each axis is signed so that its largest-magnitude entry is positive.
    """
    n, d = Xc.shape
    if d <= n:
        _, vectors = scipy.linalg.eigh(
            Xc.T @ Xc, subset_by_index=(d - k, d - 1), check_finite=False
        )
        axes = vectors[:, ::-1].T
    else:
        values, vectors = scipy.linalg.eigh(
            Xc @ Xc.T, subset_by_index=(n - k, n - 1), check_finite=False
        )
        values, vectors = values[::-1], vectors[:, ::-1]
        floor = max(float(values[0]), 1.0) * max(n, d) * np.finfo(np.float32).eps
        scale = 1.0 / np.sqrt(np.maximum(values, floor))
        axes_t = Xc.T @ (vectors * scale.astype(np.float32))  # (d, k)
        q, r = np.linalg.qr(axes_t)
        axes = (q * np.where(np.diag(r) < 0, -1.0, 1.0).astype(q.dtype)).T
    axes = np.ascontiguousarray(axes, dtype=np.float32)
    peak = axes[np.arange(k), np.abs(axes).argmax(axis=1)]
    axes[peak < 0] *= -1.0
    return axes


def _most_square_factors(
    n: int, max_first: int, max_second: int, first_not_larger: bool = True
) -> tuple[int, int] | None:
    """``(a, b)`` with ``a * b == n``, ``a <= max_first``, ``b <= max_second`` and ``|a - b|``
    smallest; on a tie, ``a <= b`` when ``first_not_larger``. None if no pair fits."""
    best: tuple[tuple[int, bool], tuple[int, int]] | None = None
    for a in range(1, math.isqrt(n) + 1):
        if n % a:
            continue
        for first, second in ((a, n // a), (n // a, a)):
            if first > max_first or second > max_second:
                continue
            key = (
                second - first if second >= first else first - second,
                (first > second) if first_not_larger else (first < second),
            )
            if best is None or key < best[0]:
                best = (key, (first, second))
    return None if best is None else best[1]


def _check_n_iter(n_iter: object, minimum: int) -> int:
    return check_int(n_iter, "n_iter", minimum=minimum)


# ---------------------------------------------------------------------------- LSH


class LSH(BaseEstimator):
    """Locality-sensitive hashing by random hyperplanes (sign random projections).

    ``fit`` draws ``n_bits`` Gaussian directions and scales each to unit norm; it uses
    ``X`` only for its number of features. Bit ``j`` of a code is ``x @ projections_[:, j]
    > 0``: no centring (docs/algorithms.md, sec. 3.1), so for data far from the origin many bits are
    nearly constant, as in the classic scheme.

    Parameters
    ----------
    n_bits : int, default=64
        Code length, a positive multiple of 8.
    random_state : int, RandomState instance or None, default=None
        Seeds the projections.

    Attributes
    ----------
    projections_ : ndarray of float32, shape (n_features_in_, n_bits)
        Unit-norm columns.
    n_features_in_ : int

    References
    ----------
    .. [1] Charikar, "Similarity estimation techniques from rounding algorithms",
       STOC 2002.
    .. [2] Datar, Immorlica, Indyk, Mirrokni, "Locality-sensitive hashing scheme based on
       p-stable distributions", SoCG 2004.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((100, 32)).astype(np.float32)
    >>> lsh = LSH(n_bits=16, random_state=0).fit(X)
    >>> codes = lsh.encode(X)
    >>> codes.shape, codes.dtype
    ((100, 2), dtype('uint8'))
    """

    def __init__(self, n_bits=64, *, random_state=None):
        self.n_bits = n_bits
        self.random_state = random_state

    def fit(self, X, y=None):
        """Draw the projections for the number of features of ``X``.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Converted to float32; only its width is used.
        y : ignored

        Returns
        -------
        self : LSH

        Raises
        ------
        TypeError
            If ``n_bits`` is not an integer.
        ValueError
            If ``n_bits`` is not a positive multiple of 8, ``random_state`` is invalid, or
            ``X`` is not a finite 2-D array.
        """
        n_bits = 8 * code_bytes(self.n_bits)
        rng = check_rng(self.random_state)
        X = _check_fit_data(self, X)
        _set_n_features(self, X)
        gaussian = rng.standard_normal((X.shape[1], n_bits))
        gaussian /= np.linalg.norm(gaussian, axis=0)
        self.projections_ = np.ascontiguousarray(gaussian, dtype=np.float32)
        return self

    def encode(self, X):
        """Packed codes: bit ``j`` iff ``X @ projections_[:, j] > 0``.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features_in_)
            Converted to float32; the product runs in float32.

        Returns
        -------
        codes : ndarray of uint8, shape (n_samples, n_bits // 8)

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If called before ``fit``.
        ValueError
            If ``X`` has a different number of features than in ``fit``, or is not finite.
        """
        check_is_fitted(self)
        X = _check_encode_data(self, X)
        return pack_bits(X @ self.projections_ > 0)


# ---------------------------------------------------------------------------- ITQ


class ITQ(BaseEstimator):
    """Iterative quantisation: PCA, then a rotation learned to minimise quantisation loss.

    Training (Gong & Lazebnik): centre the data (``mean_``); project it onto its top
    ``n_bits`` principal axes, ``V = (X - mean_) @ components_.T``; start from a random
    orthogonal ``R`` and alternate, ``n_iter`` times, ``B = [V R > 0]`` taken as +-1 (a
    value of exactly 0 gives -1, the strict rule) and the orthogonal Procrustes update
    ``R = U W^T`` from the SVD ``V^T B = U S W^T``, which minimises ``||B - V R||_F`` for
    fixed ``B``. The loss therefore never increases (up to float32 rounding). Codes are
    ``[(x - mean_) @ components_.T @ rotation_ > 0]``.

    PCA is an exact eigendecomposition (of the smaller of the covariance and Gram matrices,
    top ``n_bits`` eigenpairs only); all products and the SVDs run in float32.

    Parameters
    ----------
    n_bits : int, default=64
        Code length, a positive multiple of 8, at most ``min(n_samples, n_features)``.
    n_iter : int, default=50
        Rotation updates (the paper's 50). 0 keeps the random rotation (the "PCA-RR"
        baseline of [1]).
    random_state : int, RandomState instance or None, default=None
        Seeds the initial rotation.

    Attributes
    ----------
    mean_ : ndarray of float32, shape (n_features_in_,)
    components_ : ndarray of float32, shape (n_bits, n_features_in_)
        Principal axes (orthonormal rows), by decreasing variance.
    rotation_ : ndarray of float32, shape (n_bits, n_bits)
        The learned orthogonal rotation ``R``.
    quantization_loss_ : ndarray of float64, shape (n_iter + 1,)
        ``||B - V R||_F^2`` on the training data for the initial rotation and after each
        update (``B = [V R > 0]`` as +-1); the last entry is for ``rotation_``.
    n_features_in_ : int

    References
    ----------
    .. [1] Gong, Lazebnik, "Iterative quantization: a Procrustean approach to learning
       binary codes", CVPR 2011.
    .. [2] Gong, Lazebnik, Gordo, Perronnin, "Iterative quantization: a Procrustean
       approach to learning binary codes for large-scale image retrieval", TPAMI 2013.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((200, 32)).astype(np.float32)
    >>> itq = ITQ(n_bits=16, n_iter=10, random_state=0).fit(X)
    >>> itq.encode(X).shape
    (200, 2)
    >>> bool(np.all(np.diff(itq.quantization_loss_) <= 1e-3))
    True
    """

    def __init__(self, n_bits=64, *, n_iter=50, random_state=None):
        self.n_bits = n_bits
        self.n_iter = n_iter
        self.random_state = random_state

    def fit(self, X, y=None):
        """Learn the mean, the principal axes and the rotation.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Converted to float32.
        y : ignored

        Returns
        -------
        self : ITQ

        Raises
        ------
        TypeError
            If ``n_bits`` or ``n_iter`` is not an integer.
        ValueError
            If ``n_bits`` is not a positive multiple of 8 or exceeds
            ``min(n_samples, n_features)``, ``n_iter < 0``, ``random_state`` is invalid,
            or ``X`` is not a finite 2-D array.
        """
        n_bits = 8 * code_bytes(self.n_bits)
        n_iter = _check_n_iter(self.n_iter, 0)
        rng = check_rng(self.random_state)
        X = _check_fit_data(self, X)
        if n_bits > min(X.shape):
            raise ValueError(
                f"n_bits must be <= min(n_samples, n_features) = {min(X.shape)} for the PCA "
                f"of ITQ, got n_bits={n_bits} with X of shape {X.shape}"
            )
        _set_n_features(self, X)

        mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
        Xc = X - mean
        components = _principal_axes(Xc, n_bits)
        V = Xc @ components.T
        del Xc
        rotation = _random_orthonormal(n_bits, n_bits, rng)
        losses = []
        n_cells = float(V.size)
        for step in range(n_iter + 1):
            Y = V @ rotation
            # ||B - Y||^2 with B = +-1: |B|^2 = n * c and B . Y = sum |Y| (Y = 0 gives 0).
            losses.append(
                n_cells
                - 2.0 * float(np.abs(Y).sum(dtype=np.float64))
                + float(np.square(Y).sum(dtype=np.float64))
            )
            if step == n_iter:
                break
            B = np.where(Y > 0, np.float32(1.0), np.float32(-1.0))
            rotation = _polar_factor(V.T @ B)  # maximises trace(R^T V^T B)

        self.mean_ = mean
        self.components_ = components
        self.rotation_ = rotation
        self.quantization_loss_ = np.asarray(losses, dtype=np.float64)
        return self

    def encode(self, X):
        """Packed codes: ``[(X - mean_) @ components_.T @ rotation_ > 0]``.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features_in_)
            Converted to float32; the products run in float32.

        Returns
        -------
        codes : ndarray of uint8, shape (n_samples, n_bits // 8)

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If called before ``fit``.
        ValueError
            If ``X`` has a different number of features than in ``fit``, or is not finite.
        """
        check_is_fitted(self)
        X = _check_encode_data(self, X)
        return pack_bits(((X - self.mean_) @ self.components_.T) @ self.rotation_ > 0)


# ---------------------------------------------------------------------------- BPBC


class BPBC(BaseEstimator):
    """Bilinear projection binary codes (Gong, Kumar, Rowley, Lazebnik, CVPR 2013).

    Each descriptor ``x`` (``d = d1 * d2`` values) is read as a ``d1 x d2`` matrix ``X``
    (row-major: ``X = x.reshape(d1, d2)``) and coded as ``vec(R1^T X R2) > 0``, with ``R1``
    (``d1 x c1``) and ``R2`` (``d2 x c2``) column-orthonormal and ``c1 * c2 = n_bits``.
    ``vec`` is row-major too: bit ``a * c2 + b`` is entry ``(a, b)`` of ``R1^T X R2``.
    Storing ``R1, R2`` costs ``d1 c1 + d2 c2`` floats instead of ``d * n_bits``.

    Training follows the paper, which assumes zero-centred, unit-norm data: the training
    rows are centred by ``mean_`` and then scaled to unit L2 norm (a zero row stays zero),
    so that each weighs the same. Starting from random column-orthonormal ``R1, R2`` (the
    paper's random initialisation), each of the ``n_iter`` iterations maximises
    ``sum_i vec(B_i)^T vec(R1^T X_i R2)`` over one block with the others fixed:
    ``B_i = [R1^T X_i R2 > 0]`` as +-1; ``R1`` = polar factor (orthogonal Procrustes) of
    ``sum_i X_i R2 B_i^T``; then ``R2`` = polar factor of ``sum_i X_i^T R1 B_i``. The
    objective never decreases (up to float32 rounding). Encoding centres by ``mean_``
    only: scaling a row by a positive number changes no sign, so normalisation is not
    needed there.

    Parameters
    ----------
    n_bits : int, default=64
        Code length, a positive multiple of 8. The code shape ``(c1, c2)`` is the most
        square factorisation ``c1 * c2 = n_bits`` with ``c1 <= d1`` and ``c2 <= d2``
        (on a tie, oriented like ``(d1, d2)``).
    shape : tuple of two ints or None, default=None
        ``(d1, d2)`` with ``d1 * d2 = n_features``. None picks the most square
        factorisation with ``d1 <= d2`` (64 x 128 for 8192).
    n_iter : int, default=50
        Alternating updates. 0 keeps the random projections.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial ``R1`` and ``R2``.

    Attributes
    ----------
    mean_ : ndarray of float32, shape (n_features_in_,)
    shape_ : tuple of int
        ``(d1, d2)``.
    code_shape_ : tuple of int
        ``(c1, c2)``.
    R1_ : ndarray of float32, shape (d1, c1)
        Orthonormal columns.
    R2_ : ndarray of float32, shape (d2, c2)
        Orthonormal columns.
    objective_ : ndarray of float64, shape (n_iter + 1,)
        ``sum_i vec(B_i)^T vec(R1^T X_i R2)`` on the centred, normalised training data for
        the initial projections and after each iteration (``B_i`` the +-1 codes); the last
        entry is for ``R1_, R2_``.
    n_features_in_ : int

    References
    ----------
    .. [1] Gong, Kumar, Rowley, Lazebnik, "Learning binary codes for high-dimensional data
       using bilinear projections", CVPR 2013.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((200, 48)).astype(np.float32)
    >>> bpbc = BPBC(n_bits=16, n_iter=10, random_state=0).fit(X)
    >>> bpbc.shape_, bpbc.code_shape_
    ((6, 8), (4, 4))
    >>> bpbc.encode(X).shape
    (200, 2)
    """

    def __init__(self, n_bits=64, *, shape=None, n_iter=50, random_state=None):
        self.n_bits = n_bits
        self.shape = shape
        self.n_iter = n_iter
        self.random_state = random_state

    def _resolve_shape(self, n_features: int) -> tuple[int, int]:
        if self.shape is None:
            d1 = max(a for a in range(1, math.isqrt(n_features) + 1) if n_features % a == 0)
            return d1, n_features // d1
        shape = self.shape
        if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__"):
            raise TypeError(
                f"shape must be None or a pair of integers (d1, d2), got "
                f"{type(shape).__name__} {shape!r}"
            )
        if len(shape) != 2:
            raise ValueError(f"shape must be a pair of integers (d1, d2), got {shape!r}")
        d1, d2 = (check_int(v, "shape", minimum=1) for v in shape)
        if d1 * d2 != n_features:
            raise ValueError(
                f"shape must satisfy d1 * d2 = n_features = {n_features}, got "
                f"shape={tuple(shape)!r}"
            )
        return d1, d2

    def fit(self, X, y=None):
        """Learn the mean and the bilinear projections ``R1``, ``R2``.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Converted to float32.
        y : ignored

        Returns
        -------
        self : BPBC

        Raises
        ------
        TypeError
            If ``n_bits`` or ``n_iter`` is not an integer, or ``shape`` is not None or a
            pair of integers.
        ValueError
            If ``n_bits`` is not a positive multiple of 8 or has no factorisation
            ``c1 * c2`` with ``c1 <= d1`` and ``c2 <= d2``, ``shape`` does not multiply to
            ``n_features``, ``n_iter < 0``, ``random_state`` is invalid, or ``X`` is not a
            finite 2-D array.
        """
        n_bits = 8 * code_bytes(self.n_bits)
        n_iter = _check_n_iter(self.n_iter, 0)
        rng = check_rng(self.random_state)
        X = _check_fit_data(self, X)
        n, d = X.shape
        d1, d2 = self._resolve_shape(d)
        code_shape = _most_square_factors(n_bits, d1, d2, first_not_larger=d1 <= d2)
        if code_shape is None:
            raise ValueError(
                f"n_bits must factor as c1 * c2 with c1 <= d1 and c2 <= d2 for shape "
                f"({d1}, {d2}), got n_bits={n_bits}"
            )
        c1, c2 = code_shape
        _set_n_features(self, X)

        mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
        Z = X - mean
        norms = np.linalg.norm(Z, axis=1, keepdims=True)
        Z /= np.where(norms > 0, norms, np.float32(1.0))
        Z = Z.reshape(n, d1, d2)
        rows = Z.reshape(n * d1, d2)
        R1 = _random_orthonormal(d1, c1, rng)
        R2 = _random_orthonormal(d2, c2, rng)
        objective = []
        for step in range(n_iter + 1):
            T = (rows @ R2).reshape(n, d1, c2)  # X_i R2
            Y = R1.T @ T  # R1^T X_i R2, (n, c1, c2)
            objective.append(float(np.abs(Y).sum(dtype=np.float64)))
            if step == n_iter:
                break
            B = np.where(Y > 0, np.float32(1.0), np.float32(-1.0))
            R1 = _polar_factor(np.tensordot(T, B, axes=([0, 2], [0, 2])))  # sum X_i R2 B_i^T
            P = (R1 @ B).reshape(n * d1, c2)  # R1 B_i, stacked
            R2 = _polar_factor(rows.T @ P)  # sum_i X_i^T R1 B_i

        self.mean_ = mean
        self.shape_ = (d1, d2)
        self.code_shape_ = (c1, c2)
        self.R1_ = R1
        self.R2_ = R2
        self.objective_ = np.asarray(objective, dtype=np.float64)
        return self

    def encode(self, X):
        """Packed codes: ``vec(R1_^T (x - mean_).reshape(d1, d2) R2_) > 0`` (row-major).

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features_in_)
            Converted to float32; the products run in float32.

        Returns
        -------
        codes : ndarray of uint8, shape (n_samples, n_bits // 8)

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If called before ``fit``.
        ValueError
            If ``X`` has a different number of features than in ``fit``, or is not finite.
        """
        check_is_fitted(self)
        X = _check_encode_data(self, X)
        n = X.shape[0]
        (d1, d2), (c1, c2) = self.shape_, self.code_shape_
        T = ((X - self.mean_).reshape(n * d1, d2) @ self.R2_).reshape(n, d1, c2)
        return pack_bits((self.R1_.T @ T).reshape(n, c1 * c2) > 0)


# ---------------------------------------------------------------------------- PQ


class PQ(BaseEstimator):
    """Product quantiser with asymmetric distance computation: a non-binary reference.

    The ``d`` features are cut into ``M = n_bits // 8`` contiguous sub-vectors of
    ``d / M`` values; each has 256 centroids learned by k-means (scikit-learn
    :class:`~sklearn.cluster.KMeans`, k-means++ initialisation, ``n_init=1``, at most
    ``n_iter`` Lloyd iterations, one seed per sub-quantiser drawn from ``random_state``).
    A code is the ``M`` nearest-centroid ids, one byte each, so ``n_bits`` is the code
    size in bits as for the binary baselines.

    **PQ codes are not Hamming codes.** Byte ``m`` of a code is a centroid id, not eight
    bits; never pass them to :func:`deephash_ext.search` or :func:`deephash_ext.range_search`
    (the Hamming distance between ids is meaningless). Search them with :meth:`search`.

    Parameters
    ----------
    n_bits : int, default=64
        Code size, a positive multiple of 8; ``M = n_bits // 8`` must divide
        ``n_features``.
    n_iter : int, default=25
        Maximum k-means iterations per sub-quantiser.
    random_state : int, RandomState instance or None, default=None
        Seeds the k-means initialisations.

    Attributes
    ----------
    cluster_centers_ : ndarray of float32, shape (M, 256, n_features_in_ // M)
        The centroids of each sub-quantiser.
    n_features_in_ : int

    References
    ----------
    .. [1] Jegou, Douze, Schmid, "Product quantization for nearest neighbor search",
       IEEE TPAMI 33(1), 2011.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    >>> pq = PQ(n_bits=16, n_iter=5, random_state=0).fit(X)
    >>> codes = pq.encode(X)
    >>> codes.shape, pq.cluster_centers_.shape
    ((300, 2), (2, 256, 8))
    >>> distances, indices = pq.search(codes, X[:3], k=5)
    >>> distances.dtype, indices.shape
    (dtype('float32'), (3, 5))
    """

    def __init__(self, n_bits=64, *, n_iter=25, random_state=None):
        self.n_bits = n_bits
        self.n_iter = n_iter
        self.random_state = random_state

    def fit(self, X, y=None):
        """Train the ``M`` sub-quantisers.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Converted to float32; at least 256 rows.
        y : ignored

        Returns
        -------
        self : PQ

        Raises
        ------
        TypeError
            If ``n_bits`` or ``n_iter`` is not an integer.
        ValueError
            If ``n_bits`` is not a positive multiple of 8 or ``n_bits // 8`` does not divide
            ``n_features``, ``n_iter < 1``, ``random_state`` is invalid, or ``X`` has fewer
            than 256 rows or is not a finite 2-D array.
        """
        n_sub = code_bytes(self.n_bits)
        n_iter = _check_n_iter(self.n_iter, 1)
        rng = check_rng(self.random_state)
        X = _check_fit_data(self, X)
        n, d = X.shape
        if d % n_sub:
            raise ValueError(
                f"n_bits // 8 (the number of sub-quantisers) must divide n_features = {d}, got "
                f"n_bits={self.n_bits} (M={n_sub})"
            )
        if n < _PQ_CENTROIDS:
            raise ValueError(
                f"X must have at least {_PQ_CENTROIDS} rows to train {_PQ_CENTROIDS} "
                f"centroids per sub-quantiser, got {n}"
            )
        _set_n_features(self, X)

        sub = d // n_sub
        seeds = [draw_random_state(rng) for _ in range(n_sub)]
        centers = np.empty((n_sub, _PQ_CENTROIDS, sub), dtype=np.float32)
        for m in range(n_sub):
            kmeans = KMeans(
                n_clusters=_PQ_CENTROIDS, n_init=1, max_iter=n_iter, random_state=seeds[m]
            )
            with warnings.catch_warnings():
                # A sub-space with fewer than 256 distinct sub-vectors (e.g. the all-zero blocks
                # of Fisher Vectors) gets duplicate centroids: harmless for ADC, so not a warning.
                warnings.simplefilter("ignore", ConvergenceWarning)
                kmeans.fit(X[:, m * sub : (m + 1) * sub])
            centers[m] = kmeans.cluster_centers_
        self.cluster_centers_ = centers
        return self

    def encode(self, X):
        """Nearest-centroid ids per sub-vector (NOT Hamming codes).

        The nearest centroid minimises the squared L2 distance, computed as
        ``|c|^2 - 2 x . c`` in float32; exact ties go to the smaller id.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features_in_)
            Converted to float32.

        Returns
        -------
        codes : ndarray of uint8, shape (n_samples, M)
            Centroid ids; search them with :meth:`search`, never with
            :func:`deephash_ext.search`.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If called before ``fit``.
        ValueError
            If ``X`` has a different number of features than in ``fit``, or is not finite.
        """
        check_is_fitted(self)
        X = _check_encode_data(self, X)
        n_sub, _, sub = self.cluster_centers_.shape
        codes = np.empty((X.shape[0], n_sub), dtype=np.uint8)
        for m, centers in enumerate(self.cluster_centers_):
            scores = np.square(centers).sum(axis=1) - 2.0 * (
                X[:, m * sub : (m + 1) * sub] @ centers.T
            )
            codes[:, m] = scores.argmin(axis=1)
        return codes

    def search(self, codes, queries, k):
        """Exact k nearest database items by asymmetric distance (ADC).

        The distance from a raw query ``q`` to item ``i`` is the squared L2 distance to its
        reconstruction, ``sum_m |q_m - cluster_centers_[m, codes[i, m]]|^2``, read from a
        per-query table of ``M x 256`` sub-distances (each computed directly as a sum of
        squared differences, in float32) and accumulated over ``m = 0 .. M - 1`` in float32.
        Every item is scored; the ranking is by (distance, index): ties go to the smaller
        index, and the top-k for a smaller k is a prefix of the top-k for a larger k.

        Parameters
        ----------
        codes : ndarray of uint8, shape (n, M)
            Ids from :meth:`encode` (never cast).
        queries : array_like of shape (nq, n_features_in_)
            Raw descriptors, converted to float32.
        k : int
            Neighbours per query, ``1 <= k <= n``.

        Returns
        -------
        distances : ndarray of float32, shape (nq, k)
            Sorted ascending.
        indices : ndarray of int64, shape (nq, k)
            Row numbers in ``codes``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If called before ``fit``.
        TypeError
            If ``codes`` is not uint8, or ``k`` is not an integer.
        ValueError
            If ``codes`` is not 2-D with ``M`` columns, ``queries`` is not a finite 2-D
            array with ``n_features_in_`` columns, or ``k`` is outside ``[1, n]``.
        """
        check_is_fitted(self)
        n_sub, n_centroids, sub = self.cluster_centers_.shape
        db = check_codes(codes, "codes")
        if db.shape[1] != n_sub:
            raise ValueError(
                f"codes must have M = {n_sub} columns (one centroid id per sub-quantiser), "
                f"got shape {db.shape}"
            )
        if np.ndim(queries) != 2:
            raise ValueError(f"queries must be 2-D (nq, n_features), got shape {np.shape(queries)}")
        q = check_array(queries, dtype=np.float32, order="C", input_name="queries")
        if q.shape[1] != self.n_features_in_:
            raise ValueError(
                f"queries have {q.shape[1]} features, but PQ was fitted with {self.n_features_in_}"
            )
        n = db.shape[0]
        k = check_int(k, "k", minimum=1, maximum=n)
        nq = q.shape[0]
        distances = np.empty((nq, k), dtype=np.float32)
        indices = np.empty((nq, k), dtype=np.int64)
        chunk = max(1, (1 << 22) // max(n, n_centroids * sub))
        for start in range(0, nq, chunk):
            block = q[start : start + chunk]
            tables = np.empty((block.shape[0], n_sub, n_centroids), dtype=np.float32)
            for m in range(n_sub):
                diff = block[:, None, m * sub : (m + 1) * sub] - self.cluster_centers_[m]
                tables[:, m] = np.square(diff).sum(axis=-1)
            scores = np.take(tables[:, 0], db[:, 0], axis=1)
            for m in range(1, n_sub):
                scores += np.take(tables[:, m], db[:, m], axis=1)
            for row, score in enumerate(scores):
                top = _top_k_by_distance_then_index(score, k)
                distances[start + row] = score[top]
                indices[start + row] = top
        return distances, indices


def _top_k_by_distance_then_index(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k smallest scores, ordered by (score, index)."""
    if k < score.shape[0]:
        kth = np.partition(score, k - 1)[k - 1]
        candidates = np.flatnonzero(score <= kth)  # ascending indices, ties included
    else:
        candidates = np.arange(score.shape[0])
    order = np.argsort(score[candidates], kind="stable")
    return candidates[order[:k]].astype(np.int64)
