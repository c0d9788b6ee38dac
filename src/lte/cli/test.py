"""``python -m lte.test`` / ``lte-test``: score a checkpoint on test sets at many scales, as the papers do.

Examples:
    python -m lte.test ckpt=rdn-lte.pth testset=set5 scales=[2,3,4,6,8,12]
    python -m lte.test ckpt=rdn-lte.pth 'testsets=[set5,set14,b100,urban100]' results_file=res/rdn-lte.json
    python -m lte.test ckpt=last.ckpt testset=folder testset.hr_dir=my_photos testset.protocol=div2k
    python -m lte.test -m ckpt=a.pth,b.pth testset=set5,div2k results_file=res/all.json   # a sweep
    python -m lte.test baseline=bicubic testset=set5 results_file=res/all.json   # the bicubic row

Every option is checked before the checkpoint is loaded or an image is scored: the results file
(folder, suffix, an existing file's schema), the scales, ``eval.*``, the device and the test sets'
folders. The protocol lives in :mod:`lte.evaluate`, test sets in :mod:`lte.testsets`, results files
in :mod:`lte.results`; this module turns the config into those objects, prints the table, merges
the results file and, with ``logger=wandb``, logs to W&B (``scale`` as the step metric, so W&B
draws PSNR against scale across runs itself; see ``docs/wandb.md``). A tqdm bar per test set and
scale shows images done and the ETA when stderr is a terminal (``progress=true/false`` forces it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from lte.devices import resolve_device
from lte.errors import Interrupted, UserError, as_user_error, exit_on_user_error, quote
from lte.evaluate import NO_PROFILE, EvalSettings, StageProfile, evaluate_testset
from lte.results import ResultRecord, check_results_file, merge_results
from lte.scales import format_scale, scale_value
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


def training_run(ckpt: str | os.PathLike[str]) -> dict[str, str]:
    """The W&B run that trained an lte checkpoint: ``{"id", "project", "entity", "path"}`` or ``{}``.

    Training stores its run id (``wandb_run_id``) and its resolved config (``train_config``) in
    every checkpoint. Both are read as plain data (weights-only load, tensors memory-mapped, so
    nothing is read twice): a value that is not a well-formed id or name is ignored.
    """
    import torch

    from lte.training.loggers import valid_run_id

    try:
        obj = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # official files (no run), old formats: nothing to link
        return {}
    if not isinstance(obj, dict) or valid_run_id(obj.get("wandb_run_id")) is None:
        return {}
    out = {"id": obj["wandb_run_id"]}
    train_cfg = obj.get("train_config")
    node = train_cfg.get("logger") if isinstance(train_cfg, dict) else None
    node = node.get("wandb") if isinstance(node, dict) else None
    if isinstance(node, dict):
        for key in ("project", "entity"):
            if valid_run_id(node.get(key)):
                out[key] = node[key]
    out["path"] = "/".join(out[k] for k in ("entity", "project", "id") if k in out)
    return out


def wandb_identity(
    records: Sequence[ResultRecord], train: dict[str, str], settings: dict[str, Any]
) -> dict[str, Any]:
    """Name, group and tags of a test run, from what was measured (never from config file names).

    Name ``test-<encoder>-<model>-<sets>`` (``test-bicubic-set5`` for the baseline), group
    ``<encoder>-<model>`` (so runs of one method sit together and the UI can average them), tags
    ``test``, the model, the encoder, each test set and ``train-<run id>``. The ``logger.wandb``
    node's own ``name``/``group``/``tags`` win (tags are added).
    """
    first = records[0]
    sets = list(dict.fromkeys(r.testset for r in records))
    method = "bicubic" if first.model == "bicubic" else f"{first.encoder}-{first.model}"
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


def log_to_wandb(
    cfg: DictConfig,
    records: Sequence[ResultRecord],
    run_dir: Path,
    settings: dict[str, Any],
    *,
    ckpt_source: str = "",
) -> Path:
    """One W&B run per ``lte.test`` call, drawn by W&B itself; returns its local folder.

    History: one row per (test set, scale) in increasing scale, ``{"scale": s,
    "test/<set>/psnr": ..., "test/<set>/ssim": ...}``, with ``scale`` declared as the step metric
    of ``test/<set>/*`` (``define_metric``): the UI plots PSNR and SSIM against scale for any
    selection of runs. Also a Table ``test/results`` (the results file's rows) and summaries
    ``test/<set>/psnr_x<s>`` (runs-table columns). Config: the run's options plus ``method``,
    ``model``, ``encoder``, ``ckpt`` (absolute), ``train_run_id`` / ``train_run_path`` (the W&B run
    stored in the checkpoint) and ``protocols``. Without ``WANDB_API_KEY`` (and no explicit mode)
    the run is offline in ``<run dir>/wandb`` (upload later with ``wandb sync``).
    """
    import wandb

    mode = settings.get("mode") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    first = records[0]
    baseline = first.model == "bicubic"
    train = {} if baseline else training_run(first.ckpt)
    ident = wandb_identity(records, train, settings)
    sets = list(dict.fromkeys(r.testset for r in records))
    config: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    config.update(
        method=ident["method"],
        model=first.model,
        encoder=first.encoder,
        ckpt=first.ckpt if baseline else str(Path(first.ckpt).resolve()),
        ckpt_source=ckpt_source,
        train_run_id=train.get("id"),
        train_run_path=train.get("path"),
        testsets=sets,
        protocols={r.testset: r.protocol for r in records},
        scales=sorted({scale_value(r.scale) for r in records}),
    )
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
        rows = [r.to_dict() for r in records]
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


def check_method(cfg: DictConfig) -> str | None:
    """``"bicubic"`` for ``baseline=bicubic``, ``None`` when a checkpoint is scored.

    Raises:
        UserError: neither or both of ``ckpt`` and ``baseline`` are given, or an unknown baseline.
    """
    baseline = cfg.get("baseline")
    has_ckpt = not OmegaConf.is_missing(cfg, "ckpt") and bool(cfg.ckpt)
    if baseline is not None:
        if str(baseline).lower() != "bicubic":
            raise UserError(f"baseline={baseline} is unknown: use baseline=bicubic")
        if has_ckpt:
            raise UserError(
                "pass either ckpt=PATH or baseline=bicubic, not both (one method per run)"
            )
        return "bicubic"
    if not has_ckpt:
        raise UserError(
            "ckpt is not set: pass ckpt=PATH (an official .pth or an lte checkpoint), "
            "or baseline=bicubic for the bicubic row"
        )
    return None


def run_test(cfg: DictConfig, run_dir: Path) -> list[ResultRecord]:
    """Everything ``python -m lte.test`` does, given the composed config and the run folder.

    All options are checked first, so a mistake costs seconds, never a finished evaluation.
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    from lte.checkpoint import load_checkpoint
    from lte.evaluate import BICUBIC

    baseline = check_method(cfg)
    settings = eval_settings(cfg)
    if cfg.results_file:
        results_file = check_results_file(str(cfg.results_file))
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        results_file = check_results_file(run_dir / "results.json")
    wandb_cfg = wandb_settings(cfg.get("logger"))
    progress = check_progress(cfg.get("progress"))
    device = resolve_device(str(cfg.device), "device=")
    testsets = testsets_from_config(cfg)
    for testset in testsets:  # missing data or too large a scale fails before the checkpoint load
        testset.check_scales(settings.scales)
    if baseline is not None:
        method: Any = BICUBIC
        ckpt, source = "bicubic", "baseline"
        log.info("bicubic baseline (PIL bicubic upscaling of the same LR, same protocol)")
    else:
        loaded = load_checkpoint(cfg.ckpt)  # on the CPU; evaluate_testset moves it to `device`
        method, ckpt, source = loaded.model, str(cfg.ckpt), loaded.source
        log.info("%s checkpoint '%s' on %s", loaded.source, loaded.path, device)
    records: list[ResultRecord] = []

    def keep(record: ResultRecord) -> None:
        """Merge each (set, scale) record as soon as it exists, so a stopped run keeps it."""
        with _interrupt_after():
            merge_results([record], results_file)
            records.append(record)
        ssim = "-" if record.ssim is None else f"{record.ssim:.4f}"
        log.info(
            "%s %s x%s: PSNR %.4f dB, SSIM %s (%d images)",
            "bicubic" if record.model == "bicubic" else f"{record.encoder}-{record.model}",
            record.testset,
            format_scale(record.scale),
            record.psnr,
            ssim,
            record.images,
        )

    # eval.profile: one clock over every test set, the results file and W&B; one table at the end.
    profile = StageProfile(device) if settings.profile else NO_PROFILE
    profile.start()
    total = len(testsets) * len(settings.scales)
    try:
        for testset in testsets:
            with logging_redirect_tqdm():  # log lines print above the bar instead of through it
                evaluate_testset(
                    method,
                    testset,
                    settings,
                    device=device,
                    ckpt=ckpt,
                    on_record=keep,
                    progress=progress,
                    profile=profile,
                )
            profile.lap("other")
    except KeyboardInterrupt:
        raise Interrupted(
            f"{len(records)} of {total} (test set, scale) results are in {quote(results_file)} "
            f"(and {quote(results_file.with_suffix('.csv').name)}); run the same command again "
            f"to get all {total}"
        ) from None
    print(format_table(records))
    print(f"results: {results_file} (+ {results_file.with_suffix('.csv').name})")
    if wandb_cfg is not None:
        profile.lap("other")
        folder = log_to_wandb(cfg, records, run_dir, wandb_cfg, ckpt_source=source)
        profile.lap("results")
        print(f"W&B run: {folder}")
    if settings.profile:
        profile.lap("other")
        log.info(
            "eval.profile: where the time went (eval.backend=%s)\n%s",
            settings.backend,
            profile.table(),
        )
    return records


@contextlib.contextmanager
def _interrupt_after() -> Iterator[None]:
    """Hold a first Ctrl-C until the block ends, so a record reaches both the JSON and the CSV
    file or neither; a second Ctrl-C stops at once (a results file lock held elsewhere waits
    forever). Only where Python's own handler is in place (the main thread, SIGINT not ignored)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: object) -> None:
        if pending:
            raise KeyboardInterrupt
        pending.append(signum)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if pending:
        raise KeyboardInterrupt


def eval_settings(cfg: DictConfig) -> EvalSettings:
    """``scales`` and ``eval.*`` of a run, checked (:class:`lte.evaluate.EvalSettings`).

    Raises:
        UserError: one line naming the first bad option.
    """
    node = cfg.get("eval") or {}
    return EvalSettings(
        cfg.scales,
        node.get("chunk", 30000),
        node.get("tile", 0),
        node.get("fast", False),
        node.get("workers", None),
        node.get("backend", "eager"),
        node.get("profile", False),
    )


def check_progress(value: Any) -> bool | None:
    """``progress``: ``null`` (a bar when stderr is a terminal), ``true`` or ``false``.

    Raises:
        UserError: any other value.
    """
    if value is None or isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("auto", "null", "none"):
        return None
    raise UserError(f"progress={value} is not a choice: use progress=true, false or null (auto)")


@hydra.main(version_base=None, config_path="../conf", config_name="test")
@exit_on_user_error
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    run_test(cfg, Path(HydraConfig.get().runtime.output_dir))


@exit_on_user_error
def main() -> None:
    """Entry point of ``python -m lte.test`` / ``lte-test``.

    The command line is checked before Hydra runs it (:mod:`lte.cli.overrides`): an unknown key or
    test set is one ``error: ...`` line and exit 2, as every other mistake.
    """
    from lte.cli.overrides import check_command

    check_command(sys.argv[1:], config_name="test", prog="python -m lte.test")
    _hydra_main()


if __name__ == "__main__":
    main()
