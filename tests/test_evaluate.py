"""The test protocol as functions: LR pairs, SwinIR padding, cells, chunking, settings, records."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image
from torch import Tensor, nn

import lte
from conftest import sample_photos
from lte.data.images import load_rgb, save_rgb, to_tensor
from lte.data.resize import downsample_pil
from lte.errors import UserError
from lte.evaluation import (
    BICUBIC,
    EvalSettings,
    Method,
    evaluate_testset,
    mirror_pad,
    super_resolve,
)
from lte.evaluation.methods import keep_lr
from lte.geometry import bilinear_sample, make_coord
from lte.metrics import psnr_protocol
from lte.models.build import build_model
from lte.models.decoders import Decoder, DecoderState
from lte.models.identity import labels
from lte.models.sr import SRModel
from lte.testsets import (
    BenchmarkSet,
    DIV2KValid,
    FolderSet,
    TestSet,
    pair_from_lr_file,
    pair_on_the_fly,
)


class IdentityEncoder(nn.Identity):
    """The LR itself as features (3 channels)."""

    kind = "identity"
    config: dict[str, object] = {}  # noqa: RUF012
    out_channels = 3
    pad_multiple = 0
    receptive_radius = 0


class BilinearDecoder(Decoder):
    """A parameter-free decoder: bilinear interpolation of the LR at each query.

    Its output at integer scales equals ``F.interpolate(bilinear, align_corners=False)``, which gives
    an independent way to compute the PSNR the whole protocol must report.
    """

    kind = "bilinear"

    def __init__(self) -> None:
        super().__init__()
        self.config = {}

    def prepare(self, feat: Tensor) -> Tensor:
        return feat.permute(0, 2, 3, 1)  # (B, h, w, 3): unused, the LR is in the state

    def exact(
        self, state: DecoderState, coord: Tensor, cell: Tensor, mlp_dtype: torch.dtype
    ) -> Tensor:
        return bilinear_sample(state.lr, coord)


def bilinear_sr() -> SRModel:
    return SRModel(IdentityEncoder(), BilinearDecoder()).eval()


class Recording:
    """Keeps every image encoded and every query's coordinates and cells of a real model, to check
    the grid; it wraps the model's own ``encode`` / ``query`` (the only ways into it)."""

    def __init__(self, model: SRModel) -> None:
        self.coords: list[Tensor] = []
        self.cells: list[Tensor] = []
        self.inputs: list[Tensor] = []
        encode, query = model.encode, model.query

        def recorded_encode(lr: Tensor, **kw: object) -> DecoderState:
            self.inputs.append(lr)
            return encode(lr, **kw)  # type: ignore[arg-type]

        def recorded_query(
            state: DecoderState, coord: Tensor, cell: Tensor, **kw: object
        ) -> Tensor:
            self.coords.append(coord)
            self.cells.append(cell)
            return query(state, coord, cell, **kw)  # type: ignore[arg-type]

        model.encode = recorded_encode  # type: ignore[method-assign]
        model.query = recorded_query  # type: ignore[method-assign]


def recording(model: SRModel) -> tuple[SRModel, Recording]:
    return model, Recording(model)


def photo(h: int, w: int, index: int = 0) -> np.ndarray:
    return load_rgb(sample_photos()[index])[100 : 100 + h, 60 : 60 + w].copy()


def folder_set(root: Path, name: str = "tiny", protocol: str = "benchmark") -> FolderSet:
    """The test set of a :func:`make_folder` folder, LR files included when it has some."""
    lr = root / "LR_bicubic"
    return FolderSet(root / "HR", lr if lr.is_dir() else None, name=name, protocol=protocol)


def make_folder(root: Path, *, lr_scales: tuple[int, ...] = (2,)) -> Path:
    """Two 66x67 crops of real photos with PIL-bicubic LR files for ``lr_scales``."""
    (root / "HR").mkdir(parents=True)
    for i in range(2):
        hr = photo(66, 67, i)
        save_rgb(hr, root / "HR" / f"img{i}.png")
        for s in lr_scales:
            (root / "LR_bicubic" / f"X{s}").mkdir(parents=True, exist_ok=True)
            h, w = 66 // s, 67 // s
            save_rgb(
                downsample_pil(hr[: h * s, : w * s], (h, w)),
                root / f"LR_bicubic/X{s}/img{i}x{s}.png",
            )
    return root


# --- mirror padding ---------------------------------------------------------------------------


def test_mirror_pad_repeats_the_edge_pixel() -> None:
    x = torch.arange(5.0).view(1, 1, 5, 1).expand(1, 1, 5, 8)
    padded, (hp, wp) = mirror_pad(x, 8)
    assert (hp, wp) == (3, 8)  # a side that is already a multiple still gets a full window
    assert padded.shape == (1, 1, 8, 16)
    assert padded[0, 0, :, 0].tolist() == [0, 1, 2, 3, 4, 4, 3, 2]


def test_mirror_pad_matches_cat_flip_cut_and_handles_tiny_inputs() -> None:
    x = torch.rand(1, 3, 11, 6)
    padded, (hp, wp) = mirror_pad(x, 8)
    ref = torch.cat([x, x.flip(2)], 2)[:, :, : 11 + hp]
    ref = torch.cat([ref, ref.flip(3)], 3)[:, :, :, : 6 + wp]
    assert torch.equal(padded, ref)
    tiny, _ = mirror_pad(torch.tensor([[[[1.0, 2.0]]]]), 8)  # 1x2 -> 8x8
    assert tiny[0, 0, 0].tolist() == [1, 2, 2, 1, 1, 2, 2, 1]


# --- LR/HR pairs -------------------------------------------------------------------------------


def test_pair_on_the_fly_crops_to_a_multiple() -> None:
    hr = photo(66, 67)
    lr, crop = pair_on_the_fly(hr, 3)
    assert lr.shape == (22, 22, 3) and crop.shape == (66, 66, 3)
    assert np.array_equal(lr, downsample_pil(hr[:66, :66], (22, 22)))
    lr, crop = pair_on_the_fly(hr, 2.5)  # floor(66/2.5)=26 -> round(65)
    assert lr.shape == (26, 26, 3) and crop.shape == (65, 65, 3)


def test_pair_from_lr_file_checks_the_size() -> None:
    hr = photo(66, 67)
    crop = pair_from_lr_file(hr, np.zeros((16, 16, 3), np.uint8), 4, lr_path="a/x4.png")
    assert crop.shape == (64, 64, 3)
    with pytest.raises(UserError, match=r"a/bx4\.png"):
        pair_from_lr_file(hr, np.zeros((17, 16, 3), np.uint8), 4, lr_path="a/bx4.png")


# --- prediction --------------------------------------------------------------------------------


def test_bilinear_model_reproduces_interpolate() -> None:
    lr = to_tensor(photo(20, 24)).unsqueeze(0)
    pred = super_resolve(bilinear_sr(), lr, (60, 72), 3)
    ref = F.interpolate(lr, size=(60, 72), mode="bilinear", align_corners=False)
    assert torch.allclose(pred, ref.clamp(0, 1), atol=1e-5)


def test_chunking_changes_nothing_and_output_is_not_rounded() -> None:
    model = build_model("lte", "edsr_tiny").eval()
    lr = to_tensor(photo(12, 10)).unsqueeze(0)
    full = super_resolve(model, lr, (36, 30), 3, chunk=30000)
    small = super_resolve(model, lr, (36, 30), 3, chunk=97)
    assert torch.equal(full, small)
    tiled = super_resolve(model, lr, (36, 30), 3, tile=4)  # EDSR: exact to round-off
    assert torch.allclose(full, tiled, atol=1e-5)
    assert full.min() >= 0 and full.max() <= 1
    assert not torch.equal(full, (full * 255).round() / 255)


@pytest.mark.parametrize(("scale", "factor"), [(3, 1.0), (4, 1.0), (8, 2.0), (12, 3.0)])
def test_cell_is_enlarged_beyond_scale_max(scale: int, factor: float) -> None:
    model, rec = recording(build_model("liif", "edsr_tiny").eval())
    lr = to_tensor(photo(5, 4)).unsqueeze(0)
    out_hw = (5 * scale, 4 * scale)
    super_resolve(model, lr, out_hw, scale)
    cell = torch.cat(rec.cells, dim=1)[0]
    coord = torch.cat(rec.coords, dim=1)[0]
    assert torch.equal(coord, make_coord(out_hw))
    assert cell[:, 0].unique().item() == pytest.approx(2 / out_hw[0] * factor, rel=1e-6)
    assert cell[:, 1].unique().item() == pytest.approx(2 / out_hw[1] * factor, rel=1e-6)


def test_cell_enlargement_uses_the_models_own_scale_max() -> None:
    model, rec = recording(build_model("lte", "edsr_tiny").eval())
    model.scale_max = 2.0
    super_resolve(model, to_tensor(photo(5, 4)).unsqueeze(0), (15, 12), 3)
    cell = torch.cat(rec.cells, dim=1)[0]
    assert cell[:, 0].unique().item() == pytest.approx(2 / 15 * 1.5, rel=1e-6)


def test_swinir_protocol_pads_queries_the_padded_grid_and_crops() -> None:
    model, rec = recording(build_model("lte", "swinir_tiny").eval())
    assert model.pad_multiple > 0
    m = model.pad_multiple
    lr = to_tensor(photo(10, 13)).unsqueeze(0)
    scale = 3
    pred = super_resolve(model, lr, (30, 39), scale, tile=None)  # never tiled
    assert pred.shape == (1, 3, 30, 39)
    hp, wp = (10 // m + 1) * m, (13 // m + 1) * m
    (inp,) = rec.inputs
    assert inp.shape[-2:] == (hp, wp)
    coord = torch.cat(rec.coords, dim=1)[0]
    assert torch.equal(coord, make_coord((scale * hp, scale * wp)))
    cell = torch.cat(rec.cells, dim=1)[0]
    assert cell[:, 0].unique().item() == pytest.approx(2 / (hp * scale), rel=1e-6)
    assert cell[:, 1].unique().item() == pytest.approx(2 / (wp * scale), rel=1e-6)
    # The kept pixels are the top-left of the padded prediction, computed in one literal forward.
    n = coord.shape[0]
    with torch.no_grad():
        full = model(inp, coord[None], cell[:1].expand(n, 2)[None])  # (1, Q, 3)
    full = (full[0].T.reshape(3, scale * hp, scale * wp) * 0.5 + 0.5).clamp(0, 1)
    assert torch.allclose(pred[0], full[:, :30, :39], atol=1e-6)


# --- a whole test set --------------------------------------------------------------------------


def test_evaluate_folder_matches_an_independent_computation(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "set", lr_scales=(2,))
    ts = folder_set(root)
    recs = evaluate_testset(bilinear_sr(), ts, [2, 3])
    assert [r.scale for r in recs] == [2.0, 3.0] and all(r.images == 2 for r in recs)
    assert all((r.model, r.encoder) == ("bilinear", "identity") for r in recs)
    for rec in recs:
        s = int(rec.scale)
        want = []
        for i in range(2):
            hr = photo(66, 67, i)
            h, w = 66 // s, 67 // s
            crop = hr[: h * s, : w * s]
            lr = to_tensor(downsample_pil(crop, (h, w))).unsqueeze(0)
            up = F.interpolate(lr, size=crop.shape[:2], mode="bilinear", align_corners=False)
            want.append(psnr_protocol(up.clamp(0, 1), to_tensor(crop)[None], s, "benchmark").item())
        assert rec.psnr == pytest.approx(float(np.mean(want)), abs=1e-4)
        assert 0 < rec.ssim < 1


def test_lr_files_are_used_when_present(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "set", lr_scales=(2,))
    ts = folder_set(root, protocol="div2k")
    from_files = evaluate_testset(bilinear_sr(), ts, [2])[0]
    # Darken one LR file: the x2 score must follow the file, not a fresh downsample.
    lr_path = root / "LR_bicubic/X2/img0x2.png"
    save_rgb(load_rgb(lr_path) // 2, lr_path)
    changed = evaluate_testset(bilinear_sr(), ts, [2])[0]
    assert changed.psnr < from_files.psnr - 3


def test_missing_lr_file_and_wrong_size_are_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "set", lr_scales=(2,))
    ts = folder_set(root)
    (root / "LR_bicubic/X2/img1x2.png").unlink()
    with pytest.raises(UserError, match="img1"):
        evaluate_testset(bilinear_sr(), ts, [2])
    save_rgb(np.zeros((10, 10, 3), np.uint8), root / "LR_bicubic/X2/img1x2.png")
    with pytest.raises(UserError, match=r"img1x2\.png"):
        evaluate_testset(bilinear_sr(), ts, [2])


def test_missing_testset_names_the_download_script(tmp_path: Path) -> None:
    ts = BenchmarkSet("set5", tmp_path / "nope")
    with pytest.raises(UserError, match=r"download_benchmarks\.sh"):
        evaluate_testset(bilinear_sr(), ts, [2])
    with pytest.raises(UserError, match=r"testset\.protocol=rgb"):
        TestSet("x", tmp_path, protocol="rgb")


def test_fallback_is_logged_once_per_scale(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_folder(tmp_path / "set", lr_scales=(2,))
    with caplog.at_level("INFO", logger="lte.testsets"):
        evaluate_testset(bilinear_sr(), folder_set(root), [2, 3])
    fly = [r for r in caplog.records if "on the fly" in r.getMessage()]
    assert len(fly) == 1 and "x3" in fly[0].getMessage()


# --- test sets from the presets ----------------------------------------------------------------


def preset(name: str, data_dir: Path, **overrides: object) -> TestSet:
    """``conf/testset/<name>.yaml`` instantiated as lte.test does, with ``paths.data_dir`` set."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from lte.models.build import load_group

    cfg = OmegaConf.create(
        {"paths": {"data_dir": str(data_dir)}, "testset": load_group("testset", name)}
    )
    for key, value in overrides.items():
        cfg.testset[key] = value
    return instantiate(cfg.testset)


@pytest.mark.parametrize(
    ("name", "cls", "hr", "lr2", "protocol"),
    [
        ("set5", BenchmarkSet, "benchmark/Set5/HR", "benchmark/Set5/LR_bicubic/X2", "benchmark"),
        ("urban100", BenchmarkSet, "benchmark/Urban100/HR", "benchmark/Urban100/LR_bicubic/X2", "benchmark"),
        ("div2k", DIV2KValid, "DIV2K_valid_HR", "DIV2K_valid_LR_bicubic/X2", "div2k"),
    ],
)  # fmt: skip
def test_presets_point_at_the_download_layout(
    tmp_path: Path, name: str, cls: type, hr: str, lr2: str, protocol: str
) -> None:
    ts = preset(name, tmp_path)
    assert isinstance(ts, cls) and ts.name == name and ts.protocol == protocol
    assert ts.hr_dir == tmp_path / hr
    assert ts.lr_folder(2) is None  # not on disk yet: x2 would be made on the fly
    (tmp_path / lr2).mkdir(parents=True)
    assert ts.lr_folder(2) == tmp_path / lr2 and ts.lr_folder(3) is None
    script = "download_div2k.sh" if name == "div2k" else "download_benchmarks.sh"
    with pytest.raises(UserError, match=re.escape(script)):
        ts.hr_files()


def test_sample_preset_is_the_three_bundled_photos() -> None:
    ts = preset("sample", Path("unused"))
    assert ts.name == "sample" and ts.protocol == "div2k" and ts.lr_folder(2) is None
    assert [f.name for f in ts.hr_files()] == ["chelsea.png", "coffee.png", "rocket.png"]
    name, lr, hr = next(iter(ts.pairs(3)))
    assert name.endswith("chelsea.png")
    assert np.array_equal(lr, pair_on_the_fly(load_rgb(name), 3)[0])
    assert hr.shape[0] == 3 * lr.shape[0] and hr.shape[1] == 3 * lr.shape[1]


def test_folder_preset_needs_its_folder_and_names_itself(tmp_path: Path) -> None:
    from hydra.errors import InstantiationException

    from lte.errors import as_user_error

    with pytest.raises(InstantiationException) as err:
        preset("folder", tmp_path)
    assert "testset.hr_dir" in str(as_user_error(err.value))
    root = make_folder(tmp_path / "photos", lr_scales=(2,))
    assert preset("folder", tmp_path, hr_dir=str(root / "HR")).name == "photos"
    assert FolderSet(root / "LR_bicubic" / "X2").name == "X2"
    with_template = FolderSet(root / "HR", lr_dir=f"{root}/LR_bicubic/X{{scale}}")
    assert with_template.lr_folder(2) == FolderSet(root / "HR", root / "LR_bicubic").lr_folder(2)
    assert with_template.lr_folder(2) == root / "LR_bicubic" / "X2"
    with pytest.raises(UserError, match=r"testset\.lr_dir=.*\{scale\}"):
        TestSet("x", root / "HR", lr_dir=root / "LR_bicubic" / "X2")


# --- settings and identity ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"scales": []}, "scales is empty"),
        ({"scales": [2, 0.5]}, "scales: 0.5"),
        ({"scales": ["two"]}, "scales: 'two'"),
        ({"scales": [math.inf]}, "scales: inf"),
        ({"scales": [2], "chunk": 0}, "eval.chunk=0"),
        ({"scales": [2], "chunk": 2.5}, "eval.chunk=2.5"),
        ({"scales": [2], "tile": -1}, "eval.tile=-1"),
    ],
)
def test_bad_settings_are_named_before_any_image_is_read(
    tmp_path: Path, kwargs: dict, fragment: str
) -> None:
    with pytest.raises(UserError, match=re.escape(fragment)):
        EvalSettings(**kwargs)
    # The library loop checks the same way, before it touches the (missing) folder.
    scales = kwargs.pop("scales")
    with pytest.raises(UserError, match=re.escape(fragment)):
        evaluate_testset(bilinear_sr(), FolderSet(tmp_path / "missing"), scales, **kwargs)


def test_settings_accept_one_number_and_fractions() -> None:
    assert EvalSettings(3).scales == (3.0,)
    assert EvalSettings([2, "2.5"], chunk=7, tile=None) == EvalSettings((2.0, 2.5), 7, None)


def test_records_are_labelled_by_what_the_model_is(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "set", lr_scales=())
    model = build_model("liif", "edsr_tiny").eval()
    (rec,) = evaluate_testset(model, folder_set(root), [4], ckpt="a.ckpt")
    assert (rec.model, rec.encoder) == labels(model.describe())
    assert rec.encoder.startswith("edsr-") and rec.model == "liif" and rec.ckpt == "a.ckpt"
    assert [p.name for p in rec.per_image] == sorted(str(f) for f in (root / "HR").iterdir())


def test_the_command_defaults_are_conf_test_yaml_and_pass_whole() -> None:
    """``lte.test``'s ``eval.*`` defaults are the config file's; the library's are the papers'."""
    cfg = OmegaConf.load(Path(lte.__file__).parent / "conf" / "test.yaml")
    settings = EvalSettings.from_config(cfg)
    assert settings == EvalSettings(
        (2, 3, 4), 30000, None, False, None, backend="auto", dtype="auto", profile=False
    )
    assert EvalSettings([2]) == EvalSettings(
        [2], 30000, 0, False, 0, backend="eager", dtype="float32", profile=False
    )
    with pytest.raises(UserError, match=r"^eval\.chunks is not an option: use eval\.chunk, "):
        EvalSettings.from_config(OmegaConf.create({"scales": [2], "eval": {"chunks": 5}}))


class NearestRow(Method):
    """A reference row that is neither a network nor bicubic: PIL nearest-neighbour upscaling."""

    model_name, encoder_name, native_scale, device = "nearest_pil", "none", None, None

    @property
    def preparer(self):  # type: ignore[no-untyped-def]
        return keep_lr

    def ready(self, settings: EvalSettings, device: torch.device) -> NearestRow:
        return self

    def to_device(self, inp: np.ndarray) -> np.ndarray:
        return inp

    def predict(self, inp: np.ndarray, out_hw: tuple[int, int], scale: float) -> Tensor:
        up = Image.fromarray(inp).resize((out_hw[1], out_hw[0]), Image.Resampling.NEAREST)
        return to_tensor(np.asarray(up)).unsqueeze(0)

    def to_image(self, out: Tensor, out_hw: tuple[int, int]) -> Tensor:
        return out


def test_any_method_is_scored_by_the_same_loop(tmp_path: Path) -> None:
    """A new reference row is one subclass of ``Method``; the loop asks nothing else of it."""
    ts = folder_set(make_folder(tmp_path / "set", lr_scales=()))
    (rec,) = evaluate_testset(NearestRow(), ts, [2], ckpt="nearest")
    (bicubic,) = evaluate_testset(BICUBIC, ts, [2], ckpt="bicubic")
    assert (rec.model, rec.encoder, rec.images, rec.native_scale) == (
        "nearest_pil",
        "none",
        2,
        None,
    )
    assert rec.psnr < bicubic.psnr  # nearest-neighbour is the weaker row
    assert (bicubic.model, bicubic.encoder) == ("bicubic", "none")
    assert "native_scale" not in rec.to_dict()


def test_a_fixed_scale_record_carries_its_native_scale(tmp_path: Path) -> None:
    from lte.models import EDSR, NearestDecoder

    net = SRModel(EDSR(n_resblocks=1, n_feats=4, upscale=2), NearestDecoder, scale_max=2).eval()
    (rec,) = evaluate_testset(net, folder_set(make_folder(tmp_path / "set")), [2])
    assert rec.native_scale == 2 and rec.to_dict()["native_scale"] == 2
    with pytest.raises(
        UserError, match=r"^scales: x3 is not available: the model is a fixed-scale"
    ):
        evaluate_testset(net, folder_set(tmp_path / "set"), [3])


# --- official checkpoints, against the literal reading of SPEC ---------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["lte", "liif", "metasr"])
def test_official_checkpoint_scores_as_the_literal_reference(
    tmp_path: Path, model_name: str
) -> None:
    """An official-format file (scale_max 4) at x6: protocol output == SPEC-literal forward pass."""
    import literal
    from lte.checkpoint import load_checkpoint, save_official
    from lte.geometry import make_cell

    save_official(build_model(model_name, "edsr_baseline"), tmp_path / "m.pth")
    loaded = load_checkpoint(tmp_path / "m.pth")
    assert loaded.source == "official" and loaded.scale_max == 4.0
    lr = to_tensor(photo(12, 10)).unsqueeze(0)
    out_hw = (72, 60)
    pred = super_resolve(loaded.model, lr, out_hw, 6, chunk=1000)  # scale_max from the model
    coord = make_coord(out_hw)[None]
    cell = make_cell(out_hw, coord.shape[1])[None] * 1.5  # enlarged by 6 / 4
    ref_fn = getattr(literal, f"literal_{model_name}")
    with torch.no_grad():
        ref = ref_fn(loaded.model, (lr - 0.5) / 0.5, coord, cell)  # (1, Q, 3)
    ref = (ref[0].T.reshape(3, *out_hw) * 0.5 + 0.5).clamp(0, 1)
    assert torch.allclose(pred[0], ref, atol=2e-5)
    gt = to_tensor(photo(72, 60)).unsqueeze(0)
    assert psnr_protocol(pred, gt, 6, "benchmark").item() == pytest.approx(
        psnr_protocol(ref[None], gt, 6, "benchmark").item(), abs=1e-3
    )
