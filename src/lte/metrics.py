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


#: SSIM's Gaussian window: sigma 1.5 and torchmetrics' size for it, ``int(3.5·σ + 0.5)·2 + 1 = 11``.
SSIM_SIGMA = 1.5
SSIM_SIZE = int(3.5 * SSIM_SIGMA + 0.5) * 2 + 1
#: SSIM's stabilising constants for data range 1: ``(0.01·1)²`` and ``(0.03·1)²``.
SSIM_C1 = pow(0.01 * 1.0, 2)
SSIM_C2 = pow(0.03 * 1.0, 2)


def gaussian_window(
    dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> Tensor:
    """SSIM's normalised 1-D Gaussian (:data:`SSIM_SIZE` taps, σ :data:`SSIM_SIGMA`), as torchmetrics
    builds it; the 2-D window is its outer product with itself."""
    dist = torch.arange((1 - SSIM_SIZE) / 2, (1 + SSIM_SIZE) / 2, 1, dtype=dtype, device=device)
    g = torch.exp(-torch.pow(dist / SSIM_SIGMA, 2) / 2)
    return g / g.sum()


#: Output rows filtered at a time by :func:`filter_valid`: a strip of the five float64 maps (plus the
#: window's 10 rows) stays in the CPU cache across the 22 passes instead of streaming from memory.
SSIM_STRIP_ROWS = 64


def filter_valid(x: Tensor, taps: list[float], strip: int = SSIM_STRIP_ROWS) -> Tensor:
    """``x`` (..., H, W) filtered with the separable window ``taps ⊗ taps``, 'valid' region only.

    One pass per axis, one multiply-add per tap over shifted views: 2·k operations per pixel
    instead of k² (the 2-D convolution), and no im2col buffer of k² copies of the image. Done in
    strips of ``strip`` output rows; every output value goes through the same operations whatever
    the strip, so the strip height changes no result.
    """
    k = len(taps)
    h, w = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    out = x.new_empty(*x.shape[:-2], h, w)
    for r0 in range(0, h, strip):
        n = min(strip, h - r0)
        band = x[..., r0 : r0 + n + k - 1, :]
        rows = band[..., 0:n, :] * taps[0]
        for i in range(1, k):
            rows.add_(band[..., i : i + n, :], alpha=taps[i])
        dst = out[..., r0 : r0 + n, :]
        torch.mul(rows[..., 0:w], taps[0], out=dst)
        for j in range(1, k):
            dst.add_(rows[..., j : j + w], alpha=taps[j])
    return out


def ssim(pred: Tensor, gt: Tensor, *, border: int, y_channel: bool) -> Tensor:
    """Per-image SSIM on the same channel and shave as :func:`psnr`.

    Gaussian window 11, sigma 1.5, data range 1, exactly as torchmetrics'
    ``structural_similarity_index_measure(gaussian_kernel=True, sigma=1.5, data_range=1.0)``
    computes it: images reflect-padded by 5 px, local means from the Gaussian window, variances
    clamped at 0, the SSIM map averaged over every pixel and channel. The window is applied as two
    1-D passes (it is the outer product of a 1-D Gaussian), which gives torchmetrics' numbers to
    float64 round-off (``tests/test_eval_throughput.py`` checks 1e-12) at a fraction of the cost of
    its 2-D convolution, whose float64 im2col on CPU made SSIM a large share of an evaluation.
    The luma for SSIM includes the 16/255 offset (:func:`rgb_to_y`): unlike PSNR, SSIM's constants
    make it sensitive to the absolute level. Computed in float64: SSIM's variances are differences
    of nearly equal means of squares, and in float32 that cancellation alone moves smooth images'
    SSIM in the 4th decimal.
    """
    if pred.shape != gt.shape:
        raise ValueError(
            f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ"
        )
    dtype, device = pred.dtype, pred.device
    if device.type == "mps":  # no float64 there
        pred, gt = pred.cpu(), gt.cpu()
    # Shaving first converts only what is scored (slicing commutes with the conversions).
    pred, gt = shave(pred, border).double(), shave(gt, border).double()
    if y_channel:
        pred, gt = rgb_to_y(pred), rgb_to_y(gt)
    pad = SSIM_SIZE // 2
    pred = torch.nn.functional.pad(pred, (pad, pad, pad, pad), mode="reflect")
    gt = torch.nn.functional.pad(gt, (pad, pad, pad, pad), mode="reflect")
    taps = gaussian_window(torch.float64, pred.device).tolist()
    maps = torch.cat((pred, gt, pred * pred, gt * gt, pred * gt))  # (5B, C, H + 2p, W + 2p)
    mu_p, mu_g, e_pp, e_gg, e_pg = filter_valid(maps, taps).split(pred.shape[0])
    mu_pp, mu_gg, mu_pg = mu_p.pow(2), mu_g.pow(2), mu_p * mu_g
    var_p = torch.clamp(e_pp - mu_pp, min=0.0)
    var_g = torch.clamp(e_gg - mu_gg, min=0.0)
    cov = e_pg - mu_pg
    upper = 2 * cov + SSIM_C2
    lower = (var_p + var_g) + SSIM_C2
    index = ((2 * mu_pg + SSIM_C1) * upper) / ((mu_pp + mu_gg + SSIM_C1) * lower)
    out = index.reshape(index.shape[0], -1).mean(-1)
    return out.to(device=device, dtype=dtype)


def ssim_protocol(pred: Tensor, gt: Tensor, scale: float, protocol: Protocol) -> Tensor:
    """Per-image SSIM under a named protocol, on the channel and shave of :func:`psnr_protocol`."""
    return ssim(pred, gt, border=shave_border(scale, protocol), y_channel=protocol == "benchmark")
