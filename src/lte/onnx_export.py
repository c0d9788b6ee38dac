"""Export an ``SRModel`` to ONNX as two graphs, each a trace of the model's own code: encode and query.

Why two graphs and not one: a whole upscale in one graph would hold every query's four neighbours
at once (LTE ×4 on a 256×256 LR: about a million queries × 4 × 768 floats, ~12 GB), and could not be
tiled. So the model is cut where :class:`~lte.models.SRModel` is cut, and the same driver that runs
it in PyTorch, :func:`lte.inference.predict`, runs the graphs (:mod:`lte.onnx_runtime`): it builds
the coordinate grid and the cell (enlarged by ``max(s / scale_max, 1)``), encodes in tiles and
queries in chunks. Nothing of the math is written twice:

* the **encoder graph** ``OUT.onnx`` is ``SRModel.encode(lr).table``: ``lr`` ``(B, 3, h, w)``, the
  normalised LR image or a tile of it, to the decoder's channel-last code table ``table``
  ``(B, h_t, w_t, D)`` (the encoder, then the decoder's ``prepare``: LTE's amplitude and frequency
  convolutions, LIIF's first layer as a 3×3 convolution, Meta-SR's padded features, a fixed-scale
  encoder's packed RGB);
* the **query graph** ``OUT.query.onnx`` is ``SRModel.query(state, coord, cell, kernel="exact")``:
  inputs ``table``, ``lr`` (the whole normalised image: its size fixes the code grid, and LTE adds
  its bilinear residual), ``coord`` ``(B, Q, 2)`` (y, x) in [-1, 1], ``cell`` ``(B, 1, 2)`` (one
  cell per image, already enlarged) and ``origin`` ``(2,)`` int64 (the tile's top-left code), to
  ``rgb`` ``(B, Q, 3)`` normalised.

The batch, the LR and tile sizes and the number of queries are dynamic (``torch.export`` traces
them as symbols). Both files carry lte's description in their ``metadata_props``: ``lte`` (the
checkpoint's ``"lte"`` entry as JSON: format version, ``SRModel.describe()``, normalisation),
``lte.graph`` (``encoder`` or ``query``), ``lte.release`` when the weights came from an official
release; the encoder file also names its query graph (``lte.query_graph``) and that file's SHA-256
(``lte.query_sha256``), so the pair is one model and a hash of ``OUT.onnx`` vouches for both.

Needs the ``onnx`` extra (``onnx``, ``onnxscript``: torch's exporter) and a torch whose
``torch.onnx.export`` has ``dynamo=True``.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lte.atomic import atomic_path
from lte.checkpoint import checkpoint_metadata
from lte.checkpoint.safetensors_format import LTE_KEY, RELEASE_KEY
from lte.checksum import sha256_file
from lte.errors import UserError
from lte.models.decoders import DecoderState
from lte.models.sr import SRModel

#: Graph inputs and outputs, in order: the contract :mod:`lte.onnx_runtime` checks on reading.
ENCODER_INPUTS: tuple[str, ...] = ("lr",)
ENCODER_OUTPUTS: tuple[str, ...] = ("table",)
QUERY_INPUTS: tuple[str, ...] = ("table", "lr", "coord", "cell", "origin")
QUERY_OUTPUTS: tuple[str, ...] = ("rgb",)
#: ``metadata_props`` keys lte writes (besides ``lte`` and ``lte.release``, as in safetensors).
GRAPH_KEY = "lte.graph"
QUERY_GRAPH_KEY = "lte.query_graph"
QUERY_SHA256_KEY = "lte.query_sha256"
#: Largest LR side and batch the exported graphs accept (bounds for ``torch.export``'s symbols).
MAX_SIDE = 1 << 16
MAX_BATCH = 1024

_INSTALL = "pip install 'lte[onnx]' (in a checkout: pip install -e '.[onnx]')"


def query_graph_path(path: str | os.PathLike[str]) -> Path:
    """Where the query graph of the encoder graph ``path`` goes: ``NAME.query.onnx`` beside it."""
    p = Path(path)
    return p.with_name(f"{p.stem}.query.onnx")


class EncoderGraph(nn.Module):
    """``SRModel.encode(lr).table`` as a module: what ``torch.onnx.export`` traces for ``OUT.onnx``."""

    def __init__(self, model: SRModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, lr: Tensor) -> Tensor:
        return self.model.encode(lr).table


class QueryGraph(nn.Module):
    """``SRModel.query(..., kernel="exact")`` as a module, the tile's origin an input (``(2,)`` int64)."""

    def __init__(self, model: SRModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, table: Tensor, lr: Tensor, coord: Tensor, cell: Tensor, origin: Tensor
    ) -> Tensor:
        state = DecoderState(table, lr, (origin[0], origin[1]))
        return self.model.query(state, coord, cell, kernel="exact")


def require_exporter() -> None:
    """One line when torch's ONNX exporter cannot run here (no ``onnx``/``onnxscript``)."""
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            raise UserError(
                f"exporting to ONNX needs the '{module}' package, which is not installed: {_INSTALL}"
            ) from None


def _example_inputs(model: SRModel) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Inputs to trace with: sizes that are no special case (torch.export fixes sizes 0 and 1, so
    the batch is 2; the LR sides are no multiple of SwinIR's window, so its padding is traced)."""
    window = max(model.pad_multiple, 8)
    h, w = 2 * window + 3, 2 * window + 5
    gen = torch.Generator().manual_seed(0)
    lr = torch.rand(2, 3, h, w, generator=gen) * 2 - 1
    with torch.inference_mode():
        table = model.encode(lr).table.clone()
    coord = torch.rand(2, 7, 2, generator=gen) * 1.8 - 0.9
    cell = torch.full((2, 1, 2), 2.0 / (3 * h))
    return lr, table, coord, cell, torch.zeros(2, dtype=torch.int64)


def _export(
    module: nn.Module, args: tuple[Tensor, ...], dynamic: dict[str, Any], outputs: tuple[str, ...]
) -> Any:
    """``torch.onnx.export`` through ``torch.export`` (symbolic sizes), quietly; the inputs are
    named by ``dynamic``'s keys, in order."""
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.onnx.export(
                module,
                args,
                dynamo=True,
                verbose=False,
                input_names=list(dynamic),
                output_names=list(outputs),
                dynamic_shapes=dynamic,
            )
    finally:
        quiet.setLevel(level)


def _save(program: Any, path: Path, meta: dict[str, str]) -> None:
    """Write an exported program to ``path`` atomically, with lte's ``metadata_props``."""
    program.model.producer_name = "lte"
    program.model.metadata_props.update(meta)
    with atomic_path(path) as tmp:
        program.save(tmp, external_data=False)


def export_onnx(model: SRModel, path: Path, *, release: str | None = None) -> list[Path]:
    """Write ``model`` as ``path`` (encoder graph) and ``NAME.query.onnx`` (query graph), atomically.

    The caller has checked both destinations (:func:`lte.files.check_output`). Returns the files
    written, the encoder graph first.

    Raises:
        UserError: the exporter's packages are missing (the ``onnx`` extra).
    """
    from torch.export import Dim

    require_exporter()
    model = model.eval()
    query_path = query_graph_path(path)
    lr, table, coord, cell, origin = _example_inputs(model)
    batch = Dim("batch", min=1, max=MAX_BATCH)
    h, w = Dim("lr_height", min=1, max=MAX_SIDE), Dim("lr_width", min=1, max=MAX_SIDE)
    th, tw = Dim("table_height", min=1, max=MAX_SIDE), Dim("table_width", min=1, max=MAX_SIDE)
    queries = Dim("queries", min=1)
    entry = json.dumps(checkpoint_metadata(model, prefix=""))
    common = {LTE_KEY: entry} | ({RELEASE_KEY: release} if release is not None else {})
    with torch.no_grad():
        query = _export(
            QueryGraph(model),
            (table, lr, coord, cell, origin),
            {
                "table": {0: batch, 1: th, 2: tw},
                "lr": {0: batch, 2: h, 3: w},
                "coord": {0: batch, 1: queries},
                "cell": {0: batch},
                "origin": None,
            },
            QUERY_OUTPUTS,
        )
        _save(query, query_path, common | {GRAPH_KEY: "query"})
        encoder = _export(
            EncoderGraph(model), (lr,), {"lr": {0: batch, 2: h, 3: w}}, ENCODER_OUTPUTS
        )
    _save(
        encoder,
        path,
        common
        | {
            GRAPH_KEY: "encoder",
            QUERY_GRAPH_KEY: query_path.name,
            QUERY_SHA256_KEY: sha256_file(query_path),
        },
    )
    return [path, query_path]
