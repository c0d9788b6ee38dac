"""Pure coordinate geometry shared by every implicit decoder (SPEC.md, "Coordinates and cells").

Everything here is a function of its inputs: no module state, devices and dtypes come from the
arguments. The arithmetic follows the reference code step by step (same operation order, float32),
so that the nearest-code lookup breaks ties exactly as ``F.grid_sample(mode="nearest")`` does.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: The four local-ensemble neighbours ``v`` as (row, column) signs, in the reference order.
NEIGHBOUR_OFFSETS: tuple[tuple[int, int], ...] = ((-1, -1), (-1, 1), (1, -1), (1, 1))

#: Shift that keeps a shifted query off an exact code boundary, and the clamp margin.
EPS_SHIFT = 1e-6
#: Added to every ensemble area so that the normaliser can never be zero.
AREA_EPS = 1e-9


def make_coord_1d(n: int, *, device: torch.device | None = None) -> Tensor:
    """Pixel-centre coordinates of ``n`` pixels spanning [-1, 1]: ``-1 + (2i + 1) / n``.

    Computed as ``(-1 + r) + 2r * i`` with ``r = 1 / n``: the same float32 operations as the reference
    implementation, so coordinates (and therefore nearest-code ties) are bit-identical to it.
    """
    r = 2.0 / (2 * n)
    return (-1.0 + r) + (2 * r) * torch.arange(n, device=device, dtype=torch.float32)


def make_coord(
    shape: tuple[int, int], *, flatten: bool = True, device: torch.device | None = None
) -> Tensor:
    """Centres of every pixel of an ``h × w`` grid as (y, x) pairs.

    Returns ``(h * w, 2)`` when ``flatten`` (row-major), else ``(h, w, 2)``.
    """
    h, w = shape
    ys = make_coord_1d(h, device=device)
    xs = make_coord_1d(w, device=device)
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)  # (h, w, 2)
    return grid.reshape(-1, 2) if flatten else grid


def cell_enlargement(scale: float, scale_max: float) -> float:
    """The factor ``max(s / scale_max, 1)`` applied to cells beyond the training scale range (SPEC).

    The one formula: :func:`enlarge_cell`, :func:`make_cell` and ``SRModel.enlarge_cell`` all use it.
    """
    return max(float(scale) / float(scale_max), 1.0)


def enlarge_cell(cell: Tensor, scale: tuple[float, float], scale_max: float) -> Tensor:
    """``cell`` (``(..., 2)``, y then x) enlarged per axis by ``cell_enlargement(scale[i], scale_max)``.

    Per axis because an output may be resized by different factors along y and x; an axis within
    the training range keeps its cell unchanged.
    """
    factors = [cell_enlargement(s, scale_max) for s in scale]
    if factors == [1.0, 1.0]:
        return cell
    return cell * torch.tensor(factors, dtype=cell.dtype, device=cell.device)


def make_cell(
    shape: tuple[int, int],
    n: int,
    *,
    lr_hw: tuple[int, int] | None = None,
    scale_max: float | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """Cells of ``n`` queries on an ``h × w`` target grid: ``(2/h, 2/w)`` each, ``(n, 2)`` float32.

    Given the LR size ``lr_hw`` and the model's ``scale_max``, each axis is enlarged by
    ``max((h / lr_h) / scale_max, 1)`` (resp. ``w / lr_w``), the test-time rule for scales beyond
    training (:func:`enlarge_cell`). Give both or neither.
    """
    if (lr_hw is None) != (scale_max is None):
        raise ValueError("make_cell: give both lr_hw and scale_max (enlarged cell) or neither")
    h, w = shape
    cell = torch.ones(n, 2, device=device, dtype=torch.float32)
    cell[:, 0] *= 2 / h
    cell[:, 1] *= 2 / w
    if lr_hw is not None and scale_max is not None:
        cell = enlarge_cell(cell, (h / lr_hw[0], w / lr_hw[1]), scale_max)
    return cell


def nearest_code_index(coord: Tensor, size: int) -> Tensor:
    """Index of the code (of ``size`` codes along one axis) whose cell contains ``coord``.

    Mirrors ``grid_sample(mode="nearest", align_corners=False)``: unnormalise to pixel units as
    ``(c + 1) * size / 2 - 0.5`` and round half to even, then clamp to the grid (queries are already
    clamped inside (-1, 1), so the clamp only guards float round-off).
    """
    pix = (coord + 1) * (size / 2) - 0.5
    return torch.round(pix).long().clamp_(0, size - 1)


def ensemble_weights(rel: Tensor) -> Tensor:
    """Bilinear-style local-ensemble weights from the four neighbours' relative offsets.

    ``area_v = |rel_y · rel_x| + 1e-9``; neighbour ``v`` is weighted by the area of its diagonally
    opposite neighbour (index ``3 - v`` in :data:`NEIGHBOUR_OFFSETS` order), normalised by the
    total. ``rel`` is ``(..., 4, 2)``; returns ``(..., 4)`` summing to 1.
    """
    area = (rel[..., 0] * rel[..., 1]).abs() + AREA_EPS  # (..., 4)
    total = area.sum(dim=-1, keepdim=True)
    # flip(-1) pairs neighbour v with -v: (-1,-1)<->(+1,+1) and (-1,+1)<->(+1,-1).
    return area.flip(-1) / total


def bilinear_sample(img: Tensor, coord: Tensor) -> Tensor:
    """Bilinear sample of ``(B, C, H, W)`` at ``(B, Q, 2)`` (y, x) coords, border padding: ``(B, Q, C)``."""
    # grid_sample wants (x, y), hence the flip.
    grid = coord.flip(-1).unsqueeze(1)  # (B, 1, Q, 2)
    out = torch.nn.functional.grid_sample(
        img, grid, mode="bilinear", padding_mode="border", align_corners=False
    )  # (B, C, 1, Q)
    return out[:, :, 0, :].permute(0, 2, 1)


def axis_neighbours(coord: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Both ensemble neighbours along one axis: code indices and relative offsets, ``(..., 2)`` each.

    The local ensemble is separable: the row of neighbour ``(vy, vx)`` depends only on ``vy`` and its
    column only on ``vx``. Computing the two rows and two columns once (instead of four full 2-D
    lookups) halves the work, with the very same float32 operations as SPEC's per-neighbour
    shifted query (``q + v ⊙ r + 1e-6``, clamped) and :func:`nearest_code_index`, so indices and
    offsets are bit-identical to the literal lookup (tested against ``tests/literal.py``). ``coord`` holds one axis of the (unshifted) queries, in [-1, 1].
    """
    centres = make_coord_1d(size, device=coord.device)
    r = 1.0 / size  # half a code
    indices, rels = [], []
    for v in (-1, 1):
        shifted = (coord + (v * r + EPS_SHIFT)).clamp_(-1 + EPS_SHIFT, 1 - EPS_SHIFT)
        idx = nearest_code_index(shifted, size)
        indices.append(idx)
        rels.append((coord - centres[idx]) * size)
    return torch.stack(indices, dim=-1), torch.stack(rels, dim=-1)


def combine_axes(along_y: Tensor, along_x: Tensor) -> Tensor:
    """Per-axis pairs ``(..., 2)`` to the four neighbours ``(..., 4, 2)`` in :data:`NEIGHBOUR_OFFSETS` order.

    Neighbour ``k`` takes row choice ``k // 2`` and column choice ``k % 2``: (-1,-1), (-1,+1),
    (+1,-1), (+1,+1).
    """
    ys = along_y[..., (0, 0, 1, 1)]  # (..., 4)
    xs = along_x[..., (0, 1, 0, 1)]  # (..., 4)
    return torch.stack([ys, xs], dim=-1)


def code_grid_index(
    iy: Tensor, ix: Tensor, table_hw: tuple[int, int], origin: tuple[int, int] = (0, 0)
) -> Tensor:
    """Flat index into an ``h_t × w_t`` table of codes whose top-left code is ``origin`` of the full grid.

    Tiled inference keeps the geometry of the whole image (global ``iy``, ``ix``) and reads codes from
    a tile's table: subtracting the tile's origin makes tiled results bit-identical to untiled ones.
    """
    oy, ox = origin
    return (iy - oy) * table_hw[1] + (ix - ox)


# --- self-ensemble: the dihedral transforms of an image ----------------------------------------

#: ``lte.upscale --ensemble`` / ``eval.ensemble=`` values: one view, the 4 rotations, or all 8
#: dihedral transforms (the rotations, each also mirrored left-right).
ENSEMBLE_SIZES: tuple[int, ...] = (1, 4, 8)


def dihedral_views(n: int) -> tuple[tuple[int, bool], ...]:
    """The first ``n`` dihedral transforms as ``(quarter_turns, mirrored)``: identity first, then
    the rotations by 90°, 180°, 270°, then (``n == 8``) the same four applied after a left-right
    mirror. The self-ensemble averages the predictions over these views.

    Raises:
        ValueError: ``n`` is not one of :data:`ENSEMBLE_SIZES`.
    """
    if n not in ENSEMBLE_SIZES:
        raise ValueError(f"ensemble must be one of {ENSEMBLE_SIZES}, got {n!r}")
    return tuple((turns, mirrored) for mirrored in (False, True) for turns in range(4))[:n]


def to_view(x: Tensor, turns: int, mirrored: bool) -> Tensor:
    """``(..., h, w)`` seen through a dihedral view: mirrored left-right first, then turned
    ``turns`` quarter turns counter-clockwise (``torch.rot90``). An odd ``turns`` swaps h and w."""
    if mirrored:
        x = x.flip(-1)
    return torch.rot90(x, turns, dims=(-2, -1))


def from_view(y: Tensor, turns: int, mirrored: bool) -> Tensor:
    """The inverse of :func:`to_view`: an image made in the view, back in the original frame."""
    y = torch.rot90(y, -turns, dims=(-2, -1))
    return y.flip(-1) if mirrored else y


def view_size(hw: tuple[int, int], turns: int) -> tuple[int, int]:
    """``(h, w)`` of an image seen after ``turns`` quarter turns: transposed when ``turns`` is odd."""
    return (hw[1], hw[0]) if turns % 2 else hw
