"""The two bicubic downsamplers that define what "LR" means in training and in evaluation.

The training sampler makes LR patches on the fly with PIL's antialiased bicubic (SPEC.md, "Training
recipe"), and out-of-distribution evaluation makes its LR the same way; ``scripts/make_lr.py`` uses
the very same :func:`downsample_pil`, so stored and on-the-fly LR images cannot drift apart.

The ×2/×3/×4 benchmark LR images were made with MATLAB's ``imresize`` (bicubic, antialiased).
:func:`imresize_matlab` reproduces that resampler from its definition so users can make LR images
for their own data sets that match the shipped ones.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from lte.errors import UserError


def _check_image(img: np.ndarray, size: tuple[int, int]) -> tuple[int, int]:
    """Validate an ``(H, W, 3)`` uint8 image and a positive ``(h, w)`` target size."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {img.dtype} {img.shape}")
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise UserError(f"target size {h}x{w} is empty: the image is too small for this scale")
    return h, w


def downsample_pil(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``(H, W, 3)`` uint8 to ``size = (h, w)`` with PIL's antialiased bicubic.

    This is the paper's LR protocol: PIL's ``Image.BICUBIC`` resize on the 8-bit image (its kernel
    support widens with the downscaling factor, so it antialiases). Returns ``(h, w, 3)`` uint8.
    """
    h, w = _check_image(img, size)
    # PIL sizes are (width, height).
    out = Image.fromarray(np.ascontiguousarray(img)).resize((w, h), Image.BICUBIC)
    return np.asarray(out, dtype=np.uint8).copy()


def cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel with ``a = -0.5`` (MATLAB's ``cubic``); support [-2, 2]."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    inner = (a + 2) * ax3 - (a + 3) * ax2 + 1
    outer = a * ax3 - 5 * a * ax2 + 8 * a * ax - 4 * a
    return np.where(ax <= 1, inner, np.where(ax <= 2, outer, 0.0))


def matlab_weights(in_len: int, out_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-pixel taps of MATLAB's antialiased bicubic resize along one axis.

    For scale ``k = out_len / in_len`` the kernel is ``h(d) = k · cubic(k · d)`` with width
    ``4 / k`` when downsampling (``cubic(d)``, width 4, when upsampling). Output pixel ``u``
    (1-based) maps to input position ``x = u / k + 0.5 (1 - 1/k)``; its taps are the ``ceil(width)
    + 2`` input pixels from ``floor(x - width/2)``, weights normalised to sum to 1, and indices past
    the border mirrored symmetrically (``… 2 1 1 2 … n n n-1 …``).

    Returns:
        ``weights``: ``(out_len, P)`` float64, each row summing to 1.
        ``indices``: ``(out_len, P)`` 0-based indices into the input axis.
    """
    k = out_len / in_len
    antialias = k < 1
    width = 4.0 / k if antialias else 4.0
    u = np.arange(1, out_len + 1, dtype=np.float64)
    x = u / k + 0.5 * (1 - 1 / k)  # (out,) input positions, 1-based
    left = np.floor(x - width / 2)
    taps = math.ceil(width) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # (out, P), 1-based
    dist = x[:, None] - idx
    weights = k * cubic(k * dist) if antialias else cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # Symmetric padding: 1..n then n..1, repeating (MATLAB's aux = [1:n, n:-1:1]).
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    indices = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    # Taps that are zero in every row (the outermost) change nothing; drop them as MATLAB does.
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], indices[:, keep]


def _resize_axis(arr: np.ndarray, out_len: int, axis: int) -> np.ndarray:
    """Resize a float64 array along one axis with :func:`matlab_weights`."""
    weights, indices = matlab_weights(arr.shape[axis], out_len)
    moved = np.moveaxis(arr, axis, 0)  # (in, ...)
    gathered = moved[indices]  # (out, P, ...)
    w = weights.reshape(weights.shape + (1,) * (moved.ndim - 1))
    return np.moveaxis((gathered * w).sum(axis=1), 0, axis)


def imresize_matlab(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """MATLAB-compatible ``imresize(img, [h w], 'bicubic')`` (antialiased) for ``(H, W, 3)`` uint8.

    Cubic kernel ``a = -0.5``, kernel widened by ``1/scale`` when downsampling, symmetric border
    padding, weights normalised per output pixel. Like MATLAB, the axis shrunk the most goes first
    (rows first on a tie). Computed in float64 and rounded once at the end, half away from zero,
    to uint8. MATLAB's own uint8 path may round between the two passes, so a rare pixel can differ
    from it by one level.
    """
    h, w = _check_image(img, size)
    arr = img.astype(np.float64)
    scales = (h / img.shape[0], w / img.shape[1])
    order = (0, 1) if scales[0] <= scales[1] else (1, 0)
    for axis in order:
        arr = _resize_axis(arr, (h, w)[axis], axis)
    return np.clip(np.floor(arr + 0.5), 0, 255).astype(np.uint8)


def lr_size(hr_shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """LR size for an HR image at ``scale``: ``(floor(H/s), floor(W/s))``.

    The ``1e-9`` keeps exact integer ratios from flooring down through float round-off.
    """
    return math.floor(hr_shape[0] / scale + 1e-9), math.floor(hr_shape[1] / scale + 1e-9)


def crop_to_scale(img: np.ndarray, scale: float) -> np.ndarray:
    """Crop an HR image (top-left anchored) to ``round(floor(H/s)·s) × round(floor(W/s)·s)``.

    This is the evaluation protocol's crop, so that the LR maps onto the HR grid exactly.
    """
    h_lr, w_lr = lr_size(img.shape[:2], scale)
    return img[: round(h_lr * scale), : round(w_lr * scale)]


def make_lr(img: np.ndarray, scale: float, kernel: str = "pil") -> tuple[np.ndarray, np.ndarray]:
    """Crop ``img`` to a multiple of ``scale`` and downsample it: returns ``(hr_cropped, lr)``.

    ``kernel`` is ``pil`` (the training and out-of-distribution protocol) or ``matlab`` (how the
    shipped ×2/×3/×4 LR images were made).
    """
    if kernel not in ("pil", "matlab"):
        raise UserError(f"kernel '{kernel}' is unknown: use 'pil' or 'matlab'")
    hr = crop_to_scale(img, scale)
    size = lr_size(img.shape[:2], scale)
    fn = downsample_pil if kernel == "pil" else imresize_matlab
    return hr, fn(hr, size)
