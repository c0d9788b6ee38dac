"""Opening a checkpoint file safely, and what it records of the training run that wrote it.

A file is opened once, with ``torch.load(weights_only=True)``: tensors and plain containers only, so
no pickled object can run code. Before that, a missing path, a folder, a FIFO or a device is refused
(:func:`lte.files.check_input`), so nothing blocks or reads forever. Every failure is one
:class:`~lte.errors.UserError` line naming the file.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lte.errors import UserError
from lte.files import check_input

#: What a W&B run id (and a project or entity name) read from a checkpoint may look like; anything
#: else is ignored. Training's resume uses the same rule (:func:`valid_run_id`).
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def read_checkpoint(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    """The file's top-level dict, loaded weights-only.

    Raises:
        UserError: missing, a folder, a FIFO or device, not a PyTorch file, truncated, holding
            pickled objects other than tensors, or not a dict.
    """
    if not path.exists():
        raise UserError(f"checkpoint '{path}' does not exist: check --ckpt / ckpt=")
    if path.is_dir():
        raise UserError(f"checkpoint '{path}' is a folder: give the .pth or .ckpt file inside it")
    check_input(path, "checkpoint")  # a FIFO or a device: refused before torch.load would block
    try:
        # Quiet: torch warns about some tensor types it rebuilds (quantised, sparse CSR), which
        # the weight checks then refuse in one line.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        if "GLOBAL" in text or "Unsupported global" in text:
            found = re.search(r"GLOBAL ([\w.]+)", text)
            what = found.group(1) if found else "a Python object"
            raise UserError(
                f"checkpoint '{path}' holds pickled objects other than tensors ({what}); "
                "lte loads weights only and never runs code from a file"
            ) from None
        raise UserError(
            f"cannot read checkpoint '{path}': not a PyTorch file or truncated"
        ) from None
    except Exception as err:  # torch raises many types on a damaged file (KeyError, EOFError, ...)
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"cannot read checkpoint '{path}': not a PyTorch file or truncated ({msg[:120]})"
        ) from None
    if not isinstance(obj, dict):
        raise UserError(
            f"checkpoint '{path}' is not a dict of weights (found {type(obj).__name__})"
        )
    return obj


def valid_run_id(value: Any) -> str | None:
    """A W&B run id (or project / entity name) read from a checkpoint, if it is one: 1 to 128
    letters, digits, ``_`` and ``-``; ``None`` otherwise."""
    return value if isinstance(value, str) and _RUN_ID.fullmatch(value) else None


@dataclass(frozen=True)
class TrainingRun:
    """The W&B run that trained a checkpoint, as training recorded it (``wandb_run_id`` and the
    ``logger.wandb`` node of ``train_config``); project and entity are ``None`` when not recorded."""

    id: str
    project: str | None = None
    entity: str | None = None

    @property
    def path(self) -> str:
        """``entity/project/id`` with the parts that are known, as W&B's API takes it."""
        return "/".join(p for p in (self.entity, self.project, self.id) if p)

    def to_dict(self) -> dict[str, str]:
        """``{"id", "project", "entity", "path"}`` with the known parts (what ``lte.test`` logs)."""
        out = {"id": self.id}
        out |= {k: v for k, v in (("project", self.project), ("entity", self.entity)) if v}
        out["path"] = self.path
        return out


def training_run(obj: Mapping[str, Any]) -> TrainingRun | None:
    """The run recorded in a loaded checkpoint, or ``None`` (an official file, no W&B, or a value
    that is not a well-formed id: read as plain data and ignored)."""
    run_id = valid_run_id(obj.get("wandb_run_id"))
    if run_id is None:
        return None
    train_cfg = obj.get("train_config")
    node = train_cfg.get("logger") if isinstance(train_cfg, Mapping) else None
    node = node.get("wandb") if isinstance(node, Mapping) else None
    names = {
        key: valid_run_id(node.get(key)) if isinstance(node, Mapping) else None
        for key in ("project", "entity")
    }
    return TrainingRun(run_id, names["project"], names["entity"])
