"""The papers' test protocol for one image: model input, prediction, and the shaved PSNR/SSIM.

Each step follows the LIIF/LTE test code as SPEC.md describes it (see ``docs/evaluation.md``):
queries at every HR pixel centre with the cell ``(2/H, 2/W) · max(s / scale_max, 1)`` of the
model's own ``scale_max``; SwinIR-style encoders get their LR mirror-padded to a multiple of the
window and the prediction cropped back; the prediction is denormalised and clamped (never rounded
to 8 bits); PSNR and SSIM on Y with ``s`` px shaved (``benchmark``) or on RGB with ``s + 6`` shaved
(``div2k``). Pure functions of their arguments: the loop (:mod:`lte.evaluation.loop`) and notebooks
call the same ones and get the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lte.data.images import denormalize, normalize
from lte.errors import UserError
from lte.inference import DEFAULT_CHUNK, predict
from lte.metrics import psnr_protocol, shave_border, ssim_protocol
from lte.models.decoders import Kernel
from lte.models.sr import SRModel
from lte.multiscale import CMSRTables
from lte.scales import format_scale

#: SSIM's Gaussian window: images smaller than this after shaving get no SSIM (NaN).
SSIM_WINDOW = 11


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
    model: SRModel,
    inp: Tensor,
    out_hw: tuple[int, int],
    scale: float,
    *,
    chunk: int = DEFAULT_CHUNK,
    tile: int | None = 0,
    fast: bool = False,
    kernel: Kernel | None = None,
    ensemble: int = 1,
    cmsr: CMSRTables | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """The model's part of :func:`super_resolve`: ``inp`` from :func:`model_input` to the normalised,
    uncropped prediction (SwinIR: the padded image's grid; crop to ``out_hw`` afterwards).

    ``ensemble`` (1, 4, 8) is :func:`lte.inference.predict`'s self-ensemble; a padded image is
    turned whole, padding included, so every view is predicted on the same padded grid. With
    ``cmsr`` an LMF model renders beyond its training scales at several (:mod:`lte.multiscale`).
    ``dtype`` is the decoder MLP's compute type (``None``: float32).
    """
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
        return predict(
            model,
            inp,
            grid,
            chunk=chunk,
            tile=tile,
            kernel=kernel,
            ensemble=ensemble,
            cmsr=cmsr,
            dtype=dtype,
        )


def super_resolve(
    model: SRModel,
    lr: Tensor,
    out_hw: tuple[int, int],
    scale: float,
    *,
    chunk: int = DEFAULT_CHUNK,
    tile: int | None = 0,
    fast: bool = False,
    kernel: Kernel | None = None,
    ensemble: int = 1,
) -> Tensor:
    """Predict the ``out_hw`` HR image of ``lr`` (``(B, 3, h, w)`` in [0, 1]) as the test protocol does.

    Returns ``(B, 3, H, W)`` in [0, 1], clamped, not rounded. The cell is ``(2/H, 2/W)`` times
    ``max(s / model.scale_max, 1)``. An encoder with ``pad_multiple > 0`` (SwinIR's window) sees its
    LR mirror-padded (:func:`mirror_pad`); the padded image is queried on its own
    ``round(s·h_p) × round(s·w_p)`` grid (cell ``2 / grid``, i.e. ``2 / (h_p·s)`` for integer s) and
    the top-left ``H × W`` kept, so the border pixels are predicted from real content rather than
    from the encoder's own padding. Queries go to the decoder ``chunk`` at a time
    (:func:`lte.inference.predict`).

    ``tile`` is the LR tile side for encoding (``0``: the whole image, as the papers do; ``None``:
    picked from free memory). Tiles agree with the whole image to float round-off for convolutional
    encoders; SwinIR's attention sees the whole padded image in the protocol, so it is never tiled.
    ``fast`` (LTE+'s evaluation) encodes the whole image and queries the whole grid in one call.
    ``kernel`` is the decoder kernel (from a backend: :func:`lte.inference.kernel_for_backend`);
    ``None`` is the model's inference kernel. ``ensemble`` averages over 4 or 8 dihedral views
    (:func:`lte.inference.predict`).
    """
    inp = model_input(lr, model.pad_multiple)
    pred = predict_padded(
        model,
        inp,
        out_hw,
        scale,
        chunk=chunk,
        tile=tile,
        fast=fast,
        kernel=kernel,
        ensemble=ensemble,
    )
    return denormalize(pred[..., : out_hw[0], : out_hw[1]])


# --- scores ------------------------------------------------------------------------------------


@dataclass
class ImageScore:
    """PSNR (dB) and SSIM of one image at one scale."""

    name: str
    psnr: float
    ssim: float


def check_border(name: str, hw: tuple[int, int], scale: float, protocol: str) -> None:
    """Refuse an HR that the protocol's shave would leave empty.

    Raises:
        UserError: one line naming the image, its size, the scale and the border.
    """
    border = shave_border(scale, protocol)  # type: ignore[arg-type]
    h, w = hw
    if min(h, w) <= 2 * border:
        raise UserError(
            f"image '{name}' is {w}x{h} px at x{format_scale(scale)}: too small to shave "
            f"{border} px per border ({protocol} protocol); drop this scale or the image"
        )


def image_psnr(pred: Tensor, gt: Tensor, scale: float, protocol: str) -> float:
    """PSNR (dB) of one ``(1, 3, H, W)`` prediction in [0, 1] under ``protocol``."""
    return float(psnr_protocol(pred, gt, scale, protocol)[0])  # type: ignore[arg-type]


def image_ssim(pred: Tensor, gt: Tensor, scale: float, protocol: str) -> float:
    """SSIM of one prediction under ``protocol``; NaN when the shaved image is smaller than the
    SSIM window (:data:`SSIM_WINDOW`), so that a record then holds no SSIM rather than a bad one."""
    h, w = gt.shape[-2:]
    if min(h, w) - 2 * shave_border(scale, protocol) < SSIM_WINDOW:  # type: ignore[arg-type]
        return math.nan
    return float(ssim_protocol(pred, gt, scale, protocol)[0])  # type: ignore[arg-type]
