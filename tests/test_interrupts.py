"""Ctrl-C is an answer, not a crash: every entry point stopped by a real SIGINT in mid-work.

Each command runs in a subprocess of its own session, and the signal goes to the whole process
group (``os.killpg``), as a terminal's Ctrl-C does, so DataLoader workers receive it too. The answer
must be exactly one ``interrupted: ...`` line on stderr (progress bars aside), exit status 130, no
traceback, no process of the group left running, no temp file and no half-written output.

"Mid-work" is made certain, not guessed from a delay: the command runs through :data:`LAUNCHER`,
which runs the module as ``python -m`` does (``runpy``) with an audit hook that creates a marker
file when the command opens a given input (the checkpoint, a results file). The hook only watches;
the signal is sent once the marker exists, so it lands inside ``main``, never during imports.
``lte.test`` needs no hook: its results file grows as records finish, and the test waits for two.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from cli import DROPPED_ENV
from conftest import sample_photos
from lte.checkpoint import save_lte
from lte.data.images import load_rgb, save_rgb
from lte.models import build_model
from lte.results import ResultRecord, merge_results

ROOT = Path(__file__).resolve().parents[1]

#: ``python LAUNCHER TRIGGER MARKER TARGET ARGS...``: run TARGET (a module, or a ``.py`` script) as
#: ``__main__``; the first time it opens TRIGGER, create MARKER.
LAUNCHER = """
import os, runpy, sys
trigger, marker, target = sys.argv[1:4]
seen = []
def hook(event, args):
    if seen or event != "open" or not args or not isinstance(args[0], (str, os.PathLike)):
        return
    try:
        if os.path.abspath(os.fspath(args[0])) == trigger:
            seen.append(True)
            open(marker, "w").close()
    except Exception:
        pass
sys.addaudithook(hook)
sys.argv = [target, *sys.argv[4:]]
if target.endswith(".py"):
    runpy.run_path(target, run_name="__main__")
else:
    runpy.run_module(target, run_name="__main__", alter_sys=True)
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (*DROPPED_ENV, "LTE_DATA")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def start(argv: list[str]) -> subprocess.Popen[str]:
    """A command in a session (and process group) of its own, as a shell job is."""
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def start_watched(trigger: Path, marker: Path, target: str, *args: str) -> subprocess.Popen[str]:
    """``target`` run through :data:`LAUNCHER`, creating ``marker`` when it opens ``trigger``."""
    argv = [sys.executable, "-c", LAUNCHER, str(trigger.resolve()), str(marker), target, *args]
    return start(argv)


def interrupt(
    proc: subprocess.Popen[str], ready: Callable[[], bool], delay: float = 0.0
) -> tuple[int, str, str]:
    """Wait until ``ready()``, then ``delay`` s, then Ctrl-C the whole group; (status, out, err).

    Fails if the command ends before it is ready (it would not have been stopped mid-work) or
    leaves any process of its group behind (a DataLoader worker, a W&B service).
    """
    deadline = time.monotonic() + 600
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"finished before the signal (status {proc.returncode}): {err[-2000:]}")
        assert time.monotonic() < deadline, "never got ready"
        time.sleep(0.02)
    time.sleep(delay)
    assert proc.poll() is None, "finished before the signal"
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("still running 120 s after Ctrl-C")
    for _ in range(100):  # workers may take a moment to go after the main process
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("processes of the command's group outlived it")
    return proc.returncode, out, err


def the_line(status: int, err: str) -> str:
    """The one ``interrupted:`` line: exit 130, no traceback, nothing after it."""
    assert status == 130, err[-3000:]
    assert "Traceback" not in err and "Error" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1, err[-3000:]
    assert err.rstrip().endswith(lines[0]), err[-3000:]
    return lines[0]


def no_temp_files(folder: Path) -> None:
    leftovers = [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny LTE checkpoint, a photo, and an lte.test folder of crops."""
    root = tmp_path_factory.mktemp("interrupts")
    torch.manual_seed(0)
    ckpt = root / "tiny.ckpt"
    save_lte(build_model("lte", "edsr_tiny"), ckpt)
    photos = root / "crops" / "HR"
    photos.mkdir(parents=True)
    for i, src in enumerate(sample_photos()[:3]):
        save_rgb(load_rgb(src)[:96, :96], photos / f"crop{i}.png")
    return {"root": root, "ckpt": ckpt, "photo": sample_photos()[0], "crops": photos}


@pytest.mark.slow
def test_upscale_stopped_while_computing(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    marker = tmp_path / "ready"
    # x8 of a photo with LTE's 256-wide MLP: minutes of work, in 64 px tiles (a progress bar).
    proc = start_watched(
        files["ckpt"],
        marker,
        "lte.upscale",
        str(files["photo"]),
        str(out / "big.png"),
        "--ckpt",
        str(files["ckpt"]),
        "--scale",
        "8",
        "--tile",
        "64",
        "--device",
        "cpu",
    )
    status, _, err = interrupt(proc, marker.exists, delay=1.0)
    assert the_line(status, err) == "interrupted: stopped by Ctrl-C before it finished"
    assert list(out.iterdir()) == []  # no output, no temp file


@pytest.mark.slow
def test_lte_test_keeps_the_records_it_finished(files: dict[str, Path], tmp_path: Path) -> None:
    results = tmp_path / "res" / "r.json"
    results.parent.mkdir()
    scales = [2, 3, 4, 5, 6, 7, 8, 9, 10]

    def records() -> int:
        try:
            return len(json.loads(results.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return 0

    proc = start(
        [
            sys.executable,
            "-m",
            "lte.test",
            f"ckpt={files['ckpt']}",
            "testset=folder",
            f"testset.hr_dir={files['crops']}",
            f"scales=[{','.join(map(str, scales))}]",
            f"results_file={results}",
            "eval.workers=2",  # worker processes get the signal too
            "progress=true",  # and tqdm bars are drawn
            f"hydra.run.dir={tmp_path / 'run'}",
        ]
    )
    status, _, err = interrupt(proc, lambda: records() >= 2)
    line = the_line(status, err)
    kept = json.loads(results.read_text())
    assert 2 <= len(kept) < len(scales)
    assert line == (
        f"interrupted: {len(kept)} of {len(scales)} (test set, scale) results are in "
        f"'{results}' (and 'r.csv'); run the same command again to get all {len(scales)}"
    )
    # The kept records are the first scales, whole, and the CSV holds the same rows.
    assert [r["scale"] for r in kept] == scales[: len(kept)]
    assert all(r["images"] == 3 and r["psnr"] > 10 for r in kept)
    csv_rows = results.with_suffix(".csv").read_text().strip().splitlines()
    assert len(csv_rows) == 1 + len(kept)
    no_temp_files(results.parent)


@pytest.mark.slow
def test_fourier_stopped_mid_work(files: dict[str, Path], tmp_path: Path) -> None:
    big = tmp_path / "big.png"  # a large LR image, so encoding it takes a while
    Image.open(files["photo"]).convert("RGB").resize((1600, 1200)).save(big)
    marker = tmp_path / "ready"
    out = tmp_path / "out"
    out.mkdir()
    proc = start_watched(
        files["ckpt"],
        marker,
        "lte.fourier",
        "--ckpt",
        str(files["ckpt"]),
        "--image",
        str(big),
        "--at",
        "100,100",
        "--out",
        str(out / "f.png"),
        "--device",
        "cpu",
    )
    status, _, err = interrupt(proc, marker.exists)
    assert the_line(status, err) == "interrupted: stopped by Ctrl-C before it finished"
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_compare_stopped_mid_work(tmp_path: Path) -> None:
    results = tmp_path / "r.json"
    merge_results(
        [
            ResultRecord("set5", s, "benchmark", 30.0 - s, 0.9, 5, "lte", "edsr", f"c{m}.pth")
            for s in (2, 3, 4)
            for m in (1, 2)
        ],
        results,
    )
    out = tmp_path / "cmp"
    marker = tmp_path / "ready"
    proc = start_watched(results, marker, "lte.compare", str(results), "--out", str(out))
    status, _, err = interrupt(proc, marker.exists)
    assert the_line(status, err) == "interrupted: stopped by Ctrl-C before it finished"
    no_temp_files(tmp_path)
    if (out / "comparison.csv").exists():  # written before the plot: whole, never half
        assert len((out / "comparison.csv").read_text().splitlines()) == 7


@pytest.mark.slow
def test_convert_checkpoint_stopped_mid_work(tmp_path: Path) -> None:
    src = tmp_path / "rdn.ckpt"  # a full-size RDN: reading and writing it takes a while
    save_lte(build_model("lte", "rdn"), src)
    dst = tmp_path / "out" / "converted.pth"
    dst.parent.mkdir()
    marker = tmp_path / "ready"
    script = str(ROOT / "scripts" / "convert_checkpoint.py")
    proc = start_watched(src, marker, script, str(src), str(dst), "--to", "official")
    status, _, err = interrupt(proc, marker.exists)
    assert the_line(status, err) == "interrupted: stopped by Ctrl-C before it finished"
    no_temp_files(dst.parent)
    if dst.exists():  # the rename had happened: the file is whole
        torch.load(dst, map_location="cpu", weights_only=True)
