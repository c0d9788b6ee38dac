"""Every bad input of ``python -m lte.test``: one ``error:`` line on stderr, exit 2, no traceback.

One row per mistake, run through the real command line entry point, as a user would meet it: in-process
(``cli.run_main``: same argv, working directory, environment, exit status and stderr), and one row
also in a real subprocess. Options are checked before the checkpoint is loaded, so most rows never
touch a model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lte.test
from cli import run_main
from lte.cli.test import main as lte_test_main
from lte.data.images import save_rgb
from test_test_cli import make_folder, save_tiny_checkpoint

#: ``(id, overrides, fragment)``: ``{d}`` is the work folder; the fragment must be in the message.
ROWS: list[tuple[str, list[str], str]] = [
    ("ckpt unset", ["testset=sample"], "ckpt is not set"),
    ("baseline unknown", ["baseline=lanczos", "testset=sample"], "baseline=lanczos is unknown"),
    (
        "ckpt and baseline",
        ["ckpt={d}/tiny.ckpt", "baseline=bicubic", "testset=sample"],
        "either ckpt=PATH or baseline=bicubic",
    ),
    ("progress bad", ["ckpt={d}/tiny.ckpt", "testset=sample", "progress=maybe"], "progress=maybe"),
    ("ckpt missing", ["ckpt={d}/nope.ckpt", "testset=sample"], "nope.ckpt' does not exist"),
    ("ckpt not torch", ["ckpt={d}/junk.ckpt", "testset=sample"], "cannot read checkpoint"),
    ("no testset", ["ckpt={d}/tiny.ckpt"], "no test set chosen"),
    ("folder without hr_dir", ["ckpt={d}/tiny.ckpt", "testset=folder"], "testset.hr_dir"),
    (
        "folder missing",
        ["ckpt={d}/tiny.ckpt", "testset=folder", "testset.hr_dir={d}/nowhere"],
        "nowhere' does not exist",
    ),
    (
        "folder empty",
        ["ckpt={d}/tiny.ckpt", "testset=folder", "testset.hr_dir={d}/empty"],
        "holds no images",
    ),
    (
        "unknown protocol",
        ["ckpt={d}/tiny.ckpt", "testset=sample", "testset.protocol=rgb"],
        "testset.protocol=rgb",
    ),
    (
        "unknown testset key",
        ["ckpt={d}/tiny.ckpt", "testset=sample", "+testset.bogus=1"],
        "bogus",
    ),
    ("unknown preset in list", ["ckpt={d}/tiny.ckpt", "testsets=[set5,nope]"], "'nope'"),
    (
        "benchmark not downloaded",
        ["ckpt={d}/tiny.ckpt", "testset=urban100", "paths.data_dir={d}/nowhere"],
        "download_benchmarks.sh",
    ),
    (
        "div2k not downloaded",
        ["ckpt={d}/tiny.ckpt", "testset=div2k", "paths.data_dir={d}/nowhere"],
        "download_div2k.sh",
    ),
    ("scale below 1", ["ckpt={d}/tiny.ckpt", "testset=sample", "scales=[2,0.5]"], "scales: 0.5"),
    ("scale not a number", ["ckpt={d}/tiny.ckpt", "testset=sample", "scales=[two]"], "scales: "),
    ("no scales", ["ckpt={d}/tiny.ckpt", "testset=sample", "scales=[]"], "scales is empty"),
    ("chunk 0", ["ckpt={d}/tiny.ckpt", "testset=sample", "eval.chunk=0"], "eval.chunk=0"),
    ("chunk text", ["ckpt={d}/tiny.ckpt", "testset=sample", "eval.chunk=lots"], "eval.chunk=lots"),
    ("tile negative", ["ckpt={d}/tiny.ckpt", "testset=sample", "eval.tile=-2"], "eval.tile=-2"),
    ("device unknown", ["ckpt={d}/tiny.ckpt", "testset=sample", "device=tpu"], "device=tpu"),
    (
        "results folder missing",
        ["ckpt={d}/tiny.ckpt", "testset=sample", "results_file={d}/nodir/r.json"],
        "results_file='{d}/nodir/r.json': folder",
    ),
    (
        "results not json suffix",
        ["ckpt={d}/tiny.ckpt", "testset=sample", "results_file={d}/r.csv"],
        "results_file='{d}/r.csv' must end in .json",
    ),
    (
        "results file corrupt",
        ["ckpt={d}/tiny.ckpt", "testset=sample", "results_file={d}/corrupt.json"],
        "results_file='{d}/corrupt.json' is not valid JSON",
    ),
    (
        "results file of another schema",
        ["ckpt={d}/tiny.ckpt", "testset=sample", "results_file={d}/other.json"],
        "results_file='{d}/other.json' record 0: result lacks",
    ),
    (
        "results file is a folder",
        ["ckpt={d}/tiny.ckpt", "testset=sample", "results_file={d}/dir.json"],
        "is a folder",
    ),
    (
        "LR file of the wrong size",
        [
            "ckpt={d}/tiny.ckpt",
            "testset=folder",
            "testset.hr_dir={d}/bad_lr/HR",
            "testset.lr_dir={d}/bad_lr/LR_bicubic",
            "scales=[2]",
        ],
        "crop1x2.png",
    ),
    (
        "LR file missing",
        [
            "ckpt={d}/tiny.ckpt",
            "testset=folder",
            "testset.hr_dir={d}/partial_lr/HR",
            "testset.lr_dir={d}/partial_lr/LR_bicubic",
            "scales=[2]",
        ],
        "no LR image for 'crop1.png'",
    ),
    (
        "HR file not an image",
        ["ckpt={d}/tiny.ckpt", "testset=folder", "testset.hr_dir={d}/broken/HR", "scales=[2]"],
        "crop1.png",
    ),
    (
        "scale too large for the images",
        ["ckpt={d}/tiny.ckpt", "testset=folder", "testset.hr_dir={d}/photos/HR", "scales=[40]"],
        "too small",
    ),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("lte_test_bad")
    save_tiny_checkpoint(d / "tiny.ckpt")
    (d / "junk.ckpt").write_bytes(b"not a checkpoint")
    (d / "empty").mkdir()
    (d / "corrupt.json").write_text("[{oops")
    (d / "other.json").write_text(json.dumps([{"name": "set5", "value": 1}]))
    (d / "dir.json").mkdir()
    make_folder(d / "photos")
    make_folder(d / "bad_lr")
    save_rgb(np.zeros((31, 32, 3), np.uint8), d / "bad_lr" / "LR_bicubic" / "X2" / "crop1x2.png")
    make_folder(d / "partial_lr")
    (d / "partial_lr" / "LR_bicubic" / "X2" / "crop1x2.png").unlink()
    make_folder(d / "broken")
    (d / "broken" / "HR" / "crop1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return d


ROOT = Path(__file__).resolve().parents[1]  # testset=sample reads data/sample/val from here
#: The environment a row runs with: no W&B key, no data folder of the user's.
DROPPED_ENV = ("WANDB_API_KEY", "LTE_DATA")


def assert_one_error_line(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert fragment in lines[0]


@pytest.mark.slow
@pytest.mark.parametrize(("overrides", "fragment"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input_is_one_error_line_and_exit_2(
    workdir: Path, overrides: list[str], fragment: str
) -> None:
    args = [o.format(d=workdir) for o in overrides]
    proc = run_main(
        lte_test_main,
        [*args, f"hydra.run.dir={workdir / 'run'}"],
        prog=lte.test.__file__,
        cwd=ROOT,
        drop_env=DROPPED_ENV,
    )
    assert_one_error_line(proc, fragment.format(d=workdir))


@pytest.mark.slow
def test_real_entry_point_prints_one_line(workdir: Path) -> None:
    """A row that loads the checkpoint, through ``python -m lte.test`` in a real subprocess."""
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    args, fragment = next(r[1:] for r in ROWS if r[0] == "scale too large for the images")
    argv = [a.format(d=workdir) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "lte.test", *argv, f"hydra.run.dir={workdir / 'run'}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_one_error_line(proc, fragment.format(d=workdir))


def test_every_row_is_distinct() -> None:
    assert len({r[0] for r in ROWS}) == len(ROWS)
    assert len({tuple(r[1]) for r in ROWS}) == len(ROWS)
