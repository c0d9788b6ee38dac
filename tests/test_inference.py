"""The fast, tiled inference path against the literal per-neighbour reference and untiled encoding."""

from __future__ import annotations

import pytest
import torch

from conftest import sample_photos
from grids import ensemble_neighbours, query_grid
from literal import LITERAL
from lte.data.images import load_rgb, normalize, to_tensor
from lte.geometry import (
    axis_neighbours,
    cell_enlargement,
    combine_axes,
    make_cell,
    make_coord,
)
from lte.inference import (
    auto_tile,
    available_memory,
    batched_query,
    predict,
    tile_margin,
)
from lte.models.build import build_model

MODELS = ("lte", "liif", "metasr")


def photo_lr(h: int, w: int, top: int = 40, left: int = 60) -> torch.Tensor:
    """A normalised ``(1, 3, h, w)`` crop of a real photo."""
    img = load_rgb(sample_photos()[0])[top : top + h, left : left + w]
    return normalize(to_tensor(img)).unsqueeze(0)


def literal_image(model, lr: torch.Tensor, out_hw: tuple[int, int]):
    """The literal reference on every output pixel, the cell enlarged per axis as SPEC says."""
    name = model.decoder.kind
    cell_scale = tuple(
        cell_enlargement(out / inp, model.scale_max)
        for out, inp in zip(out_hw, lr.shape[-2:], strict=True)
    )
    coord, cell = query_grid(out_hw, lr.shape[0], cell_scale=cell_scale)
    with torch.no_grad():
        rgb = LITERAL[name](model, lr, coord, cell)  # (B, Q, 3)
    return rgb.transpose(1, 2).reshape(lr.shape[0], 3, *out_hw)


def test_axis_neighbours_match_the_2d_ensemble_lookup() -> None:
    coord = torch.cat([make_coord((37, 23)), torch.rand(500, 2) * 2 - 1, torch.ones(3, 2)])
    index, rel = ensemble_neighbours(coord, (9, 7))
    iy, ry = axis_neighbours(coord[:, 0], 9)
    ix, rx = axis_neighbours(coord[:, 1], 7)
    assert torch.equal(iy[:, (0, 0, 1, 1)] * 7 + ix[:, (0, 1, 0, 1)], index)
    assert torch.equal(combine_axes(ry, rx), rel)


@pytest.mark.parametrize("kernel", ["fast", "exact"])
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("out_hw", [(26, 30), (39, 45), (52, 60), (70, 33)])
def test_predict_equals_the_literal_reference(
    name: str, out_hw: tuple[int, int], kernel: str
) -> None:
    """(70, 33) is x5.4 by x2.2: the cell is enlarged on the rows only (scale_max 4)."""
    model = build_model(name, "edsr_tiny").eval()
    lr = photo_lr(13, 15)
    ref = literal_image(model, lr, out_hw)
    out = predict(model, lr, out_hw, tile=0, kernel=kernel)
    assert (out - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("name", MODELS)
def test_random_queries_and_per_query_cells_equal_the_literal(name: str) -> None:
    """Training-style queries (random points, per-query cells, a batch of two) take the same path."""
    model = build_model(name, "edsr_tiny").eval()
    lr = torch.cat([photo_lr(11, 9), photo_lr(11, 9, top=100)])
    coord = torch.rand(2, 300, 2) * 2 - 1
    cell = torch.rand(2, 300, 2) * 0.2 + 0.01
    with torch.no_grad():
        ref = LITERAL[name](model, lr, coord, cell)
        state = model.encode(lr)
        fast = batched_query(model, state, coord, cell, chunk=77, kernel="fast")
        exact = batched_query(model, state, coord, cell, chunk=77, kernel="exact")
    assert (fast - ref).abs().max().item() < 1e-5
    assert (exact - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("name", MODELS)
def test_enlarged_cells_and_a_shared_cell(name: str) -> None:
    model = build_model(name, "edsr_tiny").eval()
    lr = photo_lr(8, 10)
    coord, cell = query_grid((64, 80), 1, cell_scale=(2.0, 2.0))  # x8 with scale_max 4
    with torch.no_grad():
        ref = LITERAL[name](model, lr, coord, cell).transpose(1, 2).reshape(1, 3, 64, 80)
    fast = predict(model, lr, (64, 80), chunk=1000, tile=0)
    assert (fast - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("encoder", ["edsr_tiny", "rdn_tiny"])
@pytest.mark.parametrize("name", MODELS)
def test_tiled_equals_untiled(name: str, encoder: str) -> None:
    model = build_model(name, encoder).eval()
    lr = photo_lr(29, 23)
    for out_hw in [(58, 46), (87, 69), (70, 50)]:
        whole = predict(model, lr, out_hw, tile=0)
        for tile in (5, 8, 16):
            tiled = predict(model, lr, out_hw, tile=tile)
            assert (tiled - whole).abs().max().item() < 1e-5, (out_hw, tile)


def test_tile_margin_is_needed() -> None:
    """With the margin cut short, tiles visibly differ: the margin is what makes tiling exact."""
    model = build_model("lte", "edsr_tiny").eval()
    lr = photo_lr(24, 24)
    whole = predict(model, lr, (48, 48), tile=0)
    model.decoder.reach = -3  # this instance only: the margin is now the encoder's radius - 3
    short = predict(model, lr, (48, 48), tile=8)
    assert (short - whole).abs().max().item() > 1e-5


@pytest.mark.slow
def test_tiled_equals_untiled_with_the_real_edsr_baseline() -> None:
    model = build_model("lte", "edsr_baseline").eval()
    assert tile_margin(model) == model.receptive_radius == 34 + 3
    lr = photo_lr(90, 84)
    whole = predict(model, lr, (180, 168), tile=0)
    tiled = predict(model, lr, (180, 168), tile=40)
    assert (tiled - whole).abs().max().item() < 1e-5


def test_chunking_and_progress() -> None:
    model = build_model("liif", "edsr_tiny").eval()
    lr = photo_lr(12, 16)
    calls: list[tuple[int, int]] = []
    a = predict(model, lr, (36, 48), chunk=50, tile=6, progress=lambda d, t: calls.append((d, t)))
    b = predict(model, lr, (36, 48), chunk=30000, tile=6)
    assert torch.equal(a, b)
    assert calls == [(i, 6) for i in range(1, 7)]  # 2 x 3 tiles


@pytest.mark.parametrize("name", MODELS)
def test_bfloat16_is_close_to_float32(name: str) -> None:
    model = build_model(name, "edsr_tiny").eval()
    lr = photo_lr(16, 16)
    f32 = predict(model, lr, (48, 48), tile=0)
    bf16 = predict(model, lr, (48, 48), tile=0, dtype=torch.bfloat16)
    diff = (bf16 - f32).abs()
    assert diff.max().item() < 0.05
    assert bf16.dtype == torch.float32


@pytest.mark.parametrize("name", MODELS)
def test_both_kernels_honour_dtype(name: str) -> None:
    """bfloat16 changes both kernels' results (not silently ignored), and the same way."""
    model = build_model(name, "edsr_tiny").eval()
    lr = photo_lr(12, 12)
    f32 = predict(model, lr, (30, 30), tile=0, kernel="exact")
    exact = predict(model, lr, (30, 30), tile=0, kernel="exact", dtype=torch.bfloat16)
    fast = predict(model, lr, (30, 30), tile=0, kernel="fast", dtype=torch.bfloat16)
    assert exact.dtype == fast.dtype == torch.float32
    assert (exact - f32).abs().max().item() > 1e-5
    assert (fast - f32).abs().max().item() > 1e-5
    assert (fast - exact).abs().max().item() < 2e-3


def test_auto_tile_bounds_the_working_set() -> None:
    model = build_model("lte", "edsr_baseline").eval()
    small = torch.zeros(1, 3, 64, 64)
    big = torch.zeros(1, 3, 1024, 1024)
    assert auto_tile(model, small) == 0  # fits: encoded whole
    tile = auto_tile(model, big, budget=256 * 2**20)
    assert 32 <= tile < 1024 and tile % 8 == 0
    assert auto_tile(model, big, budget=64 * 2**40) == 0
    assert available_memory(torch.device("cpu")) > 0


def test_grid_cells_are_the_protocols() -> None:
    """The test grid's cells are make_cell's, bit for bit, enlarged per axis like predict's."""
    h, w = 37, 41
    coord, cell = query_grid((h, w), 1, cell_scale=(1.5, 1.0))
    expected = make_cell((h, w), h * w) * torch.tensor([1.5, 1.0])
    assert torch.equal(cell[0], expected)
    assert torch.equal(coord[0], make_coord((h, w)))
    # 6 x 41 LR -> 37 x 41 is x6.17 by x1: make_cell enlarges the rows by 6.17 / 4 only.
    enlarged = make_cell((h, w), 1, lr_hw=(6, 41), scale_max=4.0)
    assert torch.equal(enlarged, make_cell((h, w), 1) * torch.tensor([37 / 6 / 4, 1.0]))
