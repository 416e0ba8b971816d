"""The DRHN network and its training loop, in torch (docs/algorithms.md, sec. 5).

Imported only from the methods of :class:`deephash_ext.DRHN`, so that
``import deephash_ext.drhn`` never loads torch. This module imports torch at the top: its
classes live at module level, so fitted networks pickle like any torch module.

Layout (Table 1 of the paper, for ``widths = (16, 32, 64, 64, 64, 128)``, 32 x 32 input)::

    stem     BN(ReLU(conv3x3(x)))                      16 x 32 x 32
    group 1  n blocks, 16 channels                     16 x 32 x 32
    group 2  n blocks, 32 channels, first stride 2     32 x 16 x 16
    group 3  n blocks, 64 channels, first stride 2     64 x  8 x  8
    group 4  n blocks, 64 channels                     64 x  8 x  8
    group 5  n blocks, 64 channels                     64 x  8 x  8
    group 6  n blocks, 128 channels, first stride 2   128 x  4 x  4
    global average pooling                            128
    hash layer  H = sigmoid(W f + b)                  n_bits
    classifier  logits = W_c H + b_c (softmax)        n_classes
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "DRHNNet",
    "ResidualBlock",
    "ZeroPadShortcut",
    "build_network",
    "flush_denormals",
    "predict_batches",
    "train_network",
]


def flushing_denormals() -> bool:
    """Whether this thread flushes subnormal floats to zero (torch has no getter)."""
    return torch.tensor([1e-39], dtype=torch.float32).mul_(1.0).item() == 0.0


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Flush subnormal floats to zero on the CPU while the block runs, then restore.

    Saturated sigmoids of the hash layer send subnormal gradients through the network;
    x86 CPUs handle those in microcode, which made some training epochs about 10x slower
    (measured: 17 s against 1.8 s per epoch on the digits benchmark, identical losses).
    """
    was_on = flushing_denormals()
    changed = not was_on and torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if changed:
            torch.set_flush_denormal(False)


class ZeroPadShortcut(nn.Module):
    """Parameter-free shortcut where a block changes shape (He et al.'s option A).

    Keeps every ``stride``-th pixel and appends zero channels up to ``out_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.extra = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x


class ResidualBlock(nn.Module):
    """``y = shortcut(x) + BN2(conv2(BN1(ReLU(conv1(x)))))`` (eq. 4 of the paper).

    Both convolutions are 3 x 3 with zero padding 1 and no bias (eq. 1 has none); ``conv1``
    has stride ``stride``. No activation follows the addition (eq. 4). ``shortcut`` is the
    identity when the shape is kept; otherwise a 1 x 1 stride-``stride`` convolution
    followed by batch normalisation (``"projection"``) or :class:`ZeroPadShortcut`
    (``"identity"``).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        elif shortcut == "projection":
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = ZeroPadShortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.bn2(self.conv2(self.bn1(F.relu(self.conv1(x)))))


class DRHNNet(nn.Module):
    """Stem, residual groups, global average pooling, hash layer and classifier.

    ``forward`` returns ``(H, logits)``. With ``n_bits=None`` there is no hash layer: the
    classifier reads the pooled features directly, and ``H`` is those features (the
    reference network of the benchmark).
    """

    def __init__(
        self,
        in_channels: int,
        widths: Sequence[int],
        depth: int,
        n_bits: int | None,
        n_classes: int,
        shortcut: str,
    ) -> None:
        super().__init__()
        first = int(widths[0])
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, first, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.BatchNorm2d(first),
        )
        groups = []
        previous = first
        for width in widths:
            stride = 2 if width > previous else 1
            blocks = [ResidualBlock(previous, width, stride, shortcut)]
            blocks += [ResidualBlock(width, width, 1, shortcut) for _ in range(depth - 1)]
            groups.append(nn.Sequential(*blocks))
            previous = width
        self.groups = nn.Sequential(*groups)
        self.hash = None if n_bits is None else nn.Linear(previous, n_bits)
        self.classifier = nn.Linear(previous if n_bits is None else n_bits, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled output of the last group, (n, widths[-1])."""
        return self.groups(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        h = f if self.hash is None else torch.sigmoid(self.hash(f))
        return h, self.classifier(h)


def build_network(
    in_channels: int,
    widths: Sequence[int],
    depth: int,
    n_bits: int | None,
    n_classes: int,
    shortcut: str,
    generator: torch.Generator | None,
) -> DRHNNet:
    """A DRHNNet, initialised from ``generator`` (torch's global RNG is left untouched).

    Convolutions: He normal (fan in, ReLU gain; the Lasagne recipe of He et al. that the
    paper builds on); linear layers: uniform in +-1/sqrt(fan_in) (torch's default range);
    batch normalisation: scale 1, shift 0. Without a generator the weights are whatever
    the constructor drew (they are about to be overwritten by a state dict).
    """
    with torch.random.fork_rng(devices=[]):
        net = DRHNNet(in_channels, widths, depth, n_bits, n_classes, shortcut)
    if generator is None:
        return net
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)
                nn.init.uniform_(module.weight, -bound, bound, generator=generator)
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
    return net


def _batches(n: int, batch_size: int, rng: np.random.RandomState) -> list[np.ndarray]:
    """One shuffled epoch of row indices. A last batch of one row is dropped (batch
    normalisation needs two); the order is reshuffled every epoch, so no row is always out."""
    order = rng.permutation(n)
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


@flush_denormals()  # a fresh context for every call
def train_network(
    net: DRHNNet,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    n_epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float,
    momentum: float,
    mirror: bool,
    rng: np.random.RandomState,
    device: torch.device,
    verbose: bool,
) -> list[float]:
    """Minibatch SGD with momentum on softmax cross-entropy; returns the mean loss per epoch.

    ``images``: standardised float32 (n, C, 32, 32); ``targets``: int64 class indices.
    Weight decay (L2) applies to the convolution and linear weights only, not to biases or
    batch-normalisation parameters (Lasagne's default "regularizable" set). The learning
    rate is divided by 10 at 50 % and again at 75 % of the epochs (He et al.'s CIFAR
    schedule, 32k and 48k of 64k iterations). With ``mirror`` each image of a minibatch is
    flipped left-right with probability 1/2 (the paper's augmentation). Subnormal floats
    are flushed to zero while it runs (:func:`flush_denormals`).
    """
    net.to(device)
    net.train()
    decayed: list[torch.nn.Parameter] = []
    plain: list[torch.nn.Parameter] = []
    for name, parameter in net.named_parameters():
        is_weight = name.endswith("weight") and parameter.ndim > 1
        (decayed if is_weight else plain).append(parameter)
    optimiser = torch.optim.SGD(
        [{"params": decayed, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}],
        lr=learning_rate,
        momentum=momentum,
    )
    milestones = (math.ceil(n_epochs / 2), math.ceil(3 * n_epochs / 4))
    data = torch.from_numpy(images)
    labels = torch.from_numpy(targets)
    progress = None
    if verbose:
        from tqdm.auto import tqdm

        progress = tqdm(total=n_epochs, desc="DRHN", unit="epoch")
    history: list[float] = []
    try:
        for epoch in range(n_epochs):
            rate = learning_rate * 0.1 ** sum(epoch >= m for m in milestones)
            for group in optimiser.param_groups:
                group["lr"] = rate
            total, count = 0.0, 0
            for rows in _batches(len(data), batch_size, rng):
                index = torch.from_numpy(rows)
                x = data[index]
                if mirror:
                    flip = torch.from_numpy(rng.random_sample(len(rows)) < 0.5)
                    x = torch.where(flip[:, None, None, None], x.flip(3), x)
                x = x.to(device, non_blocking=True)
                y = labels[index].to(device, non_blocking=True)
                _, logits = net(x)
                loss = F.cross_entropy(logits, y)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(rows)
                count += len(rows)
            history.append(total / count)
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=history[-1], lr=rate)
    finally:
        if progress is not None:
            progress.close()
    net.eval()
    return history


@flush_denormals()
def predict_batches(
    net: DRHNNet, images: np.ndarray, device: torch.device, batch_size: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """``(H, logits)`` as float32 arrays for standardised images (n >= 1), in eval mode."""
    net.to(device)
    net.eval()
    hs, logits = [], []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(images[start : start + batch_size]).to(device)
            h, z = net(x)
            hs.append(h.float().cpu().numpy())
            logits.append(z.float().cpu().numpy())
    return np.concatenate(hs), np.concatenate(logits)
