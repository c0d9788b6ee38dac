"""One ``lte.test`` run from a composed config: what ``python -m lte.test`` does (:mod:`lte.cli.test`).

Every option is checked before the checkpoint is loaded or an image is scored: the method, the
scales and ``eval.*`` (:class:`~lte.evaluation.settings.EvalSettings`), the results file (folder,
suffix, an existing file's schema), the logger, the progress bar, the device and the test sets'
folders. Then each test set is scored (:func:`~lte.evaluation.loop.evaluate_testset`), each record
merged into the results file as it finishes (so Ctrl-C keeps them), the table printed, and with
``logger=wandb`` one W&B run logged (:mod:`lte.wandb_eval`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from lte.checksum import check_sha256, parse_sha256
from lte.devices import resolve_device
from lte.errors import Interrupted, UserError, as_user_error, quote
from lte.evaluation.loop import evaluate_testset
from lte.evaluation.methods import BICUBIC, Method, as_method
from lte.evaluation.profile import NO_PROFILE, StageProfile
from lte.evaluation.settings import EvalSettings
from lte.results import (
    BICUBIC_MODEL,
    ResultRecord,
    check_results_file,
    format_scale,
    format_table,
    merge_results,
)
from lte.testsets import TestSet
from lte.wandb_eval import log_test_run, wandb_settings

#: The command's log (``test.log`` in the run folder), whatever module writes a line.
log = logging.getLogger("lte.test")


def run_test(cfg: DictConfig, run_dir: Path) -> list[ResultRecord]:
    """Everything ``python -m lte.test`` does, given the composed config and the run folder.

    All options are checked first, so a mistake costs seconds, never a finished evaluation.

    Raises:
        UserError: the first bad option, missing data, or a problem met while scoring.
        Interrupted: Ctrl-C; the message says how many records the results file already holds.
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    baseline = check_method(cfg)
    digest = check_ckpt_sha256(cfg, baseline)
    settings = EvalSettings.from_config(cfg)
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
    method: Method
    if baseline is not None:
        method, ckpt, source, train = BICUBIC, BICUBIC_MODEL, "baseline", None
        log.info("bicubic baseline (PIL bicubic upscaling of the same LR, same protocol)")
    else:
        from lte.checkpoint import load_checkpoint

        if digest is not None:  # the file the user expects, before it is read
            check_sha256(str(cfg.ckpt), digest, option="ckpt_sha256=")
        loaded = load_checkpoint(cfg.ckpt)  # on the CPU; moved to `device` just below
        method, ckpt, source = as_method(loaded.model), str(cfg.ckpt), loaded.source
        train = loaded.training_run.to_dict() if loaded.training_run is not None else None
        log.info("%s checkpoint '%s' on %s", loaded.source, loaded.path, device)
    work = work_pixels(testsets, settings)  # what eval.backend=auto weighs against a compile
    method = method.ready(settings, device, work)  # the device, kernel and dtype, once
    records: list[ResultRecord] = []

    def keep(record: ResultRecord) -> None:
        """Merge each (set, scale) record as soon as it exists, so a stopped run keeps it."""
        with _interrupt_after():
            merge_results([record], results_file)
            records.append(record)
        ssim = "-" if record.ssim is None else f"{record.ssim:.4f}"
        log.info(
            "%s %s x%s: PSNR %.4f dB, SSIM %s (%d images)",
            record.method,
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
        config: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        folder = log_test_run(config, records, run_dir, wandb_cfg, ckpt_source=source, train=train)
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


# --- the config's parts ----------------------------------------------------------------------------


def work_pixels(testsets: Sequence[TestSet], settings: EvalSettings) -> int:
    """The output pixels a run predicts: every HR image at every scale, times the ensemble's views.

    Read from the images' headers (no decoding); a file that cannot be read counts 0 (the loop
    reports it). An estimate for ``eval.backend=auto``, never used to score.
    """
    from lte.data.images import image_size

    total = 0
    for testset in testsets:
        try:
            files = testset.hr_files()
        except (UserError, OSError):
            continue
        for path in files:
            try:
                h, w = image_size(path)
            except (UserError, OSError, ValueError):
                continue
            total += h * w
    return total * len(settings.scales) * settings.ensemble


def check_method(cfg: DictConfig) -> str | None:
    """``"bicubic"`` for ``baseline=bicubic``, ``None`` when a checkpoint is scored.

    Raises:
        UserError: neither or both of ``ckpt`` and ``baseline`` are given, or an unknown baseline.
    """
    baseline = cfg.get("baseline")
    has_ckpt = not OmegaConf.is_missing(cfg, "ckpt") and bool(cfg.ckpt)
    if baseline is not None:
        if str(baseline).lower() != BICUBIC_MODEL:
            raise UserError(f"baseline={baseline} is unknown: use baseline=bicubic")
        if has_ckpt:
            raise UserError(
                "pass either ckpt=PATH or baseline=bicubic, not both (one method per run)"
            )
        return BICUBIC_MODEL
    if not has_ckpt:
        raise UserError(
            "ckpt is not set: pass ckpt=PATH (an official .pth or an lte checkpoint), "
            "or baseline=bicubic for the bicubic row"
        )
    return None


def check_ckpt_sha256(cfg: DictConfig, baseline: str | None) -> str | None:
    """``ckpt_sha256``: ``null``, or the SHA-256 ``ckpt`` must have (64 hex digits).

    Raises:
        UserError: not a digest, or given with ``baseline=bicubic`` (no file to check).
    """
    value = cfg.get("ckpt_sha256")
    if value is None:
        return None
    if baseline is not None:
        raise UserError("ckpt_sha256= checks ckpt=, and baseline=bicubic reads no file: drop it")
    return parse_sha256(str(value), "ckpt_sha256=")


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
