"""Paired LR/HR data (``data=paired``, ``data=div2k_paired``): the crop, the batches, the checks.

LR folders for the bundled photos are made once per module with ``scripts/make_lr.py`` (MATLAB
bicubic, DIV2K's ``X{s}/<stem>x{s}.png`` naming), as docs/data.md tells users to.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image

from cli import run_in_process, run_module
from lte.data.paired import PairedDataModule, paired_crop, paired_sample
from lte.data.sampling import augment
from lte.geometry import make_coord
from lte.training.data import SeededSamples

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"


def load_make_lr() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_lr_script", ROOT / "scripts" / "make_lr.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lr_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/{train,val}/X{2,3}/<stem>x{s}.png`` for the bundled photos (MATLAB bicubic)."""
    root = tmp_path_factory.mktemp("sample_lr")
    make_lr = load_make_lr()
    for split in ("train", "val"):
        make_lr.make_lr_folder(SAMPLE / split, root / split, [2, 3], "matlab")
    return root


def make_dm(lr_root: Path, scale: int = 2, **kw: object) -> PairedDataModule:
    args = {
        "train_hr_dir": SAMPLE / "train",
        "train_lr_dir": lr_root / "train" / f"X{scale}",
        "val_hr_dir": SAMPLE / "val",
        "val_lr_dir": lr_root / "val" / f"X{scale}",
        "scale": scale,
        "cache": "memory",
    } | kw
    return PairedDataModule(**args)  # type: ignore[arg-type]


def position_pair(scale: int, lr_hw: tuple[int, int] = (60, 62)) -> tuple[np.ndarray, np.ndarray]:
    """An HR image ``floor``-compatible with an LR of ``lr_hw`` (HR = s·LR + s - 1 px: the extra
    rows and columns must never be read), each pixel telling its own (row, column)."""

    def grid(h: int, w: int, tag: int) -> np.ndarray:
        yy, xx = np.mgrid[:h, :w]
        return np.stack([yy, xx, np.full_like(yy, tag)], axis=-1).astype(np.uint8)

    h, w = lr_hw
    return grid(h * scale + scale - 1, w * scale + scale - 1, 200), grid(h, w, 100)


def to_levels(x: torch.Tensor) -> np.ndarray:
    return ((x * 0.5 + 0.5) * 255).round().to(torch.uint8).numpy()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_hr_crop_is_the_literal_s_times_lr_crop_after_the_same_augmentation(scale: int) -> None:
    hr, lr = position_pair(scale)
    side = 48 * scale
    g = torch.Generator().manual_seed(scale)
    seen_flags = set()
    for _ in range(40):
        item = paired_sample(hr, lr, inp_size=48, scale=scale, generator=g)
        inp = to_levels(item["inp"]).transpose(1, 2, 0)  # (48, 48, 3)
        y0, x0 = int(inp[..., 0].min()), int(inp[..., 1].min())
        # The one augmentation that turns the plain LR crop at (y0, x0) into the input...
        matches = [
            f
            for f in itertools.product([False, True], repeat=3)
            if np.array_equal(augment(lr[y0 : y0 + 48, x0 : x0 + 48], *f), inp)
        ]
        assert len(matches) == 1
        flags = matches[0]
        seen_flags.add(flags)
        # ...turns HR[s*y0 : s*y0+48s, s*x0 : s*x0+48s] into the target, row-major.
        want = augment(hr[scale * y0 : scale * y0 + side, scale * x0 : scale * x0 + side], *flags)
        gt = to_levels(item["gt"]).reshape(side, side, 3)
        assert np.array_equal(gt, want)
        assert item["scale"].item() == scale
    assert len(seen_flags) >= 6  # the flips and the transpose are drawn, not fixed


def test_queries_cover_every_hr_pixel_once_with_cell_two_over_side() -> None:
    hr, lr = position_pair(3)
    item = paired_crop(hr, lr, y0=5, x0=7, inp_size=48, scale=3, flags=(True, False, True))
    side = 144
    assert item["coord"].shape == (side * side, 2) and item["coord"].dtype == torch.float32
    assert torch.equal(item["coord"], make_coord((side, side)))  # every pixel, row-major
    rows_cols = ((item["coord"] + 1) * side / 2 - 0.5).round().long()
    assert len({tuple(p) for p in rows_cols.tolist()}) == side * side  # each exactly once
    assert torch.equal(item["cell"], torch.full((side * side, 2), 2 / side))
    assert item["gt"].shape == (side * side, 3) and item["inp"].shape == (3, 48, 48)
    # Without flags the corner HR pixel is the one at (3·5, 3·7).
    plain = paired_crop(hr, lr, y0=5, x0=7, inp_size=48, scale=3)
    assert to_levels(plain["gt"][0]).tolist() == [15, 21, 200]
    assert to_levels(plain["inp"][:, 0, 0]).tolist() == [5, 7, 100]


def test_train_batches_and_validation_loader(lr_root: Path) -> None:
    dm = make_dm(lr_root, scale=2, batch_size=4, repeat=2, val_patches=2)
    dm.setup("fit")
    assert len(dm.train_set) == 18  # 9 pairs × repeat 2
    batch = next(iter(dm.train_dataloader()))
    assert batch["inp"].shape == (4, 3, 48, 48)
    assert batch["coord"].shape == (4, 96 * 96, 2) and batch["gt"].shape == (4, 96 * 96, 3)
    assert torch.all(batch["cell"] == 2 / 96)
    assert dm.val_names == ["psnr"] and (dm.scale_min, dm.scale_max) == (2, 2)
    (loader,) = dm.val_dataloader()
    assert len(loader) == 3 * 2  # 3 val pairs × 2 patches
    items = list(loader)
    assert all(it["hr_shape"].tolist() == [[96, 96]] for it in items)
    assert all(it["scale"].item() == 2 for it in items)
    # Fixed patches: the same every epoch and for another (rank's) data module.
    other = make_dm(lr_root, scale=2, val_patches=2, cache="none")
    other.setup("validate")
    for a, b in zip(items, other.val_dataloader()[0], strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_validation_patch_is_the_real_pair(lr_root: Path) -> None:
    # The LR input is the shipped-style LR file's pixels, the target the HR file's, aligned.
    from lte.data.images import load_rgb

    dm = make_dm(lr_root, scale=3)
    dm.setup("validate")
    ds = dm.val_sets[0]
    sp = ds.specs[0]
    hr = load_rgb(ds.hr.files[sp.image])
    lr = load_rgb(ds.lr.files[sp.image])
    assert ds.lr.files[sp.image].name == ds.hr.files[sp.image].stem + "x3.png"
    item = ds[0]
    assert np.array_equal(
        to_levels(item["inp"]).transpose(1, 2, 0), lr[sp.y0 : sp.y0 + 48, sp.x0 : sp.x0 + 48]
    )
    want = hr[3 * sp.y0 : 3 * sp.y0 + 144, 3 * sp.x0 : 3 * sp.x0 + 144]
    assert np.array_equal(to_levels(item["gt"]).reshape(144, 144, 3), want)


def test_samples_are_a_function_of_their_seed(lr_root: Path) -> None:
    # lte.training.data draws each sample under its own seed: what makes a resume exact.
    dm = make_dm(lr_root, scale=2)
    dm.setup("fit")
    seeded = SeededSamples(dm.train_set)
    a = seeded[(4, 123)]
    torch.manual_seed(999)
    b = seeded[(4, 123)]
    c = seeded[(4, 124)]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["inp"], c["inp"])


# --- the real CLI --------------------------------------------------------------------------------

SMALL = [
    "encoder=edsr_tiny",
    "data.inp_size=16",
    "data.batch_size=4",
    "data.repeat=1",
    "data.val_inp_size=8",
    "data.num_workers=0",
    "data.pin_memory=false",
    "data.persistent_workers=false",
    "trainer=cpu",
    "trainer.limit_val_batches=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "module.val_chunk=500",
]


def paired_args(lr_root: Path, scale: int = 2) -> list[str]:
    return [
        "data=paired",
        f"data.scale={scale}",
        f"data.train_hr_dir={SAMPLE / 'train'}",
        f"data.train_lr_dir={lr_root / 'train' / f'X{scale}'}",
        f"data.val_hr_dir={SAMPLE / 'val'}",
        f"data.val_lr_dir={lr_root / 'val' / f'X{scale}'}",
    ]


def run_train(*args: str) -> subprocess.CompletedProcess[str]:
    return run_module("lte.train", *SMALL, *args)


def ok(res: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def bad_lr(lr_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A x2 LR folder whose china LR is really the x3 one (right name, wrong size)."""
    folder = tmp_path_factory.mktemp("bad_lr") / "X2"
    shutil.copytree(lr_root / "train" / "X2", folder)
    shutil.copy(lr_root / "train" / "X3" / "chinax3.png", folder / "chinax2.png")
    return folder


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["data.train_lr_dir={bad_lr}"],
            r"^error: LR '.*chinax2\.png' is 213x142 but its HR '.*china\.png' \(640x427\) needs "
            r"320x213 at x2 \(floor\(HR/2\)\): the pair is x3: set data\.scale=3 or use the X2 LR folder$",
        ),
        (
            ["data.train_lr_dir={lr_root}/val/X2"],
            r"^error: HR '.*aerial_osbs_029\.png' has no x2 LR in data\.train_lr_dir '.*val/X2' "
            r"\(looked for aerial_osbs_029x2\.png or aerial_osbs_029\.png\) \(and 8 more HR files\): "
            r"point data\.train_lr_dir at the X2 LR folder, or make it with python scripts/make_lr\.py",
        ),
    ],
)
def test_bad_paired_input_through_the_cli(
    lr_root: Path, bad_lr: Path, extra: list[str], message: str, tmp_path: Path
) -> None:
    args = [a.format(lr_root=lr_root, bad_lr=bad_lr) for a in extra]
    res = run_in_process(
        "lte.train", *SMALL, *paired_args(lr_root), *args, f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert re.match(message, one_line_error(res))
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["lte", "liif", "metasr"])
def test_every_decoder_trains_on_pairs(lr_root: Path, model: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    res = ok(
        run_train(
            *paired_args(lr_root, 3),
            f"model={model}",
            "trainer.max_epochs=1",
            "logger=none",
            f"hydra.run.dir={run}",
        )
    )
    assert "done: step 2 (1 epochs)" in res.stdout and "val/psnr" in res.stdout
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2
    assert ckpt["train_config"]["data"]["scale"] == 3


@pytest.mark.slow
def test_paired_run_resumed_mid_epoch_equals_an_uninterrupted_one(
    lr_root: Path, tmp_path: Path
) -> None:
    # 9 pairs / batch 4 = 2 steps an epoch: stop at step 3 (mid-epoch), resume to 6.
    run = tmp_path / "run"
    args = [*paired_args(lr_root), f"hydra.run.dir={run}", "trainer.max_epochs=10", "logger=none"]
    ok(run_train(*args, "trainer.max_steps=3"))
    ok(run_train(*args, "trainer.max_steps=6", "ckpt_path=last"))
    resumed = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    straight = tmp_path / "straight"
    ok(
        run_train(
            *paired_args(lr_root),
            f"hydra.run.dir={straight}",
            "trainer.max_epochs=3",
            "logger=none",
        )
    )
    expected = torch.load(
        straight / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert resumed["global_step"] == expected["global_step"] == 6
    for k, v in expected["state_dict"].items():
        assert torch.equal(resumed["state_dict"][k], v), k


def test_lr_folder_naming_from_make_lr(lr_root: Path) -> None:
    # DIV2K's naming, which data=div2k_paired and pair_by_name expect.
    names = sorted(p.name for p in (lr_root / "val" / "X3").iterdir())
    assert names == ["chelseax3.png", "coffeex3.png", "rocketx3.png"]
    with Image.open(lr_root / "val" / "X3" / "chelseax3.png") as im:
        assert im.size == (451 // 3, 300 // 3)
