"""SRDataModule: batches, validation loaders, global batch, presets and bad-input errors."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue
from PIL import Image

from lte.data.datamodule import SRDataModule, checkout_root
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
    swinir = name in ("swinir_lte", "paper_swinir")  # SwinIR-LIIF/-Meta-SR keep the paper's
    assert cfg.data.train_dir == f"{cfg.paths.data_dir}/DIV2K_train_HR"
    assert (cfg.data.batch_size, cfg.data.repeat, cfg.data.scale_max) == (
        32 if swinir else 16,
        20,
        4,
    )
    assert cfg.optimizer.lr == (2e-4 if swinir else 1e-4)
    assert list(cfg.scheduler.milestones) == (
        [500, 800, 900, 950] if swinir else [200, 400, 600, 800]
    )
    assert (cfg.scheduler.gamma, cfg.trainer.max_epochs) == (0.5, 1000)


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
