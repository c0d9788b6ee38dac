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
    lead = x.shape[:-1]
    # Rows as one 2-D matrix: each Linear's output is then a fresh tensor, not a view of one, so the
    # in-place ReLU costs autograd nothing (on a view it records a CopySlices node whose backward
    # clones and re-strides the hidden gradient: ~12% of an LTE training step, measured).
    x = x.reshape(-1, x.shape[-1])
    low = dtype is not None and dtype != x.dtype
    if low:
        x = x.to(dtype)
    for m in layers:
        if isinstance(m, nn.Linear) and low:
            x = F.linear(x, m.weight.to(dtype), None if m.bias is None else m.bias.to(dtype))
        elif isinstance(m, nn.ReLU) and x._is_view():
            x = F.relu(x)  # the caller's tensor (LIIF's layer 1): in place would be a CopySlices
        else:
            x = m(x)
    return (x.float() if low else x).view(*lead, x.shape[-1])
