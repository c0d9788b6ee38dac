"""``python -m lte.train``: train an arbitrary-scale SR model from the Hydra configs in ``conf/``.

Examples:
    python -m lte.train                                   # EDSR-baseline-LTE on DIV2K, paper recipe
    python -m lte.train model=liif encoder=rdn            # another decoder / encoder
    python -m lte.train experiment=swinir_lte trainer.devices=4   # a paper row on 4 GPUs (DDP)
    python -m lte.train hydra.run.dir=runs/a ckpt_path=runs/a/checkpoints/last.ckpt   # resume
    python -m lte.train -m data.scale_max=2,3,4           # a sweep: three runs, one W&B group

Everything of a run lands in its run directory (``hydra.run.dir``): ``checkpoints/last.ckpt`` and
``checkpoints/best.ckpt``, the W&B or CSV logs, ``images/`` and Hydra's ``.hydra/`` config record.
See docs/training.md.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from lte.errors import UserError, exit_on_user_error

log = logging.getLogger(__name__)


def load_resume_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training checkpoint to resume from, with a one-line error for anything unusable.

    Raises:
        UserError: the file is missing, a folder, unreadable or truncated, or not a training
            checkpoint of lte (e.g. an official ``.pth`` release, which holds no optimizer state).
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"ckpt_path '{p}' does not exist: give the last.ckpt of an earlier run")
    if p.is_dir():
        raise UserError(f"ckpt_path '{p}' is a folder: give the .ckpt file (e.g. {p}/last.ckpt)")
    if not zipfile.is_zipfile(p):
        raise UserError(
            f"ckpt_path '{p}' is not a PyTorch checkpoint (not a zip archive, or truncated): "
            "give the last.ckpt of an earlier run"
        )
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        OSError,
        ValueError,
    ) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(
            f"ckpt_path '{p}' cannot be read: not a checkpoint or truncated ({first[:120]})"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "optimizer_states" not in ckpt:
        raise UserError(
            f"ckpt_path '{p}' is not an lte training checkpoint (no optimizer state to resume): "
            "pass a last.ckpt written by python -m lte.train"
        )
    return ckpt


def device_count(trainer_cfg: DictConfig) -> int | None:
    """Processes a trainer config asks for (devices x nodes), or None when Lightning decides (``auto``)."""
    devices = trainer_cfg.get("devices", 1)
    nodes = int(trainer_cfg.get("num_nodes", 1) or 1)
    if isinstance(devices, ListConfig | list | tuple):
        return len(devices) * nodes
    if isinstance(devices, int) and devices > 0:
        return devices * nodes
    if isinstance(devices, str) and devices.isdigit() and int(devices) > 0:
        return int(devices) * nodes
    return None


def check_batch(cfg: DictConfig) -> None:
    """The global batch must split evenly over the processes: say so before anything starts."""
    world = device_count(cfg.trainer)
    batch = int(cfg.data.batch_size)
    if world is not None and batch % world:
        raise UserError(
            f"data.batch_size={batch} is the global batch and must divide by the {world} devices "
            f"(trainer.devices x trainer.num_nodes): use a multiple of {world}"
        )


def process_rank() -> int:
    """This process's global rank, from the launcher's environment (0 before DDP starts)."""
    from lightning.pytorch.utilities import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def hydra_choice(group: str) -> str | None:
    """The option chosen for a config group (``model`` -> ``lte``), when running under Hydra."""
    if not HydraConfig.initialized():
        return None
    value = HydraConfig.get().runtime.choices.get(group)
    return None if value in (None, "null") else str(value)


def default_group(cfg: DictConfig) -> str | None:
    """W&B group: the experiment's name, else the sweep's folder for ``-m`` runs, else none."""
    experiment = hydra_choice("experiment")
    if experiment:
        return experiment
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        sweep = Path(HydraConfig.get().sweep.dir)
        return "sweep-" + "_".join(sweep.parts[-2:])
    return None


def default_tags(cfg: DictConfig) -> list[str]:
    """Tags every run gets: model, encoder, data set and experiment, where known."""
    tags = [str(cfg.model_name), str(cfg.encoder_name)]
    tags += [t for t in (hydra_choice("data"), hydra_choice("experiment")) if t]
    return tags


def build_loggers(
    cfg: DictConfig, run_dir: Path, resume_id: str | None
) -> tuple[list[Any], str | None]:
    """Instantiate the ``logger`` group's loggers; W&B gets its mode, id, group and tags here.

    Returns the loggers and the W&B run id (None without W&B).
    """
    from lte.training.wandb_run import resolve_run_id, wandb_mode, write_run_id

    loggers: list[Any] = []
    run_id = None
    for node in (cfg.get("logger") or {}).values():
        if node is None or "_target_" not in node:
            continue
        if str(node._target_).endswith("WandbLogger"):
            mode = wandb_mode(node.get("mode"))
            if mode != "online":
                # wandb itself reads this too: nothing may try the network or prompt for a key.
                os.environ["WANDB_MODE"] = mode
            run_id = resolve_run_id(run_dir, resume_id)
            if process_rank() == 0:
                write_run_id(run_dir, run_id)
            tags = list(dict.fromkeys([*default_tags(cfg), *(node.get("tags") or [])]))
            loggers.append(
                instantiate(
                    node,
                    id=run_id,
                    resume="allow",
                    mode=mode,
                    group=node.get("group") or default_group(cfg),
                    tags=tags,
                )
            )
        else:
            loggers.append(instantiate(node))
    return loggers, run_id


def plain(cfg: DictConfig) -> dict[str, Any]:
    """A resolved config as plain containers (what checkpoints and loggers may hold)."""
    out = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(out, dict)
    return out  # type: ignore[return-value]


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one training job from a composed config; returns the final logged metrics.

    Raises:
        UserError: bad options, data folders or ``ckpt_path`` (before any step runs), or a loss that
            stays non-finite.
    """
    import lightning as L

    from lte.models.build import instantiate_model
    from lte.training.callbacks import AtomicCheckpointIO

    run_dir = Path(cfg.paths.output_dir)
    ckpt_path = cfg.get("ckpt_path") or None
    resume = load_resume_checkpoint(ckpt_path) if ckpt_path else None
    check_batch(cfg)
    # Each rank draws its own samples; DDP broadcasts rank 0's initial weights to all ranks.
    L.seed_everything(int(cfg.seed) + process_rank(), workers=True, verbose=False)

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")  # scan and validate the folders now: a bad path fails in one line
    net = instantiate_model(cfg)
    run_config = plain(cfg)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    module = instantiate(
        cfg.module,
        _recursive_=False,  # the config dicts below hold _target_ keys that must stay data
        net=net,
        optimizer=instantiate(cfg.optimizer),
        scheduler=scheduler,
        model_config={"model": run_config["model"], "encoder": run_config["encoder"]},
        model_name=str(cfg.model_name),
        encoder_name=str(cfg.encoder_name),
        scale_max=datamodule.scale_max,
        train_config=run_config,
    )
    loggers, run_id = build_loggers(cfg, run_dir, resume.get("wandb_run_id") if resume else None)
    module.wandb_run_id = run_id
    del resume  # Lightning reads the file again itself
    callbacks = [
        instantiate(node)
        for node in (cfg.get("callbacks") or {}).values()
        if node is not None and "_target_" in node
    ]
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        logger=loggers or False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
    )
    for logger in loggers:
        logger.log_hyperparams(run_config)
    log.info("run directory: %s", run_dir)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    finally:
        if run_id is not None and trainer.is_global_zero:
            import wandb

            wandb.finish()  # a sweep's next job must start its own run, not reuse this one
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if trainer.is_global_zero:
        summary = ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
        print(f"done: step {trainer.global_step}, epoch {trainer.current_epoch}: {summary}")
        print(f"checkpoints: {run_dir / 'checkpoints'}")
    return metrics


@hydra.main(version_base=None, config_path="conf", config_name="train")
@exit_on_user_error
def _hydra_main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get("val/psnr")


def main() -> None:
    """Entry point of ``lte-train`` / ``python -m lte.train``.

    Hydra prints a short message plus a hint about ``HYDRA_FULL_ERROR`` for config errors; a
    :class:`~lte.errors.UserError` inside the job becomes one ``error: ...`` line and exit 2.
    """
    _hydra_main()


if __name__ == "__main__":
    sys.exit(main())
