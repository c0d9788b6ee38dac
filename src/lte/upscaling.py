"""One picture through a network: its size rule, its colour, its alpha, its bit depth.

:func:`upscale_picture` is what ``lte.upscale`` does to each image, between reading it
(:func:`lte.data.picture.read_picture`) and writing it (:func:`lte.data.picture_write.write_picture`);
:mod:`lte.batch` runs it over many files. The network is reached through
:func:`lte.inference.predict` only.

**Transparent pixels.** A PNG's transparent pixels still have a colour, and editors usually save
them black. The network sees colour only: given that black, it draws a dark edge along every
border between opaque and transparent, and the upscaled alpha then shows that edge as a dark
fringe. Premultiplying (colour × alpha before, ÷ the upscaled alpha after) does not cure it here:
it is exact for a linear filter applied to colour and alpha alike, but the network is not linear
and the alpha goes through another filter, so the division leaves fringes, and dividing by a
small alpha magnifies every error. Instead, :func:`fill_transparent` replaces the colour of the
fully transparent pixels by a smooth continuation of their visible neighbours' colours (a
push-pull fill: alpha-weighted means over a pyramid of halved sizes, then filled back from the
coarsest level), so there is no edge to draw; the visible pixels keep their colour exactly. The
alpha plane itself is upscaled bicubically (``--alpha bicubic``, the default: a mask has no
texture for a network to add, and bicubic keeps its edges where they were), or run through the
network as a grey image (``--alpha model``: sharper edges, the compute twice over).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from lte.data.picture import Picture
from lte.data.picture_write import DEFAULT_QUALITY, SIXTEEN_BIT_FORMATS
from lte.errors import UserError
from lte.inference import DEFAULT_CHUNK, ProgressFn, predict
from lte.limits import finite_positive
from lte.models.decoders import Kernel
from lte.models.sr import SRModel
from lte.multiscale import CMSRTables

#: ``--alpha`` choices, ``--bit-depth`` choices.
ALPHA_METHODS = ("bicubic", "model")
BIT_DEPTHS = ("8", "16", "same")
#: Rings of transparent pixels around the visible ones filled one at a time from their 3x3
#: neighbours (:func:`fill_transparent`) before the coarser push-pull fill takes over.
GROW_STEPS = 8


def round_half_up(x: float) -> int:
    """Round to nearest with halves up, so sizes don't depend on banker's rounding."""
    return math.floor(x + 0.5)


def parse_box(text: str, option: str) -> tuple[int, int]:
    """``"WxH"`` → ``(H, W)``, both positive; ``option`` names the option in messages.

    Raises:
        UserError: not two positive whole numbers joined by ``x``.
    """
    parts = text.lower().split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise UserError(f"{option} '{text}' is not WIDTHxHEIGHT, e.g. {option} 1920x1080") from None
    if w <= 0 or h <= 0:
        raise UserError(f"{option} '{text}' must have a positive width and height")
    return h, w


@dataclass(frozen=True)
class SizeRule:
    """How each output's size follows from its input's; exactly one field is set.

    - ``scale`` S: ``round(S·h) × round(S·w)``;
    - ``size`` (H, W): exactly that, whatever the input;
    - ``fit`` (H, W): the largest size with the input's aspect ratio inside the box, i.e. the
      scale ``S = min(H/h, W/w)``: the binding side is exactly the box's, the other
      ``round(S·side)``;
    - ``long_side`` N: ``S = N / max(h, w)``: the long side is exactly N, the other ``round(S·side)``.

    Rounding is to nearest, halves up (:func:`round_half_up`), per axis; the model then works at
    the exact, generally non-integer scale of each axis, ``out / in``, as for ``--size``.
    """

    scale: float | None = None
    size: tuple[int, int] | None = None
    fit: tuple[int, int] | None = None
    long_side: int | None = None

    def __post_init__(self) -> None:
        given = [v for v in (self.scale, self.size, self.fit, self.long_side) if v is not None]
        assert len(given) == 1, "one size rule"
        if self.scale is not None:
            finite_positive(self.scale, "--scale")
        if self.long_side is not None and self.long_side <= 0:
            raise UserError(
                f"--long-side must be a positive number of pixels, got {self.long_side}"
            )

    @property
    def option(self) -> str:
        """The rule as the user gave it, for messages: ``--scale 3``, ``--fit 1920x1080``."""
        if self.scale is not None:
            return f"--scale {self.scale:g}"
        if self.long_side is not None:
            return f"--long-side {self.long_side}"
        name, (h, w) = ("--size", self.size) if self.size is not None else ("--fit", self.fit)
        return f"{name} {w}x{h}"  # type: ignore[misc]

    def output_size(self, lr_hw: tuple[int, int]) -> tuple[int, int]:
        """``(H, W)`` of the output for an ``(h, w)`` input.

        Raises:
            UserError: the scale gives an empty or unrepresentably large output.
        """
        if self.size is not None:
            return self.size
        h, w = lr_hw
        if self.fit is not None:
            s = min(self.fit[0] / h, self.fit[1] / w)
            exact = [s * h, s * w]
            binding = 0 if self.fit[0] / h <= self.fit[1] / w else 1
            exact[binding] = float(self.fit[binding])  # exactly the box's, whatever s's rounding
        elif self.long_side is not None:
            s = self.long_side / max(h, w)
            exact = [s * h, s * w]
            exact[0 if h >= w else 1] = float(self.long_side)
        else:
            assert self.scale is not None
            exact = [self.scale * h, self.scale * w]
        if not all(math.isfinite(v) and v < 2**53 for v in exact):
            raise UserError(
                f"{self.option} gives an output too large to represent: use a smaller one"
            )
        out_h, out_w = round_half_up(exact[0]), round_half_up(exact[1])
        if out_h < 1 or out_w < 1:
            raise UserError(
                f"{self.option} gives an empty {out_w}x{out_h} output for a {w}x{h} input"
            )
        return out_h, out_w


@dataclass(frozen=True)
class UpscaleSettings:
    """Everything ``lte.upscale`` asks of each picture, checked once and passed down whole.

    Args:
        size: the output size rule.
        alpha: ``bicubic`` or ``model``: how the alpha plane is upscaled (module docstring).
        bit_depth: ``8``, ``16`` or ``same`` (the input's, where the output format holds it).
        keep_grey: a grey input gives a grey output (the mean of the network's three channels).
        quality: JPEG / WebP quality, 1-100.
        ensemble: 1, 4 or 8 views (:func:`lte.inference.predict`).
        chunk, tile, dtype: :func:`lte.inference.predict`'s.
        cmsr: an LMF model's multi-scale rendering tables (:mod:`lte.multiscale`), or ``None``.
    """

    size: SizeRule
    alpha: str = "bicubic"
    bit_depth: str = "same"
    keep_grey: bool = False
    quality: int = DEFAULT_QUALITY
    ensemble: int = 1
    chunk: int = DEFAULT_CHUNK
    tile: int | None = None
    dtype: torch.dtype | None = None
    cmsr: CMSRTables | None = None

    def __post_init__(self) -> None:
        if self.chunk <= 0:
            raise UserError(f"--chunk must be a positive number of queries, got {self.chunk}")
        if self.tile is not None and self.tile < 0:
            raise UserError(
                f"--tile must be 0 (no tiling) or a positive LR tile side, got {self.tile}"
            )
        if not 1 <= self.quality <= 100:
            raise UserError(f"--quality must be from 1 to 100, got {self.quality}")

    def output_bits(self, pic: Picture, fmt: str) -> int:
        """8 or 16: ``--bit-depth``, where ``same`` is the input's when ``fmt`` holds 16 bits."""
        if self.bit_depth == "same":
            return pic.bits if fmt in SIXTEEN_BIT_FORMATS else 8
        return int(self.bit_depth)


class NonFiniteOutput(Exception):  # noqa: N818 (a fact about the weights; the caller names them)
    """The network produced NaN or infinity: its weights overflow on this input."""


def upscale_picture(
    model: SRModel,
    pic: Picture,
    out_hw: tuple[int, int],
    settings: UpscaleSettings,
    *,
    kernel: Kernel | None = None,
    progress: ProgressFn | None = None,
) -> Picture:
    """``pic`` at ``out_hw``: colour through the network (grey as RGB, transparent pixels filled
    first), alpha bicubic or through the network, metadata resized (:meth:`Picture.resized_metadata`).

    Raises:
        NonFiniteOutput: the network's output is not finite.
    """
    colour = pic.colour if pic.alpha is None else fill_transparent(pic.colour, pic.alpha)
    rgb = _network(model, colour, out_hw, settings, kernel, progress)
    if pic.grey and settings.keep_grey:
        rgb = rgb.mean(axis=-1, keepdims=True)
    alpha = None
    if pic.alpha is not None:
        if settings.alpha == "model":
            alpha = _network(model, pic.alpha[..., None], out_hw, settings, kernel, progress).mean(
                -1
            )
        else:
            alpha = bicubic(pic.alpha, out_hw)
    return replace(pic.resized_metadata(out_hw), colour=rgb, alpha=alpha)


def _network(
    model: SRModel,
    planes: np.ndarray,
    out_hw: tuple[int, int],
    settings: UpscaleSettings,
    kernel: Kernel | None,
    progress: ProgressFn | None,
) -> np.ndarray:
    """``(h, w, 1 or 3)`` in [0, 1] → ``(H, W, 3)`` float32 in [0, 1] by :func:`predict`."""
    param = next(model.parameters(), None)  # an ONNX export (lte.onnx_runtime) has none: CPU
    device = param.device if param is not None else torch.device("cpu")
    x = torch.from_numpy(np.ascontiguousarray(planes)).permute(2, 0, 1).unsqueeze(0)
    x = x.expand(1, 3, *x.shape[-2:]) if x.shape[1] == 1 else x
    lr = ((x - 0.5) / 0.5).to(device)  # the models' [-1, 1] space (lte.data.images.normalize)
    sr = predict(
        model,
        lr,
        out_hw,
        chunk=settings.chunk,
        dtype=settings.dtype,
        kernel=kernel,
        tile=settings.tile,
        progress=progress,
        ensemble=settings.ensemble,
        cmsr=settings.cmsr,
    )
    if not bool(torch.isfinite(sr).all()):
        raise NonFiniteOutput
    return (sr[0] * 0.5 + 0.5).clamp(0, 1).permute(1, 2, 0).float().cpu().numpy()


def bicubic(plane: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` in [0, 1] resized to ``out_hw`` bicubically (pixel centres aligned as the
    models' coordinates are, antialiased when shrinking), clamped to [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(plane, dtype=np.float32))[None, None]
    y = F.interpolate(x, size=out_hw, mode="bicubic", align_corners=False, antialias=True)
    return y[0, 0].clamp(0, 1).numpy()


def fill_transparent(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``colour`` (``(H, W, C)``) with every fully transparent pixel's colour replaced by a smooth
    continuation of the visible ones (weighted by alpha); visible pixels unchanged.

    Near the visible pixels (:data:`GROW_STEPS` pixels, about what a network's first layers see),
    each transparent pixel takes the weighted mean of its filled 3×3 neighbours, one ring at a
    time, so the border's own colours continue outward. Farther away, push-pull: halve the image
    repeatedly, each level the weighted mean of the level below, until every pixel has weight; then
    from the coarsest level down, a pixel without weight takes the bilinear upsampling of the level
    above. Linear in the image size.
    """
    visible = alpha > 0
    if visible.all() or not visible.any():
        return colour
    c = torch.from_numpy(np.ascontiguousarray(colour, dtype=np.float32)).permute(2, 0, 1)[None]
    w = torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32))[None, None]
    pw = c * w  # (1, C, H, W) colour times weight; w: (1, 1, H, W)
    for _ in range(GROW_STEPS):
        empty = w == 0
        if not bool(empty.any()):
            break
        ring_w = F.avg_pool2d(w, 3, stride=1, padding=1)
        grow = empty & (ring_w > 0)
        ring = F.avg_pool2d(pw, 3, stride=1, padding=1) / ring_w.clamp_min(1e-12)
        w = torch.where(grow, ring_w, w)
        pw = torch.where(grow, ring * ring_w, pw)
    levels = [(pw, w)]
    while not bool((levels[-1][1] > 0).all()) and min(levels[-1][1].shape[-2:]) > 1:
        pw, wt = levels[-1]
        levels.append((F.avg_pool2d(pw, 2, ceil_mode=True), F.avg_pool2d(wt, 2, ceil_mode=True)))
    pw, wt = levels[-1]
    filled = pw / wt.clamp_min(1e-12)
    for pw, wt in reversed(levels[:-1]):
        up = F.interpolate(filled, size=wt.shape[-2:], mode="bilinear", align_corners=False)
        filled = torch.where(wt > 0, pw / wt.clamp_min(1e-12), up)
    out = filled[0].permute(1, 2, 0).numpy()
    return np.where(visible[..., None], colour, out).astype(np.float32)
