"""W&B bookkeeping: offline unless a key is set, a stable run id per run directory, names and groups.

A run directory owns one W&B run: its id is written to ``<run dir>/wandb_run_id.txt`` and into every
checkpoint, so ``ckpt_path=...`` continues the same W&B run (``resume="allow"``) instead of starting a
new one. Without ``WANDB_API_KEY`` the run is logged offline into ``<run dir>/wandb`` and never
touches the network; ``wandb sync <run dir>/wandb/offline-run-*`` uploads it later.
"""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path

from lte.errors import UserError

#: File in the run directory that holds the run's W&B id.
RUN_ID_FILE = "wandb_run_id.txt"
_ID_ALPHABET = string.ascii_lowercase + string.digits
_MODES = ("online", "offline", "disabled")


def wandb_mode(requested: str | None) -> str:
    """``online`` / ``offline`` / ``disabled``: the requested one, else offline without ``WANDB_API_KEY``.

    ``WANDB_MODE`` in the environment counts as a request. Online without a key would make wandb
    prompt for one, which must never happen in a batch job, so it is refused.
    """
    mode = requested or os.environ.get("WANDB_MODE") or None
    if mode == "dryrun":
        mode = "offline"
    if mode is None:
        mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
    if mode not in _MODES:
        raise UserError(f"logger.wandb.mode={mode} is unknown: use one of {', '.join(_MODES)}")
    if mode == "online" and not os.environ.get("WANDB_API_KEY"):
        netrc = Path.home() / ".netrc"
        if not (netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")):
            raise UserError(
                "logger.wandb.mode=online needs WANDB_API_KEY (or `wandb login`): set it, or "
                "leave mode unset to log offline and `wandb sync` later"
            )
    return mode


def new_run_id() -> str:
    """A fresh 8-character W&B run id (W&B's own format: lowercase letters and digits)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def read_run_id(run_dir: str | os.PathLike[str]) -> str | None:
    """The id stored in ``run_dir`` by an earlier start of the same run, if any."""
    path = Path(run_dir) / RUN_ID_FILE
    if path.is_file():
        text = path.read_text().strip()
        return text or None
    return None


def write_run_id(run_dir: str | os.PathLike[str], run_id: str) -> None:
    """Store ``run_id`` in ``run_dir`` (atomically), so a restart in the same folder continues it."""
    path = Path(run_dir) / RUN_ID_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(run_id + "\n")
    os.replace(tmp, path)


def resolve_run_id(run_dir: str | os.PathLike[str], from_checkpoint: str | None) -> str:
    """The W&B id of this run: the resumed checkpoint's, else the run directory's, else a new one."""
    return from_checkpoint or read_run_id(run_dir) or new_run_id()
