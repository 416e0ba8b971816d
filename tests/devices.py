"""Where kernels run, for tests parametrised over devices.

GPU tests carry the `cuda` marker and skip cleanly where CUDA cannot run (the CI machines
build the CUDA module but have no GPU).
"""

from __future__ import annotations

import deephash_ext
import pytest

requires_cuda = pytest.mark.skipif(
    not deephash_ext.cuda_available(),
    reason=f"CUDA not available: {deephash_ext.cuda_unavailable_reason()}",
)
CUDA = pytest.param("cuda", marks=[pytest.mark.cuda, requires_cuda])
# Every test parametrised over DEVICES checks each path against the same reference.
DEVICES = ["cpu", CUDA]


def rbm_kernels(device: str):
    """The module holding the RBM kernels of `device` (_core, or _cuda with cuBLAS loaded),
    and the extra keyword arguments its functions take."""
    if device == "cpu":
        from deephash_ext import _core

        return _core, {}
    from deephash_ext import _gpu

    _gpu.ensure_cublas()
    return _gpu.cuda_module(), {"device": 0}
