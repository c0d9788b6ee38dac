"""Ctrl-C and SIGTERM during training: finish the step, save it, stop, and say how to resume.

Python's own Ctrl-C raises ``KeyboardInterrupt`` wherever the main thread happens to be, possibly
between two parameter updates of one optimizer step; Lightning then exits with status 1 and the work
since the last validation is lost. Here the first Ctrl-C only asks to stop: the step in progress
finishes, its checkpoint is written to ``last.ckpt`` through the run's own checkpoint callback (the
atomic writer, the same mid-epoch checkpoint as at ``trainer.max_steps``, which resumes bit-exactly),
and the run ends with one ``interrupted: ...`` line and exit status 130. A second Ctrl-C stops at
once, without saving.

SIGTERM (``kill``, a scheduler's stop, ``docker stop``) goes through Lightning's own handler, which
sets ``trainer.received_sigterm``; the step in progress is saved the same way and the exit status is
130 as well: the run stopped on request and is resumable, whichever signal asked. Lightning itself
ends a validation that SIGTERM interrupts; the newest checkpoint is then the one before it, and the
message says which step that is. In DDP every process takes part in the decision to stop, so all of
them stop after the same step.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from lte.errors import Interrupted, quote

log = logging.getLogger(__name__)


def resume_command(run_dir: Path) -> str:
    """The command that resumes this run: its own options, its folder and ``ckpt_path=last``.

    Under Hydra the options are the job's overrides (a sweep job's own values included), less
    ``ckpt_path`` and ``hparams_search`` (resuming one trial is a single run, not a new search).
    """
    from hydra.core.hydra_config import HydraConfig

    options: list[str] = []
    if HydraConfig.initialized():
        skip = ("ckpt_path=", "hparams_search=", "hydra.run.dir=")
        options = [
            o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith(skip)
        ]
    return shlex.join(
        ["python", "-m", "lte.train", *options, f"hydra.run.dir={run_dir}", "ckpt_path=last"]
    )


class StopOnSignal(L.Callback):
    """Stop training after the current step on Ctrl-C or SIGTERM, with that step saved.

    Added by :func:`lte.training.run.train` to every run (not a config option): how a run stops is
    not a preference. The stop surfaces as :class:`~lte.errors.Interrupted`, raised out of
    ``trainer.fit``; :meth:`explain` words the stops that Lightning ends itself.

    Args:
        checkpoint_dir: where ``last.ckpt`` lives (used when the run has no checkpoint callback).
        resume: the command that resumes the run (:func:`resume_command`).
    """

    def __init__(self, checkpoint_dir: str | os.PathLike[str], resume: str) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.resume = resume
        self.cause: str | None = None  # "Ctrl-C" or "SIGTERM" once a stop is asked for
        self.exception: BaseException | None = None  # what Lightning stopped on, if it did
        self.saved_step: int | None = None  # the step of the newest checkpoint of this run
        self._pid = os.getpid()
        self._installed = False
        self._validating = False
        self._step = 0

    # --- the Ctrl-C handler ----------------------------------------------------------------------
    # Installed after Lightning registered its signal handlers: Lightning puts back the handlers it
    # found at teardown, so the default Ctrl-C returns by itself however fit ends.

    def _install(self) -> None:
        if not self._installed and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._on_sigint)
            self._installed = True

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:  # a forked DataLoader worker: the main process decides
            return
        if self.cause is None:
            self.cause = "Ctrl-C"
            log.warning(
                "Ctrl-C: stopping after the current step, which will be saved "
                "(Ctrl-C again stops at once, without saving)"
            )
            return
        self.cause = "a second Ctrl-C"
        raise KeyboardInterrupt

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()
        last = self.checkpoint_dir / "last.ckpt"
        if trainer.ckpt_path and Path(trainer.ckpt_path).resolve() == last.resolve():
            self.saved_step = trainer.global_step
        if trainer.is_global_zero:
            log.info(
                "Ctrl-C or SIGTERM stops the run after the current step and saves it to %s",
                last,
            )

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.saved_step = trainer.global_step

    # --- stopping --------------------------------------------------------------------------------

    def _stop_asked(self, trainer: L.Trainer) -> bool:
        """Whether any process was asked to stop (a collective decision under DDP)."""
        if self.cause is None and trainer.received_sigterm:
            self.cause = "SIGTERM"
        return bool(trainer.strategy.reduce_boolean_decision(self.cause is not None, all=False))

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # Asked during validation or before the first step: stop now if nothing is left to save.
        if not self._stop_asked(trainer):
            return
        if trainer.global_step == 0:
            raise Interrupted(
                f"stopped by {self.cause or 'another process'} before the first training step: "
                "nothing to save; start again with the same command"
            )
        if self.saved_step == trainer.global_step:
            raise Interrupted(
                f"stopped by {self.cause or 'another process'}; the checkpoint of step "
                f"{trainer.global_step} is {quote(self._last_path(trainer))}; resume with "
                f"{self.resume}"
            )

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if not self._stop_asked(trainer):
            return
        path = self._save(trainer)
        raise Interrupted(
            f"saved the checkpoint of step {trainer.global_step} to {quote(path)} (stopped by "
            f"{self.cause or 'another process'}); resume with {self.resume}"
        )

    def _last_callback(self, trainer: L.Trainer) -> ModelCheckpoint | None:
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.save_last:
                return callback
        return None

    def _last_path(self, trainer: L.Trainer) -> Path:
        callback = self._last_callback(trainer)
        if callback is not None and callback.last_model_path:
            return Path(callback.last_model_path)
        return self.checkpoint_dir / "last.ckpt"

    def _save(self, trainer: L.Trainer) -> Path:
        """Write this step's ``last.ckpt`` as the run's checkpoint callback would (atomically)."""
        callback = self._last_callback(trainer)
        if callback is not None:
            callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))
            return Path(callback.last_model_path)
        path = self.checkpoint_dir / "last.ckpt"
        trainer.save_checkpoint(path)
        return path

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self.exception = exception
        # Lightning resets the stage after this hook: keep where the run was for the message.
        self._validating = bool(trainer.validating or trainer.sanity_checking)
        self._step = trainer.global_step

    def explain(self, trainer: L.Trainer) -> Interrupted | None:
        """The message for a stop that Lightning made itself, or None when fit did not stop on a signal.

        That is a second Ctrl-C (or one before the handler was in place), after which Lightning exits
        with status 1, and a SIGTERM during validation, which Lightning ends with ``SIGTERMException``.
        """
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(self.exception, KeyboardInterrupt):
            cause = self.cause if self.cause == "a second Ctrl-C" else "Ctrl-C"
        elif isinstance(self.exception, SIGTERMException):
            cause = "SIGTERM"
        else:
            return None
        last = self._last_path(trainer)
        if cause == "SIGTERM" and self.saved_step == self._step and last.is_file():
            # Lightning stops after a validation that saved this very step.
            return Interrupted(
                f"stopped by SIGTERM; the checkpoint of step {self._step} is {quote(last)}; "
                f"resume with {self.resume}"
            )
        if self._step == 0:
            where = "before the first training step"
        elif self._validating:
            where = f"during the validation after step {self._step}"
        else:
            where = f"during step {self._step + 1}, without saving it"
        if self.saved_step is not None and last.is_file():
            kept = f"{quote(last)} holds step {self.saved_step}; resume with {self.resume}"
        else:
            kept = "no checkpoint of this run was saved: start again with the same command"
        return Interrupted(f"stopped by {cause} {where}; {kept}")
