"""What a picture brings, it takes back: alpha without dark fringes, 16 bits, grey, ICC, EXIF, DPI.

Files are made from the bundled photos: a transparent frame with black under it (as many editors
save transparent pixels), 16-bit PNGs written sample by sample with every PNG row filter, a phone
JPEG with its EXIF orientation, a JPEG with an ICC profile. The command runs in-process through its
entry point (``cli.run_main``) with a tiny LTE checkpoint written to disk and read back.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

import lte.upscale
from cli import run_main
from conftest import sample_photos
from lte.checkpoint import load_checkpoint, save_lte
from lte.data.images import load_rgb
from lte.data.picture import Picture, read_picture
from lte.data.picture_write import write_picture
from lte.models import build_model
from lte.upscaling import SizeRule, UpscaleSettings, fill_transparent, upscale_picture


def upscale(*argv: str):
    return run_main(lte.upscale.main, argv, prog=lte.upscale.__file__)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("alpha") / "tiny.ckpt"
    save_lte(build_model("lte", "edsr_tiny"), path)
    return path


def photo(h: int = 32, w: int = 40, index: int = 0) -> np.ndarray:
    """A ``(h, w, 3)`` uint8 crop of a bundled photo."""
    return load_rgb(sample_photos()[index])[60 : 60 + h, 80 : 80 + w]


# --- 16-bit PNG, written byte by byte with each of the five row filters ---------------------------


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def literal_png16(samples: np.ndarray, colour_type: int) -> bytes:
    """A 16-bit PNG as the specification reads, row ``y`` filtered with filter ``y % 5``."""
    h, w, c = samples.shape
    bpp = 2 * c
    rows = [samples[y].astype(">u2").tobytes() for y in range(h)]
    out = b""
    for y, row in enumerate(rows):
        prev = rows[y - 1] if y else bytes(len(row))
        kind = y % 5
        line = bytearray([kind])
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b = prev[i]
            cc = prev[i - bpp] if i >= bpp else 0
            pred = [0, a, b, (a + b) // 2, _paeth(a, b, cc)][kind]
            line.append((x - pred) % 256)
        out += bytes(line)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(out))
        + chunk(b"IEND", b"")
    )


def sixteen_bit_photo(h: int = 20, w: int = 24) -> np.ndarray:
    """A real photo crop with low bytes that differ from the high ones (``(h, w, 3)`` uint16)."""
    hi = photo(h, w).astype(np.uint16)
    low = np.random.default_rng(1).integers(0, 256, hi.shape, dtype=np.uint16)
    return hi * 256 + low


@pytest.mark.parametrize(("channels", "colour_type"), [(3, 2), (4, 6), (2, 4)])
def test_sixteen_bit_png_is_read_exactly_through_every_filter(
    tmp_path: Path, channels: int, colour_type: int
) -> None:
    rgb = sixteen_bit_photo()
    extra = (np.arange(rgb.shape[0] * rgb.shape[1]).reshape(rgb.shape[:2]) * 997 % 65536).astype(
        np.uint16
    )
    planes = {3: rgb, 4: np.dstack([rgb, extra]), 2: np.dstack([rgb[..., 1], extra])}[channels]
    path = tmp_path / "sixteen.png"
    path.write_bytes(literal_png16(planes, colour_type))
    pic = read_picture(path)
    assert pic.bits == 16
    got = np.round(pic.colour * 65535).astype(np.int64)
    assert np.array_equal(got, planes[..., : 1 if channels == 2 else 3])
    if channels != 3:
        assert pic.alpha is not None
        assert np.array_equal(np.round(pic.alpha * 65535).astype(np.int64), extra)


@pytest.mark.parametrize("fmt", ["png", "tif"])
@pytest.mark.parametrize(
    ("grey", "alpha"), [(False, False), (False, True), (True, False), (True, True)]
)
def test_sixteen_bit_round_trip(tmp_path: Path, fmt: str, grey: bool, alpha: bool) -> None:
    rgb = sixteen_bit_photo().astype(np.float32) / 65535
    colour = rgb[..., 1:2] if grey else rgb
    plane = np.linspace(0, 1, rgb.shape[0] * rgb.shape[1], dtype=np.float32).reshape(rgb.shape[:2])
    pic = Picture(colour, plane if alpha else None, 16, dpi=(300.0, 72.0))
    path = tmp_path / f"o.{fmt}"
    write_picture(pic, path, bits=16)
    back = read_picture(path)
    assert back.bits == 16
    got = back.colour[..., :1] if grey else back.colour  # grey-alpha TIFF comes back as RGB
    assert np.array_equal(np.round(got * 65535), np.round(colour * 65535))
    if alpha:
        assert back.alpha is not None
        assert np.array_equal(np.round(back.alpha * 65535), np.round(plane * 65535))
    assert back.dpi is not None and np.allclose(back.dpi, (300, 72), rtol=1e-3)  # PNG: per metre


def test_upscale_keeps_sixteen_bits(ckpt: Path, tmp_path: Path) -> None:
    """The low bits reach the model, and the output holds more than 256 levels per channel."""
    full = sixteen_bit_photo()
    coarse = (full // 257) * 257  # the same picture at 8-bit precision, stored in 16 bits
    outs = {}
    for name, arr in (("full", full), ("coarse", coarse)):
        src = tmp_path / f"{name}.png"
        src.write_bytes(literal_png16(arr, 2))
        out = tmp_path / f"{name}_x2.png"
        res = upscale(str(src), str(out), "--ckpt", str(ckpt), "--scale", "2")
        assert res.returncode == 0, res.stderr
        outs[name] = read_picture(out)
        assert outs[name].bits == 16 and outs[name].colour.shape == (40, 48, 3)
    values = np.round(outs["full"].colour * 65535).astype(np.int64)
    assert np.mean(values % 257 != 0) > 0.9  # not 8-bit values scaled up
    assert np.abs(outs["full"].colour - outs["coarse"].colour).max() > 1e-4
    eight = tmp_path / "eight.png"
    res = upscale(
        str(tmp_path / "full.png"),
        str(eight),
        "--ckpt",
        str(ckpt),
        "--scale",
        "2",
        "--bit-depth",
        "8",
    )
    assert res.returncode == 0, res.stderr
    assert Image.open(eight).mode == "RGB"
    refused = upscale(
        str(tmp_path / "full.png"),
        str(tmp_path / "o.jpg"),
        "--ckpt",
        str(ckpt),
        "--scale",
        "2",
        "--bit-depth",
        "16",
    )
    assert refused.returncode == 2 and refused.stderr.startswith("error: --bit-depth 16: output ")
    assert "JPEG, which holds 8 bits per sample" in refused.stderr
    assert not (tmp_path / "o.jpg").exists()


def test_keep_grey(ckpt: Path, tmp_path: Path) -> None:
    grey16 = sixteen_bit_photo()[..., 1]
    src = tmp_path / "grey16.png"
    Image.fromarray(grey16).save(src)  # Pillow writes grey 16-bit itself (mode I;16)
    assert Image.open(src).mode == "I;16"
    kept, rgb = tmp_path / "kept.png", tmp_path / "rgb.png"
    assert (
        upscale(str(src), str(kept), "--ckpt", str(ckpt), "--scale", "2", "--keep-grey").returncode
        == 0
    )
    assert upscale(str(src), str(rgb), "--ckpt", str(ckpt), "--scale", "2").returncode == 0
    assert Image.open(kept).mode == "I;16"
    assert read_picture(rgb).colour.shape[-1] == 3 and read_picture(rgb).bits == 16
    mean = read_picture(rgb).colour.mean(-1)
    assert np.abs(read_picture(kept).colour[..., 0] - mean).max() < 1 / 65535 + 1e-6


# --- alpha ------------------------------------------------------------------------------------------

FRAME = 6


def framed(under: str) -> np.ndarray:
    """``(44, 52, 4)`` uint8: a photo whose outer 6 px are transparent; under them ``black`` (as
    editors save) or the photo's own pixels (``photo``, the colours a perfect fill would find)."""
    rgb = photo(44, 52).copy()
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[FRAME:-FRAME, FRAME:-FRAME] = 255
    if under == "black":
        rgb[alpha == 0] = 0
    return np.dstack([rgb, alpha])


def test_fill_continues_the_visible_colours() -> None:
    """Model-free: the filled ring just outside the photo has the photo's edge colours."""
    rgba = framed("black").astype(np.float32) / 255
    filled = fill_transparent(rgba[..., :3], rgba[..., 3])
    assert np.array_equal(filled[FRAME:-FRAME, FRAME:-FRAME], rgba[FRAME:-FRAME, FRAME:-FRAME, :3])
    outside = filled[FRAME - 1, FRAME:-FRAME]  # the row just above the photo
    edge = rgba[FRAME, FRAME:-FRAME, :3]  # the photo's top row
    black = np.abs(rgba[FRAME - 1, FRAME:-FRAME, :3] - edge).mean()  # what was under it
    assert np.abs(outside - edge).mean() < 0.2 * black  # the texture varies; the colours match
    assert np.abs(outside.mean(0) - edge.mean(0)).max() < 0.02


def test_transparent_border_leaves_no_dark_fringe(ckpt: Path, tmp_path: Path) -> None:
    """The upscaled photo's edge band is close to the same band upscaled with the whole photo
    around it (its true context), and far from what black under the frame gives when the alpha
    is simply dropped (the dark fringe). The colour under transparent pixels plays no part."""
    sources = {
        "black": framed("black"),
        "photo_under": framed("photo"),  # same alpha, the photo's colours under the frame
        "context": framed("photo")[..., :3],  # no frame at all: the reference
    }
    outs = {}
    for name, arr in sources.items():
        src = tmp_path / f"{name}.png"
        Image.fromarray(arr).save(src)
        out = tmp_path / f"{name}_x2.png"
        res = upscale(str(src), str(out), "--ckpt", str(ckpt), "--scale", "2")
        assert res.returncode == 0, res.stderr
        img = Image.open(out)
        assert img.mode == ("RGB" if name == "context" else "RGBA") and img.size == (104, 88)
        outs[name] = np.asarray(img).astype(np.float64)
    assert np.array_equal(outs["black"], outs["photo_under"])
    alpha = outs["black"][..., 3]
    assert alpha[:8].max() < 30 and alpha[20:-20, 20:-20].min() > 225  # the frame stays transparent
    band = np.zeros(alpha.shape, bool)  # the first 6 output pixels inside the photo
    inner = 2 * FRAME
    band[inner:-inner, inner:-inner] = True
    band[inner + 6 : -inner - 6, inner + 6 : -inner - 6] = False
    reference = outs["context"][band]
    ours = np.abs(outs["black"][..., :3][band] - reference).mean()
    # What the colour without the fill gives: black under the frame, straight into the model.
    model = load_checkpoint(ckpt).model.eval()
    plain = Picture(framed("black")[..., :3].astype(np.float32) / 255, None, 8)
    naive = upscale_picture(model, plain, (88, 104), UpscaleSettings(SizeRule(scale=2)))
    naive_band = np.round(naive.colour * 255)[band]
    theirs = np.abs(naive_band - reference).mean()
    assert ours < 0.5 * theirs, (ours, theirs)
    assert naive_band.mean() < reference.mean() - 5  # black bleeds dark into the edge
    assert abs(outs["black"][..., :3][band].mean() - reference.mean()) < 0.3 * (
        reference.mean() - naive_band.mean()
    )


def test_alpha_through_the_model_and_palette_transparency(ckpt: Path, tmp_path: Path) -> None:
    src = tmp_path / "framed.png"
    Image.fromarray(framed("black")).save(src)
    out = tmp_path / "model_alpha.png"
    res = upscale(str(src), str(out), "--ckpt", str(ckpt), "--scale", "2", "--alpha", "model")
    assert res.returncode == 0, res.stderr
    assert Image.open(out).mode == "RGBA"
    # A palette image whose index 0 is transparent: the transparency survives.
    pal = Image.fromarray(photo(32, 40)).convert("P", palette=Image.Palette.ADAPTIVE, colors=31)
    arr = np.asarray(pal).copy()
    arr[:5] = 31  # an index no photo pixel uses
    pal_img = Image.fromarray(arr, mode="P")
    pal_img.putpalette([*pal.getpalette(), 0, 0, 0])  # index 31: black, transparent
    pal_src = tmp_path / "palette.png"
    pal_img.save(pal_src, transparency=31)
    pal_out = tmp_path / "palette_x2.png"
    assert upscale(str(pal_src), str(pal_out), "--ckpt", str(ckpt), "--scale", "2").returncode == 0
    got = np.asarray(Image.open(pal_out))
    assert got.shape == (64, 80, 4) and got[:6, :, 3].max() < 30 and got[20:, :, 3].min() > 200
    # JPEG holds no alpha: written opaque, with one warning line.
    jpg = tmp_path / "framed.jpg"
    res = upscale(str(src), str(jpg), "--ckpt", str(ckpt), "--scale", "2")
    assert res.returncode == 0 and Image.open(jpg).mode == "RGB"
    assert [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")] == [
        f"warning: '{src}' has transparent pixels, and JPEG files hold no alpha: '{jpg}' is "
        "written opaque (use .png, .tif or .webp to keep it)"
    ]


# --- metadata --------------------------------------------------------------------------------------


def test_icc_exif_dpi_and_quality(ckpt: Path, tmp_path: Path) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, shown turned 90 degrees clockwise
    exif[0x010F] = "lte-test-camera"  # Make
    exif[0x011A], exif[0x011B], exif[0x0128] = 300, 150, 2  # the resolution, in inches
    src = tmp_path / "phone.jpg"
    Image.fromarray(photo(30, 40)).save(src, exif=exif, icc_profile=icc, dpi=(300, 150), quality=98)
    out = tmp_path / "phone_x2.png"
    res = upscale(str(src), str(out), "--ckpt", str(ckpt), "--size", "60x100")
    assert res.returncode == 0, res.stderr
    img = Image.open(out)
    assert img.size == (60, 100)  # upright: 30 wide, 40 tall, then --size
    assert img.info.get("icc_profile") == icc
    got = img.getexif()
    assert got.get(0x0112) == 1 and got.get(0x010F) == "lte-test-camera"
    # Upright, the input is 30 x 40 at 150 x 300 dpi (axes turned); the output 60 x 100. The
    # EXIF resolution says the same, now that its orientation is 1.
    assert float(got[0x011A]) == pytest.approx(150 * 2)
    assert float(got[0x011B]) == pytest.approx(300 * 2.5)
    assert np.allclose(img.info["dpi"], (150 * 2, 300 * 2.5), rtol=1e-3)
    sizes = {}
    for q in ("40", "95"):
        jpg = tmp_path / f"q{q}.jpg"
        assert (
            upscale(
                str(src), str(jpg), "--ckpt", str(ckpt), "--scale", "2", "--quality", q
            ).returncode
            == 0
        )
        sizes[q] = jpg.stat().st_size
        assert Image.open(jpg).info.get("icc_profile") == icc
        assert Image.open(jpg).getexif().get(0x0112) == 1
    assert sizes["40"] < sizes["95"]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_as_pillow_turns_it(tmp_path: Path, orientation: int) -> None:
    """read_picture turns the pixels itself (16-bit files too); it must agree with Pillow's
    ``ImageOps.exif_transpose`` on all eight orientations."""
    from PIL import ImageOps

    exif = Image.Exif()
    exif[0x0112] = orientation
    src = tmp_path / "o.png"
    Image.fromarray(photo(20, 30)).save(src, exif=exif)
    pic = read_picture(src)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(src)).convert("RGB"))
    assert np.array_equal(np.round(pic.colour * 255).astype(np.uint8), expected)
    assert pic.exif is not None and pic.exif.get(0x0112) == 1
