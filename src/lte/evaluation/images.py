"""Test images prepared ahead of the model: read, LR made, inputs built, in DataLoader workers.

Preparing an image (reading PNGs, PIL bicubic for the LR, tensors, SwinIR's padding) costs as much
as a small model's prediction, and it needs no model, so ``eval.workers`` processes do it while the
model runs. Item ``i`` depends only on ``i`` and the files, and the loop takes items in order, so
the records never depend on how many workers there are.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from lte.data.images import to_tensor
from lte.errors import UserError
from lte.testsets import TestSet


def auto_workers(device: torch.device | str) -> int:
    """``eval.workers=null``: how many processes prepare images for a run on ``device``.

    On CUDA the model leaves the CPU idle: up to 4 workers (half the cores) keep it fed. On CPU
    the model's threads already use every core, so one worker, which prepares the next image
    during the model's serial stretches, pays only where there are cores to spare (4 or more);
    with fewer, images are prepared in the main process.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    if torch.device(device).type == "cuda":
        return max(1, min(4, cores // 2))
    return 1 if cores >= 4 else 0


class Prepared(NamedTuple):
    """One test image at one scale, ready to score (made by :class:`PreparedImages`).

    ``inp`` is the method's input (its ``preparer`` of the 8-bit LR), ``gt`` the cropped HR as
    ``(1, 3, H, W)`` in [0, 1]; ``times`` the seconds of each preparation stage. ``error`` is the
    one-line message of a :class:`UserError` met while preparing (raised again in the main process,
    in order, so it reads the same whatever ``eval.workers`` is).
    """

    name: str
    inp: Any
    gt: Tensor | None
    times: dict[str, float]
    error: str | None = None


class PreparedImages(torch.utils.data.Dataset):
    """Every (scale, image) of a test set in the order they are scored: scale-major, file names
    sorted. ``prepare`` turns an 8-bit LR into the method's input (light and picklable: it runs in
    the workers)."""

    def __init__(
        self,
        testset: TestSet,
        scales: Sequence[float],
        prepare: Callable[[np.ndarray], Any],
        *,
        files: Sequence[Path] | None = None,
    ) -> None:
        self.testset = testset
        self.scales = tuple(scales)
        self.files = testset.hr_files() if files is None else list(files)
        self.lr_dirs = [testset.lr_folder(s) for s in self.scales]
        self.prepare = prepare

    def __len__(self) -> int:
        return len(self.scales) * len(self.files)

    def __getitem__(self, index: int) -> Prepared:
        si, fi = divmod(index, len(self.files))
        times: dict[str, float] = {}
        try:
            pair = self.testset.pair(self.files[fi], self.scales[si], self.lr_dirs[si], times)
        except UserError as err:
            return Prepared(str(self.files[fi]), None, None, {}, str(err))
        t0 = time.perf_counter()
        gt = to_tensor(pair.hr).unsqueeze(0)
        inp = self.prepare(pair.lr)
        times["tensors"] = time.perf_counter() - t0
        return Prepared(pair.name, inp, gt, times)


def _as_is(item: Prepared) -> Prepared:
    """DataLoader ``collate_fn``: items are single images, passed on untouched."""
    return item


def prepared_images(
    dataset: PreparedImages, workers: int, device: torch.device
) -> Generator[Prepared, None, None]:
    """``dataset``'s items in order, made by ``workers`` processes ahead of the model (0: lazily in
    the main process). Tensors come back through shared memory, pinned when bound for CUDA.

    A generator: closing it (``contextlib.closing``) stops the workers at once, even when an error
    leaves the caller's frame alive in a traceback.
    """
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        collate_fn=_as_is,
        pin_memory=device.type == "cuda",
    )
    it = iter(loader)
    try:
        yield from it
    finally:
        del it  # the last reference: the DataLoader iterator shuts its workers down
