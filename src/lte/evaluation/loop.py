"""A whole test set at every scale: one record per scale, handed over as soon as it is complete.

The loop only orders the work: images come prepared from :mod:`lte.evaluation.images`, a
:class:`~lte.evaluation.methods.Method` predicts, :mod:`lte.evaluation.protocol` scores, and every
stretch is charged to a profile stage (:mod:`lte.evaluation.profile`; a no-op unless asked for).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lte.data.images import to_tensor
from lte.errors import UserError
from lte.evaluation.images import Prepared, PreparedImages, auto_workers, prepared_images
from lte.evaluation.methods import Method, as_method
from lte.evaluation.profile import NO_PROFILE, StageProfile
from lte.evaluation.protocol import ImageScore
from lte.evaluation.settings import EvalSettings
from lte.fixed_scale import check_scales
from lte.inference import DEFAULT_CHUNK
from lte.results import ResultRecord
from lte.scales import format_scale
from lte.testsets import TestSet

log = logging.getLogger(__name__)


def evaluate_testset(
    model: nn.Module | Method,
    testset: TestSet,
    scales: Sequence[float] | EvalSettings,
    *,
    chunk: int = DEFAULT_CHUNK,
    tile: int | None = 0,
    device: torch.device | str = "cpu",
    ckpt: str = "",
    on_image: Callable[[float, ImageScore], None] | None = None,
    on_record: Callable[[ResultRecord], None] | None = None,
    progress: bool | None = False,
    profile: StageProfile | None = None,
) -> list[ResultRecord]:
    """Score ``model`` on every image of ``testset`` at every scale; one record per scale.

    ``model`` is a network (:class:`lte.models.SRModel`) or a :class:`Method` such as
    :data:`~lte.evaluation.methods.BICUBIC` (the bicubic row, same protocol). ``scales`` is a list
    of scales (checked, with ``chunk`` and ``tile``, as :class:`EvalSettings`) or an
    :class:`EvalSettings`, which then wins whole. The records' ``model`` and ``encoder`` are the
    method's own labels, ``native_scale`` its native scale; ``ckpt`` is stored as given. A scale
    uses the shipped LR images when the test set has them and PIL bicubic LR otherwise (logged once
    per scale). ``on_image`` is called after every image, ``on_record`` with each scale's record as
    soon as it is complete (``lte.test`` merges it into the results file before the next scale
    starts). ``progress`` draws a tqdm bar per scale on stderr: ``True`` always, ``False`` never,
    ``None`` only when stderr is a terminal.

    Images are prepared by ``settings.workers`` DataLoader processes while the model runs, and
    scored in file order: the records do not depend on ``workers``. ``profile`` collects the time of
    every stage (it keeps running across calls); with ``settings.profile`` and no ``profile`` given,
    the split is logged at the end.

    Raises:
        UserError: a bad setting, a scale a fixed-scale model does not make, a missing test-set
            folder, an image too small for a scale, an LR file missing or of the wrong size (named).
    """
    settings = scales if isinstance(scales, EvalSettings) else EvalSettings(scales, chunk, tile)
    method = as_method(model)
    check_scales(
        method.native_scale, settings.scales, what=f"checkpoint '{ckpt}'" if ckpt else "the model"
    )
    files = testset.hr_files()  # a missing folder fails before the model moves anywhere
    testset.check_scales(settings.scales, files)
    device = torch.device(device)
    method = method.ready(settings, device)
    own_profile = profile is None and settings.profile
    prof = StageProfile(device) if own_profile else (profile or NO_PROFILE)
    workers = auto_workers(device) if settings.workers is None else settings.workers
    prof.start(workers)
    dataset = PreparedImages(testset, settings.scales, method.preparer, files=files)
    with contextlib.closing(prepared_images(dataset, workers, device)) as items:
        run = _Run(method, testset, items, len(files), workers == 0, prof, on_image, progress)
        prof.lap("other")
        records = []
        for s in settings.scales:
            records.append(run.record(s, ckpt))
            if on_record is not None:
                on_record(records[-1])
            prof.lap("results")
    if own_profile:
        log.info("%s: where the time went\n%s", testset.name, prof.table())
    return records


def score_image(
    model: nn.Module | Method,
    lr: np.ndarray,
    hr: np.ndarray,
    scale: float,
    protocol: str,
    *,
    settings: EvalSettings | None = None,
    device: torch.device | str = "cpu",
    name: str = "image",
) -> ImageScore:
    """Super-resolve one ``(h, w, 3)`` uint8 LR to its (already cropped) HR and score it, as
    :func:`evaluate_testset` scores each image (``settings`` default: the papers' protocol).

    Raises:
        UserError: the HR is too small to shave the protocol's border.
    """
    method = as_method(model).ready(settings or EvalSettings(scale), torch.device(device))
    item = Prepared(name, method.preparer(lr), to_tensor(hr).unsqueeze(0), {})
    return method.score(item, scale, protocol)


@dataclass
class _Run:
    """One :func:`evaluate_testset` call as its steps see it: what stays fixed while it runs."""

    method: Method
    testset: TestSet
    items: Iterator[Prepared]
    n_images: int
    in_main: bool  # images prepared in this process (eval.workers=0)
    prof: StageProfile
    on_image: Callable[[float, ImageScore], None] | None
    progress: bool | None

    def record(self, scale: float, ckpt: str) -> ResultRecord:
        """Score every image at ``scale``; the record of their mean PSNR and SSIM."""
        scores = self.scores(scale)
        self.prof.lap("other")
        ssims = [x.ssim for x in scores]
        return ResultRecord(
            testset=self.testset.name,
            scale=float(scale),
            protocol=self.testset.protocol,
            psnr=float(np.mean([x.psnr for x in scores])),
            ssim=None if any(math.isnan(v) for v in ssims) else float(np.mean(ssims)),
            images=len(scores),
            model=self.method.model_name,
            encoder=self.method.encoder_name,
            ckpt=ckpt,
            native_scale=self.method.native_scale,
            per_image=scores,
        )

    def scores(self, scale: float) -> list[ImageScore]:
        """Every image at ``scale``, taken in order from the prepared items, under a progress bar."""
        from tqdm.auto import tqdm

        self.testset.lr_source(scale)  # says (once) where this scale's LR comes from
        scores: list[ImageScore] = []
        bar = tqdm(
            total=self.n_images,
            desc=f"{self.testset.name} x{format_scale(scale)}",
            unit="img",
            disable=None if self.progress is None else not self.progress,
            leave=False,
        )
        with bar:
            for _ in range(self.n_images):
                self.prof.lap("other")
                item = next(self.items)
                self.prof.lap("wait")
                self.prof.prepared(item.times, in_main=self.in_main)
                if item.error is not None:
                    raise UserError(item.error)
                scores.append(self.method.score(item, scale, self.testset.protocol, self.prof))
                bar.set_postfix_str(f"PSNR {np.mean([x.psnr for x in scores]):.2f}", refresh=False)
                bar.update()
                if self.on_image is not None:
                    self.on_image(scale, scores[-1])
        return scores
