"""LTE+ (the official ``lte-fast`` release, SPEC.md "LTE+"): its file layout, its math, its sampler
and its "fast" evaluation.

The release is LTE with the MLP written as 1x1 convolutions and queries batched as a 2-D grid. It
loads into our LTE decoder, so the tests check (a) the layout as listed in
``official_checkpoints.json``, (b) the forward pass against a literal reading of SPEC's LTE+ on a
grid (written here, from the file's own tensors), and that it equals LTE on the same weights,
(c) export and round trip, (d) the grid sampler and (e) whole-grid evaluation.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from cli import run_in_process, run_module
from conftest import sample_photos
from literal import literal_lte
from lte.checkpoint import (
    checkpoint_metadata,
    convert_checkpoint,
    load_checkpoint,
    official_state,
    save_official,
)
from lte.data.datasets import RandomScaleDataset, check_sampling
from lte.data.images import load_rgb, save_rgb
from lte.data.sampling import grid_train_sample, train_sample
from lte.data.store import ImageStore
from lte.errors import UserError
from lte.evaluation import EvalSettings, evaluate_testset
from lte.geometry import make_coord
from lte.models.spec import ModelSpec
from lte.testsets import FolderSet
from lte.training.data import SeededSamples

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = json.loads((ROOT / "tests" / "data" / "official_checkpoints.json").read_text())["models"]
RELEASE = LAYOUT["lte_fast_edsr"]
#: The constants the released EDSR files hold in their (unused) mean-shift layers.
RGB_MEAN = torch.tensor([0.4488, 0.4371, 0.4040])
MEAN_SHIFT = {
    "encoder.sub_mean.weight": torch.eye(3).view(3, 3, 1, 1),
    "encoder.sub_mean.bias": -RGB_MEAN,
    "encoder.add_mean.weight": torch.eye(3).view(3, 3, 1, 1),
    "encoder.add_mean.bias": RGB_MEAN,
}
TINY_ENCODER = {"kind": "edsr", "n_resblocks": 2, "n_feats": 16, "res_scale": 1.0, "in_channels": 3}


def write_release(path: Path, seed: int = 0, **edits: object) -> dict[str, Tensor]:
    """The ``lte_fast_edsr`` release straight from the JSON listing: random tensors, torch.save.

    The mean-shift layers hold the release's constants (the model never uses them, export
    writes them back), every other weight is random.
    """
    gen = torch.Generator().manual_seed(seed)
    shapes = RELEASE["state_dict_shapes"]
    sd = {k: torch.randn(*shape, generator=gen) for k, shape in shapes.items()}
    sd |= {k: v.clone() for k, v in MEAN_SHIFT.items()}
    model = {"name": RELEASE["name"], "args": json.loads(json.dumps(RELEASE["args"])), "sd": sd}
    model |= edits
    torch.save({"model": model}, path)
    return sd


def tiny_lte(hidden: int = 16, mlp: tuple[int, ...] = (16, 16), seed: int = 0):
    """A tiny LTE (EDSR 2x16 encoder) with PyTorch's random initialisation (biases included)."""
    description = {
        "encoder": TINY_ENCODER,
        "decoder": {"kind": "lte", "hidden_dim": hidden, "mlp_hidden": list(mlp)},
        "scale_max": 4.0,
    }
    torch.manual_seed(seed)
    return ModelSpec.from_dict(description).build().eval()


# --- the release layout ---------------------------------------------------------------------------


def test_release_loads_with_every_weight_in_place(tmp_path: Path) -> None:
    path = tmp_path / "edsr-baseline-lte-plus.pth"
    sd = write_release(path)
    loaded = load_checkpoint(path)
    # LTE's function: labelled lte, the origin kept apart.
    assert (loaded.model_name, loaded.encoder_name) == ("lte", "edsr_baseline")
    assert loaded.source == "official" and loaded.release == "lte-fast"
    assert loaded.model.describe()["decoder"] == {
        "kind": "lte",
        "hidden_dim": 256,
        "mlp_hidden": [256, 256, 256],
    }
    own = loaded.model.state_dict()
    used = set()
    for name, value in own.items():
        key = name if name.startswith("encoder.") else name.removeprefix("decoder.")
        key = key.removeprefix("imnet.")  # layers.N: the 1x1 convolutions
        expected = sd[key]
        if key.startswith("layers.") and key.endswith(".weight"):
            assert expected.shape[2:] == (1, 1)
            expected = expected[:, :, 0, 0]
        if key.startswith("freq."):  # LTE's channel 2k is the release's k, 2k+1 its K+k
            half = expected.shape[0] // 2
            assert torch.equal(value[0::2], expected[:half]), name
            assert torch.equal(value[1::2], expected[half:]), name
            used.add(key)
            continue
        assert torch.equal(value, expected), name
        used.add(key)
    assert set(sd) - used == set(MEAN_SHIFT)  # only the unused mean shift is not in the model
    assert sum(v.numel() for v in sd.values()) == RELEASE["parameters"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"args": {**RELEASE["args"], "num_layer": 0}}, "model.args.num_layer must be a positive"),
        ({"args": {**RELEASE["args"], "out_dim": 4}}, "model.args.out_dim must be 3 (RGB)"),
        ({"args": {**RELEASE["args"], "imnet_spec": {}}}, "unknown field 'imnet_spec'"),
        ({"args": {**RELEASE["args"], "num_layer": 4}}, "lacks weights the model needs"),
        ({"args": {**RELEASE["args"], "hidden_dim": 128}}, "wrong shape: decoder.coef.weight"),
    ],
    ids=["num_layer-0", "out_dim", "unknown-arg", "more-layers", "narrower"],
)
def test_bad_release_args_get_one_line_errors(tmp_path: Path, edit: dict, message: str) -> None:
    path = tmp_path / "bad.pth"
    write_release(path, **edit)
    with pytest.raises(UserError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


def test_release_weights_checked_by_name_and_shape(tmp_path: Path) -> None:
    path = tmp_path / "edit.pth"
    write_release(path)
    obj = torch.load(path, weights_only=True)
    sd = obj["model"]["sd"]
    cases = {
        "does not use: imnet.layers.0.weight": {"imnet.layers.0.weight": sd["layers.0.weight"]},
        "wrong shape: decoder.imnet.layers.2.weight (256, 256, 3, 3)": {
            "layers.2.weight": torch.zeros(256, 256, 3, 3)
        },
        "lacks weights the model needs: decoder.imnet.layers.6.bias": {"layers.6.bias": None},
    }
    for message, change in cases.items():
        edited = {k: v for k, v in sd.items() if change.get(k, v) is not None}
        edited |= {k: v for k, v in change.items() if v is not None}
        torch.save({"model": {**obj["model"], "sd": edited}}, path)
        with pytest.raises(UserError, match=re.escape(message)) as info:
            load_checkpoint(path)
        assert "\n" not in str(info.value)


# --- the math ---------------------------------------------------------------------------------------


def literal_lte_plus(
    sd: dict[str, Tensor], feat: Tensor, inp: Tensor, coord: Tensor, cell: Tensor
) -> Tensor:
    """SPEC's LTE+ read literally, from the release's tensors: ``(B, 3, H, W)``.

    ``coord`` is a ``(B, H, W, 2)`` grid of (y, x) queries, ``cell`` one ``(B, 2)`` row per image;
    frequency k is (channel k, channel K+k) of the frequency map (the halves pairing, not LTE's
    (2k, 2k+1)); the MLP runs as 1x1 convolutions on ``(B, C, H, W)`` maps; local ensemble with each prediction
    weighted by the diagonally opposite area; bilinear residual of the input.
    """
    b, _, h, w = feat.shape
    coef = F.conv2d(feat, sd["coef.weight"], sd["coef.bias"], padding=1)
    freq = F.conv2d(feat, sd["freq.weight"], sd["freq.bias"], padding=1)
    centres = make_coord((h, w), flatten=False).permute(2, 0, 1).unsqueeze(0).expand(b, 2, h, w)
    hw = torch.tensor([float(h), float(w)])
    phase = (cell * hw) @ sd["phase.weight"].T  # (B, K)
    layers = sorted(int(k.split(".")[1]) for k in sd if re.match(r"layers\.\d+\.weight$", k))
    preds, areas = [], []
    for vy in (-1, 1):
        for vx in (-1, 1):
            q = coord.clone()
            q[..., 0] += vy / h + 1e-6
            q[..., 1] += vx / w + 1e-6
            q = q.clamp(-1 + 1e-6, 1 - 1e-6)
            look = q.flip(-1)  # grid_sample reads (x, y)
            a = F.grid_sample(coef, look, mode="nearest", align_corners=False)  # (B, 2K, H, W)
            f = F.grid_sample(freq, look, mode="nearest", align_corners=False)
            c = F.grid_sample(centres, look, mode="nearest", align_corners=False)  # (B, 2, H, W)
            rel = (coord.permute(0, 3, 1, 2) - c) * hw.view(1, 2, 1, 1)
            k = f.shape[1] // 2  # the halves pairing: f_y of frequency k is channel k, f_x is K+k
            theta = f[:, :k] * rel[:, :1] + f[:, k:] * rel[:, 1:] + phase[:, :, None, None]
            x = a * torch.cat([torch.cos(math.pi * theta), torch.sin(math.pi * theta)], dim=1)
            for i in layers:
                x = F.conv2d(x, sd[f"layers.{i}.weight"], sd[f"layers.{i}.bias"])
                if i != layers[-1]:
                    x = F.relu(x)
            preds.append(x)
            areas.append(torch.abs(rel[:, 0] * rel[:, 1]) + 1e-9)
    total = sum(areas)
    out = 0
    for pred, area in zip(preds, areas[::-1], strict=True):  # (0, 3) and (1, 2) swapped
        out = out + pred * (area / total).unsqueeze(1)
    residual = F.grid_sample(
        inp, coord.flip(-1), mode="bilinear", padding_mode="border", align_corners=False
    )
    return out + residual


def test_forward_is_spec_lte_plus_and_equals_lte(tmp_path: Path) -> None:
    net = tiny_lte()
    plus, plain = tmp_path / "plus.pth", tmp_path / "plain.pth"
    save_official(net, plus, layout="lte-fast")
    save_official(net, plain)
    release = torch.load(plus, weights_only=True)["model"]
    assert release["name"] == "lte-fast"
    assert release["args"]["num_layer"] == 2 and release["args"]["hidden_dim"] == 16
    assert release["sd"]["layers.4.weight"].shape == (3, 16, 1, 1)
    model_plus = load_checkpoint(plus).model
    model_lte = load_checkpoint(plain).model

    torch.manual_seed(1)
    inp = torch.rand(2, 3, 7, 6) * 2 - 1
    out_hw = (17, 13)  # non-integer scales, different per axis
    coord = make_coord(out_hw, flatten=False).unsqueeze(0).expand(2, *out_hw, 2).contiguous()
    cell = torch.tensor([[2 / 17, 2 / 13], [3 / 17, 5 / 13]])  # one cell per image, not shared
    with torch.no_grad():
        feat = model_plus.encoder(inp)
        expected = literal_lte_plus(release["sd"], feat, inp, coord, cell)  # (B, 3, H, W)
        flat, one_cell = coord.reshape(2, -1, 2), cell.unsqueeze(1)
        for model in (model_plus, model_lte):
            state = model.encode(inp)
            for kernel in ("exact", "fast"):
                got = model.query(state, flat, one_cell, kernel=kernel)  # (B, Q, 3)
                got = got.transpose(1, 2).reshape(2, 3, *out_hw)
                torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        # LTE+ and LTE hold the same function: equal outputs from the same weights, and both
        # equal the literal LTE reading (tests/literal.py) on flat queries.
        a = model_plus(inp, flat, one_cell)
        b = model_lte(inp, flat, one_cell)
        assert torch.equal(a, b)
        per_query = one_cell.expand(2, flat.shape[1], 2)
        torch.testing.assert_close(
            a, literal_lte(model_lte, inp, flat, per_query), rtol=1e-5, atol=1e-5
        )


def write_tiny_release(path: Path, hidden: int = 16, num_layer: int = 2, seed: int = 0) -> dict:
    """A tiny ``lte-fast`` file written by hand in the release's own layout, never through our
    export: a tiny EDSR's weights, then ``coef``/``freq``/``phase`` and 1x1-conv ``layers.N`` as
    random tensors in the order the released class holds them."""
    torch.manual_seed(seed)
    encoder = tiny_lte(hidden).encoder.state_dict()
    gen = torch.Generator().manual_seed(seed + 1)
    c = TINY_ENCODER["n_feats"]
    shapes = {
        "coef.weight": (hidden, c, 3, 3),
        "coef.bias": (hidden,),
        "freq.weight": (hidden, c, 3, 3),
        "freq.bias": (hidden,),
        "phase.weight": (hidden // 2, 2),
    }
    for i in range(num_layer):
        shapes |= {
            f"layers.{2 * i}.weight": (hidden, hidden, 1, 1),
            f"layers.{2 * i}.bias": (hidden,),
        }
    shapes |= {f"layers.{2 * num_layer}.weight": (3, hidden, 1, 1)}
    shapes |= {f"layers.{2 * num_layer}.bias": (3,)}
    sd = {f"encoder.{k}": v.clone() for k, v in encoder.items()}
    sd |= {k: torch.randn(*shape, generator=gen) * 0.3 for k, shape in shapes.items()}
    args = {
        "encoder_spec": {
            "name": "edsr",
            "args": {"no_upsampling": True, "n_resblocks": 2, "n_feats": c, "res_scale": 1.0},
        },
        "num_layer": num_layer,
        "hidden_dim": hidden,
        "out_dim": 3,
    }
    torch.save({"model": {"name": "lte-fast", "args": args, "sd": sd}}, path)
    return sd


def grid_queries(b: int, out_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """A ``(B, H, W, 2)`` query grid and one ``(B, 2)`` cell per image (not shared)."""
    coord = make_coord(out_hw, flatten=False).unsqueeze(0).expand(b, *out_hw, 2).contiguous()
    cell = torch.tensor([[2 / out_hw[0], 2 / out_hw[1]], [3 / out_hw[0], 5 / out_hw[1]]])[:b]
    return coord, cell


def test_hand_written_release_is_spec_lte_plus(tmp_path: Path) -> None:
    """A release file laid out as the official class holds it, loaded by us, is SPEC's LTE+ (which
    pairs frequency k as channels (k, K+k)) within 1e-5; loaded without the reorder it is not."""
    path = tmp_path / "plus.pth"
    sd = write_tiny_release(path)
    model = load_checkpoint(path).model
    torch.manual_seed(2)
    inp = torch.rand(2, 3, 9, 7) * 2 - 1
    out_hw = (23, 18)
    coord, cell = grid_queries(2, out_hw)
    flat, one_cell = coord.reshape(2, -1, 2), cell.unsqueeze(1)
    with torch.no_grad():
        feat = model.encoder(inp)
        expected = literal_lte_plus(sd, feat, inp, coord, cell)  # (B, 3, H, W)
        got = model(inp, flat, one_cell).transpose(1, 2).reshape(2, 3, *out_hw)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

        # The pairing matters: the same file with the frequency channels taken in LTE's order
        # as stored (the reorder skipped) is another function, far beyond float32 noise.
        skipped = load_checkpoint(path).model
        skipped.decoder.freq.weight.copy_(sd["freq.weight"])
        skipped.decoder.freq.bias.copy_(sd["freq.bias"])
        wrong = skipped(inp, flat, one_cell).transpose(1, 2).reshape(2, 3, *out_hw)
        assert (wrong - expected).abs().max() > 1e-2


def test_fourier_of_a_release_reads_the_halves_pairing(tmp_path: Path) -> None:
    """``lte.fourier`` on an LTE+ file shows the frequencies SPEC's LTE+ uses: (f_y, f_x) of
    frequency k = channels (k, K+k) of the release's frequency map."""
    path = tmp_path / "plus.pth"
    sd = write_tiny_release(path, hidden=16)
    model = load_checkpoint(path).model
    lr = torch.rand(1, 3, 6, 5) * 2 - 1
    with torch.no_grad():
        maps = model.fourier(lr)
        freq = F.conv2d(model.encoder(lr), sd["freq.weight"], sd["freq.bias"], padding=1)
        amp = F.conv2d(model.encoder(lr), sd["coef.weight"], sd["coef.bias"], padding=1)
    k = 8
    torch.testing.assert_close(maps.freq[:, :, 0], freq[:, :k], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(maps.freq[:, :, 1], freq[:, k:], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(maps.amplitude, amp, rtol=1e-5, atol=1e-6)


def test_hand_written_release_round_trip_is_byte_identical(tmp_path: Path) -> None:
    """lte-fast -> lte checkpoint -> lte-fast gives back every weight bit for bit."""
    src, mid, dst = tmp_path / "plus.pth", tmp_path / "mid.ckpt", tmp_path / "again.pth"
    sd = write_tiny_release(src)
    convert_checkpoint(src, mid)
    convert_checkpoint(mid, dst, to="lte-fast")
    back = torch.load(dst, weights_only=True)["model"]["sd"]
    own = {k: v for k, v in back.items() if "mean" not in k}  # EDSR's recomputed mean shift
    assert set(own) == set(sd)
    for key, value in sd.items():
        assert back[key].dtype == value.dtype and torch.equal(back[key], value), key


# --- export -----------------------------------------------------------------------------------------


def test_release_round_trip_is_exact(tmp_path: Path) -> None:
    src, dst = tmp_path / "release.pth", tmp_path / "again.pth"
    write_release(src)
    save_official(load_checkpoint(src).model, dst, layout="lte-fast")
    a = torch.load(src, weights_only=True)["model"]
    b = torch.load(dst, weights_only=True)["model"]
    assert (b["name"], b["args"]) == (a["name"], a["args"]) == (RELEASE["name"], RELEASE["args"])
    assert set(b["sd"]) == set(a["sd"])  # the same keys
    for key, value in a["sd"].items():
        assert b["sd"][key].shape == value.shape and torch.equal(b["sd"][key], value), key
    # The standard layout of the same model is the `lte` release.
    state = official_state(load_checkpoint(dst).model)["model"]
    assert state["args"] == LAYOUT["lte_edsr"]["args"]
    assert {k: list(v.shape) for k, v in state["sd"].items()} == LAYOUT["lte_edsr"][
        "state_dict_shapes"
    ]


def test_lte_fast_layout_refuses_other_models(tmp_path: Path) -> None:
    liif = ModelSpec.from_dict(
        {
            "encoder": TINY_ENCODER,
            "decoder": {"kind": "liif", "mlp_hidden": [16, 16]},
            "scale_max": 4.0,
        }
    ).build()
    cases = {
        "layout 'lte-fast' holds LTE models only, and this model's decoder is liif": liif,
        "needs every MLP hidden width equal to hidden_dim (16)": tiny_lte(16, (32, 32)),
        "not an official layout": tiny_lte(),
    }
    for message, model in cases.items():
        layout = "lte-faster" if message == "not an official layout" else "lte-fast"
        path = tmp_path / "x.pth"
        with pytest.raises(UserError, match=re.escape(message)) as info:
            save_official(model, path, layout=layout)
        assert "\n" not in str(info.value) and not path.exists()


def test_converter_writes_the_lte_fast_layout(tmp_path: Path) -> None:
    net = tiny_lte()
    src = tmp_path / "run.ckpt"
    sd = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": sd, "lte": checkpoint_metadata(net)}, src)
    script = ROOT / "scripts" / "convert_checkpoint.py"

    def convert(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300
        )

    dst = tmp_path / "plus.pth"
    res = convert(str(src), str(dst), "--to", "lte-fast")
    assert res.returncode == 0, res.stderr
    assert torch.load(dst, weights_only=True)["model"]["name"] == "lte-fast"
    back = tmp_path / "back.ckpt"
    res = convert(str(dst), str(back))
    assert res.returncode == 0 and "official lte-fast" in res.stderr, res.stderr
    for (name, a), b in zip(
        net.state_dict().items(), load_checkpoint(back).model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


# --- the grid sampler ---------------------------------------------------------------------------------


def test_grid_sample_is_the_random_sample_as_a_grid(photo_path: Path) -> None:
    img = load_rgb(photo_path)
    for seed in range(4):
        common = {"inp_size": 12, "scale_min": 1.0, "scale_max": 4.0}
        flat = train_sample(
            img, sample_q=144, generator=torch.Generator().manual_seed(seed), **common
        )
        grid = grid_train_sample(img, generator=torch.Generator().manual_seed(seed), **common)
        assert grid["coord"].shape == (12, 12, 2) and grid["gt"].shape == (12, 12, 3)
        assert grid["cell"].shape == (2,) and grid["inp"].shape == (3, 12, 12)
        side = round(12 * float(grid["scale"]))
        torch.testing.assert_close(grid["cell"], torch.tensor([2 / side, 2 / side]), rtol=0, atol=0)
        assert torch.equal(grid["coord"].reshape(-1, 2), flat["coord"])
        assert torch.equal(grid["gt"].reshape(-1, 3), flat["gt"])
        assert torch.equal(grid["inp"], flat["inp"]) and torch.equal(grid["scale"], flat["scale"])
        # 144 distinct HR pixels of the crop.
        assert len({tuple(c) for c in grid["coord"].reshape(-1, 2).tolist()}) == 144


def test_fast_dataset_keeps_per_sample_seeds() -> None:
    store = ImageStore(sample_photos()[:2], min_size=48)
    data = SeededSamples(RandomScaleDataset(store, inp_size=12, sample_q=144, sampler="fast"))
    first, again, other = data[(1, 123)], data[(1, 123)], data[(1, 124)]
    for key in first:
        assert torch.equal(first[key], again[key]), key
    assert not torch.equal(first["coord"], other["coord"])
    flat = SeededSamples(RandomScaleDataset(store, inp_size=12, sample_q=144))[(1, 123)]
    assert torch.equal(first["gt"].reshape(-1, 3), flat["gt"])  # the same draw, as a grid


def test_bad_sampler_options() -> None:
    with pytest.raises(UserError, match=r"data\.sampler='grid' must be one of random, fast"):
        check_sampling(48, 1, 4, 2304, 1, "grid")
    with pytest.raises(UserError, match=r"data\.sample_q=64 must be 256 \(data\.inp_size=16"):
        check_sampling(16, 1, 4, 64, 1, "fast")


# --- fast evaluation ------------------------------------------------------------------------------------


def test_fast_evaluation_scores_like_the_chunked_one(tmp_path: Path) -> None:
    """The whole HR grid in one call gives the chunked PSNR on the bundled photos (see docs).

    Central 96x72 crops of the three validation photos keep it quick; the full photos give the
    same agreement (docs/evaluation.md).
    """
    for src in sorted((ROOT / "data" / "sample" / "val").glob("*.png")):
        img = load_rgb(src)
        y0, x0 = (img.shape[0] - 72) // 2, (img.shape[1] - 96) // 2
        save_rgb(img[y0 : y0 + 72, x0 : x0 + 96], tmp_path / src.name)
    photos = FolderSet(tmp_path, name="sample", protocol="div2k")
    model = tiny_lte()
    scales = [3.5]
    chunked = evaluate_testset(model, photos, EvalSettings(scales, chunk=500, tile=0))
    fast = evaluate_testset(model, photos, EvalSettings(scales, chunk=500, tile=None, fast=True))
    for a, b in zip(chunked, fast, strict=True):
        diffs = [abs(x.psnr - y.psnr) for x, y in zip(a.per_image, b.per_image, strict=True)]
        assert len(diffs) == 3 and max(diffs) <= 1e-6, diffs
        assert abs(a.psnr - b.psnr) <= 1e-6


def test_fast_evaluation_options() -> None:
    assert EvalSettings([2], tile=None, fast=True).tile == 0
    with pytest.raises(UserError, match=r"eval\.fast=true .* drop eval\.tile=64"):
        EvalSettings([2], tile=64, fast=True)
    with pytest.raises(UserError, match=r"eval\.fast=yes must be true or false"):
        EvalSettings([2], fast="yes")


# --- end to end ----------------------------------------------------------------------------------------


def run(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_module(module, *args, cwd=cwd)


@pytest.mark.slow
def test_train_lte_plus_then_score_it(tmp_path: Path) -> None:
    """``experiment=edsr_baseline_lte_fast`` trains on grid batches; lte.test scores it both ways.

    Training runs in a subprocess; lte.test and lte.upscale through their entry points in-process.
    """
    res = run(
        "lte.train",
        "experiment=edsr_baseline_lte_fast",
        "data=sample",
        "encoder=edsr_tiny",
        "model.decoder.hidden_dim=16",
        "model.decoder.mlp_hidden=[16,16]",
        "data.inp_size=12",
        "data.sample_q=144",
        "data.batch_size=4",
        "data.repeat=1",
        "data.val_inp_size=8",
        "data.val_scales=[2]",
        "trainer=cpu",
        "trainer.max_steps=3",
        "trainer.limit_val_batches=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "hydra.run.dir=" + str(tmp_path / "run"),
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    ckpts = sorted((tmp_path / "run").rglob("last.ckpt"))
    assert ckpts, list((tmp_path / "run").rglob("*"))
    raw = torch.load(ckpts[0], map_location="cpu", weights_only=True)
    assert raw["global_step"] == 3
    assert raw["train_config"]["data"]["sampler"] == "fast"
    # The trained model in the released LTE+ layout: lte.test and lte.upscale take that file too.
    plus = tmp_path / "lte-plus.pth"
    convert_checkpoint(ckpts[0], plus, to="lte-fast")
    scores = {}
    for name, ckpt, fast in (
        ("chunked", ckpts[0], "false"),
        ("fast", ckpts[0], "true"),
        ("release", plus, "true"),
    ):
        out = tmp_path / f"results_{name}.json"
        res = run_in_process(
            "lte.test",
            f"ckpt={ckpt}",
            "testset=sample",
            "scales=[3]",
            f"eval.fast={fast}",
            f"results_file={out}",
            "hydra.run.dir=" + str(tmp_path / f"test_{name}"),
            cwd=ROOT,
        )
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        (record,) = json.loads(out.read_text())
        assert (record["model"], record["encoder"]) == ("lte", "edsr-n_resblocks=2-n_feats=16")
        assert record["images"] == 3 and np.isfinite(record["psnr"])
        scores[name] = record["psnr"]
    assert abs(scores["fast"] - scores["chunked"]) <= 1e-6, scores
    assert abs(scores["release"] - scores["chunked"]) <= 1e-6, scores
    # lte.upscale with the release file gives the image the training checkpoint gives.
    images = []
    for ckpt in (ckpts[0], plus):
        out = tmp_path / f"up_{ckpt.stem}.png"
        res = run_in_process(
            "lte.upscale",
            str(sample_photos()[0]),
            str(out),
            "--ckpt",
            str(ckpt),
            "--scale",
            "1.5",
            cwd=ROOT,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        images.append(load_rgb(out))
    assert images[0].shape[0] > 0 and np.array_equal(images[0], images[1])


def test_official_reference_compare_counts_levels(tmp_path: Path) -> None:
    """scripts/official_reference.py's ``compare`` (the check of lte.upscale against the official
    forward) reports the largest and mean 8-bit difference; the official code is not needed."""
    ref = np.full((3, 4, 5), 100 / 255, dtype=np.float32)  # (3, H, W) float RGB, as `forward` saves
    ours = np.full((4, 5, 3), 100, dtype=np.uint8)
    ours[0, 0, 0], ours[1, 1, 1] = 101, 97
    np.save(tmp_path / "ref.npy", ref)
    save_rgb(ours, tmp_path / "ours.png")
    script = ROOT / "scripts" / "official_reference.py"
    res = subprocess.run(
        [
            sys.executable,
            str(script),
            "compare",
            str(tmp_path / "ref.npy"),
            str(tmp_path / "ours.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "max 3 levels, mean 0.0667, 1.67% of values off by more than one level" in res.stdout
    res = subprocess.run(
        [sys.executable, str(script), "make", str(tmp_path / "x.pth")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "needs --official DIR" in res.stderr
