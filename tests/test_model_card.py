"""``lte-export``'s model card and SHA-256 file, and the command's refusals, with real files.

A checkpoint trained by the real ``lte.train`` and scored by the real ``lte.test`` (with
``ckpt_sha256=``) exports with its training record, W&B run and test results in the card, and its
``.safetensors`` upscales a real photo byte-identically; an official release's card records its
repository's licence; every bad option is one ``error:`` line that leaves the folder unchanged.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

from cli import SMALL_TRAIN, run_in_process, run_main, run_module, snapshot
from conftest import sample_photos
from lte.checkpoint import save_lte, save_official
from lte.checksum import sha256_file
from lte.cli.export import main as export_main
from lte.cli.upscale import main as upscale_main
from lte.data.images import load_rgb, save_rgb
from lte.model_card import NO_LICENSE, OFFICIAL_ORIGINS
from lte.models import build_model


def export(ckpt: Path, out: Path, *extra: str) -> Any:
    return run_main(export_main, [str(ckpt), str(out), *extra], prog="lte-export")


def one_error(proc: Any) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def card_of(out: Path) -> dict[str, Any]:
    return json.loads(out.with_name(out.name + ".card.json").read_text())


@pytest.fixture
def official(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "lte-tiny.pth"
    save_official(build_model("lte", "edsr_tiny").eval(), path)
    return path


def test_an_official_release_records_its_repository_and_licence(
    official: Path, tmp_path: Path
) -> None:
    out = tmp_path / "m.safetensors"
    proc = export(official, out)
    assert proc.returncode == 0, proc.stderr
    card = card_of(out)
    assert card["license"] == "BSD-3-Clause" == OFFICIAL_ORIGINS["lte"].license
    assert card["author"] == ["Jaewon Lee", "Kyong Hwan Jin"]
    assert card["architecture"] == "lte" and card["scale"] is None
    assert card["inputChannels"] == card["outputChannels"] == 3
    (resource,) = card["resources"]
    assert resource["sha256"] == sha256_file(out) and resource["size"] == out.stat().st_size
    assert resource["type"] == "safetensors" and resource["file"] == "m.safetensors"
    lte = card["lte"]
    assert lte["source"]["release"] == "lte" and lte["source"]["kind"] == "official"
    assert lte["source"]["sha256"] == sha256_file(official)
    assert lte["source"]["repositories"] == ["https://github.com/jaewon-lee-b/lte"]
    assert lte["scale_max"] == 4.0 and lte["native_scale"] is None
    assert lte["model"]["decoder"]["kind"] == "lte" and lte["training"] is None
    assert lte["parameters"] == sum(p.numel() for p in build_model("lte", "edsr_tiny").parameters())
    # The release travels with the weights: a card made from the .safetensors says the same.
    again = tmp_path / "again.safetensors"
    assert export(out, again).returncode == 0
    assert card_of(again)["license"] == "BSD-3-Clause"
    assert card_of(again)["lte"]["source"]["release"] == "lte"


def test_the_sha256_file_is_sha256sum_compatible(official: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    assert export(official, out).returncode == 0
    digests = tmp_path / "m.safetensors.sha256"
    assert digests.read_text() == f"{sha256_file(out)}  m.safetensors\n"
    if shutil.which("sha256sum") is None:
        pytest.skip("no sha256sum here; the format is checked above")
    ok = subprocess.run(["sha256sum", "-c", digests.name], cwd=tmp_path, capture_output=True)
    assert ok.returncode == 0, ok.stdout
    out.write_bytes(out.read_bytes()[:-1] + b"\0")
    bad = subprocess.run(["sha256sum", "-c", digests.name], cwd=tmp_path, capture_output=True)
    assert bad.returncode != 0


def test_a_model_trained_here_gets_no_licence_unless_given(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ckpt = tmp_path / "m.ckpt"
    save_lte(build_model("nearest", "edsr_tiny", ["encoder.upscale=3"]).eval(), ckpt)
    out = tmp_path / "m.safetensors"
    assert export(ckpt, out).returncode == 0
    card = card_of(out)
    assert card["license"] is None and card["author"] is None
    assert card["lte"]["license_note"] == NO_LICENSE
    assert card["scale"] == 3 and card["lte"]["native_scale"] == 3
    assert card["architecture"] == "nearest"
    proc = export(ckpt, out, "--license", "Apache-2.0 OR MIT", "--author", "me", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    card = card_of(out)
    assert card["license"] == "Apache-2.0 OR MIT" and card["author"] == "me"
    assert card["lte"]["license_note"] == "given at export"


def _refusal_rows(official: Path, tmp_path: Path) -> list[tuple[list[str], str]]:
    out = tmp_path / "m.safetensors"
    other = tmp_path / "res.json"
    other.write_text(
        json.dumps(
            [
                {
                    "testset": "set5",
                    "scale": 2,
                    "protocol": "benchmark",
                    "psnr": 30.0,
                    "ssim": 0.9,
                    "images": 5,
                    "model": "lte",
                    "encoder": "rdn",
                    "ckpt": "rdn-lte.pth",
                }
            ]
        )
    )
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / "taken.safetensors.card.json").write_text("{}")
    src = str(official)
    return [
        ([src, str(out), "--license", "not a licence!"], "is not an SPDX license expression"),
        ([src, str(out), "--results", str(other)], "holds no lte.test record of"),
        ([src, str(out), "--results", str(tmp_path / "junk.json")], "is not valid JSON"),
        ([src, str(tmp_path / "m.pth")], "must end in .safetensors (weights) or .onnx"),
        (
            [src, str(tmp_path / "taken.safetensors")],
            "taken.safetensors.card.json' already exists: choose another name, or pass --overwrite",
        ),
        ([src, src.replace(".pth", ".onnx"), "--sha256", "ab" * 32], "has SHA-256"),
        ([src, str(out), "--sha256", "nope"], "--sha256 'nope' is not a SHA-256 digest"),
        ([str(tmp_path / "missing.pth"), str(out)], "does not exist"),
    ]


def test_bad_options_are_one_line_and_write_nothing(official: Path, tmp_path: Path) -> None:
    rows = _refusal_rows(official, tmp_path)
    before = snapshot(tmp_path)
    for argv, expected in rows:
        line = one_error(run_main(export_main, argv, prog="lte-export"))
        assert expected in line, (argv, line)
        assert snapshot(tmp_path) == before, argv


def test_the_source_is_never_an_output(official: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    assert export(official, out).returncode == 0
    before = snapshot(tmp_path)
    line = one_error(export(out, out, "--overwrite"))
    assert "is the checkpoint being exported" in line, line
    assert snapshot(tmp_path) == before


# --- a real training run, scored and exported ---------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.ckpt`` of a real two-step ``lte.train`` run (W&B offline, so it records its run)."""
    run = tmp_path_factory.mktemp("train")
    proc = run_module("lte.train", *SMALL_TRAIN, f"hydra.run.dir={run}", "trainer.max_steps=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_a_training_checkpoint_exports_with_its_run_and_results(
    trained: Path, tmp_path: Path
) -> None:
    hr = tmp_path / "hr"
    hr.mkdir()
    for i, src in enumerate(sample_photos()[:2]):
        save_rgb(load_rgb(src)[40:88, 40:88], hr / f"crop{i}.png")
    results = tmp_path / "res.json"
    test_args = [f"ckpt={trained}", "testset=folder", f"testset.hr_dir={hr}", "scales=[2,3]"]
    test_args += [f"results_file={results}", "device=cpu", f"hydra.run.dir={tmp_path / 'test'}"]
    digest = sha256_file(trained)
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    line = one_error(run_in_process("lte.test", *test_args, f"ckpt_sha256={wrong}"))
    assert f"has SHA-256 {digest}, not the {wrong} given with ckpt_sha256=" in line, line
    assert not results.exists()
    proc = run_in_process("lte.test", *test_args, f"ckpt_sha256={digest}")
    assert proc.returncode == 0, proc.stderr[-2000:]

    out = tmp_path / "m.safetensors"
    proc = export(trained, out, "--results", str(results), "--license", "MIT")
    assert proc.returncode == 0, proc.stderr
    card = card_of(out)
    assert card["license"] == "MIT" and card["dataset"] == "train"
    assert card["trainingIterations"] == 2 and card["trainingBatchSize"] == 4
    training = card["lte"]["training"]
    assert training["data"]["inp_size"] == 16 and training["wandb_run"]["id"]
    assert card["lte"]["source"] == {
        "kind": "lte",
        "file": "last.ckpt",
        "sha256": digest,
        "release": None,
        "repositories": None,
        "paper": None,
    }
    assert sorted(r["scale"] for r in card["lte"]["results"]) == [2, 3]
    assert all(r["ckpt"] == str(trained) for r in card["lte"]["results"])

    # The training checkpoint's round trip: the same image, byte for byte, from a real photo.
    photo = tmp_path / "photo.png"
    save_rgb(load_rgb(sample_photos()[2])[:40, :56], photo)
    for ckpt, name in ((trained, "a.png"), (out, "b.png")):
        argv = [str(photo), str(tmp_path / name), "--ckpt", str(ckpt), "--scale", "3.5"]
        proc = run_main(upscale_main, [*argv, "--device", "cpu"], prog="lte-upscale")
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
