"""The one-line contract of every entry point (lte.errors): bad input, Ctrl-C, and names that
could break a line."""

from __future__ import annotations

import pytest

from cli import run_main
from lte.errors import Interrupted, UserError, escape_controls, exit_on_user_error, quote


@exit_on_user_error
def _entry(kind: str) -> None:
    if kind == "user":
        name = "a.png\nerror: fake"
        raise UserError(f"image {quote(name)} is broken")
    if kind == "raw-newline":
        raise UserError("first\nsecond")
    if kind == "ctrl-c":
        raise KeyboardInterrupt
    if kind == "interrupted":
        raise Interrupted("3 of 4 records are in 'r.json'")
    if kind == "bug":
        raise ValueError("a bug keeps its traceback")


@pytest.mark.parametrize(
    ("kind", "code", "line"),
    [
        ("user", 2, r"error: image 'a.png\nerror: fake' is broken"),
        ("raw-newline", 2, r"error: first\nsecond"),
        ("ctrl-c", 130, "interrupted: stopped by Ctrl-C before it finished"),
        ("interrupted", 130, "interrupted: 3 of 4 records are in 'r.json'"),
    ],
)
def test_entry_points_answer_in_one_line(kind: str, code: int, line: str) -> None:
    res = run_main(lambda: _entry(kind), [], prog="lte-x")
    assert res.returncode == code
    assert res.stderr == line + "\n"
    assert res.stdout == ""


def test_a_bug_keeps_its_traceback() -> None:
    res = run_main(lambda: _entry("bug"), [], prog="lte-x")
    assert res.returncode == 1 and "Traceback" in res.stderr and "ValueError" in res.stderr


def test_escaping_keeps_printable_text() -> None:
    assert escape_controls("photo é 日本.png") == "photo é 日本.png"
    assert escape_controls("a\tb\x1b[31m\u2028") == r"a\tb\x1b[31m\u2028"
    assert quote("x\ny") == r"'x\ny'"
