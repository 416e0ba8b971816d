"""Build and runtime information, SIMD level and thread controls."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import _core, _gpu
from ._validation import check_int

__all__ = [
    "available_simd_levels",
    "build_info",
    "calling_thread_num_threads",
    "get_num_threads",
    "set_num_threads",
    "set_simd_level",
    "simd_level",
]

_LEVELS = ("scalar", "avx2", "avx512")


def build_info() -> dict[str, Any]:
    """What this build contains and what it uses now.

    Returns
    -------
    dict
        ``version``; ``simd_compiled`` (levels built in), ``simd_available`` (levels this
        CPU can run), ``simd_detected`` (the best of them) and ``simd_active`` (the level
        in use: lowered by ``DEEPHASH_SIMD`` or :func:`set_simd_level`); ``num_threads``
        and ``available_cpus``; ``threading`` and ``openmp`` (False: the kernels use their
        own std::thread workers, joined before each call returns); ``cuda_compiled`` (the
        CUDA module was built), ``cuda_architectures`` (its GPU targets, or None),
        ``cuda_available`` and ``cuda_unavailable_reason`` (see
        :func:`deephash_ext.cuda_available`), ``cuda_device`` (name of device 0, when
        available), ``cublas`` (the library the GPU RBM loaded, or None); ``compiler``.
    """
    module, reason = _gpu._probe()
    cuda = {
        "cuda_compiled": module is not None,
        "cuda_architectures": module.architectures.split(",") if module is not None else None,
        "cuda_available": reason is None,
        "cuda_unavailable_reason": reason,
        "cuda_device": module.device_name(0) if reason is None and module is not None else None,
        "cublas": (module.cublas_library() or None) if module is not None else None,
    }
    return {
        "version": _core.__version__,
        "simd_compiled": list(_core.compiled_simd_levels()),
        "simd_available": list(_core.available_simd_levels()),
        "simd_detected": _core.detected_simd_level(),
        "simd_active": _core.simd_level(),
        "num_threads": _core.num_threads(),
        "available_cpus": _core.available_cpus(),
        "threading": "std::thread fork-join per call (one team per RBM training or encoding call)",
        "openmp": False,
        **cuda,
        "compiler": _core.compiler(),
    }


def simd_level() -> str:
    """The SIMD level the kernels use now: ``"scalar"``, ``"avx2"`` or ``"avx512"``.

    Raises
    ------
    ValueError
        If the environment variable ``DEEPHASH_SIMD`` holds something else.
    """
    return str(_core.simd_level())


def available_simd_levels() -> list[str]:
    """Levels this build can run on this CPU, lowest first."""
    return list(_core.available_simd_levels())


def set_simd_level(level: str) -> None:
    """Choose the SIMD level for later calls (process-wide; for tests and benchmarks).

    Parameters
    ----------
    level : {"scalar", "avx2", "avx512"}

    Raises
    ------
    TypeError
        If ``level`` is not a string.
    ValueError
        If ``level`` is unknown or this CPU cannot run it.
    """
    if not isinstance(level, str):
        raise TypeError(f"level must be a string, got {type(level).__name__}")
    if level not in _LEVELS:
        raise ValueError(f"level must be one of {_LEVELS}, got {level!r}")
    _core.set_simd_level(level)


def get_num_threads() -> int:
    """Threads the kernels use.

    The default is ``DEEPHASH_NUM_THREADS`` when set (an invalid value raises ValueError),
    else the first level of ``OMP_NUM_THREADS`` when it is a valid count (other values are
    ignored: the variable belongs to OpenMP), else the number of CPUs this process may use.
    """
    return int(_core.num_threads())


def set_num_threads(n: int) -> None:
    """Set the number of threads the kernels use (process-wide).

    Parameters
    ----------
    n : int
        ``1 <= n <= deephash_ext._core.max_threads`` (4096).

    Raises
    ------
    TypeError
        If ``n`` is not an integer.
    ValueError
        If ``n`` is outside that range (checked by the core, which owns the limit).
    """
    _core.set_num_threads(n)


@contextmanager
def calling_thread_num_threads(n: int) -> Iterator[None]:
    """Within the block, kernels called from this thread use ``n`` threads.

    Other threads keep the process-wide count (:func:`set_num_threads`), so engines that run
    several tasks side by side in one process (a Dask worker's threads) can give each task
    its share of the cores without racing on a global. Blocks nest; the previous count comes
    back on exit, also after an exception.

    Parameters
    ----------
    n : int
        ``1 <= n <= 4096``.

    Raises
    ------
    TypeError
        If ``n`` is not an integer.
    ValueError
        If ``n`` is outside that range.

    Examples
    --------
    >>> import deephash_ext
    >>> with deephash_ext.calling_thread_num_threads(1):
    ...     deephash_ext.get_num_threads()
    1
    """
    n = check_int(n, "n", minimum=1, maximum=_core.max_threads)
    previous = _core.set_calling_thread_num_threads(n)
    try:
        yield
    finally:
        _core.set_calling_thread_num_threads(previous)
