"""Results files: the records ``lte.test`` writes and ``lte.compare`` reads, and nothing heavier.

A results file is a JSON list of records, one per (checkpoint, model, test set, protocol, scale),
with the same rows as CSV beside it::

    {"testset": "set5", "scale": 2, "protocol": "benchmark", "psnr": 38.23, "ssim": 0.9614,
     "images": 5, "model": "lte", "encoder": "rdn", "ckpt": "ckpts/rdn-lte.pth"}

This module imports neither torch nor Hydra, so reading and comparing results is instant. It also
holds the project's one scale formatter, :func:`format_scale`.

Writers merge: records already in the file are kept, a record with the same key replaces the old
one (and says so in the log), and the whole read-merge-write happens under a file lock, so parallel
jobs of a sweep can fill one file.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from filelock import FileLock

from lte.atomic import atomic_write_text
from lte.errors import UserError

log = logging.getLogger(__name__)


def format_scale(scale: float) -> str:
    """A scale as folders, files, tables and metric names spell it: ``2`` for 2.0, ``2.5`` for 2.5.

    Write ``f"x{format_scale(s)}"`` for a column or file tag (``x2``, ``x2.5``).
    """
    s = float(scale)
    return str(int(s)) if s.is_integer() else f"{s:g}"


def scale_value(scale: float) -> int | float:
    """A scale as JSON stores it: ``2`` for 2.0 (as the tables print it), the float otherwise."""
    s = float(scale)
    return int(s) if s.is_integer() else s


@dataclass
class ResultRecord:
    """One row of a results file: a model on one test set at one scale.

    ``per_image`` holds per-image scores for callers that want them; it is not written to files.
    """

    testset: str
    scale: float
    protocol: str
    psnr: float
    ssim: float | None
    images: int | None
    model: str
    encoder: str
    ckpt: str
    per_image: list[Any] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the schema's keys only, scales as ``2`` rather than ``2.0``, NaN as null."""
        d = {k: v for k, v in asdict(self).items() if k != "per_image"}
        d["scale"] = scale_value(self.scale)
        for key in ("psnr", "ssim"):
            if isinstance(d[key], float) and not math.isfinite(d[key]):
                d[key] = None  # JSON has no NaN / inf
        return d


#: The keys every record of a results file holds, in column order.
RESULT_KEYS: tuple[str, ...] = tuple(f.name for f in fields(ResultRecord) if f.name != "per_image")


def record_key(rec: dict[str, Any]) -> tuple[Any, ...]:
    """Records with the same key describe the same measurement; a newer one replaces the older."""
    return (
        rec["ckpt"],
        rec["model"],
        rec["encoder"],
        rec["testset"],
        rec["protocol"],
        float(rec["scale"]),
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_record(rec: Any, where: str) -> dict[str, Any]:
    """Check one record against the schema; a bad one is a UserError naming ``where``."""
    if not isinstance(rec, dict):
        raise UserError(f"{where}: a result must be a JSON object, got {type(rec).__name__}")
    missing = [k for k in RESULT_KEYS if k not in rec]
    if missing:
        raise UserError(f"{where}: result lacks {', '.join(missing)} (is it an lte results file?)")
    if not _is_number(rec["scale"]) or not rec["scale"] >= 1:
        raise UserError(f"{where}: scale {rec['scale']!r} is not a number >= 1")
    for key in ("psnr", "ssim"):
        if rec[key] is not None and not _is_number(rec[key]):
            raise UserError(f"{where}: {key} {rec[key]!r} is not a number")
    if rec["images"] is not None and not (isinstance(rec["images"], int) and rec["images"] >= 0):
        raise UserError(f"{where}: images {rec['images']!r} is not a count")
    for key in ("testset", "protocol", "model", "encoder", "ckpt"):
        if not isinstance(rec[key], str):
            raise UserError(f"{where}: {key} {rec[key]!r} is not a string")
    return rec


def read_results(path: str | os.PathLike[str], *, option: str = "") -> list[dict[str, Any]]:
    """The records of a results JSON file, checked against the schema.

    ``option`` (e.g. ``results_file=``) prefixes the messages with the setting that named the file.

    Raises:
        UserError: the file is missing, not JSON, or not a list of records.
    """
    p = Path(path)
    what = f"{option}{p}" if option else f"results file '{p}'"
    if not p.is_file():
        raise UserError(f"{what} does not exist: make it with python -m lte.test")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{what} is not valid JSON ({err}): fix or move it") from None
    if not isinstance(data, list):
        raise UserError(f"{what} must hold a JSON list of records (is it an lte results file?)")
    return [validate_record(rec, f"{what} record {i}") for i, rec in enumerate(data)]


def check_results_file(path: str | os.PathLike[str], *, option: str = "results_file=") -> Path:
    """Make sure ``path`` can take results, before anything is measured: ``.json``, its folder
    exists and is writable, and a file already there is a valid results file (it will be merged).

    Run before a long evaluation so a typo cannot throw its numbers away.

    Raises:
        UserError: one line naming ``option`` and the path.
    """
    p = Path(path)
    if p.suffix.lower() != ".json":
        raise UserError(f"{option}{p} must end in .json (the .csv is written beside it)")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{option}{p}: folder '{parent}' does not exist: create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option}{p}: folder '{parent}' is not writable: choose another folder")
    if p.is_dir():
        raise UserError(f"{option}{p} is a folder: name a .json file inside it")
    if p.exists():
        if not os.access(p, os.R_OK | os.W_OK):
            raise UserError(f"{option}{p} exists but is not readable and writable")
        read_results(p, option=option)
    return p


def results_csv(records: Sequence[dict[str, Any]], columns: Sequence[str] = RESULT_KEYS) -> str:
    """Records as CSV text, one column per name in ``columns`` (``None`` written as empty)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: "" if rec.get(k) is None else rec[k] for k in columns})
    return buf.getvalue()


def merge_results(
    records: Sequence[ResultRecord | dict[str, Any]], path: str | os.PathLike[str]
) -> list[dict[str, Any]]:
    """Merge records into ``path`` (JSON) and rewrite ``path`` with ``.csv`` from it, atomically.

    The file's other records are kept; one with the same key (checkpoint, model, encoder, test set,
    protocol, scale) is replaced, with a log line giving the old PSNR. The read-merge-write runs
    under a lock (``.<name>.lock`` beside the file), so parallel jobs never lose each other's rows.
    Returns everything the file now holds.

    Raises:
        UserError: the path is not a usable results file (see :func:`check_results_file`).
    """
    p = check_results_file(path)
    new = [
        r.to_dict() if isinstance(r, ResultRecord) else validate_record(r, str(p)) for r in records
    ]
    with FileLock(p.with_name(f".{p.name}.lock")):
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        if p.exists():
            for rec in read_results(p, option="results_file="):
                rows[record_key(rec)] = rec
        for rec in new:
            key = record_key(rec)
            old = rows.get(key)
            if old is not None and old != rec:
                log.info(
                    "%s: replacing %s x%s of %s (PSNR was %s)",
                    p,
                    rec["testset"],
                    format_scale(rec["scale"]),
                    rec["ckpt"],
                    old["psnr"],
                )
            rows[key] = rec
        out = list(rows.values())
        atomic_write_text(p, json.dumps(out, indent=2) + "\n")
        atomic_write_text(p.with_suffix(".csv"), results_csv(out))
    return out
