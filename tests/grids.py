"""Test-only geometry helpers (moved out of ``lte``: no library code uses them).

A per-neighbour 2-D ensemble lookup written the way SPEC states it (against which the separable
``geometry.axis_neighbours`` is tested), a code gather and a 3×3 unfold on ``(B, C, h, w)`` maps, and
the full query grid of an output image for tests that call ``SRModel.query`` directly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lte.geometry import (
    EPS_SHIFT,
    NEIGHBOUR_OFFSETS,
    make_cell,
    make_coord,
    make_coord_1d,
    nearest_code_index,
)


def shifted_query(coord: Tensor, offset: tuple[int, int], feat_hw: tuple[int, int]) -> Tensor:
    """The query moved towards neighbour ``offset``: ``q + v ⊙ r + 1e-6``, clamped to ±(1 - 1e-6)."""
    h, w = feat_hw
    ry, rx = 1.0 / h, 1.0 / w  # half a code, 2 / size / 2 in the reference
    vy, vx = offset
    q = coord.clone()
    q[..., 0] += vy * ry + EPS_SHIFT
    q[..., 1] += vx * rx + EPS_SHIFT
    return q.clamp_(-1 + EPS_SHIFT, 1 - EPS_SHIFT)


def ensemble_neighbours(coord: Tensor, feat_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """For each ``(..., 2)`` query, the four neighbours' flat code indices ``(..., 4)`` (``iy * w + ix``,
    :data:`NEIGHBOUR_OFFSETS` order) and offsets ``(..., 4, 2)`` ``(q - c) ⊙ (h, w)`` (unshifted q)."""
    h, w = feat_hw
    ys = make_coord_1d(h, device=coord.device)
    xs = make_coord_1d(w, device=coord.device)
    indices, rels = [], []
    for offset in NEIGHBOUR_OFFSETS:
        q = shifted_query(coord, offset, feat_hw)
        iy = nearest_code_index(q[..., 0], h)
        ix = nearest_code_index(q[..., 1], w)
        rel_y = (coord[..., 0] - ys[iy]) * h
        rel_x = (coord[..., 1] - xs[ix]) * w
        indices.append(iy * w + ix)
        rels.append(torch.stack([rel_y, rel_x], dim=-1))
    return torch.stack(indices, dim=-1), torch.stack(rels, dim=-2)


def gather_codes(feat: Tensor, index: Tensor) -> Tensor:
    """Read codes of a ``(B, C, h, w)`` map at flat indices ``(B, ...)``: returns ``(B, ..., C)``."""
    b, c = feat.shape[:2]
    flat = feat.reshape(b, c, -1).transpose(1, 2)  # (B, h*w, C)
    idx = index.reshape(b, -1)  # (B, N)
    out = torch.gather(flat, 1, idx.unsqueeze(-1).expand(-1, -1, c))  # (B, N, C)
    return out.reshape(*index.shape, c)


def unfold3x3(feat: Tensor) -> Tensor:
    """3×3 neighbourhoods with zero padding, channel-major (``c * 9 + k``): ``(B, 9C, h, w)``."""
    b, c, h, w = feat.shape
    return torch.nn.functional.unfold(feat, 3, padding=1).view(b, c * 9, h, w)


def query_grid(
    out_hw: tuple[int, int], batch: int, *, cell_scale: tuple[float, float] = (1.0, 1.0)
) -> tuple[Tensor, Tensor]:
    """Coordinates and cells of every pixel of an ``H × W`` output: two ``(B, H*W, 2)`` tensors.

    ``cell_scale`` multiplies the cell per axis (y, x), e.g. ``max(s / scale_max, 1)``.
    """
    h, w = out_hw
    coord = make_coord((h, w))
    cell = make_cell((h, w), h * w)
    if cell_scale != (1.0, 1.0):
        cell = cell * torch.tensor(cell_scale)
    return coord.unsqueeze(0).expand(batch, -1, -1), cell.unsqueeze(0).expand(batch, -1, -1)
