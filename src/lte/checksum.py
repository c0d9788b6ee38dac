"""SHA-256 digests of the files lte exports, and the check a user asks for with ``--sha256``.

An exported model travels (a download, a colleague's disk): its digest says it arrived unchanged.
:func:`write_sha256_file` writes ``NAME.sha256`` beside a file in the format ``sha256sum`` writes and
``sha256sum -c NAME.sha256`` checks (``<64 hex digits><two spaces><file name>`` per line, names
relative to the ``.sha256`` file's folder). :func:`check_sha256` refuses, in one line and before the
file is loaded, a file whose digest is not the one the user expects (``lte.upscale --sha256 HEX``,
``lte.test ckpt_sha256=HEX``).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

from lte.atomic import atomic_write_text
from lte.errors import UserError, quote
from lte.files import check_input, label

#: A SHA-256 digest as users write it: 64 hexadecimal digits (either case).
_HEX = re.compile(r"[0-9a-fA-F]{64}")
#: Bytes read at a time: large enough to hash at disk speed, small enough to bound memory.
_BLOCK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The lower-case hex SHA-256 of a file's bytes, read in blocks (any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def parse_sha256(value: object, option: str) -> str:
    """``value`` as a lower-case digest, or a one-line UserError naming ``option``.

    A ``sha256sum`` line (``HEX  name``) is accepted too: users paste what the tool printed.
    """
    text = str(value).strip().split()[0] if isinstance(value, str) and value.strip() else ""
    if not _HEX.fullmatch(text):
        shown = f"{option}{quote(value)}" if option.endswith("=") else f"{option} {quote(value)}"
        raise UserError(
            f"{shown} is not a SHA-256 digest: give the 64 hexadecimal digits "
            "that sha256sum prints (or the .sha256 file's first field)"
        )
    return text.lower()


def check_sha256(
    path: str | os.PathLike[str], expected: str, *, what: str = "checkpoint", option: str
) -> str:
    """Refuse ``path`` unless its SHA-256 is ``expected`` (already :func:`parse_sha256`-ed).

    Checked before the file is opened by any reader, so a tampered or truncated download is one
    line naming both digests, never a model. Returns the digest.

    Raises:
        UserError: the file is missing or not a regular file, or its digest differs.
    """
    check_input(path, what, missing="check --ckpt / ckpt=")
    actual = sha256_file(path)
    if actual != expected:
        raise UserError(
            f"{label(what, path)} has SHA-256 {actual}, not the {expected} given with {option}: "
            "the file is not the one expected (changed, truncated or another file); get it again"
        )
    return actual


def sha256_lines(paths: Sequence[Path]) -> str:
    """``sha256sum``'s output for ``paths`` (all in one folder): one ``HEX  name`` line each."""
    return "".join(f"{sha256_file(p)}  {p.name}\n" for p in paths)


def sha256_path(path: str | os.PathLike[str]) -> Path:
    """Where the digest file of ``path`` goes: ``NAME.sha256`` beside it."""
    p = Path(path)
    return p.with_name(p.name + ".sha256")


def write_sha256_file(path: Path, covered: Sequence[Path]) -> None:
    """Write ``path`` (atomically) with the digests of ``covered``, files of ``path``'s folder.

    ``sha256sum -c path`` run in that folder then checks every one of them.
    """
    folders = {Path(os.path.abspath(p)).parent for p in covered}
    if folders != {Path(os.path.abspath(path)).parent}:
        raise ValueError(f"{path}: the files it covers must sit beside it, got {list(covered)}")
    atomic_write_text(path, sha256_lines(covered))
