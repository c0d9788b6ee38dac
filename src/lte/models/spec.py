"""A typed, validated model description: how a file says which network it holds, as data only.

A checkpoint must never decide which code runs. So a model is described by an allow-listed encoder
kind (``edsr``, ``rdn``, ``swinir``) and decoder kind (``lte``, ``liif``, ``metasr``, and ``nearest``
for the fixed-scale baselines, whose encoder has ``upscale``), each with an
allow-listed set of fields checked for type and range, and ``scale_max``: exactly the shape of
:meth:`lte.models.SRModel.describe`. :meth:`ModelSpec.build` then calls those classes directly; no
name read from a file is ever imported, instantiated by Hydra or interpolated by OmegaConf.

Anything else (an unknown or missing key, a ``_target_``, a string or dict where a number belongs, a
bool where an int belongs, NaN) is a :class:`~lte.errors.UserError` of one line naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from lte.errors import UserError
from lte.models.decoders import LIIFDecoder, LTEDecoder, MetaSRDecoder, NearestDecoder
from lte.models.edsr import EDSR
from lte.models.rdn import RDN
from lte.models.sr import FIXED_SCALE_DECODER, SRModel
from lte.models.swinir import SwinIR

#: Encoder and decoder classes a description may name, by their ``kind`` attribute.
ENCODERS: dict[str, type] = {cls.kind: cls for cls in (EDSR, RDN, SwinIR)}
DECODERS: dict[str, type] = {
    cls.kind: cls for cls in (LTEDecoder, LIIFDecoder, MetaSRDecoder, NearestDecoder)
}

#: Upper bounds that no real network reaches: they stop a file from asking for absurd allocations.
_MAX_WIDTH = 4096
_MAX_DEPTH = 256
_MAX_LIST = 64


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` on one line, cut to ``limit`` characters, for error messages."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class FieldError(Exception):
    """A field failed validation; carries the field path and what was expected (internal)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path} {message}")
        self.path = path
        self.message = message


Validator = Callable[[Any, str], Any]


def is_int(value: Any) -> bool:
    """A true ``int``: ``True`` is not a number of blocks, ``16.0`` and ``"16"`` are not ints."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An ``int`` or ``float`` that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def int_field(
    lo: int = 1, hi: int = _MAX_WIDTH, *, even: bool = False, odd: bool = False
) -> Validator:
    """An int in ``[lo, hi]`` (optionally even or odd)."""
    article = "an even" if even else "an odd" if odd else "a positive" if lo == 1 else "an"
    what = f"{article} int " + (f"<= {hi}" if lo == 1 else f"from {lo} to {hi}")

    def check(value: Any, path: str) -> int:
        ok = is_int(value) and lo <= value <= hi
        ok = ok and not (even and value % 2) and not (odd and value % 2 == 0)
        if not ok:
            raise FieldError(path, f"must be {what}, got {short_repr(value)}")
        return int(value)

    return check


def float_field(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Validator:
    """A finite number in ``[lo, hi]`` (ends optionally open), returned as ``float``."""
    what = (
        f"a finite number {'>' if lo_open else '>='} {lo:g} and {'<' if hi_open else '<='} {hi:g}"
    )

    def check(value: Any, path: str) -> float:
        ok = is_number(value) and math.isfinite(value)
        if ok:
            v = float(value)
            ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok:
            raise FieldError(path, f"must be {what}, got {short_repr(value)}")
        return float(value)

    return check


def const_field(expected: Any) -> Validator:
    """Exactly ``expected`` (same type), e.g. ``in_channels`` 3: every model here reads RGB."""

    def check(value: Any, path: str) -> Any:
        if type(value) is not type(expected) or value != expected:
            raise FieldError(path, f"must be {expected!r}, got {short_repr(value)}")
        return value

    return check


def int_list_field(lo: int = 1, hi: int = _MAX_WIDTH, max_len: int = _MAX_LIST) -> Validator:
    """A list (or tuple) of 1 to ``max_len`` ints in ``[lo, hi]``, returned as a tuple."""

    def check(value: Any, path: str) -> tuple[int, ...]:
        if not isinstance(value, list | tuple) or not 1 <= len(value) <= max_len:
            raise FieldError(
                path, f"must be a list of 1 to {max_len} positive ints, got {short_repr(value)}"
            )
        item = int_field(lo, hi)
        return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(value))

    return check


_IN_CHANNELS = const_field(3)
_MLP = int_list_field(1, _MAX_WIDTH, 32)
#: A fixed-scale encoder's output scale (SPEC: one network per scale 2, 3 or 4).
_UPSCALE = int_field(2, 4)

#: Allow-listed fields of each encoder kind, in the order of the class's ``config``.
ENCODER_FIELDS: dict[str, dict[str, Validator]] = {
    "edsr": {
        "n_resblocks": int_field(1, _MAX_DEPTH),
        "n_feats": int_field(1, _MAX_WIDTH),
        "res_scale": float_field(0.0, 10.0, lo_open=True),
        "in_channels": _IN_CHANNELS,
        "upscale": _UPSCALE,
    },
    "rdn": {
        "g0": int_field(1, _MAX_WIDTH),
        "n_blocks": int_field(1, _MAX_DEPTH),
        "n_layers": int_field(1, _MAX_DEPTH),
        "growth": int_field(1, _MAX_WIDTH),
        "kernel": int_field(1, 15, odd=True),  # 'same' padding needs an odd kernel
        "in_channels": _IN_CHANNELS,
        "upscale": _UPSCALE,
    },
    "swinir": {
        "embed_dim": int_field(1, _MAX_WIDTH),
        "depths": int_list_field(1, _MAX_DEPTH, 32),
        "num_heads": int_list_field(1, 512, 32),
        "window_size": int_field(1, 64),
        "mlp_ratio": float_field(0.0, 64.0, lo_open=True),
        "drop_path_rate": float_field(0.0, 1.0, hi_open=True),
        "out_channels": int_field(1, _MAX_WIDTH),
        "in_channels": _IN_CHANNELS,
    },
}
#: Allow-listed fields of each decoder kind (``in_channels`` comes from the encoder).
DECODER_FIELDS: dict[str, dict[str, Validator]] = {
    "lte": {"hidden_dim": int_field(2, _MAX_WIDTH, even=True), "mlp_hidden": _MLP},
    "liif": {"mlp_hidden": _MLP},
    "metasr": {"mlp_hidden": _MLP},
    "nearest": {},
}
#: Fields a description may leave out: absent means the default (``upscale``: a feature extractor).
OPTIONAL_FIELDS = frozenset({"upscale"})
_SCALE_MAX = float_field(1.0, 1e6)


def validate_scale_max(value: Any, where: str, path: str) -> float:
    """``scale_max`` as a float: finite and >= 1 (the largest training scale)."""
    try:
        return _SCALE_MAX(value, path)
    except FieldError as err:
        raise UserError(f"{where}: {err}") from None


def _check_swinir(params: dict[str, Any], path: str) -> None:
    """SwinIR's cross-field rules: one head count per stage, and heads dividing the width."""
    depths, heads = params["depths"], params["num_heads"]
    if len(depths) != len(heads):
        raise FieldError(
            f"{path}.num_heads",
            f"must have one entry per stage of depths ({len(depths)}), got {len(heads)}",
        )
    for i, h in enumerate(heads):
        if params["embed_dim"] % h:
            raise FieldError(
                f"{path}.num_heads[{i}]",
                f"must divide embed_dim {params['embed_dim']}, got {h}",
            )


def _fields(data: Any, path: str, table: Mapping[str, Mapping[str, Validator]], family: str):
    """Validate one ``{"kind": ..., **fields}`` node against its kind's field table."""
    if not isinstance(data, Mapping):
        raise FieldError(
            path, f"must be a dict with 'kind' and the {family}'s fields, got {short_repr(data)}"
        )
    if "_target_" in data:
        raise FieldError(
            path,
            "holds a '_target_': a model is described by its kind and fields, never by code to run",
        )
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in table:
        raise FieldError(
            f"{path}.kind", f"must be one of {', '.join(table)}, got {short_repr(kind)}"
        )
    allowed = table[kind]
    for key in data:
        if key != "kind" and key not in allowed:
            raise FieldError(
                path,
                f"has unknown field {short_repr(key)} ({kind} takes {', '.join(allowed)})",
            )
    params: dict[str, Any] = {}
    for key, check in allowed.items():
        if key not in data and key in OPTIONAL_FIELDS:
            continue
        if key not in data:
            raise FieldError(f"{path}.{key}", f"is missing ({kind} takes {', '.join(allowed)})")
        params[key] = check(data[key], f"{path}.{key}")
    if kind == "swinir":
        _check_swinir(params, path)
    return kind, params


def check_fixed_scale(spec: ModelSpec, where: str, path: str = "model") -> None:
    """A fixed-scale encoder (``upscale``) and the ``nearest`` decoder come together or not at all."""
    upscale = dict(spec.encoder.params).get("upscale")
    nearest = spec.decoder.kind == FIXED_SCALE_DECODER
    if upscale is not None and not nearest:
        raise UserError(
            f"{where}: {path}.encoder.upscale is {upscale} (a fixed-scale encoder that outputs RGB): "
            f"its decoder must be {FIXED_SCALE_DECODER!r}, got {spec.decoder.kind!r}"
        )
    if nearest and upscale is None:
        raise UserError(
            f"{where}: {path}.decoder.kind {FIXED_SCALE_DECODER!r} reads a fixed-scale encoder's "
            f"RGB: {path}.encoder needs upscale (2, 3 or 4)"
        )


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


_P = TypeVar("_P", bound="_PartSpec")


@dataclass(frozen=True)
class _PartSpec:
    """A validated part: an allow-listed ``kind`` and its constructor arguments (lists as tuples)."""

    kind: str
    params: tuple[tuple[str, Any], ...]

    #: Per-kind allowed fields, and the part's name in messages; set by each subclass.
    FIELDS: ClassVar[Mapping[str, Any]]
    ROLE: ClassVar[str]

    @classmethod
    def from_dict(cls: type[_P], data: Any, where: str, path: str) -> _P:
        """Validate one ``{"kind": ..., **arguments}`` node (UserError naming ``path.field``)."""
        try:
            kind, params = _fields(data, path, cls.FIELDS, cls.ROLE)
        except FieldError as err:
            raise UserError(f"{where}: {err}") from None
        return cls(kind, tuple(params.items()))

    def to_dict(self) -> dict[str, Any]:
        """The ``describe()`` shape: ``{"kind": ..., **arguments}`` with lists."""
        return {"kind": self.kind, **self.arguments()}

    def arguments(self) -> dict[str, Any]:
        """The constructor arguments, lists as lists."""
        return {k: _plain(v) for k, v in self.params}


@dataclass(frozen=True)
class EncoderSpec(_PartSpec):
    """A validated encoder, e.g. ``{"kind": "edsr", "n_resblocks": 16, ...}``."""

    FIELDS: ClassVar[Mapping[str, Any]] = ENCODER_FIELDS
    ROLE: ClassVar[str] = "encoder"

    def build(self) -> Any:
        """The encoder module, by calling the allow-listed class with the validated arguments."""
        return ENCODERS[self.kind](**self.arguments())


@dataclass(frozen=True)
class DecoderSpec(_PartSpec):
    """A validated decoder, e.g. ``{"kind": "lte", "hidden_dim": 256, ...}`` (no ``in_channels``)."""

    FIELDS: ClassVar[Mapping[str, Any]] = DECODER_FIELDS
    ROLE: ClassVar[str] = "decoder"

    def build(self, in_channels: int) -> Any:
        """The decoder module for an encoder of width ``in_channels``."""
        return DECODERS[self.kind](in_channels=in_channels, **self.arguments())


@dataclass(frozen=True)
class ModelSpec:
    """A validated :class:`~lte.models.SRModel` description: encoder, decoder and ``scale_max``."""

    encoder: EncoderSpec
    decoder: DecoderSpec
    scale_max: float

    @classmethod
    def from_dict(
        cls, data: Any, where: str = "model description", path: str = "model"
    ) -> ModelSpec:
        """Validate ``data`` (the shape of ``SRModel.describe()``).

        Args:
            data: ``{"decoder": {...}, "encoder": {...}, "scale_max": float}``.
            where: what is being read, for messages (e.g. ``"checkpoint 'x.ckpt'"``).
            path: the name of ``data`` inside it, for messages (``model.encoder.n_feats``).

        Raises:
            UserError: one line naming the first bad field and what it must be.
        """
        try:
            if not isinstance(data, Mapping):
                raise FieldError(
                    path, f"must be a dict with decoder, encoder, scale_max, got {short_repr(data)}"
                )
            extra = [k for k in data if k not in ("decoder", "encoder", "scale_max")]
            if extra:
                raise FieldError(
                    path,
                    f"has unknown field {short_repr(extra[0])} (expected decoder, encoder, scale_max)",
                )
            for key in ("decoder", "encoder", "scale_max"):
                if key not in data:
                    raise FieldError(f"{path}.{key}", "is missing")
        except FieldError as err:
            raise UserError(f"{where}: {err}") from None
        spec = cls(
            EncoderSpec.from_dict(data["encoder"], where, f"{path}.encoder"),
            DecoderSpec.from_dict(data["decoder"], where, f"{path}.decoder"),
            validate_scale_max(data["scale_max"], where, f"{path}.scale_max"),
        )
        check_fixed_scale(spec, where, path)
        return spec

    def to_dict(self) -> dict[str, Any]:
        """The description as plain data, equal to the built model's ``describe()``."""
        return {
            "decoder": self.decoder.to_dict(),
            "encoder": self.encoder.to_dict(),
            "scale_max": self.scale_max,
        }

    def build(self) -> SRModel:
        """A freshly initialised :class:`SRModel` of this description (load weights afterwards)."""
        encoder = self.encoder.build()
        return SRModel(encoder, self.decoder.build(encoder.out_channels), scale_max=self.scale_max)
