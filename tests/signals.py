"""A callback for tests that sends this process a real signal at a chosen training step.

Added to a real run with ``+callbacks.signal._target_=signals.SignalAtStep`` (the tests folder is on
``sys.path`` in-process, see conftest.py): the signal arrives while step ``step`` runs, as a Ctrl-C or
a ``kill`` would, but at a known step, so that what is saved can be compared exactly.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import lightning as L


class SignalAtStep(L.Callback):
    """Send ``signum`` (default SIGINT) to this process ``repeat`` times in the middle of training
    step ``step`` (1-based): after its backward pass, before its optimizer step. ``step=0``: when
    training starts, before the first step."""

    def __init__(self, step: int, signum: str = "SIGINT", repeat: int = 1) -> None:
        self.step = int(step)
        self.signum = getattr(signal, signum)
        self.repeat = int(repeat)

    def _send(self) -> None:
        for _ in range(self.repeat):
            os.kill(os.getpid(), self.signum)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.step == 0:
            self._send()

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        if trainer.global_step + 1 == self.step:
            self._send()
