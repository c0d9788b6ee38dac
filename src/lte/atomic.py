"""Atomic file writes: nothing lte writes (checkpoints, images, results, caches) is ever left half-written.

Every writer goes through :func:`atomic_path`: write to a temp file in the destination's folder, then
``os.replace`` it onto the destination (atomic on POSIX within one file system), or delete it if
anything fails. A crash, Ctrl-C or a concurrent writer leaves either the old file or the new one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path beside ``path``; when the block succeeds it becomes ``path``.

    ``suffix`` lets writers that pick a format from the name (matplotlib) see the right one. The file
    gets the permissions the umask asks for (``mkstemp`` alone would leave it 0600).
    """
    target = Path(path)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
