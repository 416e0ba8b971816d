"""SSDH and DLBHC: supervised semantics-preserving deep hashing (docs/algorithms.md, sec. 4).

A feature network (an MLP over precomputed descriptors, or any torch backbone) feeds a
latent layer H of ``n_bits`` sigmoid units, and a linear classifier sits on H. Training is
point-wise (no pairs or triplets): a classification loss, plus two terms that push the
activations of H towards 0 or 1 and balance each code's bits. The code of an item is
``a_H > 0.5``, packed as in docs/algorithms.md, sec. 1.

torch is imported only when a model is fitted, loaded or used, so ``import
deephash_ext.ssdh`` stays light.
"""

from __future__ import annotations

import copy
import math
import numbers
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._io import (
    ArrayHeader,
    MetaReader,
    header_mismatch,
    read_model,
    state_expectation,
    write_model,
)
from ._search import search
from ._torch import import_torch, ssdh_net
from ._torch.common import (
    arrays_to_state_dict,
    resolve_device,
    seeded_generator,
    softmax_rows,
    state_dict_to_arrays,
    to_numpy_float32,
)
from ._validation import (
    check_class_labels,
    check_device_name,
    check_float_rows,
    check_int,
    check_layer_sizes,
    check_real,
)
from .codes import pack_bits_padded

__all__ = ["DLBHC", "SSDH", "coarse_to_fine_search"]

_FORMAT = "deephash_ext.SSDH"
_FORMAT_VERSION = 1
_INFER_ROWS = 2048  # rows per forward pass at inference


# ============================================================================ checks


def _check_labels(y, n_samples: int) -> tuple[np.ndarray, bool]:
    """(y, multilabel): 1-D class labels, or a 2-D 0/1 indicator matrix (float32)."""
    if y is None:
        raise ValueError(
            "SSDH requires y to be passed, but the target y is None (class "
            "labels or a 0/1 indicator matrix)"
        )
    array = np.asarray(y)
    if array.ndim == 2 and array.shape[1] == 1:
        import warnings

        warnings.warn(
            "A column-vector y was passed when a 1d array was expected: it is read "
            "as single-label classes (pass an (n, M) indicator matrix with M >= 2 "
            "for multi-label)",
            DataConversionWarning,
            stacklevel=3,
        )
        array = array.ravel()
    if array.ndim not in (1, 2):
        raise ValueError(
            f"y must be 1-D (class labels) or 2-D (0/1 indicator matrix), got shape {array.shape}"
        )
    if array.shape[0] != n_samples:
        raise ValueError(f"y must have one row per sample of X ({n_samples}), got {array.shape[0]}")
    if array.ndim == 2:
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"a 2-D y must be a 0/1 indicator matrix of numbers, got dtype {array.dtype}"
            )
        if not np.all((array == 0) | (array == 1)):
            raise ValueError(
                "a 2-D y must be a 0/1 indicator matrix (n_samples, n_labels); "
                "it holds other values"
            )
        if array.min() == array.max():
            raise ValueError(
                f"y (indicator matrix) must contain both 0 and 1, got only {array.flat[0]}"
            )
        return np.ascontiguousarray(array, dtype=np.float32), True
    array = check_class_labels(array, "y")
    kind = type_of_target(array, input_name="y")
    if kind not in ("binary", "multiclass"):
        raise ValueError(
            f"Unknown label type {kind!r}: y must hold class labels (integers or "
            "strings; floats only with integral values)"
        )
    return check_class_labels(array, "y", min_classes=2), False


# ============================================================================ estimator


class SSDH(ClassifierMixin, TransformerMixin, BaseEstimator):
    """Supervised semantics-preserving deep hashing (SSDH, Yang, Lin and Chen, TPAMI 2018).

    The network is ``features(X) -> a_H = sigmoid(features W_H + b_H) -> yhat = a_H W_C +
    b_C`` with ``n_bits`` latent units. The code of an item is bit ``k`` = ``a_H[k] > 0.5``
    (strictly), packed LSB first (docs/algorithms.md, sec. 1). With ``beta = gamma =
    0`` this is DLBHC (Lin et al., CVPRW 2015): see :class:`DLBHC`.

    Training minimises, for every minibatch ``B`` of ``|B|`` rows (all terms are means over
    the rows of the minibatch, so their scale does not depend on ``batch_size``)::

        loss = alpha * E1 - beta * E2 + gamma * E3 + (weight_decay / 2) * sum ||W||^2
        E2   = (1/|B|) sum_n (1/K) ||a_n - 0.5||^2                (K = n_bits)
        E3   = (1/|B|) sum_n (mean_k a_nk - 0.5)^2
        E1   = -(1/|B|) sum_n ln softmax(yhat_n)[y_n]             (single-label y)
        E1   = (1/|B|) sum_n sum_m l(y_nm, yhat_nm)               (multi-label y)
        l    = 0 if (y = 1 and yhat >= 1) or (y = 0 and yhat <= 0), else 0.5 |y - yhat|^p

    ``sum ||W||^2`` runs over every weight matrix or kernel (parameters of two or more
    dimensions, not biases) of the whole network, so its gradient is ``weight_decay * W``
    (the Caffe convention of the paper's code). E2 is maximised (activations pushed to 0 or
    1), E3 minimised (each code about half ones). The paper writes sums over the training
    set; here every data term is a minibatch mean (as Caffe's loss layers compute it), so
    ``weight_decay`` weighs against the per-sample loss. The optimiser is Adam
    (``learning_rate``; the paper used SGD with momentum); minibatches are a fresh random
    permutation of the rows every epoch.

    Parameters
    ----------
    n_bits : int, default=48
        Units of the latent layer H = bits per code, ``>= 1``. When it is not a multiple of
        8 (e.g. the papers' 12 bits), :meth:`encode` pads each code with zero bits up to
        the next whole byte: the padding is 0 for every item, so Hamming distances are
        those over the ``n_bits`` real bits.
    hidden_layer_sizes : sequence of int, default=(512,)
        The feature network over 2-D descriptors: fully connected ReLU layers of these
        widths (input side first). ``()`` puts H directly on the input. Ignored when
        ``backbone`` is given.
    backbone : torch.nn.Module or None, default=None
        Any module mapping a float32 batch of ``X`` (shape ``(b, *X.shape[1:])``, so ``X``
        may be images) to features of shape ``(b, d)``. It is deep-copied at ``fit`` (the
        module passed is never changed) and fine-tuned with the rest of the network; its
        existing weights are kept as the starting point (pretrained backbones).
    alpha, beta, gamma : float, default=1.0
        Weights of E1, E2 and E3, each ``>= 0``.
    weight_decay : float, default=1e-4
        L2 penalty coefficient ``>= 0`` (see the formula above). Of 0, 1e-4, 5e-4 and
        1e-3, 1e-4 gave the best validation mAP at 48 bits on a split of the training part
        of scikit-learn's digits (5e-4 is the paper's Caffe setting, with SGD).
    p : float, default=2.0
        Exponent of the multi-label loss ``l``, ``>= 1``. Ignored for single-label ``y``.
    n_epochs : int, default=50
        Passes over the training set.
    batch_size : int, default=64
        Rows per minibatch (the last one of an epoch may be smaller).
    learning_rate : float, default=1e-3
        Adam step size, ``> 0``.
    device : {"cpu", "cuda", "auto"} or torch.device, default="cpu"
        Where the network is trained and run. ``"auto"`` picks CUDA when available.
        ``"cuda"`` without CUDA raises RuntimeError at ``fit``.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights of the new layers, the minibatch order and torch's RNG
        during training (for dropout in a backbone; the global RNG state is restored). On
        the CPU the same ``random_state`` gives the same model and codes.
    verbose : bool, default=False
        Print the mean loss of every epoch.

    Attributes
    ----------
    classes_ : ndarray, shape (n_classes,)
        Class labels (single-label), or ``arange(n_labels)`` (multi-label).
    multilabel_ : bool
        Whether ``y`` was a 0/1 indicator matrix.
    network_ : torch.nn.ModuleDict
        ``{"features", "hash", "classifier"}``, on ``device_``, in eval mode.
    device_ : str
        The device the network lives on.
    loss_curve_ : list of float
        Mean training loss (the full objective above) of every epoch.
    n_features_in_ : int
        Columns of ``X`` (``X.shape[1]``).
    input_shape_ : tuple of int
        ``X.shape[1:]`` (more than one entry only for a backbone over n-D input).

    References
    ----------
    .. [1] H.-F. Yang, K. Lin, C.-S. Chen, "Supervised Learning of Semantics-Preserving
       Hash via Deep Convolutional Neural Networks", IEEE TPAMI 40(2), 2018.
    .. [2] K. Lin, H.-F. Yang, J.-H. Hsiao, C.-S. Chen, "Deep Learning of Binary Hash
       Codes for Fast Image Retrieval", CVPR Workshops (DeepVision), 2015.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1, 2], 30)
    >>> X = (rng.normal(size=(90, 8)) + 3 * y[:, None]).astype(np.float32)
    >>> model = SSDH(n_bits=16, hidden_layer_sizes=(32,), n_epochs=10, batch_size=15,
    ...              learning_rate=0.01, random_state=0).fit(X, y)
    >>> model.encode(X).shape, model.transform(X).shape
    ((90, 2), (90, 16))
    >>> bool(model.score(X, y) > 0.9)  # training accuracy
    True
    """

    def __init__(
        self,
        n_bits=48,
        *,
        hidden_layer_sizes=(512,),
        backbone=None,
        alpha=1.0,
        beta=1.0,
        gamma=1.0,
        weight_decay=1e-4,
        p=2.0,
        n_epochs=50,
        batch_size=64,
        learning_rate=1e-3,
        device="cpu",
        random_state=None,
        verbose=False,
    ):
        self.n_bits = n_bits
        self.hidden_layer_sizes = hidden_layer_sizes
        self.backbone = backbone
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.weight_decay = weight_decay
        self.p = p
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _hidden_sizes(self) -> list[int]:
        return check_layer_sizes(self.hidden_layer_sizes, "hidden_layer_sizes")

    def _check_params(self) -> dict[str, Any]:
        """Every constructor parameter, checked (before torch is imported)."""
        n_bits = check_int(self.n_bits, "n_bits", minimum=1)
        hidden = self._hidden_sizes() if self.backbone is None else []
        if self.backbone is not None and not (
            hasattr(self.backbone, "parameters") and callable(self.backbone)
        ):
            raise TypeError(
                f"backbone must be a torch.nn.Module or None, got {type(self.backbone).__name__}"
            )
        check_device_name(self.device, torch_forms=True)
        return dict(
            n_bits=n_bits,
            hidden=hidden,
            alpha=check_real(self.alpha, "alpha", low=0.0),
            beta=check_real(self.beta, "beta", low=0.0),
            gamma=check_real(self.gamma, "gamma", low=0.0),
            weight_decay=check_real(self.weight_decay, "weight_decay", low=0.0),
            p=check_real(self.p, "p", low=1.0),
            n_epochs=check_int(self.n_epochs, "n_epochs", minimum=1),
            batch_size=check_int(self.batch_size, "batch_size", minimum=1),
            learning_rate=check_real(self.learning_rate, "learning_rate", low=0.0, low_open=True),
        )

    def _check_X(self, X, *, reset: bool) -> np.ndarray:
        nd = self.backbone is not None
        if reset:
            return check_array(X, dtype=np.float32, order="C", allow_nd=nd, estimator=self)
        return validate_data(self, X, dtype=np.float32, order="C", allow_nd=nd, reset=False)

    # ------------------------------------------------------------------ training
    def fit(self, X, y):
        """Train the network (feature layers, H and the classifier) on labelled data.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
            Descriptors (converted to float32). With a ``backbone``, any shape
            ``(n_samples, ...)`` it accepts.
        y : array_like, shape (n_samples,) or (n_samples, n_labels)
            Class labels (integers, strings, or floats with integral values; at least 2
            classes): softmax cross-entropy. Or a 0/1 indicator matrix with ``n_labels >= 2``
            columns: the multi-label loss. A column vector ``(n_samples, 1)`` is read as
            class labels, with a DataConversionWarning.

        Returns
        -------
        self : SSDH

        Raises
        ------
        TypeError, ValueError
            If a parameter, ``X`` or ``y`` is invalid (the message names it). A failed fit
            leaves a fitted model as it was.
        RuntimeError
            If ``device`` asks for CUDA and CUDA is not available, or the loss became
            non-finite (lower ``learning_rate``).
        ImportError
            If torch is not installed.
        """
        params = self._check_params()
        X = self._check_X(X, reset=True)
        target, multilabel = _check_labels(y, X.shape[0])
        if multilabel:
            classes = np.arange(target.shape[1])
            n_outputs = target.shape[1]
        else:
            classes, target = np.unique(target, return_inverse=True)
            target = target.astype(np.int64).ravel()
            n_outputs = classes.size

        torch = import_torch("SSDH")
        device = resolve_device(self.device)
        generator, rng = seeded_generator(self.random_state)
        seed = generator.initial_seed()
        fork_devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            backbone = None
            if self.backbone is not None:
                backbone = copy.deepcopy(self.backbone).to(device)
                feature_dim = self._backbone_width(torch, backbone, X, device)
            else:
                feature_dim = params["hidden"][-1] if params["hidden"] else X.shape[1]
            network = ssdh_net.build_network(
                torch,
                n_inputs=X.shape[1],
                hidden=params["hidden"],
                backbone=backbone,
                feature_dim=feature_dim,
                n_bits=params["n_bits"],
                n_outputs=n_outputs,
                generator=generator,
            ).to(device)
            curve = self._train(torch, network, X, target, multilabel, params, rng, device)
        network.eval()
        validate_data(self, X, skip_check_array=True, reset=True)
        self.classes_ = classes
        self.multilabel_ = multilabel
        self.network_ = network
        self.device_ = str(device)
        self.loss_curve_ = curve
        self.input_shape_ = tuple(int(s) for s in X.shape[1:])
        return self

    @staticmethod
    def _backbone_width(torch, backbone, X: np.ndarray, device) -> int:
        backbone.eval()
        with torch.no_grad():
            out = backbone(torch.from_numpy(np.array(X[:2])).to(device))
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != min(2, len(X)):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"backbone must map a batch of X to features of shape (batch, d), "
                f"got {shape} for a batch of {min(2, len(X))}"
            )
        return int(out.shape[1])

    def _train(self, torch, network, X, target, multilabel, params, rng, device) -> list[float]:
        optimizer = torch.optim.Adam(network.parameters(), lr=params["learning_rate"])
        X_all = torch.from_numpy(np.require(X, requirements="W"))  # torch wants writable
        y_all = torch.from_numpy(target)
        n, batch = X.shape[0], params["batch_size"]
        weights = dict(
            alpha=params["alpha"], beta=params["beta"], gamma=params["gamma"], p=params["p"]
        )
        decay = params["weight_decay"]
        curve: list[float] = []
        network.train()
        for epoch in range(params["n_epochs"]):
            order = torch.from_numpy(rng.permutation(n))
            total = 0.0
            for start in range(0, n, batch):
                rows = order[start : start + batch]
                xb, yb = X_all[rows].to(device), y_all[rows].to(device)
                _, a, outputs = ssdh_net.forward(network, xb)
                loss = ssdh_net.objective(outputs, yb, a, multilabel=multilabel, **weights)
                if decay:
                    penalty = ssdh_net.weight_penalty(network)
                    if penalty is not None:
                        loss = loss + 0.5 * decay * penalty
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(rows)
            mean = total / n
            if not np.isfinite(mean):
                raise RuntimeError(
                    f"training diverged at epoch {epoch + 1} (loss {mean}); lower learning_rate"
                )
            curve.append(mean)
            if self.verbose:
                print(f"SSDH epoch {epoch + 1}/{params['n_epochs']}: loss {mean:.6f}")
        return curve

    # ------------------------------------------------------------------ inference
    def _outputs(self, X, which: int) -> np.ndarray:
        """One of (features, a_H, outputs) for X, float32, computed in blocks of rows."""
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        torch = import_torch("SSDH")
        device = torch.device(self.device_)
        self.network_.eval()
        parts = []
        with torch.inference_mode():
            for start in range(0, X.shape[0], _INFER_ROWS):
                xb = torch.from_numpy(
                    np.require(X[start : start + _INFER_ROWS], requirements="W")
                ).to(device)
                parts.append(to_numpy_float32(ssdh_net.forward(self.network_, xb)[which]))
        if not parts:
            width = {
                1: self.network_["hash"].out_features,
                2: self.network_["classifier"].out_features,
            }.get(which, 0)
            return np.zeros((0, width), np.float32)
        return np.ascontiguousarray(np.concatenate(parts))

    def transform(self, X) -> np.ndarray:
        """Activations ``a_H`` of the latent layer, float32 in [0, 1], shape (n, n_bits)."""
        return self._outputs(X, 1)

    def encode(self, X) -> np.ndarray:
        """Packed codes, bit ``k`` = ``a_H[k] > 0.5``, LSB first (docs/algorithms.md, sec. 1).

        Returns
        -------
        codes : ndarray of uint8, shape (n_samples, ceil(n_bits / 8))
            Bits ``n_bits`` and up of the last byte (when ``n_bits % 8 != 0``) are 0.
        """
        return pack_bits_padded(self.transform(X) > 0.5)

    def extract_features(self, X) -> np.ndarray:
        """Output of the feature network (the input of H), float32, shape (n, d).

        These are the features DLBHC re-ranks with (see :func:`coarse_to_fine_search`).
        """
        return self._outputs(X, 0)

    def decision_function(self, X) -> np.ndarray:
        """Classifier outputs ``yhat``: logits (single-label; for 2 classes the 1-D
        difference ``logit_1 - logit_0``, the scikit-learn convention) or the linear
        multi-label outputs, shape (n, n_labels)."""
        out = self._outputs(X, 2)
        if not self.multilabel_ and out.shape[1] == 2:
            return out[:, 1] - out[:, 0]
        return out

    def _single_label(self) -> bool:
        return not getattr(self, "multilabel_", False)

    @available_if(_single_label)  # type: ignore[untyped-decorator]  # sklearn is untyped
    def predict_proba(self, X) -> np.ndarray:
        """Softmax class probabilities, shape (n, n_classes), columns ordered as
        ``classes_``. Single-label models only (a multi-label model has no such method:
        its outputs are not probabilities)."""
        return softmax_rows(self._outputs(X, 2))

    def predict(self, X) -> np.ndarray:
        """Class labels (single-label: argmax of the logits), or for multi-label the 0/1
        matrix ``yhat > 0.5`` (int64, shape (n, n_labels)): the midpoint of the targets 0
        and 1 that the multi-label loss fits."""
        out = self._outputs(X, 2)
        if self.multilabel_:
            return (out > 0.5).astype(np.int64)
        return self.classes_[np.argmax(out, axis=1)]

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted model to ``path`` (one ``.npz`` file, atomically, no pickle).

        The file holds the network's state dict as float32 arrays and JSON metadata (a
        format tag and version, the class, the constructor parameters, the classes and the
        loss curve). ``random_state`` is kept only when it is an int or None; a
        ``torch.device`` is stored as its string. With a ``backbone`` the file holds the
        fine-tuned backbone weights too, but not its architecture: pass a module of the
        same architecture to :meth:`load`.

        Raises
        ------
        TypeError
            If the classes cannot be written without pickle (labels that are not
            numbers, strings or booleans).
        """
        check_is_fitted(self)
        params = self.get_params()
        params.pop("backbone")
        state = params["random_state"]
        params["random_state"] = int(state) if isinstance(state, numbers.Integral) else None
        params["device"] = str(params["device"])
        if "hidden_layer_sizes" in params:
            params["hidden_layer_sizes"] = [int(s) for s in params["hidden_layer_sizes"]]
        for name in ("alpha", "beta", "gamma", "weight_decay", "p", "learning_rate"):
            if name in params:
                params[name] = float(params[name])
        arrays = state_dict_to_arrays(self.network_, prefix="net.")
        classes = np.asarray(self.classes_)
        if classes.dtype.kind not in "biufUS":
            raise TypeError(f"classes_ of dtype {classes.dtype} cannot be saved without pickle")
        arrays["classes"] = classes
        meta = {
            "class": type(self).__name__,
            "params": params,
            "multilabel": bool(self.multilabel_),
            "backbone": self.backbone is not None,
            "input_shape": [int(s) for s in self.input_shape_],
            "loss_curve": [float(v) for v in self.loss_curve_],
        }
        write_model(path, arrays, meta, format_tag=_FORMAT, version=_FORMAT_VERSION)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, backbone=None, device=None) -> SSDH:
        """Read a model written by :meth:`save`.

        Parameters
        ----------
        path : str or PathLike
        backbone : torch.nn.Module, optional
            Required when the model was fitted with a ``backbone``: a module of the same
            architecture (its weights are replaced by the saved ones; a deep copy is used,
            the module passed is not changed). Must be None otherwise.
        device : {"cpu", "cuda", "auto"}, optional
            Where to put the network (default: the saved ``device`` parameter).

        Returns
        -------
        SSDH or DLBHC
            The class that saved the file (``SSDH.load`` reads DLBHC files too).

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            If the file is corrupt or not an SSDH model, has an unknown version, invalid
            metadata or parameters, NaN or infinite weights, arrays that do not fit the
            architecture, or ``backbone`` is missing or not expected (the message names the
            path). Every array is checked against the network the metadata describes
            before anything is allocated.
        RuntimeError
            If the device asks for CUDA and CUDA is not available.
        """
        where = os.fspath(path)
        if device is not None:
            check_device_name(device, torch_forms=True)
        plan: dict[str, Any] = {}

        def expect(meta: dict[str, Any], headers: Mapping[str, ArrayHeader]) -> None:
            plan.update(cls._plan_from_file(meta, headers, where, backbone, device))

        arrays, _ = read_model(
            path,
            kind="SSDH",
            format_tag=_FORMAT,
            version=_FORMAT_VERSION,
            article="an",
            expect=expect,
        )
        model = plan["model"]
        classes = arrays.pop("classes")
        if plan["multilabel"] and not np.array_equal(classes, np.arange(len(classes))):
            raise ValueError(f"{where!r}: a multi-label model's classes must be 0, 1, ...")
        torch = import_torch("SSDH")
        target = resolve_device(model.device)
        # Every size below was checked against the file's arrays, which are already read.
        network = ssdh_net.build_network(
            torch,
            n_inputs=plan["input_shape"][0],
            hidden=plan["hidden"],
            backbone=model.backbone,
            feature_dim=plan["feature_dim"],
            n_bits=plan["n_bits"],
            n_outputs=len(classes),
            generator=None,
        )
        try:
            network.load_state_dict(arrays_to_state_dict(arrays, prefix="net."))
        except RuntimeError as error:
            raise ValueError(
                f"{where!r}: the saved weights do not fit the network: {error}"
            ) from error
        model.network_ = network.to(target).eval()
        model.device_ = str(target)
        model.classes_ = classes
        model.multilabel_ = plan["multilabel"]
        model.loss_curve_ = plan["loss_curve"]
        model.n_features_in_ = plan["input_shape"][0]
        model.input_shape_ = plan["input_shape"]
        return model

    @classmethod
    def _plan_from_file(
        cls, meta: dict[str, Any], headers: Mapping[str, ArrayHeader], where: str, backbone, device
    ) -> dict[str, Any]:
        """The model a file describes and the sizes of its network, every metadata value
        checked and every array header compared with the network those values describe,
        before any array is read; ValueError naming ``where`` otherwise."""
        reader = MetaReader(meta, where, "SSDH")
        kinds = {"SSDH": SSDH, "DLBHC": DLBHC}
        name = meta.get("class")
        klass = kinds.get(name) if isinstance(name, str) else None
        if klass is None or not issubclass(klass, cls):
            raise ValueError(f"{where!r} holds a {str(name)[:40]!r} model, not a {cls.__name__}")
        has_backbone = reader.boolean("backbone")
        if has_backbone and backbone is None:
            raise ValueError(
                f"{where!r} was fitted with a backbone: pass backbone=, a module of "
                "the same architecture"
            )
        if not has_backbone and backbone is not None:
            raise ValueError(f"{where!r} was fitted without a backbone, so backbone must be None")
        params = reader.mapping("params")
        reader.check_seed_and_verbose(params)
        if device is not None:
            params["device"] = device
        if isinstance(params.get("hidden_layer_sizes"), list):
            params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
        try:
            model = klass(**params, backbone=copy.deepcopy(backbone))
            checked = model._check_params()
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{where!r} is not a valid SSDH model file: its parameters are invalid: {error}"
            ) from None
        hidden, n_bits = checked["hidden"], checked["n_bits"]
        input_shape = tuple(
            reader.integers(
                "input_shape", minimum=1, maximum=2**31 - 1, max_len=1 if backbone is None else 32
            )
        )
        if not input_shape:
            raise reader.invalid("input_shape", "a non-empty list", [])
        multilabel = reader.boolean("multilabel")
        loss_curve = reader.reals("loss_curve")
        classes = headers.get("classes")
        if classes is None or "net.hash.weight" not in headers:
            absent = "classes" if classes is None else "net.hash.weight"
            raise ValueError(
                f"{where!r} is an incomplete SSDH model file: array {absent!r} is missing"
            )
        if len(classes.shape) != 1 or classes.shape[0] < (1 if multilabel else 2):
            raise ValueError(
                f"{where!r}: classes has shape {classes.shape}, expected one "
                f"entry per {'label' if multilabel else 'class (at least 2)'}"
            )
        elements = sum(math.prod(h.shape) for h in headers.values())
        if max([n_bits, *hidden]) > elements:  # every width is the length of some array
            raise ValueError(
                f"{where!r}: the saved weights do not fit the network: its "
                f"parameters (n_bits, hidden_layer_sizes) name layers wider than the "
                "file's arrays"
            )
        if 2 * len(hidden) + 4 > len(headers):
            raise ValueError(
                f"{where!r} is an incomplete SSDH model file: "
                f"hidden_layer_sizes has {len(hidden)} layers but the file "
                f"holds {len(headers)} arrays"
            )
        hash_shape = headers["net.hash.weight"].shape
        if backbone is not None:
            if len(hash_shape) != 2:
                raise ValueError(
                    f"{where!r}: the saved weights do not fit the network: "
                    f"net.hash.weight has shape {hash_shape}"
                )
            feature_dim = hash_shape[1]
        else:
            feature_dim = hidden[-1] if hidden else input_shape[0]
        torch = import_torch("SSDH")
        try:
            with torch.device("meta"):  # shapes only: nothing is allocated
                layers = ssdh_net.build_network(
                    torch,
                    n_inputs=input_shape[0],
                    hidden=hidden,
                    backbone=None,
                    feature_dim=feature_dim,
                    n_bits=n_bits,
                    n_outputs=classes.shape[0],
                    generator=None,
                )
        except (RuntimeError, TypeError, ValueError, OverflowError) as error:  # past int64
            raise ValueError(
                f"{where!r}: the saved weights do not fit the network its "
                f"parameters describe ({error})"
            ) from None
        state = dict(layers.state_dict())
        if backbone is not None:
            state = {key: value for key, value in state.items() if not key.startswith("features.")}
            state.update(
                {f"features.{key}": value for key, value in model.backbone.state_dict().items()}
            )
        expected: dict[str, Any] = {
            "classes": ((classes.shape[0],), "iu" if multilabel else "biufUS")
        }
        expected.update(state_expectation(state, "net.", headers))
        missing = sorted(set(expected) - set(headers))
        if missing and (backbone is None or not missing[0].startswith("net.features.")):
            raise ValueError(
                f"{where!r} is an incomplete SSDH model file: array {missing[0]!r} is missing"
            )
        problem = header_mismatch(headers, expected)
        if problem is not None:
            raise ValueError(f"{where!r}: the saved weights do not fit the network: {problem}")
        return dict(
            model=model,
            hidden=hidden,
            n_bits=n_bits,
            input_shape=input_shape,
            multilabel=multilabel,
            loss_curve=loss_curve,
            feature_dim=feature_dim,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.transformer_tags.preserves_dtype = ["float32"]  # activations are float32
        return tags


class DLBHC(SSDH):
    """DLBHC (Lin et al., CVPRW 2015): :class:`SSDH` with the classification loss only.

    The same network and training as :class:`SSDH` with ``alpha = 1``, ``beta = gamma = 0``
    (those three are fixed, not parameters). Retrieval is by Hamming ranking, or the
    paper's coarse-to-fine search with :func:`coarse_to_fine_search` on the codes and
    :meth:`~SSDH.extract_features`.

    Parameters
    ----------
    n_bits, hidden_layer_sizes, backbone, weight_decay, p, n_epochs, batch_size, \
learning_rate, device, random_state, verbose
        As :class:`SSDH`.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.repeat([0, 1], 20)
    >>> X = (np.random.default_rng(1).normal(size=(40, 6)) + 4 * y[:, None]).astype("f4")
    >>> DLBHC(n_bits=8, hidden_layer_sizes=(16,), n_epochs=5,
    ...       random_state=0).fit(X, y).encode(X).shape
    (40, 1)
    """

    alpha = 1.0
    beta = 0.0
    gamma = 0.0

    def __init__(
        self,
        n_bits=48,
        *,
        hidden_layer_sizes=(512,),
        backbone=None,
        weight_decay=1e-4,
        p=2.0,
        n_epochs=50,
        batch_size=64,
        learning_rate=1e-3,
        device="cpu",
        random_state=None,
        verbose=False,
    ):
        self.n_bits = n_bits
        self.hidden_layer_sizes = hidden_layer_sizes
        self.backbone = backbone
        self.weight_decay = weight_decay
        self.p = p
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.device = device
        self.random_state = random_state
        self.verbose = verbose


# ============================================================================ search


def coarse_to_fine_search(
    codes, features, q_codes, q_features, k: int, pool: int
) -> tuple[np.ndarray, np.ndarray]:
    """DLBHC's coarse-to-fine retrieval: a Hamming pool, re-ranked by Euclidean distance.

    For each query, the ``pool`` database items nearest in Hamming distance (ranked by
    (distance, index) as :func:`deephash_ext.search`) are re-ranked by the Euclidean
    distance between ``q_features`` and ``features`` (computed in float64), ties to the
    smaller database index; the first ``k`` are returned.

    Parameters
    ----------
    codes : ndarray of uint8, shape (n, code_bytes)
        Packed database codes.
    features : array_like of float, shape (n, d)
        Database features, one row per code (e.g. :meth:`SSDH.extract_features`).
    q_codes : ndarray of uint8, shape (nq, code_bytes)
    q_features : array_like of float, shape (nq, d)
    k : int
        Results per query, ``1 <= k <= pool``.
    pool : int
        Hamming candidates per query, ``k <= pool <= n``.

    Returns
    -------
    distances : ndarray of float32, shape (nq, k)
        Euclidean distances, ascending.
    indices : ndarray of int64, shape (nq, k)
        Database rows.

    Raises
    ------
    TypeError
        If a code array is not uint8, ``k`` or ``pool`` is not an integer, or features
        are not real numbers.
    ValueError
        If shapes disagree (the message names the array), features contain NaN, or not
        ``1 <= k <= pool <= n``.

    Examples
    --------
    >>> import numpy as np
    >>> codes = np.array([[0], [1], [3], [7]], dtype=np.uint8)
    >>> feats = np.array([[0.0], [5.0], [1.0], [2.0]])
    >>> coarse_to_fine_search(codes, feats, np.array([[0]], np.uint8), [[1.5]], k=2, pool=3)
    (array([[0.5, 1.5]], dtype=float32), array([[2, 0]]))
    """
    db_codes = np.asarray(codes)
    queries = np.asarray(q_codes)
    if db_codes.dtype == np.uint8 and db_codes.ndim != 2:
        raise ValueError(f"codes must be 2-D (n, code_bytes), got shape {db_codes.shape}")
    if queries.dtype == np.uint8 and queries.ndim != 2:
        raise ValueError(f"q_codes must be 2-D (nq, code_bytes), got shape {queries.shape}")
    feats, single = check_float_rows(features, "features")
    q_feats, q_single = check_float_rows(q_features, "q_features")
    if single:
        raise ValueError(f"features must be 2-D (n, d), got shape {np.shape(features)}")
    if q_single:
        raise ValueError(f"q_features must be 2-D (nq, d), got shape {np.shape(q_features)}")
    n = feats.shape[0]
    if db_codes.ndim == 2 and db_codes.shape[0] != n:
        raise ValueError(f"features must have one row per code ({db_codes.shape[0]}), got {n}")
    if queries.ndim == 2 and q_feats.shape[0] != queries.shape[0]:
        raise ValueError(
            f"q_features must have one row per query code ({queries.shape[0]}), "
            f"got {q_feats.shape[0]}"
        )
    if q_feats.shape[1] != feats.shape[1]:
        raise ValueError(
            f"q_features must have the width of features ({feats.shape[1]}), got {q_feats.shape[1]}"
        )
    pool = check_int(pool, "pool", minimum=1, maximum=n)
    k = check_int(k, "k", minimum=1, maximum=pool)
    _, candidates = search(db_codes, queries, pool)
    candidates = np.sort(candidates, axis=1)  # by index, so a stable sort breaks ties by it
    out_d = np.empty((q_feats.shape[0], k), np.float32)
    out_i = np.empty((q_feats.shape[0], k), np.int64)
    step = max(1, (1 << 22) // max(1, pool * feats.shape[1]))
    db64 = feats.astype(np.float64)
    for start in range(0, q_feats.shape[0], step):
        cand = candidates[start : start + step]
        diff = db64[cand] - q_feats[start : start + step, None, :].astype(np.float64)
        dist = np.sqrt(np.einsum("qpd,qpd->qp", diff, diff))
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        out_d[start : start + step] = np.take_along_axis(dist, order, axis=1)
        out_i[start : start + step] = np.take_along_axis(cand, order, axis=1)
    return out_d, out_i
