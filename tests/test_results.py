"""Results files: schema, merging under a lock, CSV, checks made before anything is measured."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lte.errors import UserError
from lte.results import (
    RESULT_KEYS,
    ResultRecord,
    check_results_file,
    merge_results,
    read_results,
)


def record(**kw: object) -> ResultRecord:
    base = dict(
        testset="set5", scale=2.0, protocol="benchmark", psnr=30.0, ssim=0.9, images=5,
        model="lte", encoder="edsr_baseline", ckpt="a.pth",
    )  # fmt: skip
    base.update(kw)
    return ResultRecord(**base)  # type: ignore[arg-type]


def test_results_file_schema_merge_and_csv(tmp_path: Path) -> None:
    path = tmp_path / "res.json"
    merge_results([record(), record(scale=3.0, psnr=27.0)], path)
    data = json.loads(path.read_text())
    assert [list(r) for r in data] == [list(RESULT_KEYS)] * 2
    assert set(RESULT_KEYS) == {
        "testset", "scale", "protocol", "psnr", "ssim", "images", "model", "encoder", "ckpt",
    }  # fmt: skip
    assert data[0]["scale"] == 2 and isinstance(data[0]["scale"], int)
    # Same key replaces, a new checkpoint adds.
    merge_results([record(psnr=31.0), record(ckpt="b.pth", psnr=29.0)], path)
    data = read_results(path)
    assert len(data) == 3
    assert {(r["ckpt"], r["scale"]): r["psnr"] for r in data}[("a.pth", 2)] == 31.0
    assert {(r["ckpt"], r["scale"]): r["psnr"] for r in data}[("a.pth", 3)] == 27.0
    csv_lines = path.with_suffix(".csv").read_text().splitlines()
    assert csv_lines[0] == ",".join(RESULT_KEYS) and len(csv_lines) == 4
    assert not list(tmp_path.glob("*.tmp"))


def test_native_scale_is_written_for_fixed_scale_models_only(tmp_path: Path) -> None:
    """JSON only: the CSV keeps lte's nine columns, so existing CSVs stay lte's."""
    path = tmp_path / "res.json"
    fixed = record(model="nearest", encoder="edsr_baseline_x2", native_scale=2)
    merge_results([record(), fixed], path)
    data = json.loads(path.read_text())
    assert list(data[0]) == list(RESULT_KEYS) and "native_scale" not in RESULT_KEYS
    assert list(data[1]) == [*RESULT_KEYS, "native_scale"] and data[1]["native_scale"] == 2
    assert read_results(path)[1]["native_scale"] == 2
    assert path.with_suffix(".csv").read_text().splitlines()[0] == ",".join(RESULT_KEYS)
    for bad in (2.5, "2", True, 0):
        path.write_text(json.dumps([{**data[1], "native_scale": bad}]))
        with pytest.raises(UserError, match=r"record 0: native_scale .* is not a whole scale"):
            read_results(path)


def test_records_written_by_hand_are_kept_and_read_back(tmp_path: Path) -> None:
    """A file of the documented schema (e.g. from an older run or another tool) merges cleanly."""
    path = tmp_path / "res.json"
    other = {**record(testset="urban100", ckpt="old.pth").to_dict(), "scale": 4.0}
    path.write_text(json.dumps([other]))
    out = merge_results([record()], path)
    assert [r["testset"] for r in out] == ["urban100", "set5"]
    assert read_results(path)[0] == other


def test_nan_ssim_is_written_as_null_and_bad_files_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "res.json"
    merge_results([record(ssim=math.nan)], path)
    assert json.loads(path.read_text())[0]["ssim"] is None
    bad = tmp_path / "bad.json"
    bad.write_text('[{"testset": "set5"}]')
    with pytest.raises(UserError, match="lacks"):
        read_results(bad)
    with pytest.raises(UserError, match=r"\.json"):
        merge_results([record()], tmp_path / "res.txt")


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("txt", "must end in .json"),
        ("no_folder", "does not exist: create it first"),
        ("folder", "is a folder"),
        ("not_json", "is not valid JSON"),
        ("not_list", "must hold a JSON list"),
        ("bad_record", "record 0: scale 'two'"),
        ("bad_type", "record 0: psnr"),
    ],
)
def test_check_results_file_names_the_option(tmp_path: Path, setup: str, fragment: str) -> None:
    path = tmp_path / "r.json"
    if setup == "txt":
        path = tmp_path / "r.txt"
    elif setup == "no_folder":
        path = tmp_path / "nope" / "r.json"
    elif setup == "folder":
        path.mkdir()
    elif setup == "not_json":
        path.write_text("{oops")
    elif setup == "not_list":
        path.write_text('{"testset": "set5"}')
    elif setup == "bad_record":
        path.write_text(json.dumps([{**record().to_dict(), "scale": "two"}]))
    elif setup == "bad_type":
        path.write_text(json.dumps([{**record().to_dict(), "psnr": "high"}]))
    with pytest.raises(UserError) as err:
        check_results_file(path)
    assert str(err.value).startswith("results_file=") and fragment in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_check_results_file_refuses_a_read_only_folder(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(UserError, match="permission denied"):
            check_results_file(ro / "r.json")
    finally:
        ro.chmod(0o755)


def _merge_one(path: str, i: int) -> None:
    merge_results([record(ckpt=f"job{i}.pth", psnr=20.0 + i)], path)


def test_parallel_jobs_lose_no_records(tmp_path: Path) -> None:
    """Eight processes merging into one file at once (a multirun sweep): every record survives."""
    path = tmp_path / "res.json"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_merge_one, args=(str(path), i)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert sorted(r["ckpt"] for r in read_results(path)) == [f"job{i}.pth" for i in range(8)]


def test_reading_and_comparing_results_loads_neither_torch_nor_hydra(tmp_path: Path) -> None:
    path = tmp_path / "res.json"
    merge_results([record(), record(scale=4.0, psnr=26.0)], path)
    code = (
        "import sys, lte.compare, lte.cli.compare, lte.results\n"
        "heavy = lambda: [m for m in ('torch', 'hydra') if m in sys.modules]\n"
        "assert not heavy(), heavy()\n"
        f"lte.compare.main([{str(path)!r}, '--out', {str(tmp_path / 'cmp')!r}])\n"
        "assert not heavy(), heavy()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cmp" / "comparison.png").is_file()
