"""scikit-learn's bundled handwritten digits (8x8 images, 10 classes; no download) and an MLP."""

from __future__ import annotations

import functools

import torch
from torch import nn

__all__ = ["digits_split", "mlp", "batches"]


@functools.lru_cache(maxsize=4)
def _load(split_seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(split_seed))
    n_test = len(x) // 5
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test]


def digits_split(split_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x_train, y_train, x_test, y_test``: pixels scaled to [0, 1], a fixed 80/20 split."""
    return _load(split_seed)


def mlp(hidden: int = 64, depth: int = 2) -> nn.Sequential:
    """64 pixels -> ``depth`` hidden tanh layers of width ``hidden`` -> 10 logits."""
    layers: list[nn.Module] = []
    width = 64
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.Tanh()]
        width = hidden
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def batches(n: int, batch_size: int, steps: int, gen: torch.Generator) -> list[torch.Tensor]:
    """``steps`` minibatches of indices into ``n`` examples (reshuffled each epoch)."""
    out: list[torch.Tensor] = []
    while len(out) < steps:
        perm = torch.randperm(n, generator=gen)
        out += [perm[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]
    return out[:steps]
