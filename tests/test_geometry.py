"""Geometry helpers against SPEC's definitions and against grid_sample, which the reference uses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from grids import ensemble_neighbours, gather_codes, unfold3x3
from lte import geometry


def test_make_coord_is_pixel_centres() -> None:
    h, w = 3, 5
    grid = geometry.make_coord((h, w), flatten=False)
    assert grid.shape == (h, w, 2)
    for i in range(h):
        for j in range(w):
            assert torch.allclose(
                grid[i, j], torch.tensor([-1 + (2 * i + 1) / h, -1 + (2 * j + 1) / w])
            )
    flat = geometry.make_coord((h, w))
    assert torch.equal(flat, grid.reshape(-1, 2))  # row-major
    assert flat.abs().max() < 1


def test_make_cell_and_enlargement() -> None:
    cell = geometry.make_cell((40, 25), 7)
    assert cell.shape == (7, 2)
    assert torch.allclose(cell, torch.tensor([2 / 40, 2 / 25]).expand(7, 2))
    assert geometry.cell_enlargement(2, 4) == 1.0
    assert geometry.cell_enlargement(12, 4) == 3.0
    # 40 x 25 from a 5 x 25 LR: x8 rows (enlarged 8 / 4), x1 columns (unchanged).
    big = geometry.make_cell((40, 25), 2, lr_hw=(5, 25), scale_max=4.0)
    assert torch.allclose(big, cell[:2] * torch.tensor([2.0, 1.0]))
    assert torch.equal(big, geometry.enlarge_cell(cell[:2], (8.0, 1.0), 4.0))
    assert geometry.enlarge_cell(cell, (2.0, 3.0), 4.0) is cell  # within training: untouched
    with pytest.raises(ValueError, match="both lr_hw and scale_max"):
        geometry.make_cell((40, 25), 2, lr_hw=(5, 25))


def test_nearest_code_index_matches_grid_sample() -> None:
    h = 7
    # Many random coordinates plus points a hair either side of every code boundary.
    bounds = torch.tensor([-1 + 2 * k / h for k in range(1, h)])
    coord = torch.cat([torch.rand(5000) * 2 - 1, bounds + 1e-5, bounds - 1e-5]).clamp(
        -1 + 1e-6, 1 - 1e-6
    )
    ids = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
    grid = torch.stack([torch.zeros_like(coord), coord], dim=-1).view(1, 1, -1, 2)  # (x=0, y=coord)
    ref = F.grid_sample(ids, grid, mode="nearest", align_corners=False).view(-1).long()
    assert torch.equal(geometry.nearest_code_index(coord, h), ref)


def test_neighbours_surround_the_query() -> None:
    feat_hw = (6, 9)
    coord = geometry.make_coord((23, 31)).unsqueeze(0)  # (1, Q, 2), a non-integer scale
    index, rel = ensemble_neighbours(coord, feat_hw)
    assert index.shape == (1, 23 * 31, 4) and rel.shape == (1, 23 * 31, 4, 2)
    # rel is (q - c) in units of half a code, so |rel| <= 2 on each axis, and the sign of rel tells
    # on which side of the query the code lies: opposite to the neighbour's offset.
    assert rel.abs().max() <= 2 + 1e-5
    interior = (coord[0].abs() < 1 - 2 / 6).all(-1)
    for v, (vy, vx) in enumerate(geometry.NEIGHBOUR_OFFSETS):
        assert (rel[0, interior, v, 0] * vy <= 1e-6).all()
        assert (rel[0, interior, v, 1] * vx <= 1e-6).all()


def test_ensemble_weights_sum_to_one_and_are_bilinear() -> None:
    feat_hw = (5, 8)
    h, w = feat_hw
    coord = (torch.rand(1, 2000, 2) * 2 - 1) * torch.tensor([1 - 1 / h, 1 - 1 / w])  # interior
    index, rel = ensemble_neighbours(coord, feat_hw)
    weights = geometry.ensemble_weights(rel)
    assert torch.allclose(weights.sum(-1), torch.ones(1, 2000), atol=1e-6)
    assert (weights >= 0).all()
    # Bilinear weights reproduce linear functions: interpolating the code centres gives the query back.
    centres = geometry.make_coord(feat_hw)  # (h*w, 2)
    interp = (centres[index] * weights.unsqueeze(-1)).sum(-2)  # (1, Q, 2)
    assert torch.allclose(interp, coord, atol=1e-5)


def test_opposite_area_pairing() -> None:
    rel = torch.tensor([[[0.5, 0.5], [0.5, -1.5], [-1.5, 0.5], [-1.5, -1.5]]])  # (1, 4, 2)
    area = (rel[..., 0] * rel[..., 1]).abs() + geometry.AREA_EPS
    weights = geometry.ensemble_weights(rel)
    expected = torch.stack([area[0, 3], area[0, 2], area[0, 1], area[0, 0]]) / area.sum()
    assert torch.allclose(weights[0], expected)
    assert weights[0, 0] > weights[0, 3]  # the nearest code weighs most


def test_gather_and_unfold() -> None:
    feat = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    index = torch.tensor([[0, 7, 19], [3, 3, 12]])
    out = gather_codes(feat, index)
    assert out.shape == (2, 3, 3)
    assert torch.equal(out[1, 2], feat[1, :, 12 // 5, 12 % 5])
    unf = unfold3x3(feat)
    assert unf.shape == (2, 27, 4, 5)
    # channel-major: channel c, kernel position k at c * 9 + k; k = 4 is the centre.
    assert torch.equal(unf[:, 1 * 9 + 4], feat[:, 1])
    assert torch.equal(unf[:, 2 * 9 + 0, 1:, 1:], feat[:, 2, :-1, :-1])
    assert (unf[:, 0, 0, :] == 0).all()  # zero padding above the first row
