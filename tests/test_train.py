"""Training: unit tests of the pieces, then the real CLI (``python -m lte.train``) end to end.

End-to-end tests compose the real config and shrink it (tiny encoder, 16 px patches, 64 queries,
batch 4, one or two epochs of 2 steps, one validation patch per loader) and run it in a subprocess,
as a user would (runs that only fail or only upscale go through the entry point in-process,
``cli.run_in_process``). W&B runs are offline, into the run directory.
"""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cli import SMALL_TRAIN, run_in_process, run_module
from lte.errors import UserError
from lte.training import AtomicCheckpointIO, capture_rng_state, restore_rng_state, side_by_side
from lte.training.checks import check_batch, device_count
from lte.training.data import EpochBatches, SeededSamples
from lte.training.resume import load_resume_checkpoint, resolve_ckpt_path
from lte.training.wandb_run import read_run_id, resolve_run_id, wandb_mode, write_run_id

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "src" / "lte" / "conf"

SMALL = SMALL_TRAIN


def run_train(
    *overrides: str, multirun: bool = False, timeout: int = 180
) -> subprocess.CompletedProcess[str]:
    return run_module(
        "lte.train", *(["-m"] if multirun else []), *SMALL, *overrides, timeout=timeout
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def compose_train(overrides: list[str], hydra_node: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(config_name="train", overrides=overrides, return_hydra_config=hydra_node)


# --- unit tests ----------------------------------------------------------------------------------


def test_rng_state_round_trip_is_weights_only_loadable(tmp_path: Path) -> None:
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    state = capture_rng_state()
    path = tmp_path / "rng.pt"
    torch.save(state, path)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    restore_rng_state(torch.load(path, weights_only=True))
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_atomic_checkpoint_io_replaces_and_keeps_old_file_on_failure(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": torch.tensor(1)}, path)
    io.save_checkpoint({"step": torch.tensor(2)}, path)
    assert int(load(path)["step"]) == 2
    with pytest.raises(Exception):  # noqa: B017 - any pickling failure
        io.save_checkpoint({"bad": lambda: None}, path)
    assert int(load(path)["step"]) == 2, "a failed save must leave the previous file intact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"], "no temp files left"


def test_atomic_checkpoint_io_unwritable_folder_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match=r"cannot write checkpoint .* ckpt_path=last"):
        AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(1)}, blocker / "last.ckpt")


def test_run_dir_rule(tmp_path: Path) -> None:
    run, ckpts = tmp_path / "run", tmp_path / "run" / "checkpoints"
    assert resolve_ckpt_path(None, run, ckpts) is None  # fresh folder: a new run
    assert resolve_ckpt_path("last", run, ckpts) is None  # ckpt_path=last before any checkpoint
    ckpts.mkdir(parents=True)
    (ckpts / "best.ckpt").write_bytes(b"x")
    with pytest.raises(UserError, match=r"ckpt_path=last: .* holds checkpoints/best\.ckpt"):
        resolve_ckpt_path("last", run, ckpts)
    (ckpts / "last.ckpt").write_bytes(b"x")
    with pytest.raises(
        UserError, match=r"already holds checkpoints .*ckpt_path=last.*hydra.run.dir="
    ):
        resolve_ckpt_path(None, run, ckpts)
    assert resolve_ckpt_path("last", run, ckpts) == ckpts / "last.ckpt"
    assert resolve_ckpt_path(str(ckpts / "best.ckpt"), run, ckpts) == ckpts / "best.ckpt"
    other = tmp_path / "other.ckpt"
    other.write_bytes(b"x")
    with pytest.raises(UserError, match="belongs to another run"):
        resolve_ckpt_path(str(other), run, ckpts)
    assert resolve_ckpt_path(str(other), tmp_path / "new", tmp_path / "new" / "ckpts") == other


def test_epoch_batches_depend_on_seed_epoch_and_position_only() -> None:
    def global_batches(world: int, epoch: int, start: int = 0) -> list[list[tuple[int, int]]]:
        ranks = [
            EpochBatches(10, 4 // world, seed=7, rank=r, world_size=world) for r in range(world)
        ]
        for b in ranks:
            b.epoch, b.start = epoch, start
        return [[key for part in parts for key in part] for parts in zip(*ranks, strict=True)]

    one = global_batches(1, 0)
    assert len(one) == 2 and all(len(b) == 4 for b in one)  # 10 // 4, last partial batch dropped
    assert len({i for b in one for i, _ in b}) == 8  # no sample twice in an epoch
    assert global_batches(2, 0) == one  # the same global batches on 2 processes
    assert global_batches(1, 0, start=1) == one[1:]  # a resume skips, it does not redraw
    assert global_batches(1, 1) != one  # another epoch, another order and other seeds


def test_seeded_samples_are_independent_of_and_leave_the_global_rng() -> None:
    class Draw:
        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> tuple[float, float, float]:
            return float(torch.rand(())), float(np.random.rand()), random.random()

    ds = SeededSamples(Draw())  # type: ignore[arg-type]
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    first = ds[(0, 123)]
    after = capture_rng_state()
    torch.manual_seed(2), np.random.seed(2), random.seed(2)
    assert ds[(0, 123)] == first and ds[(0, 124)] != first
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    assert torch.equal(capture_rng_state()["torch"], after["torch"])


def test_model_scale_max_follows_data_scale_max() -> None:
    assert compose_train([]).model.scale_max == 4
    assert compose_train(["data.scale_max=3"]).model.scale_max == 3
    assert compose_train(["experiment=rdn_lte", "data.scale_max=2"]).model.scale_max == 2


def test_side_by_side_is_bicubic_ours_hr() -> None:
    inp = torch.zeros(3, 8, 8)
    pred = torch.ones(3, 32, 32)
    gt = -torch.ones(3, 32, 32)
    img = side_by_side(inp, pred, gt)
    assert img.shape == (3, 32, 3 * 32 + 8)
    assert torch.allclose(img[:, :, :32], torch.full((3, 32, 32), 0.5))  # bicubic of 0 -> grey
    assert torch.all(img[:, :, 36:68] == 1) and torch.all(img[:, :, 72:] == 0)
    assert side_by_side(inp, pred, gt, crop=16).shape == (3, 16, 3 * 16 + 8)


def test_wandb_mode_is_offline_without_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")
    assert wandb_mode(None) == "offline"
    assert wandb_mode("disabled") == "disabled"
    with pytest.raises(UserError, match="WANDB_API_KEY"):
        wandb_mode("online")
    with pytest.raises(UserError, match="unknown"):
        wandb_mode("sometimes")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode(None) == "online"


def test_run_id_prefers_checkpoint_then_run_dir(tmp_path: Path) -> None:
    fresh = resolve_run_id(tmp_path, None)
    assert re.fullmatch(r"[a-z0-9]{8}", fresh)
    write_run_id(tmp_path, "abc12345")
    assert read_run_id(tmp_path) == "abc12345"
    assert resolve_run_id(tmp_path, None) == "abc12345"
    assert resolve_run_id(tmp_path, "fromckpt") == "fromckpt"


def test_batch_must_divide_by_devices() -> None:
    cfg = OmegaConf.create({"trainer": {"devices": 3, "num_nodes": 1}, "data": {"batch_size": 16}})
    assert device_count(cfg.trainer) == 3
    with pytest.raises(UserError, match=r"data.batch_size=16 .* 3 devices"):
        check_batch(cfg)
    cfg.trainer.devices = [0, 1]
    check_batch(cfg)  # 16 / 2
    cfg.trainer.devices = "auto"
    assert device_count(cfg.trainer) is None


def test_resume_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_resume_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(UserError, match="is a folder"):
        load_resume_checkpoint(tmp_path)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a PyTorch checkpoint"):
        load_resume_checkpoint(garbage)
    weights = tmp_path / "weights.pth"
    torch.save({"model": {"sd": {}}}, weights)
    with pytest.raises(UserError, match="no optimizer state"):
        load_resume_checkpoint(weights)
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {}, "optimizer_states": []}, good)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(UserError, match="truncated"):
        load_resume_checkpoint(truncated)


@pytest.mark.parametrize("encoder", ["edsr_baseline", "rdn", "swinir"])
@pytest.mark.parametrize("model", ["lte", "liif", "metasr"])
def test_experiments_hold_the_paper_recipe(encoder: str, model: str) -> None:
    cfg = compose_train([f"experiment={encoder}_{model}"])
    assert cfg.model.decoder._target_.endswith(
        {"lte": "LTE", "liif": "LIIF", "metasr": "MetaSR"}[model] + "Decoder"
    )
    assert cfg.encoder._target_.endswith(
        {"edsr_baseline": "EDSR", "rdn": "RDN", "swinir": "SwinIR"}[encoder]
    )
    assert cfg.data._target_.endswith("SRDataModule") and cfg.data.repeat == 20
    assert cfg.trainer.max_epochs == 1000
    assert (cfg.data.scale_min, cfg.data.scale_max) == (1, 4)
    if (encoder, model) == ("swinir", "lte"):  # SwinIR-LIIF and -Meta-SR keep the paper's recipe
        assert cfg.data.batch_size == 32 and cfg.optimizer.lr == 2e-4
        assert list(cfg.scheduler.milestones) == [500, 800, 900, 950]
    else:
        assert cfg.data.batch_size == 16 and cfg.optimizer.lr == 1e-4
        assert list(cfg.scheduler.milestones) == [200, 400, 600, 800]
    assert cfg.scheduler.gamma == 0.5 and cfg.optimizer._partial_ and cfg.scheduler._partial_


def test_default_config_is_the_paper_recipe() -> None:
    cfg = compose_train([], hydra_node=True)
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 1e-4
    assert list(cfg.scheduler.milestones) == [200, 400, 600, 800]
    assert cfg.logger.wandb.project == "lte" and cfg.hydra.job.chdir is False
    assert cfg.callbacks.model_checkpoint.monitor == "val/psnr"


# --- end to end ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_wandb_offline_checkpoint_upscale(tmp_path: Path) -> None:
    run = tmp_path / "run"
    ok(run_train(f"hydra.run.dir={run}", "callbacks.image_log.every_n_epochs=1"))
    ckpt = run / "checkpoints" / "last.ckpt"
    assert (run / "checkpoints" / "best.ckpt").is_file()
    # W&B logged offline into the run directory, under the id stored beside it.
    run_id = (run / "wandb_run_id.txt").read_text().strip()
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and offline[0].name.endswith(run_id)
    record = (offline[0] / f"run-{run_id}.wandb").read_bytes()
    # Run name <model>-<encoder>-x<scale_min>-<scale_max>, labels from the model, not config names.
    assert b"lte-edsr-n_resblocks=2-n_feats=16-x1-4" in record
    assert b"val/psnr_x6" in record and b"train/loss" in record
    assert sorted(p.name for p in (run / "images").glob("*.png")) == [
        "epoch0000_0.png",
        "epoch0000_1.png",
    ]
    # The checkpoint alone rebuilds the model (weights-only load) ...
    from lte.checkpoint import load_checkpoint

    raw = load(ckpt)
    assert raw["global_step"] == 2 and raw["wandb_run_id"] == run_id
    assert raw["lte"]["model"]["scale_max"] == 4.0
    assert raw["lte"]["model"]["encoder"]["n_feats"] == 16
    loaded = load_checkpoint(ckpt)
    tiny = "edsr-n_resblocks=2-n_feats=16"  # the model's own label (lte.models.identity)
    assert (loaded.model_name, loaded.encoder_name, loaded.source) == ("lte", tiny, "lte")
    # ... and python -m lte.upscale runs on it.
    out = tmp_path / "up.png"
    photo = ROOT / "data" / "sample" / "val" / "chelsea.png"
    res = run_in_process(
        "lte.upscale",
        str(photo),
        str(out),
        "--ckpt",
        str(ckpt),
        "--size",
        "64x48",
        "--device",
        "cpu",
    )
    assert res.returncode == 0, res.stderr
    from PIL import Image

    assert Image.open(out).size == (64, 48)


@pytest.mark.slow
def test_resume_continues_step_optimizer_rng_and_wandb_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    ok(run_train(f"hydra.run.dir={run}"))
    first = load(run / "checkpoints" / "last.ckpt")
    run_id = first["wandb_run_id"]
    assert first["global_step"] == 2
    ok(
        run_train(
            f"hydra.run.dir={run}",
            "trainer.max_epochs=2",
            "ckpt_path=last",
        )
    )
    second = load(run / "checkpoints" / "last.ckpt")
    assert second["global_step"] == 4 and second["epoch"] == 1
    assert int(second["optimizer_states"][0]["state"][0]["step"]) == 4
    assert second["lr_schedulers"][0]["last_epoch"] == 2
    assert second["wandb_run_id"] == run_id
    offline = sorted((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(p.name.endswith(run_id) for p in offline)
    # Same weights as an uninterrupted run: optimizer, step and RNG states all came back.
    straight = tmp_path / "straight"
    ok(run_train(f"hydra.run.dir={straight}", "trainer.max_epochs=2", "logger=none"))
    a = second["state_dict"]
    b = load(straight / "checkpoints" / "last.ckpt")["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_max_steps_checkpoints_the_last_step_and_resumes_exactly(tmp_path: Path) -> None:
    # 2 steps an epoch: max_steps=3 stops in mid-epoch; resume to 6 steps (3 epochs) must give
    # the very weights of 6 steps in one go, and nothing of the first start may be lost.
    run = tmp_path / "run"
    args = [f"hydra.run.dir={run}", "trainer.max_epochs=10", "logger=csv"]
    res = ok(run_train(*args, "trainer.max_steps=3"))
    assert "done: step 3 (1.5 epochs)" in res.stdout
    assert load(run / "checkpoints" / "last.ckpt")["global_step"] == 3
    first_csv = (run / "csv" / "version_0" / "metrics.csv").read_text()
    # Forgot ckpt_path: refused, nothing touched (a refusal: the entry point in-process).
    again = run_in_process("lte.train", *SMALL, *args, "trainer.max_steps=6")
    assert again.returncode == 2 and "ckpt_path=last" in again.stderr
    assert load(run / "checkpoints" / "last.ckpt")["global_step"] == 3
    ok(run_train(*args, "trainer.max_steps=6", "ckpt_path=last"))
    resumed = load(run / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == 6
    assert (run / "csv" / "version_0" / "metrics.csv").read_text() == first_csv
    assert (run / "csv" / "version_1" / "metrics.csv").is_file()
    straight = tmp_path / "straight"
    ok(run_train(f"hydra.run.dir={straight}", "trainer.max_epochs=3", "logger=none"))
    expected = load(straight / "checkpoints" / "last.ckpt")
    assert expected["global_step"] == 6
    for k, v in expected["state_dict"].items():
        assert torch.equal(resumed["state_dict"][k], v), k
    assert resumed["lr_schedulers"] == expected["lr_schedulers"]


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    ok(
        run_train(
            f"hydra.run.dir={run}",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "logger=csv",
        )
    )
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert [p.relative_to(run) for p in run.rglob("metrics.csv")] == [
        Path("csv/version_0/metrics.csv")
    ]
    ckpt = load(run / "checkpoints" / "last.ckpt")
    # Global batch 4 = 2 per process: 9 photos / 4 = 2 steps, each rank's RNG saved.
    assert ckpt["global_step"] == 2 and len(ckpt["rng_states"]) == 2
    assert not torch.equal(ckpt["rng_states"][0]["torch"], ckpt["rng_states"][1]["torch"])
    rows = (run / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "val/psnr" in header and "train/loss" in header
    val_rows = [r for r in rows[1:] if r.split(",")[header.index("val/psnr")]]
    assert len(val_rows) == 1, "validation metrics must be logged once, not once per rank"


@pytest.mark.slow
def test_sweep_runs_separate_dirs_in_one_group(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    ok(run_train("data.scale_max=2,3", f"hydra.sweep.dir={sweep}", multirun=True))
    ids = []
    for job, smax in (("0", 2), ("1", 3)):
        run_id = (sweep / job / "wandb_run_id.txt").read_text().strip()
        ids.append(run_id)
        assert load(sweep / job / "checkpoints" / "last.ckpt")["lte"]["model"]["scale_max"] == smax
        (offline,) = (sweep / job / "wandb").glob("offline-run-*")
        record = (offline / f"run-{run_id}.wandb").read_bytes()
        assert f"lte-edsr-n_resblocks=2-n_feats=16-x1-{smax}".encode() in record
        assert f"sweep-{tmp_path.name}_sweep".encode() in record  # the group
    assert ids[0] != ids[1]


def test_unknown_group_option_lists_the_valid_ones() -> None:
    res = run_in_process("lte.train", *SMALL, "encoder=nonsense")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith(
        "error: encoder=nonsense is not an option of encoder: choose one of"
    )
    assert "edsr_baseline" in res.stderr and len(res.stderr.splitlines()) == 1


@pytest.mark.slow
def test_nan_loss_skips_steps_then_stops(tmp_path: Path) -> None:
    # lr 1e30: the first step blows the weights up, every later loss is Inf/NaN.
    res = run_in_process(
        "lte.train",
        *SMALL,
        f"hydra.run.dir={tmp_path / 'run'}",
        "logger=none",
        "optimizer.lr=1e30",
        "module.max_bad_steps=3",
        "trainer.max_epochs=5",
    )
    assert res.returncode == 2, res.stderr[-2000:]
    assert (res.stdout + res.stderr).count("non-finite loss") >= 3  # Hydra logs to stdout
    assert "error: the loss was NaN/Inf for 3 steps in a row" in res.stderr
    assert "Traceback" not in res.stderr


def test_slurm_launcher_resumes_by_default() -> None:
    from lte.training.resume import requested_ckpt_path

    submitit = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert requested_ckpt_path(None, submitit) == "last"
    assert requested_ckpt_path("runs/a/x.ckpt", submitit) == "runs/a/x.ckpt"
    assert (
        requested_ckpt_path(None, "hydra._internal.core_plugins.basic_launcher.BasicLauncher")
        is None
    )
