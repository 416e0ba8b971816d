"""The SSDH / DLBHC network and losses, in torch (docs/algorithms.md, SSDH).

Used by :mod:`deephash_ext.ssdh`; torch is imported inside the functions, so importing
this module stays light. Every loss term is an average over the rows of the minibatch
(see the SSDH docstring for the formulas).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "build_network",
    "e1_multilabel",
    "e1_softmax",
    "e2",
    "e3",
    "forward",
    "init_linear",
    "objective",
    "weight_penalty",
]


def e1_softmax(logits, target):
    """Softmax cross-entropy ``-(1/B) sum_n ln softmax(logits_n)[target_n]``."""
    import torch.nn.functional as F

    return F.cross_entropy(logits, target)


def e1_multilabel(outputs, y, p: float = 2.0):
    """The SSDH multi-label loss, ``(1/B) sum_n sum_m l(y_nm, yhat_nm)``.

    ``l = 0`` if ``y = 1 and yhat >= 1`` or ``y = 0 and yhat <= 0``, else
    ``0.5 |y - yhat|^p``; i.e. ``0.5 * (y relu(1 - yhat)^p + (1 - y) relu(yhat)^p)``.
    """
    import torch

    err = y * torch.relu(1.0 - outputs) + (1.0 - y) * torch.relu(outputs)
    return 0.5 * err.pow(p).sum(dim=1).mean()


def e2(a):
    """``(1/B) sum_n (1/K) ||a_n - 0.5||^2``: large when activations sit near 0 or 1."""
    return (a - 0.5).pow(2).mean()


def e3(a):
    """``(1/B) sum_n (mean_k a_nk - 0.5)^2``: small when each code is half ones."""
    return (a.mean(dim=1) - 0.5).pow(2).mean()


def weight_penalty(network):
    """``sum ||W||^2`` over the parameters with two or more dimensions (no biases)."""
    total = None
    for parameter in network.parameters():
        if parameter.ndim >= 2 and parameter.requires_grad:
            term = parameter.pow(2).sum()
            total = term if total is None else total + term
    return total


def objective(
    outputs, target, a, *, multilabel: bool, alpha: float, beta: float, gamma: float, p: float = 2.0
):
    """``alpha E1 - beta E2 + gamma E3`` for one minibatch (weight decay not included)."""
    e1 = e1_multilabel(outputs, target, p) if multilabel else e1_softmax(outputs, target)
    return alpha * e1 - beta * e2(a) + gamma * e3(a)


# ============================================================================ network


def forward(network, x):
    """(features, a_H, classifier outputs) of a batch."""
    import torch

    features = network["features"](x)
    a = torch.sigmoid(network["hash"](features))
    return features, a, network["classifier"](a)


def init_linear(torch, layer, generator, relu: bool) -> None:
    """He-uniform (ReLU layers) or U(+-1/sqrt(fan_in)) weights, zero biases."""
    fan_in = layer.weight.shape[1]
    bound = float(np.sqrt(6.0 / fan_in)) if relu else float(1.0 / np.sqrt(fan_in))
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.zero_()


def build_network(
    torch,
    *,
    n_inputs: int | None,
    hidden: list[int],
    backbone,
    feature_dim: int,
    n_bits: int,
    n_outputs: int,
    generator,
):
    """A ModuleDict {features, hash, classifier} on the CPU, new layers seeded by generator."""
    nn = torch.nn
    if backbone is not None:
        features = backbone
    else:
        layers: list[Any] = []
        width = n_inputs
        for size in hidden:
            linear = nn.Linear(width, size)
            if generator is not None:
                init_linear(torch, linear, generator, relu=True)
            layers += [linear, nn.ReLU()]
            width = size
        features = nn.Sequential(*layers)
    hash_layer = nn.Linear(feature_dim, n_bits)
    classifier = nn.Linear(n_bits, n_outputs)
    if generator is not None:
        init_linear(torch, hash_layer, generator, relu=False)
        init_linear(torch, classifier, generator, relu=False)
    return nn.ModuleDict({"features": features, "hash": hash_layer, "classifier": classifier})
