"""Human labels for a model description (``SRModel.describe()``), for run names, results and W&B.

The label comes from what the model *is*, never from the name of the config file that built it: a
new ``conf/encoder/edsr_wide.yaml`` cannot relabel EDSR-baseline. The encoders of the papers have
their usual names; any other hyper-parameters are spelled out after the family name. A fixed-scale
encoder (``upscale=s``) is its feature extractor's label plus ``_x<s>`` (``edsr_baseline_x2``,
``rdn_x4``), and its model label is its decoder kind, ``nearest``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lte.models.families import encoder_families, encoder_family


def named_encoders() -> dict[str, dict[str, Any]]:
    """The papers' encoder configurations, by label: family plus every constructor argument.

    Read from each family's declaration (its ``labels``: ``edsr_baseline``, ``edsr``, ``rdn``,
    ``swinir``; tiny test presets are not labels).
    """
    return {name: f.describe(name) for f in encoder_families() for name in f.labels}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return a == b


def _fmt(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "x".join(_fmt(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def encoder_label(encoder: Mapping[str, Any]) -> str:
    """``edsr_baseline``, ``edsr``, ``rdn``, ``swinir``, or e.g. ``edsr-n_resblocks=2-n_feats=16``;
    fixed-scale encoders end in ``_x<s>`` (``edsr_baseline_x2``, ``edsr-n_feats=16_x3``)."""
    if encoder.get("upscale") is not None:
        rest = {k: v for k, v in encoder.items() if k != "upscale"}
        return f"{encoder_label(rest)}_x{_fmt(encoder['upscale'])}"
    for name, known in named_encoders().items():
        if set(known) == set(encoder) and all(_same(encoder[k], v) for k, v in known.items()):
            return name
    kind = str(encoder.get("kind"))
    family = encoder_family(kind)
    base = family.describe(family.labels[0]) if family is not None and family.labels else {}
    diff = [
        f"{k}={_fmt(v)}" for k, v in encoder.items() if k != "kind" and not _same(base.get(k), v)
    ]
    return "-".join([kind, *diff])


def model_label(decoder: Mapping[str, Any]) -> str:
    """The decoder family: ``lte``, ``liif``, ``metasr``, ``nearest`` (widths are in the description)."""
    return str(decoder.get("kind"))


def labels(description: Mapping[str, Any]) -> tuple[str, str]:
    """``(model_name, encoder_name)`` of an ``SRModel.describe()`` dict, e.g. ``("lte", "rdn")``."""
    return model_label(description["decoder"]), encoder_label(description["encoder"])
