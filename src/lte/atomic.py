"""Atomic file writes: nothing lte writes (checkpoints, images, results, caches) is ever left half-written.

Every writer goes through :func:`atomic_path`: write to a temp file in the destination's folder,
``fsync`` it, ``os.replace`` it onto the destination (atomic on POSIX within one file system), then
``fsync`` the folder so the rename itself survives a power cut. If anything fails the temp file is
deleted. A crash, Ctrl-C or a concurrent writer leaves either the old file or the new one.

Temp files are *hidden* (``.NAME.lte-PID-HOST-RANDOM.tmp``): folder listings that skip dot files (the
image datasets do) never see them, even when a killed process (SIGKILL, power cut) could not delete
its own. The next write to the same destination deletes such leftovers whose process is gone.

A write never changes what kind of thing the destination is. Writing to a symbolic link writes
*through* it: the file it points to is replaced (atomically, in that file's folder) and the link stays
a link, so a results file linked into a shared folder gets the new records where the link points. A
replaced file keeps its permission bits (a private 0600 file stays private; a new file gets what the
umask asks for). A folder, a FIFO, a device or a read-only file is never replaced: each is a one-line
refusal (:func:`check_replaceable`), since renaming over it would destroy what the user made.
:mod:`lte.files` holds the checks a command runs on its outputs *before* it starts working.

Disk problems a user can fix (disk full, no permission, read-only file system, name too long, the
destination is a folder) become one-line :class:`~lte.errors.UserError` s naming the destination.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from lte.errors import UserError, quote

#: errno values that mean "the user's disk or path", not a bug: reported as one line.
USER_ERRNOS = {
    errno.ENOSPC: "the disk is full: free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is exhausted: free some space or write elsewhere",
    errno.EACCES: "permission denied: choose a folder you can write to",
    errno.EPERM: "permission denied: choose a folder you can write to",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.ENAMETOOLONG: "the file name is too long: choose a shorter name",
    errno.EISDIR: "it is a folder: give a file name inside it",
    errno.ENOENT: "its folder does not exist: create it first",
    errno.ENOTDIR: "a part of its path is a file, not a folder",
}

#: Leftover temp files and their writers live on one machine; this tags the machine in the name.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
#: Room kept in a temp name for ``.lte-PID-HOST-`` + mkstemp's 8 random characters + a suffix.
_TEMP_OVERHEAD = 64


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_error(err: OSError, path: str | os.PathLike[str]) -> UserError | None:
    """The one-line :class:`UserError` for a failed write of ``path``, or ``None`` for other errors."""
    reason = USER_ERRNOS.get(err.errno) if err.errno is not None else None
    if reason is None:
        return None
    return UserError(f"cannot write {quote(path)}: {reason}")


#: Longest chain of symbolic links followed to find where a write lands (Linux's own limit).
MAX_LINKS = 40


def write_target(path: str | os.PathLike[str]) -> Path:
    """Where a write to ``path`` lands: ``path`` itself, or the file its symbolic link(s) point to.

    Writes go through links so that a link stays a link and its target gets the new content. A
    dangling link gives the path it points to (which does not exist yet).

    Raises:
        UserError: the links form a loop, or a chain longer than :data:`MAX_LINKS`.
    """
    target = Path(path)
    for _ in range(MAX_LINKS):
        if not os.path.islink(target):
            return target
        # A relative link target is relative to the link's own folder; an absolute one replaces it.
        target = target.parent / os.readlink(target)
    raise UserError(
        f"cannot write {quote(path)}: its symbolic links form a loop (or a chain of more than "
        f"{MAX_LINKS}): point the link at a file, or choose another name"
    )


def file_kind(mode: int) -> str:
    """What a non-regular file is, for messages: ``a folder``, ``a FIFO (named pipe)``, ..."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_only_reason(target: Path, st: os.stat_result) -> str | None:
    """Why the existing file ``target`` must not be replaced (``is read-only ...``), or ``None``.

    The mode bits decide, not ``os.access``: root may write anything, but a file nobody may write
    (``chmod a-w``) is a user saying "keep this", and lte keeps it even when run as root.
    """
    bits = stat.S_IMODE(st.st_mode)
    if not bits & 0o222:
        return (
            f"is read-only (mode {bits:04o}): make it writable (chmod u+w) if it may be "
            "replaced, or choose another name"
        )
    if not os.access(target, os.W_OK):
        return "is not writable by you (permission denied): choose another name"
    return None


def check_replaceable(
    path: str | os.PathLike[str], target: Path | None = None
) -> os.stat_result | None:
    """The ``stat`` of the existing file a write to ``path`` would replace, or ``None`` if none.

    ``target`` is :func:`write_target` of ``path`` when the caller has it already.

    Raises:
        UserError: the destination is a folder, a FIFO, a device or a socket, or a read-only file.
    """
    dest = write_target(path) if target is None else target
    try:
        st = os.stat(dest)
    except OSError:
        return None  # absent (or unreachable: creating the temp file will say why)
    shown = quote(path) if dest == Path(path) else f"{quote(path)} (a link to {quote(dest)})"
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"cannot write {shown}: {USER_ERRNOS[errno.EISDIR]}")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(
            f"cannot write {shown}: it is {file_kind(st.st_mode)}, not a regular file: "
            "choose another name"
        )
    reason = read_only_reason(dest, st)
    if reason is not None:
        raise UserError(f"cannot write {shown}: it {reason}")
    return st


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _temp_stem(target: Path) -> str:
    """``.NAME`` cut so that the whole temp name fits the file system's name limit (in bytes)."""
    room = max(8, _name_max(target.parent) - _TEMP_OVERHEAD)
    stem = target.name.encode()[:room].decode(errors="ignore")
    return f".{stem}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temp files of ``path`` left by processes of this machine that no longer run.

    Returns the deleted paths. Files of live processes (concurrent writers) and of other machines
    (shared file systems) are kept: they may still be renamed into place.
    """
    target = Path(path)
    stem = _temp_stem(target)
    marker = f"{stem}.lte-"
    removed = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.startswith(marker):
            continue
        pid_text, _, rest = name[len(marker) :].partition("-")
        host = rest.split("-", 1)[0]
        if not pid_text.isdigit() or host != _HOST or _pid_alive(int(pid_text)):
            continue
        with suppress(OSError):
            entry.unlink()
            removed.append(entry)
    return removed


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError as err:
        # Some file systems can't fsync a folder (EINVAL); the file itself was synced already.
        if not directory or err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a hidden temp path beside ``path``; when the block succeeds it becomes ``path``.

    ``suffix`` lets writers that pick a format from the name (matplotlib) see the right one. When
    ``path`` is a symbolic link the file it points to is replaced, in that file's folder, and the
    link is kept. A replaced file keeps its permission bits (and, where the process may set them,
    its owner and group); a new file gets what the umask asks for (``mkstemp`` alone would leave
    0600). The file is fsync'd before the rename, and the folder after it.

    Raises:
        UserError: the destination is a folder, a FIFO, a device or a read-only file (see
            :func:`check_replaceable`), or the disk is full, the folder is not writable or missing,
            the name is too long (see :data:`USER_ERRNOS`). Other errors propagate unchanged.
    """
    target = write_target(path)
    folder = target.parent if str(target.parent) else Path(".")
    check_replaceable(path, target)
    clean_leftovers(target)
    try:
        fd, name = tempfile.mkstemp(
            dir=folder, prefix=f"{_temp_stem(target)}.lte-{os.getpid()}-{_HOST}-", suffix=suffix
        )
    except OSError as err:
        raise write_error(err, target) or err from None
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            yield tmp
            _copy_permissions(tmp, check_replaceable(path, target))
            _fsync_path(tmp)
            os.replace(tmp, target)
        except OSError as err:
            user = write_error(err, target)
            if user is None:
                raise
            raise user from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_path(folder, directory=True)


def _copy_permissions(tmp: Path, old: os.stat_result | None) -> None:
    """Give ``tmp`` the permission bits of the file it replaces, or the umask's default if none."""
    if old is None:
        os.chmod(tmp, 0o666 & ~_umask())
        return
    with suppress(OSError):  # only root (or the owner, for the group) may; otherwise ours is fine
        os.chown(tmp, old.st_uid, old.st_gid)
    # Permission bits only: a set-user-ID bit on a file lte rewrites would be a hazard, not a keep.
    os.chmod(tmp, stat.S_IMODE(old.st_mode) & 0o777)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def check_writable(path: str | os.PathLike[str]) -> None:
    """Fail now, before a long computation, if ``path`` could not be written atomically later.

    Creates and deletes a hidden temp file where :func:`atomic_path` would (beside the file a link
    points to), so a missing or unwritable folder, a read-only file system and a name the file
    system can't hold are found by the file system itself, not guessed from permission bits (root
    ignores those). A destination that may not be replaced is refused too (:func:`check_replaceable`).

    Raises:
        UserError: one line naming ``path`` and the reason (see :data:`USER_ERRNOS`).
    """
    target = write_target(path)
    folder = target.parent if str(target.parent) else Path(".")
    check_replaceable(path, target)
    if len(target.name.encode()) > _name_max(folder):
        raise UserError(
            f"cannot write {quote(target)}: {USER_ERRNOS[errno.ENAMETOOLONG]} "
            f"(at most {_name_max(folder)} bytes here)"
        )
    try:
        fd, name = tempfile.mkstemp(
            dir=folder, prefix=f"{_temp_stem(target)}.lte-{os.getpid()}-{_HOST}-", suffix=".probe"
        )
    except OSError as err:
        raise write_error(err, target) or err from None
    os.close(fd)
    os.unlink(name)
