"""One error type for mistakes a user can fix, so every entry point can print one line and exit 2.

Raise :class:`UserError` with a message that names the file, option or value and says how to fix it.
Entry points wrap their body in :func:`exit_on_user_error`; anything else is a bug and keeps its
traceback.

Hydra wraps whatever an instantiated object raises in an ``InstantiationException``, and OmegaConf
raises its own errors for missing or ill-typed config values. Both are user mistakes too, so
:func:`as_user_error` unwraps or translates them into one :class:`UserError` line.
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
#: Exit status after Ctrl-C, as shells report a process ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A problem with the user's input (file, option or value), reported as one line."""


class Interrupted(Exception):  # noqa: N818 (a stop the user asked for, not an error)
    """The user stopped the command (Ctrl-C, SIGTERM); the message says what was kept.

    An entry point prints ``interrupted: <message>`` and exits :data:`EXIT_INTERRUPTED`. Raise it
    where there is something to say (a checkpoint saved, records already in the results file);
    a bare ``KeyboardInterrupt`` gets a generic line.
    """


def escape_controls(text: str) -> str:
    """``text`` with every non-printable character escaped as ``repr`` does (``\\n``, ``\\x1b``).

    A file name may hold a newline or a terminal escape; printed raw it could split a one-line
    error in two (the second a fake ``error:``) or recolour the terminal.
    """
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def quote(name: object) -> str:
    """``'name'`` for a message: a path or value in quotes, non-printable characters escaped."""
    return f"'{escape_controls(str(name))}'"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def as_user_error(err: BaseException) -> UserError | None:
    """The :class:`UserError` that ``err`` stands for, or ``None`` when it is a bug.

    - a ``UserError`` anywhere in the ``__cause__`` / ``__context__`` chain (e.g. raised inside a
      Hydra-instantiated object) is returned as is;
    - OmegaConf's missing-value and type errors name the key and say how to set it.
    """
    from omegaconf import errors as oc

    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, UserError):
            return cur
        cur = cur.__cause__ or cur.__context__
    cur, seen = err, set()
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, oc.OmegaConfBaseException):
            key = getattr(cur, "full_key", None) or "?"
            if isinstance(cur, oc.MissingMandatoryValue | oc.InterpolationToMissingValueError):
                return UserError(f"{key} is required but not set: add {key}=VALUE to the command")
            if isinstance(cur, oc.ValidationError | oc.ConfigTypeError | oc.ConfigValueError):
                return UserError(f"{key}: {_first_line(cur)}")
            if isinstance(cur, oc.ConfigKeyError | oc.ConfigAttributeError):
                return UserError(f"config key {key} is unknown or not set: {_first_line(cur)}")
            if isinstance(cur, oc.InterpolationResolutionError):
                return UserError(f"{key}: cannot resolve {_first_line(cur)}")
        cur = cur.__cause__ or cur.__context__
    return None


def exit_on_user_error(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a CLI entry point: a user mistake becomes ``error: ...`` on stderr and exit 2.

    That covers :class:`UserError` however deeply Hydra or Lightning wrapped it, and OmegaConf's
    config errors (see :func:`as_user_error`); anything else propagates with its traceback.
    Ctrl-C (``KeyboardInterrupt``) and :class:`Interrupted` become ``interrupted: ...`` and exit
    130. Whatever the message holds, it is printed on one line (:func:`escape_controls`).
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            print("interrupted: stopped by Ctrl-C before it finished", file=sys.stderr)
            raise SystemExit(EXIT_INTERRUPTED) from None
        except Interrupted as err:
            print(f"interrupted: {escape_controls(str(err))}", file=sys.stderr)
            raise SystemExit(EXIT_INTERRUPTED) from None
        except Exception as err:
            user = as_user_error(err)
            if user is None:
                raise
            print(f"error: {escape_controls(str(user))}", file=sys.stderr)
            raise SystemExit(EXIT_USAGE) from None

    return wrapper
