"""Reading an image for ``lte.upscale`` with everything a user expects back: alpha, 16 bits, metadata.

Training and evaluation read 8-bit RGB (:func:`lte.data.images.load_rgb`), as the papers do.
Upscaling someone's picture must give back what they gave: a transparent logo stays transparent, a
16-bit scan keeps its precision, a grey scan can stay grey, and the colour profile, EXIF and DPI
travel with it. :func:`read_picture` reads all of it into a :class:`Picture` (float32 planes in
[0, 1], the EXIF orientation applied) and :mod:`lte.data.picture_write` writes one back.

16-bit colour. Pillow has no 16-bit RGB mode: it opens 16-bit RGB(A) PNG and TIFF files as 8-bit,
keeping each sample's high byte. Its decoders (zlib and PNG unfiltering in C, libtiff) still see
every byte, so the file is decoded twice, the second time with the byte order of the unpacker
swapped, which keeps each sample's low byte: ``high·256 + low`` is the exact 16-bit value
(:func:`_sixteen_bits`; tested against files written sample by sample). Grey 16-bit (``I;16``)
Pillow reads natively. No other dependency is needed.
"""

from __future__ import annotations

import numbers
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from lte.data.images import _check_size, _exists, _open_header, max_image_pixels
from lte.errors import UserError

#: EXIF tags lte rewrites: the orientation (reset to 1 once applied), the resolution in IFD0 and
#: the pixel size in the Exif sub-IFD (both follow the output's size).
ORIENTATION, X_RESOLUTION, Y_RESOLUTION = 0x0112, 0x011A, 0x011B
EXIF_IFD, PIXEL_X, PIXEL_Y = 0x8769, 0xA002, 0xA003

#: Unpackers of 16-bit colour files, and the unpacker that keeps the other byte of each sample.
_LOW_BYTE = {
    "RGB;16B": "RGB;16L",
    "RGBA;16B": "RGBA;16L",
    "RGB;16L": "RGB;16B",
    "RGBA;16L": "RGBA;16B",
    "RGB;16N": "RGB;16B" if sys.byteorder == "little" else "RGB;16L",
    "RGBA;16N": "RGBA;16B" if sys.byteorder == "little" else "RGBA;16L",
}
#: 16-bit grey with alpha: 4 bytes a pixel, which Pillow's 8-bit RGBA unpacker passes through whole.
_LA16 = "LA;16B"


@dataclass(frozen=True)
class Picture:
    """An upright image as float32 planes, with what its file said about it.

    Args:
        colour: ``(H, W, C)`` float32 in [0, 1]; ``C`` is 1 (grey) or 3 (RGB).
        alpha: ``(H, W)`` float32 in [0, 1] (straight, not premultiplied), or ``None`` when the file
            has none or it is opaque everywhere (an opaque plane holds nothing to keep).
        bits: 8 or 16, the precision of the file's samples (16 for 32-bit and float files too).
        icc: the ICC profile, or ``None``; :func:`icc_space` says which colours it describes.
        exif: the EXIF block (orientation already applied and reset to 1), or ``None``.
        dpi: ``(x, y)`` dots per inch of the upright image, or ``None``.
        format: Pillow's name of the file's format (``PNG``, ``JPEG``, ...).
    """

    colour: np.ndarray
    alpha: np.ndarray | None
    bits: int
    icc: bytes | None = None
    exif: Image.Exif | None = None
    dpi: tuple[float, float] | None = None
    format: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.colour.shape[0], self.colour.shape[1]

    @property
    def grey(self) -> bool:
        return self.colour.shape[-1] == 1

    def resized_metadata(self, out_hw: tuple[int, int]) -> Picture:
        """This picture's metadata for an ``out_hw`` version of it: the DPI (in the file and in
        the EXIF) scaled per axis so the printed size stays the same, the EXIF pixel size set."""
        (h, w), (out_h, out_w) = self.size, out_hw
        fy, fx = out_h / h, out_w / w
        dpi = None if self.dpi is None else (self.dpi[0] * fx, self.dpi[1] * fy)
        exif = None
        if self.exif is not None:
            exif = Image.Exif()
            exif.load(self.exif.tobytes())
            for tag, factor in ((X_RESOLUTION, fx), (Y_RESOLUTION, fy)):
                if isinstance(exif.get(tag), numbers.Real) and exif[tag] > 0:  # IFDRational too
                    exif[tag] = float(exif[tag]) * factor
            sub = exif.get_ifd(EXIF_IFD)
            if PIXEL_X in sub or PIXEL_Y in sub:
                sub[PIXEL_X], sub[PIXEL_Y] = out_w, out_h
        return replace(self, dpi=dpi, exif=exif)


def icc_space(icc: bytes | None) -> str | None:
    """The colour space an ICC profile describes: ``RGB``, ``GRAY``, ``CMYK``, ... (header bytes
    16-20), or ``None``. A profile only fits pixels of its own space."""
    if icc is None or len(icc) < 20:
        return None
    return icc[16:20].decode("ascii", errors="replace").strip()


def read_picture(path: str | os.PathLike[str], max_pixels: int | None = None) -> Picture:
    """Read ``path`` as a :class:`Picture`, upright as its EXIF orientation says.

    Grey (``1``, ``L``, 16-bit ``I;16``) stays one channel; palette, CMYK, YCbCr and other modes
    become RGB (CMYK through its ICC profile into sRGB when it has one); alpha (``RGBA``, ``LA``,
    ``PA``, a palette or colour key with ``transparency``) is kept. The header is checked against
    the pixel limit (:func:`lte.data.images.max_image_pixels`) before decoding.

    Raises:
        UserError: missing, not a regular file, not an image, truncated or over the pixel limit.
    """
    p = Path(path)
    _exists(p)
    try:
        with _open_header(p) as img:
            _check_size(p, img, max_image_pixels(max_pixels))
            full = _sixteen_bits(p, img)  # 16-bit colour, or None: loads img either way
            colour, alpha, bits, icc = _planes(img, full)
            exif = img.getexif()
            orientation = int(exif.get(ORIENTATION, 1) or 1)
            dpi = img.info.get("dpi")
            fmt = img.format
    except UnidentifiedImageError:
        raise UserError(f"'{p}' is not an image PIL can read (png, jpg, bmp, tif, webp)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise UserError(f"cannot read image '{p}': {err} (is the file truncated?)") from None
    colour = upright(colour, orientation)
    alpha = None if alpha is None else upright(alpha, orientation)
    if dpi is not None and orientation >= 5:  # a quarter turn swaps the axes
        dpi = (dpi[1], dpi[0])
    if orientation >= 5 and X_RESOLUTION in exif and Y_RESOLUTION in exif:
        exif[X_RESOLUTION], exif[Y_RESOLUTION] = exif[Y_RESOLUTION], exif[X_RESOLUTION]
    if ORIENTATION in exif:
        exif[ORIENTATION] = 1  # the pixels are upright now, and so are the resolution's axes
    valid_dpi = dpi is not None and all(float(d) > 0 for d in dpi)
    return Picture(
        colour=np.ascontiguousarray(colour),
        alpha=None if alpha is None else np.ascontiguousarray(alpha),
        bits=bits,
        icc=icc,
        exif=exif if len(exif) else None,
        dpi=(float(dpi[0]), float(dpi[1])) if valid_dpi else None,  # type: ignore[index]
        format=fmt,
    )


def upright(a: np.ndarray, orientation: int) -> np.ndarray:
    """``(H, W, ...)`` turned as EXIF ``orientation`` (1-8) asks, as ``ImageOps.exif_transpose``."""
    if orientation in (2, 4, 5, 7):  # the mirrored ones: undo the mirror first
        a = a[:, ::-1]
    turns = {3: 2, 4: 2, 5: 1, 6: -1, 7: -1, 8: 1}.get(orientation, 0)
    return np.rot90(a, turns, axes=(0, 1)) if turns else a


def _sixteen_bits(p: Path, img: Image.Image) -> np.ndarray | None:
    """Load ``img``; for a 16-bit colour file Pillow reads as 8-bit, return its exact samples as
    ``(H, W, C)`` float in [0, 1] (grey-alpha, RGB or RGBA); ``None`` for any other file.

    RGB(A): the normal decode keeps each sample's high byte; a second decode with the unpacker's
    byte order swapped keeps the low one. Grey-alpha (4 bytes a pixel): one decode through the
    8-bit RGBA unpacker passes the four bytes through as they are.
    """
    tiles = img.tile
    rawmodes = {_rawmode(t) for t in tiles}
    rawmode = next(iter(rawmodes)) if len(rawmodes) == 1 else None
    if img.mode != "RGBA" or rawmode != _LA16:
        if rawmode not in _LOW_BYTE or img.mode not in ("RGB", "RGBA"):
            img.load()
            return None
        img.load()
        high = np.asarray(img).astype(np.float32)
        with _open_header(p) as again:
            again.tile = [_with_rawmode(t, _LOW_BYTE[rawmode]) for t in again.tile]
            again.load()
            low = np.asarray(again).astype(np.float32)
        return (high * 256 + low) / 65535.0
    img.tile = [_with_rawmode(t, "RGBA") for t in tiles]
    img.load()
    raw = np.asarray(img).astype(np.float32)  # (H, W, 4): grey high, low, alpha high, low
    grey_alpha = np.stack([raw[..., 0] * 256 + raw[..., 1], raw[..., 2] * 256 + raw[..., 3]], -1)
    return grey_alpha / 65535.0


def _rawmode(tile: object) -> str:
    args = tile.args  # type: ignore[attr-defined]
    return args[0] if isinstance(args, tuple) else args


def _with_rawmode(tile: object, rawmode: str) -> object:
    args = tile.args  # type: ignore[attr-defined]
    new = (rawmode, *args[1:]) if isinstance(args, tuple) else rawmode
    return tile._replace(args=new)  # type: ignore[attr-defined]


def _planes(
    img: Image.Image, full: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None, int, bytes | None]:
    """``(colour (H, W, C), alpha (H, W) or None, bits, icc)`` of a loaded image, in [0, 1];
    ``full`` is :func:`_sixteen_bits`'s exact samples when the file holds 16-bit colour."""
    icc = img.info.get("icc_profile") or None
    mode = img.mode
    if full is not None:
        if full.shape[-1] == 3:
            return full, None, 16, icc
        return _split(full, 16, icc)
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img.convert("I"), dtype=np.float64)
        sixteen = mode.startswith("I;16") or (arr.size > 0 and arr.max() > 255)
        peak = 65535.0 if sixteen else 255.0
        return np.clip(arr / peak, 0, 1).astype(np.float32)[..., None], None, 16, icc
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 1.0 if arr.size == 0 or arr.max() <= 1.0 else 1 / 255.0
        return np.clip(arr * scale, 0, 1).astype(np.float32)[..., None], None, 16, icc
    if mode == "CMYK":
        img, icc = _cmyk_to_rgb(img, icc)
        mode = "RGB"
    if mode in ("1", "L"):
        if "transparency" in img.info:
            return _split(_unit(img.convert("LA")), 8, icc)
        return _unit(img.convert("L")), None, 8, icc
    if mode in ("LA", "La"):
        return _split(_unit(img.convert("LA")), 8, icc)
    if mode in ("RGBA", "RGBa", "PA") or "transparency" in img.info:
        return _split(_unit(img.convert("RGBA")), 8, icc)
    return _unit(img.convert("RGB")), None, 8, icc


def _unit(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img, dtype=np.float32)
    return arr / 255.0 if arr.ndim == 3 else (arr / 255.0)[..., None]


def _split(
    arr: np.ndarray, bits: int, icc: bytes | None
) -> tuple[np.ndarray, np.ndarray | None, int, bytes | None]:
    """``(H, W, C+1)`` → colour and alpha, the alpha dropped when it is opaque everywhere."""
    colour, alpha = arr[..., :-1], arr[..., -1]
    if alpha.size == 0 or bool((alpha >= 1.0).all()):
        return colour, None, bits, icc
    return colour, alpha, bits, icc


def _cmyk_to_rgb(img: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """CMYK through its own profile into sRGB (the result carries the sRGB profile); without a
    profile, Pillow's plain conversion and no profile."""
    if icc is not None and icc_space(icc) == "CMYK":
        try:
            import io

            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            rgb = ImageCms.profileToProfile(img, source, srgb, outputMode="RGB")
            assert rgb is not None
            return rgb, srgb.tobytes()
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: fall through to the plain conversion
    return img.convert("RGB"), None
