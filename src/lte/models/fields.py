"""Typed, bounded fields: how a family's configuration says what each of its values may be.

A model description read from a file (a checkpoint, a release's ``args``) decides nothing by itself:
every value goes through the :class:`Rule` of its field, which checks its type and range and returns
it in the one type the model keeps (an ``int``, a ``float``, a tuple of ints). A family declares its
fields once, in a frozen :class:`FamilyConfig` dataclass beside its class (``param(rule, default)``),
and everything that reads or writes a description reads that declaration: the model description
(:mod:`lte.models.spec`), the labels (:mod:`lte.models.identity`), training's size checks and the
official-release adapters (:mod:`lte.checkpoint`).

A bad value is a :class:`FieldError` naming the field's path; callers turn it into one
:class:`~lte.errors.UserError` line. No torch here: this is the leaf every other module reads.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

#: Upper bounds that no real network reaches: they stop a file from asking for absurd allocations.
MAX_WIDTH = 4096
MAX_DEPTH = 256
MAX_LIST = 64


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` on one line, cut to ``limit`` characters, for error messages."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def key_listing(keys: list[str]) -> str:
    """The first five of ``keys`` and how many more, for a one-line message about weights."""
    return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")


class FieldError(Exception):
    """A field failed validation; carries the field path and what was expected (internal)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path} {message}")
        self.path = path
        self.message = message


def is_int(value: Any) -> bool:
    """A true ``int``: ``True`` is not a number of blocks, ``16.0`` and ``"16"`` are not ints."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An ``int`` or ``float`` that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- rules ----------------------------------------------------------------------------------------


class Rule:
    """What one field may hold. Call it on a value read from a file (``rule(value, path)``): the
    value in the field's type, or a :class:`FieldError`. :meth:`plain` converts a trusted value
    (a constructor argument) to that type without checking it."""

    def __call__(self, value: Any, path: str) -> Any:
        raise NotImplementedError

    def plain(self, value: Any) -> Any:
        """``value`` in the type the model keeps (no range check: constructors do their own)."""
        return value


@dataclass(frozen=True)
class IntRule(Rule):
    """An int in ``[lo, hi]``, optionally even or odd (see :func:`int_field`)."""

    lo: int
    hi: int
    even: bool = False
    odd: bool = False

    def __call__(self, value: Any, path: str) -> int:
        ok = is_int(value) and self.lo <= value <= self.hi
        ok = ok and not (self.even and value % 2) and not (self.odd and value % 2 == 0)
        if not ok:
            article = (
                "an even"
                if self.even
                else "an odd"
                if self.odd
                else "a positive"
                if self.lo == 1
                else "an"
            )
            bound = f"<= {self.hi}" if self.lo == 1 else f"from {self.lo} to {self.hi}"
            raise FieldError(path, f"must be {article} int {bound}, got {short_repr(value)}")
        return int(value)

    def plain(self, value: Any) -> int:
        return int(value)


@dataclass(frozen=True)
class FloatRule(Rule):
    """A finite number in ``[lo, hi]``, ends optionally open (see :func:`float_field`)."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False

    def __call__(self, value: Any, path: str) -> float:
        ok = is_number(value) and math.isfinite(value)
        if ok:
            v = float(value)
            ok = (v > self.lo if self.lo_open else v >= self.lo) and (
                v < self.hi if self.hi_open else v <= self.hi
            )
        if not ok:
            lo_op, hi_op = (">" if self.lo_open else ">="), ("<" if self.hi_open else "<=")
            what = f"a finite number {lo_op} {self.lo:g} and {hi_op} {self.hi:g}"
            raise FieldError(path, f"must be {what}, got {short_repr(value)}")
        return float(value)

    def plain(self, value: Any) -> float:
        return float(value)


@dataclass(frozen=True)
class ConstRule(Rule):
    """Exactly ``expected``, of the same type (see :func:`const_field`)."""

    expected: Any

    def __call__(self, value: Any, path: str) -> Any:
        if type(value) is not type(self.expected) or value != self.expected:
            raise FieldError(path, f"must be {self.expected!r}, got {short_repr(value)}")
        return value

    def plain(self, value: Any) -> Any:
        return type(self.expected)(value)


@dataclass(frozen=True)
class BoolRule(Rule):
    """``True`` or ``False``, nothing else: ``1`` and ``"true"`` are not switches (see
    :func:`bool_field`)."""

    def __call__(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise FieldError(path, f"must be true or false, got {short_repr(value)}")
        return value

    def plain(self, value: Any) -> bool:
        return bool(value)


@dataclass(frozen=True)
class IntListRule(Rule):
    """A list (or tuple) of 1 to ``max_len`` ints in ``[lo, hi]``, kept as a tuple."""

    lo: int
    hi: int
    max_len: int

    def __call__(self, value: Any, path: str) -> tuple[int, ...]:
        if not isinstance(value, list | tuple) or not 1 <= len(value) <= self.max_len:
            raise FieldError(
                path,
                f"must be a list of 1 to {self.max_len} positive ints, got {short_repr(value)}",
            )
        item = IntRule(self.lo, self.hi)
        return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(value))

    def plain(self, value: Any) -> tuple[int, ...]:
        return tuple(int(v) for v in value)


def int_field(lo: int = 1, hi: int = MAX_WIDTH, *, even: bool = False, odd: bool = False) -> Rule:
    """An int in ``[lo, hi]`` (optionally even or odd)."""
    return IntRule(lo, hi, even, odd)


def float_field(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Rule:
    """A finite number in ``[lo, hi]`` (ends optionally open), returned as ``float``."""
    return FloatRule(lo, hi, lo_open, hi_open)


def const_field(expected: Any) -> Rule:
    """Exactly ``expected`` (same type), e.g. ``in_channels`` 3: every model here reads RGB."""
    return ConstRule(expected)


def bool_field() -> Rule:
    """A switch: exactly ``True`` or ``False`` (LMF's ``mod_scale`` / ``mod_shift``)."""
    return BoolRule()


def int_list_field(lo: int = 1, hi: int = MAX_WIDTH, max_len: int = MAX_LIST) -> Rule:
    """A list (or tuple) of 1 to ``max_len`` ints in ``[lo, hi]``, returned as a tuple."""
    return IntListRule(lo, hi, max_len)


#: Fields many families share.
IN_CHANNELS = const_field(3)
#: A fixed-scale encoder's output scale (SPEC: one network per scale 2, 3 or 4).
UPSCALE = int_field(2, 4)
#: Hidden widths of a decoder MLP.
MLP_HIDDEN = IntListRule(1, MAX_WIDTH, 32)


# --- dict nodes (release arguments, checkpoint entries) ---------------------------------------------


def check_node(
    data: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> None:
    """``data`` must be a dict holding every ``required`` key and no key outside ``required + optional``."""
    allowed = required + optional
    if not isinstance(data, Mapping):
        raise FieldError(path, f"must be a dict with {', '.join(allowed)}, got {short_repr(data)}")
    for key in data:
        if key not in allowed:
            raise FieldError(
                path, f"has unknown field {short_repr(key)} (expected {', '.join(allowed)})"
            )
    for key in required:
        if key not in data:
            raise FieldError(f"{path}.{key}", "is missing")


def one_of(
    value: Any, path: str, choices: Mapping[str, Any] | tuple[str, ...], what: str = ""
) -> Any:
    """``choices[value]`` (or ``value`` for a tuple) when ``value`` is one of the string keys."""
    if not isinstance(value, str) or value not in choices:
        expected = ", ".join(repr(c) if c == "" else c for c in choices)
        if what:
            raise FieldError(
                path, f"names an unknown {what} {short_repr(value)}: expected one of {expected}"
            )
        raise FieldError(path, f"must be one of {expected}, got {short_repr(value)}")
    return choices[value] if isinstance(choices, Mapping) else value


def must_be_true(value: Any, path: str, why: str) -> None:
    """``value`` must be exactly ``True`` (a released flag lte implements only one way)."""
    if value is not True:
        raise FieldError(path, f"must be True ({why}), got {short_repr(value)}")


# --- family configurations ------------------------------------------------------------------------


def param(rule: Rule, default: Any = dataclasses.MISSING, *, optional: bool = False) -> Any:
    """A :class:`FamilyConfig` field: its :class:`Rule`, its default, and whether a description may
    leave it out (``optional``: absent means ``None``, e.g. ``upscale`` of a feature extractor)."""
    return dataclasses.field(default=default, metadata={"rule": rule, "optional": optional})


_C = TypeVar("_C", bound="FamilyConfig")


@dataclass(frozen=True)
class FamilyConfig:
    """Base of a family's configuration: its constructor arguments, typed and bounded.

    Subclasses are frozen dataclasses whose fields are declared with :func:`param`, in the order of
    the class's ``config`` (and so of its description). Construction converts each value to its
    field's type (``Rule.plain``); :meth:`parse` is the checked way in, for data read from a file.
    """

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                object.__setattr__(self, f.name, f.metadata["rule"].plain(value))

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        """Each field's rule, in declaration order."""
        return {f.name: f.metadata["rule"] for f in dataclasses.fields(cls)}

    @classmethod
    def optional_fields(cls) -> frozenset[str]:
        """The fields a description may leave out (absent means ``None``)."""
        return frozenset(f.name for f in dataclasses.fields(cls) if f.metadata["optional"])

    @classmethod
    def parse(cls: type[_C], data: Mapping[str, Any], path: str, kind: str) -> _C:
        """The config of ``data`` (a description's fields, ``kind`` and all): every field present
        (but the optional ones), known, and within its rule; then :meth:`check`.

        Raises:
            FieldError: the first bad field, e.g. ``model.encoder.n_feats must be a positive int``.
        """
        rules = cls.rules()
        for key in data:
            if key != "kind" and key not in rules:
                raise FieldError(
                    path, f"has unknown field {short_repr(key)} ({kind} takes {', '.join(rules)})"
                )
        values: dict[str, Any] = {}
        for key, rule in rules.items():
            if key not in data and key in cls.optional_fields():
                continue
            if key not in data:
                raise FieldError(f"{path}.{key}", f"is missing ({kind} takes {', '.join(rules)})")
            values[key] = rule(data[key], f"{path}.{key}")
        config = cls(**values)
        config.check(path)
        return config

    def check(self, path: str) -> None:
        """Rules between fields (none by default); a :class:`FieldError` naming the field."""

    def to_dict(self) -> dict[str, Any]:
        """The constructor arguments as plain data (lists, not tuples); unset optional fields are
        left out, as the model's description has them."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata["optional"]:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out
