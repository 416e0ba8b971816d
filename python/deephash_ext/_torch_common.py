"""Small torch helpers shared by the torch-based estimators (SSDH, DRHN).

Nothing here imports torch at module import time: each helper imports it lazily through
:func:`deephash_ext._finetune.import_torch`, so ``import deephash_ext.ssdh`` stays light.

API (kept stable):

- :func:`resolve_device` -- ``"cpu" | "cuda" | "auto"`` (or a ``torch.device``) to a
  ``torch.device``.
- :func:`seed_from_random_state` -- a 63-bit integer seed drawn from a scikit-learn
  ``random_state`` (None / int / ``RandomState``).
- :func:`seeded_generator` -- a CPU ``torch.Generator`` seeded from that integer, plus a
  NumPy ``RandomState`` for shuffling, both deterministic for a given ``random_state``.
- :func:`to_numpy_float32` -- a tensor or array-like to a C-contiguous float32 ndarray.
- :func:`state_dict_to_arrays` / :func:`arrays_to_state_dict` -- a module's
  ``state_dict`` to and from a flat ``{prefix + name: ndarray}`` mapping for
  :func:`deephash_ext._io.atomic_write_npz`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from ._finetune import import_torch

__all__ = [
    "arrays_to_state_dict",
    "resolve_device",
    "seed_from_random_state",
    "seeded_generator",
    "state_dict_to_arrays",
    "to_numpy_float32",
]

_DEVICES = ("cpu", "cuda", "auto")


def resolve_device(device: Any) -> Any:
    """``device`` as a ``torch.device``.

    Parameters
    ----------
    device : {"cpu", "cuda", "auto"} or torch.device
        ``"auto"`` picks CUDA when ``torch.cuda.is_available()``, else the CPU.
        ``"cuda:N"`` strings and ``torch.device`` objects of type cpu/cuda are accepted.

    Raises
    ------
    ValueError
        If ``device`` is none of the above.
    RuntimeError
        If CUDA is asked for but ``torch.cuda.is_available()`` is False.
    """
    torch = import_torch()
    if isinstance(device, torch.device):
        kind, text = device.type, str(device)
    elif isinstance(device, str):
        text = device.strip().lower()
        kind = text.split(":", 1)[0]
        if kind not in _DEVICES or (kind != "cuda" and text != kind):
            raise ValueError(f"device must be one of {_DEVICES} (or 'cuda:N'), got {device!r}")
    else:
        raise ValueError(f"device must be one of {_DEVICES} (or 'cuda:N'), got {device!r}")
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device={device!r} but torch.cuda.is_available() is False (no CUDA device or "
                "a CPU-only torch build); use device='cpu' or device='auto'")
        try:
            return torch.device(text)
        except RuntimeError as error:
            raise ValueError(f"device={device!r} is not a valid CUDA device: {error}") from None
    if kind == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device must be one of {_DEVICES} (or 'cuda:N'), got {device!r}")


def seed_from_random_state(random_state: Any) -> int:
    """A non-negative 63-bit integer seed drawn from a scikit-learn ``random_state``.

    An int gives the same seed every time; a ``RandomState`` is advanced by one draw;
    None draws from NumPy's global state.
    """
    rng = check_random_state(random_state)
    return int(rng.randint(0, 2**31 - 1, size=2, dtype=np.int64) @ np.array([2**31, 1]))


def seeded_generator(random_state: Any) -> tuple[Any, np.random.RandomState]:
    """A seeded CPU ``torch.Generator`` and a NumPy ``RandomState``, both from ``random_state``.

    Use the generator for parameter initialisation (``tensor.uniform_(generator=...)``
    or ``torch.nn.init.*_(..., generator=...)``) and the ``RandomState`` for minibatch
    shuffling (``rng.permutation(n)``). Neither touches torch's global RNG, so results
    depend only on ``random_state``.
    """
    seed = seed_from_random_state(random_state)
    torch = import_torch()
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
    state = module_or_state.state_dict() if hasattr(module_or_state, "state_dict") \
        else module_or_state
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
    torch = import_torch()
    return {name[len(prefix):]: torch.from_numpy(np.array(value))
            for name, value in arrays.items() if name.startswith(prefix)}
