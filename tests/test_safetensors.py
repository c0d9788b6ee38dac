"""``.safetensors`` exports: real files written by ``lte-export``, read back by every checkpoint reader.

Round trips through the real CLIs on a real photo are byte-identical to the source checkpoint's
upscale (LTE, LIIF, Meta-SR, a fixed-scale model, LM-LTE, LM-LIIF, an official release, an lte checkpoint); loading
runs no pickle at all; the header is the documented layout; every tampered header row, wrong weight
and wrong ``--sha256`` is one ``error:`` line with exit 2 and leaves the folder as it was.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from cli import run_main, snapshot
from conftest import sample_photos
from lte.checkpoint import (
    checkpoint_metadata,
    convert_checkpoint,
    is_safetensors,
    load_checkpoint,
    save_lte,
    save_official,
)
from lte.cli.export import main as export_main
from lte.cli.upscale import main as upscale_main
from lte.data.images import load_rgb, save_rgb
from lte.errors import UserError
from lte.models import SRModel, build_model

#: Small tiny-model variants of every decoder family: (decoder, encoder, overrides).
MODELS = {
    "lte": ("lte", "edsr_tiny", []),
    "liif": ("liif", "edsr_tiny", []),
    "metasr": ("metasr", "rdn_tiny", []),
    "fixed_x2": ("nearest", "edsr_tiny", ["encoder.upscale=2"]),
    "lm_lte": ("lm_lte", "edsr_tiny", []),
    "lm_liif": ("lm_liif", "edsr_tiny", []),
}


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 48x40 crop of a real photo (small enough for tiny models on two cores)."""
    path = tmp_path_factory.mktemp("photo") / "crop.png"
    save_rgb(load_rgb(sample_photos()[0])[40:80, 60:108], path)
    return path


def tiny(name: str) -> SRModel:
    torch.manual_seed(0)
    decoder, encoder, overrides = MODELS[name]
    return build_model(decoder, encoder, overrides).eval()


def upscale(photo: Path, out: Path, ckpt: Path, *extra: str) -> Any:
    argv = [str(photo), str(out), "--ckpt", str(ckpt), "--no-progress", "--device", "cpu", *extra]
    return run_main(upscale_main, argv, prog="lte-upscale")


def export(ckpt: Path, out: Path, *extra: str) -> Any:
    return run_main(export_main, [str(ckpt), str(out), *extra], prog="lte-export")


def one_error(proc: Any) -> str:
    """The single ``error:`` line of a refused command (exit 2), asserting it is alone."""
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("name", [*MODELS, "official"])
def test_an_upscale_from_the_export_is_byte_identical(
    name: str, photo: Path, tmp_path: Path
) -> None:
    """lte checkpoint (or official release) -> lte-export -> .safetensors: same model, same image."""
    model = tiny("lte" if name == "official" else name)
    source = tmp_path / ("m.pth" if name == "official" else "m.ckpt")
    (save_official if name == "official" else save_lte)(model, source)
    weights = tmp_path / "m.safetensors"
    proc = export(source, weights)
    assert proc.returncode == 0, proc.stderr
    scale = "2" if name == "fixed_x2" else "3.5"
    for ckpt, out in ((source, "a.png"), (weights, "b.png")):
        proc = upscale(photo, tmp_path / out, ckpt, "--scale", scale)
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    loaded = load_checkpoint(weights)
    assert loaded.source == "safetensors" and loaded.spec.to_dict() == model.describe()
    assert loaded.release == ("lte" if name == "official" else None)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_loading_runs_no_pickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny("lte")
    weights = tmp_path / "m.safetensors"
    proc = export(_lte_file(model, tmp_path), weights)
    assert proc.returncode == 0, proc.stderr
    renamed = tmp_path / "weights.bin"  # no suffix to go by: the first bytes decide
    renamed.write_bytes(weights.read_bytes())

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle was used")

    class NoUnpickler:
        def __init__(self, *args: object, **kwargs: object) -> None:
            refuse()

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", NoUnpickler)
    for path in (weights, renamed):
        assert is_safetensors(path)
        loaded = load_checkpoint(path)
        assert loaded.model_name == "lte"
        assert torch.equal(loaded.model.decoder.freq.weight, model.decoder.freq.weight)
    with pytest.raises(UserError, match="pickle was used"):  # the patch does bite a torch file
        load_checkpoint(_lte_file(model, tmp_path, "again.ckpt"))


def _lte_file(model: SRModel, folder: Path, name: str = "m.ckpt") -> Path:
    path = folder / name
    save_lte(model, path)
    return path


def read_header(path: Path) -> tuple[dict[str, Any], bytes]:
    """A safetensors file's JSON header and the tensor bytes after it (the documented layout)."""
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + size]), raw[8 + size :]


def write_header(path: Path, header: dict[str, Any], data: bytes) -> None:
    """Write a header (padded to 8 bytes with spaces, as safetensors does) before ``data``."""
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def test_the_header_is_the_documented_layout(tmp_path: Path) -> None:
    model = tiny("lte")
    weights = tmp_path / "m.safetensors"
    assert export(_lte_file(model, tmp_path), weights).returncode == 0
    header, _ = read_header(weights)
    meta = header.pop("__metadata__")
    assert set(meta) == {"format", "lte"} and meta["format"] == "pt"
    assert json.loads(meta["lte"]) == checkpoint_metadata(model, prefix="")
    assert set(header) == set(model.state_dict())
    for key, entry in header.items():
        assert entry["dtype"] == "F32" and entry["shape"] == list(model.state_dict()[key].shape)


def _entry(change: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], None]:
    """A header edit that changes the decoded ``lte`` entry and writes it back as JSON."""

    def edit(meta: dict[str, Any]) -> None:
        entry = json.loads(meta["lte"])
        change(entry)
        meta["lte"] = json.dumps(entry)

    return edit


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], Any]:
    def change(entry: dict[str, Any]) -> None:
        node = entry
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


#: Edits of the header's ``__metadata__`` and the one line each must give.
HEADER_ROWS: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "unknown kind": (
        _entry(_set(("model", "encoder", "kind"), "resnet")),
        "lte.model.encoder.kind must be one of edsr, rdn, swinir, got 'resnet'",
    ),
    "a _target_": (
        _entry(_set(("model", "encoder"), {"_target_": "pathlib.Path.write_text", "data": "x"})),
        "lte.model.encoder holds a '_target_'",
    ),
    "a huge width": (
        _entry(_set(("model", "encoder", "n_feats"), 10**9)),
        "lte.model.encoder.n_feats must be a positive int <= 4096",
    ),
    "a missing key": (
        _entry(lambda entry: entry.pop("normalization")),
        "lte.normalization is missing",
    ),
    "a missing model": (_entry(lambda entry: entry.pop("model")), "lte.model is missing"),
    "an interpolation": (
        _entry(_set(("model", "scale_max"), "${oc.env:HOME}")),
        "lte.model.scale_max",
    ),
    "a newer format": (
        _entry(_set(("format_version",), 3)),
        "lte.format_version is 3: written by a newer lte",
    ),
    "another normalisation": (
        _entry(_set(("normalization", "mean"), 0.4)),
        "lte.normalization.mean must be 0.5",
    ),
    "no lte entry": (lambda meta: meta.pop("lte"), "was not written by lte"),
    "not JSON": (
        lambda meta: meta.update(lte="{'model': nope"),
        "header entry 'lte' is not valid JSON",
    ),
    "NaN": (
        lambda meta: meta.update(lte=meta["lte"].replace('"scale_max": 4.0', '"scale_max": NaN')),
        "NaN is not a number JSON allows",
    ),
    "an unknown release": (
        lambda meta: meta.update({"lte.release": "lte-turbo"}),
        "lte.release must be one of",
    ),
}


@pytest.mark.parametrize("row", HEADER_ROWS)
def test_a_tampered_header_is_one_line(row: str, photo: Path, tmp_path: Path) -> None:
    edit, expected = HEADER_ROWS[row]
    weights = tmp_path / "m.safetensors"
    assert export(_lte_file(tiny("lte"), tmp_path), weights).returncode == 0
    header, data = read_header(weights)
    edit(header["__metadata__"])
    write_header(weights, header, data)
    before = snapshot(tmp_path)
    line = one_error(upscale(photo, tmp_path / "out.png", weights, "--scale", "2"))
    assert line.startswith(f"error: checkpoint '{weights}'"), line
    assert expected in line, line
    assert snapshot(tmp_path) == before


def _weights_with(model: SRModel, change: Callable[[dict[str, torch.Tensor]], None]) -> dict:
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    change(tensors)
    return tensors


#: Weights written by the real safetensors writer with lte's metadata, and the line each gives.
WEIGHT_ROWS: dict[str, tuple[Callable[[dict[str, torch.Tensor]], None], str]] = {
    "int8": (
        lambda t: t.update({"encoder.head.0.weight": t["encoder.head.0.weight"].to(torch.int8)}),
        "weight encoder.head.0.weight is torch.int8; lte reads floating-point weights only",
    ),
    "NaN": (
        lambda t: t["decoder.phase.weight"].fill_(float("nan")),
        "has non-finite weights (NaN or infinity)",
    ),
    "missing": (lambda t: t.pop("decoder.phase.weight"), "lacks weights the model needs"),
    "extra": (lambda t: t.update(extra=torch.zeros(2)), "has weights this model does not use"),
    "shape": (
        lambda t: t.update({"decoder.phase.weight": torch.zeros(3, 3)}),
        "has weights of the wrong shape",
    ),
}


@pytest.mark.parametrize("row", WEIGHT_ROWS)
def test_wrong_weights_are_one_line(row: str, photo: Path, tmp_path: Path) -> None:
    change, expected = WEIGHT_ROWS[row]
    model = tiny("lte")
    weights = tmp_path / "m.safetensors"
    from lte.checkpoint.safetensors_format import safetensors_metadata

    save_file(_weights_with(model, change), weights, metadata=safetensors_metadata(model))
    before = snapshot(tmp_path)
    line = one_error(upscale(photo, tmp_path / "out.png", weights, "--scale", "2"))
    assert expected in line and f"'{weights}'" in line, line
    assert snapshot(tmp_path) == before


def test_a_truncated_or_foreign_file_is_one_line(photo: Path, tmp_path: Path) -> None:
    weights = tmp_path / "m.safetensors"
    assert export(_lte_file(tiny("lte"), tmp_path), weights).returncode == 0
    weights.write_bytes(weights.read_bytes()[:-100])
    line = one_error(upscale(photo, tmp_path / "out.png", weights, "--scale", "2"))
    assert "not a safetensors file or truncated" in line, line
    foreign = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)  # another tool's file: no lte description
    line = one_error(upscale(photo, tmp_path / "out.png", foreign, "--scale", "2"))
    assert "was not written by lte" in line, line


def test_sha256_is_checked_before_loading(photo: Path, tmp_path: Path) -> None:
    weights = tmp_path / "m.safetensors"
    assert export(_lte_file(tiny("lte"), tmp_path), weights).returncode == 0
    digest_line = (tmp_path / "m.safetensors.sha256").read_text()
    digest, name = digest_line.split()
    assert name == "m.safetensors"
    out = tmp_path / "out.png"
    proc = upscale(photo, out, weights, "--scale", "2", "--sha256", digest.upper())
    assert proc.returncode == 0, proc.stderr
    before = snapshot(tmp_path)
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    line = one_error(
        upscale(photo, tmp_path / "o2.png", weights, "--scale", "2", "--sha256", wrong)
    )
    assert f"has SHA-256 {digest}, not the {wrong} given with --sha256" in line, line
    line = one_error(
        upscale(photo, tmp_path / "o2.png", weights, "--scale", "2", "--sha256", "abc")
    )
    assert "--sha256 'abc' is not a SHA-256 digest" in line, line
    assert snapshot(tmp_path) == before


def test_the_converter_reads_safetensors(tmp_path: Path) -> None:
    model = tiny("liif")
    weights = tmp_path / "m.safetensors"
    assert export(_lte_file(model, tmp_path), weights).returncode == 0
    back = tmp_path / "back.ckpt"
    convert_checkpoint(weights, back)
    loaded = load_checkpoint(back)
    assert loaded.source == "lte" and loaded.spec.to_dict() == model.describe()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_a_fifo_is_refused_before_it_is_sniffed(tmp_path: Path) -> None:
    """Content sniffing opens only regular files: a FIFO would block the read forever."""
    fifo = tmp_path / "weights.bin"
    os.mkfifo(fifo)
    assert not is_safetensors(fifo)
    with pytest.raises(UserError, match=r"is a FIFO \(named pipe\), not a regular file"):
        load_checkpoint(fifo)
