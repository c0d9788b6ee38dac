"""Evaluation's messages: what is wrong is said before any work, naming the image, scale or folder.

- a scale too large for a test image (an empty LR, or nothing left after the protocol's shave)
  names the image, its size and the scale, and the largest scale the whole set allows;
- a ``testset.lr_dir`` that does not exist is an error, not a silent switch to on-the-fly LR;
- an input image that is a FIFO, a device or a socket is refused at once (never read, never blocks);
- ``evaluate_testset`` hands each (set, scale) record over as soon as it is complete, which is
  what lets ``lte.test`` keep finished records when it is stopped (``tests/test_interrupts.py``).

Rows go through the real entry points (``lte.test``, ``lte.upscale``) in-process; the FIFO row also
in a subprocess with a time limit, since a blocking read would hang the test run itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import lte.test
import lte.upscale
from cli import run_main
from conftest import sample_photos
from lte.checkpoint import save_lte
from lte.cli.test import main as lte_test_main
from lte.cli.upscale import main as upscale_main
from lte.data.images import image_size, load_rgb
from lte.errors import UserError
from lte.evaluation import BICUBIC, evaluate_testset
from lte.models import build_model
from lte.testsets import FolderSet, largest_scale, scale_problem

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A checkpoint, a folder of two crops (512x512 and 300x200) and a small photo."""
    root = tmp_path_factory.mktemp("eval_messages")
    save_lte(build_model("lte", "edsr_tiny"), root / "tiny.ckpt")
    hr = root / "set" / "HR"
    hr.mkdir(parents=True)
    Image.open(sample_photos()[0]).convert("RGB").crop((0, 0, 512, 512)).save(hr / "baby.png")
    Image.open(sample_photos()[1]).convert("RGB").crop((0, 0, 300, 200)).save(hr / "bird.png")
    photo = root / "photo.png"
    Image.open(sample_photos()[0]).convert("RGB").crop((0, 0, 40, 32)).save(photo)
    return {"root": root, "ckpt": root / "tiny.ckpt", "hr": hr, "photo": photo}


def one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0].removeprefix("error: ")


def lte_test(world: dict[str, Path], tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [
        f"ckpt={world['ckpt']}",
        "testset=folder",
        f"testset.hr_dir={world['hr']}",
        f"results_file={tmp_path / 'r.json'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        *args,
    ]
    return run_main(lte_test_main, argv, prog=lte.test.__file__)


# --- a scale too large for an image -------------------------------------------------------------


def test_scale_with_an_empty_lr_names_image_size_and_scale(
    world: dict[str, Path], tmp_path: Path
) -> None:
    line = one_error_line(lte_test(world, tmp_path, "scales=[2,1000]"))
    # baby.png is the first image, so the first named; bird.png (300x200) bounds the set: x66.
    assert line == (
        f"image '{world['hr'] / 'baby.png'}' (512x512) is too small for x1000: its LR would be "
        "0x0 px; use scales up to x66 for this test set"
    )
    assert not (tmp_path / "r.json").exists()  # refused before any work


def test_scale_leaving_nothing_after_the_shave(world: dict[str, Path], tmp_path: Path) -> None:
    line = one_error_line(lte_test(world, tmp_path, "scales=[80]"))
    assert line == (
        f"image '{world['hr'] / 'bird.png'}' (300x200) is too small for x80: shaving 80 px per "
        "border (benchmark protocol) leaves nothing of its 240x160 px crop; use scales up to x66 "
        "for this test set"
    )
    # The advice is right: x66 is scored, x67 is not.
    assert scale_problem((200, 300), 66, "benchmark") is None
    assert scale_problem((200, 300), 67, "benchmark") is not None


def test_largest_scale_follows_the_protocol() -> None:
    assert largest_scale((200, 300), "benchmark") == 66  # floor(200/s)*s > 2s
    assert largest_scale((30, 30), "div2k") == 7  # floor(30/s)*s > 2(s+6): 28 > 26 at x7
    assert largest_scale((2, 2), "benchmark") == 0  # no scale leaves a pixel after shaving


def test_library_pairs_name_the_image_too(world: dict[str, Path]) -> None:
    ts = FolderSet(world["hr"])
    with pytest.raises(UserError, match=r"bird\.png' \(300x200\) is too small for x500: its LR"):
        list(ts.pairs(500))  # baby.png (512) still has a 1x1 LR at x500, bird.png none
    with pytest.raises(UserError, match=r"use scales up to x66 for this test set"):
        evaluate_testset(BICUBIC, ts, [1000])


# --- testset.lr_dir ------------------------------------------------------------------------------


def test_a_missing_lr_dir_is_an_error(world: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "LR_bicubik"
    line = one_error_line(lte_test(world, tmp_path, f"testset.lr_dir={missing}", "scales=[2]"))
    assert line == (
        f"testset.lr_dir '{missing}' does not exist: fix the path (it holds X2, X3, ... folders "
        "of LR images), or leave testset.lr_dir out to make every LR with PIL bicubic"
    )
    afile = tmp_path / "lr.txt"
    afile.write_text("x")
    line = one_error_line(lte_test(world, tmp_path, f"testset.lr_dir={afile}", "scales=[2]"))
    assert f"testset.lr_dir '{afile}' is not a folder" in line
    # With {scale} in it, the folder above the scale folders is the one that must exist.
    line = one_error_line(
        lte_test(world, tmp_path, f"testset.lr_dir='{missing}/X{{scale}}'", "scales=[2]")
    )
    assert f"testset.lr_dir '{missing}' does not exist" in line


def test_an_existing_lr_dir_without_this_scale_goes_on_the_fly(
    world: dict[str, Path], tmp_path: Path
) -> None:
    lr = tmp_path / "LR_bicubic"
    (lr / "X2").mkdir(parents=True)  # only x2 shipped (and empty): x3 is made on the fly
    recs = evaluate_testset(BICUBIC, FolderSet(world["hr"], lr), [3])
    assert recs[0].images == 2


# --- inputs that are not regular files -----------------------------------------------------------


def upscale(*argv: str) -> subprocess.CompletedProcess[str]:
    return run_main(lambda: upscale_main(argv), argv, prog=lte.upscale.__file__)


def test_fifo_input_is_refused_without_blocking(world: dict[str, Path], tmp_path: Path) -> None:
    fifo = tmp_path / "in.png"
    os.mkfifo(fifo)
    out = tmp_path / "o.png"
    args = [str(fifo), str(out), "--ckpt", str(world["ckpt"]), "--scale", "2"]
    res = subprocess.run(
        [sys.executable, "-m", "lte.upscale", *args],
        capture_output=True,
        text=True,
        timeout=120,  # a read of the FIFO would block forever
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    expected = f"input image '{fifo}' is a FIFO (named pipe), not a regular file: give a file"
    assert one_error_line(res) == expected
    assert not out.exists()


@pytest.mark.parametrize("kind", ["device", "socket", "folder"])
def test_special_inputs_are_refused(world: dict[str, Path], tmp_path: Path, kind: str) -> None:
    if kind == "device":
        path, expected = Path("/dev/zero"), "is a character device, not a regular file: give a file"
    elif kind == "socket":
        path, expected = tmp_path / "s.png", "is a socket, not a regular file: give a file"
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()  # the socket file stays
    else:
        path, expected = tmp_path / "d.png", "is a folder, not a file: give a file inside it"
        path.mkdir()
    out = tmp_path / "o.png"
    res = upscale(str(path), str(out), "--ckpt", str(world["ckpt"]), "--scale", "2")
    assert one_error_line(res) == f"input image '{path}' {expected}"
    assert not out.exists()
    with pytest.raises(UserError, match=r"not a regular file|is a folder"):
        image_size(path)
    with pytest.raises(UserError, match=r"not a regular file|is a folder"):
        load_rgb(path)


def test_a_link_to_an_image_is_read(world: dict[str, Path], tmp_path: Path) -> None:
    link = tmp_path / "link.png"
    link.symlink_to(world["photo"])
    assert image_size(link) == (32, 40)


# --- records handed over as they finish ----------------------------------------------------------


def test_each_record_is_handed_over_before_the_next_scale(world: dict[str, Path]) -> None:
    seen: list[tuple[float, int]] = []  # (scale of the record, images scored when it came)
    scored: list[float] = []
    records = evaluate_testset(
        BICUBIC,
        FolderSet(world["hr"]),
        [2, 3, 4],
        on_image=lambda s, _: scored.append(s),
        on_record=lambda r: seen.append((r.scale, len(scored))),
    )
    assert seen == [(2.0, 2), (3.0, 4), (4.0, 6)]
    assert [r.scale for r in records] == [2.0, 3.0, 4.0]
