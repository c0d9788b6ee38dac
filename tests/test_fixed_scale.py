"""The fixed-scale baselines (SPEC.md "Fixed-scale baselines"): EDSR-baseline / RDN with their upsampler.

Held to a literal reading of SPEC: the tails are written out here with ``F.conv2d`` and
``F.pixel_shuffle`` on the module's own weights, the nearest lookup as an argmin over every output
pixel centre. The released layouts are rebuilt from ``tests/data/official_checkpoints.json`` as real
files, loaded and exported back. Every refusal is a one-line error naming the scale.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import Tensor

from cli import run_in_process, run_module
from conftest import ROOT, SAMPLE_DIR, sample_photos
from lte.checkpoint import load_checkpoint, official_state, save_lte, save_official
from lte.comparison import markdown_tables
from lte.data.images import load_rgb, save_rgb
from lte.errors import UserError
from lte.evaluation import evaluate_testset
from lte.geometry import make_coord_1d
from lte.inference import predict
from lte.models import EDSR, RDN, NearestDecoder, SRModel
from lte.models.build import build_model
from lte.models.decoders import LIIFDecoder
from lte.models.identity import labels
from lte.models.spec import ModelSpec
from lte.results import read_results
from lte.testsets import FolderSet

OFFICIAL = json.loads((ROOT / "tests" / "data" / "official_checkpoints.json").read_text())["models"]
LAYOUTS = {
    "edsr_baseline_x2": ("edsr_baseline_x2", 2),
    "edsr_baseline_x3": ("edsr_baseline_x3", 3),
    "edsr_baseline_x4": ("edsr_baseline_x4", 4),
    "rdn_x2": ("rdn_x2", 2),
    "rdn_x4": ("rdn_x4", 4),
}


def tiny(family: str, s: int) -> SRModel:
    torch.manual_seed(s)
    encoder = (
        EDSR(n_resblocks=2, n_feats=8, upscale=s)
        if family == "edsr"
        else RDN(g0=8, n_blocks=2, n_layers=2, growth=4, upscale=s)
    )
    return SRModel(encoder, NearestDecoder, scale_max=s).eval()


def conv(x: Tensor, sd: dict[str, Tensor], name: str) -> Tensor:
    w = sd[f"{name}.weight"]
    return F.conv2d(x, w, sd[f"{name}.bias"], padding=w.shape[-1] // 2)


def literal_edsr(sd: dict[str, Tensor], x: Tensor, n_blocks: int, s: int) -> Tensor:
    """SPEC's EDSR with its tail: head, residual blocks, body conv, skip; then the upsampler. No mean shift."""
    head = conv(x, sd, "encoder.head.0")
    y = head
    for i in range(n_blocks):
        y = y + conv(
            F.relu(conv(y, sd, f"encoder.body.{i}.body.0")), sd, f"encoder.body.{i}.body.2"
        )
    res = conv(y, sd, f"encoder.body.{n_blocks}") + head
    if s == 3:  # [conv n -> 9n, PixelShuffle(3)]
        up = F.pixel_shuffle(conv(res, sd, "encoder.tail.0.0"), 3)
    else:  # log2(s) x [conv n -> 4n, PixelShuffle(2)]
        up = F.pixel_shuffle(conv(res, sd, "encoder.tail.0.0"), 2)
        if s == 4:
            up = F.pixel_shuffle(conv(up, sd, "encoder.tail.0.2"), 2)
    return conv(up, sd, "encoder.tail.1")  # conv n -> 3


def literal_rdn(sd: dict[str, Tensor], x: Tensor, n_blocks: int, n_layers: int, s: int) -> Tensor:
    """SPEC's RDN with its UPNet: dense blocks, global fusion and skip, then conv/shuffle/conv."""
    f1 = conv(x, sd, "encoder.SFENet1")
    y = conv(f1, sd, "encoder.SFENet2")
    outs = []
    for b in range(n_blocks):
        z = y
        for c in range(n_layers):
            z = torch.cat([z, F.relu(conv(z, sd, f"encoder.RDBs.{b}.convs.{c}.conv.0"))], 1)
        y = conv(z, sd, f"encoder.RDBs.{b}.LFF") + y
        outs.append(y)
    g = conv(conv(torch.cat(outs, 1), sd, "encoder.GFF.0"), sd, "encoder.GFF.1") + f1
    if s == 4:  # [conv G0 -> 4G, PS(2), conv G -> 4G, PS(2), conv G -> 3]
        up = F.pixel_shuffle(conv(g, sd, "encoder.UPNet.0"), 2)
        up = F.pixel_shuffle(conv(up, sd, "encoder.UPNet.2"), 2)
        return conv(up, sd, "encoder.UPNet.4")
    up = F.pixel_shuffle(conv(g, sd, "encoder.UPNet.0"), s)  # [conv G0 -> G s², PS(s), conv G -> 3]
    return conv(up, sd, "encoder.UPNet.2")


def literal_nearest(out: Tensor, coord: Tensor) -> Tensor:
    """For each query the pixel of ``out`` (B, 3, H, W) whose centre is nearest: an argmin over all."""
    h, w = out.shape[-2:]
    ys, xs = make_coord_1d(h), make_coord_1d(w)
    iy = (coord[..., 0:1] - ys).abs().argmin(-1)  # (B, Q)
    ix = (coord[..., 1:2] - xs).abs().argmin(-1)
    return torch.stack([out[b, :, iy[b], ix[b]].t() for b in range(out.shape[0])])  # (B, Q, 3)


def photo_lr(h: int, w: int, b: int = 1) -> Tensor:
    img = load_rgb(sample_photos()[0])[40 : 40 + h * b, 60 : 60 + w]
    x = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)
    return ((x - 0.5) / 0.5).reshape(3, b, h, w).transpose(0, 1).contiguous()


# --- the released layouts -------------------------------------------------------------------------


def write_official(name: str, path: Path) -> dict[str, Tensor]:
    entry = OFFICIAL[name]
    torch.manual_seed(0)
    sd = {k: torch.randn(shape) for k, shape in entry["state_dict_shapes"].items()}
    torch.save({"model": {"name": entry["name"], "args": entry["args"], "sd": sd}}, path)
    return sd


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_released_layout_loads_as_data_and_exports_back(name: str, tmp_path: Path) -> None:
    label, s = LAYOUTS[name]
    sd = write_official(name, tmp_path / f"{name}.pth")
    loaded = load_checkpoint(tmp_path / f"{name}.pth")
    net = loaded.model
    assert loaded.source == "official" and net.native_scale == s
    assert (loaded.model_name, loaded.encoder_name) == ("nearest", label)
    own = net.state_dict()
    # Every released weight is used (the mean-shift layers are stored, never in the math).
    assert set(own) == {k for k in sd if ".sub_mean." not in k and ".add_mean." not in k}
    assert all(torch.equal(own[k], sd[k]) for k in own)
    n = sum(p.numel() for p in net.parameters())
    assert n + (24 if name.startswith("edsr") else 0) == OFFICIAL[name]["parameters"]
    save_official(net, tmp_path / "out.pth")
    back = torch.load(tmp_path / "out.pth", weights_only=True)["model"]
    assert back["name"] == "liif" and back["args"] == OFFICIAL[name]["args"]
    assert {k: list(v.shape) for k, v in back["sd"].items()} == OFFICIAL[name]["state_dict_shapes"]
    assert all(torch.equal(back["sd"][k], sd[k]) for k in own)
    again = load_checkpoint(tmp_path / "out.pth").model
    assert again.describe() == net.describe()
    # And through lte's own format.
    save_lte(net, tmp_path / "own.ckpt")
    assert load_checkpoint(tmp_path / "own.ckpt").model.describe() == net.describe()


def test_full_size_encoders_match_the_released_shapes() -> None:
    for name, (label, s) in LAYOUTS.items():
        family = "edsr_baseline" if name.startswith("edsr") else "rdn"
        net = build_model("nearest", family, [f"encoder.upscale={s}"])
        shapes = {f"{k}": list(v.shape) for k, v in net.state_dict().items()}
        released = {
            k: v
            for k, v in OFFICIAL[name]["state_dict_shapes"].items()
            if ".sub_mean." not in k and ".add_mean." not in k
        }
        assert shapes == released, name
        assert labels(net.describe()) == ("nearest", label)


# --- the math ------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["edsr", "rdn"])
@pytest.mark.parametrize("s", [2, 3, 4])
def test_encoder_tail_is_spec_and_the_native_scale_prediction_is_its_output(
    family: str, s: int
) -> None:
    net = tiny(family, s)
    lr = photo_lr(7, 9, b=2)
    sd = net.state_dict()
    with torch.no_grad():
        out = net.encoder(lr)
        ref = literal_edsr(sd, lr, 2, s) if family == "edsr" else literal_rdn(sd, lr, 2, 2, s)
        assert out.shape == (2, 3, 7 * s, 9 * s)
        assert torch.allclose(out, ref, atol=1e-5)
        # The model queried at the HR pixel centres is the encoder's output (as SRModel runs it,
        # channels-last), bit for bit.
        pred = predict(net, lr, (7 * s, 9 * s), tile=0)
        assert torch.allclose(net.features(lr), out, atol=1e-5)
    assert torch.equal(pred, net.features(lr))
    assert net.native_scale == s and net.describe()["encoder"]["upscale"] == s


@pytest.mark.parametrize("s", [2, 3, 4])
def test_nearest_decoder_is_the_literal_nearest_lookup_at_random_coords(s: int) -> None:
    net = tiny("edsr", s)
    lr = photo_lr(5, 6, b=2)
    coord = torch.rand(2, 500, 2) * 2 - 1
    coord[0, :4] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [0.0, 0.0]])
    cell = torch.rand(2, 500, 2)  # ignored: no cell
    state = net.encode(lr)
    got = net.query(state, coord, cell)
    with torch.no_grad():
        out = net.features(lr)  # the encoder's output as SRModel computes it (channels-last)
    # (0, 0) is a tie between two centres on an even grid: checked against the release below.
    keep = torch.ones(500, dtype=torch.bool)
    keep[3] = False
    assert torch.equal(got.detach()[:, keep], literal_nearest(out, coord[:, keep]))
    # Also what the released LIIF does without an MLP: grid_sample(nearest) of the output, ties
    # included. Not on the image's edge (±1 exactly): there its zero padding can give 0 where the
    # nearest centre is the edge pixel.
    inner = coord[:, 3:]
    released = F.grid_sample(out, inner.flip(-1).unsqueeze(1), mode="nearest", align_corners=False)
    assert torch.equal(got.detach()[:, 3:], released[:, :, 0, :].permute(0, 2, 1))
    # Differentiable: training reaches the encoder through the lookup.
    got.square().mean().backward()
    assert net.encoder.head[0].weight.grad.abs().sum() > 0
    assert list(net.decoder.parameters()) == []


@pytest.mark.parametrize(("family", "s"), [("edsr", 3), ("rdn", 2), ("rdn", 4)])
def test_tiles_are_exact(family: str, s: int) -> None:
    net = tiny(family, s)
    lr = photo_lr(23, 19)
    with torch.no_grad():
        for out_hw in [(23 * s, 19 * s), (37, 50)]:  # the native grid, and any other
            whole = predict(net, lr, out_hw, tile=0)
            tiled = predict(net, lr, out_hw, tile=8, chunk=97)
            assert torch.allclose(whole, tiled, atol=1e-5), out_hw
    assert net.receptive_radius == net.encoder.receptive_radius + 1


# --- refusals ------------------------------------------------------------------------------------


def describe(upscale: object = 2, decoder: str = "nearest") -> dict:
    enc = {"kind": "edsr", "n_resblocks": 1, "n_feats": 4, "res_scale": 1.0, "in_channels": 3}
    if upscale is not None:
        enc["upscale"] = upscale
    dec = {"kind": decoder} if decoder == "nearest" else {"kind": decoder, "mlp_hidden": [8]}
    return {"decoder": dec, "encoder": enc, "scale_max": 4.0}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (describe(5), r"model\.encoder\.upscale must be an int from 2 to 4, got 5"),
        (describe(True), r"model\.encoder\.upscale must be an int from 2 to 4, got True"),
        (describe(2.0), r"model\.encoder\.upscale must be an int from 2 to 4, got 2\.0"),
        (describe(2, "liif"), r"model\.encoder\.upscale is 2 .*its decoder must be 'nearest'"),
        (describe(None), r"model\.decoder\.kind 'nearest' .*model\.encoder needs upscale"),
    ],
)
def test_bad_fixed_scale_descriptions_are_one_line_errors(data: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as err:
        ModelSpec.from_dict(data, "checkpoint 'x.ckpt'")
    assert "\n" not in str(err.value) and str(err.value).startswith("checkpoint 'x.ckpt': ")


def test_mismatched_parts_are_refused_when_built() -> None:
    with pytest.raises(TypeError, match=r"fixed-scale encoder .* goes with the nearest decoder"):
        SRModel(EDSR(n_resblocks=1, n_feats=4, upscale=2), LIIFDecoder)
    with pytest.raises(TypeError, match="upscale=None"):
        SRModel(EDSR(n_resblocks=1, n_feats=4), NearestDecoder(3))
    with pytest.raises(ValueError, match=r"upscale must be None .* or one of 2, 3, 4, got 8"):
        EDSR(upscale=8)
    with pytest.raises(ValueError, match=r"got 2\.0"):
        RDN(upscale=2.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            {
                "encoder_spec": {
                    "name": "edsr-baseline",
                    "args": {"scale": 2, "no_upsampling": True},
                }
            },
            r"model\.args\.encoder_spec\.args\.no_upsampling must be absent",
        ),
        (
            {"encoder_spec": {"name": "edsr-baseline", "args": {"scale": 8}}},
            r"model\.args\.encoder_spec\.args\.scale must be an int from 2 to 4, got 8",
        ),
        (
            {"encoder_spec": {"name": "swinir", "args": {"upscale": 2}}},
            r"model\.args\.encoder_spec\.name names an unknown fixed-scale encoder 'swinir'",
        ),
        (
            {"encoder_spec": {"name": "rdn", "args": {"scale": 2, "__class__": 1}}},
            r"model\.args\.encoder_spec\.args has unknown field '__class__'",
        ),
    ],
)
def test_bad_released_fixed_scale_files_are_one_line_errors(
    args: dict, message: str, tmp_path: Path
) -> None:
    torch.save({"model": {"name": "liif", "args": args, "sd": {}}}, tmp_path / "bad.pth")
    with pytest.raises(UserError, match=message) as err:
        load_checkpoint(tmp_path / "bad.pth")
    assert "\n" not in str(err.value)


def test_export_keeps_the_scale_and_the_mean_shift_buffers() -> None:
    odd = SRModel(EDSR(n_resblocks=1, n_feats=4, upscale=2), NearestDecoder, scale_max=4.0)
    with pytest.raises(
        UserError, match=r"^scale_max 4 cannot be stored in an official fixed-scale"
    ):
        official_state(odd)
    state = official_state(tiny("edsr", 3))["model"]
    assert state["args"]["encoder_spec"]["args"]["scale"] == 3
    assert "no_upsampling" not in state["args"]["encoder_spec"]["args"]
    assert {"encoder.sub_mean.weight", "encoder.add_mean.bias"} <= set(state["sd"])


# --- evaluation at the native scale only ---------------------------------------------------------


def hr_folder(root: Path) -> Path:
    (root / "HR").mkdir(parents=True)
    for i, src in enumerate(sample_photos()[:2]):
        save_rgb(load_rgb(src)[:48, :60], root / "HR" / f"img{i}.png")
    return root / "HR"


def test_evaluate_scores_only_the_native_scale(tmp_path: Path) -> None:
    net = tiny("edsr", 2)
    testset = FolderSet(hr_folder(tmp_path), name="two", protocol="div2k")
    (rec,) = evaluate_testset(net, testset, [2])
    assert (rec.model, rec.encoder, rec.scale) == ("nearest", "edsr-n_resblocks=2-n_feats=8_x2", 2)
    with pytest.raises(UserError) as err:
        evaluate_testset(net, testset, [2, 3], ckpt="x2.ckpt")
    assert str(err.value) == (
        "scales: x3 is not available: checkpoint 'x2.ckpt' is a fixed-scale model with native "
        "scale x2 (it only upsamples by 2); use scales=[2]"
    )


def test_compare_marks_the_other_scales_of_a_fixed_scale_model() -> None:
    def rec(model: str, encoder: str, scale: float, psnr: float) -> dict:
        return {"testset": "div2k", "protocol": "div2k", "scale": scale, "psnr": psnr,
                "model": model, "encoder": encoder, "ckpt": f"{encoder}.pth", "method": f"{encoder}-{model}"}  # fmt: skip

    records = [
        rec("nearest", "edsr_baseline_x2", 2, 34.5),
        rec("nearest", "edsr_baseline_x3", 3, 30.8),
        rec("lte", "edsr_baseline", 2, 34.7),
        rec("lte", "edsr_baseline", 3, 31.0),
        rec("lte", "edsr_baseline", 4, 29.0),
    ]
    md = markdown_tables(records)
    assert "| edsr_baseline_x2-nearest | 34.50 | — | — |" in md
    assert "| edsr_baseline_x3-nearest | — | 30.80 | — |" in md
    assert "— fixed-scale model (one network per scale): scored only at its own scale." in md
    assert "—" not in markdown_tables(records[2:])


@pytest.mark.slow
def test_upscale_cli_refuses_another_scale(tmp_path: Path) -> None:
    save_lte(tiny("rdn", 2), tmp_path / "x2.ckpt")
    save_rgb(load_rgb(sample_photos()[0])[:20, :30], tmp_path / "in.png")
    base = [str(tmp_path / "in.png")]
    ckpt = ["--ckpt", str(tmp_path / "x2.ckpt"), "--device", "cpu"]
    ok = run_in_process("lte.upscale", *base, str(tmp_path / "a.png"), *ckpt, "--scale", "2")
    assert ok.returncode == 0, ok.stderr
    assert load_rgb(tmp_path / "a.png").shape == (40, 60, 3)
    for opt in (["--scale", "3"], ["--size", "61x40"]):
        line = error_line(
            run_in_process("lte.upscale", *base, str(tmp_path / "b.png"), *ckpt, *opt)
        )
        assert f"{opt[0]} {opt[1]}: checkpoint" in line
        assert "fixed-scale model with native scale x2: it only makes 60x40" in line
        assert "use --scale 2" in line
        assert not (tmp_path / "b.png").exists()


# --- the experiment ------------------------------------------------------------------------------

#: One of the six per-scale files that ``experiment=fixed_scale`` replaced, as each one read.
OLD_EXPERIMENT = """# @package _global_
defaults:
  - override /model: nearest
  - override /encoder: {encoder}
  - override /data: div2k_paired

encoder:
  upscale: {s}
data:
  scale: {s}
"""

#: The parts of a run's config that decide what is trained, and how.
SECTIONS = ("encoder", "model", "data", "optimizer", "scheduler", "trainer", "module")


@pytest.mark.parametrize("encoder", ["edsr_baseline", "rdn"])
@pytest.mark.parametrize("s", [2, 3, 4])
def test_fixed_scale_experiment_composes_as_the_per_scale_file_it_replaced(
    tmp_path: Path, encoder: str, s: int
) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "src" / "lte" / "conf", conf)
    (conf / "experiment" / f"old_{encoder}_x{s}.yaml").write_text(
        OLD_EXPERIMENT.format(encoder=encoder, s=s)
    )
    paths = ["paths.data_dir=/data", "paths.output_dir=/run"]  # resolvable outside a Hydra run
    new = ["experiment=fixed_scale", f"data.scale={s}"]
    commands = [[*new, f"encoder={encoder}"]]
    if encoder == "edsr_baseline":
        commands.append(new)  # the experiment's encoder when none is chosen
    if s == 2:
        commands.append(["experiment=fixed_scale", f"encoder={encoder}"])  # its default scale
    with initialize_config_dir(str(conf), version_base=None):
        old = compose("train", overrides=[f"experiment=old_{encoder}_x{s}", *paths])
        for command in commands:
            cfg = compose("train", overrides=[*command, *paths])
            for key in SECTIONS:
                want = OmegaConf.to_container(old[key], resolve=True)
                assert OmegaConf.to_container(cfg[key], resolve=True) == want, (command, key)
    assert cfg.encoder.upscale == cfg.data.scale == cfg.model.scale_max == s


def test_the_replaced_experiments_name_their_replacement() -> None:
    from lte.cli.overrides import RENAMED, check_command

    assert len(RENAMED["train"]) == 6
    for old, new in RENAMED["train"].items():
        with pytest.raises(UserError) as err:
            check_command([old], config_name="train", prog="python -m lte.train")
        assert str(err.value) == f"{old} was replaced by: {new}"
        assert check_command(new.split(), config_name="train", prog="train") is not None


# --- end to end ----------------------------------------------------------------------------------


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    return run_module(module, *args, timeout=600)


def error_line(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    return lines[0]


#: The fixed-scale encoders, and the tiny one each is trained as in the end-to-end test.
FIXED_ENCODERS = (("edsr_baseline", "edsr_tiny"), ("rdn", "rdn_tiny"))


@pytest.fixture(scope="module")
def lr_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/{train,val}/X{2,3,4}``: the bundled photos' LR, made once by ``scripts/make_lr.py``.

    The end-to-end cases only read it (each its own scale); the script runs as a user runs it.
    """
    root = tmp_path_factory.mktemp("lr")
    for part in ("train", "val"):
        made = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "make_lr.py"), "--hr", str(SAMPLE_DIR / part),
             "--out", str(root / part), "--scales", "2,3,4", "--kernel", "matlab"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
    return root


@pytest.mark.slow
@pytest.mark.parametrize(
    ("tiny", "s"), [(tiny, s) for _, tiny in FIXED_ENCODERS for s in (2, 3, 4)]
)
def test_fixed_scale_trains_on_pairs_and_is_tested_at_its_scale_only(
    tmp_path: Path, lr_root: Path, tiny: str, s: int
) -> None:
    """``experiment=fixed_scale`` at each scale with each encoder family, tiny, on LR/HR pairs of
    the bundled photos, then ``lte.test``.

    Training runs in a subprocess; ``lte.test`` through its entry point in-process.
    """
    run_dir = tmp_path / "run"
    train = run(
        "lte.train",
        "experiment=fixed_scale",
        f"encoder={tiny}",
        "data=paired",  # the bundled photos' pairs instead of DIV2K's
        f"data.scale={s}",
        f"data.train_hr_dir={SAMPLE_DIR / 'train'}",
        f"data.train_lr_dir={lr_root / 'train' / f'X{s}'}",
        f"data.val_hr_dir={SAMPLE_DIR / 'val'}",
        f"data.val_lr_dir={lr_root / 'val' / f'X{s}'}",
        "data.inp_size=12",
        "data.val_inp_size=12",
        "data.batch_size=2",
        "data.repeat=1",
        "data.num_workers=0",
        "data.pin_memory=false",
        "data.persistent_workers=false",
        "data.cache=none",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    )
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    loaded = load_checkpoint(ckpt)
    assert loaded.model.native_scale == s and loaded.model_name == "nearest"
    assert loaded.encoder_name.endswith(f"_x{s}")
    assert loaded.model.scale_max == s  # trained at its one scale
    # Trained: the weights moved from their initialisation.
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert raw["global_step"] > 0
    common = ["testset=sample", "device=cpu", f"ckpt={ckpt}"]
    good = run_in_process(
        "lte.test", *common, f"scales=[{s}]", f"hydra.run.dir={tmp_path / 'test_own'}"
    )
    assert good.returncode == 0, good.stderr[-3000:]
    (rec,) = read_results(tmp_path / "test_own" / "results.json")
    assert (rec["model"], float(rec["scale"]), rec["images"]) == ("nearest", float(s), 3)
    assert 10 < rec["psnr"] < 60
    other = 3 if s == 2 else 2
    bad = run_in_process(
        "lte.test", *common, f"scales=[{s},{other}]", f"hydra.run.dir={tmp_path / 'bad'}"
    )
    assert error_line(bad).endswith(
        f"scales: x{other} is not available: checkpoint '{ckpt}' is a fixed-scale model with "
        f"native scale x{s} (it only upsamples by {s}); use scales=[{s}]"
    )
