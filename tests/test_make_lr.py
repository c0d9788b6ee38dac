"""scripts/make_lr.py: LR folders in the benchmark layout, equal to the on-the-fly protocol."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from lte.data.images import load_rgb, normalize, save_rgb, to_tensor
from lte.data.layouts import list_images, pair_by_name
from lte.data.resize import crop_to_scale, downsample_pil, imresize_matlab
from lte.data.sampling import train_sample, val_sample

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make_lr.py"
VAL = ROOT / "data" / "sample" / "val"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess (exit status, stderr)."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_lr_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE_LR = load_script()


def run_inproc(*args: str) -> None:
    """The same entry point in this process (no interpreter start-up per call)."""
    MAKE_LR.main(list(args))


@pytest.fixture(scope="module")
def lr_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lr")
    res = run("--hr", str(VAL), "--out", str(out), "--scales", "2,3,4")
    assert res.returncode == 0, res.stderr
    assert "wrote 9 LR images" in res.stdout
    return out


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_layout_sizes_and_pairing(lr_root: Path, scale: int) -> None:
    hr_files = list_images(VAL)
    pairs, unpaired = pair_by_name(hr_files, lr_root / f"X{scale}", scale)
    assert unpaired == [] and len(pairs) == 3
    for hr_path, lr_path in pairs:
        assert lr_path.name == f"{hr_path.stem}x{scale}.png"
        hr, lr = load_rgb(hr_path), load_rgb(lr_path)
        assert lr.shape == (hr.shape[0] // scale, hr.shape[1] // scale, 3)


def test_pil_lr_equals_the_training_protocol(lr_root: Path, tmp_path: Path) -> None:
    # The file is the package's downsample_pil on the scale-cropped HR, pixel for pixel...
    hr = load_rgb(VAL / "coffee.png")  # 600 × 400
    lr_file = load_rgb(lr_root / "X4" / "coffeex4.png")
    assert np.array_equal(lr_file, downsample_pil(crop_to_scale(hr, 4), (100, 150)))
    # ...and on a square image (so a whole-image patch is possible) the training sampler at a
    # fixed x4 and the validation patch give exactly the file's pixels as their LR.
    square = tmp_path / "hr"
    square.mkdir()
    save_rgb(np.ascontiguousarray(hr[:384, 100:484]), square / "sq.png")
    run_inproc("--hr", str(square), "--out", str(tmp_path / "lr"), "--scales", "4")
    expect = normalize(to_tensor(load_rgb(tmp_path / "lr" / "X4" / "sqx4.png")))
    img = load_rgb(square / "sq.png")
    smp = train_sample(img, inp_size=96, scale_min=4, scale_max=4, sample_q=16, augment_flips=False)
    assert torch.equal(smp["inp"], expect)
    assert torch.equal(val_sample(img, y0=0, x0=0, size_hr=384, inp_size=96)["inp"], expect)


def test_matlab_kernel_option(tmp_path: Path) -> None:
    run_inproc("--hr", str(VAL), "--out", str(tmp_path), "--scales", "3", "--kernel", "matlab")
    hr = crop_to_scale(load_rgb(VAL / "chelsea.png"), 3)  # 300 × 451 → 300 × 450
    lr = load_rgb(tmp_path / "X3" / "chelseax3.png")
    assert lr.shape == (100, 150, 3)
    assert np.array_equal(lr, imresize_matlab(hr, (100, 150)))


def test_fractional_scale_naming(tmp_path: Path) -> None:
    run_inproc("--hr", str(VAL), "--out", str(tmp_path), "--scales", "2.5")
    lr = load_rgb(tmp_path / "X2.5" / "rocketx2.5.png")  # 640 × 427 → floor(/2.5)
    assert lr.shape == (170, 256, 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hr", str(VAL), "--out", "/tmp/x", "--scales", "2,abc"], "not a comma-separated"),
        (["--hr", str(VAL), "--out", "/tmp/x", "--scales", "1"], "scales above 1"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        run_inproc(*args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_missing_folder_cli_exit_2() -> None:
    res = run("--hr", "/no/such/folder", "--out", "/tmp/x")
    assert res.returncode == 2
    assert res.stderr.startswith("error: ") and "'/no/such/folder' does not exist" in res.stderr
    assert "Traceback" not in res.stderr


def test_existing_lr_files_are_refused_unless_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_inproc("--hr", str(VAL), "--out", str(tmp_path), "--scales", "3")
    mine = tmp_path / "X3" / "chelseax3.png"
    save_rgb(np.zeros((4, 4, 3), np.uint8), mine)  # the user's own file, say another kernel's
    with pytest.raises(SystemExit) as exc:
        run_inproc("--hr", str(VAL), "--out", str(tmp_path), "--scales", "2,3")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: '") and "chelseax3.png' and 2 more already exist" in err
    assert "--overwrite" in err
    assert load_rgb(mine).shape == (4, 4, 3)  # untouched
    assert not (tmp_path / "X2").exists()  # refused before anything was written
    run_inproc("--hr", str(VAL), "--out", str(tmp_path), "--scales", "2,3", "--overwrite")
    assert load_rgb(mine).shape == (100, 150, 3)
