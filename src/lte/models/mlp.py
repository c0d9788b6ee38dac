"""The plain ReLU MLP used as the implicit function by every decoder (``imnet`` in the releases)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MLP(nn.Module):
    """Linear → ReLU → … → Linear over the last dimension.

    Args:
        in_dim: input width.
        out_dim: output width (3 for RGB decoders).
        hidden: widths of the hidden layers, e.g. ``[256, 256, 256]`` for LTE.

    The ``layers`` Sequential (Linear at even indices, ReLU at odd ones) keeps the key names of the
    released checkpoints (``imnet.layers.0.weight``, ...).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        last = in_dim
        for width in hidden:
            layers += [nn.Linear(last, width), nn.ReLU(inplace=True)]
            last = width
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor, *, dtype: torch.dtype | None = None) -> Tensor:
        """The MLP over ``x``; with ``dtype`` its matmuls run in that type and the output is float32."""
        return run_layers(self.layers, x, dtype)


def run_layers(layers: Iterable[nn.Module], x: Tensor, dtype: torch.dtype | None) -> Tensor:
    """Apply Linear/ReLU ``layers`` to ``x``, differentiably; in ``dtype`` when it differs from ``x``'s.

    The low-precision form casts the input and each layer's weights to ``dtype`` and returns
    float32, which is what the decoders' fast kernels do, so both kernels mean the same by ``dtype``.
    """
    if dtype is None or dtype == x.dtype:
        for m in layers:
            x = m(x)
        return x
    x = x.to(dtype)
    for m in layers:
        if isinstance(m, nn.Linear):
            x = F.linear(x, m.weight.to(dtype), None if m.bias is None else m.bias.to(dtype))
        else:
            x = m(x)
    return x.float()
