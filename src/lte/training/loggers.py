"""The run's loggers from the ``logger`` config group: W&B gets its mode, id, name, group and tags here.

Names and tags come from what the model is (:func:`lte.models.identity.labels`), never from the
names of the config files that built it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from lte.checkpoint.reading import valid_run_id
from lte.training.checks import build

#: What a W&B run id may look like; anything else read from a file is ignored.


def hydra_choice(group: str) -> str | None:
    """The option chosen for a config group (``data`` -> ``div2k``), when running under Hydra."""
    if not HydraConfig.initialized():
        return None
    value = HydraConfig.get().runtime.choices.get(group)
    return None if value in (None, "null") else str(value)


def default_group() -> str | None:
    """W&B group: the experiment's name, else the sweep's folder for ``-m`` runs, else none."""
    experiment = hydra_choice("experiment")
    if experiment:
        return experiment
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        sweep = Path(HydraConfig.get().sweep.dir)
        return "sweep-" + "_".join(sweep.parts[-2:])
    return None


def run_name(model: str, encoder: str, scale_min: float, scale_max: float) -> str:
    """``<model>-<encoder>-x<scale_min>-<scale_max>``, e.g. ``lte-edsr_baseline-x1-4``."""
    return f"{model}-{encoder}-x{float(scale_min):g}-{float(scale_max):g}"


def default_tags(model: str, encoder: str) -> list[str]:
    """Tags every run gets: model, encoder, then the data set and experiment chosen, where known."""
    return [model, encoder, *[t for t in (hydra_choice("data"), hydra_choice("experiment")) if t]]


def wandb_quiet_kwargs(mode: str) -> dict[str, Any]:
    """Extra ``wandb.init`` arguments that keep W&B's console notices out of an offline run.

    Offline, W&B prints seven lines at start and a history sparkline at the end that say nothing
    the run directory does not; :func:`describe_wandb` prints the one line that matters (where the
    run is, and how to upload it). Online runs keep W&B's output (it prints the run's URL).
    """
    import wandb

    extra: dict[str, Any] = {}
    if mode != "online":
        extra["settings"] = wandb.Settings(silent=True)
    return extra


def drop_anonymous(logger: Any) -> Any:
    """Stop Lightning's WandbLogger from passing ``anonymous=None`` to ``wandb.init``.

    wandb >= 0.19 warns "The anonymous setting has no effect" on every run for any value but its
    own "not set"; Lightning 2.6 always passes one. The key is removed from the arguments Lightning
    keeps for ``wandb.init`` (a private dict, hence the checks), so wandb sees it unset.
    """
    init_args = getattr(logger, "_wandb_init", None)
    if isinstance(init_args, dict) and init_args.get("anonymous") is None:
        init_args.pop("anonymous", None)
    return logger


def define_val_metrics(loggers: list[Any], val_names: list[str]) -> None:
    """W&B summaries of ``val/psnr*`` are the best value (``max``), not the last.

    Each name is defined on its own: wandb's glob ``val/psnr*`` matches ``val/psnr`` but not
    ``val/psnr_x2``. The step metric stays Lightning's ``trainer/global_step``. Only rank 0 holds
    a real W&B run; elsewhere ``experiment`` is Lightning's dummy and this does nothing.
    """
    for logger in loggers:
        if type(logger).__name__ != "WandbLogger":
            continue
        run = logger.experiment
        if not hasattr(run, "define_metric"):
            continue
        for name in val_names:
            run.define_metric(
                f"val/{name}", step_metric="trainer/global_step", step_sync=True, summary="max"
            )


def describe_wandb(loggers: list[Any]) -> str | None:
    """One line on where the W&B run is (and, offline, how to upload it); None without W&B."""
    for logger in loggers:
        if type(logger).__name__ != "WandbLogger":
            continue
        run = logger.experiment
        if getattr(run, "disabled", False):
            return "W&B: disabled (logger.wandb.mode=disabled): nothing is logged"
        folder = getattr(run, "dir", None)
        if not folder:
            return None
        run_dir = Path(folder).parent
        if getattr(run, "offline", False):
            return f"W&B: offline run {run.id} in {run_dir} (upload it later: wandb sync {run_dir})"
        url = getattr(run, "url", None)
        return f"W&B: run {run.id}" + (f" at {url}" if url else "")
    return None


def build_loggers(
    cfg: DictConfig,
    run_dir: Path,
    resume_id: str | None,
    *,
    name: str,
    tags: list[str],
    is_rank_zero: bool,
) -> tuple[list[Any], str | None]:
    """Instantiate the ``logger`` group's loggers; returns them and the W&B run id (None without W&B).

    Values that do not come from the config (the run id, which may come from a checkpoint, the name
    and tags) are passed to the logger's constructor, never merged into a config: nothing read from a
    file goes through OmegaConf interpolation.
    """
    from lte.training.wandb_run import resolve_run_id, wandb_mode, write_run_id

    loggers: list[Any] = []
    run_id = None
    for key, node in (cfg.get("logger") or {}).items():
        if node is None or "_target_" not in node:
            continue
        if str(node._target_).endswith("WandbLogger"):
            mode = wandb_mode(node.get("mode"))
            if mode != "online":
                # wandb itself reads this too: nothing may try the network or prompt for a key.
                os.environ["WANDB_MODE"] = mode
            run_id = resolve_run_id(run_dir, valid_run_id(resume_id))
            if is_rank_zero:
                write_run_id(run_dir, run_id)
            factory = build(f"logger.{key}", instantiate, node, _partial_=True)
            loggers.append(
                drop_anonymous(
                    build(
                        f"logger.{key}",
                        factory,
                        id=run_id,
                        resume="allow",
                        mode=mode,
                        name=node.get("name") or name,
                        group=node.get("group") or default_group(),
                        tags=list(dict.fromkeys([*tags, *(node.get("tags") or [])])),
                        **wandb_quiet_kwargs(mode),
                    )
                )
            )
        else:
            loggers.append(build(f"logger.{key}", instantiate, node))
    return loggers, run_id
