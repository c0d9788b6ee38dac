"""A decoder's other released layouts (LTE+'s ``lte-fast``): their weight names, both ways.

A :class:`~lte.models.family.DecoderLayout` is declared beside its decoder (``LTE_FAST`` in
``lte.models.decoders.lte``): its model name, arguments, and :class:`~lte.models.family.KeyRule` s saying which of
our keys it stores under which names, and how each tensor changes on the way (LTE+'s MLP as 1x1
convolutions, its frequency channels in another pairing). The same rules read a file
(:func:`from_layout_keys`) and write one (:func:`to_layout_keys`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lte.checkpoint.official import official_models
from lte.errors import UserError
from lte.models.family import DecoderFamily, DecoderLayout, DecoderRelease
from lte.models.fields import key_listing


def layout_of(name: str) -> tuple[DecoderFamily, DecoderLayout]:
    """The decoder family owning the released layout ``name`` (``lte-fast``), and the layout."""
    family, layout = official_models()[name]
    assert layout is not None
    return family, layout


def refuse_other_decoder(name: str, kind: str) -> None:
    """A decoder's other layout holds that decoder only (a one-line UserError otherwise)."""
    family, _ = layout_of(name)
    if family.kind != kind:
        release = family.release
        title = release.title if isinstance(release, DecoderRelease) else family.kind
        raise UserError(
            f"layout {name!r} holds {title} models only, and this model's decoder is "
            f"{kind}: export it with the standard layout"
        )


def from_layout_keys(sd: Mapping[Any, Any], layout: DecoderLayout, where: str) -> dict[Any, Any]:
    """A layout's weights in the standard release's names and order (its :class:`KeyRule` s read
    backwards); keys it stores elsewhere but a file holds under our name are refused."""
    for rule in layout.keys:
        stray = [
            k
            for k in sd
            if isinstance(k, str) and rule.ours != rule.theirs and k.startswith(rule.ours)
        ]
        if stray:
            raise UserError(
                f"{where} has weights this model does not use: {key_listing(stray)} "
                f"(an {layout.name} release holds {rule.what} under {rule.theirs}*)"
            )
    out: dict[Any, Any] = {}
    for key, value in sd.items():
        rule = next(
            (r for r in layout.keys if isinstance(key, str) and key.startswith(r.theirs)), None
        )
        if rule is not None:
            key, value = rule.ours + key.removeprefix(rule.theirs), rule.load(value)
        out[key] = value
    return out


def to_layout_keys(
    sd: Mapping[str, torch.Tensor], layout: DecoderLayout
) -> dict[str, torch.Tensor]:
    """Inverse of :func:`from_layout_keys`: the standard names and tensors as ``layout`` stores them."""
    out = {}
    for key, value in sd.items():
        rule = next((r for r in layout.keys if key.startswith(r.ours)), None)
        if rule is not None:
            key, value = rule.theirs + key.removeprefix(rule.ours), rule.save(value)
        out[key] = value
    return out
