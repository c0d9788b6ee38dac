"""The fast, tiled inference path against the literal per-neighbour reference and untiled encoding."""

from __future__ import annotations

import pytest
import torch

from conftest import sample_photos
from literal import LITERAL
from lte.data.images import load_rgb, normalize, to_tensor
from lte.geometry import (
    axis_neighbours,
    combine_axes,
    ensemble_neighbours,
    make_cell,
    make_coord,
)
from lte.inference import (
    auto_tile,
    available_memory,
    batched_query,
    predict,
    query_grid,
    tile_margin,
)
from lte.models.build import build_model

MODELS = ("lte", "liif", "metasr")


def photo_lr(h: int, w: int, top: int = 40, left: int = 60) -> torch.Tensor:
    """A normalised ``(1, 3, h, w)`` crop of a real photo."""
    img = load_rgb(sample_photos()[0])[top : top + h, left : left + w]
    return normalize(to_tensor(img)).unsqueeze(0)


def literal_image(model, lr: torch.Tensor, out_hw: tuple[int, int], cell_scale=(1.0, 1.0)):
    name = {"LTEDecoder": "lte", "LIIFDecoder": "liif", "MetaSRDecoder": "metasr"}[
        type(model.decoder).__name__
    ]
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


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("out_hw", [(26, 30), (39, 45), (52, 60), (70, 33)])
def test_fast_predict_equals_the_literal_reference(name: str, out_hw: tuple[int, int]) -> None:
    model = build_model(name, "edsr_tiny").eval()
    lr = photo_lr(13, 15)
    ref = literal_image(model, lr, out_hw)
    fast = predict(model, lr, out_hw, tile=0)
    assert (fast - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("name", MODELS)
def test_random_queries_and_per_query_cells_equal_the_literal(name: str) -> None:
    """Training-style queries (random points, per-query cells, a batch of two) take the same path."""
    model = build_model(name, "edsr_tiny").eval()
    lr = torch.cat([photo_lr(11, 9), photo_lr(11, 9, top=100)])
    coord = torch.rand(2, 300, 2) * 2 - 1
    cell = torch.rand(2, 300, 2) * 0.2 + 0.01
    with torch.no_grad():
        ref = LITERAL[name](model, lr, coord, cell)
        fast = batched_query(model, model.encode(lr), coord, cell, chunk=77)
    assert (fast - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("name", MODELS)
def test_enlarged_cells_and_a_shared_cell(name: str) -> None:
    model = build_model(name, "edsr_tiny").eval()
    lr = photo_lr(8, 10)
    ref = literal_image(model, lr, (64, 80), cell_scale=(2.0, 2.0))  # x8 with scale_max 4
    fast = predict(model, lr, (64, 80), cell_scale=(2.0, 2.0), chunk=1000, tile=0)
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
    import lte.inference as inference

    model = build_model("lte", "edsr_tiny").eval()
    lr = photo_lr(24, 24)
    whole = predict(model, lr, (48, 48), tile=0)
    saved = inference.DECODER_REACH
    try:
        inference.DECODER_REACH = -3
        short = predict(model, lr, (48, 48), tile=8)
    finally:
        inference.DECODER_REACH = saved
    assert (short - whole).abs().max().item() > 1e-5


@pytest.mark.slow
def test_tiled_equals_untiled_with_the_real_edsr_baseline() -> None:
    model = build_model("lte", "edsr_baseline").eval()
    assert tile_margin(model) == 34 + 3
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
    """predict's shared cell is make_cell's, bit for bit."""
    h, w = 37, 41
    coord, cell = query_grid((h, w), 1, cell_scale=(1.5, 1.5))
    expected = make_cell((h, w), h * w) * torch.tensor([1.5, 1.5])
    assert torch.equal(cell[0], expected)
    assert torch.equal(coord[0], make_coord((h, w)))
