"""The GPU check (``scripts/gpu_check.sh``) runs end to end on a CPU in ``--smoke`` mode.

No GPU has been lent to the project yet, and when one is, the check has minutes: so the script
itself, its sections, its report and its exit status are tested here, with a tiny model, by the
same command a GPU machine runs (plus ``--smoke``). CPU against CPU must agree exactly; the
sections that need CUDA must say so.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import DictConfig

from lte.conf import CONF_DIR

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
SECTIONS = {"model", "parity", "training", "ddp", "tf32", "compile_backend"}


def load_script(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``scripts/gpu_check.py`` as a module (registered first: its dataclasses look it up)."""
    path = ROOT / "scripts" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check_script", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def expand(command: list[str]) -> list[list[str]]:
    """A ``lte.train`` command as the single runs it makes: a multirun's ``k=a,b`` values expanded
    (not inside brackets), the ``-m`` flag and Hydra's own folder options left out."""
    fixed, swept = [], []
    for arg in command:
        if arg == "-m" or arg.startswith("hydra."):
            continue
        key, _, value = arg.partition("=")
        if "," in value and "[" not in value:
            swept.append([f"{key}={v}" for v in value.split(",")])
        else:
            fixed.append(arg)
    return [fixed + list(combo) for combo in itertools.product(*swept)]


def compose_train(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name="train", overrides=overrides)


def test_the_gpu_commands_compose_to_the_paper_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never run here (no GPU), so every lte.train command of a 4-GPU check is composed with the
    real configs: a misspelt GPU-only override would otherwise first fail on the lent machine."""
    gc = load_script(monkeypatch)
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    args = gc.parse_args(["--out", str(tmp_path / "r.json"), "--work", str(tmp_path / "w")])
    s = gc.settings_from(args, 4, datetime.now(timezone.utc))
    assert s.device == "cuda" and s.options == ("fp32", "bf16", "compile")
    assert sum(s.budgets.values()) == 480  # the 8 minutes
    commands = {
        "model": gc.model_command(s, tmp_path / "m"),
        "eager": gc.training_command(s, "32-true,bf16-mixed", [], tmp_path / "t"),
        "compile": gc.training_command(s, "32-true", ["model.compile=true"], tmp_path / "c"),
        "ddp": [*gc.ddp_command(s, 4, tmp_path / "d"), "trainer.max_steps=20"],
        "tf32": gc.tf32_command(s, ["high", "highest"], tmp_path / "f"),
    }
    runs = {name: [compose_train(r) for r in expand(cmd)] for name, cmd in commands.items()}
    assert [len(v) for v in runs.values()] == [1, 6, 3, 1, 2]
    for name, cfgs in runs.items():
        for cfg in cfgs:
            assert cfg.trainer.accelerator == "gpu" and cfg.encoder.n_resblocks == 16, name
            assert get_class(cfg.callbacks.gpu_probe._target_).__name__ == "StepProbe"
            assert cfg.data.inp_size == 48 and cfg.data.sample_q == 2304, name
            epoch = 9 * cfg.data.repeat // cfg.data.batch_size
            assert epoch > cfg.trainer.max_steps, name  # stops before any validation
    train = runs["eager"] + runs["compile"]
    assert {
        (c.model.decoder._target_.split(".")[-1], c.trainer.precision, c.model.compile)
        for c in train
    } == {
        (d, p, c)
        for d in ("LTEDecoder", "LIIFDecoder", "MetaSRDecoder")
        for p, c in (("32-true", False), ("bf16-mixed", False), ("32-true", True))
    }
    assert all(c.data.batch_size == 16 and c.trainer.max_steps == 50 for c in train)
    ddp = runs["ddp"][0]
    assert ddp.trainer.devices == 4 and ddp.trainer.strategy == "ddp"
    assert ddp.data.batch_size == 64  # the global batch: 16 per GPU
    assert [c.float32_matmul_precision for c in runs["tf32"]] == ["high", "highest"]


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    """``bash scripts/gpu_check.sh *args`` with this interpreter (no ``make install``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_MODE")}
    env["LTE_PYTHON"] = sys.executable
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_smoke_check_writes_a_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    done = run_check("--smoke", "--out", str(out), "--work", str(tmp_path / "work"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["mode"] == "smoke" and report["device"] == "cpu"
    assert report["passed"] is True and report["failed_sections"] == []
    assert report["finished"] is not None
    sections = report["sections"]
    assert set(sections) == SECTIONS
    for name, section in sections.items():
        assert section["status"] in ("passed", "skipped"), (name, section["reason"])
        assert 0 <= section["seconds"] <= section["budget_s"], name
        for check in section["checks"]:
            assert {"name", "status", "value", "rule"} <= set(check), (name, check)

    # CPU against CPU: the same images to the level and the same PSNR to the bit.
    parity = sections["parity"]
    assert parity["status"] == "passed"
    assert parity["results"]["upscale"]["max_level_diff"] == 0
    assert all(v["pixels_differing"] == 0 for v in parity["results"]["upscale"]["images"].values())
    diffs = parity["results"]["test"]["abs_diff_db"]
    assert set(diffs) == {"sample x2", "sample x3", "sample x4"}
    assert all(d == 0.0 for d in diffs.values())

    training = sections["training"]["results"]["runs"]
    assert set(training) == {
        f"{d}/{o}" for d in ("lte", "liif", "metasr") for o in ("fp32", "bf16")
    }
    for key, run in training.items():
        assert run["steps"] == 5 and run["it_per_s"] > 0, key
        assert run["peak_memory_mib"] is None, key  # no CUDA, nothing to measure
    assert training["lte/bf16"]["precision"] == "bf16-mixed"
    assert 0 <= training["lte/bf16"]["loss_rel_diff_fp32"] <= 0.03
    skipped = [c for c in sections["training"]["checks"] if c["status"] == "skipped"]
    assert [c["name"] for c in skipped] == ["compile"] and "--smoke" in skipped[0]["rule"]

    ddp = {c["name"]: c["value"] for c in sections["ddp"]["checks"]}
    assert ddp["world size"] == 2 and ddp["backend"] == "gloo"
    assert ddp["last.ckpt step"] == 2 and ddp["resume starts at"] == 2
    assert ddp["resumed last.ckpt step"] == 4

    tf32 = sections["tf32"]["results"]
    assert tf32["high"]["float32_matmul_precision"] == "high"
    assert tf32["high"]["cuda_matmul_allow_tf32"] is True
    assert tf32["highest"]["cuda_matmul_allow_tf32"] is False
    assert "float32_matmul_precision: high" in tf32["project_setting"]
    for check in sections["tf32"]["checks"]:
        if "matmul error" in check["name"]:
            assert check["status"] == "skipped" and check["rule"] == "skipped: no CUDA"

    assert sections["compile_backend"]["status"] == "skipped"
    assert sections["compile_backend"]["reason"] == "skipped: no CUDA"
    assert "compile_backend  skipped" in done.stdout  # the printed table

    # The report is never written over without --overwrite.
    before = out.read_bytes()
    again = run_check("--smoke", "--out", str(out), "--sections", "tf32")
    assert again.returncode == 2
    assert again.stderr.strip().startswith("error:") and "--overwrite" in again.stderr
    assert out.read_bytes() == before


@pytest.mark.slow
def test_a_failed_section_is_recorded_and_the_next_still_runs(tmp_path: Path) -> None:
    """``parity`` without the ``model`` section has no model: it fails, ``tf32`` still runs."""
    out = tmp_path / "report.json"
    done = run_check(
        "--smoke", "--sections", "parity,tf32", "--out", str(out), "--work", str(tmp_path / "w")
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["passed"] is False and report["failed_sections"] == ["parity"]
    assert set(report["sections"]) == {"parity", "tf32"}
    assert "no model to check" in report["sections"]["parity"]["reason"]
    assert report["sections"]["tf32"]["status"] == "passed"
    assert "FAILED" in done.stdout
