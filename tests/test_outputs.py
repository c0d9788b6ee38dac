"""Files lte writes and reads: nothing a user made is replaced, changed or waited on by mistake.

The table runs every command that writes (``lte.upscale``, ``lte.test``, ``lte.compare``,
``lte.fourier``, ``scripts/convert_checkpoint.py``) against the user's own files: a foreign CSV, an
existing comparison, dangling and looping symbolic links, private (0600) and read-only (0444)
files, FIFOs, folders, suffixes PIL cannot write, an icon too big for its format, absurd numbers in
a results file, a file name holding a newline. Each row must end in exactly one ``error:`` line,
exit status 2, and a snapshot of the user's folder (bytes, mode, links) equal to the one before.
Rows run through the real entry points in-process (:func:`cli.run_main`); a few also in a real
subprocess. The positive tests below prove what the same discipline allows: writing through a
link, keeping a file's mode, ``--overwrite``. Every test runs under an alarm, so a command that
would wait forever on a FIFO fails instead of hanging the suite.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lte.test
from cli import ROOT, run_in_process, run_main, run_module, snapshot
from conftest import sample_photos
from lte.atomic import atomic_path, atomic_write_text, check_writable
from lte.checkpoint import save_lte
from lte.cli.test import main as lte_test_main
from lte.data.images import save_rgb
from lte.errors import UserError
from lte.files import check_input, check_output
from lte.models import build_model
from lte.results import CSV_HEADER, ResultRecord, merge_results, read_results

TINY = ["model.decoder.hidden_dim=16", "model.decoder.mlp_hidden=[16,16]"]
#: The environment a command runs with: no W&B account, no data folder of the user's.
DROPPED_ENV = ("WANDB_API_KEY", "WANDB_MODE", "LTE_DATA")


@pytest.fixture(autouse=True)
def _no_hang() -> Iterator[None]:
    """Fail a test that blocks (e.g. opening a FIFO) instead of hanging the suite."""

    def stop(signum: int, frame: object) -> None:
        raise TimeoutError("blocked for 240 s: a FIFO was opened?")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(240)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """What every row may use and nothing changes: a tiny LTE checkpoint and a 40x32 photo crop."""
    root = tmp_path_factory.mktemp("outputs")
    torch.manual_seed(0)
    ckpt = root / "tiny.ckpt"
    save_lte(build_model("lte", "edsr_tiny", TINY).eval(), ckpt)
    photo = root / "photo.png"
    Image.open(sample_photos()[0]).convert("RGB").crop((100, 100, 140, 132)).save(photo)
    return {"ckpt": ckpt, "photo": photo}


def record(**changes: object) -> dict[str, object]:
    rec = ResultRecord("set5", 2, "benchmark", 38.2, 0.96, 5, "lte", "edsr_tiny", "a.pth")
    return {**rec.to_dict(), **changes}


def lte_results(path: Path, **changes: object) -> Path:
    """A results file (and its CSV) as lte.test writes it."""
    merge_results([record(**changes)], path)
    return path


# --- the user's files, one setup per row -----------------------------------------------------------


def nothing(u: Path) -> None:
    pass


def existing_image(u: Path) -> None:
    (u / "new\nline.png").write_bytes(b"the user's own picture")


def dangling_link(u: Path) -> None:
    (u / "out.png").symlink_to("nowhere.png")
    (u / "new.ckpt").symlink_to("nowhere.ckpt")
    (u / "scores.json").symlink_to("nowhere.json")


def link_loop(u: Path) -> None:
    (u / "a.png").symlink_to("b.png")
    (u / "b.png").symlink_to("a.png")


def read_only(u: Path) -> None:
    for name in ("out.png", "new.ckpt"):
        (u / name).write_bytes(b"keep me")
        (u / name).chmod(0o444)
    lte_results(u / "scores.json").chmod(0o444)


def fifos(u: Path) -> None:
    for name in ("out.png", "in.png", "scores.json", "old.ckpt", "r.json"):
        os.mkfifo(u / name)


def folders(u: Path) -> None:
    for name in ("new.ckpt", "r.json"):
        (u / name).mkdir()
    lte_results(u / "scores.json")
    (u / "scores.csv").unlink()
    (u / "scores.csv").mkdir()


def foreign_csv(u: Path) -> None:
    (u / "scores.csv").write_text("name,score\nmine,1\n")


def comparison(u: Path) -> None:
    lte_results(u / "r.json")
    (u / "cmp").mkdir()
    (u / "cmp" / "comparison.md").write_text("my own notes\n")


def read_only_plot(u: Path) -> None:
    lte_results(u / "r.json")
    (u / "cmp").mkdir()
    (u / "cmp" / "comparison.png").write_bytes(b"keep me")
    (u / "cmp" / "comparison.png").chmod(0o444)


def out_is_a_file(u: Path) -> None:
    lte_results(u / "r.json")
    (u / "cmp").write_text("a file, not a folder")


def results_json(text: str) -> Callable[[Path], None]:
    def setup(u: Path) -> None:
        (u / "r.json").write_text(text)

    return setup


def bad_record(**changes: object) -> Callable[[Path], None]:
    return results_json(json.dumps([record(), record(testset="b100", **changes)]))


DEEP = 100_000
UPSCALE = ["{photo}", "--ckpt", "{ckpt}"]
TEST = ["ckpt={ckpt}", "testset=sample", "scales=[2]", "hydra.run.dir={u}/../run"]
FOURIER = ["--ckpt", "{ckpt}", "--image", "{photo}", "--at", "1,1"]

# (id, command, setup, argv, pattern the one error line must match)
ROWS: list[tuple[str, str, Callable[[Path], None], list[str], str]] = [
    # -- lte.upscale ---------------------------------------------------------------------------------
    ("upscale: dangling link", "upscale", dangling_link, [*UPSCALE, "{u}/out.png", "--scale", "2"], r"out\.png' is a symbolic link to '.*nowhere\.png', which does not exist: .*--overwrite"),
    ("upscale: link loop", "upscale", link_loop, [*UPSCALE, "{u}/a.png", "--scale", "2", "--overwrite"], "symbolic links form a loop"),
    ("upscale: read-only output, --overwrite", "upscale", read_only, [*UPSCALE, "{u}/out.png", "--scale", "2", "--overwrite"], r"out\.png' is read-only \(mode 0444\): make it writable"),
    ("upscale: FIFO output, --overwrite", "upscale", fifos, [*UPSCALE, "{u}/out.png", "--scale", "2", "--overwrite"], r"out\.png' is a FIFO \(named pipe\), not a regular file"),
    ("upscale: FIFO input", "upscale", fifos, ["{u}/in.png", "{u}/o.png", "--ckpt", "{ckpt}", "--scale", "2"], r"input image '.*in\.png' is a FIFO \(named pipe\), not a regular file"),
    ("upscale: newline in an existing name", "upscale", existing_image, [*UPSCALE, "{u}/new\nline.png", "--scale", "2"], r"output '.*new\\nline\.png' already exists: .*--overwrite"),
    ("upscale: .psd", "upscale", nothing, [*UPSCALE, "{u}/o.psd", "--scale", "2"], r"o\.psd': PIL cannot write PSD images"),
    ("upscale: .xpm", "upscale", nothing, [*UPSCALE, "{u}/o.xpm", "--scale", "2"], "PIL cannot write XPM images"),
    ("upscale: .xbm (1-bit only)", "upscale", nothing, [*UPSCALE, "{u}/o.xbm", "--scale", "2"], "PIL cannot write XBM images .*mode RGB"),
    ("upscale: .h5", "upscale", nothing, [*UPSCALE, "{u}/o.h5", "--scale", "2"], "PIL cannot write HDF5 images"),
    ("upscale: .ico over 256", "upscale", nothing, [*UPSCALE, "{u}/o.ico", "--scale", "8"], r"ICO images are at most 256 pixels a side, and this one would be 320x256"),
    ("upscale: .icns", "upscale", nothing, [*UPSCALE, "{u}/o.icns", "--scale", "2"], "ICNS files store fixed icon sizes"),
    ("upscale: .webp over 16383", "upscale", nothing, [*UPSCALE, "{u}/o.webp", "--size", "16384x8", "--max-output-pixels", "200000"], "WEBP images are at most 16383"),
    # -- lte.test: the results file and the CSV beside it ----------------------------------------------
    ("test: foreign CSV beside the results file", "test", foreign_csv, [*TEST, "results_file={u}/scores.json"], r"results_file='.*scores\.json': '.*scores\.csv' beside it was not written by lte"),
    ("test: results file a dangling link", "test", dangling_link, [*TEST, "results_file={u}/scores.json"], r"results_file='.*scores\.json' is a symbolic link to .*, which does not exist: .*remove the link"),
    ("test: read-only results file", "test", read_only, [*TEST, "results_file={u}/scores.json"], r"results_file='.*scores\.json' is read-only \(mode 0444\)"),
    ("test: results file a FIFO", "test", fifos, [*TEST, "results_file={u}/scores.json"], r"results_file='.*scores\.json' is a FIFO \(named pipe\), not a regular file"),
    ("test: the CSV is a folder", "test", folders, [*TEST, "results_file={u}/scores.json"], r"its CSV '.*scores\.csv' is a folder"),
    ("test: results file with Infinity", "test", bad_record(psnr=float("inf")), [*TEST, "results_file={u}/r.json"], r"r\.json' record 1: psnr inf is not a finite number from 0 to 200"),
    # -- lte.compare -----------------------------------------------------------------------------------
    ("compare: existing comparison.md", "compare", comparison, ["{u}/r.json", "--out", "{u}/cmp"], r"comparison\.md' already exists: .*--overwrite"),
    ("compare: read-only plot, --overwrite", "compare", read_only_plot, ["{u}/r.json", "--out", "{u}/cmp", "--overwrite"], r"comparison\.png' is read-only"),
    ("compare: --baseline typo, --out not made", "compare", comparison, ["{u}/r.json", "--out", "{u}/new", "--baseline", "rdn-nope"], "--baseline 'rdn-nope' is not a method"),
    ("compare: --out is a file", "compare", out_is_a_file, ["{u}/r.json", "--out", "{u}/cmp"], r"--out '.*cmp' is a file, not a folder"),
    ("compare: results file a folder", "compare", folders, ["{u}/r.json", "--out", "{u}/cmp"], r"results file '.*r\.json' is a folder"),
    ("compare: results file a FIFO", "compare", fifos, ["{u}/r.json", "--out", "{u}/cmp"], r"results file '.*r\.json' is a FIFO \(named pipe\)"),
    ("compare: newline in a missing name", "compare", nothing, ["{u}/x\ny.json", "--out", "{u}/cmp"], r"results file '.*x\\ny\.json' does not exist"),
    ("compare: PSNR Infinity", "compare", bad_record(psnr=float("inf")), ["{u}/r.json", "--out", "{u}/cmp"], r"r\.json' record 1: psnr inf is not a finite number"),
    ("compare: PSNR NaN", "compare", bad_record(psnr=float("nan")), ["{u}/r.json", "--out", "{u}/cmp"], "record 1: psnr nan is not a finite number"),
    ("compare: PSNR 1e308", "compare", bad_record(psnr=1e308), ["{u}/r.json", "--out", "{u}/cmp"], r"record 1: psnr 1e\+308 is not a finite number from 0 to 200"),
    ("compare: PSNR 10**400", "compare", bad_record(psnr=10**400), ["{u}/r.json", "--out", "{u}/cmp"], r"record 1: psnr 1000000000.*\.\.\. is not a finite number"),
    ("compare: negative PSNR", "compare", bad_record(psnr=-3.0), ["{u}/r.json", "--out", "{u}/cmp"], "record 1: psnr -3.0 is not"),
    ("compare: SSIM 2", "compare", bad_record(ssim=2.0), ["{u}/r.json", "--out", "{u}/cmp"], "record 1: ssim 2.0 is not a finite number from -1 to 1"),
    ("compare: scale 1e6", "compare", bad_record(scale=1e6), ["{u}/r.json", "--out", "{u}/cmp"], "record 1: scale 1000000.0 is not a finite number from 1 to 1000"),
    ("compare: scale Infinity", "compare", bad_record(scale=float("inf")), ["{u}/r.json", "--out", "{u}/cmp"], "record 1: scale inf is not"),
    ("compare: 100000-deep JSON", "compare", results_json("[" * DEEP + "]" * DEEP), ["{u}/r.json", "--out", "{u}/cmp"], "nests JSON deeper than anything lte writes"),
    # -- lte.fourier -----------------------------------------------------------------------------------
    ("fourier: dangling link", "fourier", dangling_link, [*FOURIER, "--out", "{u}/out.png"], r"--out '.*out\.png' is a symbolic link to"),
    ("fourier: FIFO, --overwrite", "fourier", fifos, [*FOURIER, "--out", "{u}/out.png", "--overwrite"], "is a FIFO"),
    ("fourier: read-only, --overwrite", "fourier", read_only, [*FOURIER, "--out", "{u}/out.png", "--overwrite"], r"is read-only \(mode 0444\)"),
    # -- scripts/convert_checkpoint.py -------------------------------------------------------------------
    ("convert: NEW a dangling link", "convert", dangling_link, ["{ckpt}", "{u}/new.ckpt"], r"new\.ckpt' is a symbolic link to .*: choose another name, or remove the link"),
    ("convert: NEW a folder", "convert", folders, ["{ckpt}", "{u}/new.ckpt"], r"new\.ckpt' is a folder"),
    ("convert: NEW read-only", "convert", read_only, ["{ckpt}", "{u}/new.ckpt"], r"new\.ckpt' is read-only"),
    ("convert: OLD a FIFO", "convert", fifos, ["{u}/old.ckpt", "{u}/new.ckpt"], r"checkpoint '.*old\.ckpt' is a FIFO"),
]  # fmt: skip


def _convert_main() -> Callable[[list[str]], None]:
    spec = importlib.util.spec_from_file_location(
        "convert_checkpoint", ROOT / "scripts" / "convert_checkpoint.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def run_command(command: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """The command's real entry point, in this process."""
    if command == "test":
        return run_main(lte_test_main, argv, prog=lte.test.__file__, cwd=ROOT, drop_env=DROPPED_ENV)
    if command == "convert":
        main = _convert_main()
        return run_main(lambda: main(argv), argv, prog="convert_checkpoint.py")
    return run_in_process(f"lte.{command}", *argv)


def setup_row(
    tmp_path: Path, world: dict[str, Path], setup: Callable[[Path], None], argv: list[str]
) -> tuple[Path, list[str]]:
    user = tmp_path / "user"
    user.mkdir()
    setup(user)
    names = {"u": str(user), **{k: str(v) for k, v in world.items()}}
    return user, [a.format(**names) for a in argv]


def assert_one_error_line(res: subprocess.CompletedProcess[str], pattern: str) -> None:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.stderr
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize(
    ("command", "setup", "argv", "pattern"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_refused_in_one_line_and_nothing_changes(
    tmp_path: Path,
    world: dict[str, Path],
    command: str,
    setup: Callable[[Path], None],
    argv: list[str],
    pattern: str,
) -> None:
    user, args = setup_row(tmp_path, world, setup, argv)
    before = snapshot(user)
    res = run_command(command, args)
    assert_one_error_line(res, pattern)
    assert snapshot(user) == before, "a file of the user's changed, appeared or disappeared"


def test_every_row_is_distinct() -> None:
    assert len({r[0] for r in ROWS}) == len(ROWS)
    assert len({(r[1], r[2], tuple(r[3])) for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize(
    "row_id", ["compare: PSNR Infinity", "upscale: FIFO input", "convert: OLD a FIFO"]
)
def test_rows_in_a_real_subprocess(tmp_path: Path, world: dict[str, Path], row_id: str) -> None:
    """What only a fresh interpreter shows (import-time output); the FIFO must not block it."""
    command, setup, argv, pattern = next(r[1:] for r in ROWS if r[0] == row_id)
    user, args = setup_row(tmp_path, world, setup, argv)
    before = snapshot(user)
    if command == "convert":
        res = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "convert_checkpoint.py"), *args],
            capture_output=True,
            text=True,
            timeout=200,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    else:
        res = run_module(f"lte.{command}", *args, timeout=200)
    assert_one_error_line(res, pattern)
    assert snapshot(user) == before


# --- what the discipline allows ---------------------------------------------------------------------


def test_lte_test_merges_through_a_link_into_a_private_file(tmp_path: Path) -> None:
    """A results file linked into a shared folder: the record lands in the target, which stays a
    0600 file, and the link stays a link (the CSV is written beside the link, as its name says)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    target = lte_results(shared / "all.json")
    target.chmod(0o600)
    res_dir = tmp_path / "res"
    res_dir.mkdir()
    link = res_dir / "scores.json"
    link.symlink_to("../shared/all.json")
    res = run_main(
        lte_test_main,
        [
            "baseline=bicubic",
            "testset=sample",
            "scales=[4]",
            f"results_file={link}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        prog=lte.test.__file__,
        cwd=ROOT,
        drop_env=DROPPED_ENV,
    )
    assert res.returncode == 0, res.stderr
    assert link.is_symlink() and os.readlink(link) == "../shared/all.json"
    assert [r["model"] for r in read_results(target)] == ["lte", "bicubic"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert (res_dir / "scores.csv").read_text().startswith(CSV_HEADER)
    assert not [p for p in (*shared.iterdir(), *res_dir.iterdir()) if ".lte-" in p.name]


def test_merge_keeps_a_private_mode_and_an_lte_csv_is_rewritten(tmp_path: Path) -> None:
    path = lte_results(tmp_path / "r.json")
    path.chmod(0o600)
    path.with_suffix(".csv").chmod(0o640)
    merge_results([record(testset="b100")], path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.with_suffix(".csv").stat().st_mode) == 0o640
    assert len(path.with_suffix(".csv").read_text().splitlines()) == 3


def test_upscale_overwrite_keeps_mode_and_writes_through_a_link(
    tmp_path: Path, world: dict[str, Path]
) -> None:
    private = tmp_path / "private.png"
    private.write_bytes(b"earlier")
    private.chmod(0o600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "linked.png"
    link.symlink_to(elsewhere / "target.png")  # dangling until --overwrite writes its target
    for out in (private, link):
        res = run_in_process(
            "lte.upscale", str(world["photo"]), str(out), "--ckpt", str(world["ckpt"]),
            "--scale", "2", "--overwrite",
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert Image.open(out).size == (80, 64)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert link.is_symlink() and (elsewhere / "target.png").is_file()


def test_compare_overwrite_replaces_its_own_outputs(tmp_path: Path) -> None:
    results = lte_results(tmp_path / "r.json")
    out = tmp_path / "cmp"
    assert run_in_process("lte.compare", str(results), "--out", str(out)).returncode == 0
    (out / "comparison.md").chmod(0o640)
    merge_results([record(psnr=30.0, ckpt="b.pth", model="liif")], results)
    res = run_in_process("lte.compare", str(results), "--out", str(out), "--overwrite")
    assert res.returncode == 0, res.stderr
    assert "edsr_tiny-liif" in (out / "comparison.md").read_text()
    assert stat.S_IMODE((out / "comparison.md").stat().st_mode) == 0o640


def test_ico_keeps_the_image_size_up_to_256(tmp_path: Path) -> None:
    for w, h in ((100, 50), (256, 256)):
        save_rgb(np.zeros((h, w, 3), np.uint8), tmp_path / f"{w}.ico")
        assert Image.open(tmp_path / f"{w}.ico").size == (w, h)


# --- the atomic layer and the checks ------------------------------------------------------------------


def test_atomic_write_through_a_relative_link_keeps_the_link(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    target = tmp_path / "b" / "file.txt"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "a" / "link.txt"
    link.symlink_to("../b/file.txt")
    atomic_write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == "../b/file.txt"
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["link.txt"]
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["file.txt"]


def test_atomic_modes_new_and_replaced(tmp_path: Path) -> None:
    umask = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "new.txt", "x")
        assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640
    finally:
        os.umask(umask)
    kept = tmp_path / "kept.txt"
    kept.write_text("x")
    kept.chmod(0o604)
    atomic_write_text(kept, "y")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o604


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may give a file to another user")
def test_atomic_keeps_the_owner_when_root(tmp_path: Path) -> None:
    path = tmp_path / "theirs.txt"
    path.write_text("x")
    os.chown(path, 12345, 23456)
    atomic_write_text(path, "y")
    assert (path.stat().st_uid, path.stat().st_gid) == (12345, 23456)


def test_atomic_refuses_what_it_must_not_replace(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    ro = tmp_path / "ro.txt"
    ro.write_text("keep")
    ro.chmod(0o444)
    (tmp_path / "loop").symlink_to("loop")
    for name, message in (
        ("pipe", "is a FIFO"),
        ("ro.txt", r"is read-only \(mode 0444\)"),
        ("loop", "form a loop"),
    ):
        before = snapshot(tmp_path)
        with pytest.raises(UserError, match=message):
            atomic_write_text(tmp_path / name, "x")
        with pytest.raises(UserError, match=message):
            check_writable(tmp_path / name)
        assert snapshot(tmp_path) == before
    with pytest.raises(UserError, match="read-only"), atomic_path(tmp_path / "late.txt") as tmp:
        tmp.write_text("x")
        Path(tmp_path / "late.txt").write_text("made meanwhile, read-only")
        (tmp_path / "late.txt").chmod(0o444)
    assert (tmp_path / "late.txt").read_text() == "made meanwhile, read-only"


def test_check_output_and_check_input(tmp_path: Path) -> None:
    dangling = tmp_path / "d.png"
    dangling.symlink_to("sub/target.png")
    with pytest.raises(UserError, match="which does not exist"):
        check_output(dangling)
    with pytest.raises(UserError, match=r"folder '.*sub' does not exist"):
        check_output(dangling, overwrite=True)
    (tmp_path / "sub").mkdir()
    assert check_output(dangling, overwrite=True) == tmp_path / "sub" / "target.png"
    made = tmp_path / "x" / "y" / "z.txt"
    assert check_output(made, make_folder=True) == made and not (tmp_path / "x").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="a part of its path is a file, not a folder"):
        check_output(tmp_path / "file" / "z.txt", make_folder=True)
    (tmp_path / "broken").symlink_to("nowhere")
    with pytest.raises(UserError, match=r"'.*broken' is a symbolic link to nothing, not a folder"):
        check_output(tmp_path / "broken" / "z" / "z.txt", make_folder=True)
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(UserError, match=r"'.*pipe' is a FIFO \(named pipe\), not a regular file"):
        check_input(tmp_path / "pipe", "input")
    with pytest.raises(UserError, match="is a folder"):
        check_input(tmp_path, "input")
