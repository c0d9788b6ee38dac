"""Compare methods across test sets and scales from ``lte.test`` results files: markdown, PNG, W&B.

    python -m lte.compare results/*.json --out compare/ --published --baseline rdn-liif

The command line is :mod:`lte.cli.compare`; ``python -m lte.compare`` and ``lte-compare`` reach it
through :func:`main` here. Importing this module loads neither torch nor Hydra (only
:mod:`lte.results`; matplotlib and W&B when a plot or a run is made), so comparing is instant.

Each results record (see :mod:`lte.results`) becomes one cell of a method × (test set, scale) grid.
A method is ``<encoder>-<model>`` (``rdn-lte``); when two checkpoints share that name, the checkpoint's
file stem is appended so neither hides the other. Published numbers (:mod:`lte.published`) are
labelled ``... (paper)``. Writes ``comparison.md`` (one table per test set, best PSNR per column in
bold, deltas against ``--baseline``), ``comparison.png`` (PSNR against scale, one line per method,
one panel per test set) and ``comparison.csv`` (the merged records with their method labels).

Nothing is written until everything is known to work: the three outputs are checked first (an
existing one is replaced only with ``--overwrite``; see :mod:`lte.files`), then every results file
is read and validated (:func:`lte.results.read_results`: finite, plausible numbers), then the
baseline is looked up; only then is ``--out`` created.
"""

from __future__ import annotations

import html
import math
import os
import re
import shutil
import stat
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lte.atomic import atomic_path, atomic_write_text, file_kind, write_error
from lte.errors import UserError, quote
from lte.files import check_output
from lte.published import PUBLISHED_CKPT, UNCHECKED, published_records
from lte.results import RESULT_KEYS, read_results, results_csv
from lte.scales import format_scale

#: Suffix of published rows' labels.
PAPER_TAG = " (paper)"


def method_label(rec: dict[str, Any]) -> str:
    """``<encoder>-<model>``, ``bicubic`` for the bicubic row, ``... (paper)`` for published rows."""
    base = "bicubic" if rec["model"] == "bicubic" else f"{rec['encoder']}-{rec['model']}"
    return base + PAPER_TAG if rec["ckpt"] == PUBLISHED_CKPT else base


def label_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``records`` with a ``method`` key; names shared by several checkpoints get the stem.

    The stem (or, if stems collide too, the full path) keeps two runs of the same architecture
    apart, e.g. ``rdn-lte [epoch-1000]`` next to ``rdn-lte [official]``.
    """
    ckpts: dict[str, set[str]] = defaultdict(set)
    for rec in records:
        ckpts[method_label(rec)].add(str(rec["ckpt"]))
    out = []
    for rec in records:
        label = method_label(rec)
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
_FIXED_ENCODER = re.compile(r"_x(\d+)$")


def native_scale(rec: dict[str, Any]) -> int | None:
    """The native scale of a fixed-scale model's record, else ``None``.

    Read from its labels (``lte.models.identity``): model ``nearest``, encoder ``<label>_x<s>``.
    Parsed here so that comparing never imports torch.
    """
    found = _FIXED_ENCODER.search(str(rec.get("encoder", "")))
    return int(found.group(1)) if rec.get("model") == "nearest" and found else None


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
    fixed = {r["method"]: n for r in records if (n := native_scale(r)) is not None}
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
                if s not in row and method in fixed and s != fixed[method]:
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
    return any(f"{enc}-{model}" == base for enc, model in UNCHECKED)


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
    ``use_wandb``).
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
        paths["wandb"] = log_comparison_to_wandb(
            records,
            md,
            paths,
            out_dir,
            project=wandb_project,
            config={
                "results": [str(Path(p).resolve()) for p in results],
                "baseline": baseline,
                "published": published,
            },
        )
    return paths


def comparison_name(records: Sequence[dict[str, Any]]) -> str:
    """``compare <encoders>: <model> vs <model> ...``, e.g. ``compare rdn: lte vs liif vs bicubic``.

    Measured rows only (published ones are the reference); the bicubic row has no encoder.
    """
    measured = [r for r in records if r["ckpt"] != PUBLISHED_CKPT] or list(records)
    encoders = [e for e in dict.fromkeys(r["encoder"] for r in measured) if e != "none"]
    models = list(dict.fromkeys(r["model"] for r in measured))
    return f"compare {'+'.join(encoders) or 'bicubic'}: {' vs '.join(models)}"


def _key(text: str) -> str:
    """A W&B key part: letters, digits, ``_ . -``; anything else becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def log_comparison_to_wandb(
    records: Sequence[dict[str, Any]],
    markdown: str,
    paths: dict[str, Path],
    out_dir: Path,
    *,
    project: str,
    config: dict[str, Any] | None = None,
) -> Path:
    """One W&B run holding the comparison, drawn by W&B itself; returns the run's local folder.

    Logs ``compare/table`` (every record with its method label), one native line chart per test
    set, ``compare/<set>/psnr_vs_scale`` (``wandb.plot.line_series``: one series per method, PSNR
    against scale, missing cells simply absent), the markdown tables (``compare/markdown``, and
    ``comparison.md`` among the run's files) and the matplotlib figure. The run is named after
    what it compares (:func:`comparison_name`), in group ``compare``, tagged with the encoders and
    models, and its config lists the results files, methods, test sets and scales. Offline under
    ``out_dir`` without ``WANDB_API_KEY``.
    """
    import wandb

    mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
    cols = ["method", *RESULT_KEYS]
    grid = build_grid(records)
    names = _column_names(records)
    methods = _methods_in_order(records)
    measured = [r for r in records if r["ckpt"] != PUBLISHED_CKPT]
    models = [r["model"] for r in measured]
    run = wandb.init(
        project=project,
        job_type="compare",
        name=comparison_name(records),
        group="compare",
        tags=[
            t[:64]
            for t in dict.fromkeys(["compare", *(r["encoder"] for r in measured), *models])
            if t != "none"  # the bicubic row's encoder
        ],
        mode=mode,
        dir=str(out_dir),
        # Offline, W&B's own start/end notices repeat the run folder that compare prints.
        settings=wandb.Settings(silent=True) if mode != "online" else None,
        config={
            **(config or {}),
            "methods": methods,
            "testsets": sorted({names[k] for k in grid}),
            "scales": sorted({float(r["scale"]) for r in records}),
        },
    )
    try:
        table = wandb.Table(columns=cols, data=[[rec.get(c) for c in cols] for rec in records])
        logged: dict[str, Any] = {"compare/table": table}
        for key in sorted(grid, key=lambda k: names[k]):
            rows = [(m, grid[key][m]) for m in methods if grid[key].get(m)]
            logged[f"compare/{_key(names[key])}/psnr_vs_scale"] = wandb.plot.line_series(
                xs=[sorted(row) for _, row in rows],
                ys=[[row[s] for s in sorted(row)] for _, row in rows],
                keys=[m for m, _ in rows],
                title=f"PSNR (dB) against scale: {names[key]} ({key[1]} protocol)",
                xname="scale",
            )
        logged["compare/markdown"] = wandb.Html(f"<pre>{html.escape(markdown)}</pre>")
        logged["compare/psnr_vs_scale_png"] = wandb.Image(str(paths["plot"]))
        run.log(logged)
        # Files copied into the run's files folder are uploaded with it (run.save would symlink
        # them and warn about it on every run).
        for key in ("markdown", "csv"):
            shutil.copy2(paths[key], Path(run.dir) / Path(paths[key]).name)
        folder = Path(run.dir).parent
    finally:
        run.finish()
    return folder


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m lte.compare`` / ``lte-compare``: the command line of :mod:`lte.cli.compare`."""
    from lte.cli.compare import main as cli_main

    cli_main(argv)


if __name__ == "__main__":
    main()
