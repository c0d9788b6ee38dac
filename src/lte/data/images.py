"""Reading and writing images as 8-bit RGB, whatever the file holds.

Users bring grey, palette, RGBA and 16-bit files in many formats; the reference code crashes on most of
them. Everything that reads pixels in lte goes through :func:`load_rgb`, so every entry point accepts
the same files and fails on a bad one with the same one-line error.

Images are read *as people see them*: the EXIF orientation tag (phone photos) is applied, so a portrait
photo is upscaled upright rather than sideways. Before any pixel is decoded, the size in the header
is checked against a limit (:func:`max_image_pixels`, default :data:`DEFAULT_MAX_IMAGE_PIXELS`, lifted
with the ``LTE_MAX_IMAGE_PIXELS`` environment variable in every reader, or ``--max-pixels`` in
``lte.upscale``): a few-kilobyte file claiming 90000x90000 pixels would otherwise ask for 24 GB.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from lte.atomic import atomic_path
from lte.errors import UserError, quote

#: File suffixes treated as images when a folder is scanned.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

#: Largest image (in pixels) read without being asked: 2**27 = 134M px, e.g. 16384x8192, about
#: 400 MB as 8-bit RGB. PIL's own guard (89M px warning, 179M px error) is replaced by this one.
DEFAULT_MAX_IMAGE_PIXELS = 2**27
#: Environment variable that lifts :data:`DEFAULT_MAX_IMAGE_PIXELS` for every reader (training too).
MAX_PIXELS_ENV = "LTE_MAX_IMAGE_PIXELS"

#: EXIF orientations 5-8 swap width and height (a rotation by 90 or 270 degrees).
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112
#: Serialises the (rare) moments when PIL's global size guard is lifted to read a large header.
_PIL_GUARD = threading.Lock()


def parse_pixel_limit(text: str, option: str) -> int:
    """A positive pixel count from ``text`` (``"200000000"``, ``"2e8"`` or ``"20000x10000"``).

    Raises:
        UserError: not a positive whole number of pixels; ``option`` names where it came from.
    """
    raw = text.strip().lower()
    try:
        if "x" in raw:
            w, h = (int(v) for v in raw.split("x"))
            value = w * h
        else:
            number = float(raw)
            if not number.is_integer():
                raise ValueError
            value = int(number)
    except (ValueError, OverflowError):
        raise UserError(
            f"{option} '{text}' is not a number of pixels: use e.g. 200000000 or 20000x10000"
        ) from None
    if value <= 0:
        raise UserError(f"{option} '{text}' must be a positive number of pixels")
    return value


def max_image_pixels(override: int | None = None) -> int:
    """The pixel limit for reading images: ``override``, else ``$LTE_MAX_IMAGE_PIXELS``, else the default.

    Raises:
        UserError: the environment variable is set but not a positive number of pixels.
    """
    if override is not None:
        return override
    env = os.environ.get(MAX_PIXELS_ENV)
    if env is None or not env.strip():
        return DEFAULT_MAX_IMAGE_PIXELS
    return parse_pixel_limit(env, MAX_PIXELS_ENV)


def _open_header(p: Path) -> Image.Image:
    """``Image.open`` (reads the header only), never stopped by PIL's own size guard."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(p)
        except Image.DecompressionBombError:
            pass
        # Larger than PIL's hard limit: read just the header with the guard off; :func:`_check_size`
        # applies lte's limit before anything is decoded.
        with _PIL_GUARD:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                return Image.open(p)
            finally:
                Image.MAX_IMAGE_PIXELS = saved


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1 = upright) without decoding pixels.

    PNGs whose EXIF chunk comes after the pixel data would need a full decode to find it; they count
    as upright here (:func:`load_rgb` still applies their orientation).
    """
    if img.format == "PNG" and "exif" not in img.info:
        return 1
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except (ValueError, TypeError, OSError, SyntaxError):
        return 1


def _check_size(p: Path, img: Image.Image, limit: int) -> None:
    w, h = img.size
    if w * h > limit:
        raise UserError(
            f"image '{p}' is {w}x{h} = {w * h} pixels, over the limit of {limit}: if the file is "
            f"trusted, allow it with {MAX_PIXELS_ENV}={w * h} (or --max-pixels {w * h} in lte.upscale)"
        )


#: File types that are not images, whatever their name: reading a FIFO blocks, a device never ends.
_SPECIAL_FILES = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
    (stat.S_ISSOCK, "a socket"),
)


def _exists(p: Path) -> None:
    """``p`` names a regular file (through links): a FIFO or a device would block or never end."""
    try:
        mode = os.stat(p).st_mode
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP):
            raise UserError(f"input image {quote(p)} does not exist: check the path") from None
        raise UserError(f"cannot read input image {quote(p)}: {err.strerror}") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"input {quote(p)} is a folder, not an image file")
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _SPECIAL_FILES if test(mode)), "a special file")
        raise UserError(f"input {quote(p)} is not a regular file ({kind}): give an image file")


def image_size(path: str | os.PathLike[str], max_pixels: int | None = None) -> tuple[int, int]:
    """``(H, W)`` of the image as :func:`load_rgb` returns it (EXIF orientation applied), header only.

    Raises:
        UserError: missing, not an image, or larger than :func:`max_image_pixels`.
    """
    p = Path(path)
    _exists(p)
    try:
        with _open_header(p) as img:
            _check_size(p, img, max_image_pixels(max_pixels))
            w, h = img.size
            if _orientation(img) in _SWAPPING_ORIENTATIONS:
                w, h = h, w
    except UnidentifiedImageError:
        raise UserError(f"'{p}' is not an image PIL can read (png, jpg, bmp, tif, webp)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise UserError(f"cannot read image '{p}': {err} (is the file truncated?)") from None
    return h, w


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


def load_rgb(path: str | os.PathLike[str], max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB, upright as its EXIF orientation says.

    ``max_pixels`` overrides :func:`max_image_pixels`; the header is checked before decoding.

    Raises:
        UserError: the file is missing, unreadable, truncated, not an image, or larger than the
            pixel limit (one line naming it, its size and how to allow it).
    """
    p = Path(path)
    _exists(p)
    try:
        with _open_header(p) as img:
            _check_size(p, img, max_image_pixels(max_pixels))
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
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
        UserError: the output folder does not exist, the suffix is not a known image format, or the
            write fails for a reason the user can fix (disk full, no permission, name too long, the
            output is a folder: see :mod:`lte.atomic`).
    """
    p = Path(path)
    fmt = check_output_path(p)
    with atomic_path(p) as tmp:
        Image.fromarray(np.ascontiguousarray(img)).save(tmp, format=fmt)


def check_output_path(path: str | os.PathLike[str]) -> str:
    """PIL's format name for writing ``path``, after the checks that need no writing.

    Raises:
        UserError: ``path`` is a folder, its folder is missing, or its suffix is not an image format.
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if os.path.isdir(p):
        raise UserError(
            f"output '{p}' is a folder: give a file name inside it, e.g. '{p / 'out.png'}'"
        )
    if not parent.is_dir():
        raise UserError(f"output folder '{parent}' does not exist: create it first")
    fmt = Image.registered_extensions().get(p.suffix.lower())
    if fmt is None:
        raise UserError(f"output '{p}' has no image suffix: use .png, .jpg, .bmp, .tif or .webp")
    return fmt
