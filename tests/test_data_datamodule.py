"""SRDataModule: batches, validation loaders, global batch, presets and bad-input errors."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue
from PIL import Image

from lte.data.datamodule import SRDataModule, checkout_root
from lte.data.paired import PairedDataModule
from lte.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
CONF = ROOT / "src" / "lte" / "conf"


def make_dm(**kw: object) -> SRDataModule:
    args = {"train_dir": SAMPLE / "train", "val_dir": SAMPLE / "val", "cache": "memory"} | kw
    return SRDataModule(**args)  # type: ignore[arg-type]


def test_train_batch_contract() -> None:
    dm = make_dm(batch_size=4, repeat=2)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert len(dm.train_set) == 18  # 9 photos × repeat 2
    batch = next(iter(loader))
    assert batch["inp"].shape == (4, 3, 48, 48)
    assert batch["coord"].shape == (4, 2304, 2) and batch["coord"].dtype == torch.float32
    assert batch["cell"].shape == (4, 2304, 2)
    assert batch["gt"].shape == (4, 2304, 3)
    assert len(loader) == 18 // 4  # last partial batch dropped


def test_train_loader_with_workers_is_seeded() -> None:
    dm = make_dm(batch_size=2, repeat=1, num_workers=2, persistent_workers=True)
    dm.setup("fit")

    def first_batch() -> dict[str, torch.Tensor]:
        torch.manual_seed(5)
        return next(iter(dm.train_dataloader()))

    a, b = first_batch(), first_batch()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_val_loaders_contract() -> None:
    dm = make_dm(val_patches=2, val_scales=[2, 2.5, 6])
    dm.setup("validate")
    loaders = dm.val_dataloader()
    assert dm.val_names == ["psnr", "psnr_x2", "psnr_x2.5", "psnr_x6"]
    assert len(loaders) == 4 and all(dl.batch_size == 1 for dl in loaders)
    assert len(loaders[0]) == 3 * 2  # 3 val photos × 2 patches
    assert all(len(dl) == 3 * 4 for dl in loaders[1:])  # fixed scales: >= MIN_FIXED_PATCHES (4)
    assert dm.scale_max == 4.0
    for dl, scale in zip(loaders[1:], [2, 2.5, 6], strict=True):
        item = next(iter(dl))
        side = round(48 * scale)
        assert item["hr_shape"].tolist() == [[side, side]]
        assert item["scale"].item() == pytest.approx(scale)
        assert item["coord"].shape == (1, side * side, 2) and item["gt"].shape == (
            1,
            side * side,
            3,
        )
        assert item["inp"].shape == (1, 3, 48, 48)
    mixed = [it["scale"].item() for it in loaders[0]]
    assert min(mixed) < 1.5 and max(mixed) > 3.5


def test_val_same_every_epoch_and_rank() -> None:
    # Two data modules stand for two ranks; iterating twice stands for two epochs.
    a, b = make_dm(), make_dm(cache="none")
    a.setup("validate")
    b.setup("validate")
    for dl_a, dl_b in zip(a.val_dataloader(), b.val_dataloader(), strict=True):
        for x, y, z in zip(dl_a, dl_b, dl_a, strict=True):
            assert all(torch.equal(x[k], y[k]) and torch.equal(x[k], z[k]) for k in x)


def test_global_batch_split_over_devices() -> None:
    # A real (unlaunched) 2-process trainer: Lightning reports world_size 2.
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    dm = make_dm(batch_size=16)
    dm.trainer = trainer
    assert dm.per_device_batch() == 8
    bad = make_dm(batch_size=15)
    bad.trainer = trainer
    with pytest.raises(UserError, match=r"data.batch_size=15 is the global batch.*2 devices"):
        bad.setup("fit")


#: Every key of each data preset as composed before the presets shared ``data/base.yaml``
#: (``paths.data_dir`` stands for the old ``${oc.env:LTE_DATA,./load}``). A change to base.yaml
#: that leaks into a preset, or a preset key lost in the move, fails here.
COMMON = {
    "_target_": "lte.data.datamodule.SRDataModule",
    "inp_size": 48,
    "scale_min": 1,
    "scale_max": 4,
    "sample_q": 2304,
    "sampler": "random",
    "augment": True,
    "batch_size": 16,
    "val_scales": [2, 3, 4, 6],
    "val_inp_size": 48,
    "val_patches": 1,
    "seed": 0,
}
PRESETS = {
    "div2k": COMMON
    | {
        "train_dir": "{data}/DIV2K_train_HR",
        "val_dir": "{data}/DIV2K_valid_HR",
        "repeat": 20,
        "num_workers": 8,
        "pin_memory": True,
        "persistent_workers": True,
        "cache": "disk",
        "cache_dir": "{data}/cache",
    },
    "sample": COMMON
    | {
        "train_dir": "data/sample/train",
        "val_dir": "data/sample/val",
        "repeat": 16,
        "num_workers": 0,
        "pin_memory": False,
        "persistent_workers": False,
        "cache": "memory",
        "cache_dir": ".cache/lte-data",
    },
    "folder": COMMON
    | {
        "train_dir": "T",
        "val_dir": "V",
        "repeat": 20,
        "num_workers": 4,
        "pin_memory": True,
        "persistent_workers": True,
        "cache": "none",
        "cache_dir": ".cache/lte-data",
    },
}


def compose_train(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(str(CONF), version_base=None):
        return compose("train", overrides=overrides)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_compose_to_their_values(
    preset: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LTE_DATA", str(tmp_path))
    monkeypatch.delenv("LTE_CACHE", raising=False)
    extra = ["data.train_dir=T", "data.val_dir=V"] if preset == "folder" else []
    cfg = compose_train([f"data={preset}", *extra])
    got = OmegaConf.to_container(cfg.data, resolve=True)
    want = {
        k: v.format(data=tmp_path) if isinstance(v, str) else v for k, v in PRESETS[preset].items()
    }
    assert got == want
    assert cfg.paths.data_dir == str(tmp_path)
    monkeypatch.delenv("LTE_DATA")
    assert compose_train([f"data={preset}", *extra]).paths.data_dir == "load"
    if preset == "div2k":
        assert (
            compose_train(["data=div2k", "paths.data_dir=/d"]).data.train_dir == "/d/DIV2K_train_HR"
        )


def test_presets_instantiate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LTE_DATA", str(tmp_path))
    folder = compose_train(["data=folder"])
    with pytest.raises(MissingMandatoryValue):
        _ = folder.data.train_dir
    dm = instantiate(compose_train(["data=sample"]).data, cache="none")
    dm.setup("fit")
    assert len(dm.train_set.store) == 9
    with pytest.raises(
        UserError,
        match=r"DIV2K_train_HR' does not exist: set data.train_dir to an image folder, or run scripts/download_div2k",
    ):
        instantiate(compose_train(["data=div2k"]).data).setup("fit")


def experiment_chain(name: str) -> tuple[list[str], list[DictConfig]]:
    """Group overrides (``data=div2k``...) and the key/value bodies of an experiment and its parents."""
    body = OmegaConf.load(CONF / "experiment" / f"{name}.yaml")
    groups: list[str] = []
    bodies: list[DictConfig] = []
    for entry in body.pop("defaults", []):
        if isinstance(entry, str):  # a parent experiment, e.g. `paper`
            parent_groups, parent_bodies = experiment_chain(entry)
            groups += parent_groups
            bodies += parent_bodies
        else:  # `override /model: liif`
            ((key, value),) = entry.items()
            groups.append(f"{key.removeprefix('override /')}={value}")
    return groups, [*bodies, body]


def leaves(node: DictConfig, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in node.items():
        if isinstance(value, DictConfig):
            out |= leaves(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = (
                OmegaConf.to_object(value) if OmegaConf.is_config(value) else value
            )
    return out


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_experiments_hold_only_what_they_change(name: str) -> None:
    groups, bodies = experiment_chain(name)
    inherited = compose_train(groups)  # the same groups, without the experiment's own values
    for parent in bodies[:-1]:
        inherited = OmegaConf.merge(inherited, parent)
    for key, value in leaves(bodies[-1]).items():
        assert OmegaConf.select(inherited, key) != value, f"{name}.yaml restates {key}={value}"
    # And the experiment still composes to its recipe.
    cfg = compose_train([f"experiment={name}"])
    # SwinIR-LIIF/-Meta-SR keep the paper's; SwinIR-LM-* take their recipe (conf/recipe/).
    swinir = name in ("swinir_lte", "paper_swinir", "swinir_lm_lte", "swinir_lm_liif")
    # EDSR-baseline-LM-*: 1200 epochs, one more milestone (the official train-lmf configs).
    longer = name in ("edsr_baseline_lm_lte", "edsr_baseline_lm_liif")
    root = cfg.paths.data_dir
    if cfg.data._target_ == "lte.data.paired.PairedDataModule":  # fixed-scale rows: DIV2K pairs
        s = cfg.data.scale
        # x2 unless data.scale=3|4 says otherwise; the upsampler follows.
        assert (name, s, cfg.encoder.upscale) == ("fixed_scale", 2, 2)
        assert cfg.data.train_hr_dir == f"{root}/DIV2K_train_HR"
        assert cfg.data.train_lr_dir == f"{root}/DIV2K_train_LR_bicubic/X{s}"
        assert cfg.data.val_lr_dir == f"{root}/DIV2K_valid_LR_bicubic/X{s}"
        assert cfg.data.scale_max == cfg.model.scale_max == s
    else:
        assert cfg.data.train_dir == f"{root}/DIV2K_train_HR"
        assert cfg.data.scale_max == 4
    assert (cfg.data.batch_size, cfg.data.repeat, cfg.data.inp_size) == (
        32 if swinir else 16,
        20,
        48,
    )
    assert cfg.optimizer.lr == (2e-4 if swinir else 1e-4)
    assert list(cfg.scheduler.milestones) == (
        [500, 800, 900, 950]
        if swinir
        else [200, 400, 600, 800, 1000]
        if longer
        else [200, 400, 600, 800]
    )
    assert (cfg.scheduler.gamma, cfg.trainer.max_epochs) == (0.5, 1200 if longer else 1000)
    if name == "swinir_lm_liif":  # the official SwinIR-LM-LIIF renders 8 layers deep
        assert cfg.model.decoder.render_depth == 8


def test_sample_preset_from_another_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert checkout_root() == ROOT  # this lte runs from its checkout (see test_install.py for not)
    dm = SRDataModule("data/sample/train", "data/sample/val")
    dm.setup("validate")
    assert len(dm.val_sets[0]) == 3


def test_missing_empty_and_too_small_folders(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"'.*nope' does not exist: .*data=sample"):
        make_dm(train_dir=tmp_path / "nope").setup("fit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        make_dm(train_dir=tmp_path / "empty").setup("fit")
    small = tmp_path / "small"
    small.mkdir()
    Image.new("RGB", (150, 150)).save(small / "a.png")
    with (
        pytest.warns(UserWarning, match=r"a\.png \(150x150\)"),
        pytest.raises(UserError, match="at least 192x192"),
    ):
        make_dm(train_dir=small).setup("fit")
    # val patches must fit the largest val scale (6 × 64 = 384 px), not just scale_max (256 px).
    with pytest.warns(UserWarning, match=r"smaller than 384 px .*chelsea\.png \(451x300\)"):
        make_dm(val_dir=SAMPLE / "val", val_inp_size=64).setup("validate")


BAD_OPTIONS = [
    # (option, value, the one-line message)
    (
        "num_workers",
        -1,
        r"^data\.num_workers=-1 must be a whole number >= 0 \(0 loads batches in the main process\)$",
    ),
    ("num_workers", 1.5, r"^data\.num_workers=1\.5 must be a whole number >= 0"),
    (
        "batch_size",
        "abc",
        r"^data\.batch_size='abc' must be a whole number >= 1 \(the global batch\)$",
    ),
    ("batch_size", 0, r"^data\.batch_size=0 must be a whole number >= 1"),
    ("batch_size", True, r"^data\.batch_size=True must be a whole number >= 1"),
    ("cache", "bogus", r"^data\.cache 'bogus' is unknown: use one of none, memory, disk$"),
    ("cache_dir", 3, r"^data\.cache_dir=3 must be a folder path$"),
    ("inp_size", 0, r"^data\.inp_size=0 must be a whole number >= 1 \(LR patch side in pixels\)$"),
    ("inp_size", "48", r"^data\.inp_size='48' must be a whole number >= 1"),
    ("scale_max", float("inf"), r"^data\.scale_max=inf must be a finite number >= 1$"),
    ("scale_min", float("nan"), r"^data\.scale_min=nan must be a finite number >= 1$"),
    ("scale_min", 0.5, r"^data\.scale_min=0\.5 must be a finite number >= 1$"),
    ("scale_min", 5, r"^data\.scale_min=5, data\.scale_max=4: need 1 <= scale_min <= scale_max$"),
    ("sample_q", 0, r"^data\.sample_q=0 must be a whole number >= 1$"),
    ("sample_q", 2305, r"^data\.sample_q=2305 must be between 1 and 2304"),
    ("repeat", 0, r"^data\.repeat=0 must be a whole number >= 1$"),
    ("val_scales", [0.5], r"^data\.val_scales=\[0\.5\]: every scale must be a finite number >= 1$"),
    ("val_scales", [2, float("inf")], r"^data\.val_scales=\[2, inf\]: every scale must be"),
    ("val_scales", "2,3", r"^data\.val_scales='2,3' must be a list of scales, e.g\. \[2,3,4\]$"),
    ("val_inp_size", -4, r"^data\.val_inp_size=-4 must be a whole number >= 1 \(LR patch side\)$"),
    ("val_patches", 0, r"^data\.val_patches=0 must be a whole number >= 1$"),
    ("seed", "x", r"^data\.seed='x' must be a whole number >= 0$"),
    ("augment", "no", r"^data\.augment='no' must be true or false$"),
    ("pin_memory", 1, r"^data\.pin_memory=1 must be true or false$"),
    ("persistent_workers", None, r"^data\.persistent_workers=None must be true or false$"),
]


@pytest.mark.parametrize(("option", "value", "message"), BAD_OPTIONS)
def test_bad_option_is_one_named_line(option: str, value: object, message: str) -> None:
    # Raised by the constructor: before any folder is scanned or any model is built.
    with pytest.raises(UserError, match=message) as err:
        make_dm(train_dir="/nonexistent", **{option: value})
    assert "\n" not in str(err.value)


def test_unset_folder() -> None:
    with pytest.raises(UserError, match=r"^data\.train_dir is not set: pass data\.train_dir="):
        make_dm(train_dir="???").setup("fit")
    with pytest.raises(UserError, match=r"^data\.val_dir=\[1\] must be a folder path$"):
        make_dm(val_dir=[1]).setup("validate")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_memory_cache_shared_with_workers() -> None:
    dm = make_dm(batch_size=2, num_workers=2)
    dm.setup("fit")
    assert dm.train_set.store._flat.is_shared()
    assert next(iter(dm.train_dataloader()))["inp"].shape == (2, 3, 48, 48)


# --- paired data (data=paired, data=div2k_paired): the same one-line rule ------------------------


def paired_folders(root: Path) -> dict[str, Path]:
    """Two HR images (200x150, 150x120) and their x2 LR (DIV2K names), for train and val."""
    rng = np.random.default_rng(0)
    dirs = {}
    for split in ("train", "val"):
        hr_dir, lr_dir = root / split / "HR", root / split / "X2"
        hr_dir.mkdir(parents=True)
        lr_dir.mkdir(parents=True)
        for name, (w, h) in (("a", (200, 150)), ("b", (150, 120))):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                hr_dir / f"{name}.png"
            )
            Image.new("RGB", (w // 2, h // 2)).save(lr_dir / f"{name}x2.png")
        dirs[f"{split}_hr_dir"], dirs[f"{split}_lr_dir"] = hr_dir, lr_dir
    return dirs


def make_paired(root: Path, **kw: object) -> PairedDataModule:
    args = paired_folders(root) | {"scale": 2, "inp_size": 32, "val_inp_size": 32} | kw
    return PairedDataModule(**args)  # type: ignore[arg-type]


PAIRED_BAD_OPTIONS = [
    # (option, value, the one-line message): raised by the constructor, before any folder is read
    ("scale", 2.5, r"^data\.scale=2\.5 must be a whole number >= 2 \(the LR/HR pairs' integer "),
    ("scale", 3.0, r"^data\.scale=3\.0 must be a whole number >= 2"),
    ("scale", 1, r"^data\.scale=1 must be a whole number >= 2"),
    ("scale", "2", r"^data\.scale='2' must be a whole number >= 2"),
    ("scale", True, r"^data\.scale=True must be a whole number >= 2"),
    (
        "scale_max",
        4,
        r"^data\.scale_max=4 differs from data\.scale=2: paired data trains at its one scale; "
        r"set data\.scale only$",
    ),
    ("scale_min", 1, r"^data\.scale_min=1 differs from data\.scale=2"),
    ("inp_size", 0, r"^data\.inp_size=0 must be a whole number >= 1 \(LR patch side in pixels\)$"),
    ("batch_size", 0, r"^data\.batch_size=0 must be a whole number >= 1"),
    ("cache", "bogus", r"^data\.cache 'bogus' is unknown"),
]


@pytest.mark.parametrize(("option", "value", "message"), PAIRED_BAD_OPTIONS)
def test_paired_bad_option_is_one_named_line(
    option: str, value: object, message: str, tmp_path: Path
) -> None:
    with pytest.raises(UserError, match=message) as err:
        make_paired(tmp_path, **{option: value})
    assert "\n" not in str(err.value)


def _resize_lr(d: dict[str, Path]) -> dict[str, object]:
    Image.new("RGB", (99, 75)).save(d["train_lr_dir"] / "ax2.png")  # HR 200x150 needs 100x75
    return {}


def _x3_lr(d: dict[str, Path]) -> dict[str, object]:
    Image.new("RGB", (66, 50)).save(d["train_lr_dir"] / "ax2.png")  # the x3 LR under an x2 name
    return {}


def _missing_lr(d: dict[str, Path]) -> dict[str, object]:
    (d["val_lr_dir"] / "bx2.png").unlink()
    return {}


def _small_lr(d: dict[str, Path]) -> dict[str, object]:
    return {"inp_size": 64}  # b's LR is 75x60


def _small_val_lr(d: dict[str, Path]) -> dict[str, object]:
    return {"val_inp_size": 61}


def _no_lr_folder(d: dict[str, Path]) -> dict[str, object]:
    return {"train_lr_dir": d["train_lr_dir"].parent / "X4"}


def _div2k_hr_missing(d: dict[str, Path]) -> dict[str, object]:
    return {"train_hr_dir": d["train_hr_dir"].parent / "DIV2K_train_HR"}


PAIRED_BAD_FOLDERS = [
    # (what to break, the one-line message): raised by setup, from the headers, before any step
    (
        _resize_lr,
        r"^LR '.*train/X2/ax2\.png' is 99x75 but its HR '.*train/HR/a\.png' \(200x150\) needs "
        r"100x75 at x2 \(floor\(HR/2\)\): remake the LR with scripts/make_lr\.py --scales 2 "
        r"\(docs/data\.md\)$",
    ),
    (
        _x3_lr,
        r"^LR '.*ax2\.png' is 66x50 but its HR '.*a\.png' \(200x150\) needs 100x75 at x2 "
        r"\(floor\(HR/2\)\): the pair is x3: set data\.scale=3 or use the X2 LR folder$",
    ),
    (
        _missing_lr,
        r"^HR '.*val/HR/b\.png' has no x2 LR in data\.val_lr_dir '.*val/X2' \(looked for bx2\.png "
        r"or b\.png\): point data\.val_lr_dir at the X2 LR folder, or make it with python "
        r"scripts/make_lr\.py --hr .*val/HR --out OUT --scales 2 --kernel matlab and set "
        r"data\.val_lr_dir=OUT/X2 \(docs/data\.md\)$",
    ),
    (
        _small_lr,
        r"^LR '.*train/X2/bx2\.png' \(75x60\) is smaller than the 64x64 LR crop "
        r"\(data\.inp_size=64\): use larger images or lower data\.inp_size$",
    ),
    (
        _small_val_lr,
        r"^LR '.*val/X2/bx2\.png' \(75x60\) is smaller than the 61x61 LR crop "
        r"\(data\.val_inp_size=61\): use larger images or lower data\.val_inp_size$",
    ),
    (
        _no_lr_folder,
        r"^image folder '.*train/X4' does not exist: set data\.train_lr_dir to the LR folder, "
        r"or make it with python scripts/make_lr\.py",
    ),
    (
        _div2k_hr_missing,
        r"^image folder '.*DIV2K_train_HR' does not exist: set data\.train_hr_dir to an image "
        r"folder, or run scripts/download_div2k\.sh",
    ),
]


@pytest.mark.parametrize(("breaks", "message"), PAIRED_BAD_FOLDERS)
def test_paired_bad_folders_are_one_named_line(
    breaks: Callable[[dict[str, Path]], dict[str, object]], message: str, tmp_path: Path
) -> None:
    dirs = paired_folders(tmp_path / "d")
    dm = PairedDataModule(  # type: ignore[arg-type]
        **(dirs | {"scale": 2, "inp_size": 32, "val_inp_size": 32} | breaks(dirs))
    )
    with pytest.raises(UserError, match=message) as err:
        dm.setup("fit")
    assert "\n" not in str(err.value)


def test_paired_presets_compose(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LTE_DATA", str(tmp_path))
    cfg = compose_train(["data=div2k_paired", "data.scale=3"])
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert data["_target_"] == "lte.data.paired.PairedDataModule"
    assert data["train_hr_dir"] == f"{tmp_path}/DIV2K_train_HR"
    assert data["train_lr_dir"] == f"{tmp_path}/DIV2K_train_LR_bicubic/X3"
    assert data["val_lr_dir"] == f"{tmp_path}/DIV2K_valid_LR_bicubic/X3"
    assert (data["scale_min"], data["scale_max"], cfg.model.scale_max) == (3, 3, 3)
    assert (data["inp_size"], data["batch_size"], data["repeat"], data["cache"]) == (
        48,
        16,
        20,
        "disk",
    )
    with pytest.raises(UserError, match=r"DIV2K_train_HR' does not exist: .*download_div2k\.sh"):
        instantiate(cfg.data).setup("fit")
    with pytest.raises(MissingMandatoryValue):  # no default scale: x2 by accident is no recipe
        _ = compose_train(["data=paired"]).data.scale
