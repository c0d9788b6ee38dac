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
from cli import run_main, run_module, snapshot
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
    # Model sizes, through the bounds checkpoints are read with (lte.models.spec), before building.
    (
        "decoder-hidden-dim-zero",
        ["model.decoder.hidden_dim=0"],
        "model.decoder.hidden_dim=0 must be an even int from 2 to 4096",
    ),
    (
        "encoder-depth-negative",
        ["encoder.n_resblocks=-1"],
        "encoder.n_resblocks=-1 must be a positive int <= 256",
    ),
    ("encoder-width-zero", ["encoder.n_feats=0"], "encoder.n_feats=0 must be a positive int"),
    (
        "decoder-mlp-zero",
        ["model.decoder.mlp_hidden=[0]"],
        "model.decoder.mlp_hidden[0]=0 must be a positive int",
    ),
    ("encoder-extra-field", ["+encoder.depth=3"], "encoder has unknown field 'depth'"),
    # The learning-rate schedule.
    ("gamma-negative", ["scheduler.gamma=-1"], "scheduler.gamma=-1 must be a number in (0, 1]"),
    ("gamma-above-one", ["scheduler.gamma=2"], "scheduler.gamma=2 must be a number in (0, 1]"),
    (
        "milestones-decreasing",
        ["scheduler.milestones=[400,200]"],
        "scheduler.milestones=[400,200] must be strictly increasing whole numbers of epochs >= 1",
    ),
    ("milestones-zero", ["scheduler.milestones=[0,10]"], "scheduler.milestones=[0,10] must be"),
    # Fewer samples than one global batch: zero steps an epoch.
    (
        "data-smaller-than-a-batch",
        ["data.batch_size=16"],
        "data: 9 training samples (9 images x repeat 1) are fewer than one global batch of 16 "
        "(data.batch_size): lower data.batch_size or raise data.repeat",
    ),
    # -1 (every GPU) where the accelerator is the CPU: the advice lists what works on a CPU.
    (
        "devices-all-on-cpu",
        ["trainer.devices=-1"],
        "trainer.devices=-1 asks for every GPU: trainer.accelerator=cpu runs on the CPU here: use a "
        "positive number of processes",
    ),
]

# Refused while the command line is checked, before Hydra runs: nothing at all is written.
COMMAND_ROWS = [
    (
        "unknown-key",
        ["foo=1"],
        "unknown option foo: python -m lte.train --cfg job lists the options (add + in front, "
        "+foo=1, only to add a new key)",
    ),
    (
        "unknown-key-elsewhere",
        ["model.hidden_dim=7"],
        "unknown option model.hidden_dim: did you mean model.decoder.hidden_dim? (add + in front, "
        "+model.hidden_dim=7, only to add a new key)",
    ),
    (
        "unknown-key-misspelt",
        ["trainer.devicess=2"],
        "unknown option trainer.devicess: did you mean trainer.devices?",
    ),
    (
        "unknown-trainer-argument",
        ["trainer.accumulate_grad_batches=0"],
        "unknown option trainer.accumulate_grad_batches: python -m lte.train --cfg job lists the "
        "options (add + in front, +trainer.accumulate_grad_batches=0, only to add a new key)",
    ),
    (
        "unknown-model",
        ["model=nope"],
        "model=nope is not an option of model: choose one of liif, lm_liif, lm_lte, lte, metasr, nearest",
    ),
    (
        "unknown-logger",
        ["logger=nope"],
        "logger=nope is not an option of logger: choose one of csv, none, wandb",
    ),
    (
        "unknown-encoder",
        ["encoder=nonsense"],
        "encoder=nonsense is not an option of encoder: choose one of edsr, edsr_baseline, "
        "edsr_tiny, rdn, rdn_tiny, swinir, swinir_tiny",
    ),
    (
        "unknown-data-hides-fragments",
        ["data=nope"],
        "data=nope is not an option of data: choose one of div2k, div2k_paired, folder, paired, "
        "sample",
    ),
    ("testset-is-not-a-training-group", ["testset=nope"], "unknown option testset:"),
    (
        "plus-on-an-existing-key",
        ["+seed=3"],
        "+seed=3: seed exists already, and + only adds a new key: drop the + (seed=3)",
    ),
    ("delete-a-missing-key", ["~foo"], "Could not delete from config. 'foo' does not exist."),
    ("unreadable-override", ["foo=[1,"], "cannot read the option 'foo=[1,'"),
    (
        "sweep-without-multirun",
        ["data.scale_max=2,3"],
        "data.scale_max=2,3 gives several values: add -m to run one job per value",
    ),
    (
        "replaced-experiment",
        ["experiment=edsr_baseline_x2"],
        "experiment=edsr_baseline_x2 was replaced by: experiment=fixed_scale "
        "encoder=edsr_baseline data.scale=2",
    ),
    (
        "replaced-experiment-in-a-sweep",
        ["experiment=rdn_lte,rdn_x4"],
        "experiment=rdn_x4 was replaced by: experiment=fixed_scale encoder=rdn data.scale=4",
    ),
]


#: What Hydra writes into a run folder before the job starts (its config record and log), and the
#: lock file the job holds: a job that refuses its options leaves these files and no other.
HYDRA_RECORD = (".hydra", "train.log", ".lte-run.lock")


@pytest.mark.parametrize(("overrides", "fragment"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input_is_one_line(tmp_path: Path, overrides: list[str], fragment: str) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "garbage.ckpt").write_bytes(b"\x00" * 100)
    torch.save({"model": {"sd": {}}}, scratch / "weights.pth")
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("the user's own file")
    before = snapshot(run, scratch)
    args = [o.format(run=run, tmp=scratch) for o in overrides]
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={run}")
    assert_one_line(train_cli(*args), fragment)
    after = snapshot(run, scratch)
    assert {k: after.get(k) for k in before} == before, "nothing that was there may change"
    added = [Path(k).relative_to(run) for k in after.keys() - before.keys() if Path(k).is_file()]
    assert all(p.parts[0] in HYDRA_RECORD for p in added), added  # (an empty checkpoints/ is fine)


@pytest.mark.parametrize(
    ("overrides", "fragment"), [r[1:] for r in COMMAND_ROWS], ids=[r[0] for r in COMMAND_ROWS]
)
def test_bad_command_line_is_one_line_and_writes_nothing(
    tmp_path: Path, overrides: list[str], fragment: str
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("the user's own file")
    before = snapshot(tmp_path)
    assert_one_line(train_cli(*overrides, f"hydra.run.dir={run}"), fragment)
    assert snapshot(tmp_path) == before


def test_cfg_job_prints_the_config_or_one_line(tmp_path: Path) -> None:
    """``--cfg job`` keeps printing the composed config, and names an unknown key in one line."""
    run = tmp_path / "run"
    res = run_main(train_main, ["--cfg", "job", *TINY, f"hydra.run.dir={run}"], prog="train.py")
    assert res.returncode == 0 and "hidden_dim: 256" in res.stdout, res.stderr[-2000:]
    bad = run_main(train_main, ["--cfg", "job", "model.hidden_dim=7"], prog="train.py")
    assert_one_line(bad, "unknown option model.hidden_dim: did you mean model.decoder.hidden_dim?")
    assert not run.exists(), "printing the config writes nothing"


def test_missing_sweeper_plugin_is_one_line(tmp_path: Path) -> None:
    """hparams_search and the SLURM launcher need Hydra plugins (extras sweep, slurm)."""
    import importlib.util

    for override, plugin, extra in (
        ("hparams_search=scale_lr_optuna", "hydra_plugins.hydra_optuna_sweeper", "sweep"),
        ("hydra/launcher=slurm", "hydra_plugins.hydra_submitit_launcher", "slurm"),
    ):
        try:
            installed = importlib.util.find_spec(plugin) is not None
        except ModuleNotFoundError:
            installed = False
        if installed:
            continue
        res = train_cli(override, f"hydra.sweep.dir={tmp_path / 'sweep'}")
        assert_one_line(
            res, f"needs a Hydra plugin that is not installed: pip install 'lte[{extra}]'"
        )
        assert not (tmp_path / "sweep").exists()


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


def test_device_advice_names_only_what_works_here() -> None:
    """``trainer.devices`` advice: this machine's GPUs and their indices, or CPU processes."""
    from lte.training.checks import device_choices

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    advice = device_choices("auto")
    if gpus:
        indices = ",".join(str(i) for i in range(gpus))
        assert f"from 1 to {gpus}" in advice and f"[{indices}]" in advice and "-1" in advice
    elif not torch.backends.mps.is_available():
        assert "positive number of processes" in advice and "-1" not in advice
    cpu = device_choices("cpu")
    assert "runs on the CPU here" in cpu and "-1" not in cpu
