"""``lte.compare`` on two results files: the markdown table, the plot, published rows, W&B."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from lte.cli.compare import main
from lte.comparison import compare, label_records, markdown_tables
from lte.errors import UserError
from lte.published import DIV2K_PSNR, DIV2K_SCALES, published_records
from lte.results import ResultRecord, merge_results


def rec(ckpt: str, model: str, testset: str, scale: float, psnr: float) -> ResultRecord:
    protocol = "div2k" if testset == "div2k" else "benchmark"
    return ResultRecord(testset, scale, protocol, psnr, 0.9, 5, model, "rdn", ckpt)


@pytest.fixture
def two_files(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "lte.json", tmp_path / "liif.json"
    merge_results(
        [
            rec("lte.pth", "lte", "set5", 2, 38.20),
            rec("lte.pth", "lte", "set5", 4, 32.60),
            rec("lte.pth", "lte", "div2k", 6, 27.00),
        ],
        a,
    )
    merge_results(
        [
            rec("liif.pth", "liif", "set5", 2, 38.10),
            rec("liif.pth", "liif", "set5", 4, 32.70),
            rec("liif.pth", "liif", "div2k", 6, 26.90),
        ],
        b,
    )
    return a, b


def table_row(md: str, section: str, method: str) -> list[str]:
    """The cells of ``method``'s row in the table under ``## section``."""
    part = md.split(f"## {section} ")[1].split("## ")[0]
    for line in part.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == method:
            return cells[1:]
    raise AssertionError(f"no row {method} in {section}:\n{part}")


def test_compare_two_files_writes_table_and_plot(
    two_files: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    paths = compare(list(two_files), out, baseline="rdn-liif")
    md = paths["markdown"].read_text()
    # Best per column in bold, deltas against the baseline.
    assert table_row(md, "set5", "rdn-lte") == ["**38.20** (+0.10)", "32.60 (-0.10)"]
    assert table_row(md, "set5", "rdn-liif") == ["38.10", "**32.70**"]
    assert table_row(md, "div2k", "rdn-lte") == ["**27.00** (+0.10)"]
    with Image.open(paths["plot"]) as img:
        assert img.format == "PNG" and img.size[0] > 300
    csv_text = paths["csv"].read_text().splitlines()
    assert csv_text[0].startswith("method,testset,scale") and len(csv_text) == 7


def test_published_rows_only_for_measured_cells(
    two_files: tuple[Path, Path], tmp_path: Path
) -> None:
    paths = compare(list(two_files), tmp_path / "cmp", published=True)
    md = paths["markdown"].read_text()
    # SPEC: RDN-LTE on Set5 x2 is 38.23, x4 32.61; DIV2K x6 27.04.
    assert table_row(md, "set5", "rdn-lte (paper)") == ["**38.23**", "32.61"]
    assert table_row(md, "div2k", "rdn-lte (paper)") == ["27.04"]
    assert "| x3 |" not in md  # no published column that nobody measured
    assert "bicubic (paper)" in md


def test_published_data_matches_spec_table() -> None:
    assert DIV2K_SCALES == (2, 3, 4, 6, 12, 18, 24, 30)
    assert DIV2K_PSNR[("edsr_baseline", "lte")] == (
        34.72,
        31.02,
        29.04,
        26.81,
        23.78,
        22.23,
        21.24,
        20.53,
    )
    recs = published_records(["urban100"], [4])
    assert {(r["model"], r["psnr"]) for r in recs} == {
        ("lte", 26.81),
        ("liif", 26.68),
        ("metasr", 26.55),
    }


def test_same_architecture_from_two_checkpoints_stays_apart() -> None:
    recs = [
        rec("runs/a/last.ckpt", "lte", "set5", 2, 38.0).to_dict(),
        rec("official.pth", "lte", "set5", 2, 38.2).to_dict(),
    ]
    labels = [r["method"] for r in label_records(recs)]
    assert labels == ["rdn-lte [last]", "rdn-lte [official]"]
    md = markdown_tables(label_records(recs))
    assert "**38.20**" in md


def test_bad_baseline_and_conflicting_results(two_files: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(UserError, match="baseline"):
        compare(list(two_files), tmp_path / "x", baseline="rdn-nope")
    dup = tmp_path / "dup.json"
    data = json.loads(two_files[0].read_text())
    data.append({**data[0], "psnr": 1.0})
    dup.write_text(json.dumps(data))
    with pytest.raises(UserError, match="two results"):
        compare([dup], tmp_path / "y")


def test_main_prints_the_table_and_fails_cleanly(
    two_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main([str(two_files[0]), str(two_files[1]), "--out", str(tmp_path / "m")])
    assert "rdn-lte" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "missing.json"), "--out", str(tmp_path / "m2")])
    assert exc.value.code == 2
    assert "missing.json" in capsys.readouterr().err
    assert not (tmp_path / "m2").exists()  # nothing is created before every input is read


def test_a_fixed_scale_model_is_known_by_its_records(tmp_path: Path) -> None:
    """The native scale comes from the records (``lte.test`` writes it), whatever the labels."""
    path = tmp_path / "fixed.json"
    fixed = ResultRecord("set5", 2, "benchmark", 37.0, 0.9, 5, "fixed", "edsr", "x2.pth", 2)
    merge_results([fixed, rec("lte.pth", "lte", "set5", 3, 34.0)], path)
    md = compare([path], tmp_path / "cmp")["markdown"].read_text()
    assert table_row(md, "set5", "edsr-fixed") == ["**37.00**", "—"]
    assert table_row(md, "set5", "rdn-lte") == ["–", "**34.00**"]


def test_a_bad_option_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["r.json"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: the following arguments are required: --out (see python -m lte.compare --help)"
    ]


@pytest.mark.slow
def test_wandb_comparison_run_offline(two_files: tuple[Path, Path], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}
    out = tmp_path / "wb"
    cmd = [sys.executable, "-m", "lte.compare", *map(str, two_files), "--out", str(out), "--wandb"]
    proc = subprocess.run(cmd, env={**env, "WANDB_SILENT": "true"}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert (out / "comparison.png").is_file()
