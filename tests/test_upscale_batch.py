"""``lte.upscale IN OUT`` with a folder or a glob pattern: a real mixed folder, run twice, stopped
with a real SIGINT and resumed, and every refusal in one line before any work.

The folder holds what users have: an RGBA photo with a transparent border, a 16-bit PNG, a grey
PNG, a CMYK JPEG, a phone JPEG stored sideways, a corrupt file, and a sub-folder. Runs go through
the entry point in-process (``cli.run_main``), the interrupted one in a subprocess of its own
process group, as a terminal's Ctrl-C reaches it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lte.upscale
from cli import run_main, snapshot
from conftest import sample_photos
from lte.checkpoint import save_lte
from lte.data.images import load_rgb
from lte.data.picture import read_picture
from lte.models import build_model
from lte.upscaling import SizeRule
from test_alpha_bitdepth import literal_png16, sixteen_bit_photo


def upscale(*argv: str, cwd: Path | None = None):
    kwargs = {} if cwd is None else {"cwd": cwd}
    return run_main(lte.upscale.main, argv, prog=lte.upscale.__file__, **kwargs)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("batch") / "tiny.ckpt"
    save_lte(build_model("lte", "edsr_tiny"), path)
    return path


def crop(index: int, h: int = 24, w: int = 32) -> np.ndarray:
    return load_rgb(sample_photos()[index])[40 : 40 + h, 50 : 50 + w]


def mixed_folder(root: Path) -> Path:
    """The folder a user brings: seven files of six kinds, one of them broken, one nested."""
    folder = root / "in"
    (folder / "sub").mkdir(parents=True)
    rgba = np.dstack([crop(0), np.full((24, 32), 255, np.uint8)])
    rgba[:4, :, 3] = rgba[:, :4, 3] = 0
    rgba[rgba[..., 3] == 0, :3] = 0  # black under the transparent border
    Image.fromarray(rgba).save(folder / "border.png")
    (folder / "sixteen.png").write_bytes(literal_png16(sixteen_bit_photo(24, 32), 2))
    Image.fromarray(crop(1)).convert("L").save(folder / "grey.png")
    Image.fromarray(crop(2)).convert("CMYK").save(folder / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(crop(3)).save(folder / "phone.jpg", exif=exif)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    Image.fromarray(crop(4)).save(folder / "sub" / "nested.png")
    (folder / "notes.txt").write_text("not an image: never looked at")
    (folder / ".hidden.png").write_bytes(b"a hidden file: never looked at")
    return folder


def summary(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("upscaled ")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_mixed_folder_twice(ckpt: Path, tmp_path: Path) -> None:
    folder = mixed_folder(tmp_path)
    out = tmp_path / "out"
    before = snapshot(folder)
    args = [str(folder), str(out), "--ckpt", str(ckpt), "--scale", "2", "--recursive"]
    res = upscale(*args)
    assert res.returncode == 1, res.stderr  # one file failed
    failed = [ln for ln in res.stderr.splitlines() if ln.startswith("failed:")]
    assert len(failed) == 1 and "corrupt.png" in failed[0], res.stderr
    assert "Traceback" not in res.stderr
    assert summary(res.stderr).startswith(
        f"upscaled 6, skipped 0 (already in '{out}'), failed 1, of 7 files in "
    )
    assert snapshot(folder) == before  # inputs untouched
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert made == [
        "border.png",
        "cmyk.jpg",
        "grey.png",
        "phone.jpg",
        "sixteen.png",
        "sub/nested.png",
    ]
    assert Image.open(out / "border.png").mode == "RGBA"
    assert read_picture(out / "sixteen.png").bits == 16
    assert Image.open(out / "grey.png").mode == "RGB"
    assert Image.open(out / "cmyk.jpg").mode == "RGB"
    phone = Image.open(out / "phone.jpg")
    assert phone.size == (48, 64) and phone.getexif().get(0x0112) == 1  # upright, 2 x (24 x 32)
    # Again: everything there is kept, only the broken file fails again.
    outputs = snapshot(out)
    again = upscale(*args)
    assert again.returncode == 1
    assert summary(again.stderr).startswith("upscaled 0, skipped 6 (already in ")
    assert snapshot(out) == outputs
    # --overwrite redoes them (same pixels: same model, same inputs).
    redo = upscale(*args, "--overwrite", "--no-progress")
    assert summary(redo.stderr).startswith("upscaled 6, skipped 0")
    assert "upscaling" not in redo.stderr.replace("upscaled", "")


def test_names_formats_patterns_and_sizes(ckpt: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(crop(i, 20, 30)).save(folder / f"p{i}.png")
    Image.fromarray(crop(5, 30, 20)).save(folder / "tall.jpg")
    out = tmp_path / "out"
    res = upscale(
        str(folder / "p*.png"),
        str(out),
        "--ckpt",
        str(ckpt),
        "--long-side",
        "45",
        "--suffix",
        "_big",
        "--format",
        "jpg",
        "--quality",
        "90",
    )
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["p0_big.jpg", "p1_big.jpg", "p2_big.jpg"]
    assert Image.open(out / "p0_big.jpg").size == (45, 30)  # 30x20 -> long side 45, 20 x 1.5
    fit = tmp_path / "fit"
    assert upscale(str(folder), str(fit), "--ckpt", str(ckpt), "--fit", "64x64").returncode == 0
    assert Image.open(fit / "p1.png").size == (64, 43)  # s = 64/30: 20 x 2.133 = 42.67 -> 43
    assert Image.open(fit / "tall.jpg").size == (43, 64)
    # The output folder inside the input folder is never read back as input.
    inner = folder / "results"
    assert (
        upscale(
            str(folder), str(inner), "--ckpt", str(ckpt), "--scale", "1.5", "--recursive"
        ).returncode
        == 0
    )
    again = upscale(str(folder), str(inner), "--ckpt", str(ckpt), "--scale", "1.5", "--recursive")
    assert summary(again.stderr).startswith("upscaled 0, skipped 4 ")


@pytest.mark.parametrize(
    ("h", "w", "rule", "expected"),
    [
        (32, 40, SizeRule(fit=(100, 100)), (80, 100)),
        (40, 32, SizeRule(fit=(1080, 1920)), (1080, 864)),
        (33, 40, SizeRule(fit=(100, 300)), (100, 121)),  # 40 x 100/33 = 121.2
        (32, 40, SizeRule(long_side=101), (81, 101)),  # 32 x 2.525 = 80.8
        (41, 40, SizeRule(long_side=50), (50, 49)),  # 40 x 50/41 = 48.78
        (30, 20, SizeRule(scale=2.5), (75, 50)),
        (3, 5, SizeRule(fit=(7, 7)), (4, 7)),  # 3 x 1.4 = 4.2
    ],
)
def test_size_rules(h: int, w: int, rule: SizeRule, expected: tuple[int, int]) -> None:
    out = rule.output_size((h, w))
    assert out == expected
    if rule.fit is not None:
        assert out[0] <= rule.fit[0] and out[1] <= rule.fit[1]
        assert out[0] == rule.fit[0] or out[1] == rule.fit[1]


@pytest.mark.slow
def test_ctrl_c_then_resume(ckpt: Path, tmp_path: Path) -> None:
    """A real SIGINT to the process group after two files: one line, whole files only, and the
    same command finishes the rest."""
    from test_interrupts import interrupt, no_temp_files, start, the_line

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(8):
        Image.fromarray(load_rgb(sample_photos()[i])[:96, :96]).save(folder / f"photo{i}.png")
    out = tmp_path / "out"
    argv = [
        sys.executable,
        "-m",
        "lte.upscale",
        str(folder),
        str(out),
        "--ckpt",
        str(ckpt),
        "--scale",
        "4",
    ]

    def written() -> int:
        return len(list(out.glob("photo*.png"))) if out.is_dir() else 0

    status, _, err = interrupt(start(argv), lambda: written() >= 2)
    line = the_line(status, err)
    done = written()
    assert 2 <= done < 8
    assert line == (
        f"interrupted: {done} of 8 files done into '{out}'; run the same command again to finish"
    )
    no_temp_files(out)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    for p in out.iterdir():
        assert Image.open(p).size == (384, 384)  # every file there is whole
        Image.open(p).load()
    res = upscale(*argv[3:])
    assert res.returncode == 0, res.stderr
    assert summary(res.stderr).startswith(f"upscaled {8 - done}, skipped {done} ")
    assert written() == 8


def test_refusals_are_one_line_before_any_work(ckpt: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(crop(0)).save(folder / "a.png")
    Image.fromarray(crop(1)).save(folder / "a.jpg")
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.out").write_text("the user's")
    photo = folder / "a.png"
    ck = ["--ckpt", str(ckpt)]
    rows = {
        "output folder is a file": (
            [str(folder), str(tmp_path / "file.out"), *ck, "--scale", "2"],
            f"output folder '{tmp_path / 'file.out'}' is a file: give a folder for the images",
        ),
        "unknown --format": (
            [str(folder), str(tmp_path / "o"), *ck, "--scale", "2", "--format", "gif"],
            "argument --format: invalid choice: 'gif'",
        ),
        "--bit-depth 16 into JPEG": (
            [str(folder), str(tmp_path / "o"), *ck, "--scale", "2", "--format", "jpg", "--bit-depth", "16"],
            "--bit-depth 16: ",
        ),
        "name clash": (
            [str(folder), str(tmp_path / "o"), *ck, "--scale", "2", "--format", "png"],
            f"'{folder / 'a.jpg'}' and '{folder / 'a.png'}' would both be written to '{tmp_path / 'o' / 'a.png'}'",
        ),
        "output replaces an input": (
            [str(folder), str(folder), *ck, "--scale", "2"],
            "would replace the input image",
        ),
        "--fit 0x0": ([str(folder), str(tmp_path / "o"), *ck, "--fit", "0x0"], "--fit '0x0' must have a positive width and height"),
        "--fit text": ([str(folder), str(tmp_path / "o"), *ck, "--fit", "big"], "--fit 'big' is not WIDTHxHEIGHT"),
        "--long-side 0": ([str(folder), str(tmp_path / "o"), *ck, "--long-side", "0"], "--long-side must be a positive number of pixels, got 0"),
        "--quality 0": ([str(folder), str(tmp_path / "o"), *ck, "--scale", "2", "--quality", "0"], "--quality must be from 1 to 100, got 0"),
        "--ensemble 2": ([str(folder), str(tmp_path / "o"), *ck, "--scale", "2", "--ensemble", "2"], "argument --ensemble: invalid choice: 2"),
        "no images": ([str(tmp_path / "empty"), str(tmp_path / "o"), *ck, "--scale", "2"], "holds no image"),
        "pattern matches nothing": ([str(folder / "*.webp"), str(tmp_path / "o"), *ck, "--scale", "2"], "holds no image"),
        "--suffix with one file": ([str(photo), str(tmp_path / "o.png"), *ck, "--scale", "2", "--suffix", "_x2"], "--suffix names the files written into an output folder"),
        "pattern into one file": ([str(folder / "*.png"), str(tmp_path / "o.png"), *ck, "--scale", "2"], "names many images, and output"),
        "--recursive with one file": ([str(photo), str(tmp_path / "o.png"), *ck, "--scale", "2", "--recursive"], "--recursive needs a folder or a pattern"),
        "one file, --bit-depth 16 .webp": ([str(photo), str(tmp_path / "o.webp"), *ck, "--scale", "2", "--bit-depth", "16"], "is WEBP, which holds 8 bits per sample"),
        "missing checkpoint": ([str(folder), str(tmp_path / "o"), "--ckpt", str(tmp_path / "none.pth"), "--scale", "2", "--format", "same"], "does not exist"),
    }  # fmt: skip
    before = snapshot(tmp_path)
    for name, (argv, message) in rows.items():
        res = upscale(*argv)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2, (name, res.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, res.stderr)
        assert message in lines[0], (name, lines[0])
        assert snapshot(tmp_path) == before, name  # nothing made, nothing changed


def test_fixed_scale_model_in_a_batch(tmp_path: Path) -> None:
    ckpt = tmp_path / "x2.ckpt"
    save_lte(build_model("nearest", "edsr_tiny", ["encoder.upscale=2"]), ckpt)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(crop(0)).save(folder / "a.png")
    res = upscale(str(folder), str(tmp_path / "o"), "--ckpt", str(ckpt), "--scale", "3")
    assert res.returncode == 2 and "fixed-scale model with native scale x2" in res.stderr
    assert not (tmp_path / "o").exists()
    ok = upscale(
        str(folder), str(tmp_path / "o"), "--ckpt", str(ckpt), "--scale", "2", "--ensemble", "8"
    )
    assert ok.returncode == 0, ok.stderr
    assert Image.open(tmp_path / "o" / "a.png").size == (64, 48)
