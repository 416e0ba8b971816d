"""The torch side of deephash_ext: the only package that imports torch.

Nothing here imports torch when the package is imported; :func:`import_torch` does, on
first use, with an install hint when torch is missing. A ruff rule (TID251) keeps
``import torch`` out of every other module, so ``import deephash_ext`` never loads it.
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["import_torch"]


def import_torch(feature: str) -> ModuleType:
    """torch, or an ImportError naming ``feature`` (e.g. "SSDH") and how to install it."""
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"{feature} needs PyTorch: pip install 'deephash_ext[torch]' (on a CPU-only "
            "machine, install the CPU build of torch first: pip install torch --index-url "
            "https://download.pytorch.org/whl/cpu)"
        ) from error
    return torch
