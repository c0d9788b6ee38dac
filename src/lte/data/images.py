"""Reading and writing images as 8-bit RGB, whatever the file holds.

Users bring grey, palette, RGBA and 16-bit files in many formats; the reference code crashes on most of
them. Everything that reads pixels in lte goes through :func:`load_rgb`, so every entry point accepts
the same files and fails on a bad one with the same one-line error.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from lte.atomic import atomic_path
from lte.errors import UserError

#: File suffixes treated as images when a folder is scanned.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _to_rgb8(img: Image.Image) -> np.ndarray:
    """Convert any PIL image to ``(H, W, 3)`` uint8, scaling 16-bit and float data correctly."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        grey = np.clip(np.round(arr * scale), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels keep their colour: alpha is dropped, not composited on a background,
        # because the network sees colours, and compositing would invent edges at alpha borders.
        img = img.convert("RGBA")
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def load_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB.

    Raises:
        UserError: the file is missing, unreadable, truncated or not an image (one line naming it).
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"input image '{p}' does not exist: check the path")
    if p.is_dir():
        raise UserError(f"input '{p}' is a folder, not an image file")
    try:
        with Image.open(p) as img:
            img.load()
            return _to_rgb8(img)
    except UnidentifiedImageError:
        raise UserError(f"'{p}' is not an image PIL can read (png, jpg, bmp, tif, webp)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise UserError(f"cannot read image '{p}': {err} (is the file truncated?)") from None


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 → ``(3, H, W)`` float32 in [0, 1]."""
    if not img.flags.writeable:  # torch warns on read-only arrays (e.g. mmap caches, PIL views)
        img = img.copy()
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] → [-1, 1], the models' input and target space: ``(v - 0.5) / 0.5``."""
    return (x - 0.5) / 0.5


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Model output → RGB in [0, 1]: ``v * 0.5 + 0.5``, clamped as before any metric."""
    return (x * 0.5 + 0.5).clamp(0, 1)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` float in [0, 1] → ``(H, W, 3)`` uint8, rounded to nearest."""
    arr = x.detach().float().clamp(0, 1).mul(255.0).round().byte()
    return arr.permute(1, 2, 0).cpu().numpy()


def save_rgb(img: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write ``(H, W, 3)`` uint8 to ``path`` atomically (temp file + rename); format from suffix.

    Raises:
        UserError: the output folder does not exist or the suffix is not a known image format.
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"output folder '{parent}' does not exist: create it first")
    fmt = Image.registered_extensions().get(p.suffix.lower())
    if fmt is None:
        raise UserError(f"output '{p}' has no image suffix: use .png, .jpg, .bmp, .tif or .webp")
    with atomic_path(p) as tmp:
        Image.fromarray(np.ascontiguousarray(img)).save(tmp, format=fmt)
