"""``python -m lte.upscale`` end to end on real photos, against the official demo's arithmetic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import sample_photos
from literal import LITERAL
from lte.checkpoint import save_official
from lte.geometry import make_coord
from lte.models import build_model


def run_upscale(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lte.upscale", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def small_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40×32 crop of a real photo, so full-size models run in a second."""
    img = Image.open(sample_photos()[0]).convert("RGB")
    path = tmp_path_factory.mktemp("photo") / "crop.png"
    img.crop((100, 100, 140, 132)).save(path)
    return path


@pytest.fixture(scope="module", params=["lte", "liif", "metasr"])
def official_ckpt(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    torch.manual_seed(1)
    net = build_model(request.param, "edsr_baseline")
    path = tmp_path_factory.mktemp("ckpt") / f"{request.param}.pth"
    save_official(net, path)
    return request.param, path


def official_demo(model_name: str, ckpt: Path, photo: Path, h: int, w: int) -> np.ndarray:
    """The released demo's steps, on the literal reference: cell 2/size, 30000-query chunks, ×255 truncated."""
    from lte.checkpoint import load_checkpoint

    net = load_checkpoint(ckpt).model
    img = (
        torch.from_numpy(np.array(Image.open(photo).convert("RGB"))).permute(2, 0, 1).float() / 255
    )
    inp = ((img - 0.5) / 0.5).unsqueeze(0)
    coord = make_coord((h, w)).unsqueeze(0)
    cell = torch.ones_like(coord)
    cell[:, :, 0] *= 2 / h
    cell[:, :, 1] *= 2 / w
    with torch.no_grad():
        preds = [
            LITERAL[model_name](net, inp, coord[:, i : i + 30000], cell[:, i : i + 30000])
            for i in range(0, h * w, 30000)
        ]
    pred = (torch.cat(preds, dim=1)[0] * 0.5 + 0.5).clamp(0, 1).view(h, w, 3)
    return pred.mul(255).byte().numpy()


def test_matches_the_official_demo_up_to_rounding(
    official_ckpt: tuple[str, Path], small_photo: Path, tmp_path: Path
) -> None:
    model_name, ckpt = official_ckpt
    out = tmp_path / "x3.png"
    result = run_upscale(
        str(small_photo), str(out), "--ckpt", str(ckpt), "--scale", "3", "--device", "cpu"
    )
    assert result.returncode == 0, result.stderr
    ours = np.asarray(Image.open(out))
    assert ours.shape == (96, 120, 3)
    theirs = official_demo(model_name, ckpt, small_photo, 96, 120)
    # The demo truncates (x.mul(255).byte()); we round: every pixel is equal or one level above.
    diff = ours.astype(int) - theirs.astype(int)
    assert diff.min() >= 0 and diff.max() <= 1


@pytest.mark.parametrize(("scale", "size"), [("2.5", (80, 100)), ("1.7", (54, 68))])
def test_output_size_is_rounded_scale(
    official_ckpt: tuple[str, Path],
    small_photo: Path,
    tmp_path: Path,
    scale: str,
    size: tuple[int, int],
) -> None:
    _, ckpt = official_ckpt
    out = tmp_path / "o.png"
    result = run_upscale(str(small_photo), str(out), "--ckpt", str(ckpt), "--scale", scale)
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == (size[1], size[0])  # PIL reports (W, H)


@pytest.mark.slow
def test_full_photo_with_exact_size_and_odd_modes(tmp_path: Path) -> None:
    """A whole real photo, anisotropic --size, and grey / palette / RGBA inputs becoming RGB."""
    torch.manual_seed(0)
    ckpt = tmp_path / "lte.pth"
    save_official(build_model("lte", "edsr_baseline"), ckpt)
    photo = Image.open(sample_photos()[0]).convert("RGB").resize((120, 90))
    variants = {
        "rgb.jpg": photo,
        "grey.png": photo.convert("L"),
        "palette.png": photo.convert("P", palette=Image.Palette.ADAPTIVE),
        "rgba.webp": photo.convert("RGBA"),
    }
    for name, img in variants.items():
        src = tmp_path / name
        img.save(src)
        out = tmp_path / f"out_{Path(name).stem}.png"
        result = run_upscale(
            str(src), str(out), "--ckpt", str(ckpt), "--size", "250x131", "--chunk", "5000"
        )
        assert result.returncode == 0, (name, result.stderr)
        got = Image.open(out)
        assert got.size == (250, 131) and got.mode == "RGB", name
    grey = np.asarray(Image.open(tmp_path / "out_grey.png")).astype(int)
    assert (
        np.abs(grey - np.asarray(Image.open(tmp_path / "out_rgb.png"))).mean() < 40
    )  # same picture


def test_errors_are_one_line_with_exit_2(small_photo: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "lte.pth"
    save_official(build_model("lte", "edsr_baseline"), ckpt)
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    bad_ckpt = tmp_path / "bad.pth"
    bad_ckpt.write_bytes(b"\x00" * 100)
    ok = [str(small_photo), str(tmp_path / "o.png")]
    cases = {
        "does not exist": [
            str(tmp_path / "nope.png"),
            str(tmp_path / "o.png"),
            "--ckpt",
            str(ckpt),
            "--scale",
            "2",
        ],
        "not an image": [
            str(not_image),
            str(tmp_path / "o.png"),
            "--ckpt",
            str(ckpt),
            "--scale",
            "2",
        ],
        "--scale must be a positive": [*ok, "--ckpt", str(ckpt), "--scale", "0"],
        "is not WIDTHxHEIGHT": [*ok, "--ckpt", str(ckpt), "--size", "big"],
        "positive width and height": [*ok, "--ckpt", str(ckpt), "--size", "0x10"],
        "cannot read checkpoint": [*ok, "--ckpt", str(bad_ckpt), "--scale", "2"],
        "output folder": [
            str(small_photo),
            str(tmp_path / "missing" / "o.png"),
            "--ckpt",
            str(ckpt),
            "--scale",
            "2",
        ],
        "not allowed with argument": [*ok, "--ckpt", str(ckpt), "--scale", "2", "--size", "10x10"],
        "--chunk must be": [*ok, "--ckpt", str(ckpt), "--scale", "2", "--chunk", "0"],
    }
    for message, args in cases.items():
        result = run_upscale(*args)
        assert result.returncode == 2, (message, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (
            message,
            result.stderr,
        )
        assert "Traceback" not in result.stderr


def test_phone_photo_comes_out_upright(official_ckpt: tuple[str, Path], tmp_path: Path) -> None:
    """A JPEG stored sideways with EXIF orientation 6 is upscaled as it is seen: upright."""
    model_name, ckpt = official_ckpt
    if model_name != "lte":
        pytest.skip("the orientation is read before the model runs: one model is enough")
    from lte.data.images import load_rgb

    sideways = Image.open(sample_photos()[0]).convert("RGB").crop((100, 100, 140, 130))  # 40x30
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view", as phones write portrait photos
    phone = tmp_path / "phone.jpg"
    sideways.save(phone, exif=exif)
    upright = tmp_path / "upright.png"  # the same pixels, already turned: lossless, no EXIF
    Image.fromarray(np.rot90(np.asarray(Image.open(phone).convert("RGB")), k=-1)).save(upright)
    assert load_rgb(phone).shape == (40, 30, 3)
    outs = []
    for src in (phone, upright):
        out = tmp_path / f"{src.stem}_x2.png"
        result = run_upscale(str(src), str(out), "--ckpt", str(ckpt), "--scale", "2")
        assert result.returncode == 0, result.stderr
        outs.append(np.asarray(Image.open(out)))
    assert outs[0].shape == (80, 60, 3)  # portrait, as the phone showed it
    assert np.array_equal(outs[0], outs[1])
