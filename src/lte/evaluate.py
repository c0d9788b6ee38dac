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

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lte.data.images import denormalize, normalize, to_tensor
from lte.errors import UserError
from lte.inference import DEFAULT_CHUNK, predict
from lte.metrics import psnr_protocol, shave_border, ssim_protocol
from lte.models.identity import labels
from lte.results import ResultRecord, format_scale
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
    """

    scales: tuple[float, ...]
    chunk: int = DEFAULT_CHUNK
    tile: int | None = 0
    fast: bool = False

    def __init__(
        self, scales: Any, chunk: Any = DEFAULT_CHUNK, tile: Any = 0, fast: Any = False
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
        object.__setattr__(self, "fast", fast)
        object.__setattr__(self, "chunk", chunk)
        object.__setattr__(self, "tile", 0 if fast else tile)


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
    """
    inp = normalize(lr)
    grid = out_hw
    if model.pad_multiple > 0:
        inp, _ = mirror_pad(inp, model.pad_multiple)
        hp, wp = inp.shape[-2:]
        grid = (round(scale * hp), round(scale * wp))
        tile = 0
    if fast:  # one decoder call for the whole grid: no chunks, no tiles
        chunk, tile = grid[0] * grid[1], 0
    # The one call into the model: predict sizes the cell from grid / LR and model.scale_max. For
    # the protocol's integer scales that is exactly the papers' 2/(s·h) · max(s / scale_max, 1).
    with torch.no_grad():
        pred = predict(model, inp, grid, chunk=chunk, tile=tile)
    return denormalize(pred[..., : out_hw[0], : out_hw[1]])


# --- scoring -----------------------------------------------------------------------------------


@dataclass
class ImageScore:
    """PSNR (dB) and SSIM of one image at one scale."""

    name: str
    psnr: float
    ssim: float


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
) -> ImageScore:
    """Super-resolve one ``(h, w, 3)`` uint8 LR to its (already cropped) HR and score it.

    ``model`` is a network or :data:`BICUBIC` (PIL bicubic of the same LR, scored the same way).

    Raises:
        UserError: the HR is too small to shave the protocol's border.
    """
    border = shave_border(scale, protocol)
    h, w = hr.shape[:2]
    if min(h, w) <= 2 * border:
        raise UserError(
            f"image '{name}' is {w}x{h} px at x{format_scale(scale)}: too small to shave "
            f"{border} px per border ({protocol} protocol); drop this scale or the image"
        )
    gt = to_tensor(hr).unsqueeze(0).to(device)  # (1, 3, H, W)
    if isinstance(model, BicubicBaseline):
        pred = model.upscale(lr, (h, w)).to(device)
    else:
        lr_t = to_tensor(lr).unsqueeze(0).to(device)  # (1, 3, h, w)
        pred = super_resolve(model, lr_t, (h, w), scale, chunk=chunk, tile=tile, fast=fast)
    p = float(psnr_protocol(pred, gt, scale, protocol)[0])
    if min(h, w) - 2 * border >= SSIM_WINDOW:
        s = float(ssim_protocol(pred, gt, scale, protocol)[0])
    else:
        s = math.nan
    return ImageScore(name, p, s)


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
    progress: bool | None = False,
) -> list[ResultRecord]:
    """Score ``model`` on every image of ``testset`` at every scale; one record per scale.

    ``model`` is a network or :data:`BICUBIC` (the bicubic row, same protocol). ``scales`` is a
    list of scales (checked, with ``chunk`` and ``tile``, as :class:`EvalSettings`) or an
    :class:`EvalSettings`, whose ``chunk`` and ``tile`` then win. The records' ``model`` and
    ``encoder`` are the model's own labels (:func:`lte.models.identity.labels`), never config names;
    ``ckpt`` is stored as given. A scale uses the shipped LR images when the test set has them and
    PIL bicubic LR otherwise (logged once per scale). ``on_image`` is called after every image
    (per-image logs). ``progress`` draws a tqdm bar per scale on stderr (images done, rate, ETA):
    ``True`` always, ``False`` never, ``None`` only when stderr is a terminal.

    Raises:
        UserError: a bad setting, a missing test-set folder, an LR file missing or of the wrong
            size (named).
    """
    from tqdm.auto import tqdm

    settings = scales if isinstance(scales, EvalSettings) else EvalSettings(scales, chunk, tile)
    check_native_scale(model, settings.scales, ckpt)
    n_images = len(testset.hr_files())  # a missing folder fails before the model moves anywhere
    model_name, encoder_name = method_labels(model)
    if not isinstance(model, BicubicBaseline):
        model = model.to(device).eval()
    records = []
    for s in settings.scales:
        scores: list[ImageScore] = []
        bar = tqdm(
            total=n_images,
            desc=f"{testset.name} x{format_scale(s)}",
            unit="img",
            disable=None if progress is None else not progress,
            leave=False,
        )
        with bar:
            for name, lr, hr in testset.pairs(s):
                score = score_image(
                    model,
                    lr,
                    hr,
                    s,
                    testset.protocol,
                    chunk=settings.chunk,
                    tile=settings.tile,
                    fast=settings.fast,
                    device=device,
                    name=name,
                )
                scores.append(score)
                bar.set_postfix_str(f"PSNR {np.mean([x.psnr for x in scores]):.2f}", refresh=False)
                bar.update()
                if on_image is not None:
                    on_image(s, score)
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
    return records
