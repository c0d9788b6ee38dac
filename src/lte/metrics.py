"""PSNR and SSIM exactly as the LIIF/LTE papers report them (SPEC.md, "Evaluation protocol").

The papers' numbers depend on details that generic metric libraries choose differently: PSNR on the
luma of the *difference* image (not the difference of lumas, which adds the 16/255 offset and then
cancels it), the exact BT.601 weights divided by 256, how many border pixels are shaved, float
predictions that are clamped but not rounded to 8 bits, and the per-image average. Each choice is an
explicit argument here so that a caller can read the protocol off the signature.

All functions take ``(B, 3, H, W)`` float tensors in [0, 1] and return one value per image, ``(B,)``,
in the inputs' device and dtype; the caller averages over images.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

#: BT.601 luma weights for RGB in [0, 1], as the reference code writes them: ``(65.738, 129.057,
#: 25.064) / 256``. Their sum is 0.8588 = 219.859 / 256: studio-range luma without its 16/255 offset.
Y_WEIGHTS: tuple[float, float, float] = (65.738 / 256, 129.057 / 256, 25.064 / 256)
#: The offset that turns the weighted sum into studio-range Y (only matters for SSIM: PSNR works on
#: a difference, where it cancels).
Y_OFFSET = 16.0 / 255.0

#: ``benchmark``: Y channel, shave ``s`` (Set5, Set14, B100, Urban100). ``div2k``: RGB, shave ``s + 6``.
Protocol = Literal["benchmark", "div2k"]
PROTOCOLS: tuple[str, ...] = ("benchmark", "div2k")


def shave_border(scale: float, protocol: Protocol) -> int:
    """Pixels removed from every border before a metric: ``s`` (benchmark) or ``s + 6`` (div2k).

    The reference code only knows integer scales. A non-integer ``s`` is rounded *up*
    (``ceil(s)``), so the shaved band always covers the border the decoder reconstructs from
    fewer than ``s`` LR rows: the metric never gets easier because the scale is fractional.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: expected one of {PROTOCOLS}")
    base = math.ceil(float(scale) - 1e-9)
    return base if protocol == "benchmark" else base + 6


def rgb_to_y_weighted(x: Tensor) -> Tensor:
    """``Σ_c x_c · k_c`` with :data:`Y_WEIGHTS`: ``(B, 3, H, W)`` → ``(B, 1, H, W)``, no offset.

    Applied to a difference image this is the difference of the lumas, which is what the benchmark
    PSNR measures.
    """
    k = x.new_tensor(Y_WEIGHTS).view(1, 3, 1, 1)
    return (x * k).sum(dim=1, keepdim=True)


def rgb_to_y(x: Tensor) -> Tensor:
    """Studio-range luma ``16/255 + Σ_c x_c · k_c`` of RGB in [0, 1]: ``(B, 1, H, W)`` in [16, 235]/255."""
    return rgb_to_y_weighted(x) + Y_OFFSET


def shave(x: Tensor, border: int) -> Tensor:
    """Drop ``border`` pixels on every side of ``(..., H, W)``; ``border = 0`` keeps everything."""
    if border <= 0:
        return x
    h, w = x.shape[-2:]
    if h <= 2 * border or w <= 2 * border:
        raise ValueError(f"image of {h}x{w} px is too small to shave {border} px from each border")
    return x[..., border:-border, border:-border]


def psnr(pred: Tensor, gt: Tensor, *, border: int, y_channel: bool) -> Tensor:
    """Per-image PSNR (dB) of ``pred`` against ``gt``, both ``(B, 3, H, W)`` in [0, 1].

    ``diff = pred - gt``; with ``y_channel`` the difference is reduced to luma with
    :data:`Y_WEIGHTS`; ``border`` pixels are shaved on every side; ``psnr = -10 log10(mean(diff²))``
    over the remaining pixels (and channels) of each image. A perfect prediction gives ``inf``.
    """
    if pred.shape != gt.shape:
        raise ValueError(
            f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ"
        )
    diff = pred - gt
    if y_channel:
        diff = rgb_to_y_weighted(diff)
    valid = shave(diff, border)
    mse = valid.pow(2).flatten(1).mean(dim=1)  # (B,)
    return -10 * torch.log10(mse)


def psnr_protocol(pred: Tensor, gt: Tensor, scale: float, protocol: Protocol) -> Tensor:
    """Per-image PSNR under a named protocol: ``benchmark`` (Y, shave s) or ``div2k`` (RGB, shave s+6)."""
    return psnr(pred, gt, border=shave_border(scale, protocol), y_channel=protocol == "benchmark")


def ssim(pred: Tensor, gt: Tensor, *, border: int, y_channel: bool) -> Tensor:
    """Per-image SSIM on the same channel and shave as :func:`psnr`, via torchmetrics.

    Gaussian window 11, sigma 1.5, data range 1. The luma for SSIM includes the 16/255 offset
    (:func:`rgb_to_y`): unlike PSNR, SSIM's constants make it sensitive to the absolute level.
    Computed in float64: SSIM's variances are differences of nearly equal means of squares, and in
    float32 that cancellation alone moves smooth images' SSIM in the 4th decimal.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    if pred.shape != gt.shape:
        raise ValueError(
            f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ"
        )
    dtype, device = pred.dtype, pred.device
    if device.type == "mps":  # no float64 there
        pred, gt = pred.cpu(), gt.cpu()
    pred, gt = pred.double(), gt.double()
    if y_channel:
        pred, gt = rgb_to_y(pred), rgb_to_y(gt)
    pred, gt = shave(pred, border), shave(gt, border)
    out = structural_similarity_index_measure(
        pred,
        gt,
        gaussian_kernel=True,
        sigma=1.5,
        kernel_size=11,
        data_range=1.0,
        reduction="none",
    )
    return out.to(device=device, dtype=dtype)


def ssim_protocol(pred: Tensor, gt: Tensor, scale: float, protocol: Protocol) -> Tensor:
    """Per-image SSIM under a named protocol, on the channel and shave of :func:`psnr_protocol`."""
    return ssim(pred, gt, border=shave_border(scale, protocol), y_channel=protocol == "benchmark")
