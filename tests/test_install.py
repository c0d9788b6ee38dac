"""A non-editable install works away from the repository: configs packaged, console scripts run.

The package is installed (no network: ``--no-index --no-build-isolation``, the venv's setuptools)
into a temporary target folder from a copy of the sources, and each console script runs from a
folder that is not the repository. A ``sitecustomize`` hook reports which ``lte`` each process
imported, so the editable install of the checkout cannot stand in for the installed copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from conftest import sample_photos
from lte.checkpoint import save_official
from lte.data.images import load_rgb, save_rgb
from lte.models import build_model

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "src" / "lte" / "conf"
pytestmark = pytest.mark.slow

#: Imported by Python at start-up from PYTHONPATH; prints the lte module that ran, at exit.
HOOK = """\
import atexit, sys

def _report():
    mod = sys.modules.get("lte")
    if mod is not None:
        sys.stderr.write("\\nLTE_FILE=" + str(mod.__file__) + "\\n")

atexit.register(_report)
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install --target`` of a copy of the checkout (pip builds in the tree it is given)."""
    try:
        have = version("setuptools")
    except PackageNotFoundError:
        have = "0"
    if int(have.split(".")[0]) < 77:  # pyproject's build requirement; no network to fetch it
        pytest.skip(
            f"needs setuptools>=77 in this environment (has {have}): pip install -e '.[dev]'"
        )
    base = tmp_path_factory.mktemp("install")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    target = base / "T"
    offline = ["--no-deps", "--no-build-isolation", "--no-index"]
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", *offline, "--target", str(target), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    (base / "hook").mkdir()
    (base / "hook" / "sitecustomize.py").write_text(HOOK)
    return target


def run_script(target: Path, cwd: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    """Run console script ``name`` from ``target/bin`` in ``cwd``, with only the install importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WANDB_API_KEY")}
    env |= {
        "PYTHONPATH": os.pathsep.join([str(target), str(target.parent / "hook")]),
        "WANDB_MODE": "offline",
    }
    env.pop("LTE_DATA", None)
    proc = subprocess.run(
        [str(target / "bin" / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    ran = [line for line in proc.stderr.splitlines() if line.startswith("LTE_FILE=")]
    assert ran, f"{name} never imported lte: {proc.stderr[-2000:]}"
    assert Path(ran[-1].removeprefix("LTE_FILE=")).resolve().is_relative_to(target.resolve())
    return proc


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working folder outside the repository (relative paths such as data/sample mean nothing)."""
    d = tmp_path / "elsewhere"
    d.mkdir()
    assert not d.resolve().is_relative_to(ROOT)
    return d


def test_every_config_is_packaged(installed: Path) -> None:
    shipped = {p.relative_to(CONF) for p in CONF.rglob("*.yaml")}
    got = {
        p.relative_to(installed / "lte" / "conf") for p in (installed / "lte" / "conf").rglob("*")
    }
    assert shipped and shipped <= got
    assert Path("hydra/launcher/slurm.yaml") in got
    assert (installed / "lte" / "py.typed").is_file()
    assert (installed / "lte" / "conf" / "__init__.py").is_file()  # Hydra's pkg://lte.conf
    for name in (
        "lte-train",
        "lte-test",
        "lte-upscale",
        "lte-compare",
        "lte-fourier",
        "lte-export",
        "lte-cmsr",
        "lte-cache",
    ):
        assert (installed / "bin" / name).is_file()


def test_train_composes_and_names_the_sample_folder(installed: Path, elsewhere: Path) -> None:
    proc = run_script(installed, elsewhere, "lte-train", "--cfg", "job", "experiment=rdn_lte")
    assert proc.returncode == 0, proc.stderr
    assert "_target_: lte.models.RDN" in proc.stdout
    assert "train_dir: ${paths.data_dir}/DIV2K_train_HR" in proc.stdout
    # data=sample means the checkout's data/sample: an installed copy has none, and says so.
    proc = run_script(installed, elsewhere, "lte-train", "data=sample", "logger=csv", "trainer=cpu")
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = [line for line in proc.stderr.splitlines() if line.strip()][-2]  # before LTE_FILE=
    assert last.startswith("error: image folder 'data/sample/train' does not exist")
    assert "lte checkout, and this lte is installed at" in last and "data.train_dir" in last


def test_upscale_and_test_with_a_real_checkpoint(installed: Path, elsewhere: Path) -> None:
    ckpt = elsewhere / "lte-edsr_baseline.pth"
    save_official(build_model("lte", "edsr_baseline"), ckpt)
    photos = sample_photos()
    hr = elsewhere / "set" / "HR"
    hr.mkdir(parents=True)
    for i, src in enumerate(photos[:2]):
        save_rgb(load_rgb(src)[64:112, 64:112], hr / f"crop{i}.png")

    out = elsewhere / "up.png"
    proc = run_script(
        installed, elsewhere, "lte-upscale", str(hr / "crop0.png"), str(out),
        "--ckpt", str(ckpt), "--scale", "2", "--device", "cpu",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert load_rgb(out).shape == (96, 96, 3)

    weights = elsewhere / "lte.safetensors"
    proc = run_script(installed, elsewhere, "lte-export", str(ckpt), str(weights))
    assert proc.returncode == 0, proc.stderr
    assert (elsewhere / "lte.safetensors.sha256").is_file()
    assert (elsewhere / "lte.safetensors.card.json").is_file()
    again = elsewhere / "up2.png"
    proc = run_script(
        installed, elsewhere, "lte-upscale", str(hr / "crop0.png"), str(again),
        "--ckpt", str(weights), "--scale", "2", "--device", "cpu",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert again.read_bytes() == out.read_bytes()

    results = elsewhere / "res.json"
    proc = run_script(
        installed, elsewhere, "lte-test", f"ckpt={ckpt}", "testset=folder",
        f"testset.hr_dir={hr}", "scales=[2]", f"results_file={results}",
        "device=cpu",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (rec,) = json.loads(results.read_text())
    assert rec["scale"] == 2 and rec["images"] == 2 and 5 < rec["psnr"] < 60
