"""``python -m lte.test``: score a checkpoint on test sets at many scales, as the papers do.

Examples:
    python -m lte.test ckpt=rdn-lte.pth testset=set5 scales=[2,3,4,6,8,12]
    python -m lte.test ckpt=rdn-lte.pth 'testsets=[set5,set14,b100,urban100]' results_file=res/rdn-lte.json
    python -m lte.test ckpt=last.ckpt testset=folder testset.root=my_photos testset.protocol=div2k
    python -m lte.test -m ckpt=a.pth,b.pth testset=set5,div2k results_file=res/all.json   # a sweep

The protocol itself lives in :mod:`lte.evaluate`; this module only turns the Hydra config into test
sets, prints the table, writes the results file and, with ``logger=wandb``, logs to W&B.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from lte.errors import UserError, exit_on_user_error
from lte.evaluate import ResultRecord, TestSet, evaluate_testset, write_results
from lte.inference import resolve_device

log = logging.getLogger(__name__)

#: Keys a test-set config may hold (see conf/testset/).
TESTSET_KEYS = ("name", "root", "hr_dir", "lr_dir", "protocol", "download")


def testset_from_node(node: DictConfig, label: str = "testset") -> TestSet:
    """A :class:`TestSet` from one ``conf/testset/*.yaml`` node (after overrides).

    Raises:
        UserError: ``root`` is unset (the ``folder`` preset) or the node has unknown keys.
    """
    unknown = sorted(set(node.keys()) - set(TESTSET_KEYS))  # type: ignore[arg-type]
    if unknown:
        raise UserError(f"{label} has unknown keys {unknown}: valid keys are {list(TESTSET_KEYS)}")
    if OmegaConf.is_missing(node, "root") or node.get("root") in (None, ""):
        raise UserError(f"{label}.root is not set: pass {label}.root=DIR (a folder holding HR/)")
    values: dict[str, Any] = OmegaConf.to_container(node, resolve=True)  # type: ignore[assignment]
    root = Path(str(values["root"]))
    name = values.get("name") or root.resolve().name
    return TestSet(
        name=str(name),
        root=root,
        protocol=str(values.get("protocol") or "benchmark"),
        hr_dir=str(values.get("hr_dir") or "HR"),
        lr_dir=str(values.get("lr_dir") or "LR_bicubic/X{scale}"),
        download=values.get("download"),
    )


def preset_node(cfg: DictConfig, name: str) -> DictConfig:
    """``conf/testset/<name>.yaml`` with its ``${data_dir}`` resolved against this run's config."""
    from lte.models.build import load_group

    node = load_group("testset", name)
    root = OmegaConf.create({"data_dir": cfg.data_dir, "testset": node})
    return root.testset


def testsets_from_config(cfg: DictConfig) -> list[TestSet]:
    """The test sets of a run: every preset in ``testsets``, else the one ``testset``.

    Raises:
        UserError: neither is given.
    """
    names = cfg.get("testsets")
    if names:
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, Sequence | ListConfig):
            raise UserError(f"testsets={names} must be a list, e.g. 'testsets=[set5,set14]'")
        return [testset_from_node(preset_node(cfg, str(n)), f"testsets[{n}]") for n in names]
    if cfg.get("testset") is None:
        raise UserError(
            "no test set chosen: pass testset=set5 (set14, b100, urban100, div2k, or folder with "
            "testset.root=DIR), or 'testsets=[set5,set14]'"
        )
    return [testset_from_node(cfg.testset)]


def parse_scales(value: Any) -> list[float]:
    """``scales`` as a list of floats >= 1 (a single number is accepted too)."""
    items = list(value) if isinstance(value, Sequence | ListConfig) else [value]
    out = []
    for item in items:
        try:
            s = float(item)
        except (TypeError, ValueError):
            raise UserError(
                f"scales: '{item}' is not a number; write e.g. scales=[2,3,4]"
            ) from None
        if not math.isfinite(s) or s < 1:
            raise UserError(f"scales: {item} is not a scale >= 1")
        out.append(s)
    if not out:
        raise UserError("scales is empty: pass e.g. scales=[2,3,4]")
    return out


def _fmt_scale(scale: float) -> str:
    return f"x{int(scale)}" if float(scale).is_integer() else f"x{scale:g}"


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

    header = ["testset", *(_fmt_scale(s) for s in scales)]
    rows = [[t, *(cell(t, s) for s in scales)] for t in sets]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "PSNR (dB) / SSIM\n" + "\n".join(lines)


def wandb_settings(logger: Any) -> dict[str, Any] | None:
    """The W&B settings ``logger`` asks for, or ``None`` when it asks for no W&B run.

    ``logger=wandb`` selects ``conf/logger/wandb.yaml`` (the training logger's config): its
    ``project``, ``entity``, ``name``, ``mode`` and ``save_dir`` are used, nothing is instantiated.
    Other loggers (``csv``, ``none``) add nothing here: the results CSV is always written.
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
    if isinstance(logger, DictConfig):
        for node in logger.values():
            if isinstance(node, DictConfig) and "wandb" in str(node.get("_target_", "")).lower():
                keys = ("project", "entity", "name", "mode", "save_dir", "group", "tags")
                return {k: node.get(k) for k in keys if node.get(k) is not None}
    return None


def log_to_wandb(
    cfg: DictConfig, records: Sequence[ResultRecord], run_dir: Path, settings: dict[str, Any]
) -> None:
    """A W&B run with the results table, ``test/<set>/psnr_x<s>`` summaries and a PSNR-vs-scale plot.

    Without ``WANDB_API_KEY`` (and no explicit mode) the run is offline and lives in
    ``<run dir>/wandb`` (upload later with ``wandb sync``), so no account is ever needed.
    """
    import wandb

    mode = settings.get("mode") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    first = records[0]
    run = wandb.init(
        project=settings.get("project") or "lte",
        entity=settings.get("entity"),
        name=settings.get("name") or f"test-{first.encoder}-{first.model}",
        group=settings.get("group"),
        tags=list(settings.get("tags") or []) or None,
        job_type="test",
        mode=mode,
        dir=str(settings.get("save_dir") or run_dir),
        config=OmegaConf.to_container(cfg, resolve=True),  # type: ignore[arg-type]
    )
    try:
        rows = [r.to_dict() for r in records]
        cols = list(rows[0])
        run.log({"test/results": wandb.Table(columns=cols, data=[list(r.values()) for r in rows])})
        for r in records:
            key = f"test/{r.testset}"
            run.summary[f"{key}/psnr_{_fmt_scale(r.scale)}"] = r.psnr
            if r.ssim is not None:
                run.summary[f"{key}/ssim_{_fmt_scale(r.scale)}"] = r.ssim
        sets = list(dict.fromkeys(r.testset for r in records))
        scales = sorted({r.scale for r in records})
        by = {(r.testset, r.scale): r.psnr for r in records}
        plot = wandb.plot.line_series(
            xs=scales,
            ys=[[by.get((t, s), math.nan) for s in scales] for t in sets],
            keys=sets,
            title="PSNR against scale",
            xname="scale",
        )
        run.log({"test/psnr_vs_scale": plot})
    finally:
        run.finish()


def run_test(cfg: DictConfig, run_dir: Path) -> list[ResultRecord]:
    """Everything ``python -m lte.test`` does, given the composed config and the run folder."""
    from lte.checkpoint import load_checkpoint

    if OmegaConf.is_missing(cfg, "ckpt") or not cfg.ckpt:
        raise UserError("ckpt is not set: pass ckpt=PATH (an official .pth or an lte checkpoint)")
    testsets = testsets_from_config(cfg)
    scales = parse_scales(cfg.scales)
    wandb_cfg = wandb_settings(cfg.get("logger"))
    chunk = int(cfg.eval.chunk)
    if chunk <= 0:
        raise UserError(f"eval.chunk={chunk} must be a positive number of queries, e.g. 30000")
    tile = cfg.eval.get("tile", 0)
    if tile is not None and (not isinstance(tile, int) or tile < 0):
        raise UserError(f"eval.tile={tile} must be 0 (whole image), null (automatic) or a size > 0")
    device = resolve_device(str(cfg.device), "device=")
    for testset in testsets:  # a missing data set fails before the (slow) checkpoint load
        testset.hr_images()
    loaded = load_checkpoint(cfg.ckpt, map_location=device)
    log.info(
        "%s-%s (%s checkpoint, scale_max %g) on %s",
        loaded.encoder_name,
        loaded.model_name,
        loaded.source,
        loaded.scale_max,
        device,
    )
    results_file = Path(cfg.results_file) if cfg.results_file else run_dir / "results.json"
    results_file.parent.mkdir(parents=True, exist_ok=True)
    records: list[ResultRecord] = []
    for testset in testsets:
        recs = evaluate_testset(
            loaded.model,
            testset,
            scales,
            scale_max=loaded.scale_max,
            chunk=chunk,
            tile=tile,
            device=device,
            model_name=loaded.model_name,
            encoder_name=loaded.encoder_name,
            ckpt=str(cfg.ckpt),
        )
        for r in recs:
            ssim = "-" if r.ssim is None else f"{r.ssim:.4f}"
            log.info(
                "%s %s: PSNR %.4f dB, SSIM %s (%d images)",
                r.testset,
                _fmt_scale(r.scale),
                r.psnr,
                ssim,
                r.images,
            )
        records.extend(recs)
        # Written after every test set, so a long sweep keeps what it has measured.
        write_results(recs, results_file)
    print(format_table(records))
    print(f"results: {results_file} (+ {results_file.with_suffix('.csv').name})")
    if wandb_cfg is not None:
        log_to_wandb(cfg, records, run_dir, wandb_cfg)
    return records


@hydra.main(version_base=None, config_path="conf", config_name="test")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    """Hydra entry point (``python -m lte.test`` / ``lte-test``)."""
    from hydra.core.hydra_config import HydraConfig

    run_test(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
