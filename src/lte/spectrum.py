"""The LTE paper's Fourier feature-space figure: what the texture estimator sees at one LR position.

For an LR image, an LTE model estimates at every LR code K frequencies ``(f_y, f_x)`` and their
amplitudes (SPEC.md "Fourier feature space", :meth:`lte.models.SRModel.fourier`). The figure shows

* the LR image, with the chosen position marked, and the LR crop around it;
* a map over the whole image of the dominant frequency's magnitude ``max_k (A[k]² + A[K+k]²)``:
  where the estimator is active (texture) and where it is quiet (flat regions);
* the paper's scatter of the K frequencies at the position, ``(f_x, f_y)`` coloured by magnitude;
* with a scale, the phase term ``P(rel_cell)_k`` of that output scale (the only scale-dependent part).

Orientation: image rows grow downwards, the scatter's y axis grows upwards. The official notebook
flips the LR image vertically before encoding and flips the maps back, so that a frequency is drawn
pointing the way the texture runs on screen. By default this module encodes the image as it is (the
estimates the decoder really uses) and draws ``(f_x, -f_y)``: the same orientation, exactly so for a
network that commutes with flips. ``notebook_flip=True`` reproduces the notebook's numbers instead.

``python -m lte.fourier`` / ``lte-fourier`` is the command (:mod:`lte.cli.fourier`); training runs
log the figure with :class:`lte.training.fourier_callback.FourierLogger`. See docs/fourier.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from lte.data.images import normalize
from lte.models import SRModel

#: Half-width of the scatter's axes: the paper draws frequencies within about [-1.5, 1.5].
AXIS_LIMIT = 1.5
#: Half-side, in LR pixels, of the crop shown around the chosen position.
CROP_RADIUS = 16
#: Inches per panel (width and height) and the height added for the title.
PANEL_INCHES = 4.0
TITLE_INCHES = 0.5


@dataclass(frozen=True)
class FourierView:
    """Everything the figure draws, as plain arrays (one image, the chosen position).

    Attributes:
        image: ``(h, w, 3)`` float RGB in [0, 1], the LR image as given (never flipped).
        at: ``(x, y)``: LR column and row of the chosen position.
        freq: ``(K, 2)`` the position's frequencies as drawn, ``(f_x, f_y)`` with y pointing up.
        magnitude: ``(K,)`` ``A[k]² + A[K+k]²`` at the position.
        dominant: ``(h, w)`` ``max_k`` of the magnitude at every LR position (image orientation).
        phase: ``(K,)`` ``P(rel_cell)_k`` for ``scale``, or ``None`` without a scale.
        scale: the output scale of ``phase``, or ``None``.
        notebook_flip: whether the image was flipped before encoding (the notebook's way).
    """

    image: np.ndarray
    at: tuple[int, int]
    freq: np.ndarray
    magnitude: np.ndarray
    dominant: np.ndarray
    phase: np.ndarray | None = None
    scale: float | None = None
    notebook_flip: bool = False

    @property
    def panels(self) -> int:
        """Panels in the figure: image, crop, dominant map, scatter, and the phase with a scale."""
        return 4 if self.phase is None else 5


def fourier_view(
    model: SRModel,
    image: torch.Tensor,
    at: tuple[int, int],
    *,
    scale: float | None = None,
    notebook_flip: bool = False,
) -> FourierView:
    """Encode ``image`` (``(3, h, w)`` RGB in [0, 1]) and read the figure's data at ``at = (x, y)``.

    ``model`` must have a texture estimator (``model.has_fourier``). Runs under ``inference_mode``
    on the model's device.

    Raises:
        ValueError: ``at`` is outside the image, or the decoder has no Fourier features.
    """
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, h, w) RGB, got {tuple(image.shape)}")
    h, w = image.shape[-2:]
    x, y = at
    if not (0 <= x < w and 0 <= y < h):
        raise ValueError(f"position {at} is outside the {w}x{h} image")
    device = next(model.parameters()).device
    lr = normalize(image.float()).unsqueeze(0).to(device)
    with torch.inference_mode():
        maps = model.fourier(lr.flip(-2) if notebook_flip else lr, scale)
        freq, magnitude = maps.freq[0], maps.magnitude[0]  # (K, 2, h, w), (K, h, w)
        if notebook_flip:  # back to the image's rows; f_y is then already y-up
            freq, magnitude = freq.flip(-2), magnitude.flip(-2)
        at_freq = freq[:, :, y, x]  # (K, 2) = (f_y, f_x)
        f_up = at_freq[:, 0] if notebook_flip else -at_freq[:, 0]
        drawn = torch.stack([at_freq[:, 1], f_up], dim=-1)
        dominant = magnitude.amax(dim=0)
        phase = None if maps.phase is None else maps.phase[0].float().cpu().numpy()
    return FourierView(
        image=image.permute(1, 2, 0).float().clamp(0, 1).cpu().numpy(),
        at=(int(x), int(y)),
        freq=drawn.float().cpu().numpy(),
        magnitude=magnitude[:, y, x].float().cpu().numpy(),
        dominant=dominant.float().cpu().numpy(),
        phase=phase,
        scale=None if scale is None else float(scale),
        notebook_flip=notebook_flip,
    )


def is_finite(view: FourierView) -> bool:
    """Whether every number the figure would draw is finite (corrupt weights give NaN)."""
    arrays: Sequence[np.ndarray | None] = (view.freq, view.magnitude, view.dominant, view.phase)
    return all(a is None or bool(np.isfinite(a).all()) for a in arrays)


def _crop_box(view: FourierView) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the context crop around the position, inside the image."""
    h, w = view.image.shape[:2]
    x, y = view.at
    x0, y0 = max(0, x - CROP_RADIUS), max(0, y - CROP_RADIUS)
    return x0, y0, min(w, x + CROP_RADIUS + 1), min(h, y + CROP_RADIUS + 1)


def figure(view: FourierView, title: str = "", dpi: int = 100) -> Figure:
    """The figure as a matplotlib :class:`Figure` (no pyplot, no global backend: Agg canvas).

    Its size is fixed, ``panels × 4`` by ``4.5`` inches at ``dpi``, so callers know the pixel size.
    """
    n = view.panels
    fig = Figure(figsize=(n * PANEL_INCHES, PANEL_INCHES + TITLE_INCHES), dpi=dpi)
    FigureCanvasAgg(fig)
    fig.set_layout_engine("constrained")
    axes = fig.subplots(1, n)
    x, y = view.at
    h, w = view.image.shape[:2]
    marker = {"marker": "+", "color": "red", "s": 120, "linewidths": 2}

    ax = axes[0]
    ax.imshow(view.image, interpolation="nearest")
    x0, y0, x1, y1 = _crop_box(view)
    ax.add_patch(
        Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, edgecolor="red", facecolor="none")
    )
    ax.scatter([x], [y], **marker)
    ax.set_title(f"LR image {w}x{h}, at (x={x}, y={y})", fontsize=9)
    ax.set_axis_off()

    ax = axes[1]
    ax.imshow(
        view.image[y0:y1, x0:x1],
        interpolation="nearest",
        extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5),
    )
    ax.scatter([x], [y], **marker)
    ax.set_title(f"LR crop x {x0}..{x1 - 1}, y {y0}..{y1 - 1}", fontsize=9)
    ax.set_axis_off()

    ax = axes[2]
    # A few specular highlights can be far brighter than all texture: clip the colour scale at the
    # 99.5th percentile (the colour bar says so with its arrow) so the rest of the map stays readable.
    top = float(np.percentile(view.dominant, 99.5))
    clipped = top < float(view.dominant.max())
    im = ax.imshow(
        view.dominant, cmap="magma", interpolation="nearest", vmax=top if clipped else None
    )
    ax.scatter([x], [y], marker="+", color="cyan", s=120, linewidths=2)
    ax.set_title("dominant magnitude  max_k A[k]² + A[K+k]²", fontsize=9)
    ax.set_axis_off()
    fig.colorbar(im, ax=ax, shrink=0.8, extend="max" if clipped else "neither")

    ax = axes[3]
    order = np.argsort(view.magnitude)  # strongest drawn last, on top
    fx, fy = view.freq[order, 0], view.freq[order, 1]
    sc = ax.scatter(fx, fy, c=view.magnitude[order], cmap="viridis", s=14)
    outside = int(np.sum((np.abs(view.freq) > AXIS_LIMIT).any(axis=1)))
    ax.set_xlim(-AXIS_LIMIT, AXIS_LIMIT)
    ax.set_ylim(-AXIS_LIMIT, AXIS_LIMIT)
    ax.set_aspect("equal")
    ax.axhline(0, color="0.8", lw=0.5, zorder=0)
    ax.axvline(0, color="0.8", lw=0.5, zorder=0)
    ax.set_xlabel("f_x")
    ax.set_ylabel("f_y (up)")
    k = len(view.magnitude)
    extra = f", {outside} outside" if outside else ""
    ax.set_title(f"{k} estimated frequencies{extra}", fontsize=9)
    fig.colorbar(sc, ax=ax, shrink=0.8, label="A[k]² + A[K+k]²")

    if view.phase is not None:
        ax = axes[4]
        wrapped = (view.phase + 1.0) % 2.0 - 1.0  # θ is multiplied by π: phase mod 2, in [-1, 1)
        radius = np.hypot(view.freq[:, 0], view.freq[:, 1])
        ax.scatter(radius[order], wrapped[order], c=view.magnitude[order], cmap="viridis", s=14)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel("|f|")
        ax.set_ylabel("P(rel_cell)_k mod 2  (× π)")
        ax.set_title(f"phase term at x{view.scale:g}", fontsize=9)

    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def figure_size(view: FourierView, dpi: int = 100) -> tuple[int, int]:
    """``(width, height)`` in pixels of :func:`figure` at ``dpi``."""
    n = view.panels
    return (
        math.floor(n * PANEL_INCHES * dpi + 0.5),
        math.floor((PANEL_INCHES + TITLE_INCHES) * dpi + 0.5),
    )


def to_rgb(fig: Figure) -> np.ndarray:
    """The drawn figure as an ``(H, W, 3)`` uint8 array (for W&B, or tests)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
