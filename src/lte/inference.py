"""Whole-image inference: encode once, then evaluate the query grid in chunks of bounded size.

Chunking is a plain function over :meth:`SRModel.query`, never hidden module state, and it does not
change results: each query's prediction depends only on its own coordinate and cell.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lte.geometry import make_cell, make_coord
from lte.models.sr import SRModel

#: Queries per chunk in the papers' test code.
DEFAULT_CHUNK = 30000


def query_grid(
    out_hw: tuple[int, int],
    batch: int,
    *,
    cell_scale: tuple[float, float] = (1.0, 1.0),
    device: torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """Coordinates and cells of every pixel of an ``H × W`` output: two ``(B, H*W, 2)`` tensors.

    ``cell_scale`` enlarges the cell per axis (y, x), i.e. ``max(s / scale_max, 1)`` beyond training scales.
    """
    h, w = out_hw
    coord = make_coord((h, w), device=device)
    cell = make_cell((h, w), h * w, device=device)
    if cell_scale != (1.0, 1.0):
        cell = cell * torch.tensor(cell_scale, device=device)
    return coord.unsqueeze(0).expand(batch, -1, -1), cell.unsqueeze(0).expand(batch, -1, -1)


@torch.no_grad()
def batched_query(
    model: SRModel,
    state: dict[str, Tensor],
    coord: Tensor,
    cell: Tensor,
    chunk: int = DEFAULT_CHUNK,
) -> Tensor:
    """``model.query`` over ``(B, Q, 2)`` queries, ``chunk`` queries at a time: ``(B, Q, 3)``."""
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    parts = [
        model.query(state, coord[:, i : i + chunk], cell[:, i : i + chunk])
        for i in range(0, coord.shape[1], chunk)
    ]
    return torch.cat(parts, dim=1)


@torch.no_grad()
def predict(
    model: SRModel,
    lr: Tensor,
    out_hw: tuple[int, int],
    *,
    cell_scale: tuple[float, float] = (1.0, 1.0),
    chunk: int = DEFAULT_CHUNK,
) -> Tensor:
    """Super-resolve a normalised ``(B, 3, h, w)`` batch to ``(B, 3, H, W)`` (normalised, unclamped)."""
    b = lr.shape[0]
    h, w = out_hw
    state = model.encode(lr)
    coord, cell = query_grid(out_hw, b, cell_scale=cell_scale, device=lr.device)
    rgb = batched_query(model, state, coord, cell, chunk)  # (B, H*W, 3)
    return rgb.transpose(1, 2).reshape(b, 3, h, w)
