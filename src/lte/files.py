"""The checks every command runs on the files it will read and write, before it starts working.

One discipline for every file lte writes (images, figures, results, comparisons, checkpoints):

- **checked before any work**: :func:`check_output` runs when the command starts, so a problem with
  an output never throws away a finished computation;
- **never replacing what the user did not ask to replace**: an existing path, a dangling symbolic
  link included, is refused unless the command was told to replace it (``--overwrite``) or it is a
  file lte merges into (a results file that validates as lte's: the caller says so with ``merges``);
- **only regular files**: a folder, a FIFO or a device is never written, even with ``--overwrite``;
  a read-only file (no write bit, even for root) is never replaced;
- **links followed, modes kept**: the write itself (:func:`lte.atomic.atomic_path`) replaces the
  file a link points to and keeps the replaced file's permission bits.

Reading has its own rule (:func:`check_input`): only regular files are opened, so a FIFO or a device
given as an input is a one-line error instead of a command that waits forever.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

from lte.atomic import check_writable, file_kind, read_only_reason, write_error, write_target
from lte.errors import UserError, escape_controls, quote


def label(what: str, path: str | os.PathLike[str]) -> str:
    """``what 'path'`` for a message; an option ending in ``=`` is glued: ``results_file='r.json'``."""
    if not what:
        return quote(path)
    return f"{what}{quote(path)}" if what.endswith("=") else f"{what} {quote(path)}"


def check_input(
    path: str | os.PathLike[str], what: str, *, missing: str = "check the path"
) -> os.stat_result:
    """The ``stat`` of a file about to be read, which must be a regular file (a link to one counts).

    Checked before the file is opened: opening a FIFO waits for a writer that may never come, and a
    device may never end. ``missing`` is the advice when there is no such file.

    Raises:
        UserError: ``what 'path'`` does not exist, is a folder, or is not a regular file.
    """
    try:
        st = os.stat(path)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG):  # no such file can exist
            raise UserError(f"{label(what, path)} does not exist: {missing}") from None
        raise UserError(f"cannot read {label(what, path)}: {err.strerror or err}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{label(what, path)} is a folder, not a file: give a file inside it")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(
            f"{label(what, path)} is {file_kind(st.st_mode)}, not a regular file: give a file"
        )
    return st


def check_output(
    path: str | os.PathLike[str],
    *,
    what: str = "output",
    overwrite: bool | None = False,
    merges: Callable[[Path], None] | None = None,
    make_folder: bool = False,
) -> Path:
    """Refuse, before any work, a destination that could not or should not be written.

    ``overwrite`` is the command's ``--overwrite`` (``None`` when it has no such option: the advice
    then is to remove the file). ``merges``, for files lte merges into, is called on an existing
    regular file and raises :class:`UserError` when the file is not lte's; when it returns, the file
    may be replaced. A dangling symbolic link counts as existing: with ``overwrite`` the file it
    points to is created (its folder must exist), as :func:`lte.atomic.atomic_path` writes through
    links. With ``make_folder`` the caller creates a missing folder itself: the nearest folder
    that exists must then be writable. Returns the file the write will land on (a link's target).

    Raises:
        UserError: one line naming ``what 'path'``: a link loop, a folder, a FIFO or device, a
            read-only file, an existing file (or dangling link) without ``overwrite``, a missing or
            unwritable folder, a name too long.
    """
    p = Path(path)
    target = write_target(p)
    shown = label(what, p)
    linked = target != p
    if linked:
        shown += f" (a link to {quote(target)})"
    replace = "pass --overwrite to replace it" if overwrite is not None else "remove it first"
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as err:  # a name too long, a file where a folder should be, ...
        raise write_error(err, p) or UserError(f"cannot write {shown}: {err.strerror}") from None
    if st is None and linked and not overwrite:
        how = "pass --overwrite to create that file" if overwrite is not None else "remove the link"
        raise UserError(
            f"{label(what, p)} is a symbolic link to {quote(target)}, which does not exist: "
            f"choose another name, or {how}"
        )
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise UserError(f"{shown} is a folder: give a file name inside it")
        if not stat.S_ISREG(st.st_mode):
            raise UserError(
                f"{shown} is {file_kind(st.st_mode)}, not a regular file: choose another name "
                "(lte writes only regular files)"
            )
        reason = read_only_reason(target, st)
        if reason is not None:
            raise UserError(f"{shown} {reason}")
        if merges is not None:
            merges(target)
        elif not overwrite:
            raise UserError(f"{shown} already exists: choose another name, or {replace}")
    folder = target.parent if str(target.parent) else Path(".")
    if folder.is_dir():
        check_writable(target)
    elif not make_folder:
        raise UserError(f"{shown}: folder {quote(folder)} does not exist: create it first")
    else:
        check_writable(_nearest_folder(folder, shown) / target.name)
    return target


def _nearest_folder(folder: Path, shown: str) -> Path:
    """The closest existing ancestor of the missing ``folder``, which must be a folder."""
    ancestor = folder
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    try:
        mode = os.stat(ancestor).st_mode
    except OSError:
        mode = 0
    if not stat.S_ISDIR(mode):
        kind = "a file" if stat.S_ISREG(mode) else file_kind(mode)
        raise UserError(
            f"{shown}: {quote(ancestor)} is {kind if mode else 'a symbolic link to nothing'}, not a "
            "folder: choose another place"
        )
    return ancestor


def create_folder(folder: str | os.PathLike[str], setting: str) -> Path:
    """Create ``folder`` (and its parents) for a run, or say in one line why it cannot be.

    ``setting`` is the option that named it (``hydra.run.dir``), shown with the value as given:
    the folder is taken as Hydra takes it, relative to the working folder, with no ``~`` expansion.

    Raises:
        UserError: the folder cannot be created (a file in the way, no permission, ...).
    """
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(
            f"{setting}={escape_controls(str(folder))}: cannot create the folder "
            f"({err.strerror or err}): choose a writable path"
        ) from None
    return path
