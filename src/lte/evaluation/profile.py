"""Where an evaluation's wall time goes, stage by stage (``lte.test eval.profile=true``).

The loop charges every stretch of its work to a named stage through one object, a
:class:`StageProfile`; without profiling it gets :data:`NO_PROFILE`, whose methods return at once (no
clock read, no device synchronisation), so the loop reads the same either way.
"""

from __future__ import annotations

import time
from typing import Any

import torch

#: The stages of the loop, in order, with the label :meth:`StageProfile.table` prints. ``load``,
#: ``make_lr`` and ``tensors`` run in the DataLoader workers when there are any (the main process
#: then only waits, ``wait``, and moves tensors to the device, ``tensors``).
STAGES: dict[str, str] = {
    "load": "load images (HR, LR files)",
    "make_lr": "make LR (PIL bicubic)",
    "tensors": "tensors, normalise, pad, to device",
    "wait": "wait for prepared images",
    "model": "encode + query (model)",
    "denorm": "denormalise, clamp, crop",
    "psnr": "PSNR",
    "ssim": "SSIM",
    "results": "records, results file, W&B",
    "other": "other (loop, progress bar, logs)",
}
#: Stages that DataLoader workers run.
PREP_STAGES = ("load", "make_lr", "tensors")


class StageProfile:
    """A running clock split into :data:`STAGES`.

    :meth:`lap` gives the time since the previous lap to a stage, so the stages add up to
    :attr:`total` (first :meth:`start` to last lap) by construction and nothing is timed twice.
    Time that DataLoader workers spend preparing images is kept apart (:attr:`in_workers`): it
    overlaps the model and is not part of the wall time. On CUDA each lap synchronises the device
    so kernels are charged to the stage that launched them. Preparing an image reads the clock
    four times, well under a microsecond.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.in_workers: dict[str, float] = dict.fromkeys(PREP_STAGES, 0.0)
        self.workers = 0
        self.images = 0
        self._start: float | None = None
        self._last = 0.0

    def start(self, workers: int | None = None) -> None:
        """Start the clock (once: later calls keep it running, so one profile spans many sets);
        ``workers`` is the number of DataLoader processes of the evaluation now starting."""
        if self._start is None:
            self._start = self._last = time.perf_counter()
        if workers is not None:
            self.workers = workers

    def lap(self, stage: str) -> None:
        """Charge the time since the previous lap to ``stage``."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.seconds[stage] += now - self._last
        self._last = now

    def prepared(self, times: dict[str, float], in_main: bool) -> None:
        """Book one image's preparation ``times``: inside the ``wait`` just lapped when made in the
        main process (moved out of it), else in a worker."""
        self.images += 1
        for stage, seconds in times.items():
            if in_main:
                self.seconds[stage] += seconds
                self.seconds["wait"] -= seconds
            else:
                self.in_workers[stage] += seconds

    @property
    def total(self) -> float:
        """Wall seconds from :meth:`start` to the last :meth:`lap`."""
        return 0.0 if self._start is None else self._last - self._start

    @property
    def model_share(self) -> float:
        """Share of the wall time inside encode + query (the model)."""
        return self.seconds["model"] / self.total if self.total > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers: ``stages`` (seconds, summing to ``total``), ``in_workers``, ``total``,
        ``model_share``, ``workers`` and ``images``."""
        return {
            "stages": dict(self.seconds),
            "in_workers": dict(self.in_workers),
            "total": self.total,
            "model_share": self.model_share,
            "workers": self.workers,
            "images": self.images,
        }

    def table(self) -> str:
        """The split as text: one row per stage (seconds, share of the total), then the workers'
        overlapped time and the share inside encode + query."""
        total = self.total
        width = max(len(label) for label in STAGES.values())
        lines = [f"{'stage':<{width}}  {'seconds':>9}  {'share':>6}"]
        for stage, label in STAGES.items():
            sec = self.seconds[stage]
            share = 100 * sec / total if total > 0 else 0.0
            lines.append(f"{label:<{width}}  {sec:9.3f}  {share:5.1f}%")
        lines.append(f"{'total':<{width}}  {total:9.3f}  100.0%")
        if self.workers:
            done = ", ".join(f"{STAGES[k]} {v:.3f} s" for k, v in self.in_workers.items())
            lines.append(f"in {self.workers} worker(s), overlapped with the model: {done}")
        else:
            lines.append("workers: 0 (images prepared in the main process, eval.workers=0)")
        lines.append(
            f"inside encode + query: {100 * self.model_share:.1f}% of {total:.3f} s "
            f"({self.images} image-scales)"
        )
        return "\n".join(lines)


class _NoProfile(StageProfile):
    """The profile of a run that asked for none: every method returns at once, no clock is read."""

    def start(self, workers: int | None = None) -> None:
        pass

    def lap(self, stage: str) -> None:
        pass

    def prepared(self, times: dict[str, float], in_main: bool) -> None:
        pass


#: What the loop charges its stages to when no profile is asked for.
NO_PROFILE = _NoProfile()
