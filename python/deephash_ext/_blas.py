"""The BLAS library behind the RBM kernels: scipy-openblas32 from the package registry.

Loaded on first use (searching needs no BLAS). deephash_ext runs every product
single-threaded inside its own workers, so the library's thread pool is never wanted: the
library is located without importing the ``scipy_openblas32`` package (whose import would
load it and start that pool) and opened with ``OPENBLAS_NUM_THREADS=1`` in force.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import threading

from . import _core

__all__ = ["ensure_blas"]

_lock = threading.Lock()


def _library_path() -> str:
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "deephash_ext's RBM kernels need scipy-openblas32: pip install scipy-openblas32"
        )
    lib_dir = os.path.join(next(iter(spec.submodule_search_locations)), "lib")
    found = sorted(glob.glob(os.path.join(lib_dir, "libscipy_openblas*.so*")))
    if not found:
        raise ImportError(f"no libscipy_openblas shared library in {lib_dir}")
    return found[0]


def ensure_blas() -> str:
    """Load scipy-openblas32's library into the core (once) and return its path.

    Raises
    ------
    ImportError
        If scipy-openblas32 is not installed.
    """
    with _lock:
        loaded = _core.blas_library()
        if loaded:
            return str(loaded)
        path = _library_path()
        previous = os.environ.get("OPENBLAS_NUM_THREADS")
        os.environ["OPENBLAS_NUM_THREADS"] = "1"  # read by the library when it is opened
        try:
            _core.load_blas(path)
        finally:
            if previous is None:
                del os.environ["OPENBLAS_NUM_THREADS"]
            else:
                os.environ["OPENBLAS_NUM_THREADS"] = previous
        return path
