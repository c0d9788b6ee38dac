"""W&B for evaluation, read back from the offline runs that ``lte.test`` and ``lte.compare`` write.

Checks what a user sees in the W&B UI: ``scale`` as the step metric of ``test/<set>/*``, the run's
name, group, tags and config (checkpoint, training run, protocol), the comparison run's table,
native line charts and markdown; plus the bicubic row (equal to a literal PIL computation), tqdm
progress, and comparisons with missing cells.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lte.checkpoint import load_checkpoint
from lte.comparison import compare, gather, markdown_tables
from lte.data.images import load_rgb
from lte.errors import UserError
from lte.evaluation import BICUBIC, evaluate_testset
from lte.inference import stderr_progress
from lte.results import ResultRecord, merge_results
from lte.testsets import FolderSet
from lte.wandb_eval import comparison_name, wandb_identity
from lte.wandb_offline import offline_runs, read_offline_run
from test_test_cli import make_folder, save_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT / "data" / "sample" / "val"
RUN_ID = "tr41nrun"


def add_training_run(ckpt: Path, run_id: str = RUN_ID) -> Path:
    """Store a training run id and config in ``ckpt`` as ``SRLitModule.on_save_checkpoint`` does."""
    obj = torch.load(ckpt, weights_only=True)
    obj["wandb_run_id"] = run_id
    obj["train_config"] = {"logger": {"wandb": {"project": "lte-demo", "entity": None}}}
    torch.save(obj, ckpt)
    return ckpt


def env_offline() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_MODE")}
    return {**env, "WANDB_SILENT": "true"}


def lte_test(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lte.test", *args],
        cwd=cwd,
        env=env_offline(),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("wandb_eval")
    add_training_run(save_tiny_checkpoint(d / "tiny.ckpt"))
    make_folder(d / "photos")  # two 64x64 photo crops, shipped LR for x2 only
    return d


# --- lte.test -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_test_runs_are_drawn_by_wandb_against_scale(work: Path) -> None:
    results = work / "all.json"
    common = ["testset=folder", f"testset.hr_dir={work / 'photos' / 'HR'}", "logger=wandb"]
    common += [f"results_file={results}"]
    # Scales out of order: W&B must still get them in increasing order (one line per set).
    model = lte_test(f"ckpt={work / 'tiny.ckpt'}", "scales=[4,2,3]", *common,
                     f"hydra.run.dir={work / 'run_model'}", cwd=work)  # fmt: skip
    assert model.returncode == 0, model.stderr
    bicubic = lte_test("baseline=bicubic", "scales=[2,3,4]", *common,
                       f"hydra.run.dir={work / 'run_bicubic'}", cwd=work)  # fmt: skip
    assert bicubic.returncode == 0, bicubic.stderr
    recs = json.loads(results.read_text())

    (run,) = offline_runs(work / "run_model" / "wandb")
    tiny = "edsr-n_resblocks=2-n_feats=16"
    assert run.job_type == "test"
    assert run.name == f"test-{tiny}-lte-photos"
    assert run.group == f"{tiny}-lte"
    assert {"test", "lte", tiny, "photos", f"train-{RUN_ID}"} <= set(run.tags)
    # The step metric: W&B's x axis for test/<set>/* is `scale`.
    assert run.metrics["test/photos/*"]["step_metric"] == "scale"
    assert "scale" in run.metrics
    mine = {r["scale"]: r for r in recs if r["model"] == "lte"}
    psnr = run.series("test/photos/psnr", "scale")
    assert [s for s, _ in psnr] == [2, 3, 4]
    assert [v for _, v in psnr] == pytest.approx([mine[s]["psnr"] for s in (2, 3, 4)], abs=1e-9)
    assert [v for _, v in run.series("test/photos/ssim", "scale")] == pytest.approx(
        [mine[s]["ssim"] for s in (2, 3, 4)], abs=1e-9
    )
    assert run.summary["test/photos/psnr_x3"] == pytest.approx(mine[3]["psnr"])
    # Config: the checkpoint, the training run it came from, the protocol.
    cfg = run.config
    assert cfg["ckpt"] == str((work / "tiny.ckpt").resolve()) and cfg["ckpt_source"] == "lte"
    assert cfg["train_run_id"] == RUN_ID and cfg["train_run_path"] == f"lte-demo/{RUN_ID}"
    assert cfg["protocols"] == {"photos": "benchmark"} and cfg["scales"] == [2, 3, 4]
    assert (cfg["method"], cfg["model"], cfg["encoder"]) == (f"{tiny}-lte", "lte", tiny)
    assert RUN_ID in run.notes
    table = run.table("test/results")
    assert table["columns"][:2] == ["testset", "scale"] and len(table["data"]) == 3

    # The bicubic row: its own run, group and results rows, the same protocol.
    (brun,) = offline_runs(work / "run_bicubic" / "wandb")
    assert (brun.name, brun.group) == ("test-bicubic-photos", "bicubic")
    assert brun.config["train_run_id"] is None and brun.config["ckpt"] == "bicubic"
    assert not any(t.startswith("train-") for t in brun.tags)
    bic = {r["scale"]: r for r in recs if r["model"] == "bicubic"}
    assert set(bic) == {2, 3, 4} and {r["encoder"] for r in bic.values()} == {"none"}
    assert {r["protocol"] for r in recs} == {"benchmark"}
    assert [v for _, v in brun.series("test/photos/psnr", "scale")] == pytest.approx(
        [bic[s]["psnr"] for s in (2, 3, 4)], abs=1e-9
    )
    assert "bicubic photos x2: PSNR" in bicubic.stdout + bicubic.stderr  # the log names the row


def test_progress_bar_per_test_set_and_scale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    testset = FolderSet(make_folder(tmp_path / "crops") / "HR", name="crops")
    evaluate_testset(BICUBIC, testset, [4], progress=True)
    err = capsys.readouterr().err
    # The bar opens at 0/2 (later redraws are rate-limited by tqdm, and the bar is cleared at the end).
    assert "crops x4" in err and "0/2" in err and "img" in err
    evaluate_testset(BICUBIC, testset, [4], progress=False)
    assert capsys.readouterr().err == ""
    # None: a bar only on a terminal; pytest's captured stderr is not one.
    evaluate_testset(BICUBIC, testset, [4], progress=None)
    assert capsys.readouterr().err == ""


def test_tile_progress_is_a_tqdm_bar(capsys: pytest.CaptureFixture[str]) -> None:
    show = stderr_progress("upscaling tiles")
    for done in range(1, 5):
        show(done, 4)
    err = capsys.readouterr().err
    assert "upscaling tiles" in err and "4/4" in err
    quiet = stderr_progress("upscaling tiles", disable=True)
    for done in range(1, 5):
        quiet(done, 4)
    assert capsys.readouterr().err == ""


def test_training_run_is_read_from_the_checkpoint_as_data(tmp_path: Path) -> None:
    """The run comes with the loaded model (one read of the file), as plain validated data."""

    def run_of(path: Path) -> dict[str, str]:
        run = load_checkpoint(path).training_run
        return {} if run is None else run.to_dict()

    ckpt = add_training_run(save_tiny_checkpoint(tmp_path / "a.ckpt"))
    assert run_of(ckpt) == {"id": RUN_ID, "project": "lte-demo", "path": f"lte-demo/{RUN_ID}"}
    plain = save_tiny_checkpoint(tmp_path / "b.ckpt")  # trained without W&B
    assert run_of(plain) == {}
    bad = add_training_run(save_tiny_checkpoint(tmp_path / "c.ckpt"), run_id="../../etc")
    assert run_of(bad) == {}  # not an id: ignored, never used in a path or a tag


def test_run_identity_comes_from_the_records() -> None:
    rec = ResultRecord("set5", 2, "benchmark", 30.0, 0.9, 5, "liif", "rdn", "x.pth")
    other = ResultRecord("set14", 2, "benchmark", 29.0, 0.9, 14, "liif", "rdn", "x.pth")
    ident = wandb_identity([rec, other], {"id": "abc", "path": "p/abc"}, {})
    assert ident == {
        "name": "test-rdn-liif-set5+set14",
        "group": "rdn-liif",
        "tags": ["test", "liif", "rdn", "set5", "set14", "train-abc"],
        "method": "rdn-liif",
    }
    mine = wandb_identity([rec], {}, {"name": "mine", "group": "g", "tags": ["x"]})
    assert (mine["name"], mine["group"], mine["tags"][-1]) == ("mine", "g", "x")


# --- bicubic ------------------------------------------------------------------------------------


def literal_bicubic_psnr(path: Path, s: int, protocol: str) -> float:
    """PIL bicubic down (the protocol's LR) and up again, PSNR written out by hand in float64."""
    hr = load_rgb(path)
    h, w = hr.shape[0] // s, hr.shape[1] // s
    crop = hr[: h * s, : w * s]
    lr = Image.fromarray(crop).resize((w, h), Image.Resampling.BICUBIC)
    up = np.asarray(lr.resize((w * s, h * s), Image.Resampling.BICUBIC), dtype=np.float64)
    diff = (up - crop.astype(np.float64)) / 255
    if protocol == "benchmark":
        diff = diff @ (np.array([65.738, 129.057, 25.064]) / 256)
        border = s
    else:
        border = s + 6
    diff = diff[border:-border, border:-border]
    return -10 * math.log10(float(np.mean(diff**2)))


@pytest.mark.parametrize(("protocol", "scales"), [("div2k", [2, 3, 4]), ("benchmark", [3])])
def test_bicubic_row_equals_a_literal_pil_computation(protocol: str, scales: list[int]) -> None:
    files = sorted(VAL.glob("*.png"))
    testset = FolderSet(VAL, name="val", protocol=protocol)
    records = evaluate_testset(BICUBIC, testset, scales, ckpt="bicubic")
    for rec in records:
        s = int(rec.scale)
        want = [literal_bicubic_psnr(f, s, protocol) for f in files]
        assert [x.psnr for x in rec.per_image] == pytest.approx(want, abs=1e-4)
        assert rec.psnr == pytest.approx(float(np.mean(want)), abs=1e-4)
        assert (rec.model, rec.encoder, rec.images) == ("bicubic", "none", 3)
        assert 0 < rec.ssim < 1
    # Bicubic gets worse as the scale grows, as every table shows.
    assert all(a.psnr > b.psnr for a, b in itertools.pairwise(records))


# --- lte.compare ----------------------------------------------------------------------------------


def results_with_gaps(tmp_path: Path) -> list[Path]:
    """LTE and LIIF at x2-x4, a fixed-scale-like model at x2 only (x3 present but unscored),
    and the bicubic row; two test sets."""
    rows = {
        "lte": {2: 33.0, 3: 30.0, 4: 28.0},
        "liif": {2: 32.9, 3: 29.9, 4: 27.9},
        "bicubic": {2: 30.0, 3: 27.0, 4: 25.5},
    }
    files = []
    for model, cells in rows.items():
        encoder = "none" if model == "bicubic" else "rdn"
        recs = [
            ResultRecord(t, s, "benchmark", p - d, 0.9, 5, model, encoder, f"{model}.pth")
            for t, d in (("set5", 0.0), ("set14", 2.0))
            for s, p in cells.items()
        ]
        files.append(tmp_path / f"{model}.json")
        merge_results(recs, files[-1])
    fixed = [
        ResultRecord("set5", 2, "benchmark", 32.5, 0.9, 5, "fixed", "edsr", "x2.pth"),
        ResultRecord("set5", 3, "benchmark", None, None, 5, "fixed", "edsr", "x2.pth"),  # type: ignore[arg-type]
    ]
    files.append(tmp_path / "fixed.json")
    merge_results(fixed, files[-1])
    return files


def test_compare_tolerates_missing_cells(tmp_path: Path) -> None:
    files = results_with_gaps(tmp_path)
    paths = compare(files, tmp_path / "cmp", baseline="bicubic")
    md = paths["markdown"].read_text()
    set5 = md.split("## set5")[1].split("## ")[0]
    row = next(line for line in set5.splitlines() if line.startswith("| edsr-fixed"))
    assert row.split("|")[2:5] == [" 32.50 (+2.50) ", " – ", " – "]
    assert "| bicubic |" in set5
    assert Image.open(paths["plot"]).size[0] > 0
    records = gather(files)
    assert comparison_name(records) == "compare rdn+edsr: lte vs liif vs bicubic vs fixed"
    set14 = markdown_tables(records).split("## set14")[1].split("## ")[0]
    assert "edsr-fixed" not in set14 and "| bicubic |" in set14


@pytest.mark.slow
def test_compare_run_holds_table_native_charts_and_markdown(tmp_path: Path) -> None:
    files = results_with_gaps(tmp_path)
    out = tmp_path / "wb"
    cmd = [sys.executable, "-m", "lte.compare", *map(str, files), "--out", str(out), "--wandb"]
    proc = subprocess.run(
        [*cmd, "--baseline", "bicubic"], env=env_offline(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    (run,) = offline_runs(out / "wandb")
    assert run.job_type == "compare" and run.group == "compare"
    assert run.name == "compare rdn+edsr: lte vs liif vs bicubic vs fixed"
    assert {"compare", "rdn", "edsr", "lte", "liif", "bicubic", "fixed"} == set(run.tags)
    assert run.config["methods"] == ["rdn-lte", "rdn-liif", "bicubic", "edsr-fixed"]
    assert run.config["baseline"] == "bicubic" and run.config["testsets"] == ["set14", "set5"]
    assert run.config["results"] == [str(f.resolve()) for f in files]
    # One native line chart per test set, one series per method, missing cells left out.
    charts = run.charts()
    assert set(charts) == {"compare/set5/psnr_vs_scale", "compare/set14/psnr_vs_scale"}
    assert {c["panelDefId"] for c in charts.values()} == {"wandb/lineseries/v0"}
    assert charts["compare/set5/psnr_vs_scale"]["stringSettings"]["xname"] == "scale"
    data = run.table("compare/set5/psnr_vs_scale_table")["data"]
    series: dict[str, list[tuple[float, float]]] = {}
    for x, method, y in data:
        series.setdefault(method, []).append((x, y))
    assert series["rdn-lte"] == [(2, 33.0), (3, 30.0), (4, 28.0)]
    assert series["bicubic"] == [(2, 30.0), (3, 27.0), (4, 25.5)]
    assert series["edsr-fixed"] == [(2, 32.5)]
    set14 = run.table("compare/set14/psnr_vs_scale_table")["data"]
    assert {m for _, m, _ in set14} == {"rdn-lte", "rdn-liif", "bicubic"}
    # The table of every record, the markdown, and the files beside them.
    table = run.table("compare/table")
    assert table["columns"][0] == "method" and len(table["data"]) == 20
    html = next(r["compare/markdown"] for r in run.history if "compare/markdown" in r)
    text = (run.folder / "files" / html["path"]).read_text()
    assert "| edsr-fixed | **32.50** (+2.50) |" not in text  # lte is best at x2
    assert "| rdn-lte | **33.00** (+3.00)" in text
    assert (run.folder / "files" / "comparison.md").read_text() == (
        out / "comparison.md"
    ).read_text()


def test_reader_refuses_a_folder_without_a_run(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no run-"):
        read_offline_run(tmp_path)
    (tmp_path / "run-x.wandb").write_bytes(b"nope")
    with pytest.raises(UserError, match="not a W&B run log"):
        read_offline_run(tmp_path)


def test_report_script_writes_its_spec_offline(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "wandb_report.py"), "--encoder", "rdn"]
    proc = subprocess.run(
        [*cmd, "--testsets", "set5", "div2k", "--spec", str(spec)],
        env=env_offline(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "offline" in proc.stdout and "no report was created" in proc.stdout
    data = json.loads(spec.read_text())
    assert data["title"] == "LTE vs LIIF vs Meta-SR vs LMF on rdn"
    assert {"lte", "lm_lte", "lm_liif+cmsr", "bicubic"} <= set(data["methods"])
    assert data["runset"]["filters"] == "Config('encoder') in ['rdn', 'none']"
    assert [(p["x"], p["y"]) for p in data["panels"]] == [
        ("scale", ["test/set5/psnr"]),
        ("scale", ["test/set5/ssim"]),
        ("scale", ["test/div2k/psnr"]),
        ("scale", ["test/div2k/ssim"]),
    ]
    assert {p["groupby"] for p in data["panels"]} == {"method"}
