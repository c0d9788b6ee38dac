"""Callbacks that tests add to real training runs, to make something happen at a known step.

Added with ``+callbacks.NAME._target_=train_callbacks.SignalAtStep`` and the like: the tests folder is
on ``sys.path`` in-process (``pythonpath`` in pyproject.toml); a subprocess needs ``PYTHONPATH=tests``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import lightning as L


class SignalAtStep(L.Callback):
    """A real signal to this process, as a Ctrl-C or a ``kill`` would send it, but at a known step,
    so that what is saved can be compared exactly.

    Sends ``signum`` (default SIGINT) to this process ``repeat`` times in the middle of training
    step ``step`` (1-based): after its backward pass, before its optimizer step. ``step=0``: when
    training starts, before the first step. ``when``: ``step``, or ``validation`` (its first batch)
    or ``validation_end`` (before its checkpoint is saved) of the validation after step ``step``.
    """

    def __init__(
        self, step: int, signum: str = "SIGINT", repeat: int = 1, when: str = "step"
    ) -> None:
        self.step = int(step)
        self.signum = getattr(signal, signum)
        self.repeat = int(repeat)
        assert when in ("step", "validation", "validation_end"), when
        self.when = when

    def _send(self) -> None:
        for _ in range(self.repeat):
            os.kill(os.getpid(), self.signum)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.step == 0:
            self._send()

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        if trainer.global_step + 1 == self.step and self.when == "step":
            self._send()

    def on_validation_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int, loader: int = 0
    ) -> None:
        first = i == 0 and loader == 0 and not trainer.sanity_checking
        if self.when == "validation" and first and trainer.global_step == self.step:
            self._send()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Before the checkpoint callback's own on_validation_end (Lightning runs those last).
        if self.when == "validation_end" and trainer.global_step == self.step:
            self._send()


class PauseAtStep(L.Callback):
    """After training step ``step``, create ``paused`` and wait until ``resume`` exists.

    Holds a real run at a known point while a test starts something else against it (a second run
    into the same folder), with no guess about how long the run would otherwise take.
    """

    def __init__(self, step: int, paused: str, resume: str, timeout: float = 600) -> None:
        self.step = int(step)
        self.paused, self.resume = Path(paused), Path(resume)
        self.timeout = float(timeout)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        if trainer.global_step != self.step:
            return
        self.paused.touch()
        deadline = time.monotonic() + self.timeout
        while not self.resume.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
