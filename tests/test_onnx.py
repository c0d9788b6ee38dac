"""ONNX exports: real graphs written by ``lte-export``, run by onnxruntime for real.

Each exported pair (encoder graph, query graph) is driven by ``lte.inference.predict`` itself and
must equal the PyTorch model within 1e-4 on a real photo at x2, x3.5 and x4 (a fixed-scale model at
its scale), whole and tiled; ``lte-upscale --ckpt OUT.onnx`` works end to end; a file lte did not
write, a query graph that is not the one recorded, tampered metadata and missing packages are each
one ``error:`` line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cli import ROOT, run_main, snapshot
from conftest import sample_photos
from lte.checkpoint import checkpoint_metadata, load_checkpoint, save_lte
from lte.cli.export import main as export_main
from lte.cli.upscale import main as upscale_main
from lte.data.images import load_rgb, normalize, save_rgb, to_tensor
from lte.errors import UserError
from lte.inference import predict
from lte.models import SRModel, build_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from lte.onnx_runtime import load_onnx  # noqa: E402

MODELS = {
    "lte": ("lte", "edsr_tiny", []),
    "liif": ("liif", "edsr_tiny", []),
    "metasr": ("metasr", "rdn_tiny", []),
    "fixed_x2": ("nearest", "edsr_tiny", ["encoder.upscale=2"]),
    "swinir_lte": ("lte", "swinir_tiny", []),
}
TOLERANCE = 1e-4


class Exports:
    """Each model exported once per module, through the real CLI, into one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.done: dict[str, tuple[SRModel, Path]] = {}

    def __call__(self, name: str) -> tuple[SRModel, Path]:
        if name not in self.done:
            torch.manual_seed(0)
            decoder, encoder, overrides = MODELS[name]
            model = build_model(decoder, encoder, overrides).eval()
            ckpt = self.folder / f"{name}.ckpt"
            save_lte(model, ckpt)
            out = self.folder / f"{name}.onnx"
            proc = run_main(export_main, [str(ckpt), str(out)], prog="lte-export")
            assert proc.returncode == 0, proc.stderr
            self.done[name] = (model, out)
        return self.done[name]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Exports:
    return Exports(tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 45x38 crop of a real photo: no multiple of SwinIR's window, so its padding runs."""
    path = tmp_path_factory.mktemp("photo") / "crop.png"
    save_rgb(load_rgb(sample_photos()[1])[30:68, 50:95], path)
    return path


def lr_of(photo: Path) -> torch.Tensor:
    return normalize(to_tensor(load_rgb(photo))).unsqueeze(0)


def _parity(model: SRModel, path: Path, lr: torch.Tensor, scales: tuple[float, ...]) -> None:
    loaded = load_onnx(path)
    h, w = lr.shape[-2:]
    for scale in scales:
        out_hw = (round(scale * h), round(scale * w))
        for tile in (0, 16):
            want = predict(model, lr, out_hw, tile=tile)
            got = loaded.model.predict(lr, out_hw, tile=tile, chunk=1000)
            assert got.shape == want.shape
            diff = (got - want).abs().max().item()
            assert diff < TOLERANCE, (scale, tile, diff)


@pytest.mark.parametrize("name", ["lte", "liif", "metasr"])
def test_onnx_equals_pytorch_on_a_real_photo(name: str, exports: Exports, photo: Path) -> None:
    model, path = exports(name)
    _parity(model, path, lr_of(photo), (2.0, 3.5, 4.0))


def test_a_fixed_scale_model_at_its_scale(exports: Exports, photo: Path) -> None:
    model, path = exports("fixed_x2")
    loaded = load_onnx(path)
    assert loaded.model.native_scale == 2 and loaded.model_name == "nearest"
    _parity(model, path, lr_of(photo), (2.0,))


@pytest.mark.slow
def test_swinir_exports_with_its_padding(exports: Exports, photo: Path) -> None:
    model, path = exports("swinir_lte")
    lr = lr_of(photo)
    _parity(model, path, lr, (2.0, 3.5, 4.0))
    _parity(model, path, lr[..., :13, :7], (3.0,))  # sides below two windows: reflect padding
    # Smaller than the pad: PyTorch replicates, a branch the traced graph has not; one line.
    with pytest.raises(UserError, match="pads its input by reflection to a multiple of 4 px"):
        load_onnx(path).model.predict(lr[..., :5, :2], (10, 4))


def test_the_metadata_describe_the_model(exports: Exports) -> None:
    model, path = exports("lte")
    encoder, query = onnx.load(str(path)), onnx.load(str(path.with_name("lte.query.onnx")))
    meta = {p.key: p.value for p in encoder.metadata_props}
    query_meta = {p.key: p.value for p in query.metadata_props}
    assert json.loads(meta["lte"]) == checkpoint_metadata(model, prefix="")
    assert meta["lte"] == query_meta["lte"]
    assert (meta["lte.graph"], query_meta["lte.graph"]) == ("encoder", "query")
    assert meta["lte.query_graph"] == "lte.query.onnx"
    digests = dict(
        reversed(line.split())
        for line in path.with_name("lte.onnx.sha256").read_text().splitlines()
    )
    assert meta["lte.query_sha256"] == digests["lte.query.onnx"]
    assert [i.name for i in encoder.graph.input] == ["lr"]
    assert [i.name for i in query.graph.input] == ["table", "lr", "coord", "cell", "origin"]
    assert encoder.producer_name == "lte"


def upscale(photo: Path, out: Path, ckpt: Path, *extra: str) -> Any:
    argv = [str(photo), str(out), "--ckpt", str(ckpt), "--no-progress", *extra]
    return run_main(upscale_main, argv, prog="lte-upscale")


def one_error(proc: Any) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_lte_upscale_runs_the_onnx_export(exports: Exports, photo: Path, tmp_path: Path) -> None:
    _, path = exports("lte")
    ckpt = path.with_suffix(".ckpt")
    for src, out in ((ckpt, "a.png"), (path, "b.png")):
        proc = upscale(photo, tmp_path / out, src, "--scale", "3.5")
        assert proc.returncode == 0, proc.stderr
    assert "-> " in proc.stderr and "with lte-edsr" in proc.stderr
    a = load_rgb(tmp_path / "a.png").astype(int)
    b = load_rgb(tmp_path / "b.png").astype(int)
    assert a.shape == b.shape == (133, 158, 3)
    assert np.abs(a - b).max() <= 1  # within 1e-4 before rounding to 8 bits


def _copy_pair(path: Path, folder: Path) -> Path:
    """The export ``path`` and its query graph copied into ``folder`` (tests edit the copies)."""
    for name in (path.name, path.with_name(path.stem + ".query.onnx").name):
        shutil.copy(path.with_name(name), folder / name)
    return folder / path.name


def _edit_metadata(path: Path, **changes: str) -> None:
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props} | changes
    onnx.helper.set_model_props(model, meta)
    onnx.save(model, str(path))


def _foreign_onnx(path: Path) -> None:
    """A valid ONNX model lte did not write: one Identity node, no lte metadata."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 4, 4])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(onnx.helper.make_model(graph), str(path))


def _tamper_kind(path: Path) -> None:
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    entry = json.loads(meta["lte"])
    entry["model"]["encoder"]["kind"] = "resnet"
    _edit_metadata(path, lte=json.dumps(entry))


def _swap_query(exports: Exports, path: Path) -> None:
    _, other = exports("liif")
    shutil.copy(other.with_name("liif.query.onnx"), path.with_name("lte.query.onnx"))


def _rehashed_other_query(exports: Exports, path: Path) -> None:
    """Another model's query graph under this name, with this file's record updated to match."""
    _swap_query(exports, path)
    from lte.checksum import sha256_file

    _edit_metadata(path, **{"lte.query_sha256": sha256_file(path.with_name("lte.query.onnx"))})


REFUSALS = {
    "another tool's model": (lambda e, p: _foreign_onnx(p), "was not written by lte"),
    "not ONNX at all": (lambda e, p: p.write_text("hello"), "not an ONNX model or damaged"),
    "tampered description": (
        lambda e, p: _tamper_kind(p),
        "lte.model.encoder.kind must be one of edsr, rdn, swinir, got 'resnet'",
    ),
    "a path as query graph": (
        lambda e, p: _edit_metadata(p, **{"lte.query_graph": "../elsewhere.onnx"}),
        "lte.query_graph must be the file name of its query graph beside it",
    ),
    "another model's query graph": (_swap_query, "the pair does not belong together"),
    "another model's query graph, rehashed": (
        _rehashed_other_query,
        "is not the query graph of 'lte.onnx'",
    ),
    "no query graph": (
        lambda e, p: p.with_name("lte.query.onnx").unlink(),
        "ONNX query graph",
    ),
}


@pytest.mark.parametrize("row", REFUSALS)
def test_a_wrong_onnx_file_is_one_line(
    row: str, exports: Exports, photo: Path, tmp_path: Path
) -> None:
    change, expected = REFUSALS[row]
    _, original = exports("lte")
    path = _copy_pair(original, tmp_path)
    change(exports, path)
    before = snapshot(tmp_path)
    line = one_error(upscale(photo, tmp_path / "out.png", path, "--scale", "2"))
    assert expected in line, line
    assert snapshot(tmp_path) == before


def test_options_an_onnx_model_cannot_honour(exports: Exports, photo: Path, tmp_path: Path) -> None:
    _, path = exports("lte")
    query = path.with_name("lte.query.onnx")
    rows = [
        ((path, "--dtype", "bfloat16"), "--dtype bfloat16: an ONNX model computes in float32"),
        ((path, "--backend", "compile"), "--backend compile: an ONNX model runs in onnxruntime"),
        ((path, "--device", "cuda"), "--device cuda: an ONNX model runs on onnxruntime's CPU"),
        ((query,), "is the query graph of an lte export"),
        ((path, "--cmsr", str(tmp_path / "t.yaml")), "--cmsr: an ONNX model renders at one scale"),
    ]
    for (ckpt, *extra), expected in rows:
        line = one_error(upscale(photo, tmp_path / "o.png", ckpt, "--scale", "2", *extra))
        assert expected in line, line
    assert not (tmp_path / "o.png").exists()
    with pytest.raises(UserError, match=r"is an ONNX export: only lte\.upscale runs it"):
        load_checkpoint(path)


def test_an_lmf_model_is_not_exported_as_onnx(tmp_path: Path) -> None:
    """LM-LTE's table depends on the output cell, which the encoder graph does not take: one line,
    nothing written (its .safetensors export is tested with the LMF checkpoints)."""
    ckpt = tmp_path / "lm.ckpt"
    save_lte(build_model("lm_lte", "edsr_tiny").eval(), ckpt)
    before = snapshot(tmp_path)
    proc = run_main(export_main, [str(ckpt), str(tmp_path / "lm.onnx")], prog="lte-export")
    line = one_error(proc)
    assert "lm_lte model, whose encoder output depends on the output cell" in line, line
    assert snapshot(tmp_path) == before


#: Runs a command with an import of ``BLOCKED`` failing, as on a machine without the extra.
BLOCKER = """\
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("No module named " + repr(name))
sys.meta_path.insert(0, Blocker())
from {module} import main
main({argv!r})
"""


def run_blocked(blocked: set[str], module: str, argv: list[str]) -> subprocess.CompletedProcess:
    code = BLOCKER.format(blocked=blocked, module=module, argv=argv)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )


def test_without_the_onnx_extra(exports: Exports, photo: Path, tmp_path: Path) -> None:
    _, path = exports("lte")
    argv = [str(photo), str(tmp_path / "o.png"), "--ckpt", str(path), "--scale", "2"]
    proc = run_blocked({"onnxruntime"}, "lte.cli.upscale", argv)
    line = one_error(proc)
    assert "needs onnxruntime, which is not installed: pip install 'lte[onnx]'" in line, line
    # Everything else works without it: a checkpoint upscales as before.
    argv[3] = str(path.with_suffix(".ckpt"))
    proc = run_blocked({"onnxruntime"}, "lte.cli.upscale", argv)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "x.onnx"
    proc = run_blocked({"onnxscript"}, "lte.cli.export", [str(path.with_suffix(".ckpt")), str(out)])
    line = one_error(proc)
    assert "exporting to ONNX needs the 'onnxscript' package" in line, line
    assert not out.exists() and not out.with_name("x.onnx.card.json").exists()


def test_a_folder_with_the_self_ensemble(exports: Exports, photo: Path, tmp_path: Path) -> None:
    """The batch path and ``--ensemble`` drive the graphs as they drive the PyTorch model."""
    model, path = exports("liif")
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photo, folder / "a.png")
    save_rgb(load_rgb(photo)[:20, :33], folder / "b.png")
    for ckpt, out in ((path.with_suffix(".ckpt"), "torch"), (path, "onnx")):
        argv = [str(folder), str(tmp_path / out), "--ckpt", str(ckpt), "--no-progress"]
        proc = run_main(
            upscale_main, [*argv, "--scale", "2.5", "--ensemble", "4"], prog="lte-upscale"
        )
        assert proc.returncode == 0, proc.stderr
    for name in ("a.png", "b.png"):
        a = load_rgb(tmp_path / "torch" / name).astype(int)
        b = load_rgb(tmp_path / "onnx" / name).astype(int)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1, name
    lr = lr_of(photo)
    want = predict(model, lr, (80, 100), ensemble=8)
    got = load_onnx(path).model.predict(lr, (80, 100), ensemble=8)
    assert (got - want).abs().max().item() < TOLERANCE
