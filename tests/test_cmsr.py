"""Controllable multi-scale rendering (SPEC.md "CMSR"): tables as data, level selection, rendering
against a literal reading, tiles, the table builder, and the three commands that use them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cli import run_main
from lte.data.images import load_rgb
from lte.errors import UserError
from lte.geometry import make_cell, make_coord
from lte.inference import predict
from lte.models import build_model
from lte.multiscale import (
    CMSRTables,
    Level,
    applies,
    build_tables,
    predict_multiscale,
    update_table,
)
from test_lmf import model

#: The official LM-LTE tables (configs/cmsr/result/edsr-b_lm-lte_mse2e-5.yaml), as released.
OFFICIAL_LTE = """\
  6:
    1: 0.12
    2: 0.15
    4: 0.215
    6: 1
  8:
    1: 0.12
    2: 0.15
    4: 0.215
    6: 1
    8: 1
  12:
    1: 0.12
    2: 0.155
    4: 0.215
    6: 1
    12: 1
"""


def literal_cmsr(
    net, lr: torch.Tensor, out_hw: tuple[int, int], tables: CMSRTables
) -> torch.Tensor:
    """SPEC's CMSR read literally on one image: the whole image encoded once for the target cell;
    per level, every pixel's code complexity by a nearest ``grid_sample``, the band's pixels queried
    at the level's centres with its cell, and the levels composed by ``grid_sample`` (bilinear,
    border) from the normalised LR upwards."""
    h, w = lr.shape[-2:]
    levels = tables.levels((h, w), out_hw, net.scale_max)
    target = make_cell(out_hw, 1, lr_hw=(h, w), scale_max=net.scale_max).view(1, 1, 2)
    with torch.no_grad():
        state = net.encode(lr, cell=target)
        comp = net.complexity(state).unsqueeze(1)  # (1, 1, h, w)
        out = lr
        for lv in levels:
            coord = make_coord(lv.hw).unsqueeze(0)  # (1, qh·qw, 2)
            grid = coord.flip(-1).unsqueeze(1)
            c = F.grid_sample(comp, grid, mode="nearest", align_corners=False)[0, 0, 0]
            mask = lv.select(c)
            if not bool(mask.any()):
                continue
            rgb = net.query(state, coord[:, mask], torch.tensor([[lv.cell]]), kernel="exact")
            up = F.grid_sample(
                out, grid, mode="bilinear", padding_mode="border", align_corners=False
            )
            up = up[0, :, 0].t().clone()  # (qh·qw, 3)
            up[mask] = rgb[0]
            out = up.t().reshape(1, 3, *lv.hw)
        if tuple(out.shape[-2:]) != out_hw:
            coord = make_coord(out_hw).unsqueeze(0).flip(-1).unsqueeze(1)
            out = F.grid_sample(
                out, coord, mode="bilinear", padding_mode="border", align_corners=False
            )
            out = out[:, :, 0].reshape(1, 3, *out_hw)
    return out


def test_the_official_table_file_loads_and_selects_levels() -> None:
    tables = CMSRTables.from_data(__import__("yaml").safe_load(OFFICIAL_LTE))
    assert [s for s, _ in tables.tables] == [6.0, 8.0, 12.0]
    # x7: the first table with a key >= 7 is x8's; decode scales below 7 are 1, 2, 4, 6, and the
    # last threshold (6: 1) is not under 1, so nothing is rendered at x7 itself.
    levels = tables.levels((10, 20), (70, 140), 4.0)
    assert [(lv.scale, lv.hw, lv.low, lv.high) for lv in levels] == [
        (1, (10, 20), None, 0.12),
        (2, (20, 40), 0.12, 0.15),
        (4, (40, 80), 0.15, 0.215),
        (6, (60, 120), 0.215, None),
    ]
    assert levels[-1].cell == pytest.approx((2 / 60 * 1.5, 2 / 120 * 1.5))
    # x6: keys below 6 are 1, 2, 4; their last threshold 0.215 < 1 adds the target level.
    levels = tables.levels((10, 20), (60, 120), 4.0)
    assert [(lv.scale, lv.hw, lv.target) for lv in levels][-1] == (6.0, (60, 120), True)
    assert levels[-1].low == 0.215 and levels[-1].high is None
    # x30: beyond every key, the last table (x12's).
    assert [lv.scale for lv in tables.levels((10, 10), (300, 300), 4.0)] == [1, 2, 4, 6, 12]
    # A middle band is |c - mid| <= r (float32 c): values at its very edges may go either way.
    band = levels[1].select(torch.tensor([0.11, 0.121, 0.13, 0.149, 0.16]))
    assert band.tolist() == [False, True, True, True, False]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must be a mapping of target scales to tables"),
        ("[1, 2]", "must be a mapping of target scales"),
        ("6: {1: 0.1, 2: x}", "threshold 'x' must be a number"),
        ("6: {1: -0.1}", "threshold -0.1 must be a number from 0"),
        ("6: {0.5: 0.1}", "decode scale 0.5 must be a number from 1"),
        ("six: {1: 0.1}", "target scale 'six' must be a number"),
        ("6: {1: .nan}", "threshold nan must be a number"),
        ("6: 0.1", "the table of x6 must map"),
        ("6: {1: 0.1}\n  bad: [", "is not a YAML file of tables"),
        ("!!python/object/apply:os.system ['true']", "is not a YAML file of tables"),
    ],
)
def test_bad_table_files_get_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        CMSRTables.load(path, "--cmsr")
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert str(path) in str(info.value)


def test_tables_round_trip_through_yaml(tmp_path: Path) -> None:
    tables = CMSRTables.from_data({12: {1: 0.2, 1.5: 0.25, 6: 1}, 6: {1: 0.3}})
    path = tmp_path / "t.yaml"
    path.write_text(tables.to_yaml("a comment"))
    assert path.read_text().startswith("# lte CMSR tables\n# a comment\n6:\n  1: 0.3\n")
    assert CMSRTables.load(path) == tables


@pytest.mark.parametrize("kind", ["lm_lte", "lm_liif"])
@pytest.mark.parametrize(
    "data",
    [
        {6: {1: 0.4, 2: 0.5, 4: 0.6}},  # three lower levels and the target
        {8: {1: 0.45, 3: 1.0}},  # no target level: the last decode level takes the rest
        {6: {1: 10.0}},  # everything at x1 (no target level)
    ],
)
def test_rendering_matches_a_literal_reading(kind: str, data: dict) -> None:
    net = model(kind, "edsr_tiny")
    lr = torch.randn(1, 3, 9, 11)
    tables = CMSRTables.from_data(data)
    for out_hw in [(54, 66), (47, 70)]:  # x6, and anisotropic x5.2 by x6.4
        ref = literal_cmsr(net, lr, out_hw, tables)
        for tile in (0, 4):
            out, stats = predict_multiscale(net, lr, out_hw, tables, tile=tile, chunk=500)
            assert (out - ref).abs().max() < 1e-5, (out_hw, tile)
        assert 0 < stats.rendered < 1 and stats.pixels == out_hw[0] * out_hw[1]


def test_thresholds_of_zero_render_everything_at_the_target() -> None:
    """The band below 0 is empty, so the target level renders every pixel: plain prediction."""
    net = model("lm_liif", "rdn_tiny")
    lr = torch.randn(2, 3, 8, 7)
    tables = CMSRTables.from_data({6: {1: 0.0, 2: 0.0}})
    out, stats = predict_multiscale(net, lr, (48, 42), tables)
    assert (stats.rendered, stats.full_scale) == (1.0, 1.0)
    assert (out - predict(net, lr, (48, 42))).abs().max() < 1e-6
    # predict's cmsr= renders this way beyond x4 only; within it, nothing changes.
    assert applies(net, (8, 7), (48, 42)) and not applies(net, (8, 7), (32, 28))
    busy = CMSRTables.from_data({6: {1: 10.0}})
    assert torch.equal(predict(net, lr, (32, 28), cmsr=busy), predict(net, lr, (32, 28)))
    assert not torch.equal(predict(net, lr, (48, 42), cmsr=busy), predict(net, lr, (48, 42)))


def test_only_lmf_models_render_at_several_scales() -> None:
    net = build_model("lte", "edsr_tiny").eval()
    with pytest.raises(
        UserError, match=r"needs an LMF model \(lm_lte, lm_liif\).*this checkpoint is lte"
    ):
        predict_multiscale(
            net, torch.randn(1, 3, 4, 4), (24, 24), CMSRTables.from_data({6: {1: 1}})
        )


def literal_update(table: dict, net, lr: torch.Tensor, scale: int, mse: float) -> None:
    """The official ``update_scale2mean`` transcribed: whole-grid renders, ``grid_sample`` resizes."""
    h, w = lr.shape[-2:]
    out_hw = (h * scale, w * scale)
    coord = make_coord(out_hw).unsqueeze(0)
    cell = make_cell(out_hw, 1, lr_hw=(h, w), scale_max=4.0).view(1, 1, 2)
    with torch.no_grad():
        state = net.encode(lr, cell=cell)
        full = net.query(state, coord, cell)[0]  # (Q, 3)
        comp = net.complexity(state).unsqueeze(1)
        grid = coord.flip(-1).unsqueeze(1)
        mean = F.grid_sample(comp, grid, mode="nearest", align_corners=False)[0, 0, 0]
        samples = [net.complexity_max * i / 100 for i in range(101)]
        max_scale = math.sqrt(coord.shape[1] / h / w)
        for d in list(table):
            if d >= max_scale:
                break
            qh, qw = int(h * d), int(w * d)
            q = net.query(
                state, make_coord((qh, qw)).unsqueeze(0), torch.tensor([[[2 / qh, 2 / qw]]])
            )
            img = q[0].t().reshape(1, 3, qh, qw)
            pred = F.grid_sample(
                img, grid, mode="bilinear", padding_mode="border", align_corners=False
            )
            pred = pred[0, :, 0].t()
            best = table[d]
            for mid in list(samples):
                idx = torch.where((mean - mid).abs() <= 0.001)[0]
                loss = F.mse_loss(pred[idx], full[idx])
                if loss == loss:
                    if loss <= mse:
                        samples.remove(mid)
                        best = mid
                    else:
                        break
            table[d] = min(best, table[d])
            for s in table:
                if s < d and table[s] > table[d]:
                    table[s] = table[d]
        if samples:
            table[max_scale] = samples[-1]
            for s in table:
                if s < max_scale and table[s] > table[max_scale]:
                    table[s] = table[max_scale]


@pytest.mark.parametrize("kind", ["lm_lte", "lm_liif"])
def test_the_table_update_is_the_official_one(kind: str) -> None:
    net = model(kind, "edsr_tiny")
    photo = torch.from_numpy(load_rgb(Path(__file__).parents[1] / "data/sample/val/chelsea.png"))
    ours: dict[float, float] = {1.0: 1.0, 1.5: 1.0, 2.0: 1.0, 3.0: 1.0, 4.0: 1.0, 6.0: 1.0}
    ref = dict(ours)
    for mse in (2e-5, 2e-3):  # tight, then loose: the second image lowers the entries further
        for y0 in (40, 120):
            lr = (photo[y0 : y0 + 14, 60:76].permute(2, 0, 1).float() / 255 - 0.5) / 0.5
            lr = lr.unsqueeze(0)
            update_table(ours, net, lr, (84, 96), mse=mse, tile=5)
            literal_update(ref, net, lr, 6, mse)
            assert ours == pytest.approx(ref, abs=1e-9)
    assert list(ours.values()) == sorted(ours.values())  # lower scales never render more
    assert ours[1.0] < ours[6.0]


def test_build_tables_makes_one_table_per_scale() -> None:
    net = model("lm_lte", "edsr_tiny")
    rng = np.random.default_rng(0)
    images = [(f"{i}.png", rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)) for i in range(2)]
    tables = build_tables(net, iter(images), [12, 6], mse=1e-3, tile=0)
    assert [s for s, _ in tables.tables] == [6.0, 12.0]
    for s, table in tables.tables:
        assert [d for d, _ in table] == [d for d in (1, 1.5, 2, 3, 4, 6, 8, 12) if d <= s]
        values = [t for _, t in table]
        assert values == sorted(values) and all(0 <= t <= 1 for t in values)
    with pytest.raises(UserError, match=r"image 'tiny\.png' at x12"):
        build_tables(net, [("tiny.png", np.zeros((5, 5, 3), np.uint8))], [12])


def test_levels_cover_the_output_once() -> None:
    """Every pixel of every level is selected by exactly one band, or by both at a shared edge."""
    tables = CMSRTables.from_data({6: {1: 0.2, 2: 0.4, 4: 0.6}})
    levels = tables.levels((5, 5), (30, 30), 4.0)
    c = torch.linspace(0, 1.5, 301)
    chosen = torch.stack([lv.select(c) for lv in levels])
    assert bool(chosen.any(0).all())
    assert isinstance(levels[0], Level) and levels[-1].target


# --- the commands ----------------------------------------------------------------------------------


def test_cmsr_command_refuses_before_work(tmp_path: Path) -> None:
    from lte.cli.cmsr import main

    def run(*argv: str):
        return run_main(lambda: main(list(argv)), argv, prog="lte-cmsr")

    other = tmp_path / "other.yaml"
    other.write_text("6: {1: 0.1}\n")
    images = str(Path(__file__).parents[1] / "data" / "sample" / "val")
    base = ["--ckpt", str(tmp_path / "missing.pth"), "--images", images]
    cases = {
        ("--out", str(other)): "already exists: choose another name, or pass --overwrite",
        ("--out", str(other), "--overwrite"): "was not written by lte.cmsr",
        ("--out", str(tmp_path / "t.yaml"), "--mse", "0"): "--mse must be a positive number",
        ("--out", str(tmp_path / "t.yaml"), "--scales", "1"): "--scales: 1 is not a scale > 1",
        ("--out", str(tmp_path / "t.yaml")): "does not exist",
    }
    for extra, message in cases.items():
        res = run(*base, *extra)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert other.read_text() == "6: {1: 0.1}\n"
