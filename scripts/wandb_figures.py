"""Draw ``docs/wandb.md``'s figures from the offline W&B runs that ``make demo`` leaves in a run folder.

    python scripts/wandb_figures.py runs/demo --out docs/figures

Reads every offline run under the folder back from its own files (:mod:`lte.wandb_offline`: the
``run-<id>.wandb`` record log and the tables W&B wrote), and draws with matplotlib what the W&B UI
shows for those runs:

- ``wandb_training.png``: the training run's ``train/loss`` and ``val/psnr*`` against the step;
- ``wandb_psnr_vs_scale.png``: ``test/<set>/psnr`` and ``ssim`` of every test run against
  ``scale`` (the step metric ``lte.test`` declares), one line per run, as in the project workspace;
- ``wandb_compare.png``: the comparison run's native line chart (one series per method).

Nothing is recomputed: every point is a value the runs logged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from lte.errors import UserError, exit_on_user_error
from lte.wandb_offline import OfflineRun, read_offline_run


def find_runs(root: Path) -> list[OfflineRun]:
    """Every offline run below ``root``, oldest first within each folder."""
    folders = sorted(p for p in root.rglob("offline-run-*") if p.is_dir())
    if not folders:
        raise UserError(
            f"no offline W&B runs under '{root}': run `make demo` (or scripts/demo.py --out DIR) first"
        )
    return [read_offline_run(p) for p in folders]


def _keys(runs: list[OfflineRun], prefix: str, suffix: str = "") -> list[str]:
    keys = {k for r in runs for row in r.history for k in row}
    return sorted(k for k in keys if k.startswith(prefix) and k.endswith(suffix))


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def draw_training(runs: list[OfflineRun], out: Path) -> None:
    """``train/loss`` against ``trainer/global_step`` (W&B's ``_step`` if absent), and ``val/psnr_x<s>``.

    Validation curves are drawn against the step when the run validated more than once; a run that
    validated once (``make demo`` validates at the end) shows its ``val/psnr_x<s>`` against ``s``.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for run in runs:
        step = "trainer/global_step" if _keys([run], "trainer/global_step") else "_step"
        pts = run.series("train/loss", step)
        if pts:
            axes[0].plot(*zip(*pts, strict=True), label=run.name)
        val = {k: run.series(k, step) for k in _keys([run], "val/psnr_x")}
        if any(len(v) > 1 for v in val.values()):
            for key, pts in val.items():
                axes[1].plot(*zip(*pts, strict=True), label=f"{run.name}: {key}")
            axes[1].set_xlabel(step)
        elif val:
            last = sorted((float(k.rsplit("_x", 1)[1]), v[-1][1]) for k, v in val.items() if v)
            at = max(v[-1][0] for v in val.values() if v)
            axes[1].plot(*zip(*last, strict=True), marker="o", label=f"{run.name} (step {at})")
            axes[1].set_xticks([x for x, _ in last])
            axes[1].set_xlabel("scale of val/psnr_x<s> (last validation)")
    axes[0].set_title("train/loss")
    axes[0].set_xlabel("trainer/global_step")
    axes[1].set_title("val/psnr_x<s> (fixed validation patches)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, out / "wandb_training.png")


def draw_test_runs(runs: list[OfflineRun], out: Path) -> None:
    """Every ``test/<set>/psnr`` and ``/ssim`` against ``scale``: one line per test run."""
    psnr_keys = _keys(runs, "test/", "/psnr")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("psnr", "ssim"), strict=True):
        for run in runs:
            for key in psnr_keys:
                pts = run.series(key.removesuffix("psnr") + metric, "scale")
                if pts:
                    label = run.name if len(psnr_keys) == 1 else f"{run.name} ({key})"
                    ax.plot(*zip(*pts, strict=True), marker="o", ms=4, label=label)
        ax.set_xticks(sorted({x for r in runs for k in psnr_keys for x, _ in r.series(k, "scale")}))
        sets = ", ".join(k.split("/")[1] for k in psnr_keys)
        ax.set_title(f"test/<set>/{metric} ({sets})")
        ax.set_xlabel("scale (step metric)")
        ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, out / "wandb_psnr_vs_scale.png")


def draw_compare(run: OfflineRun, out: Path) -> None:
    """The comparison run's ``wandb.plot.line_series`` charts, from their tables."""
    charts = sorted(run.charts().items())
    fig, axes = plt.subplots(1, len(charts), figsize=(5 * len(charts), 3.6), squeeze=False)
    for ax, (key, chart) in zip(axes[0], charts, strict=True):
        data = run.table(f"{key}_table")["data"]
        series: dict[str, list[tuple[float, float]]] = {}
        for x, method, y in data:
            series.setdefault(method, []).append((x, y))
        for method, pts in series.items():
            ax.plot(*zip(*pts, strict=True), marker="o", ms=4, label=method)
        ax.set_xticks(sorted({x for x, _, _ in data}))
        ax.set_title(chart.get("stringSettings", {}).get("title", key), fontsize=9)
        ax.set_xlabel("scale")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"W&B run '{run.name}'", fontsize=9)
    _save(fig, out / "wandb_compare.png")


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a finished `make demo` run folder (runs/demo)")
    parser.add_argument("--out", default="docs/figures", help="folder for the PNGs")
    args = parser.parse_args(argv)
    root, out = Path(args.run_dir), Path(args.out)
    if not out.is_dir():
        raise UserError(f"--out {out} is not a folder: create it first")
    runs = find_runs(root)
    by_job: dict[str, list[OfflineRun]] = {}
    for run in runs:
        by_job.setdefault(run.job_type, []).append(run)
    for job in ("train", "test", "compare"):
        if job not in by_job:
            raise UserError(
                f"no '{job}' run under '{root}' (found {sorted(by_job)}): rerun make demo"
            )
    draw_training(by_job["train"], out)
    draw_test_runs(by_job["test"], out)
    draw_compare(by_job["compare"][-1], out)


if __name__ == "__main__":
    sys.exit(main())
