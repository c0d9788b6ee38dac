"""Every bad input a careless or hostile user can give ``lte.upscale``: one ``error:`` line, exit 2.

One row per input (argv -> message fragment), each run through the real CLI entry point in-process
(``cli.run_main``: same argv, environment, exit status and stderr; one row also in a real subprocess,
``python -m lte.upscale``). Every row
also checks that no traceback is printed and that no file the user had (the photo, an existing
output) changed, and that no temp file is left behind. Files are real: a crop of a bundled photo, a
PNG whose header claims 90000x90000 pixels, checkpoints with NaN or overflowing weights, a read-only
and a full file system (tmpfs mounts; those rows are skipped where mounting is not permitted).
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

import lte.upscale
from cli import run_main
from conftest import sample_photos
from lte.checkpoint import save_official
from lte.data.images import MAX_PIXELS_ENV
from lte.errors import UserError
from lte.limits import DEFAULT_MAX_OUTPUT_PIXELS, check_output_request
from lte.models import build_model


def run_upscale(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``lte-upscale *args`` in-process (see :func:`cli.run_main`), environment plus ``env``."""
    return run_main(lte.upscale.main, args, prog=lte.upscale.__file__, env=env, drop_env=())


def run_upscale_subprocess(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m lte.upscale *args`` in a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "lte.upscale", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    return res.returncode == 0


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) -> sha256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def checkpoint(path: Path, edit: str | None = None) -> Path:
    torch.manual_seed(0)
    net = build_model("lte", "edsr_baseline")
    with torch.no_grad():
        if edit == "nan":  # a corrupt file: one tensor of NaN weights
            net.encoder.body[3].body[0].weight.fill_(float("nan"))
        elif edit == "overflow":  # finite weights whose activations overflow to inf, then NaN
            for p in (net.encoder.head[0].weight, net.encoder.head[0].bias):
                p.mul_(1e30)
            net.encoder.body[0].body[0].weight.mul_(1e30)
    save_official(net, path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Everything the rows refer to, by name ({photo}, {ckpt}, ...)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    user = root / "user"  # the user's own files: must not change
    user.mkdir()
    photo = user / "photo.png"
    Image.open(sample_photos()[0]).convert("RGB").crop((100, 100, 140, 132)).save(photo)  # 40x32
    bomb = user / "bomb.png"
    Image.open(photo).crop((0, 0, 16, 16)).save(bomb)
    data = bytearray(bomb.read_bytes())
    data[16:24] = struct.pack(">II", 90000, 90000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    bomb.write_bytes(bytes(data))
    (user / "existing.png").write_bytes(b"the user's earlier result")
    os.link(photo, user / "hardlink.png")
    (user / "afolder.png").mkdir()
    (user / "notes.png").write_text("not an image")
    out = root / "out"
    out.mkdir()
    paths = {
        "root": root,
        "user": user,
        "photo": photo,
        "bomb": bomb,
        "out": out,
        "ckpt": checkpoint(root / "lte.pth"),
        "nan_ckpt": checkpoint(root / "nan.pth", "nan"),
        "overflow_ckpt": checkpoint(root / "overflow.pth", "overflow"),
    }
    mounts = []
    ro, full = root / "readonly", root / "full"
    if mount_tmpfs(ro, "ro,size=64k"):
        mounts.append(ro)
        paths["readonly"] = ro
    if mount_tmpfs(full, "size=64k"):
        mounts.append(full)
        # Fill it, leaving too little room for a PNG but enough to create an empty file.
        filler = full / "filler.bin"
        with open(filler, "wb") as f:
            try:
                f.write(b"\xff" * (60 * 1024))
                f.flush()
            except OSError:
                pass
        paths["full"] = full
    yield paths
    for m in mounts:
        subprocess.run(["umount", str(m)], check=False)


LONG = "n" * 300

# (id, argv template, expected fragment, extra environment)
ROWS: list[tuple[str, list[str], str, dict[str, str]]] = [
    # -- nothing a user made is overwritten ------------------------------------------------------
    ("output is input", ["{photo}", "{photo}", "--scale", "2"], "is the input image", {}),
    (
        "output is input, other spelling, even with --overwrite",
        ["{photo}", "{user}/../user/./photo.png", "--scale", "2", "--overwrite"],
        "is the input image",
        {},
    ),
    ("output hard-links the input", ["{photo}", "{user}/hardlink.png", "--scale", "2"], "is the input image", {}),
    ("output exists", ["{photo}", "{user}/existing.png", "--scale", "2"], "--overwrite", {}),
    # -- output path problems, found before any compute ------------------------------------------
    ("output is a folder", ["{photo}", "{user}/afolder.png", "--scale", "2"], "is a folder", {}),
    ("output name too long", ["{photo}", "{out}/" + LONG + ".png", "--scale", "2"], "name is too long", {}),
    ("output folder missing", ["{photo}", "{out}/missing/o.png", "--scale", "2"], "does not exist", {}),
    ("output without image suffix", ["{photo}", "{out}/o.txt", "--scale", "2"], "no image suffix", {}),
    ("output on read-only disk", ["{photo}", "{readonly}/o.png", "--scale", "2"], "read-only", {}),
    ("output on full disk", ["{photo}", "{full}/o.png", "--scale", "2"], "disk is full", {}),
    # -- the input image ----------------------------------------------------------------------------
    ("input missing", ["{user}/nope.png", "{out}/o.png", "--scale", "2"], "does not exist", {}),
    ("input is a folder", ["{user}/afolder.png", "{out}/o.png", "--scale", "2"], "is a folder", {}),
    ("input not an image", ["{user}/notes.png", "{out}/o.png", "--scale", "2"], "not an image", {}),
    ("input name too long", ["{user}/" + LONG + ".png", "{out}/o.png", "--scale", "2"], "does not exist", {}),
    ("decompression bomb", ["{bomb}", "{out}/o.png", "--scale", "2"], "90000x90000 = 8100000000 pixels", {}),
    ("decompression bomb names env", ["{bomb}", "{out}/o.png", "--scale", "2"], MAX_PIXELS_ENV, {}),
    ("input over --max-pixels", ["{photo}", "{out}/o.png", "--scale", "2", "--max-pixels", "1000"], "40x32 = 1280 pixels, over the limit of 1000", {}),
    ("input over env limit", ["{photo}", "{out}/o.png", "--scale", "2"], "over the limit of 100", {MAX_PIXELS_ENV: "100"}),
    ("env limit not a number", ["{photo}", "{out}/o.png", "--scale", "2"], MAX_PIXELS_ENV, {MAX_PIXELS_ENV: "lots"}),
    ("--max-pixels zero", ["{photo}", "{out}/o.png", "--scale", "2", "--max-pixels", "0"], "--max-pixels '0' must be a positive", {}),
    # -- absurd sizes, refused before allocating ---------------------------------------------------
    ("--scale 1e6", ["{photo}", "{out}/o.png", "--scale", "1e6"], f"over the limit of {DEFAULT_MAX_OUTPUT_PIXELS} pixels", {}),
    ("--scale 1e300", ["{photo}", "{out}/o.png", "--scale", "1e300"], "too large", {}),
    ("--size 100000x100000", ["{photo}", "{out}/o.png", "--size", "100000x100000"], "100000x100000 = 10000000000 pixels", {}),
    ("--size over --max-output-pixels", ["{photo}", "{out}/o.png", "--size", "100x100", "--max-output-pixels", "9999"], "--max-output-pixels 10000", {}),
    ("--max-output-pixels text", ["{photo}", "{out}/o.png", "--scale", "2", "--max-output-pixels", "many"], "--max-output-pixels 'many' is not a number", {}),
    ("--scale nan", ["{photo}", "{out}/o.png", "--scale", "nan"], "--scale must be a positive, finite number", {}),
    ("--scale inf", ["{photo}", "{out}/o.png", "--scale", "inf"], "--scale must be a positive, finite number", {}),
    ("--scale negative", ["{photo}", "{out}/o.png", "--scale", "-2"], "--scale must be a positive", {}),
    ("--scale tiny", ["{photo}", "{out}/o.png", "--scale", "0.001"], "empty", {}),
    ("--scale-max nan", ["{photo}", "{out}/o.png", "--scale", "2", "--scale-max", "nan"], "--scale-max must be a positive, finite", {}),
    ("--scale-max zero", ["{photo}", "{out}/o.png", "--scale", "2", "--scale-max", "0"], "--scale-max must be a positive", {}),
    ("--size zero", ["{photo}", "{out}/o.png", "--size", "0x10"], "positive width and height", {}),
    ("--size negative", ["{photo}", "{out}/o.png", "--size=-5x10"], "positive width and height", {}),
    ("--size text", ["{photo}", "{out}/o.png", "--size", "1e5x1e5"], "is not WIDTHxHEIGHT", {}),
    # -- devices --------------------------------------------------------------------------------------
    ("--device meta", ["{photo}", "{out}/o.png", "--scale", "2", "--device", "meta"], "cannot run models on 'meta'", {}),
    ("--device unknown", ["{photo}", "{out}/o.png", "--scale", "2", "--device", "gpu0"], "--device gpu0 is not a device: use one of auto, cpu", {}),
    ("--device cuda:7", ["{photo}", "{out}/o.png", "--scale", "2", "--device", "cuda:7"], "--device cuda:7", {}),
    # -- checkpoints ----------------------------------------------------------------------------------
    ("NaN weights", ["{photo}", "{out}/o.png", "--scale", "2", "--ckpt", "{nan_ckpt}"], "nan.pth' has non-finite weights", {}),
    ("weights overflow to NaN", ["{photo}", "{out}/o.png", "--scale", "2", "--ckpt", "{overflow_ckpt}"], "overflow.pth' produced non-finite values", {}),
    ("checkpoint missing", ["{photo}", "{out}/o.png", "--scale", "2", "--ckpt", "{out}/none.pth"], "does not exist", {}),
]  # fmt: skip

if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
    ROWS.append(
        (
            "--device mps",
            ["{photo}", "{out}/o.png", "--scale", "2", "--device", "mps"],
            "--device mps: Apple MPS is not available",
            {},
        )
    )


@pytest.mark.parametrize(
    ("argv", "fragment", "env"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_bad_input_is_one_line_exit_2(
    world: dict[str, Path], argv: list[str], fragment: str, env: dict[str, str]
) -> None:
    check_row(world, argv, fragment, env, run_upscale)


def test_real_entry_point_prints_one_line(world: dict[str, Path]) -> None:
    """A row that loads a checkpoint, through ``python -m lte.upscale`` in a real subprocess."""
    argv, fragment, env = next(r[1:] for r in ROWS if r[0] == "NaN weights")
    check_row(world, argv, fragment, env, run_upscale_subprocess)


def check_row(
    world: dict[str, Path],
    argv: list[str],
    fragment: str,
    env: dict[str, str],
    run: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    needs = {k for k in ("readonly", "full") if "{" + k + "}" in " ".join(argv)}
    missing = needs - world.keys()
    if missing:
        pytest.skip(f"cannot mount a tmpfs here for {sorted(missing)}: not permitted")
    args = [a.format(**{k: str(v) for k, v in world.items()}) for a in argv]
    if "--ckpt" not in args:
        args += ["--ckpt", str(world["ckpt"])]
    before = tree_digest(world["user"])
    res = run(*args, env=env)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert fragment in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert tree_digest(world["user"]) == before, "a file of the user's changed"
    assert not any(p.name.startswith(".") for p in world["out"].rglob("*")), "temp file left"
    assert not (world["out"] / "o.png").exists()
    if "full" in needs:
        assert sorted(p.name for p in world["full"].iterdir()) == ["filler.bin"]


def test_overwrite_replaces_an_earlier_result(world: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "result.png"
    out.write_bytes(b"earlier")
    res = run_upscale(
        str(world["photo"]), str(out), "--ckpt", str(world["ckpt"]), "--scale", "2", "--overwrite"
    )
    assert res.returncode == 0, res.stderr
    assert Image.open(out).size == (80, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.png"]


def test_memory_estimate_refuses_what_does_not_fit() -> None:
    """The default limit also follows the memory available (48 B per output pixel)."""
    check_output_request((1000, 1000), None, available=48 * 10**6)
    with pytest.raises(
        UserError, match=r"only 0.0447 GiB of memory is available.*--max-output-pixels 1001000"
    ):
        check_output_request((1000, 1001), None, available=48 * 10**6)
    check_output_request((1000, 1001), 1001000, available=1)  # an explicit limit is the only one
