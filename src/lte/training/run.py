"""One training job from a composed config: what ``python -m lte.train`` runs (:mod:`lte.cli.train`).

Order matters for the user: every config value is checked, the run directory rule applied and the
resume checkpoint read and matched against the model before a single step runs, so mistakes cost
seconds and one ``error:`` line, never a half-written run.
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from lte.errors import EXIT_INTERRUPTED, Interrupted, UserError
from lte.training.checks import build, check_config, check_training_samples
from lte.training.console import config_tree, setup_console
from lte.training.interrupt import StopOnSignal, resume_command
from lte.training.loggers import (
    build_loggers,
    default_tags,
    define_val_metrics,
    describe_wandb,
    run_name,
)
from lte.training.resume import (
    check_resume_fits,
    load_resume_checkpoint,
    requested_ckpt_path,
    resolve_ckpt_path,
)
from lte.training.speed import (
    bf16_warning,
    check_keep_freed_memory,
    check_matmul_precision,
    keep_freed_memory,
)

log = logging.getLogger(__name__)


def process_rank() -> int:
    """This process's global rank, from the launcher's environment (0 before DDP starts)."""
    from lightning.pytorch.utilities import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def launcher_target() -> str | None:
    """The Hydra launcher running this job (``..._SubmititLauncher`` on SLURM), if under Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    target = HydraConfig.get().launcher.get("_target_")
    return str(target) if target else None


def plain(cfg: DictConfig) -> dict[str, Any]:
    """A resolved config as plain containers (what checkpoints and loggers may hold)."""
    out = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(out, dict)
    return out  # type: ignore[return-value]


def ensure_writable(folder: Path) -> None:
    """Create ``folder`` and write a probe file in it: an unwritable run directory fails now, in one line."""
    probe = folder / f".write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UserError(
            f"cannot write to '{folder}' ({err.strerror or err}): choose a writable run directory "
            "with hydra.run.dir=DIR"
        ) from None


def optimizer_factories(cfg: DictConfig, params: list[Any]) -> tuple[Any, Any]:
    """The ``optimizer`` and ``scheduler`` partials, each tried once on the real parameters so that
    their own checks (lr, betas, milestones) fail now, in one line, not at the first step."""
    optimizer_factory = build("optimizer", instantiate, cfg.optimizer)
    optimizer = build("optimizer", optimizer_factory, params)
    scheduler_factory = None
    if cfg.get("scheduler"):
        scheduler_factory = build("scheduler", instantiate, cfg.scheduler)
        build("scheduler", scheduler_factory, optimizer)
    return optimizer_factory, scheduler_factory


def check_optimized_metric(cfg: DictConfig, val_names: list[str]) -> str | None:
    """``optimized_metric`` (what a sweep maximises) must be a metric this run logs."""
    metric = cfg.get("optimized_metric")
    if metric is None:
        return None
    known = [f"val/{n}" for n in val_names] + ["train/loss"]
    if metric not in known:
        raise UserError(
            f"optimized_metric={metric} is not logged by this run: use one of {', '.join(known)}"
        )
    return str(metric)


#: How validation patches differ from the numbers to report (the end of the validation line).
_PATCHES_ARE_NOT_THE_PROTOCOL = (
    "These are patch scores for following training; lte.test scores whole images (shave, Y "
    "channel per protocol) and is what to report"
)


def describe_validation(datamodule: Any) -> str:
    """One line saying what ``val/psnr*`` measure, and that ``lte.test`` measures something else."""
    sets = list(getattr(datamodule, "val_sets", None) or [])
    names = list(getattr(datamodule, "val_names", None) or [])
    if not sets or len(sets) != len(names):
        return "validation: PSNR on fixed patches of data.val_dir"
    if hasattr(datamodule, "val_lr_dir"):  # LR/HR pairs (lte.data.paired): one loader, one scale
        return (
            f"validation: PSNR (RGB, no shave) on {len(sets[0])} fixed patches of the pairs in "
            f"{datamodule.val_dir} / {datamodule.val_lr_dir} at x{datamodule.scale}, LR side "
            f"{datamodule.val_inp_size} px: val/{names[0]}. {_PATCHES_ARE_NOT_THE_PROTOCOL}"
        )
    images = len(getattr(sets[0].store, "shapes", []) or [])
    fixed = f", val/{names[1]}..val/{names[-1]}: {len(sets[1])} each" if len(sets) > 1 else ""
    return (
        f"validation: PSNR (RGB, no shave) on fixed patches of {images} images in "
        f"{datamodule.val_dir}, LR side {datamodule.val_inp_size} px: val/{names[0]}: "
        f"{len(sets[0])} patches at scales spread over [{datamodule.scale_min:g}, "
        f"{datamodule.scale_max:g}]{fixed}, at the same places for every scale. "
        f"{_PATCHES_ARE_NOT_THE_PROTOCOL}"
    )


def check_samples(datamodule: Any) -> None:
    """At least one global batch of training samples (see :func:`check_training_samples`)."""
    train_set = getattr(datamodule, "train_set", None)
    batch = getattr(datamodule, "batch_size", None)
    if train_set is None or batch is None:
        return
    check_training_samples(len(train_set), int(getattr(datamodule, "repeat", 1)), int(batch))


def model_node(cfg: DictConfig) -> DictConfig:
    """The config without ``model.compile``: a training option, not an argument of SRModel."""
    out = copy.deepcopy(cfg)
    with open_dict(out):
        out.model.pop("compile", None)
    return out


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one training job from a composed config; returns the final logged metrics.

    ``float32_matmul_precision`` applies for the job's duration (the previous value is restored).

    Raises:
        UserError: bad options, data folders or ``ckpt_path``, a run directory that holds another
            run's checkpoints (before any step runs), or a loss that stays non-finite.
    """
    import torch

    precision = check_matmul_precision(cfg.get("float32_matmul_precision", "high"))
    if check_keep_freed_memory(cfg.get("keep_freed_memory", True)):
        # A routine setting, not news: the console starts with the config tree, once per run.
        log.debug(keep_freed_memory())
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        return _train(cfg)
    finally:
        torch.set_float32_matmul_precision(previous)


def _train(cfg: DictConfig) -> dict[str, float]:
    import lightning as L

    from lte.models.build import instantiate_model
    from lte.models.identity import labels
    from lte.training.callbacks import AtomicCheckpointIO
    from lte.training.data import TrainingData

    rank = process_rank()
    setup_console(rank)
    if rank == 0 and cfg.get("print_config", True):
        print(config_tree(cfg, resolve=True), flush=True)
    check_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    ckpt_dir = Path(cfg.paths.checkpoint_dir)
    ckpt_path = resolve_ckpt_path(
        requested_ckpt_path(cfg.get("ckpt_path"), launcher_target()), run_dir, ckpt_dir
    )
    ensure_writable(ckpt_dir)
    resume = load_resume_checkpoint(ckpt_path) if ckpt_path is not None else None
    # Model init: every rank the same seed is not needed (DDP broadcasts rank 0's weights); the
    # training samples are a function of (seed, epoch, position) alone (lte.training.data).
    L.seed_everything(int(cfg.seed) + rank, workers=True, verbose=False)

    datamodule = build("data", instantiate, cfg.data)
    datamodule.setup("fit")  # scan and validate the folders now: a bad path fails in one line
    check_samples(datamodule)
    check_optimized_metric(cfg, list(datamodule.val_names))
    net = build("model", instantiate_model, model_node(cfg))
    data_smax = float(datamodule.scale_max)
    if float(net.scale_max) != data_smax:
        raise UserError(
            f"model.scale_max={net.scale_max:g} differs from data.scale_max={data_smax:g}: the "
            "model's scale_max is the training scale_max; set data.scale_max only"
        )
    model_name, encoder_name = labels(net.describe())
    optimizer_factory, scheduler_factory = optimizer_factories(cfg, list(net.parameters()))
    run_config = plain(cfg)
    module = build(
        "module",
        instantiate,
        cfg.module,
        _recursive_=False,  # the config dicts below hold _target_ keys that must stay data
        net=net,
        optimizer=optimizer_factory,
        scheduler=scheduler_factory,
        train_config=run_config,
        compile_net=bool(cfg.model.get("compile", False)),
    )
    if resume is not None:
        assert ckpt_path is not None
        check_resume_fits(
            resume["state_dict"], module.state_dict(), ckpt_path, f"{model_name}-{encoder_name}"
        )
    name = cfg.get("run_name") or run_name(
        model_name, encoder_name, datamodule.scale_min, datamodule.scale_max
    )
    loggers, run_id = build_loggers(
        cfg,
        run_dir,
        resume.get("wandb_run_id") if resume else None,
        name=str(name),
        tags=default_tags(model_name, encoder_name),
        is_rank_zero=rank == 0,
    )
    module.wandb_run_id = run_id
    del resume  # Lightning reads the file again itself
    callbacks = [
        build(f"callbacks.{key}", instantiate, node)
        for key, node in (cfg.get("callbacks") or {}).items()
        if node is not None and "_target_" in node
    ]
    if not loggers:  # LearningRateMonitor refuses to run without a logger: nothing to log into
        callbacks = [c for c in callbacks if type(c).__name__ != "LearningRateMonitor"]
    # First, so that its Ctrl-C handler is in place before any other callback's start hook runs.
    stopper = StopOnSignal(ckpt_dir, resume_command(run_dir))
    callbacks.insert(0, stopper)
    trainer: L.Trainer = build(
        "trainer",
        instantiate,
        cfg.trainer,
        logger=loggers or False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
    )
    for logger in loggers:
        logger.log_hyperparams(run_config)
    define_val_metrics(loggers, list(datamodule.val_names))
    log.info("run directory: %s", run_dir)
    if rank == 0:
        where = describe_wandb(loggers)
        if where:
            log.info(where)
        log.info(describe_validation(datamodule))
        warning = bf16_warning(str(trainer.precision), trainer.strategy.root_device)
        if warning:
            log.warning(warning)
    data = TrainingData(datamodule, seed=int(cfg.seed))
    sigint = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    except Interrupted:
        if rank != 0:  # every process stops; rank 0 alone says so
            raise SystemExit(EXIT_INTERRUPTED) from None
        raise
    except SystemExit:  # Lightning's own exits after a Ctrl-C, or SIGTERM in validation
        stop = stopper.explain(trainer)
        if stop is None:
            raise
        if rank != 0:
            raise SystemExit(EXIT_INTERRUPTED) from None
        raise stop from None
    finally:
        if sigint is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, sigint)
        if run_id is not None and trainer.is_global_zero:
            import wandb

            wandb.finish()  # a sweep's next job must start its own run, not reuse this one
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if trainer.is_global_zero:
        summary = ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
        batches = trainer.fit_loop.epoch_loop.batch_progress.total.processed
        epochs = batches / max(1, int(trainer.num_training_batches or 1))
        print(f"done: step {trainer.global_step} ({epochs:.4g} epochs): {summary}")
        print(f"checkpoints: {ckpt_dir}")
    return metrics
