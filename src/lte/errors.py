"""One error type for mistakes a user can fix, so every entry point can print one line and exit 2.

Raise :class:`UserError` with a message that names the file, option or value and says how to fix it.
Entry points wrap their body in :func:`exit_on_user_error`; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

#: Exit status for bad input, as argparse uses.
EXIT_USAGE = 2


class UserError(Exception):
    """A problem with the user's input (file, option or value), reported as one line."""


def exit_on_user_error(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a CLI entry point: a :class:`UserError` becomes ``error: ...`` on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(EXIT_USAGE) from None

    return wrapper
