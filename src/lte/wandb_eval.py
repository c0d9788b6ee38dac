"""W&B runs of evaluation: one per ``lte.test`` call, one per ``lte.compare --wandb``, drawn by W&B.

``lte.test`` logs ``scale`` as the step metric of ``test/<set>/*``, so the W&B UI plots PSNR and
SSIM against scale for any selection of runs; the run is named, grouped and tagged from what was
measured (:func:`wandb_identity`) and linked to the W&B run that trained the checkpoint
(``LoadedModel.training_run``, read with the checkpoint). ``lte.compare`` logs its table, one native line chart per test set and the
markdown (:func:`log_comparison`). Without ``WANDB_API_KEY`` (and no explicit mode) runs are
offline in a local folder: upload later with ``wandb sync``. See ``docs/wandb.md``.

Importing this module loads neither torch, Hydra nor wandb (each is imported where a run needs
it), so ``lte.compare`` stays instant.
"""

from __future__ import annotations

import html
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lte.errors import UserError
from lte.published import PUBLISHED_CKPT
from lte.results import (
    BICUBIC_MODEL,
    NO_ENCODER,
    RESULT_KEYS,
    ResultRecord,
    format_scale,
    scale_value,
)

if TYPE_CHECKING:
    from lte.comparison import Panel

#: The ``logger.wandb`` keys a test run takes from the training logger's config.
SETTINGS_KEYS = ("project", "entity", "name", "mode", "save_dir", "group", "tags")


def _mode(settings: Mapping[str, Any]) -> str:
    """The run's mode: as configured, else online with ``WANDB_API_KEY`` and offline without."""
    return settings.get("mode") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")


def wandb_settings(logger: Any) -> dict[str, Any] | None:
    """The W&B settings an ``lte.test`` ``logger`` config asks for, or ``None`` for no W&B run.

    ``logger=wandb`` selects ``conf/logger/wandb.yaml``, the training logger's config, whose node is
    ``logger.wandb``: its ``project``, ``entity``, ``name``, ``mode``, ``save_dir``, ``group`` and
    ``tags`` are used, nothing is instantiated. Other loggers (``csv``, ``none``) have no such node
    and add nothing: the results CSV is always written. A plain string works too (``wandb``).

    Raises:
        UserError: a string that names no logger.
    """
    if logger is None:
        return None
    if isinstance(logger, str):  # a plain value, for configs without the logger group
        if logger.lower() == "wandb":
            return {}
        if logger.lower() in ("none", "null", "csv", ""):
            return None
        raise UserError(
            f"logger={logger} is unknown for lte.test: use logger=wandb or leave it unset"
        )
    node = logger.get("wandb") if isinstance(logger, Mapping) else None
    if not isinstance(node, Mapping):
        return None
    return {k: node.get(k) for k in SETTINGS_KEYS if node.get(k) is not None}


# --- lte.test ------------------------------------------------------------------------------------


def wandb_identity(
    records: Sequence[ResultRecord], train: Mapping[str, str], settings: Mapping[str, Any]
) -> dict[str, Any]:
    """Name, group and tags of a test run, from what was measured (never from config file names).

    Name ``test-<method>-<sets>`` (``test-rdn-lte-set5``, ``test-bicubic-set5``), group the method
    (so runs of one method sit together and the UI can average them), tags ``test``, the model,
    the encoder, each test set and ``train-<run id>``. The ``logger.wandb`` node's own
    ``name``/``group``/``tags`` win (tags are added).
    """
    first = records[0]
    sets = list(dict.fromkeys(r.testset for r in records))
    method = first.method
    name = f"test-{method}-{'+'.join(sets)}"
    tags = ["test", first.model, first.encoder, *sets]
    if train:
        tags.append(f"train-{train['id']}")
    tags = [t[:64] for t in dict.fromkeys([*tags, *(settings.get("tags") or [])])]
    return {
        "name": settings.get("name") or name,
        "group": settings.get("group") or method,
        "tags": tags,
        "method": method,
    }


def log_test_run(
    config: dict[str, Any],
    records: Sequence[ResultRecord],
    run_dir: Path,
    settings: Mapping[str, Any],
    *,
    ckpt_source: str = "",
    train: Mapping[str, str] | None = None,
) -> Path:
    """One W&B run per ``lte.test`` call; returns its local folder.

    History: one row per (test set, scale) in increasing scale, ``{"scale": s,
    "test/<set>/psnr": ..., "test/<set>/ssim": ...}``, with ``scale`` declared as the step metric
    of ``test/<set>/*`` (``define_metric``). Also a Table ``test/results`` (the results file's
    rows) and summaries ``test/<set>/psnr_x<s>`` (runs-table columns). Config: ``config`` (the
    run's resolved options) plus ``method``, ``model``, ``encoder``, ``ckpt`` (absolute),
    ``train_run_id`` / ``train_run_path`` (``train``: the W&B run the checkpoint records,
    ``LoadedModel.training_run.to_dict()``) and
    ``protocols``. The run lives in ``settings["save_dir"]``, else ``run_dir``.
    """
    import wandb

    mode = _mode(settings)
    first = records[0]
    baseline = first.model == BICUBIC_MODEL
    train = dict(train or {})
    ident = wandb_identity(records, train, settings)
    sets = list(dict.fromkeys(r.testset for r in records))
    config = {
        **config,
        "method": ident["method"],
        "model": first.model,
        "encoder": first.encoder,
        "ckpt": first.ckpt if baseline else str(Path(first.ckpt).resolve()),
        "ckpt_source": ckpt_source,
        "train_run_id": train.get("id"),
        "train_run_path": train.get("path"),
        "testsets": sets,
        "protocols": {r.testset: r.protocol for r in records},
        "scales": sorted({scale_value(r.scale) for r in records}),
    }
    notes = f"lte.test of {ident['method']}"
    if not baseline:
        notes += f", checkpoint {config['ckpt']}"
    if train:
        notes += f", trained in W&B run {train['path']}"
    save_dir = Path(str(settings.get("save_dir") or run_dir))
    save_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=settings.get("project") or "lte",
        entity=settings.get("entity"),
        name=ident["name"],
        group=ident["group"],
        tags=ident["tags"],
        notes=notes,
        job_type="test",
        mode=mode,
        dir=str(save_dir),
        config=config,
        # Offline, W&B's own start/end notices repeat what the "W&B run:" line says.
        settings=wandb.Settings(silent=True) if mode != "online" else None,
    )
    try:
        run.define_metric("scale")
        for t in sets:
            run.define_metric(f"test/{t}/*", step_metric="scale")
        for t in sets:
            for r in sorted((r for r in records if r.testset == t), key=lambda r: r.scale):
                row: dict[str, Any] = {"scale": scale_value(r.scale), f"test/{t}/psnr": r.psnr}
                if r.ssim is not None:
                    row[f"test/{t}/ssim"] = r.ssim
                run.log(row)
        rows = [r.to_dict() for r in records]  # one method: the same keys in every row
        cols = list(rows[0])
        run.log({"test/results": wandb.Table(columns=cols, data=[list(r.values()) for r in rows])})
        for r in records:
            key = f"test/{r.testset}"
            run.summary[f"{key}/psnr_x{format_scale(r.scale)}"] = r.psnr
            if r.ssim is not None:
                run.summary[f"{key}/ssim_x{format_scale(r.scale)}"] = r.ssim
        folder = Path(run.dir).parent
    finally:
        run.finish()
    return folder


# --- lte.compare ---------------------------------------------------------------------------------


def comparison_name(records: Sequence[Mapping[str, Any]]) -> str:
    """``compare <encoders>: <model> vs <model> ...``, e.g. ``compare rdn: lte vs liif vs bicubic``.

    Measured rows only (published ones are the reference); the bicubic row has no encoder.
    """
    measured = [r for r in records if r["ckpt"] != PUBLISHED_CKPT] or list(records)
    encoders = [e for e in dict.fromkeys(r["encoder"] for r in measured) if e != NO_ENCODER]
    models = list(dict.fromkeys(r["model"] for r in measured))
    return f"compare {'+'.join(encoders) or 'bicubic'}: {' vs '.join(models)}"


def _key(text: str) -> str:
    """A W&B key part: letters, digits, ``_ . -``; anything else becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def log_comparison(
    records: Sequence[Mapping[str, Any]],
    panels: Sequence[Panel],
    markdown: str,
    paths: Mapping[str, Path],
    out_dir: Path,
    *,
    project: str,
    config: Mapping[str, Any],
) -> Path:
    """One W&B run holding a comparison (:func:`lte.comparison.compare`); returns its local folder.

    Logs ``compare/table`` (every labelled record), one native line chart per panel (test set and
    protocol), ``compare/<set>/psnr_vs_scale`` (``wandb.plot.line_series``: one series per method,
    PSNR against scale, missing cells simply absent), the markdown tables (``compare/markdown``, and
    ``comparison.md`` among the run's files) and the PNG. The run is named after what it compares
    (:func:`comparison_name`), in group ``compare``, tagged with the encoders and models; its
    config is ``config``. Offline under ``out_dir`` without ``WANDB_API_KEY``.
    """
    import wandb

    mode = _mode({})
    cols = ["method", *RESULT_KEYS]
    measured = [r for r in records if r["ckpt"] != PUBLISHED_CKPT]
    tags = ["compare", *(r["encoder"] for r in measured), *(r["model"] for r in measured)]
    run = wandb.init(
        project=project,
        job_type="compare",
        name=comparison_name(records),
        group="compare",
        tags=[t[:64] for t in dict.fromkeys(tags) if t != NO_ENCODER],
        mode=mode,
        dir=str(out_dir),
        # Offline, W&B's own start/end notices repeat the run folder that compare prints.
        settings=wandb.Settings(silent=True) if mode != "online" else None,
        config=dict(config),
    )
    try:
        table = wandb.Table(columns=cols, data=[[rec.get(c) for c in cols] for rec in records])
        logged: dict[str, Any] = {"compare/table": table}
        for panel in panels:
            rows = list(panel.rows.items())
            logged[f"compare/{_key(panel.name)}/psnr_vs_scale"] = wandb.plot.line_series(
                xs=[sorted(row) for _, row in rows],
                ys=[[row[s] for s in sorted(row)] for _, row in rows],
                keys=[m for m, _ in rows],
                title=f"PSNR (dB) against scale: {panel.name} ({panel.protocol} protocol)",
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
