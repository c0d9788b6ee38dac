"""One run per run directory: a lock held for the run's whole life, and a note saying who holds it.

Two ``lte.train`` started into the same folder (the same ``hydra.run.dir``, or the same timestamped
default folder when started in the same second) would both write ``checkpoints/last.ckpt``; one
run's model would silently replace the other's. So the launching process takes an OS-level lock on
``<run dir>/.lte-run.lock`` (:mod:`filelock`) before anything is written there, and keeps it until
it exits. The kernel drops the lock when its process dies, so a run killed with SIGKILL or a power
cut leaves nothing that blocks the next start. Beside the lock, ``.lte-run.owner`` (JSON: pid, host,
start time, command) only serves the message of a refused start; it is removed when the run ends.

Only the process a user started takes the lock: the worker processes of the same run (DDP ranks
that Lightning starts with ``LOCAL_RANK``, ranks that ``torchrun`` or SLURM start with ``RANK`` /
``SLURM_PROCID``) run in the folder it holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from lte.errors import UserError, escape_controls, quote
from lte.files import create_folder

LOCK_NAME = ".lte-run.lock"
OWNER_NAME = ".lte-run.owner"

#: Environment variables through which launchers give a process its rank; > 0 means a worker.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")

#: Folders this process holds, by resolved path: the entry point locks before Hydra starts, and the
#: job (run by Hydra in the same process) must not lock the same folder a second time.
_held: dict[Path, FileLock] = {}


def is_worker_process() -> bool:
    """Whether a launcher started this process as a worker (rank > 0) of a run another one leads."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return True
    return False


def _owner_text(folder: Path) -> str:
    """``pid 1234 on host h, started 2024-05-01 12:03:11`` from the owner file, as well as known."""
    try:
        owner = json.loads((folder / OWNER_NAME).read_text(encoding="utf-8"))
        pid, host, started = int(owner["pid"]), str(owner["host"]), float(owner["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its owner note is missing or being written)"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    return f"lte.train (pid {pid} on host {escape_controls(host)}, started {when})"


def _write_owner(folder: Path, command: list[str]) -> None:
    from lte.atomic import atomic_write_text

    note = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.time(),
        "command": shlex.join(command),  # what to look for in ps
    }
    atomic_write_text(folder / OWNER_NAME, json.dumps(note, indent=1) + "\n")


@contextlib.contextmanager
def hold_run_dir(
    folder: str | os.PathLike[str], *, option: str = "hydra.run.dir"
) -> Iterator[Path]:
    """Hold ``folder`` (created if needed) for the duration of the block.

    A no-op in worker processes (:func:`is_worker_process`) and when this process already holds the
    folder (the entry point took it before Hydra started the job). ``option`` is what the refusal
    suggests to choose another folder with (``hydra.sweep.dir`` for a multirun job).

    Raises:
        UserError: another process holds the folder (naming it), or the folder cannot be created.
    """
    path = create_folder(folder, option)  # as Hydra takes it: no ~ expansion
    key = path.resolve()
    if is_worker_process() or key in _held:
        yield path
        return
    lock = FileLock(key / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(
            f"run directory {quote(path)} is in use by {_owner_text(key)}: wait for it, or choose "
            f"another folder with {option}=NEW_DIR"
        ) from None
    except OSError as err:
        raise UserError(
            f"cannot lock run directory {quote(path)} ({err.strerror or err}): choose a writable "
            f"folder with {option}=NEW_DIR"
        ) from None
    _held[key] = lock
    try:
        _write_owner(key, sys.argv)
        yield path
    finally:
        _held.pop(key, None)
        with contextlib.suppress(OSError):
            (key / OWNER_NAME).unlink()
        lock.release()
