"""DRHN: a deep residual hashing network for 32 x 32 images (docs/algorithms.md, sec. 5).

A CIFAR-style residual network whose global-average-pooled features feed a sigmoid hash
layer and a softmax classifier; it is trained on class labels alone (point-wise, no pairs),
and the code of an image is its hash-layer activations thresholded at 0.5. torch is
imported only inside the methods that need it (``import deephash_ext.drhn`` never loads it).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from ._io import (
    ArrayHeader,
    MetaReader,
    header_mismatch,
    read_model,
    state_expectation,
    write_model,
)
from ._torch import import_torch
from ._validation import check_bool, check_class_labels, check_device_name, check_int, check_real
from .codes import pack_bits_padded

__all__ = ["DRHN"]

_FORMAT = "deephash_ext.DRHN"
_FORMAT_VERSION = 1
_SIZE = 32  # the paper's input: 32 x 32 pixels
_CHANNELS = (1, 3)
_SHORTCUTS = ("projection", "identity")
_STATE_PREFIX = "state/"


def _check_images(images: object, n_channels: int | None = None) -> np.ndarray:
    """``images`` as C-contiguous float32 (n, C, 32, 32), finite, C in {1, 3}."""
    array = np.asarray(images)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"images must hold real numbers, got dtype {array.dtype}")
    size = (_SIZE, _SIZE)
    if array.ndim == 3 and array.shape[1:] == size:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[2:] == size and array.shape[1] in _CHANNELS:
        pass
    elif array.ndim == 4 and array.shape[1:3] == size and array.shape[3] in _CHANNELS:
        array = array.transpose(0, 3, 1, 2)
    else:
        raise ValueError(
            "images must have shape (n, 32, 32), (n, C, 32, 32) or (n, 32, 32, C) with C in "
            f"{{1, 3}}, got shape {array.shape}"
        )
    if array.shape[0] == 0:
        raise ValueError(f"images must contain at least one image, got shape {array.shape}")
    with np.errstate(over="ignore"):
        array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError("images must be finite (found NaN or infinity)")
    if n_channels is not None and array.shape[1] != n_channels:
        raise ValueError(
            f"images must have {n_channels} channel(s) like the training images, "
            f"got {array.shape[1]}"
        )
    return array


def _check_labels(labels: object, n: int) -> np.ndarray:
    y = check_class_labels(labels, "labels", n_samples=n, min_classes=2)
    if y.dtype.kind not in "iu":
        raise TypeError(f"labels must hold integer class labels, got dtype {y.dtype}")
    return y


class DRHN(ClassifierMixin, BaseEstimator):
    """Deep Residual Hashing Network (Jimenez-Lepe and Mendez-Vazquez 2017).

    Network (Table 1 and eq. 4 of the paper; docs/algorithms.md, sec. 5.1), default ``widths``:

    * stem: ``BN(ReLU(conv3x3(x)))`` to 16 channels (Table 1's first row, in that order);
    * six residual groups of ``depth`` blocks each, at 16, 32, 64, 64, 64 and 128
      channels. A block is ``y = x + BN(conv(BN(ReLU(conv(x)))))`` with 3 x 3 convolutions
      (padding 1, no bias: eq. 1 has none) and no activation after the addition (eq. 4).
      Where the channels grow, the first convolution of the group has stride 2 (as the paper
      says), so a 32 x 32 input becomes 16 x 16, 8 x 8 and finally 4 x 4 x 128, exactly the
      output sizes of Table 1;
    * shortcut of a block that changes shape: the paper relies on He et al.'s "identity
      shortcut", which in their CIFAR networks is option A (every second pixel, zero-padded
      channels). This class defaults to a 1 x 1 stride-2 convolution plus batch
      normalisation (option B, ``shortcut="projection"``); ``shortcut="identity"`` gives
      option A. All other shortcuts are identities;
    * global average pooling of the 4 x 4 map to 128 features ``f``;
    * hash layer ``H = sigmoid(W f + b)`` with ``n_bits`` units (eq. 5);
    * softmax classifier on ``H``.

    Training: softmax cross-entropy on the class labels, minibatch SGD with momentum. The
    paper names no optimiser; it trains with the Lasagne recipe of He et al., and this class
    uses He et al.'s CIFAR-10 settings: learning rate 0.1, momentum 0.9, weight decay 1e-4,
    minibatches of 128, learning rate divided by 10 at 50 % and 75 % of training (their
    32k and 48k of 64k iterations). The L2 decay applies to convolution and linear weights
    only, not to biases or batch-norm parameters (as Lasagne regularises by default).
    Convolutions start He-normal; linear layers uniform in +-1/sqrt(fan_in). Images are
    standardised per channel with the training mean and standard deviation (stored).

    Codes (eq. 6; docs/algorithms.md, sec. 5.3): bit ``j`` = ``H_j > 0.5`` (strict), packed least
    significant bit first. ``n_bits`` need not be a multiple of 8 (the paper reports 12-bit
    codes): the code is padded to whole bytes with zero bits (bits ``n_bits`` to
    ``8 * ceil(n_bits / 8) - 1`` are always 0), which leaves every Hamming distance
    unchanged, so the codes work with :func:`deephash_ext.search` as they are.

    Parameters
    ----------
    n_bits : int, default=48
        Units of the hash layer (code length in bits), ``>= 1``.
    depth : int, default=1
        Residual blocks per group (the paper's ``n``; DRHN-n has ``6 n`` blocks).
    widths : sequence of int, default=(16, 32, 64, 64, 64, 128)
        Channels of the stem (``widths[0]``) and of each residual group; a group whose
        width exceeds the previous one starts with a stride-2 block. The feature dimension
        is ``widths[-1]``.
    shortcut : {"projection", "identity"}, default="projection"
        Shortcut of the blocks that change shape (see above). ``"identity"`` needs
        non-decreasing ``widths``.
    n_epochs : int, default=43
        Passes over the training images (the paper reports its accuracy after epoch 43).
    batch_size : int, default=128
        Minibatch size, ``>= 2`` (batch normalisation). A last minibatch of one image is
        skipped in that epoch (the order is reshuffled every epoch).
    learning_rate : float, default=0.1
        Initial SGD step size.
    weight_decay : float, default=1e-4
        L2 penalty on the weights, ``>= 0``.
    momentum : float, default=0.9
        SGD momentum, in ``[0, 1)``.
    mirror : bool, default=False
        Flip each training image left-right with probability 1/2 in every epoch (the
        paper's augmentation for CIFAR; leave it off for images that are not mirror
        symmetric in meaning, such as digits).
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where torch runs (``"cuda:N"`` also works); ``"auto"`` uses CUDA when available.
        Results are reproducible for a given ``random_state`` on the CPU (at a fixed torch
        thread count); CUDA convolutions may differ in the last bits between runs.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the minibatch order and the mirroring (torch's global
        RNG is not used or changed).
    verbose : bool, default=False
        tqdm progress bar over epochs, with the mean loss.

    Attributes
    ----------
    classes_ : ndarray of int, shape (n_classes,)
        Sorted class labels.
    n_channels_in_ : int
        Channels of the training images (1 or 3).
    channel_mean_, channel_std_ : ndarray of float32, shape (n_channels_in_,)
        Standardisation of the input (a constant channel gets std 1).
    network_state_ : dict[str, Any] of str to ndarray
        The network's ``state_dict`` as NumPy arrays (float32, batch-norm counters int64);
        :meth:`to_torch` rebuilds the module from it.
    loss_curve_ : list of float
        Mean training loss of every epoch.
    n_iter_ : int
        Epochs run.

    Notes
    -----
    Accepted image layouts (every method): ``(n, 32, 32)`` (one channel),
    ``(n, C, 32, 32)`` (channels first) and ``(n, 32, 32, C)`` (channels last), with ``C``
    1 or 3, of any real dtype (converted to float32). Only 32 x 32 images are accepted,
    the input size of the paper; the two 4-D layouts cannot be confused then. Later calls
    must have as many channels as the training images.

    Training and inference flush subnormal floats to zero on the CPU (restored afterwards):
    saturated sigmoids in the hash layer otherwise fill the backward pass with subnormal
    numbers, which x86 CPUs process about 10x slower.

    The scikit-learn estimator checks do not apply (the input is images, not a 2-D
    matrix); ``get_params`` / ``set_params`` / ``clone`` and pickling work as usual.

    References
    ----------
    .. [1] Jimenez-Lepe, Mendez-Vazquez, "Deep Residual Hashing Network for Image
       Retrieval", 2017.
    .. [2] He, Zhang, Ren, Sun, "Deep residual learning for image recognition", CVPR 2016.
    .. [3] Lin, Yang, Hsiao, Chen, "Deep learning of binary hash codes for fast image
       retrieval", CVPR workshops 2015 (the latent sigmoid hash layer, bit = H > 0.5).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat([0, 1], 20)
    >>> images = rng.random((40, 32, 32), dtype=np.float32) + labels[:, None, None]
    >>> model = DRHN(n_bits=12, widths=(4, 8), n_epochs=2, batch_size=20,
    ...              random_state=0).fit(images, labels)
    >>> model.transform(images).shape      # hash-layer activations H
    (40, 12)
    >>> model.encode(images).shape         # 12 bits in 2 bytes, the last 4 bits are 0
    (40, 2)
    """

    def __init__(
        self,
        n_bits=48,
        *,
        depth=1,
        widths=(16, 32, 64, 64, 64, 128),
        shortcut="projection",
        n_epochs=43,
        batch_size=128,
        learning_rate=0.1,
        weight_decay=1e-4,
        momentum=0.9,
        mirror=False,
        device="cpu",
        random_state=None,
        verbose=False,
    ):
        self.n_bits = n_bits
        self.depth = depth
        self.widths = widths
        self.shortcut = shortcut
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.mirror = mirror
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _widths(self) -> tuple[int, ...]:
        widths = self.widths
        if isinstance(widths, np.ndarray) and widths.ndim == 1:
            widths = widths.tolist()
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
            raise TypeError(f"widths must be a sequence of integers, got {type(widths).__name__}")
        if len(widths) == 0:
            raise ValueError("widths must name at least one group")
        return tuple(check_int(w, "widths", minimum=1) for w in widths)

    def _check_params(self) -> None:
        check_int(self.n_bits, "n_bits", minimum=1)
        check_int(self.depth, "depth", minimum=1)
        widths = self._widths()
        if self.shortcut not in _SHORTCUTS:
            raise ValueError(f"shortcut must be one of {_SHORTCUTS}, got {self.shortcut!r}")
        if self.shortcut == "identity" and list(widths) != sorted(widths):
            raise ValueError(
                f"shortcut='identity' needs non-decreasing widths (zero-padded "
                f"channels), got {widths}"
            )
        check_int(self.n_epochs, "n_epochs", minimum=1)
        check_int(self.batch_size, "batch_size", minimum=2)
        check_real(self.learning_rate, "learning_rate", low=0.0, low_open=True)
        check_real(self.weight_decay, "weight_decay", low=0.0)
        check_real(self.momentum, "momentum", low=0.0, high=1.0, high_open=True)
        check_bool(self.mirror, "mirror")
        check_device_name(self.device, torch_forms=True)

    def _device(self):
        from ._torch.common import resolve_device

        return resolve_device(self.device)

    def _hash_units(self) -> int | None:
        """Units of the hash layer (a subclass may return None: no hash layer)."""
        return int(self.n_bits)

    def _network(self, n_channels: int, n_classes: int, generator):
        from ._torch.drhn_net import build_network

        return build_network(
            n_channels,
            self._widths(),
            int(self.depth),
            self._hash_units(),
            n_classes,
            self.shortcut,
            generator,
        )

    # ------------------------------------------------------------------ training
    def fit(self, images, labels):
        """Train the network on labelled images.

        Parameters
        ----------
        images : array_like, shape (n, 32, 32), (n, C, 32, 32) or (n, 32, 32, C)
            ``C`` in {1, 3}; any real dtype (converted to float32). At least 2 images.
        labels : array_like of int, shape (n,)
            Class labels, at least two distinct values.

        Returns
        -------
        self : DRHN

        Raises
        ------
        ImportError
            If torch is not installed.
        TypeError, ValueError
            If a parameter, ``images`` or ``labels`` is invalid (the message names it). A
            failed fit leaves a fitted model as it was.
        RuntimeError
            If ``device`` asks for CUDA and none is available.
        """
        self._check_params()
        X = _check_images(images)
        if len(X) < 2:
            raise ValueError(f"images must contain at least 2 images to train, got {len(X)}")
        y = _check_labels(labels, len(X))
        import_torch("DRHN")
        from ._torch.common import seeded_generator, state_dict_to_arrays

        device = self._device()
        classes, targets = np.unique(y, return_inverse=True)
        mean = X.mean(axis=(0, 2, 3), dtype=np.float64)
        std = X.std(axis=(0, 2, 3), dtype=np.float64)
        std[std == 0] = 1.0
        mean, std = mean.astype(np.float32), std.astype(np.float32)
        X = (X - mean[:, None, None]) / std[:, None, None]  # a new array: never the input
        generator, rng = seeded_generator(self.random_state)
        net = self._network(X.shape[1], len(classes), generator)
        from ._torch.drhn_net import train_network

        history = train_network(
            net,
            X,
            targets.astype(np.int64),
            n_epochs=int(self.n_epochs),
            batch_size=int(self.batch_size),
            learning_rate=float(self.learning_rate),
            weight_decay=float(self.weight_decay),
            momentum=float(self.momentum),
            mirror=bool(self.mirror),
            rng=rng,
            device=device,
            verbose=bool(self.verbose),
        )
        self.classes_ = classes
        self.n_channels_in_ = int(X.shape[1])
        self.channel_mean_ = mean
        self.channel_std_ = std
        self.network_state_ = state_dict_to_arrays(net)
        self.loss_curve_ = [float(v) for v in history]
        self.n_iter_ = int(self.n_epochs)
        return self

    # ------------------------------------------------------------------ inference
    def to_torch(self):
        """A new ``torch.nn.Module`` holding the fitted network (CPU, eval mode).

        ``module(x)`` returns ``(H, logits)`` for standardised images
        ``(x - channel_mean_) / channel_std_`` of shape (n, C, 32, 32). Its residual blocks
        are ``module.groups[g][b]``, with ``conv1``, ``bn1``, ``conv2``, ``bn2`` and
        ``shortcut``.
        """
        check_is_fitted(self)
        import_torch("DRHN")
        from ._torch.common import arrays_to_state_dict

        net = self._network(self.n_channels_in_, len(self.classes_), None)
        net.load_state_dict(arrays_to_state_dict(self.network_state_), strict=True)
        return net.eval()

    def _forward(self, images) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self)
        X = _check_images(images, self.n_channels_in_)
        X = (X - self.channel_mean_[:, None, None]) / self.channel_std_[:, None, None]
        net = self.to_torch()
        from ._torch.drhn_net import predict_batches

        return predict_batches(net, X, self._device())

    def transform(self, images):
        """Hash-layer activations ``H`` (in (0, 1)).

        Parameters
        ----------
        images : array_like, shape (n, 32, 32), (n, C, 32, 32) or (n, 32, 32, C)

        Returns
        -------
        H : ndarray of float32, shape (n, n_bits)

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before :meth:`fit`.
        TypeError, ValueError
            If ``images`` is invalid or has another channel count than the training images.
        """
        return self._forward(images)[0]

    def encode(self, images):
        """Packed binary codes: bit ``j`` = ``H_j > 0.5``, least significant bit first.

        Parameters
        ----------
        images : array_like, shape (n, 32, 32), (n, C, 32, 32) or (n, 32, 32, C)

        Returns
        -------
        codes : ndarray of uint8, shape (n, ceil(n_bits / 8))
            When ``n_bits`` is not a multiple of 8 the bits past ``n_bits`` are 0.

        Raises
        ------
        sklearn.exceptions.NotFittedError, TypeError, ValueError
            As :meth:`transform`.
        """
        return pack_bits_padded(self.transform(images) > 0.5)

    def predict_proba(self, images):
        """Softmax class probabilities, columns in the order of ``classes_``.

        Returns
        -------
        proba : ndarray of float64, shape (n, n_classes)
            float64, as scikit-learn classifiers and :meth:`SSDH.predict_proba` return.
        """
        from ._torch.common import softmax_rows

        return softmax_rows(self._forward(images)[1])

    def predict(self, images):
        """Most probable class of each image.

        Returns
        -------
        labels : ndarray, shape (n,)
            Values of ``classes_``.
        """
        logits = self._forward(images)[1]
        return self.classes_[np.argmax(logits, axis=1)]

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted model to ``path`` (one ``.npz`` file, atomically, no pickle).

        The file holds the state-dict arrays, ``classes_`` and the standardisation, plus
        JSON metadata: a format tag and version, the constructor parameters
        (``random_state`` only when it is an int or None; ``device`` as a string) and the
        loss curve. Load it with :meth:`DRHN.load`.
        """
        check_is_fitted(self)
        params = self.get_params()
        state = params["random_state"]
        params["random_state"] = int(state) if isinstance(state, numbers.Integral) else None
        params["widths"] = [int(w) for w in self._widths()]
        params["device"] = str(params["device"])
        for name in ("n_bits", "depth", "n_epochs", "batch_size"):
            params[name] = int(params[name])
        for name in ("learning_rate", "weight_decay", "momentum"):
            params[name] = float(params[name])
        params["mirror"], params["verbose"] = bool(params["mirror"]), bool(params["verbose"])
        arrays = {_STATE_PREFIX + name: value for name, value in self.network_state_.items()}
        arrays.update(
            classes=self.classes_, channel_mean=self.channel_mean_, channel_std=self.channel_std_
        )
        meta = {
            "params": params,
            "n_channels_in": int(self.n_channels_in_),
            "loss_curve": list(self.loss_curve_),
            "n_iter": int(self.n_iter_),
        }
        write_model(path, arrays, meta, format_tag=_FORMAT, version=_FORMAT_VERSION)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DRHN:
        """Read a model written by :meth:`save` (imports torch to check the network).

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            If the file is corrupt, is not a DRHN model, has an unknown format version,
            invalid metadata or parameters, NaN or infinite values, or arrays that do not fit
            the network its parameters describe (the message names the path). Every array
            is checked against that network before anything is allocated.
        ImportError
            If torch is not installed.
        """
        import_torch("DRHN")
        where = os.fspath(path)
        plan: dict[str, Any] = {}

        def expect(meta: dict[str, Any], headers: Mapping[str, ArrayHeader]) -> None:
            plan.update(cls._plan_from_file(meta, headers, where))

        arrays, _ = read_model(
            path, kind="DRHN", format_tag=_FORMAT, version=_FORMAT_VERSION, expect=expect
        )
        model = plan["model"]
        classes = arrays.pop("classes")
        std = arrays.pop("channel_std").astype(np.float32)
        if np.any(np.diff(classes) <= 0) or np.any(std <= 0):
            raise ValueError(
                f"{where!r}: the classes must be sorted and distinct and the "
                "channel standard deviations positive"
            )
        model.n_channels_in_ = plan["n_channels"]
        model.classes_ = classes
        model.channel_mean_ = arrays.pop("channel_mean").astype(np.float32)
        model.channel_std_ = std
        model.network_state_ = {
            name[len(_STATE_PREFIX) :]: value
            for name, value in arrays.items()
            if name.startswith(_STATE_PREFIX)
        }
        model.loss_curve_ = plan["loss_curve"]
        model.n_iter_ = plan["n_iter"]
        try:
            model.to_torch()  # names and shapes must match the network of these parameters
        except (RuntimeError, ValueError, TypeError) as error:
            raise ValueError(
                f"{where!r}: the network arrays do not fit a DRHN with its parameters: {error}"
            ) from error
        return model

    @classmethod
    def _plan_from_file(
        cls, meta: dict[str, Any], headers: Mapping[str, ArrayHeader], where: str
    ) -> dict[str, Any]:
        """The model a file describes, every metadata value checked and every array header
        compared with the network those values describe, before any array is read;
        ValueError naming ``where`` otherwise."""
        reader = MetaReader(meta, where, "DRHN")
        params = reader.mapping("params")
        reader.check_seed_and_verbose(params)
        if isinstance(params.get("widths"), list):
            params["widths"] = tuple(params["widths"])
        try:
            model = cls(**params)
            model._check_params()
            model._device()
        except RuntimeError:
            pass  # a valid device that this machine cannot use: the model loads anyway
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{where!r} is not a valid DRHN model file: its parameters are invalid: {error}"
            ) from None
        n_channels = reader.integer("n_channels_in", minimum=1, maximum=3)
        if n_channels not in _CHANNELS:
            raise reader.invalid("n_channels_in", f"one of {_CHANNELS}", n_channels)
        loss_curve = reader.reals("loss_curve", default=[])
        n_iter = reader.integer("n_iter", minimum=0, maximum=2**31 - 1, default=len(loss_curve))
        for name in ("classes", "channel_mean", "channel_std"):
            if name not in headers:
                raise ValueError(
                    f"{where!r} is an incomplete DRHN model file: array {name!r} is missing"
                )
        classes = headers["classes"]
        fixed = {
            "classes": ((None,), "iu"),
            "channel_mean": ((n_channels,), "f"),
            "channel_std": ((n_channels,), "f"),
        }
        problem = header_mismatch({name: headers[name] for name in fixed}, fixed)
        if problem is None and classes.shape[0] < 2:
            problem = f"classes has {classes.shape[0]} entries, fewer than 2"
        if problem is not None:
            raise ValueError(
                f"{where!r}: the classes and the standardisation arrays do not "
                f"fit together ({problem})"
            )
        elements = sum(math.prod(h.shape) for h in headers.values())
        if max([int(model.n_bits), *model._widths()]) > elements:
            raise ValueError(
                f"{where!r}: the network arrays do not fit a DRHN with its "
                "parameters (n_bits or widths name layers wider than the file's "
                "arrays)"
            )
        if len(model._widths()) * int(model.depth) > len(headers):
            raise ValueError(
                f"{where!r}: the network arrays do not fit a DRHN with its "
                f"parameters (too few arrays for {len(model._widths())} groups of "
                f"{model.depth} blocks)"
            )
        torch = import_torch("DRHN")
        try:
            with torch.device("meta"):  # shapes only: nothing is allocated
                network = model._network(n_channels, classes.shape[0], None)
        except (RuntimeError, TypeError, ValueError, OverflowError) as error:  # past int64
            raise ValueError(
                f"{where!r}: the network arrays do not fit a DRHN with its parameters ({error})"
            ) from None
        expected = {**fixed, **state_expectation(network.state_dict(), _STATE_PREFIX, headers)}
        problem = header_mismatch(headers, expected)
        if problem is not None:
            raise ValueError(
                f"{where!r}: the network arrays do not fit a DRHN with its parameters ({problem})"
            )
        return dict(model=model, n_channels=n_channels, loss_curve=loss_curve, n_iter=n_iter)
