"""The optional CUDA module: detection, device choice and cuBLAS loading.

``_cuda`` is imported lazily and silently: a build without nvcc, a machine without a
driver or without a GPU all give ``cuda_available() == False`` and a reason string, never
a warning. Device names and their meaning are checked in one place,
:func:`deephash_ext._validation.check_device_name`; here ``"auto"`` means this module's
kernels when :func:`cuda_available`, else the CPU.
"""

from __future__ import annotations

import functools
import glob
import importlib
import os
import sys
import threading
from types import ModuleType

from . import _core
from ._blas import ensure_blas
from ._validation import check_device_name

__all__ = [
    "cuda_available",
    "cuda_module",
    "cuda_unavailable_reason",
    "encode_layers",
    "ensure_cublas",
    "resolve_device",
]

_lock = threading.Lock()  # one cuBLAS load at a time


@functools.cache
def _probe() -> tuple[ModuleType | None, str | None]:
    """(the _cuda module or None, the reason CUDA cannot run or None), computed once."""
    try:
        module = importlib.import_module("._cuda", __package__)
    except ImportError as exc:
        return None, f"deephash_ext was built without CUDA ({exc})"
    return module, module.unavailable_reason() or None


def cuda_available() -> bool:
    """True when the CUDA module was built and a GPU can run it."""
    return _probe()[1] is None


def cuda_unavailable_reason() -> str | None:
    """Why CUDA cannot be used (build without CUDA, no driver, no GPU), or None when it can."""
    return _probe()[1]


def cuda_module() -> ModuleType:
    """The ``_cuda`` module, usable now.

    Raises
    ------
    RuntimeError
        If CUDA cannot be used; the message gives the reason.
    """
    module, reason = _probe()
    if module is None or reason is not None:
        raise RuntimeError(f"CUDA is not available: {reason}")
    return module


def resolve_device(device: object, name: str = "device") -> str:
    """``"cpu" | "cuda" | "auto"`` to ``"cpu"`` or ``"cuda"``.

    Raises
    ------
    TypeError
        If ``device`` is not a string.
    ValueError
        If it is not one of the three names.
    RuntimeError
        If ``"cuda"`` is asked for and CUDA cannot be used (the reason is in the message).
    """
    kind = check_device_name(device, name)
    if kind == "auto":
        return "cuda" if cuda_available() else "cpu"
    if kind == "cuda":
        cuda_module()
    return kind


def _cublas_candidates() -> list[str]:
    """Where libcublas may be: $DEEPHASH_CUBLAS, the nvidia wheels a CUDA torch brings
    (found on sys.path without importing them), then the loader's own search by soname."""
    found: list[str] = []
    if os.environ.get("DEEPHASH_CUBLAS"):
        found.append(os.environ["DEEPHASH_CUBLAS"])
    for entry in sys.path:
        for pattern in ("nvidia/*/lib/libcublas.so*", "nvidia/cublas/lib/libcublas.so*"):
            found.extend(sorted(glob.glob(os.path.join(entry or ".", pattern)), reverse=True))
    found.extend(["libcublas.so.13", "libcublas.so.12", "libcublas.so"])
    return list(dict.fromkeys(p for p in found if "Lt" not in os.path.basename(p)))


def ensure_cublas() -> str:
    """Load cuBLAS into the CUDA module (once; the GPU RBM needs it) and return its path.

    Raises
    ------
    RuntimeError
        If CUDA cannot be used, or no libcublas could be opened (each place tried is named;
        set ``DEEPHASH_CUBLAS`` to the library's path, or ``pip install nvidia-cublas``).
    """
    module = cuda_module()
    with _lock:
        loaded = module.cublas_library()
        if loaded:
            return str(loaded)
        errors = []
        for path in _cublas_candidates():
            try:
                module.load_cublas(path)
                return path
            except RuntimeError as exc:
                errors.append(str(exc))
        raise RuntimeError(
            "cannot load cuBLAS for the GPU RBM; tried:\n  "
            + "\n  ".join(errors)
            + "\nset DEEPHASH_CUBLAS to libcublas.so's path"
        )


def encode_layers(device: str, X, input_thresholds, weights, offsets):
    """The thresholded stack encoder (``_core.encode_layers``) on ``device`` ("cpu" or
    "cuda", as returned by :func:`resolve_device`)."""
    if device == "cuda":
        ensure_cublas()
        return cuda_module().encode_layers(X, input_thresholds, weights, offsets, 0)
    ensure_blas()
    return _core.encode_layers(X, input_thresholds, weights, offsets)
