"""Argument checks shared by the public API.

Every check raises a typed exception whose message names the parameter, the expected
value and the value received. Codes are never cast (a non-uint8 array is a TypeError,
because cast and view would mean different things); rows that are not contiguous are
copied once with :func:`numpy.ascontiguousarray`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

__all__ = [
    "DEVICES",
    "check_bool",
    "check_class_labels",
    "check_codes",
    "check_device_name",
    "check_finite_model",
    "check_float_rows",
    "check_int",
    "check_layer_sizes",
    "check_queries",
    "check_real",
    "check_real_array",
]

DEVICES = ("cpu", "cuda", "auto")


def check_int(
    value: object, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Return ``value`` as a Python int, or raise TypeError / ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    out = int(value)
    if (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
        if maximum is None:
            raise ValueError(f"{name} must be >= {minimum}, got {out}")
        if minimum is None:
            raise ValueError(f"{name} must be <= {maximum}, got {out}")
        raise ValueError(f"{name} must be in [{minimum}, {maximum}], got {out}")
    return out


def check_real(
    value: object,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a finite Python float in the interval given by ``low`` / ``high``
    (closed ends unless ``low_open`` / ``high_open``), or raise TypeError / ValueError
    naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    out = float(value)
    too_low = low is not None and (out <= low if low_open else out < low)
    too_high = high is not None and (out >= high if high_open else out > high)
    if not np.isfinite(out) or too_low or too_high:
        interval = (
            ("(" if low_open or low is None else "[")
            + ("-inf" if low is None else f"{low:g}")
            + ", "
            + ("inf" if high is None else f"{high:g}")
            + (")" if high_open or high is None else "]")
        )
        raise ValueError(f"{name} must be finite and in {interval}, got {value!r}")
    return out


def check_bool(value: object, name: str) -> bool:
    """Return ``value`` as a bool (``bool`` or ``numpy.bool_`` only), else TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of the strings ``choices``; TypeError for a non-string,
    ValueError naming ``name`` and the choices otherwise."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_real_array(values: object, name: str) -> np.ndarray:
    """``values`` as an array of real numbers (integers or floats) without NaN."""
    array = np.asarray(values)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    return array


def check_class_labels(
    labels: object, name: str, *, n_samples: int | None = None, min_classes: int = 1
) -> np.ndarray:
    """1-D class labels (any comparable dtype but complex; NaN is no label), with
    ``n_samples`` entries when given and at least ``min_classes`` distinct values."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per item), got shape {array.shape}")
    if array.dtype.kind == "c" or (
        array.dtype == object
        and array.size
        and not all(isinstance(v, (str, numbers.Integral)) for v in array)
    ):
        raise TypeError(
            f"{name} must hold class labels (integers or strings), got dtype {array.dtype}"
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinity (they cannot be class labels)")
    if n_samples is not None and array.shape[0] != n_samples:
        raise ValueError(
            f"{name} must have one entry per sample ({n_samples}), got {array.shape[0]}"
        )
    if min_classes > 1:
        classes = np.unique(array)
        if classes.size < min_classes:
            raise ValueError(
                f"{name} must contain at least {min_classes} classes, got "
                f"{classes.size} class{'es' if classes.size != 1 else ''} "
                f"{classes.tolist()}"
            )
    return array


def check_device_name(device: object, name: str = "device", *, torch_forms: bool = False) -> str:
    """Check a device name before any heavy import; return its kind: "cpu", "cuda" or "auto".

    Every estimator takes ``device`` in ``{"cpu", "cuda", "auto"}`` with one meaning:
    ``"cpu"`` runs on the CPU; ``"cuda"`` runs on the GPU and raises RuntimeError (with the
    reason) when the estimator's GPU engine cannot run here; ``"auto"`` is ``"cuda"`` when
    that engine can run, else ``"cpu"``. The engine is deephash_ext's CUDA module for the
    RBM kernels (RBM, DeepHash, search; see :func:`deephash_ext.cuda_available`) and torch
    for the torch heads (SSDH, DLBHC, DRHN; ``torch.cuda.is_available()``). With
    ``torch_forms`` (the torch heads), ``"cuda:N"`` and ``torch.device`` objects are also
    accepted.
    """
    if isinstance(device, str):
        kind, colon, index = device.partition(":")  # exact names: "CUDA" is no device
        if kind in DEVICES and (not colon or (torch_forms and kind == "cuda" and index.isdigit())):
            return kind
    elif torch_forms and (
        type(device).__module__.startswith("torch") and type(device).__name__ == "device"
    ):
        kind = str(getattr(device, "type", ""))
        if kind in ("cpu", "cuda"):
            return kind
    else:
        raise TypeError(f"{name} must be a string, got {type(device).__name__}")
    extra = " (or 'cuda:N' / a torch.device)" if torch_forms else ""
    raise ValueError(f"{name} must be one of {DEVICES}{extra}, got {device!r}")


def check_finite_model(arrays: Sequence[np.ndarray], what: str, remedy: str) -> None:
    """RuntimeError when training left a non-finite value (weight or loss) in ``arrays``:
    it diverged. The caller has not stored anything yet, or restores the model."""
    for array in arrays:
        if not np.isfinite(array).all():
            raise RuntimeError(f"{what} diverged (non-finite weights or loss); {remedy}")


def check_layer_sizes(
    value: object, name: str, *, minimum: int = 1, multiple: int = 1, allow_empty: bool = True
) -> list[int]:
    """A sequence (or 1-D array) of layer widths as a list of ints, each ``>= minimum`` and a
    multiple of ``multiple``; TypeError / ValueError naming ``name`` otherwise."""
    sizes = value.tolist() if isinstance(value, np.ndarray) and value.ndim == 1 else value
    if isinstance(sizes, (numbers.Integral, str, bytes)) or not isinstance(sizes, Sequence):
        raise TypeError(f"{name} must be a sequence of integers, got {type(sizes).__name__}")
    if not allow_empty and len(sizes) == 0:
        raise ValueError(f"{name} must name at least one layer")
    for size in sizes:
        if isinstance(size, (bool, np.bool_)) or not isinstance(size, numbers.Integral):
            raise TypeError(f"{name} must hold integers, got {size!r}")
        if size < minimum or size % multiple:
            rule = "positive" if multiple == 1 else f"positive multiples of {multiple}"
            raise ValueError(f"{name} must be {rule}, got {tuple(sizes)}")
    return [int(size) for size in sizes]


def _as_code_array(codes: object, name: str) -> np.ndarray:
    array = np.asarray(codes)
    if array.dtype != np.uint8:
        raise TypeError(
            f"{name} must have dtype uint8 (packed codes), got {array.dtype}; codes are never "
            "cast: build them with deephash_ext.pack_bits or deephash_ext.binarize"
        )
    return array


def _row_contiguous(array: np.ndarray) -> np.ndarray:
    """The array itself when its rows are contiguous and its row stride is valid, else a copy."""
    n, width = array.shape
    rows_ok = width <= 1 or array.strides[1] == 1
    stride_ok = n <= 1 or array.strides[0] >= width
    return array if rows_ok and stride_ok else np.ascontiguousarray(array)


def check_codes(codes: object, name: str = "codes") -> np.ndarray:
    """A 2-D uint8 code matrix (n, code_bytes) with contiguous rows."""
    array = _as_code_array(codes, name)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, code_bytes), got shape {array.shape}")
    if array.shape[1] < 1:
        raise ValueError(f"{name} must have at least one byte per code, got shape {array.shape}")
    return _row_contiguous(array)


def check_queries(queries: object) -> tuple[np.ndarray, bool]:
    """Queries as a 2-D code matrix, and whether a single 1-D query was given. Their width
    is checked against the codes by the search kernels."""
    if (
        type(queries) is np.ndarray
        and queries.dtype == np.uint8
        and queries.ndim == 1
        and queries.flags.c_contiguous
    ):  # the common single query, on the path of every single-query search: a view
        return queries[None], True
    array = _as_code_array(queries, "queries")
    single = array.ndim == 1
    if single:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise ValueError(
            f"queries must be 1-D (code_bytes,) or 2-D (nq, code_bytes), got shape {array.shape}"
        )
    return _row_contiguous(array), single


def check_float_rows(X: object, name: str = "X") -> tuple[np.ndarray, bool]:
    """Descriptors as C-contiguous float32 rows (converted if needed), and whether X was 1-D."""
    array = np.asarray(X)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    single = array.ndim == 1
    if single:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {array.shape}")
    with np.errstate(over="ignore"):  # values beyond float32 become +-inf, as documented
        array = np.ascontiguousarray(array, dtype=np.float32)
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    return array, single
