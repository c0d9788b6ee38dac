"""Read an offline W&B run back from its folder: name, group, tags, config, history, charts.

An offline run (``<dir>/wandb/offline-run-<time>-<id>/``) keeps everything it logged in one
``run-<id>.wandb`` file: W&B's record log (the LevelDB log layout: a 7-byte ``:W&B`` header, then
32 KiB blocks of records, each ``crc32 (4) | length (2) | type (1) | payload``), whose payloads are
``wandb.proto.wandb_internal_pb2.Record`` messages. wandb 0.31 moved its own reader into the Go
core, so this module decodes the log with W&B's own protobuf classes; tables are read from the
run's ``files/`` folder, where W&B writes them. Used by the tests (they check what ``lte.test``,
``lte.compare`` and training log) and by ``scripts/wandb_figures.py`` (the figures of
``docs/wandb.md``), so neither needs an account or the network.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lte.errors import UserError

#: The log's block size and per-record header (``<IHB``: checksum, length, type).
_BLOCK = 32768
_HEADER = struct.Struct("<IHB")
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """What one offline run logged, as plain Python values."""

    folder: Path
    id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    #: ``define_metric`` calls: ``{name or glob: {"step_metric": ..., "summary": [...]}}``.
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    def charts(self) -> dict[str, dict[str, Any]]:
        """Custom charts (``wandb.plot.*``) by key: their panel config (``panelDefId``, title...)."""
        visualize = self.config.get("_wandb", {}).get("visualize", {})
        return {k: v.get("panel_config", v) for k, v in visualize.items()}

    def table(self, key: str) -> dict[str, Any]:
        """The last W&B Table logged under ``key`` (``{"columns": [...], "data": [[...]]}``).

        Custom charts keep their data in ``<key>_table``.

        Raises:
            KeyError: nothing was logged under ``key``.
        """
        for row in reversed(self.history):
            ref = row.get(key)
            if isinstance(ref, dict) and ref.get("_type") == "table-file":
                return json.loads((self.folder / "files" / ref["path"]).read_text())
        raise KeyError(key)

    def series(self, key: str, step: str) -> list[tuple[float, float]]:
        """``(step value, key value)`` for every history row holding both, in logged order."""
        return [(r[step], r[key]) for r in self.history if key in r and step in r]


def _payloads(data: bytes) -> Iterator[bytes]:
    """The record payloads of a ``.wandb`` log, reassembled across blocks."""
    pos, pending = 7, b""
    while pos + _HEADER.size <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER.size:  # the block's tail is zero padding
            pos += left
            continue
        _, length, kind = _HEADER.unpack_from(data, pos)
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + _HEADER.size : pos + _HEADER.size + length]
        pos += _HEADER.size + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""


def _put(target: dict[str, Any], item: Any) -> None:
    """Set ``item.value_json`` in ``target`` at ``item.key`` or the path ``item.nested_key``."""
    path = [item.key] if item.key else list(item.nested_key)
    node = target
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = json.loads(item.value_json)


def records(log: str | os.PathLike[str]) -> Iterator[Any]:
    """Every ``wandb_internal_pb2.Record`` of one ``run-<id>.wandb`` log, in logged order.

    Raises:
        UserError: the file is not a W&B run log.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(log).read_bytes()
    if data[:4] != b":W&B":
        raise UserError(f"'{log}' is not a W&B run log (no :W&B header)")
    for payload in _payloads(data):
        record = pb.Record()
        record.ParseFromString(payload)
        yield record


def read_offline_run(folder: str | os.PathLike[str]) -> OfflineRun:
    """Decode the offline run in ``folder`` (``.../offline-run-<time>-<id>``).

    Raises:
        UserError: the folder holds no ``run-*.wandb`` log, or the file is not one.
    """
    root = Path(folder)
    logs = sorted(root.glob("run-*.wandb"))
    if not logs:
        raise UserError(f"'{root}' holds no run-*.wandb file: is it an offline W&B run folder?")
    run = OfflineRun(folder=root)
    for record in records(logs[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.id, run.name, run.group, run.job_type = (
                r.run_id,
                r.display_name,
                r.run_group,
                r.job_type,
            )
            run.tags, run.notes = list(r.tags), r.notes
            for item in r.config.update:
                _put(run.config, item)
        elif kind == "config":
            for item in record.config.update:
                _put(run.config, item)
        elif kind == "summary":
            for item in record.summary.update:
                _put(run.summary, item)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _put(row, item)
            run.history.append(row)
        elif kind == "metric":
            m = record.metric
            name = m.name or m.glob_name
            entry = run.metrics.setdefault(name, {})
            if m.step_metric:
                entry["step_metric"] = m.step_metric
            if m.summary.ListFields():
                entry["summary"] = [f.name for f, v in m.summary.ListFields() if v]
    return run


def offline_runs(wandb_dir: str | os.PathLike[str]) -> list[OfflineRun]:
    """Every offline run under ``wandb_dir`` (a ``.../wandb`` folder), oldest first."""
    return [read_offline_run(p) for p in sorted(Path(wandb_dir).glob("offline-run-*"))]
