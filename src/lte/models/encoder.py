"""The encoder contract: what ``SRModel``, tiled inference and the test protocol need of an encoder.

Declared as a :class:`typing.Protocol` and checked when an ``SRModel`` is built, so an encoder that
forgets an attribute fails at construction with its name, instead of silently taking a default
(a missing ``receptive_radius`` used to mean "global attention").
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class Encoder(Protocol):
    """An LR feature extractor ``(B, 3, h, w) -> (B, out_channels, h, w)``.

    Attributes:
        out_channels: width of the feature map (the decoder's ``in_channels``).
        pad_multiple: input sides the test protocol pads to a multiple of (SwinIR: its window);
            0 when any size works as is.
        receptive_radius: LR pixels on each side that one output feature depends on (EDSR-baseline
            34, RDN 131): tiles are encoded with this much context. ``None`` means global (SwinIR's
            attention): no finite margin makes tiles exact.
        upscale: ``None`` for a feature extractor; ``s`` for a fixed-scale encoder that keeps its
            upsampler and outputs ``(B, 3, s·h, s·w)`` RGB (``SRModel.native_scale``). lte's
            encoders declare it; a feature extractor written elsewhere may leave it out.
    """

    out_channels: int
    pad_multiple: int
    receptive_radius: int | None
    upscale: int | None

    def __call__(self, x: Tensor) -> Tensor: ...


def check_encoder(encoder: object) -> int | None:
    """The encoder's ``upscale`` (``None``: a feature extractor), once the :class:`Encoder`
    contract is checked; a ``TypeError`` names what ``encoder`` lacks or gets wrong."""
    name = type(encoder).__name__
    missing = [
        a for a in ("out_channels", "pad_multiple", "receptive_radius") if not hasattr(encoder, a)
    ]
    if missing:
        raise TypeError(
            f"encoder {name} does not declare {', '.join(missing)}: an lte encoder declares "
            "out_channels: int, pad_multiple: int and receptive_radius: int | None "
            "(see lte.models.encoder.Encoder)"
        )
    for attr in ("out_channels", "pad_multiple"):
        value = getattr(encoder, attr)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise TypeError(f"encoder {name}: {attr} must be an int >= 0, got {value!r}")
    if encoder.out_channels == 0:  # type: ignore[attr-defined]
        raise TypeError(f"encoder {name}: out_channels must be positive, got 0")
    radius = encoder.receptive_radius  # type: ignore[attr-defined]
    if radius is not None and (
        not isinstance(radius, int) or isinstance(radius, bool) or radius < 0
    ):
        raise TypeError(
            f"encoder {name}: receptive_radius must be an int >= 0 or None (global), got {radius!r}"
        )
    if not callable(encoder):
        raise TypeError(f"encoder {name} is not callable")
    # The one optional member: a feature extractor may leave it out (absent means None).
    upscale = encoder.upscale if hasattr(encoder, "upscale") else None  # type: ignore[attr-defined]
    if upscale is not None and (
        not isinstance(upscale, int) or isinstance(upscale, bool) or upscale < 1
    ):
        raise TypeError(
            f"encoder {name}: upscale must be None (feature extractor) or an int >= 1, "
            f"got {upscale!r}"
        )
    return upscale
