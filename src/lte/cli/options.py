"""What the argparse commands (``lte.upscale``, ``lte.fourier``, ``lte.compare``) share.

- :class:`Parser`: argparse whose mistakes are one ``error:`` line and exit 2, like every other bad
  input in lte (argparse itself prints the usage and its own ``prog: error:`` line);
- :func:`check_not_input`: a command that reads one file and writes another never replaces the
  one it reads, even with ``--overwrite``; every other rule for the output (an existing file only
  with ``--overwrite``, never a folder, ...) is :func:`lte.files.check_output`.
"""

from __future__ import annotations

import argparse
import os
from typing import NoReturn

from lte.errors import UserError
from lte.files import label


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2 through :func:`lte.errors.exit_on_user_error`).

    ``command`` is how users run it (``python -m lte.upscale``); messages point at its ``--help``.
    """

    def __init__(self, *, command: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.command = command

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see {self.command} --help)")


def check_not_input(
    source: str | os.PathLike[str], output: str | os.PathLike[str], *, what: str
) -> None:
    """Refuse an ``output`` that is the command's input file ``source``, even with ``--overwrite``:
    the same path after links, or the same file under another name (a hard link).

    Raises:
        UserError: one line naming ``what`` (``output``, ``--out``) and the path.
    """
    same = os.path.realpath(source) == os.path.realpath(output)  # a link loop is not a crash here
    if not same and os.path.exists(source) and os.path.exists(output):
        try:
            same = os.path.samefile(source, output)
        except OSError:
            same = False
    if same:
        raise UserError(
            f"{label(what, output)} is the input image: choose another name (the input is "
            "never replaced, even with --overwrite)"
        )
