"""Results files: the records ``lte.test`` writes and ``lte.compare`` reads, and nothing heavier.

A results file is a JSON list of records, one per (checkpoint, model, test set, protocol, scale),
with the same rows as CSV beside it::

    {"testset": "set5", "scale": 2, "protocol": "benchmark", "psnr": 38.23, "ssim": 0.9614,
     "images": 5, "model": "lte", "encoder": "rdn", "ckpt": "ckpts/rdn-lte.pth"}

A fixed-scale model's records also hold its ``"native_scale"`` (JSON only: the CSV keeps the nine
columns of :data:`RESULT_KEYS`), which ``lte.compare`` reads (:mod:`lte.fixed_scale`). A method is
named the same way everywhere, by :func:`method_label`.

This module imports neither torch nor Hydra, so reading and comparing results is instant. Scales
are written with :mod:`lte.scales`.

Writers merge: records already in the file are kept, a record with the same key replaces the old
one (and says so in the log), and the whole read-merge-write happens under a file lock, so parallel
jobs of a sweep can fill one file. Only lte's own files are merged into or replaced: an existing
JSON must validate as a results file, and an existing CSV beside it must start with lte's header
(:data:`CSV_HEADER`); anything else is the user's and is refused (see :mod:`lte.files`).

Reading is strict too, because results files come from anywhere: every number must be finite and
plausible (:data:`PSNR_RANGE`, :data:`SSIM_RANGE`, :data:`MAX_SCALE`), so an ``Infinity`` or a
``1e308`` can never be shown as the best PSNR of a table.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from filelock import FileLock

from lte.atomic import atomic_write_text, write_target
from lte.errors import UserError, quote
from lte.files import check_input, check_output, label
from lte.scales import format_scale, scale_value

log = logging.getLogger(__name__)


#: The bicubic reference row's labels: ``model`` ``bicubic``, and no network, so ``encoder`` ``none``.
BICUBIC_MODEL = "bicubic"
NO_ENCODER = "none"


def method_label(model: str, encoder: str) -> str:
    """How tables, logs and W&B name a method: ``<encoder>-<model>`` (``rdn-lte``), or ``bicubic``."""
    return model if model == BICUBIC_MODEL else f"{encoder}-{model}"


@dataclass
class ResultRecord:
    """One row of a results file: a model on one test set at one scale.

    ``native_scale`` is a fixed-scale model's one scale (``None``: arbitrary-scale), written only
    when set. ``per_image`` holds per-image scores for callers that want them; it is not written
    to files.
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
    native_scale: int | None = None
    per_image: list[Any] = field(default_factory=list, repr=False)

    @property
    def method(self) -> str:
        """The method's label (:func:`method_label`)."""
        return method_label(self.model, self.encoder)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the schema's keys (``native_scale`` when set), scales as ``2`` rather
        than ``2.0``, NaN as null."""
        d = {k: v for k, v in asdict(self).items() if k != "per_image"}
        d["scale"] = scale_value(self.scale)
        for key in ("psnr", "ssim"):
            if isinstance(d[key], float) and not math.isfinite(d[key]):
                d[key] = None  # JSON has no NaN / inf
        if d["native_scale"] is None:
            del d["native_scale"]
        return d


#: Keys a record holds only when they apply.
OPTIONAL_KEYS: tuple[str, ...] = ("native_scale",)
#: The keys every record of a results file holds, in column order.
RESULT_KEYS: tuple[str, ...] = tuple(
    f.name for f in fields(ResultRecord) if f.name not in ("per_image", *OPTIONAL_KEYS)
)


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


#: PSNR in dB a record may hold. Images in [0, 1] have an MSE of at most 1, so PSNR >= 0; one
#: 8-bit step wrong in one pixel of a 10-gigapixel image is still under 160 dB.
PSNR_RANGE = (0.0, 200.0)
#: SSIM is a correlation-like index: -1 to 1.
SSIM_RANGE = (-1.0, 1.0)
#: Largest scale a record may hold; the papers go to x30, and nothing measures beyond x1000.
MAX_SCALE = 1000.0


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: Any) -> str:
    """A value for a message: its repr, cut to 40 characters (a record may hold anything)."""
    try:
        text = repr(value)
    except RecursionError:
        return "a deeply nested value"
    return text if len(text) <= 40 else text[:37] + "..."


def _in_range(value: Any, low: float, high: float) -> bool:
    # math.isfinite also refuses an int too large for a float, which a bare comparison would accept.
    return _is_number(value) and math.isfinite(float(value)) and low <= value <= high


def validate_record(rec: Any, where: str) -> dict[str, Any]:
    """Check one record against the schema; a bad one is a UserError naming ``where``.

    Numbers must be finite and plausible: PSNR in :data:`PSNR_RANGE` dB, SSIM in
    :data:`SSIM_RANGE`, scale from 1 to :data:`MAX_SCALE` (``null`` PSNR/SSIM: not measured).
    """
    if not isinstance(rec, dict):
        raise UserError(f"{where}: a result must be a JSON object, got {type(rec).__name__}")
    missing = [k for k in RESULT_KEYS if k not in rec]
    if missing:
        raise UserError(f"{where}: result lacks {', '.join(missing)} (is it an lte results file?)")
    try:
        scale_ok = _in_range(rec["scale"], 1.0, MAX_SCALE)
    except OverflowError:  # an int with hundreds of digits
        scale_ok = False
    if not scale_ok:
        raise UserError(
            f"{where}: scale {_show(rec['scale'])} is not a finite number from 1 to {MAX_SCALE:g}"
        )
    for key, (low, high) in (("psnr", PSNR_RANGE), ("ssim", SSIM_RANGE)):
        value = rec[key]
        if value is None:
            continue
        try:
            ok = _in_range(value, low, high)
        except OverflowError:
            ok = False
        if not ok:
            raise UserError(
                f"{where}: {key} {_show(value)} is not a finite number from {low:g} to {high:g} "
                "(fix or remove the record)"
            )
    if rec["images"] is not None and not (isinstance(rec["images"], int) and rec["images"] >= 0):
        raise UserError(f"{where}: images {_show(rec['images'])} is not a count")
    native = rec.get("native_scale")
    if native is not None and (
        isinstance(native, bool) or not isinstance(native, int) or not 1 <= native <= MAX_SCALE
    ):
        raise UserError(
            f"{where}: native_scale {_show(native)} is not a whole scale from 1 to {MAX_SCALE:g}"
        )
    for key in ("testset", "protocol", "model", "encoder", "ckpt"):
        if not isinstance(rec[key], str):
            raise UserError(f"{where}: {key} {_show(rec[key])} is not a string")
    return rec


def read_results(path: str | os.PathLike[str], *, option: str = "") -> list[dict[str, Any]]:
    """The records of a results JSON file, checked against the schema.

    ``option`` (e.g. ``results_file=``) prefixes the messages with the setting that named the file.
    Only a regular file is opened (a FIFO would wait forever).

    Raises:
        UserError: the file is missing, a folder or not a regular file, not JSON, nested too deeply,
            or not a list of valid records (:func:`validate_record`; the message gives the index).
    """
    p = Path(path)
    name = option or "results file"
    what = label(name, p)
    check_input(p, name, missing="make it with python -m lte.test")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{what} is not valid JSON ({err}): fix or move it") from None
    except RecursionError:
        raise UserError(
            f"{what} nests JSON deeper than anything lte writes (is it an lte results file?)"
        ) from None
    if not isinstance(data, list):
        raise UserError(f"{what} must hold a JSON list of records (is it an lte results file?)")
    return [validate_record(rec, f"{what} record {i}") for i, rec in enumerate(data)]


#: The first line of every CSV lte writes beside a results file; a CSV without it is not lte's.
CSV_HEADER = ",".join(RESULT_KEYS)


def _check_lte_csv(json_path: Path, option: str) -> Callable[[Path], None]:
    """For :func:`check_output`: refuse an existing ``.csv`` that does not start with lte's header."""

    def check(csv_path: Path) -> None:
        try:
            with open(csv_path, encoding="utf-8", newline="") as f:
                first = f.readline(len(CSV_HEADER) + 3).rstrip("\r\n")
        except (OSError, UnicodeDecodeError):
            first = ""
        if first != CSV_HEADER:
            raise UserError(
                f"{label(option, json_path)}: {quote(csv_path)} beside it was not written by lte "
                "(its first line is not lte's results header), and lte would replace it: move it "
                f"away, or choose another {option.rstrip('=') or 'results file'}"
            )

    return check


def check_results_file(path: str | os.PathLike[str], *, option: str = "results_file=") -> Path:
    """Make sure ``path`` can take results, before anything is measured: ``.json``, its folder
    exists and is writable, a file already there is a valid results file (it will be merged), and
    the ``.csv`` beside it is absent or lte's own (it will be rewritten).

    Run before a long evaluation so a typo cannot throw its numbers away; cheap enough to run
    again before every merge (:func:`merge_results` does).

    Raises:
        UserError: one line naming ``option`` and the path (see :func:`lte.files.check_output`).
    """
    p = Path(path)
    if p.suffix.lower() != ".json":
        raise UserError(f"{label(option, p)} must end in .json (the .csv is written beside it)")

    def lte_json(_: Path) -> None:  # an existing file is merged into only if it is lte's
        read_results(p, option=option)

    check_output(p, what=option, overwrite=None, merges=lte_json)
    csv_path = p.with_suffix(".csv")
    check_output(
        csv_path,
        what=f"{label(option, p)}: its CSV",
        overwrite=None,
        merges=_check_lte_csv(p, option),
    )
    return p


def results_csv(records: Sequence[dict[str, Any]], columns: Sequence[str] = RESULT_KEYS) -> str:
    """Records as CSV text, one column per name in ``columns`` (``None`` written as empty)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: "" if rec.get(k) is None else rec[k] for k in columns})
    return buf.getvalue()


def format_table(records: Sequence[ResultRecord]) -> str:
    """A plain-text table: one row per test set, one column per scale, ``PSNR / SSIM`` per cell."""
    sets = list(dict.fromkeys(r.testset for r in records))
    scales = sorted({r.scale for r in records})
    cells = {(r.testset, r.scale): r for r in records}

    def cell(t: str, s: float) -> str:
        r = cells.get((t, s))
        if r is None:
            return "-"
        ssim = "-" if r.ssim is None else f"{r.ssim:.4f}"
        return f"{r.psnr:.2f} / {ssim}"

    header = ["testset", *(f"x{format_scale(s)}" for s in scales)]
    rows = [[t, *(cell(t, s) for s in scales)] for t in sets]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "PSNR (dB) / SSIM\n" + "\n".join(lines)


def merge_results(
    records: Sequence[ResultRecord | dict[str, Any]], path: str | os.PathLike[str]
) -> list[dict[str, Any]]:
    """Merge records into ``path`` (JSON) and rewrite ``path`` with ``.csv`` from it, atomically.

    The file's other records are kept; one with the same key (checkpoint, model, encoder, test set,
    protocol, scale) is replaced, with a log line giving the old PSNR. The read-merge-write runs
    under a lock (``.<name>.lock`` beside the file, or beside the file a symbolic link points to, so
    that every writer of one file shares one lock), so parallel jobs never lose each other's rows.
    Every call checks the destinations again (:func:`check_results_file`), so it may be called
    once per record. Returns everything the file now holds.

    Raises:
        UserError: the path is not a usable results file (see :func:`check_results_file`).
    """
    p = Path(path)
    new = [
        r.to_dict() if isinstance(r, ResultRecord) else validate_record(r, str(p)) for r in records
    ]
    check_results_file(p)
    real = write_target(p)
    with FileLock(real.with_name(f".{real.name}.lock")):
        check_results_file(p)  # again under the lock: what another job just wrote is checked too
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
