"""A typed, validated model description: how a file says which network it holds, as data only.

A checkpoint must never decide which code runs. So a model is described by an allow-listed encoder
kind and decoder kind (:mod:`lte.models.families`: ``edsr``, ``rdn``, ``swinir``; ``lte``, ``liif``,
``metasr``, and ``nearest`` for the fixed-scale baselines, whose encoder has ``upscale``), each with
the fields its family declares (:class:`~lte.models.fields.FamilyConfig`, checked for type and
range), and ``scale_max``: exactly the shape of :meth:`lte.models.SRModel.describe`.
:meth:`ModelSpec.build` then calls those classes directly; no name read from a file is ever
imported, instantiated by Hydra or interpolated by OmegaConf.

Anything else (an unknown or missing key, a ``_target_``, a string or dict where a number belongs, a
bool where an int belongs, NaN) is a :class:`~lte.errors.UserError` of one line naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from lte.errors import UserError
from lte.models.families import (
    decoder_families,
    decoder_family,
    encoder_families,
    encoder_family,
)
from lte.models.family import DecoderFamily, EncoderFamily
from lte.models.fields import FamilyConfig, FieldError, float_field, short_repr
from lte.models.sr import FIXED_SCALE_DECODER, SRModel

_SCALE_MAX = float_field(1.0, 1e6)


class _Classes(Mapping[str, type]):
    """A live, read-only ``kind -> class`` view of the allow-listed families (registered ones too)."""

    def __init__(self, families: Callable[[], tuple[EncoderFamily | DecoderFamily, ...]]) -> None:
        self._families = families

    def __getitem__(self, kind: str) -> type:
        for family in self._families():
            if family.kind == kind:
                return family.module
        raise KeyError(kind)

    def __iter__(self) -> Iterator[str]:
        return (family.kind for family in self._families())

    def __len__(self) -> int:
        return len(self._families())


#: Encoder and decoder classes a description may name, by their ``kind``.
ENCODERS: Mapping[str, type] = _Classes(encoder_families)
DECODERS: Mapping[str, type] = _Classes(decoder_families)


def validate_scale_max(value: Any, where: str, path: str) -> float:
    """``scale_max`` as a float: finite and >= 1 (the largest training scale)."""
    try:
        return _SCALE_MAX(value, path)
    except FieldError as err:
        raise UserError(f"{where}: {err}") from None


def check_fixed_scale(spec: ModelSpec, where: str, path: str = "model") -> None:
    """A fixed-scale encoder (``upscale``) and the ``nearest`` decoder come together or not at all."""
    upscale = spec.encoder.arguments().get("upscale")
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


_P = TypeVar("_P", bound="_PartSpec")


@dataclass(frozen=True)
class _PartSpec:
    """A validated part: an allow-listed ``kind`` and its family's config (frozen, comparable)."""

    kind: str
    config: FamilyConfig

    #: The part's name in messages; set by each subclass.
    ROLE: ClassVar[str]

    @staticmethod
    def _family(kind: Any) -> EncoderFamily | DecoderFamily | None:
        raise NotImplementedError

    @staticmethod
    def _kinds() -> list[str]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls: type[_P], data: Any, where: str, path: str) -> _P:
        """Validate one ``{"kind": ..., **arguments}`` node (UserError naming ``path.field``)."""
        try:
            if not isinstance(data, Mapping):
                raise FieldError(
                    path,
                    f"must be a dict with 'kind' and the {cls.ROLE}'s fields, got {short_repr(data)}",
                )
            if "_target_" in data:
                raise FieldError(
                    path,
                    "holds a '_target_': a model is described by its kind and fields, never by "
                    "code to run",
                )
            kind = data.get("kind")
            family = cls._family(kind) if isinstance(kind, str) else None
            if family is None:
                raise FieldError(
                    f"{path}.kind",
                    f"must be one of {', '.join(cls._kinds())}, got {short_repr(kind)}",
                )
            config = family.config.parse(data, path, family.kind)
        except FieldError as err:
            raise UserError(f"{where}: {err}") from None
        return cls(family.kind, config)

    def to_dict(self) -> dict[str, Any]:
        """The ``describe()`` shape: ``{"kind": ..., **arguments}`` with lists."""
        return {"kind": self.kind, **self.arguments()}

    def arguments(self) -> dict[str, Any]:
        """The constructor arguments, lists as lists (unset optional fields left out)."""
        return self.config.to_dict()


@dataclass(frozen=True)
class EncoderSpec(_PartSpec):
    """A validated encoder, e.g. ``{"kind": "edsr", "n_resblocks": 16, ...}``."""

    ROLE: ClassVar[str] = "encoder"

    @staticmethod
    def _family(kind: Any) -> EncoderFamily | None:
        return encoder_family(kind)

    @staticmethod
    def _kinds() -> list[str]:
        return [f.kind for f in encoder_families()]

    @property
    def family(self) -> EncoderFamily:
        """The family declaration this encoder belongs to."""
        family = encoder_family(self.kind)
        assert family is not None  # from_dict found it; families are never removed
        return family

    def build(self) -> Any:
        """The encoder module, by calling the allow-listed class with the validated arguments."""
        return self.family.build(self.config)


@dataclass(frozen=True)
class DecoderSpec(_PartSpec):
    """A validated decoder, e.g. ``{"kind": "lte", "hidden_dim": 256, ...}`` (no ``in_channels``)."""

    ROLE: ClassVar[str] = "decoder"

    @staticmethod
    def _family(kind: Any) -> DecoderFamily | None:
        return decoder_family(kind)

    @staticmethod
    def _kinds() -> list[str]:
        return [f.kind for f in decoder_families()]

    @property
    def family(self) -> DecoderFamily:
        """The family declaration this decoder belongs to."""
        family = decoder_family(self.kind)
        assert family is not None
        return family

    def build(self, in_channels: int) -> Any:
        """The decoder module for an encoder of width ``in_channels``."""
        return self.family.build(self.config, in_channels)


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
