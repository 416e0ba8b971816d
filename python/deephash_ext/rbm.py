"""A binary RBM with a hashing regulariser (DeepHash; docs/algorithms.md, sec. 2.2-2.5).

The C++ core does the work (contrastive divergence, ranks, thresholded encoding); this
module holds the estimator state as NumPy arrays and follows the scikit-learn contract.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from . import _core, _gpu
from ._blas import ensure_blas
from ._random import check_rng, draw_stream_key
from ._validation import check_choice, check_finite_model, check_int, check_real

__all__ = ["RBM"]


@contextmanager
def _unchanged_on_failure(estimator: BaseEstimator) -> Iterator[None]:
    """Restore every attribute of ``estimator`` if the block raises (Ctrl-C included).

    Arrays (and lists of arrays) are copied first, because training updates them in place.
    """
    saved = {
        name: (
            value.copy()
            if isinstance(value, np.ndarray)
            else [v.copy() for v in value]
            if isinstance(value, list)
            else value
        )
        for name, value in vars(estimator).items()
    }
    try:
        yield
    except BaseException:
        vars(estimator).clear()
        vars(estimator).update(saved)
        raise


def _check_unit_interval(V: np.ndarray) -> None:
    if V.size and (V.min() < 0.0 or V.max() > 1.0):
        negative = "Negative values in data passed to RBM: " if V.min() < 0.0 else ""
        raise ValueError(
            f"{negative}V must lie in [0, 1] (binary codes or probabilities), got values in "
            f"[{V.min():.4g}, {V.max():.4g}]"
        )


_VISIBLE_UNITS = ("binary", "gaussian")


class RBM(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """RBM (binary hidden units) trained by contrastive divergence with a hashing regulariser.

    Training (docs/algorithms.md, sec. 2.3): minibatch CD-k, momentum, weight decay. Positive phase
    uses hidden probabilities, the chain samples binary hidden states, and reconstructions
    are probabilities (not samples), which lowers the variance of the negative statistics
    (Hinton's practical guide, sec. 3). Sampling uses a counter-based generator keyed by
    ``random_state``, the step and the element, so training is reproducible at any thread
    count. Every matrix product runs in BLAS (scipy-openblas32).

    With ``hashing_reg > 0`` (docs/algorithms.md, sec. 2.4) the cross-entropy between the hidden
    probabilities of a minibatch and a target matrix whose rows and columns are uniformly
    distributed (rank-based) is added, pushing each bit to fire half of the time. After
    training, the centring offsets (docs/algorithms.md, sec. 2.5) are the training means of ``V @
    components_.T``; :meth:`encode` sets bit ``j`` iff ``V @ components_[j] >
    hidden_offsets_[j]``.

    Parameters
    ----------
    n_hidden : int, default=256
        Hidden units (bits of :meth:`encode`; a multiple of 8 to encode).
    learning_rate : float, default=0.001
        Step size for weights and biases (the DeepHash paper's setting).
    momentum : float, default=0.9
        Momentum of the updates, in ``[0, 1)``.
    weight_decay : float, default=0.0001
        L2 penalty on the weights (not the biases).
    batch_size : int, default=100
    n_epochs : int, default=30
        Passes over the data in :meth:`fit`.
    cd_k : int, default=1
        Gibbs steps per update.
    hashing_reg : float, default=0.0
        Weight ``lambda`` of the uniform-target hashing regulariser, in ``[0, 1]``; 0 disables it.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the minibatch order and the sampling.
    verbose : bool, default=False
        Show a tqdm progress bar over epochs and minibatches, with the reconstruction error.
    visible_units : {"binary", "gaussian"}, default="binary"
        ``"binary"``: ``V`` in [0, 1], reconstructions ``sigmoid(h W + c)``. ``"gaussian"``:
        Gaussian visible units of unit variance for real-valued, standardised input (zero
        mean, unit variance per column; docs/algorithms.md sec. 2.3): ``V`` is any finite
        real, and the reconstruction is the mean ``h W + c`` (Hinton's guide, sec. 13.2).
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where :meth:`fit`, :meth:`partial_fit` and :meth:`encode` run. On ``"cuda"`` the
        same step runs in cuBLAS and CUDA kernels with the same random numbers; the
        weights agree with the CPU's to float rounding (the products sum in another
        order), and are reproducible from run to run. ``"auto"`` picks CUDA when
        available. :meth:`transform` and the centring offsets run on the CPU.

    Attributes
    ----------
    components_ : ndarray of float32, shape (n_hidden, n_features_in_)
        Weights (``W`` transposed, as in :class:`sklearn.neural_network.BernoulliRBM`).
    intercept_hidden_ : ndarray of float32, shape (n_hidden,)
    intercept_visible_ : ndarray of float32, shape (n_features_in_,)
    hidden_offsets_ : ndarray of float32, shape (n_hidden,)
        Centring offsets: mean of ``V @ components_.T`` over the training data.
    n_steps_ : int
        Minibatch updates done so far (the position in the random stream).
    n_features_in_ : int

    References
    ----------
    .. [1] Lin, Morère, Chandrasekhar, Veillard, Goh, "DeepHash: Getting Regularization,
       Depth and Fine-Tuning Right", ICMR 2017.
    .. [2] Hinton, "A Practical Guide to Training Restricted Boltzmann Machines", 2010.
    .. [3] Goh, Thome, Cord, Lim, "Unsupervised and supervised visual codes with restricted
       Boltzmann machines", ECCV 2012.

    Examples
    --------
    >>> import numpy as np
    >>> V = (np.random.default_rng(0).random((500, 64)) < 0.3).astype(np.float32)
    >>> rbm = RBM(n_hidden=16, n_epochs=2, learning_rate=0.05, random_state=0).fit(V)
    >>> rbm.encode(V).shape
    (500, 2)
    """

    def __init__(
        self,
        n_hidden=256,
        *,
        learning_rate=0.001,
        momentum=0.9,
        weight_decay=0.0001,
        batch_size=100,
        n_epochs=30,
        cd_k=1,
        hashing_reg=0.0,
        random_state=None,
        verbose=False,
        device="cpu",
        visible_units="binary",
    ):
        self.n_hidden = n_hidden
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.cd_k = cd_k
        self.hashing_reg = hashing_reg
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.visible_units = visible_units

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> str:
        """Checks the hyper-parameters; returns the device the training runs on."""
        for name in ("n_hidden", "batch_size", "n_epochs"):
            check_int(getattr(self, name), name, minimum=1)
        check_int(self.cd_k, "cd_k", minimum=1)
        check_real(self.learning_rate, "learning_rate", low=0.0, low_open=True)
        check_real(self.momentum, "momentum", low=0.0, high=1.0, high_open=True)
        check_real(self.weight_decay, "weight_decay", low=0.0)
        check_real(self.hashing_reg, "hashing_reg", low=0.0, high=1.0)
        self._gaussian()
        return _gpu.resolve_device(self.device)

    def _gaussian(self) -> bool:
        """Whether the visible units are Gaussian (``visible_units`` checked)."""
        return check_choice(self.visible_units, "visible_units", _VISIBLE_UNITS) == "gaussian"

    def _validate_V(self, V, *, reset: bool) -> np.ndarray:
        """Training data: V as C-contiguous float32, in [0, 1] for binary visible units.
        With reset, n_features_in_ (and feature names) change only after every check has
        passed."""
        if not reset:
            V = validate_data(self, V, dtype=np.float32, order="C", reset=False)
            if not self._gaussian():
                _check_unit_interval(V)
            return V
        checked = check_array(V, dtype=np.float32, order="C", estimator=self)
        if not self._gaussian():
            _check_unit_interval(checked)
        validate_data(self, V, skip_check_array=True, reset=True)
        return checked

    def _inference_V(self, V) -> np.ndarray:
        """New data for transform / encode: C-contiguous float32, finite, clipped to [0, 1]
        for binary visible units.

        Clipping (not rejecting) values just outside [0, 1] is what pipelines need: a
        ``MinMaxScaler`` fitted on the training folds maps other folds slightly beyond its
        range, and scikit-learn's ``BernoulliRBM`` accepts such values too.
        """
        V = validate_data(self, V, dtype=np.float32, order="C", reset=False)
        if not self._gaussian() and V.size and (V.min() < 0.0 or V.max() > 1.0):
            V = np.clip(V, 0.0, 1.0)
        return V

    # ------------------------------------------------------------------ training
    def _initialise(self, V: np.ndarray, rng: np.random.RandomState) -> None:
        n_visible = V.shape[1]
        self.components_ = rng.normal(0.0, 0.01, (self.n_hidden, n_visible)).astype(np.float32)
        self.intercept_hidden_ = np.zeros(self.n_hidden, dtype=np.float32)
        # Hinton's guide: visible biases start at log(p / (1 - p)) of the data's means
        # (binary units), at the means themselves (Gaussian units).
        means = V.mean(axis=0, dtype=np.float64)
        if self._gaussian():
            self.intercept_visible_ = means.astype(np.float32)
        else:
            p = np.clip(means, 1e-3, 1 - 1e-3)
            self.intercept_visible_ = np.log(p / (1 - p)).astype(np.float32)
        self._velocities = [
            np.zeros_like(self.components_),
            np.zeros_like(self.intercept_hidden_),
            np.zeros_like(self.intercept_visible_),
        ]
        self._seed = draw_stream_key(rng)
        self.n_steps_ = 0
        self._n_seen = 0
        self.hidden_offsets_ = np.zeros(self.n_hidden, dtype=np.float32)

    def _train(self, V: np.ndarray, order: np.ndarray, progress=None, device: str = "cpu") -> None:
        batches = -(-len(order) // self.batch_size)
        # One call per chunk of minibatches, so the progress bar moves without callbacks.
        chunk = batches if progress is None else max(1, batches // 20)
        on_gpu = device == "cuda"
        if on_gpu:
            _gpu.ensure_cublas()
        train = (
            functools.partial(_gpu.cuda_module().rbm_cd_train, device=0)
            if on_gpu
            else _core.rbm_cd_train
        )
        for first in range(0, batches, chunk):
            rows = order[first * self.batch_size : (first + chunk) * self.batch_size]
            components_velocity, hidden_velocity, visible_velocity = self._velocities
            train(
                self.components_,
                self.intercept_hidden_,
                self.intercept_visible_,
                components_velocity,
                hidden_velocity,
                visible_velocity,
                V,
                np.ascontiguousarray(rows, dtype=np.int64),
                batch_size=self.batch_size,
                learning_rate=self.learning_rate,
                momentum=self.momentum,
                weight_decay=self.weight_decay,
                hashing_reg=self.hashing_reg,
                cd_k=self.cd_k,
                seed=self._seed,
                first_step=self.n_steps_,
                gaussian_visible=self._gaussian(),
            )
            done = -(-len(rows) // self.batch_size)
            self.n_steps_ += done
            if progress is not None:
                progress.update(done)

    def fit(self, V, y=None):
        """Train on ``V`` for ``n_epochs`` epochs, then compute the centring offsets.

        Parameters
        ----------
        V : array_like, shape (n_samples, n_features)
            Values in [0, 1] (converted to float32).
        y : ignored

        Returns
        -------
        self : RBM

        Raises
        ------
        ValueError
            If a parameter is out of range, or ``V`` is not finite or not within [0, 1].
        TypeError
            If a parameter has the wrong type.
        RuntimeError
            If training diverged (non-finite weights: lower ``learning_rate``).

        A fit that fails or is interrupted (KeyboardInterrupt) leaves the estimator as it was.
        """
        device = self._check_params()
        with _unchanged_on_failure(self):
            V = self._validate_V(V, reset=True)
            ensure_blas()
            rng = check_rng(self.random_state)
            self._initialise(V, rng)
            progress = self._progress(self.n_epochs * -(-len(V) // self.batch_size))
            try:
                for epoch in range(self.n_epochs):
                    self._train(V, rng.permutation(len(V)), progress, device)
                    self._check_finite()
                    if progress is not None:
                        progress.set_postfix(
                            epoch=epoch + 1,
                            reconstruction_error=float(self.reconstruction_error(V[:256]).mean()),
                        )
            finally:
                if progress is not None:
                    progress.close()
            self.hidden_offsets_ = _core.mean_projection(V, None, self.components_)
            self._n_seen = len(V)
        return self

    def partial_fit(self, V, y=None):
        """One pass of CD-k over ``V`` (in its order), continuing the current model.

        The first call initialises the model from ``random_state``. The centring offsets
        become a running mean over all data seen, each batch projected with the weights
        after its own update (:meth:`fit` recomputes them exactly). A call that fails or is
        interrupted leaves the estimator as it was (its arrays are copied first).

        Returns
        -------
        self : RBM

        Raises
        ------
        ValueError, TypeError
            As :meth:`fit`; also if ``V`` has another number of features than before.
        RuntimeError
            If training diverged (non-finite weights: lower ``learning_rate``).
        """
        first = not hasattr(self, "components_")
        device = self._check_params()  # hyper-parameters may have changed since the last call
        with _unchanged_on_failure(self):
            V = self._validate_V(V, reset=first)
            ensure_blas()
            if first:
                self._initialise(V, check_rng(self.random_state))
            self._train(V, np.arange(len(V)), device=device)
            self._check_finite()
            batch_mean = _core.mean_projection(V, None, self.components_)
            total = self._n_seen + len(V)
            self.hidden_offsets_ = (
                (self._n_seen * self.hidden_offsets_.astype(np.float64) + len(V) * batch_mean)
                / total
            ).astype(np.float32)
            self._n_seen = total
        return self

    def _check_finite(self) -> None:
        check_finite_model(
            [self.components_, self.intercept_hidden_, self.intercept_visible_],
            "RBM training",
            "lower learning_rate (the model is unchanged)",
        )

    def _progress(self, total: int):
        if not self.verbose:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc="RBM", unit="batch")

    # ------------------------------------------------------------------ inference
    def transform(self, V):
        """Hidden probabilities ``P(h = 1 | v)``, float32 of shape (n_samples, n_hidden).

        ``V`` must be finite; values outside [0, 1] are clipped into it (as in
        :meth:`encode` and :meth:`reconstruction_error`), while :meth:`fit` and
        :meth:`partial_fit` reject them.
        """
        check_is_fitted(self)
        V = self._inference_V(V)
        ensure_blas()
        return _core.rbm_hidden_probabilities(self.components_, self.intercept_hidden_, V)

    def encode(self, V):
        """Codes (docs/algorithms.md, sec. 2.5): bit j iff V @ components_[j] > hidden_offsets_[j].

        Returns
        -------
        codes : ndarray of uint8, shape (n_samples, n_hidden // 8)

        Raises
        ------
        ValueError
            If ``n_hidden`` is not a multiple of 8, or ``V`` is invalid.
        """
        check_is_fitted(self)
        if self.n_hidden % 8:
            raise ValueError(f"encode needs n_hidden to be a multiple of 8, got {self.n_hidden}")
        V = self._inference_V(V)
        return _gpu.encode_layers(
            _gpu.resolve_device(self.device), V, None, [self.components_], [self.hidden_offsets_]
        )

    def reconstruction_error(self, V):
        """Per-sample mean squared error of a mean-field reconstruction.

        ``h = P(h | v)``, ``v' = P(v | h)`` (its mean for Gaussian visible units); returns
        ``mean((v - v')**2, axis=1)``. This is the training monitor (deterministic; it is
        not a likelihood).
        """
        check_is_fitted(self)
        V = self._inference_V(V)
        ensure_blas()
        h = _core.rbm_hidden_probabilities(self.components_, self.intercept_hidden_, V)
        v = _core.rbm_visible_probabilities(
            self.components_, self.intercept_visible_, h, gaussian=self._gaussian()
        )
        return np.mean((V - v) ** 2, axis=1)

    @property
    def _n_features_out(self) -> int:
        """Output width of transform, for get_feature_names_out."""
        return int(self.components_.shape[0])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = not self._gaussian()
        tags.transformer_tags.preserves_dtype = ["float32"]  # transform always returns float32
        return tags
