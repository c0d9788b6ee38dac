"""``python -m lte.test`` / ``lte-test``: score a checkpoint on test sets at many scales, as the papers do.

Examples:
    python -m lte.test ckpt=rdn-lte.pth testset=set5 scales=[2,3,4,6,8,12]
    python -m lte.test ckpt=rdn-lte.pth 'testsets=[set5,set14,b100,urban100]' results_file=res/rdn-lte.json
    python -m lte.test ckpt=last.ckpt testset=folder testset.hr_dir=my_photos testset.protocol=div2k
    python -m lte.test -m ckpt=a.pth,b.pth testset=set5,div2k results_file=res/all.json   # a sweep

Every option is checked before the checkpoint is loaded or an image is scored: the results file
(folder, suffix, an existing file's schema), the scales, ``eval.*``, the device and the test sets'
folders. The protocol lives in :mod:`lte.evaluate`, test sets in :mod:`lte.testsets`, results files
in :mod:`lte.results`; this module turns the config into those objects, prints the table, merges
the results file and, with ``logger=wandb``, logs to W&B.
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

from lte.devices import resolve_device
from lte.errors import UserError, as_user_error, exit_on_user_error
from lte.evaluate import EvalSettings, evaluate_testset
from lte.results import ResultRecord, check_results_file, format_scale, merge_results
from lte.testsets import TestSet

log = logging.getLogger("lte.test")


def build_testset(node: DictConfig, label: str) -> TestSet:
    """Instantiate one ``conf/testset/*.yaml`` node (after overrides); errors name ``label``.

    Raises:
        UserError: the node has no ``_target_``, an unknown key, or a bad value.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    if "_target_" not in node:
        raise UserError(f"{label} has no _target_: use a preset from conf/testset/ (e.g. set5)")
    try:
        testset = instantiate(node)
    except InstantiationException as err:
        user = as_user_error(err)
        if user is not None:
            raise user from None
        cause = err.__cause__ or err
        text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise UserError(f"{label}: {text}") from None
    if not isinstance(testset, TestSet):
        raise UserError(f"{label}._target_ must be a class of lte.testsets, not {node._target_}")
    return testset


def testsets_from_config(cfg: DictConfig) -> list[TestSet]:
    """The test sets of a run: every preset in ``testsets``, else the one ``testset``.

    Raises:
        UserError: neither is given, a name is unknown, or a preset is misconfigured.
    """
    from lte.models.build import load_group

    names = cfg.get("testsets")
    if names:
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, Sequence | ListConfig):
            raise UserError(f"testsets={names} must be a list, e.g. 'testsets=[set5,set14]'")
        out = []
        for name in names:
            try:
                node = load_group("testset", str(name))
            except UserError as err:
                raise UserError(f"testsets: {err}") from None
            # Presets refer to ${paths.data_dir}: resolve them against this run's paths.
            root = OmegaConf.create({"paths": {"data_dir": cfg.paths.data_dir}, "testset": node})
            out.append(build_testset(root.testset, f"testsets[{name}]"))
        return out
    if cfg.get("testset") is None:
        raise UserError(
            "no test set chosen: pass testset=set5 (set14, b100, urban100, div2k, sample, or "
            "folder with testset.hr_dir=DIR), or 'testsets=[set5,set14]'"
        )
    return [build_testset(cfg.testset, "testset")]


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
            run.summary[f"{key}/psnr_x{format_scale(r.scale)}"] = r.psnr
            if r.ssim is not None:
                run.summary[f"{key}/ssim_x{format_scale(r.scale)}"] = r.ssim
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
    """Everything ``python -m lte.test`` does, given the composed config and the run folder.

    All options are checked first, so a mistake costs seconds, never a finished evaluation.
    """
    from lte.checkpoint import load_checkpoint

    if OmegaConf.is_missing(cfg, "ckpt") or not cfg.ckpt:
        raise UserError("ckpt is not set: pass ckpt=PATH (an official .pth or an lte checkpoint)")
    settings = EvalSettings(
        cfg.scales, cfg.eval.chunk, cfg.eval.get("tile", 0), cfg.eval.get("fast", False)
    )
    if cfg.results_file:
        results_file = check_results_file(str(cfg.results_file))
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        results_file = check_results_file(run_dir / "results.json")
    wandb_cfg = wandb_settings(cfg.get("logger"))
    device = resolve_device(str(cfg.device), "device=")
    testsets = testsets_from_config(cfg)
    for testset in testsets:  # a missing data set fails before the (slow) checkpoint load
        testset.hr_files()
    loaded = load_checkpoint(cfg.ckpt)  # on the CPU; evaluate_testset moves it to `device`
    log.info("%s checkpoint '%s' on %s", loaded.source, loaded.path, device)
    records: list[ResultRecord] = []
    for testset in testsets:
        recs = evaluate_testset(loaded.model, testset, settings, device=device, ckpt=str(cfg.ckpt))
        for r in recs:
            ssim = "-" if r.ssim is None else f"{r.ssim:.4f}"
            log.info(
                "%s-%s %s x%s: PSNR %.4f dB, SSIM %s (%d images)",
                r.encoder,
                r.model,
                r.testset,
                format_scale(r.scale),
                r.psnr,
                ssim,
                r.images,
            )
        records.extend(recs)
        # Merged after every test set, so a long sweep keeps what it has measured.
        merge_results(recs, results_file)
    print(format_table(records))
    print(f"results: {results_file} (+ {results_file.with_suffix('.csv').name})")
    if wandb_cfg is not None:
        log_to_wandb(cfg, records, run_dir, wandb_cfg)
    return records


@hydra.main(version_base=None, config_path="../conf", config_name="test")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    """Hydra entry point (``python -m lte.test`` / ``lte-test``)."""
    from hydra.core.hydra_config import HydraConfig

    run_test(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
