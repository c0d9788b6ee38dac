"""Bad input to ``python -m lte.train``: one row per mistake, each through the real CLI entry point.

Every row must exit with status 2 and print exactly one stderr line starting with ``error:`` that
holds the expected fragment, and no traceback. Rows fail before any training step; the rows that
need a real training checkpoint first are marked slow. Rows run the entry point in-process
(``cli.run_main``: same argv, exit status and stderr); one row also runs in a real subprocess.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import lte.train
from cli import run_main, run_module
from lte.cli.train import main as train_main

ROOT = Path(__file__).resolve().parents[1]

# The real config, shrunk: tiny encoder, 16 px patches, batch 4, at most one step.
TINY = [
    "logger=none",
    "trainer=cpu",
    "data=sample",
    "encoder=edsr_tiny",
    "data.inp_size=16",
    "data.sample_q=64",
    "data.batch_size=4",
    "data.repeat=1",
    "data.val_inp_size=8",
    "trainer.max_steps=1",
    "trainer.limit_val_batches=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "module.val_chunk=100",
]


def train_cli(*overrides: str) -> subprocess.CompletedProcess[str]:
    """``python -m lte.train`` with the tiny config, run in-process (see :func:`cli.run_main`)."""
    return run_main(train_main, [*TINY, *overrides], prog=lte.train.__file__)


def assert_one_line(res: subprocess.CompletedProcess[str], fragment: str) -> str:
    """Exit 2, exactly one ``error:`` line on stderr holding ``fragment``, no traceback anywhere."""
    out = res.stdout + res.stderr
    assert res.returncode == 2, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr[-3000:]
    assert fragment in errors[0], errors[0]
    return errors[0]


def fake_checkpoint(path: Path) -> Path:
    """A file shaped like a training checkpoint (for the run directory rule, never loaded as one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "optimizer_states": []}, path)
    return path


# (row id, overrides, expected fragment); {run} is this row's run directory, {tmp} a scratch folder.
ROWS = [
    ("batch-not-a-number", ["data.batch_size=abc"], "data.batch_size=abc must be a whole number"),
    ("batch-zero", ["data.batch_size=0"], "data.batch_size=0 must be a whole number"),
    (
        "optimized-metric-unknown",
        ["optimized_metric=val/psnr_x5"],
        "optimized_metric=val/psnr_x5 is not logged by this run: use one of val/psnr, val/psnr_x2",
    ),
    ("batch-float", ["data.batch_size=2.5"], "data.batch_size=2.5 must be a whole number"),
    (
        "batch-not-divisible",
        ["trainer.devices=3"],
        "data.batch_size=4 is the global batch and must divide by the 3 devices",
    ),
    ("devices-nonsense", ["trainer.devices=many"], "trainer.devices=many is not a device count"),
    ("lr-negative", ["optimizer.lr=-1"], "optimizer.lr=-1 must be a number > 0"),
    ("lr-zero", ["optimizer.lr=0"], "optimizer.lr=0 must be a number > 0"),
    ("lr-text", ["optimizer.lr=fast"], "optimizer.lr=fast must be a number > 0"),
    ("optimizer-bad-arg", ["+optimizer.betas=[2,3]"], "optimizer: Invalid beta parameter"),
    ("max-steps-text", ["trainer.max_steps=abc"], "trainer.max_steps=abc must be a whole number"),
    ("max-steps-negative", ["trainer.max_steps=-5"], "trainer.max_steps=-5 must be a whole number"),
    ("max-epochs-zero", ["trainer.max_epochs=0", "trainer.max_steps=-1"], "trains nothing"),
    ("precision-unknown", ["trainer.precision=banana"], "trainer: Precision 'banana' is invalid"),
    ("seed-negative", ["seed=-1"], "seed=-1 must be a whole number >= 0"),
    ("folder-no-train-dir", ["data=folder"], "data.train_dir is required but not set"),
    (
        "train-dir-missing",
        ["data.train_dir=/nonexistent/lte_train"],
        "/nonexistent/lte_train",
    ),
    # UserErrors raised inside objects Hydra instantiates (module, data module) come out unwrapped.
    ("module-val-chunk", ["module.val_chunk=0"], "module.val_chunk=0 must be a positive number"),
    ("data-sample-q", ["data.sample_q=0"], "data.sample_q=0 must be"),
    ("callback-bad-value", ["callbacks.image_log.every_n_epochs=abc"], "callbacks.image_log:"),
    (
        "model-scale-max-differs",
        ["model.scale_max=3"],
        "model.scale_max=3 differs from data.scale_max=4",
    ),
    ("wandb-mode-unknown", ["logger=wandb", "logger.wandb.mode=sometimes"], "logger.wandb.mode"),
    (
        "ckpt-missing",
        ["ckpt_path=/nonexistent/last.ckpt"],
        "ckpt_path '/nonexistent/last.ckpt' does not exist",
    ),
    ("ckpt-folder", ["ckpt_path={tmp}"], "is a folder"),
    ("ckpt-garbage", ["ckpt_path={tmp}/garbage.ckpt"], "is not a PyTorch checkpoint"),
    ("ckpt-weights-only", ["ckpt_path={tmp}/weights.pth"], "no optimizer state to resume"),
    ("run-dir-under-a-file", ["hydra.run.dir={tmp}/garbage.ckpt/run"], "cannot create the folder"),
    ("checkpoint-dir-unwritable", ["paths.checkpoint_dir={tmp}/garbage.ckpt/x"], "cannot write to"),
]


@pytest.mark.parametrize(("overrides", "fragment"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input_is_one_line(tmp_path: Path, overrides: list[str], fragment: str) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "garbage.ckpt").write_bytes(b"\x00" * 100)
    torch.save({"model": {"sd": {}}}, scratch / "weights.pth")
    run = tmp_path / "run"
    args = [o.format(run=run, tmp=scratch) for o in overrides]
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={run}")
    assert_one_line(train_cli(*args), fragment)
    assert not (run / "checkpoints" / "last.ckpt").exists(), "nothing may be trained or written"


def test_real_entry_point_prints_one_line(tmp_path: Path) -> None:
    """The first row through ``python -m lte.train`` in a subprocess: what only a fresh process shows."""
    run = tmp_path / "run"
    res = run_module("lte.train", *TINY, "data.batch_size=abc", f"hydra.run.dir={run}")
    assert_one_line(res, "data.batch_size=abc must be a whole number")
    assert not (run / "checkpoints" / "last.ckpt").exists(), "nothing may be trained or written"


# --- the run directory rule ----------------------------------------------------------------------


def test_run_dir_with_checkpoints_is_refused_and_untouched(tmp_path: Path) -> None:
    run = tmp_path / "run"
    last = fake_checkpoint(run / "checkpoints" / "last.ckpt")
    before = last.read_bytes()
    line = assert_one_line(
        train_cli(f"hydra.run.dir={run}"), f"run directory '{run}' already holds checkpoints"
    )
    assert "ckpt_path=last" in line and "hydra.run.dir=" in line
    assert last.read_bytes() == before


def test_ckpt_last_without_last_but_other_checkpoints(tmp_path: Path) -> None:
    run = tmp_path / "run"
    fake_checkpoint(run / "checkpoints" / "best.ckpt")
    line = assert_one_line(train_cli(f"hydra.run.dir={run}", "ckpt_path=last"), "ckpt_path=last: '")
    assert "checkpoints/best.ckpt" in line


def test_resuming_another_runs_checkpoint_into_a_used_dir(tmp_path: Path) -> None:
    run = tmp_path / "run"
    fake_checkpoint(run / "checkpoints" / "last.ckpt")
    other = fake_checkpoint(tmp_path / "other" / "checkpoints" / "last.ckpt")
    assert_one_line(
        train_cli(f"hydra.run.dir={run}", f"ckpt_path={other}"), "belongs to another run"
    )


# --- rows that need a real training checkpoint ---------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real one-step run of edsr_tiny: its run directory."""
    run = tmp_path_factory.mktemp("trained") / "run"
    res = train_cli(f"hydra.run.dir={run}")
    assert res.returncode == 0, res.stderr[-3000:]
    return run


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (
            ["encoder.n_feats=8"],
            "holds another model than this run's lte-edsr-n_resblocks=2-n_feats=8",
        ),
        (["encoder=rdn_tiny"], "holds another model"),
        (["model=liif"], "holds another model"),
    ],
    ids=["encoder-width", "encoder-family", "decoder"],
)
def test_resume_from_another_model_is_one_line(
    trained: Path, tmp_path: Path, overrides: list[str], fragment: str
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained / "checkpoints", run / "checkpoints")
    line = assert_one_line(
        train_cli(f"hydra.run.dir={run}", "ckpt_path=last", *overrides), fragment
    )
    assert "resume with the model and encoder options of that run" in line
