"""LMF in every tool: training composes with the official train-lmf recipes; short real runs of
LM-LTE and LM-LIIF on the bundled photos, scored by ``lte.test`` with and without CMSR (tables built
by ``lte.cmsr``), upscaled by ``lte.upscale``, and compared beside LTE, LIIF, Meta-SR and bicubic by
``lte.compare`` (W&B offline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from cli import SMALL_TRAIN, run_in_process, run_main, run_module
from conftest import SAMPLE_DIR
from lte.checkpoint import load_checkpoint, save_lte
from lte.evaluation import evaluate_testset
from lte.evaluation.methods import BICUBIC
from lte.models import build_model
from lte.results import merge_results, read_results
from lte.testsets import FolderSet

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "src" / "lte" / "conf"


def compose_train(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(config_name="train", overrides=overrides)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # the command: SwinIR-LM-LTE's recipe by itself, over 4 GPUs
        (
            ["model=lm_lte", "encoder=swinir", "trainer.devices=4"],
            (32, 2e-4, [500, 800, 900, 950], 1000, 8),
        ),
        (["model=lm_liif", "encoder=swinir"], (32, 2e-4, [500, 800, 900, 950], 1000, 8)),
        (["model=lm_liif"], (16, 1e-4, [200, 400, 600, 800, 1000], 1200, 6)),
        (["experiment=edsr_baseline_lm_lte"], (16, 1e-4, [200, 400, 600, 800, 1000], 1200, 8)),
        (["experiment=rdn_lm_liif"], (16, 1e-4, [200, 400, 600, 800], 1000, 6)),
        (["experiment=swinir_lm_liif"], (32, 2e-4, [500, 800, 900, 950], 1000, 8)),
        # the command line over the recipe
        (
            ["model=lm_liif", "encoder=swinir", "model.decoder.render_depth=6"],
            (32, 2e-4, [500, 800, 900, 950], 1000, 6),
        ),
    ],
)
def test_the_official_recipes_compose(overrides: list[str], expected: tuple) -> None:
    cfg = compose_train(overrides)
    got = (
        cfg.data.batch_size,
        cfg.optimizer.lr,
        list(cfg.scheduler.milestones),
        cfg.trainer.max_epochs,
        cfg.model.decoder.render_depth,
    )
    assert got == expected
    assert (cfg.data.inp_size, cfg.data.sample_q, cfg.data.scale_max) == (48, 2304, 4)
    assert cfg.model.decoder._target_.startswith("lte.models.LM")


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lm_lte", "lm_liif"])
def test_a_short_run_is_trained_scored_and_upscaled(kind: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ok(run_module("lte.train", *SMALL_TRAIN, f"model={kind}", f"hydra.run.dir={run}", "logger=csv"))
    ckpt = run / "checkpoints" / "last.ckpt"
    loaded = load_checkpoint(ckpt)
    assert loaded.model_name == kind and loaded.model.cell_dependent
    # lte.test on the bundled validation photos, in and beyond the training range.
    results = tmp_path / "results.json"
    common = [f"ckpt={ckpt}", "testset=sample", "scales=[2,6]", f"results_file={results}"]
    ok(run_in_process("lte.test", *common, f"hydra.run.dir={tmp_path / 't1'}"))
    plain = {r["scale"]: r for r in read_results(results)}
    assert set(plain) == {2.0, 6.0} and all(r["model"] == kind for r in plain.values())
    # Two steps of training: LM-LIIF (no bilinear residual) is still far from the photo.
    assert plain[2.0]["psnr"] > plain[6.0]["psnr"] > (15 if kind == "lm_lte" else 10)
    # CMSR tables from lte.cmsr on two photos, then lte.test with them: a method of its own.
    tables = tmp_path / "cmsr.yaml"
    from lte.cli.cmsr import main as cmsr_main

    argv = ["--ckpt", str(ckpt), "--images", str(SAMPLE_DIR / "val"), "--out", str(tables)]
    argv += ["--scales", "6", "--limit", "2", "--mse", "2e-4", "--device", "cpu", "--no-progress"]
    ok(run_main(lambda: cmsr_main(argv), argv, prog="lte-cmsr"))
    assert tables.read_text().startswith("# lte CMSR tables\n")
    ok(
        run_in_process(
            "lte.test", *common, f"eval.cmsr={tables}", f"hydra.run.dir={tmp_path / 't2'}"
        )
    )
    cmsr = {r["scale"]: r for r in read_results(results) if r["model"] == f"{kind}+cmsr"}
    assert cmsr[2.0]["psnr"] == plain[2.0]["psnr"]  # within the training range nothing changes
    assert abs(cmsr[6.0]["psnr"] - plain[6.0]["psnr"]) < 0.5
    # lte.upscale with the built tables, and with tables that render every code at x1 (bilinear
    # upsampling of an x1 render) to see that the option reaches the library: after a short run
    # the model is close to bilinear itself, so the x1 render differs by a level here and there.
    photo = tmp_path / "photo.png"
    Image.open(SAMPLE_DIR / "val" / "chelsea.png").crop((100, 60, 220, 150)).save(photo)
    coarse = tmp_path / "coarse.yaml"
    coarse.write_text("6: {1: 10}\n")
    outs = []
    for extra in ([], ["--cmsr", str(tables)], ["--cmsr", str(coarse)]):
        out = tmp_path / f"up{len(outs)}.png"
        argv = [str(photo), str(out), "--ckpt", str(ckpt), "--scale", "5", "--device", "cpu"]
        ok(run_in_process("lte.upscale", *argv, *extra))
        outs.append(np.asarray(Image.open(out), dtype=np.int16))
    assert outs[0].shape == outs[1].shape == outs[2].shape == (450, 600, 3)
    assert np.abs(outs[0] - outs[1]).mean() < 2
    assert (outs[0] != outs[2]).mean() > 1e-3


def test_cmsr_options_are_refused_for_other_models(tmp_path: Path) -> None:
    ckpt = tmp_path / "lte.ckpt"
    save_lte(build_model("lte", "edsr_tiny"), ckpt)
    tables = tmp_path / "t.yaml"
    tables.write_text("6: {1: 0.2}\n")
    photo = SAMPLE_DIR / "val" / "chelsea.png"
    res = run_in_process(
        "lte.upscale", str(photo), str(tmp_path / "o.png"), "--ckpt", str(ckpt), "--scale", "6",
        "--cmsr", str(tables), "--device", "cpu",
    )  # fmt: skip
    assert res.returncode == 2 and "needs an LMF model (lm_lte, lm_liif)" in res.stderr, res.stderr
    assert res.stderr.strip().count("\n") == 0
    res = run_in_process(
        "lte.test", f"ckpt={ckpt}", "testset=sample", "scales=[6]", f"eval.cmsr={tmp_path / 'no.yaml'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert res.returncode == 2 and "eval.cmsr" in res.stderr and "does not exist" in res.stderr


def _records(model, folder: FolderSet, ckpt: str, results: Path) -> None:
    merge_results(evaluate_testset(model, folder, [2, 4], ckpt=ckpt), results)


@pytest.mark.slow
def test_compare_shows_lmf_beside_the_papers_methods(tmp_path: Path) -> None:
    """LM-LTE and LM-LIIF beside LTE, LIIF, Meta-SR and bicubic, in the table and in W&B."""
    hr = tmp_path / "HR"
    hr.mkdir()
    Image.open(SAMPLE_DIR / "val" / "chelsea.png").crop((0, 0, 96, 80)).save(hr / "a.png")
    folder = FolderSet(hr, protocol="div2k")
    results = tmp_path / "all.json"
    for kind in ("lte", "liif", "metasr", "lm_lte", "lm_liif"):
        _records(build_model(kind, "edsr_tiny").eval(), folder, f"{kind}.ckpt", results)
    _records(BICUBIC, folder, "bicubic", results)
    env = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}
    out = tmp_path / "cmp"
    cmd = [sys.executable, "-m", "lte.compare", str(results), "--out", str(out), "--wandb"]
    proc = subprocess.run(cmd, env={**env, "WANDB_SILENT": "true"}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    table = (out / "comparison.md").read_text()
    for method in ("edsr-n_resblocks=2-n_feats=16-lm_lte", "edsr-n_resblocks=2-n_feats=16-lm_liif"):
        assert f"| {method} |" in table, table
    assert "| bicubic |" in table and "metasr |" in table
    assert len(list((out / "wandb").glob("offline-run-*"))) == 1
    rows = json.loads(results.read_text())
    assert {r["model"] for r in rows} == {"lte", "liif", "metasr", "lm_lte", "lm_liif", "bicubic"}
