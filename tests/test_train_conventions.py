"""The lightning-hydra-template conventions of ``python -m lte.train`` (issue 13, parts 2-7).

Each new config group is composed; ``debug=fdr`` and ``debug=limit`` run end to end on the bundled
photos with a tiny encoder, and what they logged is read back: the CSV file, and the offline W&B
run's own record log (history rows, ``define_metric`` records, the summary). The console of a run
is checked for duplicated lines and known-harmless warnings; ``trainer=ddp_sim`` runs two CPU
processes (gloo). The (encoder, model) recipes are composed and their precedence checked.
"""

from __future__ import annotations

import csv
import json
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from cli import run_in_process, run_module
from lte.wandb_offline import records

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "src" / "lte" / "conf"

# The real config, shrunk to seconds on a CPU: 9 photos / batch 4 = 2 steps an epoch.
SMALL = [
    "data=sample",
    "encoder=edsr_tiny",
    "data.inp_size=16",
    "data.sample_q=64",
    "data.batch_size=4",
    "data.repeat=1",
    "data.val_inp_size=8",
    "module.val_chunk=100",
    "trainer.enable_progress_bar=false",
]


def compose_train(overrides: list[str], config_dir: Path | None = None) -> Any:
    with initialize_config_dir(config_dir=str(config_dir or CONF), version_base=None):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


def run_train(*overrides: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return run_module("lte.train", *SMALL, *overrides, timeout=timeout)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


# --- reading an offline W&B run back -------------------------------------------------------------
# Records come from lte.wandb_offline (W&B's own protobuf classes); this view keeps each key as W&B
# wrote it (``nested_key`` joined by "/"), which is what the summary checks below compare.


def wandb_records(path: Path) -> list[Any]:
    return list(records(path))


def _key(item: Any) -> str:
    """An item's key: ``key``, or its ``nested_key`` path (how wandb-core writes most of them)."""
    return item.key or "/".join(item.nested_key)


def read_wandb_run(run_dir: Path) -> dict[str, Any]:
    """History rows, summary and define_metric records of the one offline run in ``run_dir``."""
    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    (log,) = folder.glob("run-*.wandb")
    history, summary, metrics = [], {}, {}
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                summary[_key(item)] = json.loads(item.value_json)
        elif kind == "metric":
            m = record.metric
            metrics[m.name or m.glob_name] = {
                "step_metric": m.step_metric,
                "summary": [f.name for f, v in m.summary.ListFields() if v],
            }
    return {"history": history, "summary": summary, "metrics": metrics}


# --- composing the new groups --------------------------------------------------------------------


@pytest.mark.parametrize("option", ["default", "fdr", "limit", "overfit", "profiler"])
def test_debug_presets_compose_and_log_every_step(option: str) -> None:
    cfg = compose_train([f"debug={option}"])
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.log_every_n_steps == 1
    assert cfg.data.num_workers == 0
    assert cfg.hydra.run.dir.startswith("outputs/debug/")
    assert cfg.logger.wandb.project == "lte", "a debug run keeps its logger"
    if option == "fdr":
        assert cfg.trainer.max_steps == 1 and cfg.trainer.val_check_interval == 1
        assert "fast_dev_run" not in cfg.trainer, "Lightning's fast_dev_run turns loggers off"
    if option == "overfit":
        assert cfg.trainer.overfit_batches == 2
    if option == "profiler":
        assert cfg.trainer.profiler._target_.endswith("SimpleProfiler")


def test_callback_variants() -> None:
    default = compose_train([]).callbacks
    assert set(default) == {"model_checkpoint", "rng_state", "image_log", "lr_monitor"}
    assert default.lr_monitor._target_.endswith("LearningRateMonitor")
    minimal = compose_train(["callbacks=minimal"])
    kept = {k for k, v in minimal.callbacks.items() if v is not None}
    assert kept == {"model_checkpoint", "rng_state"}
    none = compose_train(["callbacks=none"])
    assert dict(none.callbacks) == {} and none.trainer.enable_checkpointing is False


def test_trainer_variants() -> None:
    ddp = compose_train(["trainer=ddp_sim"]).trainer
    assert (ddp.accelerator, ddp.devices) == ("cpu", 2)
    assert ddp.strategy.process_group_backend == "gloo"
    assert compose_train(["trainer=mps"]).trainer.accelerator == "mps"


def test_optional_local_config_is_merged_before_the_command_line(tmp_path: Path) -> None:
    if not (CONF / "local" / "default.yaml").is_file():  # optional: composing without one works
        assert compose_train([]).seed == 0
    conf = tmp_path / "conf"
    conf.mkdir()
    for item in CONF.iterdir():  # the shipped configs plus a local/default.yaml of one's own
        (conf / item.name).symlink_to(item)
    (conf / "local").unlink()
    (conf / "local").mkdir()
    (conf / "local" / "default.yaml").write_text(
        "# @package _global_\nseed: 7\ntrainer:\n  devices: 3\n"
    )
    cfg = compose_train(["experiment=rdn_lte"], config_dir=conf)
    assert cfg.hydra.runtime.choices["local"] == "default"
    assert cfg.seed == 7 and cfg.trainer.devices == 3
    assert compose_train(["seed=1"], config_dir=conf).seed == 1, "the command line wins"


def test_local_folder_is_git_ignored() -> None:
    res = subprocess.run(
        ["git", "check-ignore", "-q", "src/lte/conf/local/default.yaml"], cwd=ROOT, check=False
    )
    if res.returncode == 128:
        pytest.skip("not a git checkout")
    assert res.returncode == 0


def test_hparams_search_composes_with_the_optuna_sweeper() -> None:
    pytest.importorskip(
        "hydra_plugins.hydra_optuna_sweeper",
        reason="hydra-optuna-sweeper is not installed (pip install -e '.[sweep]')",
    )
    cfg = compose_train(["hparams_search=scale_lr_optuna"])
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.direction == "maximize"
    assert set(cfg.hydra.sweeper.params) == {"data.scale_max", "optimizer.lr"}
    assert cfg.optimized_metric == "val/psnr_x4"
    assert compose_train([]).optimized_metric == "val/psnr"


def test_wandb_sweep_example_holds_valid_overrides() -> None:
    import itertools

    import yaml

    spec = yaml.safe_load((ROOT / "scripts" / "sweep_wandb.yaml").read_text())
    assert spec["metric"]["goal"] == "maximize" and spec["command"][-1] == "${args_no_hyphens}"
    fixed = [a for a in spec["command"] if "=" in a]
    params = spec["parameters"]
    grid = params["data.scale_max"]["values"]
    lr = params["optimizer.lr"]
    for smax, value in itertools.product(grid, (lr["min"], lr["max"])):
        cfg = compose_train([*fixed, f"data.scale_max={smax}", f"optimizer.lr={value}"])
        assert cfg.data.scale_max == smax and cfg.model.scale_max == smax
        assert cfg.optimizer.lr == value
    assert spec["metric"]["name"] in ["val/psnr"] + [f"val/psnr_x{s}" for s in (2, 3, 4, 6)]


# --- recipes follow the (encoder, model) pair ----------------------------------------------------

PAPER = (16, 1e-4, [200, 400, 600, 800])
SWINIR_LTE = (32, 2e-4, [500, 800, 900, 950])


def recipe(cfg: Any) -> tuple[int, float, list[int]]:
    return cfg.data.batch_size, cfg.optimizer.lr, list(cfg.scheduler.milestones)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], PAPER),
        (["encoder=swinir"], SWINIR_LTE),  # the card's `encoder=swinir trainer.devices=4`
        (["encoder=swinir", "model=liif"], PAPER),
        (["encoder=swinir", "model=metasr"], PAPER),
        (["encoder=rdn"], PAPER),
        (["experiment=swinir_lte"], SWINIR_LTE),
        (["experiment=swinir_liif"], PAPER),
        (["experiment=swinir_metasr"], PAPER),
        # the command line over the pair recipe
        (["encoder=swinir", "optimizer.lr=1e-3"], (32, 1e-3, SWINIR_LTE[2])),
        (["encoder=swinir", "data.batch_size=8"], (8, 2e-4, SWINIR_LTE[2])),
        # the command line's encoder over the experiment's: the pair is swinir + lte, its recipe
        (["encoder=swinir", "experiment=edsr_baseline_lte"], SWINIR_LTE),
    ],
)
def test_recipe_precedence(overrides: list[str], expected: tuple[int, float, list[int]]) -> None:
    assert recipe(compose_train([*overrides, "trainer.devices=4"])) == expected


# --- validation patches --------------------------------------------------------------------------


@pytest.mark.parametrize("inp_size", [8, 24, 48])
def test_fixed_scale_validation_is_monotone_in_scale(inp_size: int) -> None:
    """Bicubic upsampling, scored like val/psnr_x{s} on the bundled val photos, must fall with the
    scale: each scale's patches sit at the same places, so only the scale differs. (With one random
    patch per image and scale, x3 read 6 dB above x2 at inp_size 24.)"""
    from lte.data.datasets import FixedPatchDataset, fixed_scale_specs
    from lte.data.images import denormalize
    from lte.data.layouts import list_images
    from lte.data.store import ImageStore
    from lte.metrics import psnr

    store = ImageStore(list_images(ROOT / "data" / "sample" / "val"), cache="memory")
    means = []
    for k, scale in enumerate([2, 3, 4, 6]):
        specs = fixed_scale_specs(store.shapes, inp_size=inp_size, scale=scale, patches=1, seed=k)
        centres = {(s.image, s.y0 + s.size_hr // 2, s.x0 + s.size_hr // 2) for s in specs}
        assert len(specs) >= 4 * len(store.shapes) and len(centres) > len(store.shapes)
        ds = FixedPatchDataset(store, specs, inp_size=inp_size)
        values = []
        for i in range(len(ds)):
            item = ds[i]
            h, w = item["hr_shape"].tolist()
            up = F.interpolate(
                denormalize(item["inp"])[None], size=(h, w), mode="bicubic", align_corners=False
            ).clamp(0, 1)
            gt = denormalize(item["gt"]).transpose(0, 1).reshape(1, 3, h, w)
            values.append(float(psnr(up, gt, border=0, y_channel=False)[0]))
        means.append(sum(values) / len(values))
    assert means == sorted(means, reverse=True), means


# --- W&B summaries -------------------------------------------------------------------------------


def test_val_psnr_summaries_are_the_best_value(tmp_path: Path, monkeypatch) -> None:
    """A real offline W&B run through Lightning's WandbLogger: summaries are max, not last."""
    from lightning.pytorch.loggers import WandbLogger

    from lte.training.loggers import define_val_metrics, drop_anonymous, wandb_quiet_kwargs

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    kwargs = wandb_quiet_kwargs("offline")
    logger = drop_anonymous(
        WandbLogger(project="lte", save_dir=str(tmp_path), id="best1234", mode="offline", **kwargs)
    )
    define_val_metrics([logger], ["psnr", "psnr_x2"])
    for step, (a, b) in enumerate([(30.0, 33.0), (32.0, 35.0), (31.0, 34.0)]):
        logger.log_metrics({"val/psnr": a, "val/psnr_x2": b}, step=step)
    logger.experiment.finish()
    # wandb-core (a separate process) may still be appending the final summary on a loaded machine.
    for _ in range(60):
        run = read_wandb_run(tmp_path)
        if "val/psnr" in run["summary"]:
            break
        time.sleep(0.5)
    assert run["summary"].get("val/psnr") == {"max": 32.0}, run
    assert run["summary"]["val/psnr_x2"] == {"max": 35.0}
    assert run["metrics"]["val/psnr"]["step_metric"] == "trainer/global_step"


# --- end to end ----------------------------------------------------------------------------------


def console_lines(res: subprocess.CompletedProcess[str]) -> list[str]:
    """The run's console lines, progress bars and the model summary table aside."""
    return [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]


def assert_clean_console(res: subprocess.CompletedProcess[str]) -> None:
    lines = console_lines(res)
    logged = [line for line in lines if line.startswith("[") and "][" in line]
    dup = [
        line for line, n in Counter(line.split("] - ", 1)[-1] for line in logged).items() if n > 1
    ]
    assert not dup, f"log lines printed twice: {dup}"
    assert not [line for line in res.stderr.splitlines() if line.startswith("INFO:")], res.stderr
    for noise in ("LeafSpec", "litlogger", "anonymous setting", "wandb: "):
        assert noise not in res.stdout + res.stderr, noise


@pytest.mark.slow
def test_debug_fdr_logs_history_rows_csv(tmp_path: Path) -> None:
    run = tmp_path / "run"
    res = ok(run_train("debug=fdr", "logger=csv", f"hydra.run.dir={run}"))
    rows = list(csv.DictReader((run / "csv" / "version_0" / "metrics.csv").open()))
    assert any(r["train/loss"] for r in rows) and any(r["val/psnr_x4"] for r in rows)
    assert any(r["lr"] for r in rows), "LearningRateMonitor logs the learning rate as `lr`"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 1
    assert "validation: PSNR (RGB, no shave) on fixed patches" in res.stdout
    assert "lte.test scores whole images" in res.stdout
    # The config tree comes first: "config:" as plain text, "config" then "├── ..." with rich.
    assert res.stdout.startswith(("config:\n", "config\n├"))
    assert_clean_console(res)


@pytest.mark.slow
def test_debug_runs_on_wandb_log_history_and_best_summaries(tmp_path: Path) -> None:
    fdr = tmp_path / "fdr"
    res = ok(run_train("debug=fdr", f"hydra.run.dir={fdr}", "logger.wandb.log_model=true"))
    assert_clean_console(res)
    assert "W&B: offline run" in res.stdout and "wandb sync" in res.stdout
    logged = read_wandb_run(fdr)
    assert any("train/loss" in row for row in logged["history"])
    assert any("lr" in row for row in logged["history"])
    assert any("val/psnr_x6" in row for row in logged["history"])
    assert logged["metrics"]["val/psnr_x2"]["summary"] == ["max"]
    (folder,) = (fdr / "wandb").glob("offline-run-*")
    kinds = {r.WhichOneof("record_type") for r in wandb_records(next(folder.glob("*.wandb")))}
    assert "artifact" in kinds, "logger.wandb.log_model=true logs the checkpoint as an artifact"
    run_id = (fdr / "wandb_run_id.txt").read_text().strip()
    ckpt = torch.load(fdr / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["wandb_run_id"] == run_id

    limit = tmp_path / "limit"
    ok(run_train("debug=limit", f"hydra.run.dir={limit}"))
    logged = read_wandb_run(limit)
    for name in ("val/psnr", "val/psnr_x2", "val/psnr_x4"):
        values = [row[name] for row in logged["history"] if name in row]
        assert len(values) == 3, (name, values)  # three validations
        assert logged["summary"][name] == {"max": max(values)}, name


@pytest.mark.slow
def test_ddp_sim_two_cpu_processes_rank_zero_console(tmp_path: Path) -> None:
    run = tmp_path / "run"
    res = ok(
        run_train(
            "trainer=ddp_sim",
            "trainer.max_epochs=1",
            "trainer.limit_val_batches=1",
            "trainer.num_sanity_val_steps=0",
            "logger=csv",
            f"hydra.run.dir={run}",
            timeout=600,
        )
    )
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert len(ckpt["rng_states"]) == 2 and ckpt["global_step"] == 2
    out = res.stdout + res.stderr
    assert out.count("validation: PSNR") == 1 and out.count("run directory:") == 1
    assert out.count("config:\n") <= 1 and out.count("done: step") == 1
    assert_clean_console(res)


@pytest.mark.slow
def test_help_lists_what_training_uses() -> None:
    res = run_in_process("lte.train", "--help")  # the entry point, in this process
    assert res.returncode == 0, res.stderr
    groups = res.stdout.split("== Config ==")[0]
    for line in (
        "debug: default, fdr, limit, overfit, profiler",
        "callbacks: default, fourier, minimal",
    ):
        assert line in groups
    assert "experiment: edsr_baseline_liif" in groups and "swinir_lte" in groups
    for hidden in ("testset", "paths:", "hydra/", "recipe:", "paper,", "paper_swinir", "base,"):
        assert hidden not in groups, hidden


@pytest.mark.slow
def test_optuna_search_runs_trials_and_reads_the_metric(tmp_path: Path) -> None:
    pytest.importorskip(
        "hydra_plugins.hydra_optuna_sweeper",
        reason="hydra-optuna-sweeper is not installed (pip install -e '.[sweep]')",
    )
    sweep = tmp_path / "sweep"
    res = ok(
        run_train(
            "hparams_search=scale_lr_optuna",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=2",
            "debug=fdr",
            "logger=none",
            "print_config=false",
            f"hydra.sweep.dir={sweep}",
            timeout=600,
        )
    )
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    best = (sweep / "optimization_results.yaml").read_text()
    assert "best_value" in best and "data.scale_max" in best, best
    assert res.returncode == 0


@pytest.mark.parametrize("overfit", [0, 2])
def test_overfit_repeats_the_first_batches_every_epoch(overfit: int) -> None:
    """debug=overfit (trainer.overfit_batches) must train on the same batches every epoch; a
    normal run draws each epoch anew. A real, unlaunched Trainer stands for the running one."""
    import lightning as L

    from lte.data.datamodule import SRDataModule
    from lte.training.data import TrainingData

    sample = ROOT / "data" / "sample"
    inner = SRDataModule(
        train_dir=sample / "train", val_dir=sample / "val", cache="memory", inp_size=16,
        sample_q=64, batch_size=4, repeat=1, num_workers=0, pin_memory=False,
        persistent_workers=False,
    )  # fmt: skip
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, overfit_batches=overfit, max_epochs=3
    )
    data = TrainingData(inner, seed=0)
    data.trainer = trainer
    data.setup("fit")
    loader = data.train_dataloader()
    progress = trainer.fit_loop.epoch_loop.batch_progress.total
    epochs = []
    for done in (0, loader.epoch_length()):  # the start of epoch 0, then of epoch 1
        progress.processed = done
        epochs.append(next(iter(loader)))
    same = all(torch.equal(epochs[0][k], epochs[1][k]) for k in epochs[0])
    assert same == bool(overfit)


def test_make_clean_keeps_run_outputs_unless_told(tmp_path: Path) -> None:
    """``make clean`` never removes run outputs without a yes: kept without a terminal to ask on
    (as here), removed with FORCE=1; it says which. Run on a copy of the Makefile in a scratch
    folder, so nothing of this checkout is touched."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for folder in ("src", "tests", "scripts", "outputs/train/x", "multirun/y"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "outputs" / "train" / "x" / "last.ckpt").write_bytes(b"weights")

    def clean(*args: str) -> str:
        res = subprocess.run(
            ["make", "-s", "clean", *args],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        return res.stdout

    assert "kept run outputs: outputs multirun" in clean()
    assert (tmp_path / "outputs" / "train" / "x" / "last.ckpt").is_file()
    assert "removing run outputs: outputs multirun" in clean("FORCE=1")
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()
    assert "no run outputs" in clean()
