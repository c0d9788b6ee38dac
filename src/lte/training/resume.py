"""The run directory rule and resuming: nothing of an earlier run is overwritten, resumes fit the model.

A run directory (``hydra.run.dir``) belongs to one run. Starting into a directory that already holds
checkpoints is refused unless the command says how to continue it: ``ckpt_path=last`` resumes from
``<run dir>/checkpoints/last.ckpt`` (and starts fresh while there is none, so a requeued or
preempted job needs no manual step), ``ckpt_path=PATH`` resumes from that file.
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lte.errors import UserError, quote
from lte.weights import check_weights, nonfinite_weights

log = logging.getLogger(__name__)

#: ``ckpt_path=last``: the run directory's own ``checkpoints/last.ckpt``, or a fresh start.
LAST = "last"


def requested_ckpt_path(value: Any, launcher_target: str | None) -> str | None:
    """``ckpt_path`` as given, but ``last`` by default under the SLURM (submitit) launcher.

    A job SLURM requeues after a timeout or preemption runs the same command in the same run
    directory again: it must resume, and a fresh job must start, with no manual step.
    """
    if value not in (None, ""):
        return str(value)
    if launcher_target and "submitit" in launcher_target.lower():
        return LAST
    return None


def existing_checkpoints(run_dir: Path, checkpoint_dir: Path) -> list[Path]:
    """Checkpoints an earlier start left in this run directory (Lightning's SLURM ``hpc_ckpt_*`` too)."""
    found = sorted(checkpoint_dir.glob("*.ckpt")) if checkpoint_dir.is_dir() else []
    found += sorted(run_dir.glob("hpc_ckpt_*.ckpt")) if run_dir.is_dir() else []
    return found


def _names(paths: list[Path], run_dir: Path) -> str:
    shown = []
    for p in paths[:3]:
        try:
            shown.append(str(p.relative_to(run_dir)))
        except ValueError:
            shown.append(str(p))
    return ", ".join(shown) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def resolve_ckpt_path(
    requested: str | os.PathLike[str] | None, run_dir: Path, checkpoint_dir: Path
) -> Path | None:
    """The checkpoint to resume from, or None for a fresh start; refuses to overwrite a run.

    Raises:
        UserError: the run directory holds checkpoints and ``ckpt_path`` is unset, or names a
            checkpoint of another run (its last.ckpt and best.ckpt would be replaced).
    """
    existing = existing_checkpoints(run_dir, checkpoint_dir)
    new_dir = "or start a new run in another folder with hydra.run.dir=NEW_DIR"
    if requested is None or str(requested) == "":
        if existing:
            raise UserError(
                f"run directory '{run_dir}' already holds checkpoints "
                f"({_names(existing, run_dir)}): resume it with ckpt_path=last, {new_dir}"
            )
        return None
    if str(requested) == LAST:
        last = checkpoint_dir / "last.ckpt"
        if last.is_file():
            return last
        if existing:
            raise UserError(
                f"ckpt_path=last: '{last}' does not exist, but the run directory holds "
                f"{_names(existing, run_dir)}: pass one of them as ckpt_path=PATH, {new_dir}"
            )
        log.info("ckpt_path=last: no %s yet, starting a new run", last)
        return None
    path = Path(os.path.expanduser(str(requested)))
    own = {p.resolve() for p in existing}
    if existing and path.exists() and path.resolve() not in own:
        raise UserError(
            f"ckpt_path '{path}' belongs to another run, and resuming it here would replace the "
            f"checkpoints of run directory '{run_dir}' ({_names(existing, run_dir)}): "
            "choose a new folder with hydra.run.dir=NEW_DIR, or resume this one with ckpt_path=last"
        )
    return path


def load_resume_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training checkpoint to resume from, with a one-line error for anything unusable.

    Raises:
        UserError: the file is missing, a folder, unreadable or truncated, or not a training
            checkpoint of lte (e.g. an official ``.pth`` release, which holds no optimizer state).
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"ckpt_path '{p}' does not exist: give the last.ckpt of an earlier run")
    if p.is_dir():
        raise UserError(f"ckpt_path '{p}' is a folder: give the .ckpt file (e.g. {p}/last.ckpt)")
    if not zipfile.is_zipfile(p):
        raise UserError(
            f"ckpt_path '{p}' is not a PyTorch checkpoint (not a zip archive, or truncated): "
            "give the last.ckpt of an earlier run"
        )
    try:
        with warnings.catch_warnings():  # torch warns on some tensor types; refused below
            warnings.simplefilter("ignore")
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        OSError,
        ValueError,
    ) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(
            f"ckpt_path '{p}' cannot be read: not a checkpoint or truncated ({first[:120]})"
        ) from None
    if (
        not isinstance(ckpt, dict)
        or not isinstance(ckpt.get("state_dict"), Mapping)
        or "optimizer_states" not in ckpt
    ):
        raise UserError(
            f"ckpt_path '{p}' is not an lte training checkpoint (no optimizer state to resume): "
            "pass a last.ckpt written by python -m lte.train"
        )
    where = f"ckpt_path {quote(p)}"
    check_weights(
        {k: v for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}, where
    )
    check_optimizer_states(ckpt["optimizer_states"], where)
    _check_finite(ckpt["state_dict"], p)
    return ckpt


def check_optimizer_states(states: Any, where: str) -> None:
    """The optimizer's saved tensors must be what the optimizer can continue from.

    Per-parameter statistics (Adam's ``exp_avg``, ``exp_avg_sq``) are real floating-point,
    dense tensors (any of :data:`lte.weights.WEIGHT_DTYPES`: ``Optimizer.load_state_dict`` casts
    them to the parameter's dtype, but would keep an int8 one as int8). ``step`` counters may be
    integer or floating-point scalars, as PyTorch versions differ. Shapes are the optimizer's own
    check when it loads them.

    Raises:
        UserError: naming the optimizer, parameter index and entry (``optimizer_states[0] state 3
            exp_avg is torch.int8; ...``).
    """
    if not isinstance(states, list | tuple):
        raise UserError(
            f"{where} is not an lte training checkpoint (optimizer_states is "
            f"{type(states).__name__}, not a list): pass a last.ckpt written by python -m lte.train"
        )
    for i, opt in enumerate(states):
        state = opt.get("state") if isinstance(opt, Mapping) else None
        if not isinstance(state, Mapping):
            continue  # an optimizer without per-parameter state (plain SGD)
        tensors: dict[str, torch.Tensor] = {}
        floats: dict[str, torch.Tensor] = {}
        for index, entries in state.items():
            if not isinstance(entries, Mapping):
                continue
            for name, value in entries.items():
                if not isinstance(value, torch.Tensor):
                    continue  # plain numbers (an old step count) are the optimizer's business
                key = f"{index} {name}"
                tensors[key] = value
                counter = name == "step" and value.dim() == 0
                if not (counter and not value.is_complex() and value.dtype != torch.bool):
                    floats[key] = _FLOAT
        check_weights(tensors, where, floats, what=f"optimizer_states[{i}] state")


#: Stands for "a floating-point tensor" in :func:`check_weights` (only its dtype is read).
_FLOAT = torch.empty(0)


def _shape(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    return tuple(int(s) for s in shape) if shape is not None else None


def check_resume_fits(
    state_dict: Mapping[str, Any], ours: Mapping[str, torch.Tensor], path: Path, model: str
) -> None:
    """The checkpoint's weights must be those of the model this run builds, tensor for tensor.

    Raises:
        UserError: naming the first differing tensor and how many differ, and how to fix it.
    """
    check_weights(state_dict, f"ckpt_path {quote(path)}", ours)
    missing = [k for k in ours if k not in state_dict]
    extra = [k for k in state_dict if k not in ours]
    shapes = [k for k in ours if k in state_dict and _shape(state_dict[k]) != _shape(ours[k])]
    if not (missing or extra or shapes):
        return
    if shapes:
        k = shapes[0]
        first = f"{k} is {list(_shape(state_dict[k]) or [])} there but {list(ours[k].shape)} here"
    elif missing:
        first = f"it lacks {missing[0]}"
    else:
        first = f"it has {extra[0]}, which this model lacks"
    count = len(missing) + len(extra) + len(shapes)
    raise UserError(
        f"ckpt_path '{path}' holds another model than this run's {model}: {first} "
        f"({count} tensor(s) differ); resume with the model and encoder options of that run, "
        "or start a new run with hydra.run.dir=NEW_DIR"
    )


def _check_finite(state_dict: Mapping[str, Any], path: Path) -> None:
    """Weights holding NaN or infinity would only give non-finite losses: refuse them at once.

    Raises:
        UserError: naming how many tensors and the first one.
    """
    bad = nonfinite_weights({k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)})
    if bad:
        raise UserError(
            f"ckpt_path {quote(path)} has non-finite weights (NaN or infinity) in {len(bad)} "
            f"tensor(s), e.g. {bad[0]}: the file is corrupt; resume from an earlier checkpoint"
        )
