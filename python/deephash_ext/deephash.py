"""DeepHash: stacked hashing-regularised RBMs with Siamese fine-tuning (docs/algorithms.md, sec. 2).

Unsupervised phase (C++ core): binarise the input at the training means, train each RBM
layer greedily with CD-k on the previous layer's codes, centre every layer. Fine-tuning
phase (torch, imported only by :meth:`DeepHash.finetune`): unroll the stack into a sigmoid
network and train it on matching / non-matching pairs with a contrastive loss on every
layer, then centre again. Encoding always runs the thresholded network in C++.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from . import _core
from ._blas import ensure_blas
from ._gpu import encode_layers, resolve_device
from ._io import ArrayHeader, MetaReader, header_mismatch, read_model, write_model
from ._random import check_rng, draw_random_state
from ._validation import (
    check_choice,
    check_finite_model,
    check_int,
    check_layer_sizes,
    check_real,
)
from .codes import unpack_bits
from .rbm import RBM

__all__ = ["DeepHash"]

_FORMAT = "deephash_ext.DeepHash"
_FORMAT_VERSION = 1
_LOSSES = ("double_margin", "single_margin")
_INPUT_THRESHOLDS = ("mean", "zero")
_VISIBLE_UNITS = ("binary", "gaussian")
_NEGATIVES = ("random", "batch")
_FINETUNE_METHODS = ("gradient", "spectral")
_HIDDEN_UNITS = ("binary", "linear")
_PAIR_CHUNK = 4096  # matching pairs per block of the spectral method's covariance


def _input_bits(X: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Layer 0's input ``[X > means]`` as float32 0/1 rows (the RBM trains on floats),
    thresholded by the same C++ kernel as every encoder. ``X``: C-contiguous float32."""
    n_features = X.shape[1]
    pad = -n_features % 8  # the kernel packs whole bytes; padded columns give 0 (0 > 0 is false)
    if pad:
        X = np.pad(X, ((0, 0), (0, pad)))
        means = np.pad(means, (0, pad))
    return unpack_bits(_core.pack_threshold(X, means), n_features).astype(np.float32)


# DeepHash.for_bits: the hidden width per code length that select_architecture (spectral)
# picked on the demo benchmark's validation pairs (benchmarks/results/bench_deephash.md).
# Other code lengths take the width of the nearest selected one (on a log scale; the
# shorter on a tie), and at least their own length (the spectral top layer needs it).
_SELECTED_WIDTHS = {64: 1024, 256: 2048, 1024: 2048}


def _for_bits_width(n_bits: int) -> int:
    nearest = min(_SELECTED_WIDTHS, key=lambda b: (abs(np.log2(b / n_bits)), b))
    return max(_SELECTED_WIDTHS[nearest], n_bits)


def _linear_fold(
    components: list[np.ndarray], offsets: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """One projection for a stack of linear layers, in float64: the last layer's
    pre-threshold value ``z_l = z_{l-1} W_l^T - offsets_l`` (``z_{-1}``: the first layer's
    input) equals ``input W^T - b``."""
    W = components[0].astype(np.float64)
    b = offsets[0].astype(np.float64)
    for W_l, b_l in zip(components[1:], offsets[1:]):
        W = W_l.astype(np.float64) @ W
        b = W_l.astype(np.float64) @ b + b_l
    return W, b


def _spectral_projection(
    Z: np.ndarray, matching: np.ndarray, n_out: int, shrinkage: float
) -> np.ndarray:
    """The spectral Siamese projection (docs/algorithms.md sec. 2.8), shape (h, n_out):
    the leading generalised eigenvectors of ``(S_t, S)``, ``S_t`` the covariance of the
    rows of ``Z`` (n, h), ``S`` half the covariance of the matching-pair differences shrunk
    towards ``tr / h I``; each scaled to ``v^T S v = 1`` with its largest entry positive
    (a deterministic sign)."""
    import scipy.linalg

    h = Z.shape[1]
    centred = Z - Z.mean(axis=0)
    spread = centred.T @ centred / len(Z)
    within = np.zeros((h, h))
    for start in range(0, len(matching), _PAIR_CHUNK):  # memory independent of the pair count
        chunk = matching[start : start + _PAIR_CHUNK]
        differences = Z[chunk[:, 0]] - Z[chunk[:, 1]]
        within += differences.T @ differences
    within /= 2 * len(matching)
    scale = np.trace(within) / h
    if not scale > 0:  # every matching pair has equal outputs: only the spread counts
        within, scale = np.eye(h), 1.0
    within = (1 - shrinkage) * within + shrinkage * scale * np.eye(h)
    try:
        _, vectors = scipy.linalg.eigh(spread, within, subset_by_index=(h - n_out, h - 1))
    except np.linalg.LinAlgError:  # S not positive definite: only with shrinkage 0
        raise ValueError(
            "the matching-pair covariance is singular (fewer distinct pairs than units?): "
            "raise shrinkage above 0"
        ) from None
    vectors = vectors[:, ::-1]  # eigh gives ascending eigenvalues
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(n_out)])
    return vectors * np.where(signs == 0, 1.0, signs)


def _next_layer_input(device: str, Z: np.ndarray, W: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The codes of one layer for its binary input ``Z``, as float32 0/1 rows: the next
    layer's training input, computed by the encoder that :meth:`DeepHash.encode` uses."""
    return unpack_bits(encode_layers(device, Z, None, [W], [offsets]), W.shape[0]).astype(
        np.float32
    )


class DeepHash(BaseEstimator):
    """Deep binary hashing of global descriptors (DeepHash, Lin et al. 2017).

    :meth:`fit` (docs/algorithms.md, sec. 2.1-2.6): ``z0 = [X > input_means_]``; each layer is an
    :class:`~deephash_ext.RBM` trained by CD-k (momentum, weight decay, optional hashing
    regulariser) on the binary codes of the layer below, then centred: bit ``j`` of layer
    ``l`` is 1 iff ``z_{l-1} . components_[l][j] > offsets_[l][j]``, where the offset is the
    training-set mean of that projection.

    :meth:`finetune` (pairs; docs/algorithms.md, sec. 2.7): the stack becomes a feed-forward
    sigmoid network ``a_l = sigmoid(a_{l-1} W_l^T - offsets_l)`` trained in torch on pairs
    with a contrastive loss summed over all layers; then every layer is centred again.

    :meth:`encode` returns packed codes (docs/algorithms.md, sec. 1) from any layer, computed in C++
    in blocks of rows (no float matrix per layer for the whole input).

    Parameters
    ----------
    hidden_layer_sizes : sequence of int, default=(4096, 256)
        Units per layer, input side first; the last is the code length. Each must be a
        positive multiple of 8, so that every layer can be read as a code.
    learning_rate, momentum, weight_decay, batch_size, n_epochs, cd_k, hashing_reg
        RBM training parameters, shared by every layer (see :class:`~deephash_ext.RBM`).
        Defaults follow the paper: learning rate 0.001, momentum 0.9, 30 epochs.
    random_state : int, RandomState instance or None, default=None
        Seeds every layer (layer ``l`` gets the ``l``-th seed drawn from it, so two stacks
        with the same first sizes share their first layers).
    verbose : bool, default=False
        tqdm progress bars while training.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where the RBM layers train and :meth:`encode` runs (see :class:`RBM`);
        :meth:`finetune` uses torch on the CPU, and the offsets are computed on the CPU.
    input_threshold : {"mean", "zero"}, default="mean"
        Where the input is binarised when ``visible_units="binary"``: at the per-dimension
        training means (the paper's rule, docs/algorithms.md sec. 2.1) or at zero, the sign
        of a signed descriptor such as a Fisher Vector.
    visible_units : {"binary", "gaussian"}, default="binary"
        The first RBM's visible units. ``"binary"`` (the paper): the input is binarised
        by ``input_threshold``. ``"gaussian"``: the input is standardised per dimension
        (training mean and standard deviation) and the first RBM has Gaussian visible
        units (:class:`RBM` ``visible_units``), so the first layer sees the real values;
        the standardisation is folded into ``components_[0]`` and ``offsets_[0]``, so
        encoding projects the raw input (docs/algorithms.md sec. 2.1).
    finetune_method : {"gradient", "spectral"}, default="gradient"
        What :meth:`finetune` does. ``"gradient"`` (the paper): the stack becomes a sigmoid
        network trained by gradient descent on a contrastive loss. ``"spectral"``
        (docs/algorithms.md sec. 2.8): the hidden layers become linear (each passes its
        centred projection up instead of its bits) and the top layer is replaced, in closed
        form, by the projection that best separates matching pairs from all items (a
        Siamese objective with squared distances, solved as a shrunk generalised
        eigenproblem). Needs at least two layers.

    Attributes
    ----------
    input_means_ : ndarray of float32, shape (n_features_in_,)
        Binary visible units: the input binarisation thresholds (the per-dimension training
        means, or zeros with ``input_threshold="zero"``). Gaussian visible units: the
        training means used to standardise the input.
    input_scales_ : ndarray of float32, shape (n_features_in_,)
        Gaussian visible units: the training standard deviations used to standardise the
        input (1 where a column is constant). Binary visible units: ones.
    components_ : list of ndarray of float32
        ``components_[l]`` has shape (hidden_layer_sizes[l], n_inputs of layer l).
    offsets_ : list of ndarray of float32
        Centring thresholds of each layer.
    intercepts_visible_ : list of ndarray of float32
        Visible biases of each RBM (kept for inspection; encoding does not use them).
    finetuned_ : bool
        Whether :meth:`finetune` has run.
    hidden_units_ : {"binary", "linear"}
        What each hidden layer passes to the next: its code (after :meth:`fit` and gradient
        fine-tuning, the paper) or its centred projection (after spectral fine-tuning;
        :meth:`encode` then folds the layers up to the one asked for into one projection).
    margins_ : list of float
        Per-layer margins of the last fine-tuning (empty before).
    finetune_scores_ : list of float
        Validation AUC before fine-tuning and after each epoch, when :meth:`finetune` had
        ``validation`` (empty otherwise).
    finetune_loss_ : list of float
        Mean loss per fine-tuning epoch (empty before).
    n_features_in_ : int

    References
    ----------
    .. [1] Lin, Morère, Chandrasekhar, Veillard, Goh, "DeepHash: Getting Regularization,
       Depth and Fine-Tuning Right", ICMR 2017.
    .. [2] Hadsell, Chopra, LeCun, "Dimensionality reduction by learning an invariant
       mapping", CVPR 2006 (the single-margin loss).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(400, 64)).astype(np.float32)
    >>> model = DeepHash((32, 16), n_epochs=2, learning_rate=0.05, random_state=0).fit(X)
    >>> model.encode(X).shape, model.encode(X, layer=0).shape
    ((400, 2), (400, 4))
    """

    def __init__(
        self,
        hidden_layer_sizes=(4096, 256),
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
        input_threshold="mean",
        visible_units="binary",
        finetune_method="gradient",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
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
        self.input_threshold = input_threshold
        self.visible_units = visible_units
        self.finetune_method = finetune_method

    @classmethod
    def for_bits(cls, n_bits, **overrides) -> DeepHash:
        """The unfitted DeepHash+ for an ``n_bits`` code, as model selection chose it.

        ``fit(X)`` then ``finetune(X, pairs)`` with default arguments train the DeepHash+
        of ``benchmarks/bench_deephash.py``: a Gaussian-visible RBM of hidden width
        ``w`` (learning rate 0.003, 20 epochs, hashing regulariser 0.2, the paper's
        momentum, weight decay and minibatch), then spectral Siamese fine-tuning of an
        ``n_bits`` top layer (docs/algorithms.md sec. 2.8). The width ``w`` is the one that
        :func:`~deephash_ext.selection.select_architecture` picked by validation AUC on
        ``load_retrieval_benchmark("demo")`` for 64, 256 and 1024 bits (its validation photos
        only, never the evaluation photos; ``benchmarks/results/bench_deephash.md``): 1024,
        2048 and 2048. Another code length takes the width of the nearest of those (the
        shorter on a tie), and at least ``n_bits``. The RBM settings and the shrinkage were
        chosen on the same validation pairs.

        Parameters
        ----------
        n_bits : int
            Code length, a positive multiple of 8.
        **overrides
            Any constructor parameter, replacing the selected value (e.g.
            ``random_state``, ``device``, ``hidden_layer_sizes``).

        Returns
        -------
        DeepHash
            Unfitted.

        Raises
        ------
        ValueError, TypeError
            If ``n_bits`` is not a positive multiple of 8 or an override is not a
            constructor parameter.
        """
        n_bits = check_int(n_bits, "n_bits", minimum=8)
        if n_bits % 8:
            raise ValueError(f"n_bits must be a multiple of 8, got {n_bits}")
        known = cls._get_param_names()
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise TypeError(f"for_bits got an unknown DeepHash parameter {unknown[0]!r}")
        params: dict[str, Any] = dict(
            hidden_layer_sizes=(_for_bits_width(n_bits), n_bits),
            visible_units="gaussian",
            learning_rate=0.003,
            n_epochs=20,
            hashing_reg=0.2,
            finetune_method="spectral",
        )
        params.update(overrides)
        return cls(**params)

    # ------------------------------------------------------------------ checks
    def _layer_sizes(self) -> list[int]:
        # multiples of 8: every layer is a code
        return check_layer_sizes(
            self.hidden_layer_sizes, "hidden_layer_sizes", minimum=8, multiple=8, allow_empty=False
        )

    def _rbm(self, n_hidden: int, seed: int, gaussian: bool = False) -> RBM:
        return RBM(
            n_hidden,
            learning_rate=self.learning_rate,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            n_epochs=self.n_epochs,
            cd_k=self.cd_k,
            hashing_reg=self.hashing_reg,
            random_state=seed,
            verbose=self.verbose,
            device=self.device,
            visible_units="gaussian" if gaussian else "binary",
        )

    def _check_X(self, X) -> np.ndarray:
        """X of a fitted model: float32, C-contiguous, finite, n_features_in_ columns."""
        return validate_data(self, X, dtype=np.float32, order="C", reset=False)

    def _input_threshold_rule(self) -> str:
        return check_choice(self.input_threshold, "input_threshold", _INPUT_THRESHOLDS)

    def _gaussian_input(self) -> bool:
        """Whether the first layer has Gaussian visible units (``visible_units`` checked)."""
        return check_choice(self.visible_units, "visible_units", _VISIBLE_UNITS) == "gaussian"

    def _encoder_thresholds(self) -> np.ndarray | None:
        """The first layer's input rule for the C++ encoder: binarise at ``input_means_``,
        or (Gaussian visible units) project the raw input."""
        return None if self.visible_units == "gaussian" else self.input_means_

    def _layer_index(self, layer) -> int:
        n_layers = len(self.components_)
        return check_int(layer, "layer", minimum=-n_layers, maximum=n_layers - 1) % n_layers

    # ------------------------------------------------------------------ training
    def fit(self, X, y=None, *, reuse=None):
        """Train the stack greedily and centre every layer.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
            Training descriptors (converted to float32).
        y : ignored
        reuse : DeepHash, optional
            A model fitted (and not fine-tuned) on the same ``X`` with the same parameters
            and ``random_state``: its first layers whose sizes agree with this model's are
            copied instead of retrained (greedy training would give them bit for bit). This
            makes comparing depths (e.g. 8192-4096-256 and 8192-4096-2048-64) cheaper. A
            model that does not qualify is ignored.

        Returns
        -------
        self : DeepHash

        Raises
        ------
        ValueError, TypeError
            If a parameter is invalid (the message names it) or ``X`` is not a finite
            2-D array.
        RuntimeError
            If a layer's training diverged (lower ``learning_rate``).

        A fit that fails or is interrupted leaves a fitted model as it was.
        """
        sizes = self._layer_sizes()
        device = self._rbm(sizes[0], 0)._check_params()  # every RBM parameter, before any work
        rule = self._input_threshold_rule()
        gaussian = self._gaussian_input()
        X = check_array(X, dtype=np.float32, order="C", estimator=self)
        ensure_blas()
        rng = check_rng(self.random_state)
        scales = np.ones(X.shape[1], dtype=np.float32)
        if rule == "mean" or gaussian:
            means = X.mean(axis=0, dtype=np.float64).astype(np.float32)
        else:
            means = np.zeros(X.shape[1], dtype=np.float32)
        if gaussian:
            std = X.std(axis=0, dtype=np.float64)
            scales = np.where(std > 0, std, 1.0).astype(np.float32)
            Z = (X - means) / scales  # standardised; the first layer folds it back
        else:
            Z = _input_bits(X, means)
        shared = self._reusable_layers(reuse, sizes, means)
        components, offsets, visible = [], [], []
        for depth, size in enumerate(sizes):
            seed = draw_random_state(rng)  # drawn for every layer: later layers get the same seeds
            if depth < shared:  # shared arrays: no code path modifies fitted arrays in place
                components.append(reuse.components_[depth])
                offsets.append(reuse.offsets_[depth])
                visible.append(reuse.intercepts_visible_[depth])
            else:
                rbm = self._rbm(size, seed, gaussian and depth == 0).fit(Z)
                if gaussian and depth == 0:  # fold the standardisation into the layer
                    components.append(np.ascontiguousarray(rbm.components_ / scales))
                    offsets.append(_core.mean_projection(X, None, components[-1]))
                else:
                    components.append(rbm.components_)
                    offsets.append(rbm.hidden_offsets_)
                visible.append(rbm.intercept_visible_)
            if gaussian and depth == 0:
                Z = X  # the folded first layer projects the raw input
            if depth + 1 < len(sizes):
                Z = _next_layer_input(device, Z, components[-1], offsets[-1])
        validate_data(self, X, skip_check_array=True, reset=True)
        self.input_means_ = means
        self.input_scales_ = scales
        self.components_ = components
        self.offsets_ = offsets
        self.intercepts_visible_ = visible
        self.finetuned_ = False
        self.hidden_units_ = "binary"
        self.margins_ = []
        self.finetune_loss_ = []
        self.finetune_scores_ = []
        return self

    def _reusable_layers(self, reuse, sizes: list[int], means: np.ndarray) -> int:
        """How many first layers of ``reuse`` this fit may copy (0 if it does not qualify)."""
        if not isinstance(reuse, DeepHash) or not hasattr(reuse, "components_"):
            return 0
        mine, theirs = self.get_params(), reuse.get_params()
        mine.pop("hidden_layer_sizes"), theirs.pop("hidden_layer_sizes")
        mine.pop("verbose"), theirs.pop("verbose")
        mine.pop("finetune_method"), theirs.pop("finetune_method")  # fit does not use it
        if (
            reuse.finetuned_
            or mine != theirs
            or not isinstance(self.random_state, numbers.Integral)
            or not np.array_equal(reuse.input_means_, means)
        ):
            return 0
        shared = 0
        for size, W in zip(sizes, reuse.components_):
            if W.shape[0] != size:
                break
            shared += 1
        return shared

    def _centred_offsets(
        self, X: np.ndarray, components: list[np.ndarray], device: str
    ) -> list[np.ndarray]:
        """Offsets of every layer (docs/algorithms.md, sec. 2.5) for ``components``, on ``X``."""
        offsets: list[np.ndarray] = []
        Z, thresholds = X, self._encoder_thresholds()  # each layer's input, carried forward once
        for depth, W in enumerate(components):
            offsets.append(_core.mean_projection(Z, thresholds, W))
            if depth + 1 < len(components):
                codes = encode_layers(device, Z, thresholds, [W], [offsets[-1]])
                Z, thresholds = unpack_bits(codes, W.shape[0]).astype(np.float32), None
        return offsets

    def finetune(
        self,
        X,
        pairs,
        pair_labels=None,
        *,
        loss="double_margin",
        margins=None,
        n_epochs=5,
        matching_per_batch=33,
        learning_rate=0.001,
        random_state=None,
        verbose=None,
        negatives="random",
        validation=None,
        patience=2,
        shrinkage=0.5,
    ):
        """Siamese fine-tuning: by gradient (docs/algorithms.md, sec. 2.7) in torch, or in
        closed form (``finetune_method="spectral"``, sec. 2.8); then re-centring on ``X``.

        **Spectral** (``finetune_method="spectral"``): let ``z`` be the centred output of the
        layer below the top, every hidden layer passing its centred projection up (linear
        units). With ``S_t`` the covariance of ``z`` over ``X`` and ``S_m`` half the
        covariance of ``z_i - z_j`` over the matching pairs, shrunk towards a multiple of the
        identity, ``S = (1 - shrinkage) S_m + shrinkage tr(S_m) / h I``, the top layer
        becomes the ``n_bits`` leading solutions of ``S_t v = lambda S v``: the projections
        along which all items spread most relative to matching pairs (a squared-distance
        Siamese loss whose push term is a spread constraint). Non-matching ``pairs`` are not
        used. Only ``pairs``, ``pair_labels``, ``shrinkage`` and ``validation`` apply; the
        other arguments are for the gradient method. With ``validation``, the model keeps
        whichever of the models before and after has the better validation AUC
        (``finetune_scores_`` holds both).

        **Gradient** (the paper, the default):

        The stack is unrolled into ``a_0 = [X > input_means_]``,
        ``a_l = sigmoid(a_{l-1} W_l^T + b_l)`` with ``b_l = -offsets_[l]`` at the start. For a
        pair with squared distance ``d_l = ||a_l - a'_l||^2`` at layer ``l`` the loss is

        * ``"double_margin"`` (eq. 8): ``y max(d_l - m_l, 0) + (1 - y) max(m_l - d_l, 0)``;
        * ``"single_margin"`` (eq. 7, Hadsell et al.): ``y d_l + (1 - y) max(m_l - d_l, 0)``,

        summed over layers, averaged over the pairs of a minibatch and minimised with Adam
        (the paper does not name its optimiser; Adam's steps do not depend on the loss scale,
        which varies by orders of magnitude across layers). ``m_l`` defaults to the mean of
        the median ``d_l`` of matching and of non-matching pairs under the network before
        fine-tuning (Fig. 4 of the paper).

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features_in_)
            The items that ``pairs`` index (also used for the final re-centring).
        pairs : array_like of int, shape (n_pairs, 2)
            Row indices into ``X``.
        pair_labels : array_like of {0, 1}, shape (n_pairs,), optional
            1 = matching, 0 = non-matching. When omitted every pair is matching, and each
            minibatch adds, for every matching pair ``(i, j)``, one random item ``k`` of
            ``X`` (``k`` not ``i`` or ``j``; it is not checked for being a true match) as the
            two non-matching pairs ``(i, k)``, ``(j, k)``: the paper's 1:2 sampling.
        loss : {"double_margin", "single_margin"}, default="double_margin"
        margins : sequence of float, optional
            One positive margin per layer, instead of the median rule.
        n_epochs : int, default=5
            Passes over the matching pairs (or over all pairs, with ``pair_labels``).
        matching_per_batch : int, default=33
            Matching pairs per minibatch (the paper: 33 matching + 66 non-matching). With
            ``pair_labels``, minibatches hold ``3 * matching_per_batch`` pairs.
        learning_rate : float, default=0.001
            Adam step size.
        random_state : int, RandomState instance or None, default=None
            Seeds the pair order and the non-matching samples (``None``: derived from the
            estimator's ``random_state``).
        verbose : bool, optional
            Progress bar (default: the estimator's ``verbose``).
        negatives : {"random", "batch"}, default="random"
            Without ``pair_labels``: the paper's 1:2 random non-matching pairs, or every
            ``(a_i, b_j)``, ``i != j``, of the minibatch's matching pairs (in-batch
            negatives; matching and non-matching terms then weigh the same).
        validation : tuple (X_val, pairs_val, labels_val), optional
            Validation pairs (rows of ``X_val``, labels 1 = matching). The ROC AUC of the
            Hamming distance (:func:`deephash_ext.selection.pair_auc`) is measured before
            training and after every epoch; training stops once more than ``patience``
            epochs in a row bring no better AUC and keeps the best epoch's weights
            (possibly the starting ones). ``finetune_scores_`` holds the AUCs.
        patience : int, default=2
            Epochs in a row without a better validation AUC that training goes on
            through (with ``validation``); 0 stops at the first.
        shrinkage : float in [0, 1], default=0.5
            Spectral method: weight of the identity in the matching-pair covariance (0:
            none, 1: the top layer becomes the leading principal axes of ``z``).

        Returns
        -------
        self : DeepHash

        Raises
        ------
        ImportError
            If torch is not installed (gradient method).
        ValueError, TypeError
            If an argument is invalid (the message names it); if the spectral method gets a
            single-layer model or a top layer wider than the layer below; if the gradient
            method gets a model with linear hidden units (spectrally fine-tuned: fit it
            again). The model is unchanged then.
        RuntimeError
            If fine-tuning diverged (a non-finite loss or weight: lower ``learning_rate`` or
            the margins). The model is unchanged then, also when interrupted.
        """
        check_is_fitted(self)
        X = self._check_X(X)
        pairs, labels = self._check_pairs(pairs, pair_labels, len(X))
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES}, got {loss!r}")
        n_layers = len(self.components_)
        if margins is not None:
            margins = np.asarray(margins, dtype=np.float64)
            with np.errstate(over="ignore"):  # the network computes in float32
                in_float32 = np.isfinite(margins.astype(np.float32))
            if margins.shape != (n_layers,) or not np.all(in_float32) or np.any(margins <= 0):
                raise ValueError(
                    f"margins must be {n_layers} positive numbers (one per layer) "
                    f"within the float32 range, got {margins.tolist()}"
                )
        n_epochs = check_int(n_epochs, "n_epochs", minimum=1)
        matching_per_batch = check_int(matching_per_batch, "matching_per_batch", minimum=1)
        learning_rate = check_real(learning_rate, "learning_rate", low=0.0, low_open=True)
        negatives = check_choice(negatives, "negatives", _NEGATIVES)
        if negatives == "batch" and labels is not None:
            raise ValueError('negatives="batch" needs pair_labels=None (matching pairs only)')
        patience = check_int(patience, "patience", minimum=0)
        shrinkage = check_real(shrinkage, "shrinkage", low=0.0, high=1.0)
        method = check_choice(self.finetune_method, "finetune_method", _FINETUNE_METHODS)
        if method == "spectral":
            return self._finetune_spectral(X, pairs, labels, shrinkage, validation)
        if self.hidden_units_ != "binary":
            raise ValueError(
                'finetune_method="gradient" needs binary hidden units, but this model was '
                "fine-tuned spectrally (linear hidden units): fit it again first"
            )
        score = None if validation is None else self._validation_score(validation, X)
        if labels is None and len(X) < 3:
            raise ValueError("X needs at least 3 rows to sample non-matching pairs")
        if random_state is None:
            random_state = draw_random_state(check_rng(self.random_state))
        rng = check_rng(random_state)
        show = self.verbose if verbose is None else verbose

        device = resolve_device(self.device)
        from ._torch.siamese import siamese_finetune  # imports torch

        # The network's input: the binarised X, or the standardised X (Gaussian visible
        # units), with the first layer unfolded to match; folded back after training.
        weights, biases = list(self.components_), [-o for o in self.offsets_]
        if self.visible_units == "gaussian":
            Z0 = (X - self.input_means_) / self.input_scales_
            biases[0] = biases[0] + weights[0] @ self.input_means_
            weights[0] = weights[0] * self.input_scales_
        else:
            Z0 = _input_bits(X, self.input_means_)
        components, margins_used, history, scores = siamese_finetune(
            Z0,
            weights,
            biases,
            pairs,
            labels,
            loss=loss,
            margins=margins,
            n_epochs=n_epochs,
            matching_per_batch=matching_per_batch,
            learning_rate=learning_rate,
            rng=rng,
            verbose=show,
            negatives=negatives,
            score=score,
            patience=patience,
        )
        check_finite_model(
            [*components, np.asarray(history)],
            "Siamese fine-tuning",
            "lower learning_rate or the margins (the model is unchanged)",
        )
        components = self._folded(components)
        ensure_blas()
        offsets = self._centred_offsets(X, components, device)
        self.components_ = components
        self.offsets_ = offsets
        self.margins_ = [float(m) for m in margins_used]
        self.finetune_loss_ = [float(v) for v in history]
        self.finetune_scores_ = [float(v) for v in scores]
        self.finetuned_ = True
        return self

    def _finetune_spectral(
        self,
        X: np.ndarray,
        pairs: np.ndarray,
        labels: np.ndarray | None,
        shrinkage: float,
        validation,
    ):
        """:meth:`finetune` with ``finetune_method="spectral"`` (arguments checked)."""
        n_layers = len(self.components_)
        if n_layers < 2:
            raise ValueError(
                'finetune_method="spectral" needs at least two layers (it replaces the top '
                "layer on the output of the one below), got hidden_layer_sizes="
                f"{self.hidden_layer_sizes}"
            )
        n_bits, width = self.components_[-1].shape
        if n_bits > width:
            raise ValueError(
                f'finetune_method="spectral" needs a top layer ({n_bits} bits) no wider than '
                f"the layer below ({width})"
            )
        data_val = None if validation is None else self._validation_data(validation)
        matching = pairs if labels is None else pairs[labels == 1]
        components = list(self.components_)
        # One pass over X: the first layer's projection gives its centring offsets (the
        # rule of mean_projection) and, centred, the input of the linear layers above it,
        # whose offsets are zero (their input is centred).
        first = self._first_layer_input(X) @ components[0].T
        offsets = [first.mean(axis=0, dtype=np.float64).astype(np.float32)]
        offsets += [np.zeros(len(W), dtype=np.float32) for W in components[1:]]
        Z = first - offsets[0]
        if n_layers > 2:  # the hidden layers between the first and the top, folded
            middle, _ = _linear_fold(components[1:-1], offsets[1:-1])
            Z = Z @ middle.T.astype(np.float32)
        top = _spectral_projection(Z.astype(np.float64), matching, n_bits, shrinkage)
        components[-1] = np.ascontiguousarray(top.T, dtype=np.float32)
        scores: list[float] = []
        if data_val is not None:
            before = self._pair_auc(data_val, self.components_, self.offsets_, self.hidden_units_)
            after = self._pair_auc(data_val, components, offsets, "linear")
            scores = [before, after]
            if after <= before:  # keep the better model, as early stopping does
                self.finetune_scores_ = scores
                return self
        self.components_ = components
        self.offsets_ = offsets
        self.hidden_units_ = "linear"
        self.margins_ = []
        self.finetune_loss_ = []
        self.finetune_scores_ = scores
        self.finetuned_ = True
        return self

    def _first_layer_input(self, X: np.ndarray) -> np.ndarray:
        """What ``components_[0]`` projects: the binarised X, or X itself (Gaussian visible
        units, whose standardisation is folded into the layer)."""
        thresholds = self._encoder_thresholds()
        return X if thresholds is None else _input_bits(X, thresholds)

    def _encode_stack(
        self,
        X: np.ndarray,
        components: list[np.ndarray],
        offsets: list[np.ndarray],
        hidden_units: str,
    ) -> np.ndarray:
        """Packed codes of the last of ``components`` for checked ``X``: the layers pass
        codes up (``"binary"``) or are folded into one projection (``"linear"``)."""
        if hidden_units == "linear":
            components, offsets = self._folded_stack(components, offsets)
        return encode_layers(
            resolve_device(self.device), X, self._encoder_thresholds(), components, offsets
        )

    def _folded_stack(
        self, components: list[np.ndarray], offsets: list[np.ndarray]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``_linear_fold`` of linear layers as one float32 encoder layer, kept for the
        same arrays (fitted arrays are replaced, never modified in place), so that
        encoding small batches does not pay for the fold (b x w x d multiply-adds) each
        call."""
        if len(components) == 1:
            return components, offsets
        key = (*components, *offsets)
        cached = getattr(self, "_fold_cache", None)
        if cached is not None and len(cached[0]) == len(key):
            if all(a is b for a, b in zip(cached[0], key)):
                return cached[1]
        W, b = _linear_fold(components, offsets)
        folded = ([W.astype(np.float32)], [b.astype(np.float32)])
        self._fold_cache = (key, folded)
        return folded

    def _pair_auc(self, data_val, components, offsets, hidden_units: str) -> float:
        from .selection import pair_auc

        X_val, pairs_val, labels_val = data_val
        codes = self._encode_stack(X_val, components, offsets, hidden_units)
        return pair_auc(codes, pairs_val, labels_val)

    def _folded(self, weights: list[np.ndarray]) -> list[np.ndarray]:
        """The fine-tuning network's weights as ``components_``: with Gaussian visible units
        the first layer's input standardisation folded back in (docs/algorithms.md sec. 2.1)."""
        components = list(weights)
        if self.visible_units == "gaussian":
            components[0] = np.ascontiguousarray(components[0] / self.input_scales_)
        return components

    def _validation_data(self, validation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``finetune``'s ``validation`` checked: (X_val, pairs_val, labels_val)."""
        from .selection import _check_pairs

        if not isinstance(validation, (tuple, list)) or len(validation) != 3:
            raise TypeError("validation must be a tuple (X_val, pairs_val, labels_val)")
        X_val = self._check_X(validation[0])
        pairs_val, labels_val = _check_pairs(validation[1], validation[2], len(X_val))
        return X_val, pairs_val, labels_val

    def _validation_score(self, validation, X: np.ndarray):
        """The early-stopping score of gradient fine-tuning: network weights (unfolded, as
        the torch network holds them) -> validation pair AUC of the re-centred codes."""
        data_val = self._validation_data(validation)
        device = resolve_device(self.device)

        def score(weights: list[np.ndarray]) -> float:
            components = self._folded(weights)
            offsets = self._centred_offsets(X, components, device)
            return self._pair_auc(data_val, components, offsets, "binary")

        return score

    @staticmethod
    def _check_pairs(pairs, pair_labels, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        array = np.asarray(pairs)
        if array.dtype.kind not in "iu":
            raise TypeError(f"pairs must hold integer row indices, got dtype {array.dtype}")
        if array.ndim != 2 or array.shape[1] != 2 or len(array) == 0:
            raise ValueError(
                f"pairs must have shape (n_pairs, 2) with n_pairs >= 1, got {array.shape}"
            )
        if array.min() < 0 or array.max() >= n:
            raise ValueError(
                f"pairs must index rows of X (0 <= index < {n}), got values in "
                f"[{array.min()}, {array.max()}]"
            )
        if np.any(array[:, 0] == array[:, 1]):
            raise ValueError("pairs must join two different rows (found a pair (i, i))")
        array = array.astype(np.int64)
        if pair_labels is None:
            return array, None
        labels = np.asarray(pair_labels)
        if labels.shape != (len(array),):
            raise ValueError(f"pair_labels must have shape ({len(array)},), got {labels.shape}")
        if labels.dtype.kind not in "biuf" or not np.all((labels == 0) | (labels == 1)):
            raise ValueError("pair_labels must be 0 (non-matching) or 1 (matching)")
        labels = labels.astype(np.float32)
        if labels.min() == labels.max():
            raise ValueError(
                "pair_labels must contain both matching (1) and non-matching (0) "
                "pairs; pass pair_labels=None to sample non-matching pairs"
            )
        return array, labels

    # ------------------------------------------------------------------ encoding
    def encode(self, X, layer=-1):
        """Packed codes of layer ``layer`` (default: the last), docs/algorithms.md, sec. 1.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features_in_)
        layer : int, default=-1
            Which layer's code (0 = first hidden layer; negative counts from the end).

        Returns
        -------
        codes : ndarray of uint8, shape (n_samples, hidden_layer_sizes[layer] // 8)
        """
        check_is_fitted(self)
        depth = self._layer_index(layer)
        X = self._check_X(X)
        return self._encode_stack(
            X, self.components_[: depth + 1], self.offsets_[: depth + 1], self.hidden_units_
        )

    @property
    def n_bits(self) -> int:
        """Bits of the last layer's code."""
        check_is_fitted(self)
        return int(self.components_[-1].shape[0])

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted model to ``path`` (one ``.npz`` file, atomically, no pickle).

        The file holds the arrays and JSON metadata: a format tag and version, the
        constructor parameters (``random_state`` only when it is an int or None) and the
        fine-tuning state. Load it with :meth:`DeepHash.load`.
        """
        check_is_fitted(self)
        params = self.get_params()
        if not (
            params["random_state"] is None or isinstance(params["random_state"], numbers.Integral)
        ):
            params["random_state"] = None
        else:
            params["random_state"] = (
                None if params["random_state"] is None else int(params["random_state"])
            )
        params["hidden_layer_sizes"] = [int(s) for s in params["hidden_layer_sizes"]]
        arrays = {"input_means": self.input_means_, "input_scales": self.input_scales_}
        for depth, (W, offsets, visible) in enumerate(
            zip(self.components_, self.offsets_, self.intercepts_visible_)
        ):
            arrays[f"components_{depth}"] = W
            arrays[f"offsets_{depth}"] = offsets
            arrays[f"intercept_visible_{depth}"] = visible
        meta = {
            "params": params,
            "n_layers": len(self.components_),
            "finetuned": bool(self.finetuned_),
            "hidden_units": self.hidden_units_,
            "margins": list(self.margins_),
            "finetune_loss": list(self.finetune_loss_),
            "finetune_scores": list(self.finetune_scores_),
        }
        write_model(path, arrays, meta, format_tag=_FORMAT, version=_FORMAT_VERSION)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DeepHash:
        """Read a model written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            If the file is corrupt, is not a DeepHash model, has an unknown format version,
            invalid metadata or parameters, NaN or infinite weights, or arrays that do not
            fit together (the message names the path). Every size is checked against the
            metadata before anything is allocated.
        """
        where = os.fspath(path)
        found: dict[str, Any] = {}

        def expect(meta: dict[str, Any], headers: Mapping[str, ArrayHeader]) -> None:
            found["model"], found["n_layers"] = cls._model_from_meta(meta, headers, where)

        arrays, _ = read_model(
            path, kind="DeepHash", format_tag=_FORMAT, version=_FORMAT_VERSION, expect=expect
        )
        model, n_layers = found["model"], found["n_layers"]
        model.input_means_ = arrays["input_means"].astype(np.float32)
        model.input_scales_ = (  # files written before visible_units existed: ones
            arrays["input_scales"].astype(np.float32)
            if "input_scales" in arrays
            else np.ones_like(model.input_means_)
        )
        if not np.all(model.input_scales_ > 0):
            raise ValueError(f"{where!r}: input_scales must be positive")
        model.components_ = [arrays[f"components_{d}"] for d in range(n_layers)]
        model.offsets_ = [arrays[f"offsets_{d}"].astype(np.float32) for d in range(n_layers)]
        model.intercepts_visible_ = [
            arrays[f"intercept_visible_{d}"].astype(np.float32) for d in range(n_layers)
        ]
        model.n_features_in_ = int(model.input_means_.shape[0])
        return model

    @classmethod
    def _model_from_meta(
        cls, meta: dict[str, Any], headers: Mapping[str, ArrayHeader], where: str
    ) -> tuple[DeepHash, int]:
        """The unfitted model a file's metadata describes (every value checked) and its
        depth, once the array headers agree with it; ValueError naming ``where`` otherwise."""
        reader = MetaReader(meta, where, "DeepHash")
        n_layers = reader.integer("n_layers", minimum=1, maximum=max(1, len(headers) // 3))
        params = reader.mapping("params")
        reader.check_seed_and_verbose(params)
        try:
            model = cls(**params)
            sizes = model._layer_sizes()
            model._input_threshold_rule()
            model._gaussian_input()
            check_choice(model.finetune_method, "finetune_method", _FINETUNE_METHODS)
            model._rbm(sizes[0], 0)._check_params()
        except RuntimeError:
            pass  # a valid device that this machine cannot use: the model loads anyway
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{where!r} is not a valid DeepHash model file: its parameters are invalid: {error}"
            ) from None
        model.hidden_layer_sizes = tuple(sizes)  # JSON gave a list
        if len(sizes) != n_layers:
            raise ValueError(
                f"{where!r}: n_layers={n_layers} but hidden_layer_sizes has {len(sizes)} layers"
            )
        model.finetuned_ = reader.boolean("finetuned", default=False)
        model.hidden_units_ = reader.string("hidden_units", default="binary")  # older files
        if model.hidden_units_ not in _HIDDEN_UNITS or (
            model.hidden_units_ == "linear" and not model.finetuned_
        ):
            raise reader.invalid(
                "hidden_units",
                f"one of {_HIDDEN_UNITS} ('linear' only once fine-tuned)",
                model.hidden_units_,
            )
        model.margins_ = reader.reals("margins", nonnegative=True, default=[])
        if model.hidden_units_ == "linear":  # spectral fine-tuning has no margins
            allowed: tuple[int, ...] = (0,)
        else:
            allowed = (n_layers,) if model.finetuned_ else (0, n_layers)
        if len(model.margins_) not in allowed:
            raise ValueError(
                f"{where!r}: margins must hold one value per layer ({n_layers}) "
                f"for a gradient fine-tuned model, none for a spectral one, "
                f"got {len(model.margins_)}"
            )
        model.finetune_loss_ = reader.reals("finetune_loss", default=[])
        model.finetune_scores_ = reader.reals("finetune_scores", default=[])
        means = headers.get("input_means")
        n_in = means.shape[0] if means is not None and len(means.shape) == 1 else -1
        inputs: dict[str, Any] = {"input_means": ((n_in,), "f")}
        if "input_scales" in headers:
            inputs["input_scales"] = ((n_in,), "f")
        groups: list[tuple[str, dict[str, Any]]] = [("the input", inputs)]
        for d, size in enumerate(sizes):
            groups.append(
                (
                    f"layer {d}",
                    {
                        f"components_{d}": ((size, n_in), np.float32),
                        f"offsets_{d}": ((size,), "f"),
                        f"intercept_visible_{d}": ((n_in,), "f"),
                    },
                )
            )
            n_in = size
        for _, expected in groups:
            missing = sorted(set(expected) - set(headers))
            if missing:
                raise ValueError(
                    f"{where!r} is an incomplete DeepHash model file: array "
                    f"{missing[0]!r} is missing"
                )
        for label, expected in groups:
            problem = header_mismatch({k: headers[k] for k in expected}, expected)
            if problem is not None:
                raise ValueError(
                    f"{where!r}: the arrays of {label} do not fit together ({problem})"
                )
        extra = sorted(set(headers) - {k for _, group in groups for k in group})
        if extra:
            raise ValueError(
                f"{where!r} is not a valid DeepHash model file: it has an "
                f"unexpected array {extra[0]!r:.80}"
            )
        return model, n_layers
