"""Export a checkpoint as portable files: ``.safetensors`` or ``.onnx``, a SHA-256 file and a card.

:func:`export_model` is what ``lte-export CKPT OUT`` does; the suffix of ``OUT`` picks the format:

* ``OUT.safetensors``: the weights and the model's description, no pickle
  (:mod:`lte.checkpoint.safetensors_format`); loads anywhere a checkpoint loads;
* ``OUT.onnx`` and ``OUT.query.onnx``: the encoder and query graphs (:mod:`lte.onnx_export`), run by
  ``lte.upscale --ckpt OUT.onnx`` (:mod:`lte.onnx_runtime`) or any onnxruntime.

Beside them ``OUT.sha256`` (``sha256sum -c`` checks every file written) and ``OUT.card.json``
(:mod:`lte.model_card`). Everything is checked before any work, in this order: the format, the
destinations (:func:`lte.files.check_output`: none exists unless ``overwrite``, none is the source),
the licence, the results file, the source's SHA-256 when one is expected; then the checkpoint is
loaded and the files are written, each atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lte.atomic import atomic_write_text
from lte.checkpoint import LoadedModel
from lte.checkpoint.loading import load_with_file
from lte.checkpoint.safetensors_format import save_safetensors
from lte.checksum import check_sha256, sha256_file, sha256_path, write_sha256_file
from lte.errors import UserError, quote
from lte.files import check_output
from lte.model_card import (
    build_card,
    card_path,
    check_license,
    read_test_results,
    results_for,
)

#: Output suffix -> format.
FORMATS = {".safetensors": "safetensors", ".onnx": "onnx"}


@dataclass(frozen=True)
class Exported:
    """What :func:`export_model` wrote: the model files, their SHA-256 file and the card."""

    files: list[Path]
    sha256_file: Path
    card: Path
    loaded: LoadedModel


def export_format(out: str | os.PathLike[str]) -> str:
    """The format of an output path, by its suffix (a one-line UserError for any other)."""
    fmt = FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise UserError(
            f"output {quote(out)} must end in .safetensors (weights) or .onnx (graphs for "
            "onnxruntime); to write an official .pth or an lte .ckpt use "
            "scripts/convert_checkpoint.py"
        )
    return fmt


def planned_files(out: Path, fmt: str) -> tuple[list[Path], Path, Path]:
    """The model files, the SHA-256 file and the card an export to ``out`` writes."""
    files = [out]
    if fmt == "onnx":
        from lte.onnx_export import query_graph_path

        files.append(query_graph_path(out))
    return files, sha256_path(out), card_path(out)


def _not_the_source(source: Path, out: Path) -> None:
    """No output may be the checkpoint being exported, under any name (even with ``overwrite``)."""
    same = os.path.realpath(source) == os.path.realpath(out)
    if not same and source.exists() and out.exists():
        try:
            same = os.path.samefile(source, out)
        except OSError:
            same = False
    if same:
        raise UserError(
            f"output {quote(out)} is the checkpoint being exported: choose another name (the "
            "source is never replaced, even with --overwrite)"
        )


def export_model(
    ckpt: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    license: str | None = None,
    author: str | None = None,
    results: str | os.PathLike[str] | None = None,
    ckpt_sha256: str | None = None,
    overwrite: bool = False,
) -> Exported:
    """Write ``ckpt``'s model to ``out`` (``.safetensors`` or ``.onnx``), its SHA-256 file and card.

    Args:
        ckpt: any checkpoint lte loads (official ``.pth``, lte ``.ckpt``, ``.safetensors``).
        license: SPDX expression for the card (default: an official release's own licence, else
            none; see :mod:`lte.model_card`).
        author: the card's ``author`` (default: an official release's paper authors).
        results: an ``lte.test`` results file; its records of ``ckpt`` go into the card.
        ckpt_sha256: the SHA-256 ``ckpt`` must have (checked before it is read).
        overwrite: replace existing outputs (never the source itself).

    Raises:
        UserError: one line for the first problem, before anything is written.
    """
    source, target = Path(ckpt), Path(out)
    fmt = export_format(target)
    if fmt == "onnx":
        from lte.onnx_export import require_exporter

        require_exporter()
    files, digest_file, card_file = planned_files(target, fmt)
    for path in (*files, digest_file, card_file):
        _not_the_source(source, path)
        check_output(path, what="output", overwrite=overwrite)
    license = check_license(license)
    every = read_test_results(results) if results is not None else None
    if ckpt_sha256 is not None:
        check_sha256(source, ckpt_sha256, option="--sha256")
    loaded, obj = load_with_file(source)
    if fmt == "onnx" and loaded.model.cell_dependent:
        raise UserError(
            f"{quote(source)} is an {loaded.model_name} model, whose encoder output depends on the "
            "output cell (LMF): lte exports it as .safetensors, not yet as .onnx"
        )
    records = results_for(every, results, ckpt, loaded) if every is not None else None
    source_digest = ckpt_sha256 or sha256_file(source)
    if fmt == "safetensors":
        save_safetensors(loaded.model, target, release=loaded.release)
    else:
        from lte.onnx_export import export_onnx

        export_onnx(loaded.model, target, release=loaded.release)
    write_sha256_file(digest_file, files)
    card: dict[str, Any] = build_card(
        loaded,
        files,
        fmt,
        license=license,
        author=author,
        results=records,
        checkpoint=obj if loaded.source == "lte" else None,
        ckpt_sha256=source_digest,
    )
    atomic_write_text(card_file, json.dumps(card, indent=2, allow_nan=False) + "\n")
    return Exported(files, digest_file, card_file, loaded)
