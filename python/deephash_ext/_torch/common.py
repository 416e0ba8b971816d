"""Small torch helpers shared by the torch heads (SSDH, DLBHC, DRHN).

torch is imported lazily inside each helper (:func:`deephash_ext._torch.import_torch`),
so importing the estimators' modules stays light.

- :func:`resolve_device`: a checked device name (see
  :func:`deephash_ext._validation.check_device_name`) to a ``torch.device``.
- :func:`seeded_generator`: a CPU ``torch.Generator`` and a NumPy ``RandomState``, both
  from one stream key of ``random_state`` (:func:`deephash_ext._random.stream_key`).
- :func:`to_numpy_float32`: a tensor or array-like to a C-contiguous float32 ndarray.
- :func:`state_dict_to_arrays` / :func:`arrays_to_state_dict`: a module's ``state_dict``
  to and from a flat ``{prefix + name: ndarray}`` mapping for the model files.
- :func:`softmax_rows`: class probabilities from logits, in float64.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._random import stream_key
from .._validation import check_device_name
from . import import_torch

__all__ = [
    "arrays_to_state_dict",
    "resolve_device",
    "seeded_generator",
    "softmax_rows",
    "state_dict_to_arrays",
    "to_numpy_float32",
]


def resolve_device(device: Any) -> Any:
    """``device`` as a ``torch.device``: ``"auto"`` is CUDA when
    ``torch.cuda.is_available()``, else the CPU (the rule of
    :func:`deephash_ext._validation.check_device_name`).

    Raises
    ------
    TypeError, ValueError
        If ``device`` is not a device name.
    RuntimeError
        If CUDA is asked for but ``torch.cuda.is_available()`` is False.
    """
    kind = check_device_name(device, torch_forms=True)
    torch = import_torch("a GPU device")
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"device={device!r} but torch.cuda.is_available() is False (no CUDA device or "
            "a CPU-only torch build); use device='cpu' or device='auto'"
        )
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device={device!r} is not a valid CUDA device: {error}") from None


def seeded_generator(random_state: Any) -> tuple[Any, np.random.RandomState]:
    """A seeded CPU ``torch.Generator`` and a NumPy ``RandomState``, both from ``random_state``.

    Use the generator for parameter initialisation (``tensor.uniform_(generator=...)``
    or ``torch.nn.init.*_(..., generator=...)``) and the ``RandomState`` for minibatch
    shuffling (``rng.permutation(n)``). Neither touches torch's global RNG, so results
    depend only on ``random_state``.
    """
    seed = stream_key(random_state)
    torch = import_torch("a seeded torch.Generator")
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    return generator, np.random.RandomState(seed % (2**32))


def to_numpy_float32(value: Any) -> np.ndarray:
    """A tensor (any device, with or without grad) or array-like as C-contiguous float32."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value, dtype=np.float32)


def state_dict_to_arrays(module_or_state: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """``{prefix + name: ndarray}`` for every tensor of a module's ``state_dict``.

    Floating tensors become float32 arrays; other tensors keep their dtype. The result
    holds plain arrays only, suitable for :func:`deephash_ext._io.atomic_write_npz`.
    """
    state = (
        module_or_state.state_dict() if hasattr(module_or_state, "state_dict") else module_or_state
    )
    arrays: dict[str, np.ndarray] = {}
    for name, tensor in state.items():
        array = tensor.detach().cpu().numpy()
        if np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float32)
        arrays[prefix + name] = np.ascontiguousarray(array)
    return arrays


def arrays_to_state_dict(arrays: Mapping[str, np.ndarray], prefix: str = "") -> dict[str, Any]:
    """The inverse of :func:`state_dict_to_arrays`: ``{name: tensor}`` for keys with ``prefix``.

    Pass the result to ``module.load_state_dict`` (which checks names and shapes).
    """
    torch = import_torch("a torch state_dict")
    return {
        name[len(prefix) :]: torch.from_numpy(np.array(value))
        for name, value in arrays.items()
        if name.startswith(prefix)
    }


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``logits`` (n, n_classes), computed and returned in float64
    (the dtype of scikit-learn's ``predict_proba``)."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    proba = np.exp(shifted)
    return proba / proba.sum(axis=1, keepdims=True)
