"""The GPU check (``scripts/gpu_check.sh``) runs end to end on a CPU in ``--smoke`` mode.

No GPU has been lent to the project yet, and when one is, the check has minutes: so the script
itself, its sections, its report and its exit status are tested here, with a tiny model, by the
same command a GPU machine runs (plus ``--smoke``). CPU against CPU must agree exactly; the
sections that need CUDA must say so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
SECTIONS = {"model", "parity", "training", "ddp", "tf32", "compile_backend"}


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
