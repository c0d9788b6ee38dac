"""Ctrl-C and SIGTERM during ``python -m lte.train``: the step is saved, one line, exit 130, exact resume.

Two kinds of runs, both with real signals through the real CLI. In-process runs get the signal from
a callback at a known step (``tests/train_callbacks.py``: ``os.kill`` of the own process), so that the saved
step and the resumed weights can be compared exactly, at the end of an epoch and in mid-epoch. Real
subprocesses get SIGINT or SIGTERM from this test once their metrics show a finished step, as a user
or a scheduler would send it. Every resumed run must end with the very weights of a run that was
never interrupted.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cli import DROPPED_ENV, ROOT, SMALL_TRAIN, run_in_process, run_module

#: 9 photos / batch 4: 2 steps an epoch; 3 epochs = 6 steps.
EPOCHS = ["logger=none", "trainer.max_epochs=3"]
SIGNAL_AT = "+callbacks.signal._target_=train_callbacks.SignalAtStep"


def train(run: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    return run_in_process("lte.train", *SMALL_TRAIN, *EPOCHS, f"hydra.run.dir={run}", *overrides)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def interrupted_line(res: subprocess.CompletedProcess[str]) -> str:
    """Exit 130, exactly one ``interrupted:`` line on stderr, no ``error:`` and no traceback."""
    out = res.stdout + res.stderr
    assert res.returncode == 130, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    lines = res.stderr.splitlines()
    assert not [line for line in lines if line.startswith("error:")], res.stderr[-2000:]
    found = [line for line in lines if line.startswith("interrupted:")]
    assert len(found) == 1, res.stderr[-2000:]
    return found[0]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in b["state_dict"].items():
        assert torch.equal(a["state_dict"][key], value), key
    assert a["lr_schedulers"] == b["lr_schedulers"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``last.ckpt`` of the same 6 steps, never interrupted (in this process, as the others)."""
    run = tmp_path_factory.mktemp("straight") / "run"
    res = train(run)
    assert res.returncode == 0, res.stderr[-3000:]
    return load(run / "checkpoints" / "last.ckpt")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("step", "signum"),
    [(2, "SIGINT"), (3, "SIGINT"), (3, "SIGTERM")],
    ids=["ctrl-c-last-step-of-an-epoch", "ctrl-c-mid-epoch", "sigterm-mid-epoch"],
)
def test_signal_saves_the_step_and_the_printed_command_resumes_exactly(
    tmp_path: Path, straight: dict, step: int, signum: str
) -> None:
    run = tmp_path / "run"
    args = [SIGNAL_AT, f"+callbacks.signal.step={step}", f"+callbacks.signal.signum={signum}"]
    line = interrupted_line(train(run, *args))
    last = run / "checkpoints" / "last.ckpt"
    cause = {"SIGINT": "Ctrl-C", "SIGTERM": "SIGTERM"}[signum]
    prefix = f"interrupted: saved the checkpoint of step {step} to '{last}' (stopped by {cause}); "
    assert line.startswith(prefix + "resume with python -m lte.train "), line
    assert line.endswith(f" hydra.run.dir={run} ckpt_path=last"), line
    assert load(last)["global_step"] == step
    assert not (run / ".lte-run.owner").exists(), "the run's folder is released"
    # The command the message gives, as printed (the signal callback fires at step `step` only).
    command = shlex.split(line.split("; resume with ", 1)[1])
    assert command[:3] == ["python", "-m", "lte.train"]
    resumed = run_in_process("lte.train", *command[3:])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(load(last), straight)


@pytest.mark.slow
def test_second_ctrl_c_stops_at_once_without_saving(tmp_path: Path) -> None:
    run = tmp_path / "run"
    line = interrupted_line(
        train(run, SIGNAL_AT, "+callbacks.signal.step=3", "+callbacks.signal.repeat=2")
    )
    last = run / "checkpoints" / "last.ckpt"
    assert line.startswith(
        "interrupted: stopped by a second Ctrl-C during step 3, without saving it; "
        f"'{last}' holds step 2; resume with python -m lte.train "
    ), line
    assert load(last)["global_step"] == 2, "the checkpoint of the last validation is intact"


@pytest.mark.slow
def test_ctrl_c_before_the_first_step_saves_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    line = interrupted_line(train(run, SIGNAL_AT, "+callbacks.signal.step=0"))
    assert line == (
        "interrupted: stopped by Ctrl-C before the first training step: nothing to save; start "
        "again with the same command"
    )
    assert not list((run / "checkpoints").glob("*.ckpt"))
    again = train(run)  # the same command, the same folder: a fresh start
    assert again.returncode == 0, again.stderr[-3000:]


@pytest.mark.slow
def test_ctrl_c_during_validation_lets_it_save_and_stops_before_the_next_step(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    when = "+callbacks.signal.when=validation"
    line = interrupted_line(train(run, SIGNAL_AT, "+callbacks.signal.step=2", when))
    last = run / "checkpoints" / "last.ckpt"
    assert line.startswith(
        f"interrupted: stopped by Ctrl-C; the checkpoint of step 2 is '{last}'; resume with "
    ), line
    assert load(last)["global_step"] == 2 and (run / "checkpoints" / "best.ckpt").is_file()


@pytest.mark.slow
def test_sigterm_during_validation_names_the_checkpoint_to_resume(tmp_path: Path) -> None:
    """Lightning ends a validation that SIGTERM interrupts; the line names the newest checkpoint."""
    run = tmp_path / "run"
    args = [SIGNAL_AT, "+callbacks.signal.signum=SIGTERM"]
    within = "+callbacks.signal.when=validation"
    # Two validation batches per loader: SIGTERM in the first one, which Lightning does not finish.
    first = interrupted_line(
        train(run, *args, within, "+callbacks.signal.step=2", "trainer.limit_val_batches=2")
    )
    assert first == (
        "interrupted: stopped by SIGTERM during the validation after step 2; no checkpoint of this "
        "run was saved: start again with the same command"
    )
    assert not list((run / "checkpoints").glob("*.ckpt"))
    # After the validation of step 4, with step 2's checkpoint saved at the first one.
    run = tmp_path / "run2"
    second = interrupted_line(
        train(run, *args, within, "+callbacks.signal.step=4", "trainer.limit_val_batches=2")
    )
    last = run / "checkpoints" / "last.ckpt"
    assert second.startswith(
        f"interrupted: stopped by SIGTERM during the validation after step 4; '{last}' holds "
        "step 2; resume with python -m lte.train "
    ), second
    assert load(last)["global_step"] == 2
    # At the end of a validation: it saves step 2, then Lightning stops.
    run = tmp_path / "run3"
    at_end = "+callbacks.signal.when=validation_end"
    third = interrupted_line(train(run, *args, at_end, "+callbacks.signal.step=2"))
    last = run / "checkpoints" / "last.ckpt"
    assert third.startswith(
        f"interrupted: stopped by SIGTERM; the checkpoint of step 2 is '{last}'; resume with "
    ), third
    assert load(last)["global_step"] == 2


# --- real signals from outside, to real processes -------------------------------------------------

#: 36 samples / batch 4: 9 steps an epoch; the run would go on for 1000 steps.
LONG = [*SMALL_TRAIN, "data.repeat=4", "trainer.max_epochs=100"]
RESUME_TO = 12


@pytest.fixture(scope="module")
def straight_long(tmp_path_factory: pytest.TempPathFactory) -> dict:
    run = tmp_path_factory.mktemp("straight_long") / "run"
    res = run_module(
        "lte.train", *LONG, "logger=none", f"trainer.max_steps={RESUME_TO}", f"hydra.run.dir={run}"
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return load(run / "checkpoints" / "last.ckpt")


def wait_for_a_step(proc: subprocess.Popen, metrics: Path, timeout: float = 240) -> None:
    """Until the run's CSV holds a train/loss row (a finished step); fails if the run ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        if metrics.is_file():
            rows = metrics.read_text().splitlines()
            if len(rows) > 1 and "train/loss" in rows[0]:
                column = rows[0].split(",").index("train/loss")
                if any(len(r.split(",")) > column and r.split(",")[column] for r in rows[1:]):
                    return
        time.sleep(0.05)
    raise AssertionError("no training step within the timeout")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_real_signal_to_a_running_process(
    tmp_path: Path, straight_long: dict, signum: signal.Signals
) -> None:
    run = tmp_path / "run"
    args = [*LONG, "logger=csv", "+logger.csv.flush_logs_every_n_steps=1", f"hydra.run.dir={run}"]
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env["OMP_NUM_THREADS"] = "1"
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lte.train", *args, "trainer.max_steps=1000"],
            cwd=ROOT,
            env=env,
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
        try:
            wait_for_a_step(proc, run / "csv" / "version_0" / "metrics.csv")
            proc.send_signal(signum)
            proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    res = subprocess.CompletedProcess(proc.args, proc.returncode, out.read_text(), err.read_text())
    line = interrupted_line(res)
    last = run / "checkpoints" / "last.ckpt"
    cause = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    found = re.fullmatch(
        rf"interrupted: saved the checkpoint of step (\d+) to '{re.escape(str(last))}' "
        rf"\(stopped by {cause}\); resume with python -m lte\.train .* "
        rf"hydra\.run\.dir={re.escape(str(run))} ckpt_path=last",
        line,
    )
    assert found, line
    step = int(found[1])
    assert 1 <= step < RESUME_TO, f"stopped at step {step}: the signal came too late to compare"
    assert load(last)["global_step"] == step
    resumed = run_module("lte.train", *args, f"trainer.max_steps={RESUME_TO}", "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(load(last), straight_long)


@pytest.mark.slow
def test_ctrl_c_under_ddp_stops_every_process_after_the_same_step(tmp_path: Path) -> None:
    """Two gloo processes (trainer=ddp_sim): each gets the Ctrl-C at step 3, as a terminal sends it to
    the whole process group; both stop after that step, one line, and the resume is exact."""
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "tests"))
    args = [*SMALL_TRAIN, *EPOCHS, "trainer=ddp_sim", "print_config=false"]

    def run_ddp(*overrides: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lte.train", *overrides],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    run = tmp_path / "run"
    signal_at_3 = [SIGNAL_AT, "+callbacks.signal.step=3"]
    line = interrupted_line(run_ddp(*args, f"hydra.run.dir={run}", *signal_at_3))
    last = run / "checkpoints" / "last.ckpt"
    assert line.startswith(f"interrupted: saved the checkpoint of step 3 to '{last}'"), line
    saved = load(last)
    assert saved["global_step"] == 3 and len(saved["rng_states"]) == 2
    command = shlex.split(line.split("; resume with ", 1)[1])  # as printed, all options included
    assert command[:3] == ["python", "-m", "lte.train"]
    resumed = run_ddp(*command[3:])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = tmp_path / "straight"
    assert run_ddp(*args, f"hydra.run.dir={straight}").returncode == 0
    assert_same_weights(load(last), load(straight / "checkpoints" / "last.ckpt"))
