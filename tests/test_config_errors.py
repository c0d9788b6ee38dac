"""Config mistakes on the command line of ``python -m lte.test``: one ``error:`` line, exit 2, nothing written.

The command line is checked before Hydra runs it (:mod:`lte.cli.overrides`), through the real entry
point in-process (``cli.run_in_process``), as in the training table (tests/test_bad_inputs_train.py).
The unit rows below check the part that picks the suggestion.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli import run_in_process, snapshot
from lte.cli.overrides import closest_key, pinned_run_dir

#: ``(id, overrides, the whole message after "error: ")``.
ROWS = [
    (
        "unknown-key",
        ["foo=1"],
        "unknown option foo: python -m lte.test --cfg job lists the options (add + in front, "
        "+foo=1, only to add a new key)",
    ),
    (
        "misspelt-eval-key",
        ["eval.chunks=3"],
        "unknown option eval.chunks: did you mean eval.chunk? (add + in front, +eval.chunks=3, "
        "only to add a new key)",
    ),
    (
        "misspelt-testset-key",
        ["testset=sample", "testset.hr_dirr=x"],
        "unknown option testset.hr_dirr: did you mean testset.hr_dir? (add + in front, "
        "+testset.hr_dirr=x, only to add a new key)",
    ),
    (
        "key-of-another-node",
        ["chunk=100"],
        "unknown option chunk: did you mean eval.chunk? (add + in front, +chunk=100, only to add "
        "a new key)",
    ),
    (
        "unknown-testset",
        ["testset=nope"],
        "testset=nope is not an option of testset: choose one of b100, div2k, folder, sample, "
        "set14, set5, urban100",
    ),
    (
        "unknown-logger",
        ["logger=nope"],
        "logger=nope is not an option of logger: choose one of csv, none, wandb",
    ),
    (
        "training-group",
        ["model=lte"],
        "unknown option model: python -m lte.test --cfg job lists the options (add + in front, "
        "+model=lte, only to add a new key)",
    ),
    (
        "delete-a-missing-key",
        ["~nothing"],
        "Could not delete from config. 'nothing' does not exist.",
    ),
    (
        "sweep-without-multirun",
        ["ckpt=a.pth,b.pth"],
        "ckpt=a.pth,b.pth gives several values: add -m to run one job per value, or write a list "
        "as ckpt=[a,b] or a text holding commas as ckpt='a,b'",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_lte_test_config_mistake_is_one_line(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    run = tmp_path / "run"
    before = snapshot(tmp_path)
    res = run_in_process("lte.test", *overrides, f"hydra.run.dir={run}")
    assert res.returncode == 2, res.stderr[-3000:]
    assert res.stderr.splitlines() == [f"error: {message}"], res.stderr[-3000:]
    assert snapshot(tmp_path) == before, "a refused command writes nothing"


def test_a_sweep_with_multirun_is_checked_per_value(tmp_path: Path) -> None:
    """``-m`` sweeps stay Hydra's; their keys are still checked (with the first value)."""
    res = run_in_process(
        "lte.test", "-m", "testset=sample,nope", "eval.chunks=1,2", f"hydra.sweep.dir={tmp_path}/s"
    )
    assert res.returncode == 2
    assert res.stderr.startswith("error: unknown option eval.chunks: did you mean eval.chunk?")


def test_help_is_still_hydras(tmp_path: Path) -> None:
    res = run_in_process("lte.test", "--help")
    assert res.returncode == 0 and "== Config ==" in res.stdout, res.stderr[-2000:]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("model.hidden_dim", "model.decoder.hidden_dim"),  # the same name one level down
        ("trainer.devicess", "trainer.devices"),  # a typo among its siblings
        ("trainer.accumulate_grad_batches", None),  # nothing alike: no guess
        ("sed", "seed"),
    ],
)
def test_closest_key(key: str, expected: str | None) -> None:
    known = [
        "seed",
        "model",
        "model.scale_max",
        "model.decoder",
        "model.decoder.hidden_dim",
        "trainer",
        "trainer.devices",
        "trainer.limit_train_batches",
    ]
    assert closest_key(key, known) == expected


def test_pinned_run_dir_is_one_hydra_value() -> None:
    assert pinned_run_dir(Path("outputs/train/2024-05-01/12-03-11")) == (
        "hydra.run.dir=outputs/train/2024-05-01/12-03-11"
    )
    assert pinned_run_dir(Path("runs/it's a,b")) == "hydra.run.dir='runs/it\\'s a,b'"
