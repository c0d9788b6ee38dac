"""The papers' test protocol as library functions: full-image prediction, PSNR/SSIM, the loop.

``python -m lte.test`` (:mod:`lte.cli.test`) is a thin Hydra shell around :func:`evaluate_testset`;
notebooks and scripts call the same functions and get the same numbers. Test sets and their LR/HR
pairs are in :mod:`lte.testsets`, results files in :mod:`lte.results`. Each step follows the
LIIF/LTE test code as SPEC.md describes it (see ``docs/evaluation.md``):

1. LR/HR pairs from the test set (:meth:`lte.testsets.TestSet.pairs`).
2. Queries at every HR pixel centre, cell ``(2/H, 2/W) · max(s / scale_max, 1)`` with the model's
   own ``scale_max``; SwinIR-style encoders get their LR mirror-padded to a multiple of the window
   and the prediction cropped back.
3. Prediction denormalised and clamped (never rounded to 8 bits); PSNR and SSIM per image on Y with
   ``s`` px shaved (``benchmark``) or on RGB with ``s + 6`` shaved (``div2k``); plain mean over images.

:data:`BICUBIC` stands in for a model to give every table its reference row: PIL bicubic upscaling of
the very same LR images, scored by the very same code (``lte.test baseline=bicubic``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from lte.data.images import denormalize, normalize, to_tensor
from lte.errors import UserError
from lte.inference import DEFAULT_CHUNK, check_backend, kernel_for_backend, predict
from lte.metrics import psnr_protocol, shave_border, ssim_protocol
from lte.models.decoders import Kernel
from lte.models.identity import labels
from lte.results import ResultRecord
from lte.scales import format_scale
from lte.testsets import TestSet

log = logging.getLogger(__name__)

#: SSIM's Gaussian window: images smaller than this after shaving get no SSIM (NaN).
SSIM_WINDOW = 11


# --- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalSettings:
    """What an evaluation run may vary without changing the protocol, validated in one place.

    Built from ``lte.test``'s ``scales`` and ``eval.*`` before the checkpoint is loaded, and by
    :func:`evaluate_testset` for library callers, so a bad value fails before any slow work; the
    messages name the ``lte.test`` options.

    Args:
        scales: the scales to score, numbers >= 1 (fractional ones too).
        chunk: queries per decoder call; bounds memory, never changes a result.
        tile: LR tile side for the encoder: ``0`` the whole image (the papers), ``None`` picked
            from free memory; SwinIR is never tiled.
        fast: LTE+'s "fast" evaluation: the whole image encoded at once and the whole HR grid
            queried in one decoder call (``chunk`` unused). Same results, memory grows with H·W.
        workers: processes that prepare images (read, make the LR, tensors) while the model runs:
            ``0`` in the main process, ``None`` automatic (:func:`auto_workers`). Never changes a
            result: images are prepared the same way in any process and scored in order.
        backend: ``eager`` (the decoder's fast kernel) or ``compile`` (its compiled kernel), via
            :func:`lte.inference.kernel_for_backend`.
        profile: time every stage of the loop (:class:`StageProfile`) and log the split.
    """

    scales: tuple[float, ...]
    chunk: int = DEFAULT_CHUNK
    tile: int | None = 0
    fast: bool = False
    workers: int | None = 0
    backend: str = "eager"
    profile: bool = False

    def __init__(
        self,
        scales: Any,
        chunk: Any = DEFAULT_CHUNK,
        tile: Any = 0,
        fast: Any = False,
        workers: Any = 0,
        backend: Any = "eager",
        profile: Any = False,
    ) -> None:
        object.__setattr__(self, "scales", _check_scales(scales))
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk <= 0:
            raise UserError(
                f"eval.chunk={chunk} must be a positive whole number of queries per decoder call, "
                "e.g. 30000"
            )
        if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 0):
            raise UserError(
                f"eval.tile={tile} must be 0 (whole image), null (automatic) or a tile side > 0"
            )
        if not isinstance(fast, bool):
            raise UserError(f"eval.fast={fast} must be true or false")
        if fast and tile:
            raise UserError(
                f"eval.fast=true queries the whole image in one call and cannot tile it: drop "
                f"eval.tile={tile} (or set eval.tile=0)"
            )
        if isinstance(workers, str) and workers.lower() in ("auto", "null", "none"):
            workers = None
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 0
        ):
            raise UserError(
                f"eval.workers={workers} must be a whole number >= 0 of processes preparing "
                "images (0: in the main process) or null (automatic)"
            )
        check_backend(backend, "eval.backend=")
        if not isinstance(profile, bool):
            raise UserError(f"eval.profile={profile} must be true or false")
        object.__setattr__(self, "fast", fast)
        object.__setattr__(self, "chunk", chunk)
        object.__setattr__(self, "tile", 0 if fast else tile)
        object.__setattr__(self, "workers", workers)
        object.__setattr__(self, "backend", backend)
        object.__setattr__(self, "profile", profile)


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


def _check_scales(value: Any) -> tuple[float, ...]:
    """``scales`` as floats >= 1; a single number is one scale."""
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        value = [value]
    out = []
    for item in value:
        if isinstance(item, bool):
            item = str(item)
        try:
            s = float(item)
        except (TypeError, ValueError):
            raise UserError(
                f"scales: '{item}' is not a number; write e.g. scales=[2,3,4]"
            ) from None
        if not math.isfinite(s) or s < 1:
            raise UserError(f"scales: {item} is not a scale >= 1; write e.g. scales=[2,3,4]")
        out.append(s)
    if not out:
        raise UserError("scales is empty: pass e.g. scales=[2,3,4]")
    return tuple(out)


# --- prediction --------------------------------------------------------------------------------


def mirror_pad(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Pad ``(B, C, h, w)`` bottom/right by symmetric mirroring to the next multiple, 1..``multiple`` px.

    Follows the reference test code: ``pad = (h // m + 1) · m - h`` (a full ``m`` when ``h`` is
    already a multiple), and the padding continues the image's mirror image with the edge pixel
    repeated (``… a b c | c b a …``), i.e. ``cat([x, flip(x)])`` then cut. Returns the padded tensor
    and ``(h_pad, w_pad)``.
    """
    h, w = x.shape[-2:]
    h_pad = (h // multiple + 1) * multiple - h
    w_pad = (w // multiple + 1) * multiple - w
    # Index form of cat([x, flip(x)]) repeated, so even an image smaller than the pad works.
    rows = torch.arange(h + h_pad, device=x.device) % (2 * h)
    rows = torch.where(rows < h, rows, 2 * h - 1 - rows)
    cols = torch.arange(w + w_pad, device=x.device) % (2 * w)
    cols = torch.where(cols < w, cols, 2 * w - 1 - cols)
    return x.index_select(-2, rows).index_select(-1, cols), (h_pad, w_pad)


class BicubicBaseline:
    """The bicubic reference row: the LR upscaled with PIL's bicubic to the HR size, nothing learnt.

    Every table in the field has this row; it shares the protocol with the models (same LR, same
    crop, same shave, same metric) because it goes through the same :func:`score_image`. PIL works
    on the 8-bit LR and returns 8-bit pixels, the usual way the row is made.
    """

    #: Labels in results files and tables (``lte.compare`` shows the row as ``bicubic``).
    model_name = "bicubic"
    encoder_name = "none"
    #: Any scale works (``SRModel.native_scale`` of an arbitrary-scale model is ``None`` too).
    native_scale = None

    def __repr__(self) -> str:
        return "BicubicBaseline()"

    def upscale(self, lr: np.ndarray, out_hw: tuple[int, int]) -> Tensor:
        """``(h, w, 3)`` uint8 LR -> ``(1, 3, H, W)`` float in [0, 1] by PIL bicubic."""
        from PIL import Image

        up = Image.fromarray(lr).resize((out_hw[1], out_hw[0]), Image.Resampling.BICUBIC)
        return to_tensor(np.asarray(up)).unsqueeze(0)


#: The one bicubic baseline (it has no state).
BICUBIC = BicubicBaseline()

#: What can be scored: a network (:class:`lte.models.SRModel`) or the bicubic baseline.
Method = nn.Module | BicubicBaseline


def method_labels(model: Method) -> tuple[str, str]:
    """``(model, encoder)`` labels of what is scored: the network's own, or ``bicubic`` / ``none``."""
    if isinstance(model, BicubicBaseline):
        return model.model_name, model.encoder_name
    return labels(model.describe())


def super_resolve(
    model: nn.Module,
    lr: Tensor,
    out_hw: tuple[int, int],
    scale: float,
    *,
    chunk: int = DEFAULT_CHUNK,
    tile: int | None = 0,
    fast: bool = False,
    kernel: Kernel | None = None,
) -> Tensor:
    """Predict the ``out_hw`` HR image of ``lr`` (``(B, 3, h, w)`` in [0, 1]) as the test protocol does.

    Returns ``(B, 3, H, W)`` in [0, 1], clamped, not rounded. The cell is ``(2/H, 2/W)`` times
    ``max(s / model.scale_max, 1)``. An encoder with ``pad_multiple > 0`` (SwinIR's window) sees its
    LR mirror-padded (:func:`mirror_pad`); the padded image is queried on its own
    ``round(s·h_p) × round(s·w_p)`` grid (cell ``2 / grid``, i.e. ``2 / (h_p·s)`` for integer s) and
    the top-left ``H × W`` kept,
    so the border pixels are predicted from real content rather than from the encoder's own padding.
    Queries go to the decoder ``chunk`` at a time (:func:`lte.inference.predict`).

    ``tile`` is the LR tile side for encoding (``0``: the whole image, as the papers do; ``None``:
    picked from free memory). Tiles agree with the whole image to float round-off for convolutional
    encoders; SwinIR's attention sees the whole padded image in the protocol, so it is never tiled.
    ``fast`` (LTE+'s evaluation) encodes the whole image and queries the whole grid in one call.
    ``kernel`` is the decoder kernel (:func:`lte.inference.kernel_for_backend`); ``None`` is the
    model's inference kernel.
    """
    inp = model_input(lr, model.pad_multiple)
    pred = predict_padded(
        model, inp, out_hw, scale, chunk=chunk, tile=tile, fast=fast, kernel=kernel
    )
    return denormalize(pred[..., : out_hw[0], : out_hw[1]])


def model_input(lr: Tensor, pad_multiple: int) -> Tensor:
    """The network's input for an LR in [0, 1]: normalised, mirror-padded when the encoder asks.

    Exact arithmetic on any device (one subtraction and a division by 0.5, an index copy), so
    DataLoader workers can make it on the CPU and the model sees the same bits.
    """
    inp = normalize(lr)
    if pad_multiple > 0:
        inp, _ = mirror_pad(inp, pad_multiple)
    return inp


def predict_padded(
    model: nn.Module,
    inp: Tensor,
    out_hw: tuple[int, int],
    scale: float,
    *,
    chunk: int = DEFAULT_CHUNK,
    tile: int | None = 0,
    fast: bool = False,
    kernel: Kernel | None = None,
) -> Tensor:
    """The model's part of :func:`super_resolve`: ``inp`` from :func:`model_input` to the normalised,
    uncropped prediction (SwinIR: the padded image's grid; crop to ``out_hw`` afterwards)."""
    grid = out_hw
    if model.pad_multiple > 0:
        hp, wp = inp.shape[-2:]
        grid = (round(scale * hp), round(scale * wp))
        tile = 0
    if fast:  # one decoder call for the whole grid: no chunks, no tiles
        chunk, tile = grid[0] * grid[1], 0
    # The one call into the model: predict sizes the cell from grid / LR and model.scale_max. For
    # the protocol's integer scales that is exactly the papers' 2/(s·h) · max(s / scale_max, 1).
    with torch.no_grad():
        return predict(model, inp, grid, chunk=chunk, tile=tile, kernel=kernel)


# --- profiling ---------------------------------------------------------------------------------

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
    """Where an evaluation's wall time goes, stage by stage (``lte.test eval.profile=true``).

    A running clock: :meth:`lap` gives the time since the previous lap to a stage, so the stages
    add up to :attr:`total` (first :meth:`start` to last lap) by construction and nothing is timed
    twice. Time that DataLoader workers spend preparing images is kept apart
    (:attr:`in_workers`): it overlaps the model and is not part of the wall time. On CUDA each lap
    synchronises the device so kernels are charged to the stage that launched them. Only built
    when asked for; without it every lap is a no-op (:data:`NO_PROFILE`): no clock, no device
    synchronisation (preparing an image reads the clock four times, well under a microsecond).
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.in_workers: dict[str, float] = dict.fromkeys(PREP_STAGES, 0.0)
        self.workers = 0
        self.images = 0
        self._start: float | None = None
        self._last = 0.0

    def start(self) -> None:
        """Start the clock (once: later calls keep it running, so one profile spans many sets)."""
        if self._start is None:
            self._start = self._last = time.perf_counter()

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

    def start(self) -> None:
        pass

    def lap(self, stage: str) -> None:
        pass

    def prepared(self, times: dict[str, float], in_main: bool) -> None:
        pass


#: Used when profiling is off.
NO_PROFILE = _NoProfile()


# --- preparing images (DataLoader) -------------------------------------------------------------


class Prepared(NamedTuple):
    """One test image at one scale, ready to score (made by :class:`PreparedImages`).

    ``inp`` is the model's input (:func:`model_input`), ``gt`` the cropped HR as ``(1, 3, H, W)``
    in [0, 1]; ``lr`` the 8-bit LR, kept only for the bicubic baseline. ``error`` is the one-line
    message of a :class:`UserError` met while preparing (raised again in the main process, in
    order, so it reads the same whatever ``eval.workers`` is).
    """

    name: str
    lr: np.ndarray | None
    inp: Tensor | None
    gt: Tensor | None
    times: dict[str, float]
    error: str | None = None


class PreparedImages(torch.utils.data.Dataset):
    """Every (scale, image) of a test set in the order they are scored: scale-major, file names
    sorted. Item ``i`` depends only on ``i`` and the files, so any number of DataLoader workers
    produce the same tensors in the same order as the main process would.
    """

    def __init__(
        self,
        testset: TestSet,
        scales: Sequence[float],
        *,
        pad_multiple: int = 0,
        keep_lr: bool = False,
        files: Sequence[Path] | None = None,
    ) -> None:
        self.testset = testset
        self.scales = tuple(scales)
        self.files = testset.hr_files() if files is None else list(files)
        self.lr_dirs = [testset.lr_folder(s) for s in self.scales]
        self.pad_multiple = pad_multiple
        self.keep_lr = keep_lr

    def __len__(self) -> int:
        return len(self.scales) * len(self.files)

    def __getitem__(self, index: int) -> Prepared:
        si, fi = divmod(index, len(self.files))
        times: dict[str, float] = {}
        try:
            pair = self.testset.pair(self.files[fi], self.scales[si], self.lr_dirs[si], times)
        except UserError as err:
            return Prepared(str(self.files[fi]), None, None, None, {}, str(err))
        t0 = time.perf_counter()
        gt = to_tensor(pair.hr).unsqueeze(0)
        inp = None
        if not self.keep_lr:
            inp = model_input(to_tensor(pair.lr).unsqueeze(0), self.pad_multiple)
        times["tensors"] = time.perf_counter() - t0
        return Prepared(pair.name, pair.lr if self.keep_lr else None, inp, gt, times)


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


# --- scoring -----------------------------------------------------------------------------------


@dataclass
class ImageScore:
    """PSNR (dB) and SSIM of one image at one scale."""

    name: str
    psnr: float
    ssim: float


def _check_border(name: str, hw: tuple[int, int], scale: float, protocol: str) -> None:
    border = shave_border(scale, protocol)  # type: ignore[arg-type]
    h, w = hw
    if min(h, w) <= 2 * border:
        raise UserError(
            f"image '{name}' is {w}x{h} px at x{format_scale(scale)}: too small to shave "
            f"{border} px per border ({protocol} protocol); drop this scale or the image"
        )


def score_image(
    model: Method,
    lr: np.ndarray,
    hr: np.ndarray,
    scale: float,
    protocol: str,
    *,
    chunk: int = DEFAULT_CHUNK,
    tile: int | None = 0,
    fast: bool = False,
    device: torch.device | str = "cpu",
    name: str = "image",
    kernel: Kernel | None = None,
) -> ImageScore:
    """Super-resolve one ``(h, w, 3)`` uint8 LR to its (already cropped) HR and score it.

    ``model`` is a network or :data:`BICUBIC` (PIL bicubic of the same LR, scored the same way).

    Raises:
        UserError: the HR is too small to shave the protocol's border.
    """
    bicubic = isinstance(model, BicubicBaseline)
    item = Prepared(
        name,
        lr if bicubic else None,
        None if bicubic else model_input(to_tensor(lr).unsqueeze(0), model.pad_multiple),
        to_tensor(hr).unsqueeze(0),
        {},
    )
    return _score(model, item, scale, protocol, chunk, tile, fast, kernel, device, NO_PROFILE)


def _score(
    model: Method,
    item: Prepared,
    scale: float,
    protocol: str,
    chunk: int,
    tile: int | None,
    fast: bool,
    kernel: Kernel | None,
    device: torch.device | str,
    prof: StageProfile,
) -> ImageScore:
    """Score one prepared image; each stage is charged to ``prof``."""
    assert item.gt is not None
    h, w = item.gt.shape[-2:]
    _check_border(item.name, (h, w), scale, protocol)
    gt = item.gt.to(device, non_blocking=True)
    if isinstance(model, BicubicBaseline):
        assert item.lr is not None
        prof.lap("tensors")
        pred = model.upscale(item.lr, (h, w)).to(device)
        prof.lap("model")
    else:
        assert item.inp is not None
        inp = item.inp.to(device, non_blocking=True)
        prof.lap("tensors")
        out = predict_padded(
            model, inp, (h, w), scale, chunk=chunk, tile=tile, fast=fast, kernel=kernel
        )
        prof.lap("model")
        pred = denormalize(out[..., :h, :w])
        prof.lap("denorm")
    p = float(psnr_protocol(pred, gt, scale, protocol)[0])  # type: ignore[arg-type]
    prof.lap("psnr")
    if min(h, w) - 2 * shave_border(scale, protocol) >= SSIM_WINDOW:  # type: ignore[arg-type]
        s = float(ssim_protocol(pred, gt, scale, protocol)[0])  # type: ignore[arg-type]
    else:
        s = math.nan
    prof.lap("ssim")
    return ImageScore(item.name, p, s)


def check_native_scale(model: nn.Module, scales: Sequence[float], ckpt: str = "") -> None:
    """A fixed-scale model (``model.native_scale`` set) is scored only at its own scale.

    Raises:
        UserError: one line naming the first other scale and the model's native scale.
    """
    if getattr(model, "native_scale", None) is None:
        return
    what = f"checkpoint '{ckpt}'" if ckpt else "the model"
    for s in scales:
        model.check_scale(s, "scales", f"scales=[{model.native_scale}]", what)


# --- a whole test set --------------------------------------------------------------------------


def evaluate_testset(
    model: Method,
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

    ``model`` is a network or :data:`BICUBIC` (the bicubic row, same protocol). ``scales`` is a
    list of scales (checked, with ``chunk`` and ``tile``, as :class:`EvalSettings`) or an
    :class:`EvalSettings`, whose ``chunk``, ``tile``, ``fast``, ``workers``, ``backend`` and
    ``profile`` then win. The records' ``model`` and
    ``encoder`` are the model's own labels (:func:`lte.models.identity.labels`), never config names;
    ``ckpt`` is stored as given. A scale uses the shipped LR images when the test set has them and
    PIL bicubic LR otherwise (logged once per scale). ``on_image`` is called after every image
    (per-image logs), ``on_record`` with each scale's record as soon as it is complete (so a caller
    can save it before the next scale starts: ``lte.test`` merges it into the results file). ``progress`` draws a tqdm bar per scale on stderr (images done, rate, ETA):
    ``True`` always, ``False`` never, ``None`` only when stderr is a terminal.

    Images are prepared (read, LR made, tensors) by ``settings.workers`` DataLoader processes
    while the model runs, and scored in file order: the records do not depend on ``workers``.
    ``profile`` collects the time of every stage (:class:`StageProfile`; it keeps running across
    calls); with ``settings.profile`` and no ``profile`` given, the split is logged at the end.

    Raises:
        UserError: a bad setting, a missing test-set folder, an image too small for a scale, an LR
            file missing or of the wrong size (named).
    """
    settings = scales if isinstance(scales, EvalSettings) else EvalSettings(scales, chunk, tile)
    check_native_scale(model, settings.scales, ckpt)
    files = testset.hr_files()  # a missing folder fails before the model moves anywhere
    testset.check_scales(settings.scales, files)
    device = torch.device(device)
    bicubic = isinstance(model, BicubicBaseline)
    kernel: Kernel | None = None
    if not isinstance(model, BicubicBaseline):
        model = model.to(device).eval()
        kernel = kernel_for_backend(model, settings.backend, option="eval.backend=")
    own_profile = profile is None and settings.profile
    prof = StageProfile(device) if own_profile else (profile or NO_PROFILE)
    prof.start()
    workers = auto_workers(device) if settings.workers is None else settings.workers
    if prof is not NO_PROFILE:
        prof.workers = workers
    dataset = PreparedImages(
        testset,
        settings.scales,
        pad_multiple=0 if isinstance(model, BicubicBaseline) else model.pad_multiple,
        keep_lr=bicubic,
        files=files,
    )
    with contextlib.closing(prepared_images(dataset, workers, device)) as items:
        records = _score_all(
            model,
            testset,
            settings,
            items,
            len(files),
            workers,
            kernel,
            device,
            prof,
            ckpt,
            on_image,
            on_record,
            progress,
        )
    if own_profile:
        log.info("%s: where the time went\n%s", testset.name, prof.table())
    return records


def _score_all(
    model: Method,
    testset: TestSet,
    settings: EvalSettings,
    items: Iterator[Prepared],
    n_images: int,
    workers: int,
    kernel: Kernel | None,
    device: torch.device,
    prof: StageProfile,
    ckpt: str,
    on_image: Callable[[float, ImageScore], None] | None,
    on_record: Callable[[ResultRecord], None] | None,
    progress: bool | None,
) -> list[ResultRecord]:
    """The loop of :func:`evaluate_testset` over prepared images: one record per scale."""
    from tqdm.auto import tqdm

    model_name, encoder_name = method_labels(model)
    records = []
    prof.lap("other")
    for s in settings.scales:
        testset.lr_source(s)  # says (once) where this scale's LR comes from
        scores: list[ImageScore] = []
        bar = tqdm(
            total=n_images,
            desc=f"{testset.name} x{format_scale(s)}",
            unit="img",
            disable=None if progress is None else not progress,
            leave=False,
        )
        with bar:
            for _ in range(n_images):
                prof.lap("other")
                item = next(items)
                prof.lap("wait")
                prof.prepared(item.times, in_main=workers == 0)
                if item.error is not None:
                    raise UserError(item.error)
                score = _score(
                    model,
                    item,
                    s,
                    testset.protocol,
                    settings.chunk,
                    settings.tile,
                    settings.fast,
                    kernel,
                    device,
                    prof,
                )
                scores.append(score)
                bar.set_postfix_str(f"PSNR {np.mean([x.psnr for x in scores]):.2f}", refresh=False)
                bar.update()
                if on_image is not None:
                    on_image(s, score)
        prof.lap("other")
        ssims = [x.ssim for x in scores]
        records.append(
            ResultRecord(
                testset=testset.name,
                scale=float(s),
                protocol=testset.protocol,
                psnr=float(np.mean([x.psnr for x in scores])),
                ssim=None if any(math.isnan(v) for v in ssims) else float(np.mean(ssims)),
                images=len(scores),
                model=model_name,
                encoder=encoder_name,
                ckpt=ckpt,
                per_image=scores,
            )
        )
        if on_record is not None:
            on_record(records[-1])
        prof.lap("results")
    return records
