"""The BLAS library behind the RBM kernels: scipy-openblas32 from the package registry.

Loaded on first use (searching needs no BLAS). Its own thread pool is switched off; the
kernels split every product across deephash_ext's threads (see README, "Threads").
"""

from __future__ import annotations

import os

from . import _core

__all__ = ["ensure_blas"]


def ensure_blas() -> str:
    """Load scipy-openblas32's library into the core (once) and return its path.

    Raises
    ------
    ImportError
        If scipy-openblas32 is not installed.
    """
    loaded = _core.blas_library()
    if loaded:
        return str(loaded)
    try:
        import scipy_openblas32
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ImportError(
            "deephash_ext's RBM kernels need scipy-openblas32: pip install scipy-openblas32"
        ) from exc
    path = os.path.join(scipy_openblas32.get_lib_dir(),
                        f"lib{scipy_openblas32.get_library()}.so")
    _core.load_blas(path)
    return path
