"""Images as people see them (EXIF orientation) and the pixel limit checked before decoding.

Files are real: crops of the bundled photos saved by Pillow with an EXIF orientation tag, and a real
PNG whose header (IHDR) is patched to claim a huge size, with a valid CRC so every reader believes it.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import sample_photos
from lte.data.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    MAX_PIXELS_ENV,
    image_size,
    load_rgb,
    max_image_pixels,
    parse_pixel_limit,
)
from lte.errors import UserError


def crop(w: int = 40, h: int = 30) -> Image.Image:
    """A ``w x h`` crop of a real photo: landscape, with no symmetry that would hide a rotation."""
    return Image.open(sample_photos()[0]).convert("RGB").crop((100, 120, 100 + w, 120 + h))


def with_orientation(img: Image.Image, path: Path, orientation: int) -> Path:
    """Save ``img`` with the EXIF orientation tag set, as a phone camera does."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, exif=exif)
    return path


def patched_png(path: Path, width: int, height: int) -> Path:
    """A real small PNG whose IHDR claims ``width x height`` (CRC recomputed, so it is 'valid')."""
    crop(16, 16).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("orientation", "turns"),
    [(1, 0), (3, 2), (6, -1), (8, 1)],  # np.rot90 turns: 6 = rotate 90 deg clockwise to view
)
def test_exif_orientation_is_applied_to_jpeg(tmp_path: Path, orientation: int, turns: int) -> None:
    path = with_orientation(crop(), tmp_path / f"phone_{orientation}.jpg", orientation)
    with Image.open(path) as raw:  # the stored pixels, as a viewer ignoring EXIF would show them
        assert raw.getexif()[0x0112] == orientation
        stored = np.asarray(raw.convert("RGB"))
    assert stored.shape == (30, 40, 3)
    upright = load_rgb(path)
    assert np.array_equal(upright, np.rot90(stored, k=turns))
    assert image_size(path) == upright.shape[:2]  # header-only size agrees with the decoded image


def test_exif_orientation_is_applied_to_png(tmp_path: Path) -> None:
    img = crop()
    path = with_orientation(img, tmp_path / "rotated.png", 6)
    upright = load_rgb(path)
    assert np.array_equal(upright, np.rot90(np.asarray(img), k=-1))  # PNG is lossless: exact
    assert image_size(path) == (40, 30)


def test_huge_header_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = patched_png(tmp_path / "bomb.png", 90000, 90000)
    assert bomb.stat().st_size < 5000  # a few KB claiming 8.1e9 pixels (24 GB as RGB)
    for read in (load_rgb, image_size):
        with pytest.raises(UserError) as info:
            read(bomb)
        message = str(info.value)
        assert "bomb.png" in message and "90000x90000" in message and "8100000000" in message
        assert MAX_PIXELS_ENV in message and "--max-pixels" in message
        assert "\n" not in message


def test_pixel_limit_is_lifted_by_the_env_var_and_the_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3000x3000 claimed: under PIL's own guard, so only lte's limit decides.
    fake = patched_png(tmp_path / "claims_9mpx.png", 3000, 3000)
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000000")
    with pytest.raises(UserError, match="over the limit of 1000000"):
        load_rgb(fake)
    monkeypatch.setenv(MAX_PIXELS_ENV, "3000x3000")
    assert image_size(fake) == (3000, 3000)
    # Allowed, so it is decoded, and the truncated pixel data is the error now.
    with pytest.raises(UserError, match="cannot read image"):
        load_rgb(fake)
    # The argument wins over the environment (lte.upscale --max-pixels).
    with pytest.raises(UserError, match="over the limit of 100"):
        load_rgb(fake, max_pixels=100)
    photo = sample_photos()[0]
    with pytest.raises(UserError, match=f"'{photo}'"):
        load_rgb(photo, max_pixels=100)
    assert load_rgb(photo, max_pixels=10**9).ndim == 3


def test_pixel_limit_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS
    monkeypatch.setenv(MAX_PIXELS_ENV, "2e8")
    assert max_image_pixels() == 200_000_000
    assert max_image_pixels(5) == 5
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(UserError, match=MAX_PIXELS_ENV):
        max_image_pixels()
    assert parse_pixel_limit("20000x10000", "--max-pixels") == 200_000_000
    for bad in ("0", "-5", "1.5", "nan", "inf", "x", "10x"):
        with pytest.raises(UserError, match="--max-pixels"):
            parse_pixel_limit(bad, "--max-pixels")
