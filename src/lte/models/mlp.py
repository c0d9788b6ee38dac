"""The plain ReLU MLP used as the implicit function by every decoder (``imnet`` in the releases)."""

from __future__ import annotations

from collections.abc import Sequence

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

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
