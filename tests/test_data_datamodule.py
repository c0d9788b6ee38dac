"""SRDataModule: batches, validation loaders, global batch, presets and bad-input errors."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf.errors import MissingMandatoryValue
from PIL import Image

from lte.data.datamodule import SRDataModule
from lte.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
CONF = ROOT / "src" / "lte" / "conf" / "data"


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
    assert all(len(dl) == 3 * 2 for dl in loaders)  # 3 val photos × 2 patches
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


def test_presets_compose_and_instantiate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LTE_DATA", str(tmp_path))
    with initialize_config_dir(str(CONF), version_base=None):
        sample = compose("sample")
        div2k = compose("div2k")
        folder = compose("folder")
    for cfg in (sample, div2k, folder):
        assert cfg._target_ == "lte.data.datamodule.SRDataModule"
        assert (cfg.inp_size, cfg.scale_min, cfg.scale_max, cfg.sample_q) == (48, 1, 4, 2304)
        assert cfg.batch_size == 16 and list(cfg.val_scales) == [2, 3, 4, 6]
    assert div2k.train_dir == f"{tmp_path}/DIV2K_train_HR" and div2k.repeat == 20
    with pytest.raises(MissingMandatoryValue):
        _ = folder.train_dir
    dm = instantiate(sample, cache="none")
    dm.setup("fit")
    assert len(dm.train_set.store) == 9
    with pytest.raises(
        UserError,
        match=r"DIV2K_train_HR' does not exist: set data.train_dir to an image folder, or run scripts/download_div2k",
    ):
        instantiate(div2k).setup("fit")


def test_sample_preset_from_another_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
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


def test_bad_options() -> None:
    with pytest.raises(UserError, match="train_dir is not set"):
        make_dm(train_dir="???").setup("fit")
    with pytest.raises(UserError, match="val_scales"):
        make_dm(val_scales=[0.5])
    with pytest.raises(UserError, match="sample_q"):
        make_dm(sample_q=0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_memory_cache_shared_with_workers() -> None:
    dm = make_dm(batch_size=2, num_workers=2)
    dm.setup("fit")
    assert dm.train_set.store._flat.is_shared()
    assert next(iter(dm.train_dataloader()))["inp"].shape == (2, 3, 48, 48)
