"""The download scripts, run offline against fake archives in the official layout (file:// URLs).

The real archives cannot be fetched here; these tests check everything else: resumable fetch,
archive tests, unpacking into the layout that :mod:`lte.data.layouts` reads, image counts, the
recorded sha256, skipping finished work, and failing loudly on a damaged archive.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lte.data.layouts import list_images, pair_by_name

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or (shutil.which("curl") or shutil.which("wget")) is None,
    reason="needs bash and curl or wget",
)


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def run(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / script), *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", **env},
        check=False,
    )


def fake_div2k(mirror: Path, *, train: bool = False) -> None:
    """The official zips' layout: DIV2K_valid_HR/0801.png, DIV2K_valid_LR_bicubic/X2/0801x2.png
    (and with ``train``, DIV2K_train_HR/0001.png, DIV2K_train_LR_bicubic/X2/0001x2.png)."""
    data = png_bytes()
    mirror.mkdir()
    if train:
        with zipfile.ZipFile(mirror / "DIV2K_train_HR.zip", "w") as z:
            for i in range(1, 801):
                z.writestr(f"DIV2K_train_HR/{i:04d}.png", data)
        for s in (2, 3, 4):
            with zipfile.ZipFile(mirror / f"DIV2K_train_LR_bicubic_X{s}.zip", "w") as z:
                for i in range(1, 801):
                    z.writestr(f"DIV2K_train_LR_bicubic/X{s}/{i:04d}x{s}.png", data)
    with zipfile.ZipFile(mirror / "DIV2K_valid_HR.zip", "w") as z:
        for i in range(801, 901):
            z.writestr(f"DIV2K_valid_HR/{i:04d}.png", data)
    for s in (2, 3, 4):
        with zipfile.ZipFile(mirror / f"DIV2K_valid_LR_bicubic_X{s}.zip", "w") as z:
            for i in range(801, 901):
                z.writestr(f"DIV2K_valid_LR_bicubic/X{s}/{i:04d}x{s}.png", data)


def test_div2k_script_offline(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    fake_div2k(mirror)
    root = tmp_path / "load"
    env = {"LTE_DATA": str(root), "DIV2K_BASE_URL": f"file://{mirror}"}
    res = run("download_div2k.sh", env, "--valid-only", "--keep-archives")
    assert res.returncode == 0, res.stderr
    hr = list_images(root / "DIV2K_valid_HR")
    assert len(hr) == 100
    pairs, unpaired = pair_by_name(hr, root / "DIV2K_valid_LR_bicubic" / "X3", 3)
    assert len(pairs) == 100 and not unpaired
    sums = (root / "archives" / "SHA256SUMS").read_text().split("\n")
    assert len([s for s in sums if s]) == 4
    again = run("download_div2k.sh", env, "--valid-only")
    assert again.returncode == 0 and "already holds 100 images" in again.stdout
    # A damaged download must stop the script, not unpack garbage.
    shutil.rmtree(root / "DIV2K_valid_HR")
    (root / "archives" / "DIV2K_valid_HR.zip").unlink()
    (mirror / "DIV2K_valid_HR.zip").write_bytes(b"PK\x03\x04 truncated")
    bad = run("download_div2k.sh", env, "--valid-only")
    assert bad.returncode != 0 and "DIV2K_valid_HR.zip is damaged" in bad.stderr
    assert run("download_div2k.sh", env, "--nope").returncode == 2


def test_div2k_script_fetches_the_training_lr_sets(tmp_path: Path) -> None:
    # data=div2k_paired reads DIV2K_train_LR_bicubic/X{s}: the full download brings them.
    mirror = tmp_path / "mirror"
    fake_div2k(mirror, train=True)
    root = tmp_path / "load"
    env = {"LTE_DATA": str(root), "DIV2K_BASE_URL": f"file://{mirror}"}
    res = run("download_div2k.sh", env)
    assert res.returncode == 0, res.stderr
    hr = list_images(root / "DIV2K_train_HR")
    for s in (2, 3, 4):
        pairs, unpaired = pair_by_name(hr, root / "DIV2K_train_LR_bicubic" / f"X{s}", s)
        assert len(pairs) == 800 and not unpaired
    assert "data=div2k_paired" in res.stdout
    # --no-train-lr: HR only, as data=div2k needs.
    other = tmp_path / "hr_only"
    res = run("download_div2k.sh", {**env, "LTE_DATA": str(other)}, "--no-train-lr")
    assert res.returncode == 0, res.stderr
    assert len(list_images(other / "DIV2K_train_HR")) == 800
    assert not (other / "DIV2K_train_LR_bicubic").exists()


def test_benchmarks_script_offline(tmp_path: Path) -> None:
    data = png_bytes()
    tar_path = tmp_path / "benchmark.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, n in [("Set5", 5), ("Set14", 14), ("B100", 100), ("Urban100", 100)]:
            for i in range(n):
                paths = [f"benchmark/{name}/HR/img{i:03d}.png"]
                paths += [f"benchmark/{name}/LR_bicubic/X{s}/img{i:03d}x{s}.png" for s in (2, 3, 4)]
                for p in paths:
                    info = tarfile.TarInfo(p)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    root = tmp_path / "load"
    env = {"LTE_DATA": str(root), "BENCHMARK_URL": f"file://{tar_path}"}
    res = run("download_benchmarks.sh", env)
    assert res.returncode == 0, res.stderr
    bench = root / "benchmark"
    assert len(list_images(bench / "Urban100" / "HR")) == 100
    hr = list_images(bench / "Set14" / "HR")
    pairs, unpaired = pair_by_name(hr, bench / "Set14" / "LR_bicubic" / "X4", 4)
    assert len(pairs) == 14 and not unpaired
    assert not list(root.glob(".benchmark.*"))  # scratch folder cleaned up
    assert not (root / "archives" / "benchmark.tar").exists()  # removed without --keep-archive
    again = run("download_benchmarks.sh", env)
    assert again.returncode == 0 and "already holds" in again.stdout
    assert len(list_images(bench / "B100" / "LR_bicubic" / "X2")) == 100
