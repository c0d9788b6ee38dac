"""Compare methods across test sets and scales from ``lte.test`` results files: markdown, PNG, W&B.

    python -m lte.compare results/*.json --out compare/ --published --baseline rdn-liif

The command line is :mod:`lte.cli.compare`. Importing this module loads neither torch nor Hydra
(only :mod:`lte.results`; matplotlib and W&B when a plot or a run is made), so comparing is instant.

Each results record (see :mod:`lte.results`) becomes one cell of a method × (test set, scale) grid.
A method is ``<encoder>-<model>`` (``rdn-lte``, :func:`lte.results.method_label`); when two
checkpoints share that name, the checkpoint's file stem is appended so neither hides the other.
Published numbers (:mod:`lte.published`) are labelled ``... (paper)``. A fixed-scale model's other
scales are marked as not its own (:mod:`lte.fixed_scale`). Writes ``comparison.md`` (one table per test set, best PSNR per column in
bold, deltas against ``--baseline``), ``comparison.png`` (PSNR against scale, one line per method,
one panel per test set) and ``comparison.csv`` (the merged records with their method labels).

Nothing is written until everything is known to work: the three outputs are checked first (an
existing one is replaced only with ``--overwrite``; see :mod:`lte.files`), then every results file
is read and validated (:func:`lte.results.read_results`: finite, plausible numbers), then the
baseline is looked up; only then is ``--out`` created.
"""

from __future__ import annotations

import math
import os
import stat
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lte.atomic import atomic_path, atomic_write_text, file_kind, write_error
from lte.errors import UserError, quote
from lte.files import check_output
from lte.fixed_scale import is_native, record_native_scale
from lte.published import PUBLISHED_CKPT, UNCHECKED, published_records
from lte.results import RESULT_KEYS, method_label, read_results, results_csv
from lte.scales import format_scale
from lte.wandb_eval import log_comparison

#: Suffix of published rows' labels.
PAPER_TAG = " (paper)"


def record_label(rec: dict[str, Any]) -> str:
    """A record's method label (:func:`lte.results.method_label`), ``... (paper)`` for published rows."""
    base = method_label(rec["model"], rec["encoder"])
    return base + PAPER_TAG if rec["ckpt"] == PUBLISHED_CKPT else base


def label_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``records`` with a ``method`` key; names shared by several checkpoints get the stem.

    The stem (or, if stems collide too, the full path) keeps two runs of the same architecture
    apart, e.g. ``rdn-lte [epoch-1000]`` next to ``rdn-lte [official]``.
    """
    ckpts: dict[str, set[str]] = defaultdict(set)
    for rec in records:
        ckpts[record_label(rec)].add(str(rec["ckpt"]))
    out = []
    for rec in records:
        label = record_label(rec)
        if len(ckpts[label]) > 1:
            stems = [Path(c).stem for c in ckpts[label]]
            ckpt = str(rec["ckpt"])
            tag = Path(ckpt).stem if len(set(stems)) == len(stems) else ckpt
            label = f"{label} [{tag}]"
        out.append({**rec, "method": label})
    return out


def _column_names(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """Test-set names for table headers; a set scored under two protocols shows the protocol."""
    protocols: dict[str, set[str]] = defaultdict(set)
    for rec in records:
        protocols[rec["testset"]].add(rec["protocol"])
    return {
        (t, p): t if len(protocols[t]) == 1 else f"{t} [{p}]"
        for t, ps in protocols.items()
        for p in ps
    }


def _methods_in_order(records: Sequence[dict[str, Any]]) -> list[str]:
    """Published rows first (the reference), then measured methods in the order they appear."""
    seen: dict[str, None] = {}
    for rec in sorted(records, key=lambda r: r["ckpt"] != PUBLISHED_CKPT):
        seen.setdefault(rec["method"], None)
    return list(seen)


#: Shown where a fixed-scale model has no result because it makes only its own scale.
NOT_ITS_SCALE = "—"


def build_grid(
    records: Sequence[dict[str, Any]],
) -> dict[tuple[str, str], dict[str, dict[float, float]]]:
    """``{(testset, protocol): {method: {scale: psnr}}}`` from labelled records.

    Raises:
        UserError: two records give different PSNRs for the same method, test set and scale.
    """
    grid: dict[tuple[str, str], dict[str, dict[float, float]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for rec in records:
        if rec["psnr"] is None:
            continue
        cell = grid[(rec["testset"], rec["protocol"])][rec["method"]]
        scale = float(rec["scale"])
        if scale in cell and abs(cell[scale] - rec["psnr"]) > 1e-9:
            raise UserError(
                f"two results for {rec['method']} on {rec['testset']} x{format_scale(scale)} "
                f"({cell[scale]:.4f} and {rec['psnr']:.4f}): pass each checkpoint's results once"
            )
        cell[scale] = float(rec["psnr"])
    return grid


@dataclass(frozen=True)
class Panel:
    """One test set under one protocol as the comparison shows it: its header name and each
    method's PSNR by scale, methods in table order (those without a cell here left out)."""

    name: str
    protocol: str
    rows: dict[str, dict[float, float]]


def panels(records: Sequence[dict[str, Any]]) -> list[Panel]:
    """The labelled records as :class:`Panel` s, in the order of the tables and the plot."""
    grid = build_grid(records)
    names = _column_names(records)
    methods = _methods_in_order(records)
    return [
        Panel(names[key], key[1], {m: grid[key][m] for m in methods if grid[key].get(m)})
        for key in sorted(grid, key=lambda k: names[k])
    ]


def markdown_tables(records: Sequence[dict[str, Any]], baseline: str | None = None) -> str:
    """One markdown table per test set: methods × scales, best PSNR per column in bold.

    With ``baseline`` each other cell shows its difference to the baseline method, ``(+0.05)``.

    Raises:
        UserError: ``baseline`` names no method in the records.
    """
    methods = _methods_in_order(records)
    if baseline is not None and baseline not in methods:
        raise UserError(
            f"--baseline {quote(baseline)} is not a method here: choose one of {methods}"
        )
    grid = build_grid(records)
    names = _column_names(records)
    native = {r["method"]: record_native_scale(r) for r in records}
    marked = False
    lines = ["# PSNR (dB)", ""]
    if baseline is not None:
        lines += [f"Differences in parentheses are against `{baseline}`.", ""]
    for key in sorted(grid, key=lambda k: names[k]):
        table = grid[key]
        scales = sorted({s for row in table.values() for s in row})
        best = {s: max(row[s] for row in table.values() if s in row) for s in scales}
        base_row = table.get(baseline, {}) if baseline else {}
        lines.append(f"## {names[key]} ({key[1]} protocol)")
        lines.append("")
        lines.append("| method | " + " | ".join(f"x{format_scale(s)}" for s in scales) + " |")
        lines.append("|---|" + "---:|" * len(scales))
        for method in methods:
            if method not in table:
                continue
            row = table[method]
            cells = []
            for s in scales:
                if s not in row and not is_native(native[method], s):
                    cells.append(NOT_ITS_SCALE)
                    marked = True
                    continue
                if s not in row:
                    cells.append("–")
                    continue
                text = f"{row[s]:.2f}"
                if math.isclose(row[s], best[s], abs_tol=5e-3):
                    text = f"**{text}**"
                if baseline and method != baseline and s in base_row:
                    text += f" ({row[s] - base_row[s]:+.2f})"
                cells.append(text)
            shown = method
            if method.endswith(PAPER_TAG) and _unchecked(method):
                shown += " †"
            lines.append(f"| {shown} | " + " | ".join(cells) + " |")
        lines.append("")
    if marked:
        lines.append(
            f"{NOT_ITS_SCALE} fixed-scale model (one network per scale): scored only at its own scale."
        )
        lines.append("")
    if any(_unchecked(m) for m in methods if m.endswith(PAPER_TAG)):
        lines.append("† not yet checked against the paper (SPEC.md).")
        lines.append("")
    return "\n".join(lines)


def _unchecked(method: str) -> bool:
    base = method.removesuffix(PAPER_TAG)
    return any(method_label(model, enc) == base for enc, model in UNCHECKED)


def plot_psnr(records: Sequence[dict[str, Any]], path: Path) -> None:
    """PSNR against scale, one line per method and one panel per test set, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = build_grid(records)
    names = _column_names(records)
    keys = sorted(grid, key=lambda k: names[k])
    methods = _methods_in_order(records)
    n = max(len(keys), 1)
    # One colour per method across all panels, and one legend for the whole figure.
    cmap = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    colour = {m: cmap(i % cmap.N) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.8), squeeze=False)
    handles: dict[str, Any] = {}
    for ax, key in zip(axes[0], keys, strict=False):
        for method in methods:
            row = grid[key].get(method)
            if not row:
                continue
            scales = sorted(row)
            style = "--" if method.endswith(PAPER_TAG) else "-"
            (line,) = ax.plot(
                scales, [row[s] for s in scales], style, marker="o", ms=3, color=colour[method]
            )
            handles.setdefault(method, line)
        ax.set_title(f"{names[key]} ({key[1]})")
        ax.set_xlabel("scale")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.3)
    labels = [m for m in methods if m in handles]
    ncol = min(len(labels), 4) or 1
    fig.legend([handles[m] for m in labels], labels, loc="lower center", ncol=ncol, fontsize=8)
    rows_of_legend = math.ceil(len(labels) / ncol)
    fig.tight_layout(rect=(0, min(0.08 * rows_of_legend, 0.5), 1, 1))
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)


def gather(
    results: Sequence[str | os.PathLike[str]], *, published: bool = False
) -> list[dict[str, Any]]:
    """Read results files; with ``published`` add the paper's numbers for the measured cells."""
    records: list[dict[str, Any]] = []
    for path in results:
        records.extend(read_results(path))
    if published:
        # Only the (test set, scale) cells that were measured, or every published number if none.
        cells = {(r["testset"], float(r["scale"])) for r in records}
        paper = published_records()
        if cells:
            paper = [r for r in paper if (r["testset"], float(r["scale"])) in cells]
        records.extend(paper)
    if not records:
        raise UserError("no results to compare: pass results files (or --published)")
    return label_records(records)


#: The files :func:`compare` writes into ``--out``, by kind.
OUTPUTS = {"markdown": "comparison.md", "plot": "comparison.png", "csv": "comparison.csv"}


def check_outputs(out: str | os.PathLike[str], *, overwrite: bool = False) -> dict[str, Path]:
    """The paths :func:`compare` will write, each checked now (:func:`lte.files.check_output`).

    ``out`` is a folder, or will be made under the nearest existing one; an existing output is
    replaced only with ``overwrite``.

    Raises:
        UserError: ``out`` is not a folder, or an output may not be written.
    """
    out_dir = Path(out)
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        try:
            mode = os.stat(out_dir).st_mode
            kind = "a file" if stat.S_ISREG(mode) else file_kind(mode)
        except OSError:
            kind = "a symbolic link to nothing"
        raise UserError(
            f"--out {quote(out_dir)} is {kind}, not a folder: give a folder for "
            f"{', '.join(OUTPUTS.values())}"
        )
    paths = {kind: out_dir / name for kind, name in OUTPUTS.items()}
    for path in paths.values():
        check_output(path, what="output", overwrite=overwrite, make_folder=True)
    return paths


def compare(
    results: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    baseline: str | None = None,
    published: bool = False,
    use_wandb: bool = False,
    wandb_project: str = "lte",
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write ``comparison.md``, ``comparison.png`` and ``comparison.csv`` into ``out``.

    Everything is checked before ``out`` is created: the outputs (replaced only with
    ``overwrite``), the results files and ``baseline``. Returns the written paths by kind
    (``markdown``, ``plot``, ``csv``, and ``wandb``: the local folder of the W&B run when
    ``use_wandb``, :func:`lte.wandb_eval.log_comparison`).
    """
    paths = check_outputs(out, overwrite=overwrite)
    records = gather(results, published=published)
    md = markdown_tables(records, baseline)  # an unknown baseline is refused here
    out_dir = Path(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(err, out_dir) or err from None
    atomic_write_text(paths["markdown"], md)
    atomic_write_text(paths["csv"], results_csv(records, ["method", *RESULT_KEYS]))
    plot_psnr(records, paths["plot"])
    if use_wandb:
        shown = panels(records)
        paths["wandb"] = log_comparison(
            records,
            shown,
            md,
            paths,
            out_dir,
            project=wandb_project,
            config={
                "results": [str(Path(p).resolve()) for p in results],
                "baseline": baseline,
                "published": published,
                "methods": _methods_in_order(records),
                "testsets": sorted({p.name for p in shown}),
                "scales": sorted({float(r["scale"]) for r in records}),
            },
        )
    return paths
