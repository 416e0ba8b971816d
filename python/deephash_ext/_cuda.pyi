"""Stubs of deephash_ext._cuda, the optional GPU module (private; use the package API).

Importing it never touches the GPU; every function that needs one raises RuntimeError
("CUDA is not available: ...") when there is none. Arguments follow _core's conventions.
"""

from collections.abc import Sequence
from typing import Final, final

import numpy as np
from numpy.typing import NDArray

architectures: Final[str]
"""The CUDA architectures compiled in, comma-separated (e.g. "75-real,...,90")."""
max_code_bytes: Final[int]
"""Widest code the GPU kernels take, in bytes."""
max_codes: Final[int]
"""Largest database DeviceCodes holds."""

def device_count() -> int: ...
def unavailable_reason() -> str:
    """Why CUDA cannot be used, or "" when a device is visible."""

def device_name(device: int | np.integer) -> str: ...

@final
class DeviceCodes:
    """A database of packed codes resident in GPU memory."""

    def __init__(self, codes: NDArray[np.uint8], device: int | np.integer = 0) -> None: ...
    def search(
        self, queries: NDArray[np.uint8], k: int | np.integer
    ) -> tuple[NDArray[np.int32], NDArray[np.int64]]: ...
    def range_search(
        self, queries: NDArray[np.uint8], max_distance: int | np.integer
    ) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.int64]]: ...
    @property
    def n(self) -> int: ...
    @property
    def code_bytes(self) -> int: ...
    @property
    def device(self) -> int: ...
    @property
    def nbytes(self) -> int: ...

def load_cublas(path: str) -> None: ...
def cublas_library() -> str: ...
def rbm_cd_train(
    components: NDArray[np.float32],
    hidden_bias: NDArray[np.float32],
    visible_bias: NDArray[np.float32],
    components_velocity: NDArray[np.float32],
    hidden_velocity: NDArray[np.float32],
    visible_velocity: NDArray[np.float32],
    V: NDArray[np.float32],
    order: NDArray[np.int64],
    *,
    batch_size: int | np.integer,
    learning_rate: float | np.floating,
    momentum: float | np.floating,
    weight_decay: float | np.floating,
    hashing_reg: float | np.floating,
    cd_k: int | np.integer,
    seed: int | np.integer,
    first_step: int | np.integer,
    gaussian_visible: bool | np.bool_ = False,
    device: int | np.integer,
) -> None:
    """CD-k training on GPU `device`, in place on the first six (host) arrays."""

def encode_layers(
    X: NDArray[np.float32],
    input_thresholds: NDArray[np.float32] | None,
    weights: Sequence[NDArray[np.float32]],
    offsets: Sequence[NDArray[np.float32]],
    device: int | np.integer,
) -> NDArray[np.uint8]: ...
