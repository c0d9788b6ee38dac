"""``python -m lte.test`` end to end on a tiny folder of real photo crops, as a user runs it.

The W&B run is a real subprocess; the folder runs go through the entry point in-process
(``cli.run_main``: same argv, working directory and environment).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli import run_main
from conftest import sample_photos
from lte.checkpoint import atomic_save, checkpoint_metadata, load_checkpoint
from lte.data.images import load_rgb, save_rgb
from lte.data.resize import downsample_pil
from lte.evaluation import evaluate_testset
from lte.models.build import instantiate_model, model_config
from lte.models.identity import labels
from lte.results import RESULT_KEYS
from lte.testsets import FolderSet

ROOT = Path(__file__).resolve().parents[1]


def save_tiny_checkpoint(path: Path, model: str = "lte", encoder: str = "edsr_tiny") -> Path:
    """An lte-format checkpoint of a tiny random model (what training writes, minus Lightning)."""
    cfg = model_config(model, encoder)
    net = instantiate_model(cfg)
    meta = checkpoint_metadata(net)
    sd = {f"net.{k}": v for k, v in net.state_dict().items()}
    atomic_save({"state_dict": sd, "lte": meta}, path)
    return path


def make_folder(root: Path) -> Path:
    """Two 64x64 crops of real photos; LR_bicubic files for x2 only (x3, x4 go on the fly)."""
    (root / "HR").mkdir(parents=True)
    (root / "LR_bicubic" / "X2").mkdir(parents=True)
    for i, src in enumerate(sample_photos()[:2]):
        hr = load_rgb(src)[64:128, 64:128]
        save_rgb(hr, root / "HR" / f"crop{i}.png")
        save_rgb(downsample_pil(hr, (32, 32)), root / "LR_bicubic" / "X2" / f"crop{i}x2.png")
    return root


def run_test(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("WANDB_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "lte.test", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_test_in_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """:func:`run_test` through the ``lte.test`` entry point in this process (:func:`cli.run_main`)."""
    import lte.test

    return run_main(
        lte.test.main, args, prog=str(lte.test.__file__), cwd=cwd, drop_env=["WANDB_API_KEY"]
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("lte_test_cli")
    torch.manual_seed(0)
    save_tiny_checkpoint(d / "tiny.ckpt")
    make_folder(d / "photos")
    return d


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["benchmark", "div2k"])
def test_folder_run_writes_schema_json_and_csv(workdir: Path, protocol: str) -> None:
    results = workdir / f"out_{protocol}" / "res.json"
    results.parent.mkdir()
    # A record of another checkpoint already in the file: merged with, never overwritten.
    earlier = {
        "testset": "set5", "scale": 2, "protocol": "benchmark", "psnr": 38.2, "ssim": None,
        "images": 5, "model": "lte", "encoder": "rdn", "ckpt": "rdn-lte.pth",
    }  # fmt: skip
    results.write_text(json.dumps([earlier]))
    proc = run_test_in_process(
        f"ckpt={workdir / 'tiny.ckpt'}",
        "testset=folder",
        f"testset.hr_dir={workdir / 'photos' / 'HR'}",
        f"testset.lr_dir={workdir / 'photos' / 'LR_bicubic'}",
        f"testset.protocol={protocol}",
        "scales=[2,3,4]",
        f"results_file={results}",
        f"hydra.run.dir={workdir / f'run_{protocol}'}",
        cwd=workdir,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(results.read_text())
    assert data[0] == earlier
    data = data[1:]
    assert [r["scale"] for r in data] == [2, 3, 4]
    loaded = load_checkpoint(workdir / "tiny.ckpt")
    model_label, encoder_label = labels(loaded.model.describe())  # what the model is, not a name
    assert encoder_label == "edsr-n_resblocks=2-n_feats=16"
    for rec in data:
        assert list(rec) == list(RESULT_KEYS)
        assert rec["testset"] == "photos" and rec["protocol"] == protocol
        assert rec["images"] == 2 and (rec["model"], rec["encoder"]) == (model_label, encoder_label)
        assert 10 < rec["psnr"] < 60 and 0 < rec["ssim"] <= 1
        assert rec["ckpt"].endswith("tiny.ckpt")
    with open(results.with_suffix(".csv")) as f:
        rows = list(csv.DictReader(f))
    assert [float(r["psnr"]) for r in rows] == pytest.approx([38.2] + [r["psnr"] for r in data])
    # The terminal table: one row per test set, one column per scale.
    assert "x2" in proc.stdout and "x4" in proc.stdout and "photos" in proc.stdout
    # x2 read its LR file, x3 and x4 were made on the fly (said once each in the log).
    log = (workdir / f"run_{protocol}" / "test.log").read_text()
    assert "x2: LR images from" in log
    assert log.count("on the fly") == 2
    # The Hydra shell adds nothing to the numbers: the library gives the same PSNR.
    photos = workdir / "photos"
    lib = evaluate_testset(
        loaded.model, FolderSet(photos / "HR", photos / "LR_bicubic", protocol=protocol), [2, 3, 4]
    )
    assert [r["psnr"] for r in data] == pytest.approx([r.psnr for r in lib], abs=1e-6)


@pytest.mark.slow
def test_several_presets_in_one_run_with_wandb_offline(workdir: Path) -> None:
    data = workdir / "load"
    for name in ("Set5", "Set14"):
        make_folder(data / "benchmark" / name)
    run_dir = workdir / "run_multi"
    proc = run_test(
        f"ckpt={workdir / 'tiny.ckpt'}",
        "testsets=[set5,set14]",
        "scales=[2,6]",
        "logger=wandb",
        f"hydra.run.dir={run_dir}",
        cwd=workdir,
        env={"LTE_DATA": str(data), "WANDB_SILENT": "true"},
    )
    assert proc.returncode == 0, proc.stderr
    recs = json.loads((run_dir / "results.json").read_text())
    assert {(r["testset"], r["scale"]) for r in recs} == {
        ("set5", 2), ("set5", 6), ("set14", 2), ("set14", 6),
    }  # fmt: skip
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "W&B must run offline inside the Hydra run dir without an API key"


# Bad inputs (missing data sets, wrong LR sizes, ...) are rows of tests/test_bad_inputs_test.py.
