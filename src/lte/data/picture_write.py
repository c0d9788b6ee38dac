"""Writing a :class:`~lte.data.picture.Picture` back with what it came with: alpha, 16 bits, metadata.

8-bit files go through Pillow, with the ICC profile, the EXIF block, the DPI and the quality each
format can hold. 16-bit files Pillow cannot write in colour (it has no 16-bit RGB mode), so
16-bit PNG and TIFF are written here, by a few lines of ``zlib`` and ``struct`` following the PNG
and TIFF 6.0 specifications: PNG with the ``iCCP`` (profile), ``pHYs`` (DPI) and ``eXIf`` chunks,
rows filtered with the "Up" filter; TIFF little-endian, deflate-compressed in one strip, with the
profile (tag 34675) and the resolution, but without EXIF (a TIFF's EXIF is a second directory of
offsets; an 8-bit TIFF written by Pillow keeps it). Every write is atomic (:mod:`lte.atomic`).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from lte.atomic import atomic_path
from lte.data.picture import Picture, icc_space

#: ``--format`` names → Pillow's format and the file suffix.
FORMATS: dict[str, tuple[str, str]] = {
    "png": ("PNG", ".png"),
    "jpg": ("JPEG", ".jpg"),
    "webp": ("WEBP", ".webp"),
    "tif": ("TIFF", ".tif"),
}
#: Formats that hold 16-bit samples (written by this module).
SIXTEEN_BIT_FORMATS = ("PNG", "TIFF")
#: Formats that hold an alpha plane; any other drops it (``lte.upscale`` says so in one line).
ALPHA_FORMATS = ("PNG", "TIFF", "WEBP")
#: ``--quality`` default for JPEG and WebP: high, since the pixels are what the user came for.
DEFAULT_QUALITY = 95
#: Bytes of compressed data per PNG ``IDAT`` chunk.
_IDAT_BYTES = 1 << 20


def format_of(path: str | os.PathLike[str]) -> str | None:
    """Pillow's format name for ``path``'s suffix (``PNG``, ``JPEG``, ...), or ``None``."""
    return Image.registered_extensions().get(Path(path).suffix.lower())


def write_picture(
    pic: Picture, path: str | os.PathLike[str], *, bits: int = 8, quality: int = DEFAULT_QUALITY
) -> None:
    """Write ``pic`` to ``path`` atomically, in the format its suffix names, with ``bits`` (8 or 16)
    per sample. The alpha plane is written where the format holds one (:data:`ALPHA_FORMATS`),
    the ICC profile where it describes the written colours (an RGB profile on RGB, a grey one on
    grey), the EXIF and DPI where the format has a place for them.

    Raises:
        ValueError: ``bits`` 16 for a format not in :data:`SIXTEEN_BIT_FORMATS` (callers refuse
            it before any work, with a message for the user).
        UserError: the write fails for a reason the user can fix (:mod:`lte.atomic`).
    """
    fmt = format_of(path)
    if fmt is None:
        raise ValueError(f"no image format for {path}")
    alpha = pic.alpha if fmt in ALPHA_FORMATS else None
    colour = pic.colour
    if bits == 16 and fmt == "TIFF" and pic.grey and alpha is not None:
        colour = np.repeat(colour, 3, axis=-1)  # no reader Pillow has opens grey-alpha 16-bit TIFF
    planes = colour if alpha is None else np.concatenate([colour, alpha[..., None]], -1)
    icc = pic.icc if icc_space(pic.icc) == ("GRAY" if colour.shape[-1] == 1 else "RGB") else None
    exif = pic.exif.tobytes() if pic.exif is not None else None
    if bits == 16:
        if fmt not in SIXTEEN_BIT_FORMATS:
            raise ValueError(f"{fmt} files cannot hold 16-bit samples")
        samples = np.round(np.clip(planes, 0, 1) * 65535.0).astype(np.uint16)
        data = (
            _png16(samples, icc, pic.dpi, exif) if fmt == "PNG" else _tiff16(samples, icc, pic.dpi)
        )
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return
    samples8 = np.round(np.clip(planes, 0, 1) * 255.0).astype(np.uint8)
    img = Image.fromarray(samples8[..., 0] if samples8.shape[-1] == 1 else samples8)
    img = _mode_for(img, fmt)
    options: dict[str, object] = {}
    if icc is not None and img.mode in ("L", "LA", "RGB", "RGBA"):
        options["icc_profile"] = icc
    if exif is not None and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        options["exif"] = exif
    if pic.dpi is not None and fmt in ("PNG", "JPEG", "TIFF", "BMP"):
        options["dpi"] = pic.dpi
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = quality
    if fmt == "JPEG":
        options["subsampling"] = 0  # 4:4:4: keep the colour detail the upscale just made
    if fmt == "ICO":  # ICO stores a list of icon sizes by default; ask for the image's own
        options["sizes"] = [img.size]
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt, **options)


def _mode_for(img: Image.Image, fmt: str) -> Image.Image:
    """``img`` in a mode ``fmt`` can store: JPEG grey or RGB, WebP RGB(A), others as they are."""
    if fmt == "JPEG" and img.mode not in ("L", "RGB"):
        return img.convert("L" if img.mode == "LA" else "RGB")
    if fmt == "WEBP" and img.mode in ("L", "LA"):
        return img.convert("RGBA" if img.mode == "LA" else "RGB")
    if fmt not in ("PNG", "TIFF") and img.mode == "LA":
        return img.convert("RGBA")
    return img


# --- 16-bit PNG ------------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk: length, type, data, CRC-32 of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png16(
    samples: np.ndarray,
    icc: bytes | None,
    dpi: tuple[float, float] | None,
    exif: bytes | None,
) -> bytes:
    """``(H, W, C)`` uint16 (C: 1 grey, 2 grey-alpha, 3 RGB, 4 RGBA) as a 16-bit PNG file."""
    h, w, c = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = np.ascontiguousarray(samples, dtype=">u2").view(np.uint8).reshape(h, w * c * 2)
    # Filter "Up" (type 2): each byte minus the one above it, mod 256; the first row unfiltered.
    filtered = np.empty((h, 1 + w * c * 2), dtype=np.uint8)
    filtered[:, 0] = 2
    filtered[0, 0] = 0
    filtered[0, 1:] = rows[0]
    filtered[1:, 1:] = rows[1:] - rows[:-1]  # uint8 arithmetic wraps, as the filter asks
    data = zlib.compress(filtered.tobytes(), 6)
    out = [
        b"\x89PNG\r\n\x1a\n",
        _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)),
    ]
    if icc is not None:
        out.append(_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
    if dpi is not None:  # pixels per metre, unit 1 (metre)
        ppm = [max(1, round(d / 0.0254)) for d in dpi]
        out.append(_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    if exif is not None:
        out.append(_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    out += [_chunk(b"IDAT", data[i : i + _IDAT_BYTES]) for i in range(0, len(data), _IDAT_BYTES)]
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


# --- 16-bit TIFF -----------------------------------------------------------------------------------

_SHORT, _LONG, _RATIONAL, _UNDEFINED = 3, 4, 5, 7


def _tiff16(samples: np.ndarray, icc: bytes | None, dpi: tuple[float, float] | None) -> bytes:
    """``(H, W, C)`` uint16 as a little-endian, deflate-compressed, single-strip TIFF."""
    h, w, c = samples.shape
    strip = zlib.compress(np.ascontiguousarray(samples, dtype="<u2").tobytes(), 6)
    tags: list[tuple[int, int, list[int] | bytes]] = [
        (256, _LONG, [w]),
        (257, _LONG, [h]),
        (258, _SHORT, [16] * c),
        (259, _SHORT, [8]),  # Adobe deflate
        (262, _SHORT, [1 if c <= 2 else 2]),  # grey (min is black) or RGB
        (273, _LONG, [0]),  # the strip's offset, filled in below
        (277, _SHORT, [c]),
        (278, _LONG, [h]),
        (279, _LONG, [len(strip)]),
        (284, _SHORT, [1]),  # samples interleaved
    ]
    if dpi is not None:
        tags += [(282, _RATIONAL, _rational(dpi[0])), (283, _RATIONAL, _rational(dpi[1]))]
        tags.append((296, _SHORT, [2]))  # inch
    if c in (2, 4):
        tags.append((338, _SHORT, [2]))  # the extra sample is unassociated (straight) alpha
    if icc is not None:
        tags.append((34675, _UNDEFINED, icc))
    tags.sort(key=lambda t: t[0])
    # Layout: header (8), the strip, the directory, then the values too long for an entry.
    directory_at = 8 + len(strip) + (len(strip) & 1)
    extra_at = directory_at + 2 + 12 * len(tags) + 4
    entries, extra = b"", b""
    for tag, kind, values in tags:
        if tag == 273:
            values = [8]
        payload = values if isinstance(values, bytes) else _pack(kind, values)
        count = (
            len(values) // (2 if kind == _RATIONAL else 1)
            if not isinstance(values, bytes)
            else len(values)
        )
        if len(payload) <= 4:
            entries += struct.pack("<HHI", tag, kind, count) + payload.ljust(4, b"\x00")
        else:
            entries += struct.pack("<HHII", tag, kind, count, extra_at + len(extra))
            extra += payload + b"\x00" * (len(payload) & 1)
    header = b"II*\x00" + struct.pack("<I", directory_at)
    pad = b"\x00" * (len(strip) & 1)
    return header + strip + pad + struct.pack("<H", len(tags)) + entries + b"\x00" * 4 + extra


def _pack(kind: int, values: list[int]) -> bytes:
    fmt = {_SHORT: "H", _LONG: "I", _RATIONAL: "I"}[kind]
    return struct.pack(f"<{len(values)}{fmt}", *values)


def _rational(value: float) -> list[int]:
    """A positive number as a TIFF RATIONAL (numerator, denominator)."""
    return [max(1, round(value * 1000)), 1000]
