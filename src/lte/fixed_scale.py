"""A fixed-scale model (one network per scale, e.g. EDSR-baseline ×2) makes its native scale only.

The one rule behind three commands: ``lte.test`` scores such a model only at its native scale
(:func:`check_scales`), ``lte.upscale`` makes only native × the input (:func:`check_output_size`),
and ``lte.compare`` marks its other cells as not its scale (:func:`is_native`, with the native
scale of a results record from :func:`record_native_scale`). The native scale itself is the
model's (``SRModel.native_scale``: ``None`` for an arbitrary-scale model). Imports nothing heavy,
so comparing results stays free of torch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from lte.errors import UserError


def is_native(native: int | None, scale: float) -> bool:
    """Whether a model of native scale ``native`` makes ``scale`` (``None``: any scale)."""
    return native is None or float(scale) == float(native)


def check_scales(native: int | None, scales: Iterable[float], *, what: str = "the model") -> None:
    """``lte.test``'s ``scales`` against the native scale; ``what`` names the model in the message.

    Raises:
        UserError: one line naming the first other scale and the native one.
    """
    for s in scales:
        if not is_native(native, s):
            raise UserError(
                f"scales: x{float(s):g} is not available: {what} is a fixed-scale model with "
                f"native scale x{native} (it only upsamples by {native}); use scales=[{native}]"
            )


def check_output_size(
    native: int | None,
    lr_hw: tuple[int, int],
    out_hw: tuple[int, int],
    *,
    option: str,
    what: str,
) -> None:
    """``lte.upscale``'s output size against native × the input; ``option`` is the request
    (``--scale 3``, ``--size 61x40``), ``what`` the model (``checkpoint 'x2.pth'``).

    Raises:
        UserError: one line giving the only size the model makes from this input.
    """
    (h, w), (out_h, out_w) = lr_hw, out_hw
    if is_native(native, out_h / h) and is_native(native, out_w / w):
        return
    raise UserError(
        f"{option}: {what} is a fixed-scale model with native scale x{native}: it only makes "
        f"{native * w}x{native * h} from this {w}x{h} image; use --scale {native}"
    )


# Records written before they carried ``native_scale``: ``lte.models.identity`` labels a
# fixed-scale model ``nearest`` (its decoder) with the encoder label ending in ``_x<s>``.
_LEGACY_MODEL = "nearest"
_LEGACY_ENCODER = re.compile(r"_x(\d+)$")


def record_native_scale(rec: Mapping[str, Any]) -> int | None:
    """The native scale a results record was measured with, ``None`` for an arbitrary-scale model.

    ``lte.test`` stores it in the record (``native_scale``, only for fixed-scale models). For records
    without the key (files written before it existed, published rows) it is read back from the
    labels, whose convention :mod:`lte.models.identity` defines.
    """
    if "native_scale" in rec:
        return rec["native_scale"]
    found = _LEGACY_ENCODER.search(str(rec.get("encoder", "")))
    return int(found.group(1)) if rec.get("model") == _LEGACY_MODEL and found else None
