"""A run folder belongs to one run: a second ``lte.train`` into a folder in use is refused in one line.

The folder is held by a real other process (a helper holding :func:`lte.training.run_lock.hold_run_dir`,
or a real training run); the refused start must leave every file of the folder as it was. A lock
left by a process killed with SIGKILL must not block the next start.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import DROPPED_ENV, ROOT, SMALL_TRAIN, run_module, snapshot
from test_bad_inputs_train import TINY, assert_one_line, fake_checkpoint, train_cli

#: The tiny one-step run, with the bundled photos named absolutely (the test runs elsewhere).
TINY_ARGS = [
    *TINY,
    f"data.train_dir={ROOT / 'data' / 'sample' / 'train'}",
    f"data.val_dir={ROOT / 'data' / 'sample' / 'val'}",
]

HOLD = """
import sys
from lte.training.run_lock import hold_run_dir
with hold_run_dir(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    out["OMP_NUM_THREADS"] = "1"
    return out


@contextlib.contextmanager
def holder(folder: Path) -> Iterator[subprocess.Popen]:
    """Another process holding ``folder`` until the block ends (or the test kills it)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=env(),
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            proc.communicate(input="", timeout=60)


def in_use(folder: Path, pid: int) -> str:
    return f"run directory '{folder}' is in use by lte.train (pid {pid} on host {socket.gethostname()}, started "


def test_a_folder_in_use_is_refused_whatever_it_holds(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with holder(run) as proc:
        # Empty, then with another run's checkpoints, then asked to resume them: always the lock.
        for extra in ([], ["checkpoints"], ["checkpoints", "ckpt_path=last"]):
            if "checkpoints" in extra:
                fake_checkpoint(run / "checkpoints" / "last.ckpt")
            before = snapshot(run)
            res = train_cli(f"hydra.run.dir={run}", *[e for e in extra if "=" in e])
            line = assert_one_line(res, in_use(run, proc.pid))
            assert line.endswith(
                ": wait for it, or choose another folder with hydra.run.dir=NEW_DIR"
            )
            assert snapshot(run) == before, "a refused start writes nothing into the folder"
    assert not (run / ".lte-run.owner").exists(), "the owner note goes with its run"


def test_a_killed_runs_lock_does_not_block(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with holder(run) as proc:
        proc.kill()  # SIGKILL: no cleanup; the kernel drops the lock, the owner note stays behind
        proc.wait()
    assert (run / ".lte-run.owner").is_file()
    res = train_cli(f"hydra.run.dir={run}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert not (run / ".lte-run.owner").exists()


@pytest.mark.slow
def test_two_runs_started_into_one_folder(tmp_path: Path) -> None:
    """Two real ``lte.train`` processes, one folder: the second is refused, the first finishes intact.

    The first run waits after its step 3 (``train_callbacks.PauseAtStep``) until the second has
    been answered, so the two overlap whatever the speed of the machine.
    """
    import torch

    from lte.checkpoint import load_checkpoint

    run, paused, go_on = tmp_path / "run", tmp_path / "paused", tmp_path / "go_on"
    args = [*SMALL_TRAIN, "trainer.max_epochs=3", "logger=none", f"hydra.run.dir={run}"]
    pause = [
        "+callbacks.pause._target_=train_callbacks.PauseAtStep",
        "+callbacks.pause.step=3",
        f"+callbacks.pause.paused={paused}",
        f"+callbacks.pause.resume={go_on}",
    ]
    first = subprocess.Popen(
        [sys.executable, "-m", "lte.train", *args, *pause],
        cwd=ROOT,
        env={**env(), "PYTHONPATH": str(ROOT / "tests")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not paused.exists():
            assert first.poll() is None, first.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the first run did not reach step 3"
            time.sleep(0.05)
        second = run_module("lte.train", *args)  # the same command, started meanwhile
        assert_one_line(second, in_use(run, first.pid))
        assert first.poll() is None
        go_on.touch()
        _, err = first.communicate(timeout=600)
    finally:
        go_on.touch()
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err[-3000:]
    steps = {}
    for name in ("last.ckpt", "best.ckpt"):
        ckpt = torch.load(run / "checkpoints" / name, map_location="cpu", weights_only=True)
        steps[name] = ckpt["global_step"]
        assert load_checkpoint(run / "checkpoints" / name).model_name == "lte"
    assert steps["last.ckpt"] == 6 and steps["best.ckpt"] in (2, 4, 6), steps


def test_the_default_timestamped_folder_is_the_one_locked(tmp_path: Path) -> None:
    """Without hydra.run.dir, the folder outputs/train/<date>/<time> is resolved once, locked, and is
    the folder Hydra runs in (not one a second later)."""
    from cli import run_main
    from lte.cli.train import main as train_main

    res = run_main(train_main, TINY_ARGS, prog="train.py", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    (folder,) = (tmp_path / "outputs" / "train").glob("*/*")
    assert (folder / ".lte-run.lock").is_file() and (folder / "checkpoints" / "last.ckpt").is_file()
    assert (folder / "train.log").is_file() and not (folder / ".lte-run.owner").exists()
    # Hydra was given the folder as resolved when it was locked.
    (record,) = folder.glob(".hydra/*/hydra.yaml")
    assert f"hydra.run.dir={folder.relative_to(tmp_path)}" in record.read_text()
