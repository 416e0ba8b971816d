"""The one home for deriving seeds from a scikit-learn ``random_state``.

Two kinds of seed, each drawn one way:

* :func:`draw_random_state`: an int in ``[0, 2**31 - 1)`` to hand a child estimator (or a
  per-layer / per-part model) as its own ``random_state``; small enough for
  ``numpy.random.RandomState``.
* :func:`draw_stream_key`: a 62-bit key for the counter-based generator of the C++ kernels
  (keyed by seed, step and element, so results do not depend on the thread count) and for
  ``torch.Generator``.

Both advance ``rng`` by exactly one draw, so the draws that follow stay reproducible.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["check_rng", "draw_random_state", "draw_stream_key", "stream_key"]

_STATE_BOUND = 2**31 - 1
_KEY_BOUND = 2**62


def check_rng(random_state: object) -> np.random.RandomState:
    """:func:`sklearn.utils.check_random_state`, with a ValueError that names the parameter."""
    try:
        return check_random_state(random_state)
    except ValueError as exc:
        raise ValueError(
            f"random_state must be None, an integer in [0, 2**32) or a "
            f"numpy.random.RandomState, got {random_state!r}"
        ) from exc


def draw_random_state(rng: np.random.RandomState) -> int:
    """A ``random_state`` int in ``[0, 2**31 - 1)`` for a child model, drawn from ``rng``."""
    return int(rng.randint(0, _STATE_BOUND))


def draw_stream_key(rng: np.random.RandomState) -> int:
    """A 62-bit key in ``[0, 2**62)`` for a counter-based random stream, drawn from ``rng``."""
    return int(rng.randint(0, _KEY_BOUND))


def stream_key(random_state: object) -> int:
    """:func:`draw_stream_key` from a ``random_state`` (None, an int or a ``RandomState``,
    resolved by :func:`sklearn.utils.check_random_state`; a RandomState advances)."""
    return draw_stream_key(check_rng(random_state))
