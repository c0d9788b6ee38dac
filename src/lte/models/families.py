"""The allow-list: which architecture families a model description (a checkpoint) may name.

A closed tuple in code, :data:`ENCODER_FAMILIES` and :data:`DECODER_FAMILIES`, of the declarations
that sit beside each class (``lte.models.edsr.FAMILY``, ...). Code outside lte adds its own families
from Python with :func:`register_encoder` / :func:`register_decoder`, e.g. in the module that defines
them; nothing read from a file or a config can add one. A checkpoint's ``kind`` is only ever looked
up here, and the class it finds is called directly: never imported by name, instantiated by Hydra
or interpolated.
"""

from __future__ import annotations

import re

from lte.models import edsr, rdn, swinir
from lte.models.decoders import liif, lm_liif, lm_lte, lte, metasr, nearest
from lte.models.decoders.base import Decoder
from lte.models.family import DecoderFamily, EncoderFamily
from lte.models.fields import FamilyConfig

#: lte's encoder families, in the order messages list them.
ENCODER_FAMILIES: tuple[EncoderFamily, ...] = (edsr.FAMILY, rdn.FAMILY, swinir.FAMILY)
#: lte's decoder families, in the order messages list them.
DECODER_FAMILIES: tuple[DecoderFamily, ...] = (
    lte.FAMILY,
    liif.FAMILY,
    metasr.FAMILY,
    nearest.FAMILY,
    lm_lte.FAMILY,
    lm_liif.FAMILY,
)

_registered_encoders: list[EncoderFamily] = []
_registered_decoders: list[DecoderFamily] = []

_KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def encoder_families() -> tuple[EncoderFamily, ...]:
    """lte's encoder families, then those registered from Python, in registration order."""
    return (*ENCODER_FAMILIES, *_registered_encoders)


def decoder_families() -> tuple[DecoderFamily, ...]:
    """lte's decoder families, then those registered from Python, in registration order."""
    return (*DECODER_FAMILIES, *_registered_decoders)


def encoder_family(kind: object) -> EncoderFamily | None:
    """The encoder family named ``kind``, or ``None``."""
    return next((f for f in encoder_families() if f.kind == kind), None)


def decoder_family(kind: object) -> DecoderFamily | None:
    """The decoder family named ``kind``, or ``None``."""
    return next((f for f in decoder_families() if f.kind == kind), None)


def _check_new(family: EncoderFamily | DecoderFamily, known: tuple, role: str) -> bool:
    """Whether ``family`` still needs adding (``False``: this very family is already there)."""
    if any(f is family for f in known):
        return False
    kind = getattr(family.module, "kind", None)
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise ValueError(
            f"{role} family {family.module.__name__}: its class needs a kind of lower-case "
            f"letters, digits and _ (e.g. kind = 'my_{role}'), got {kind!r}"
        )
    if any(f.kind == kind for f in known):
        raise ValueError(f"an {role} family named {kind!r} already exists: choose another kind")
    if not (isinstance(family.config, type) and issubclass(family.config, FamilyConfig)):
        raise TypeError(f"{role} family {kind!r}: config must be a FamilyConfig dataclass")
    return True


def register_encoder(family: EncoderFamily) -> None:
    """Allow model descriptions to name ``family`` (an encoder defined outside lte).

    Registering the same family again does nothing; another family with a taken kind, or preset
    names that are already labels, is refused. Use this from Python only, never with a name read
    from a file.
    """
    if not isinstance(family, EncoderFamily):
        raise TypeError(f"register_encoder takes an EncoderFamily, got {type(family).__name__}")
    if not _check_new(family, encoder_families(), "encoder"):
        return
    taken = {name for f in encoder_families() for name in f.presets}
    clash = sorted(taken & set(family.presets))
    if clash:
        raise ValueError(f"encoder family {family.kind!r}: preset names taken: {', '.join(clash)}")
    _registered_encoders.append(family)


def register_decoder(family: DecoderFamily) -> None:
    """Allow model descriptions to name ``family`` (a decoder defined outside lte).

    Registering the same family again does nothing; another family with a taken kind is refused.
    """
    if not isinstance(family, DecoderFamily):
        raise TypeError(f"register_decoder takes a DecoderFamily, got {type(family).__name__}")
    if not (isinstance(family.module, type) and issubclass(family.module, Decoder)):
        raise TypeError("register_decoder: the family's module must subclass Decoder")
    if _check_new(family, decoder_families(), "decoder"):
        _registered_decoders.append(family)
