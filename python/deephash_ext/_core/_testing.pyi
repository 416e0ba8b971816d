"""Stubs of deephash_ext._core._testing: bindings for the tests and benchmarks only."""

import numpy as np
from numpy.typing import NDArray

def sgemm_nt(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
    """a @ b.T through the core's panel-parallel sgemm."""

def uniform_rank_targets(P: NDArray[np.float32]) -> NDArray[np.float32]:
    """Targets of the hashing regulariser for a probability matrix P."""

def rbm_uniforms(
    seed: int | np.integer, step: int | np.integer, n: int | np.integer
) -> NDArray[np.float32]:
    """The n uniform numbers of training step `step` under `seed`."""

def threads_started() -> int:
    """How many threads the core has started in this process."""
