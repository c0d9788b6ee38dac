"""What ``scripts/gpu_check.py`` reads from inside a real ``lte.train`` run: a Lightning callback.

The check drives the project's own CLI (``python -m lte.train ...``), so what only the training
process knows (the matmul precision torch really runs with, the DDP backend, the loss of every
step, step times, peak GPU memory, the step a resumed run starts from) has to be written down by
that process. Hydra adds this callback to a run without touching ``src/``::

    python -m lte.train ... +callbacks.gpu_probe._target_=gpu_check_probe.StepProbe

(``scripts/`` on ``PYTHONPATH``). Rank 0 writes one JSON file, ``gpu_probe.json`` in the run
directory (``trainer.default_root_dir``), when training ends; a resumed start writes it again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

#: The file rank 0 writes in the run directory.
PROBE_FILE = "gpu_probe.json"


def matmul_rel_error(device: torch.device) -> float | None:
    """Relative error of a float32 matmul against float64 on ``device`` (CUDA only, else None).

    This is how TF32 shows itself: with TF32 the inputs are rounded to a 10-bit mantissa, so the
    error of a 1024-deep product is about 1e-3 relative; in IEEE float32 it stays near 1e-6. A
    flag can say TF32 is on while a kernel ignores it; this measures what the GPU did.
    """
    if device.type != "cuda":
        return None
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(1024, 1024, generator=gen, dtype=torch.float64)
    b = torch.randn(1024, 1024, generator=gen, dtype=torch.float64)
    exact = a @ b
    got = (a.float().to(device) @ b.float().to(device)).double().cpu()
    return float((got - exact).norm() / exact.norm())


def loss_value(outputs: Any) -> float | None:
    """The training step's loss from what Lightning hands ``on_train_batch_end`` (None: skipped)."""
    if isinstance(outputs, dict):
        outputs = outputs.get("loss")
    if isinstance(outputs, torch.Tensor):
        return float(outputs.detach().float())
    return None


def decoder_kind(pl_module: L.LightningModule) -> str | None:
    """The decoder family of the run (``lte``, ``liif``, ``metasr``), from the model's own description."""
    net = getattr(pl_module, "net", None)
    describe = getattr(net, "describe", None)
    return str(describe()["decoder"]["kind"]) if callable(describe) else None


class StepProbe(L.Callback):
    """Records the run's settings at start, every step's loss and end time, and peak GPU memory.

    Step times are taken after ``torch.cuda.synchronize`` on CUDA, so they measure the GPU's work,
    not how far ahead the CPU has queued it.
    """

    def __init__(self) -> None:
        self.record: dict[str, Any] = {}
        self.losses: list[float | None] = []
        self.step_ends: list[float] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        device = pl_module.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        dist = torch.distributed
        backend = dist.get_backend() if dist.is_available() and dist.is_initialized() else None
        self.record = {
            "pid": os.getpid(),
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "world_size": trainer.world_size,
            "process_group_backend": backend,
            "strategy": type(trainer.strategy).__name__,
            "precision": str(trainer.precision),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
            "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
            "matmul_rel_error": matmul_rel_error(device),
            "compiled": getattr(pl_module, "compile_net", None),
            "decoder": decoder_kind(pl_module),
            "start_step": int(trainer.global_step),
            "start_time": time.perf_counter(),
        }

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.losses.append(loss_value(outputs))
        self.step_ends.append(time.perf_counter())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        device = pl_module.device
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        self.record.update(
            end_step=int(trainer.global_step),
            losses=self.losses,
            step_ends=[t - self.record["start_time"] for t in self.step_ends],
            peak_memory_bytes=peak,
        )
        if trainer.is_global_zero:
            out = Path(trainer.default_root_dir) / PROBE_FILE
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(self.record, indent=1))
