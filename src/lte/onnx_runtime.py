"""Run an lte ONNX export with onnxruntime, through the very driver PyTorch models use.

:func:`load_onnx` opens ``OUT.onnx`` (the encoder graph) and the query graph it names
(:mod:`lte.onnx_export` says what each computes), checks that the pair is one lte model, and returns
an :class:`OnnxModel`: the part of :class:`~lte.models.SRModel` that :func:`lte.inference.predict`
uses (``encode``, ``query``, ``scale_max``, ``native_scale``, tile margins and memory estimate). So
an ONNX upscale is ``predict`` itself: the same coordinate grid, the same cell enlarged by
``max(s / scale_max, 1)`` per axis, the same tiles and chunks; only the two graphs run in
onnxruntime instead of PyTorch::

    from lte.onnx_runtime import load_onnx
    loaded = load_onnx("model.onnx")               # needs onnxruntime: pip install 'lte[onnx]'
    sr = loaded.model.predict(lr, (H, W))          # lr: (B, 3, h, w) in [-1, 1], like lte.inference.predict

A file is data, never code, here too. Before a graph runs, its ``metadata_props`` are validated as a
checkpoint's description is (:func:`~lte.checkpoint.safetensors_format.description_entry`: format
version, normalisation, :class:`~lte.models.spec.ModelSpec`), the query graph's name is a plain file
name beside ``OUT.onnx`` whose SHA-256 must be the one ``OUT.onnx`` records, both graphs must describe
the same model and have lte's inputs and outputs. What the driver needs to know of the model (tile
margin, memory per code, native scale) is read from a skeleton built from the validated description
on the ``meta`` device: no weights, no memory. The graphs run on onnxruntime's CPU provider.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lte.checkpoint.loading import with_scale_max
from lte.checkpoint.safetensors_format import LTE_KEY, description_entry
from lte.checksum import sha256_file
from lte.errors import UserError, quote
from lte.files import check_input
from lte.inference import DEFAULT_CHUNK, ProgressFn, predict
from lte.models.decoders import DecoderState, Kernel
from lte.models.identity import labels
from lte.models.spec import ModelSpec
from lte.models.sr import SRModel
from lte.onnx_export import (
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    GRAPH_KEY,
    QUERY_GRAPH_KEY,
    QUERY_INPUTS,
    QUERY_OUTPUTS,
    QUERY_SHA256_KEY,
)

_INSTALL = "pip install 'lte[onnx]' (in a checkout: pip install -e '.[onnx]')"
#: A query graph's name as an encoder file may record it: a plain file name, nothing of a path.
_GRAPH_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=-]{0,200}\.onnx")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def import_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or one line saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError(
            f"running an ONNX model needs onnxruntime, which is not installed: {_INSTALL}"
        ) from None
    return onnxruntime


def _session(ort: Any, path: Path, where: str, threads: int | None) -> Any:
    """An onnxruntime CPU session of ``path``; a file onnxruntime cannot read is one line."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings are about its own optimisations
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own types for a bad file
        msg = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot read {where}: not an ONNX model or damaged ({msg})") from None


def _signature(session: Any, inputs: tuple[str, ...], outputs: tuple[str, ...], where: str) -> None:
    """The graph's input and output names, in order, must be lte's for its role."""
    got_in = tuple(i.name for i in session.get_inputs())
    got_out = tuple(o.name for o in session.get_outputs())
    if (got_in, got_out) != (inputs, outputs):
        raise UserError(
            f"{where} has inputs {list(got_in)} and outputs {list(got_out)}, not lte's "
            f"{list(inputs)} -> {list(outputs)}: it is not the graph its metadata says"
        )


def _table_width(session: Any, output: bool) -> object:
    """The code table's last dimension as the graph declares it (an int, or a symbol's name)."""
    node = session.get_outputs()[0] if output else session.get_inputs()[0]
    return node.shape[-1] if node.shape else None


class OnnxModel:
    """An lte ONNX export with :class:`~lte.models.SRModel`'s inference surface.

    ``encode`` runs the encoder graph on an LR image or tile, ``query`` the query graph on chunks of
    coordinates; everything else is the ``skeleton``'s (the validated description, built on the
    ``meta`` device). :meth:`predict` is :func:`lte.inference.predict` on this object.
    """

    #: The graphs are exports of the exact kernel; there is no other.
    inference_kernel: Kernel = "exact"
    has_compiled_kernel = False

    def __init__(self, encoder: Any, query: Any, skeleton: SRModel) -> None:
        self._encoder = encoder
        self._query = query
        self._skeleton = skeleton

    @property
    def scale_max(self) -> float:
        """The largest training scale (the description's, or the ``scale_max`` given to load)."""
        return self._skeleton.scale_max

    @property
    def native_scale(self) -> int | None:
        """A fixed-scale model's one scale, else ``None`` (as ``SRModel.native_scale``)."""
        return self._skeleton.native_scale

    @property
    def pad_multiple(self) -> int:
        return self._skeleton.pad_multiple

    @property
    def receptive_radius(self) -> int | None:
        return self._skeleton.receptive_radius

    def bytes_per_code(self) -> int:
        """The tile-size estimate of the PyTorch model (onnxruntime's buffers are of that order)."""
        return self._skeleton.bytes_per_code()

    def parameters(self) -> Iterator[Tensor]:
        """No torch parameters: the weights live in the graphs, which run on the CPU (callers that
        take the device from a model's first parameter fall back to the CPU)."""
        return iter(())

    def describe(self) -> dict[str, Any]:
        """The model's description, as ``SRModel.describe()``."""
        return self._skeleton.describe()

    def encode(
        self,
        lr: Tensor,
        *,
        full_lr: Tensor | None = None,
        origin: tuple[int, int] = (0, 0),
        cell: Tensor | None = None,
    ) -> DecoderState:
        """The encoder graph on a normalised ``(B, 3, h, w)`` image or tile (see ``SRModel.encode``).
        ``cell`` is ignored: only models whose table does not depend on it are exported."""
        if lr.dtype != torch.float32:
            raise ValueError(f"the ONNX model computes in float32, the image is {lr.dtype}")
        self._check_padding(lr.shape[-2], lr.shape[-1])
        (table,) = self._encoder.run(None, {"lr": _array(lr)})
        return DecoderState(torch.from_numpy(table), lr if full_lr is None else full_lr, origin)

    def _check_padding(self, h: int, w: int) -> None:
        """An encoder that pads to a multiple of its window (SwinIR) was traced with its reflect
        padding, which needs the pad to be shorter than the side; PyTorch replicates instead on
        such tiny inputs, and that branch is not in the graph: one line, not a wrong image."""
        m = self.pad_multiple
        if m and ((m - h % m) % m >= h or (m - w % m) % m >= w):
            raise UserError(
                f"the ONNX graph of this {self.describe()['encoder']['kind']} encoder pads its "
                f"input by reflection to a multiple of {m} px, which a {w}x{h} image (or tile) is "
                f"too small for: use an image at least {m}x{m} px, or the checkpoint it was "
                "exported from"
            )

    def query(
        self,
        state: DecoderState,
        coord: Tensor,
        cell: Tensor,
        *,
        dtype: torch.dtype | None = None,
        kernel: Kernel | None = None,
    ) -> Tensor:
        """The query graph: RGB (normalised) ``(B, Q, 3)`` at ``(B, Q, 2)`` coordinates.

        ``cell`` is ``(B, 1, 2)``, one cell per image as :func:`lte.inference.predict` makes it.
        ``dtype`` must be float32 (``None``): the graphs are float32 exports. ``kernel`` is
        accepted for the driver's sake; the graph is the exact kernel.
        """
        if dtype not in (None, torch.float32):
            raise ValueError(f"the ONNX model computes in float32, dtype={dtype} is not available")
        if cell.dim() != 3 or cell.shape[1] != 1:
            raise ValueError(
                f"the ONNX query graph takes one (B, 1, 2) cell, got {tuple(cell.shape)}"
            )
        oy, ox = state.origin
        feed = {
            "table": _array(state.table),
            "lr": _array(state.lr),
            "coord": _array(coord),
            "cell": _array(cell),
            "origin": np.array([int(oy), int(ox)], dtype=np.int64),
        }
        (rgb,) = self._query.run(None, feed)
        return torch.from_numpy(rgb)

    def predict(
        self,
        lr: Tensor,
        out_hw: tuple[int, int],
        *,
        chunk: int = DEFAULT_CHUNK,
        tile: int | None = None,
        progress: ProgressFn | None = None,
        ensemble: int = 1,
    ) -> Tensor:
        """:func:`lte.inference.predict` with this model: ``(B, 3, h, w)`` to ``(B, 3, H, W)``,
        with the same tiles, chunks and self-ensemble."""
        return predict(
            self,  # type: ignore[arg-type]
            lr,
            out_hw,
            chunk=chunk,
            tile=tile,
            progress=progress,
            ensemble=ensemble,
        )


def _array(t: Tensor) -> np.ndarray:
    """A contiguous float32 (or int) numpy view of a CPU tensor, for onnxruntime."""
    return np.ascontiguousarray(t.detach().cpu().numpy())


@dataclass
class OnnxLoaded:
    """An ONNX export ready to run, with what ``lte.upscale`` reports (as ``LoadedModel``)."""

    model: OnnxModel
    path: Path
    query_path: Path
    spec: ModelSpec
    release: str | None = None
    source: str = "onnx"

    @property
    def scale_max(self) -> float:
        return self.model.scale_max

    @property
    def model_name(self) -> str:
        return labels(self.spec.to_dict())[0]

    @property
    def encoder_name(self) -> str:
        return labels(self.spec.to_dict())[1]


def _query_path(meta: dict[str, str], path: Path, where: str) -> tuple[Path, str]:
    """The query graph beside ``path`` that the encoder file names, and the SHA-256 it records."""
    name, digest = meta.get(QUERY_GRAPH_KEY), meta.get(QUERY_SHA256_KEY)
    if not isinstance(name, str) or not _GRAPH_NAME.fullmatch(name):
        raise UserError(
            f"{where}: {QUERY_GRAPH_KEY} must be the file name of its query graph beside it "
            f"(no folders), got {quote(name)}"
        )
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise UserError(f"{where}: {QUERY_SHA256_KEY} must be 64 lower-case hex digits")
    return path.with_name(name), digest


def load_onnx(
    path: str | os.PathLike[str], *, scale_max: float | None = None, threads: int | None = None
) -> OnnxLoaded:
    """Open an lte ONNX export (``OUT.onnx`` and the query graph it names) for :meth:`OnnxModel.predict`.

    ``scale_max`` overrides the description's, as :func:`lte.checkpoint.load_checkpoint`'s does;
    ``threads`` sets onnxruntime's intra-op threads (default: its own choice).

    Raises:
        UserError: onnxruntime is missing; a file is missing or no ONNX model; a file carries no lte
            description (another tool's model) or one that does not validate; the query graph is
            not the recorded file (another name, another SHA-256, another model's description) or
            a graph's inputs and outputs are not lte's.
    """
    ort = import_onnxruntime()
    p = Path(path)
    where = f"ONNX model {quote(p)}"
    check_input(p, "ONNX model", missing="check --ckpt")
    encoder = _session(ort, p, where, threads)
    meta = dict(encoder.get_modelmeta().custom_metadata_map)
    spec, _, release = description_entry(meta, where)
    role = meta.get(GRAPH_KEY)
    if role == "query":
        raise UserError(
            f"{where} is the query graph of an lte export: give the encoder graph that names it "
            "(the .onnx file without .query)"
        )
    if role != "encoder":
        raise UserError(f"{where}: {GRAPH_KEY} must be 'encoder' or 'query', got {quote(role)}")
    _signature(encoder, ENCODER_INPUTS, ENCODER_OUTPUTS, where)
    query_path, digest = _query_path(meta, p, where)
    query_where = f"ONNX query graph {quote(query_path)}"
    check_input(query_path, "ONNX query graph", missing=f"keep it beside {quote(p.name)}")
    actual = sha256_file(query_path)
    if actual != digest:
        raise UserError(
            f"{query_where} has SHA-256 {actual}, but {quote(p.name)} was exported with one of "
            f"{digest}: the pair does not belong together; export the model again"
        )
    query = _session(ort, query_path, query_where, threads)
    query_meta = dict(query.get_modelmeta().custom_metadata_map)
    if query_meta.get(LTE_KEY) != meta[LTE_KEY] or query_meta.get(GRAPH_KEY) != "query":
        raise UserError(
            f"{query_where} is not the query graph of {quote(p.name)}: its lte description or "
            "role differs; export the model again"
        )
    _signature(query, QUERY_INPUTS, QUERY_OUTPUTS, query_where)
    width = _table_width(encoder, output=True)
    if width != _table_width(query, output=False) or not isinstance(width, int):
        raise UserError(
            f"{query_where} reads code tables of width {_table_width(query, output=False)}, but "
            f"{quote(p.name)} makes {width}: the graphs are of different models"
        )
    spec = with_scale_max(spec, scale_max)
    try:
        with torch.device("meta"):
            skeleton = spec.build()
    except Exception:  # a constructor that reads values on the meta device: build it for real
        skeleton = spec.build()
    if skeleton.cell_dependent:
        raise UserError(
            f"{quote(str(p))} describes an LMF model, whose encoder output depends on the output "
            "cell, and lte exports none as ONNX: it was not written by lte-export"
        )
    return OnnxLoaded(OnnxModel(encoder, query, skeleton.eval()), p, query_path, spec, release)
