"""``python -m lte.train`` / ``lte-train``: train an arbitrary-scale SR model from the configs in ``conf/``.

Examples:
    python -m lte.train                                   # EDSR-baseline-LTE on DIV2K, paper recipe
    python -m lte.train model=liif encoder=rdn            # another decoder / encoder
    python -m lte.train experiment=swinir_lte trainer.devices=4   # a paper row on 4 GPUs (DDP)
    python -m lte.train hydra.run.dir=runs/a ckpt_path=last       # resume runs/a (or start it)
    python -m lte.train -m data.scale_max=2,3,4           # a sweep: three runs, one W&B group
    python -m lte.train debug=fdr data=sample encoder=edsr_tiny   # one step + validation, logged
    python -m lte.train hparams_search=scale_lr_optuna    # an Optuna search (pip install .[sweep])
    python -m lte.train --help                            # the groups and options training uses

Everything of a run lands in its run directory (``hydra.run.dir``): ``checkpoints/last.ckpt`` and
``checkpoints/best.ckpt``, the W&B or CSV logs, ``images/`` and Hydra's ``.hydra/`` config record.
A directory that already holds checkpoints is resumed with ``ckpt_path=last``, never overwritten,
and a directory another run is using is refused (:mod:`lte.training.run_lock`). Ctrl-C or SIGTERM
saves the current step and prints the command that resumes it (:mod:`lte.training.interrupt`).
See docs/training.md. The work itself is :func:`lte.training.run.train`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import hydra
from omegaconf import DictConfig, OmegaConf

from lte.conf import CONF_DIR as _CONF
from lte.errors import exit_on_user_error
from lte.files import create_folder

#: The config groups a training run is composed from, in the order --help lists them.
TRAIN_GROUPS = ("model", "encoder", "data", "trainer", "logger", "callbacks", "experiment")
TRAIN_GROUPS += ("debug", "hparams_search")
#: Options that other configs include and that are not meant to be chosen on their own.
FRAGMENTS = frozenset({"data/base", "experiment/paper", "experiment/paper_swinir"})


def train_groups_help() -> str:
    """``group: option, option, ...`` for the groups training uses (``--help``), fragments left out."""
    lines = []
    for group in TRAIN_GROUPS:
        options = sorted(
            p.stem for p in (_CONF / group).glob("*.yaml") if f"{group}/{p.stem}" not in FRAGMENTS
        )
        if options:
            lines.append(f"{group}: {', '.join(options)}")
    lines.append(
        "(the recipe of the (encoder, model) pair, conf/recipe/, and the git-ignored "
        "conf/local/default.yaml apply by themselves)"
    )
    return "\n".join(lines)


OmegaConf.register_new_resolver("lte_train_groups", train_groups_help, replace=True)


@hydra.main(version_base=None, config_path="../conf", config_name="train")
@exit_on_user_error
def _hydra_main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from lte.training.run import train
    from lte.training.run_lock import hold_run_dir

    # A single run's folder is held already (main); a multirun job takes its own folder here.
    hydra_cfg = HydraConfig.get()
    option = "hydra.sweep.dir" if hydra_cfg.mode == RunMode.MULTIRUN else "hydra.run.dir"
    with hold_run_dir(hydra_cfg.runtime.output_dir, option=option):
        metrics = train(cfg)
    # What a sweeper (hparams_search=..., Optuna) optimises; a plain run ignores it.
    metric = cfg.get("optimized_metric")
    return metrics.get(metric) if metric else None


def _check_output_dir(argv: list[str]) -> None:
    """Create the run (or sweep) folder a command names, before Hydra does.

    Hydra makes it before the job starts, and reports a failure there with a partial traceback;
    this turns it into one line. Folders named with interpolations (``${now:...}``) are left to Hydra.
    """
    key = "hydra.sweep.dir=" if ("-m" in argv or "--multirun" in argv) else "hydra.run.dir="
    values = [a[len(key) :] for a in argv if a.startswith(key)]
    if not values or "${" in values[-1]:
        return
    create_folder(values[-1], key.removesuffix("="))


@contextlib.contextmanager
def _checked_command(argv: list[str]) -> Iterator[None]:
    """Check the command line (:mod:`lte.cli.overrides`); for a single run, hold its folder for
    as long as the block lasts, taken before Hydra writes its config record and log into it."""
    from lte.cli.overrides import check_command, pinned_run_dir

    command = check_command(argv, config_name="train", prog="python -m lte.train", hidden=FRAGMENTS)
    if command is not None and not command.runs_jobs:  # --cfg: Hydra prints, creates nothing
        yield
        return
    if command is None or command.run_dir is None:
        _check_output_dir(argv)
        yield
        return
    from lte.training.run_lock import hold_run_dir

    with hold_run_dir(command.run_dir):
        if command.run_dir_pinned:  # the folder of ${now:...} as resolved now, not a second later
            sys.argv = [sys.argv[0], *argv, pinned_run_dir(command.run_dir)]
        yield


@exit_on_user_error
def main() -> None:
    """Entry point of ``lte-train`` / ``python -m lte.train``.

    Config mistakes (an unknown key or group option, a bad value) and anything else the user can
    fix are one ``error: ...`` line and exit 2; Ctrl-C and SIGTERM save the current step and end
    with ``interrupted: ...`` and exit 130 (:mod:`lte.training.interrupt`).
    """
    with _checked_command(sys.argv[1:]):
        _hydra_main()


if __name__ == "__main__":
    sys.exit(main())
