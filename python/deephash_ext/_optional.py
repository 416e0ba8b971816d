"""Optional dependencies: imported on first use, with an install hint when missing.

The core install is numpy, scikit-learn, scipy-openblas32 and tqdm. The extras:
``[demo]`` (opencv-python-headless, scikit-image, matplotlib: the bundled benchmark data
and the demo's plot) and ``[torch]`` (the torch heads and DeepHash fine-tuning; see
:func:`deephash_ext._torch.import_torch`).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, feature: str, extra: str) -> ModuleType:
    """Import ``module``, or raise ImportError saying that ``feature`` needs the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{feature} needs {module.split('.')[0]!r}, which is not installed: "
            f"pip install 'deephash_ext[{extra}]'"
        ) from error
