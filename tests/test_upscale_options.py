"""Every option of ``python -m lte.upscale``, end to end on a real photo crop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import sample_photos
from lte.checkpoint import save_official
from lte.models import build_model


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lte.upscale", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("opts")
    photo = root / "crop.png"
    Image.open(sample_photos()[0]).convert("RGB").crop((50, 60, 98, 100)).save(photo)  # 48x40
    torch.manual_seed(3)
    ckpt = root / "lte.pth"
    save_official(build_model("lte", "edsr_baseline"), ckpt)
    return root, photo, ckpt


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


@pytest.mark.slow
def test_options_change_only_what_they_should(setup: tuple[Path, Path, Path]) -> None:
    root, photo, ckpt = setup
    base = [str(photo), "--ckpt", str(ckpt), "--device", "cpu"]
    outs = {}
    for name, extra in {
        "plain": ["--scale", "2"],
        "tile": ["--scale", "2", "--tile", "8"],
        "notile": ["--scale", "2", "--tile", "0", "--chunk", "333"],
        "bf16": ["--scale", "2", "--dtype", "bfloat16"],
        "size": ["--size", "80x96"],
        "smax": ["--scale", "2", "--scale-max", "1"],
    }.items():
        out = root / f"{name}.png"
        res = run(base[0], str(out), *base[1:], *extra)
        assert res.returncode == 0, res.stderr
        outs[name] = (read(out), res.stderr)
    plain = outs["plain"][0]
    assert plain.shape == (80, 96, 3)
    assert outs["size"][0].shape == (96, 80, 3)
    # Tiling and chunking are exact up to float round-off: at most one 8-bit level apart.
    assert np.abs(outs["tile"][0] - plain).max() <= 1
    assert np.abs(outs["notile"][0] - plain).max() <= 1
    # A tiled run draws its progress bar (6 x 5 tiles of 8 px); an untiled one does not.
    assert "upscaling tiles" in outs["tile"][1] and "30/30" in outs["tile"][1]
    assert "upscaling tiles" not in outs["plain"][1]
    # bfloat16 is close to float32 but not identical.
    diff = np.abs(outs["bf16"][0] - plain)
    assert diff.mean() < 1.0
    # --scale-max 1 enlarges the cell at x2, which changes the output.
    assert np.abs(outs["smax"][0] - plain).max() > 0


@pytest.mark.slow
def test_no_progress_silences_the_bar(setup: tuple[Path, Path, Path]) -> None:
    root, photo, ckpt = setup
    out = root / "quiet.png"
    res = run(
        str(photo), str(out), "--ckpt", str(ckpt), "--scale", "2", "--tile", "8", "--no-progress"
    )
    assert res.returncode == 0, res.stderr
    assert "upscaling tiles" not in res.stderr
    assert out.is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dtype", "float64"], "--dtype"),
        (["--tile", "-1"], "--tile"),
        (["--tile", "abc"], "--tile"),
        (["--chunk", "0"], "--chunk"),
        (["--backend", "jit"], "--backend"),
    ],
)
def test_bad_values_are_one_line_errors(
    setup: tuple[Path, Path, Path], extra: list[str], message: str
) -> None:
    root, photo, ckpt = setup
    res = run(str(photo), str(root / "x.png"), "--ckpt", str(ckpt), "--scale", "2", *extra)
    assert res.returncode == 2
    assert res.stderr.startswith("error:") and message in res.stderr
    assert "Traceback" not in res.stderr


def test_help_documents_backends_and_low_precision() -> None:
    from lte.cli.upscale import build_parser

    text = " ".join(build_parser().format_help().split())
    assert "--backend {auto,eager,compile}" in text
    assert "--dtype {auto,float32,bfloat16,float16}" in text
    assert "auto (default: compile when the compile cache is warm" in text
    assert "compile (torch.compile" in text and "falls back to eager" in text
    assert "AVX512-BF16 or AMX" in text


def test_devices_resolve_to_what_this_machine_has() -> None:
    from lte.devices import available_devices, resolve_device
    from lte.errors import UserError

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert available_devices()[:2] == ["auto", "cpu"]
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for name in ("meta", "banana", f"cuda:{count}", "cuda:99", "xla"):
        with pytest.raises(UserError, match=f"device={name}") as info:
            resolve_device(name, "device=")  # Hydra apps name the key as device=
        assert "auto, cpu" in str(info.value)
    if torch.cuda.is_available():
        assert resolve_device("cuda:0") == torch.device("cuda:0")
    else:
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda")
