"""Write checkpoints: lte's own format, the official release layouts, and conversion between them.

Every file is written atomically (a temp file in the same folder, then a rename) and never over an
existing one unless asked. An official file is written from the model's description through the
same family tables that read it (:mod:`.official`), so what is written reads back as the same model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from lte.atomic import atomic_path
from lte.checkpoint.fixed_scale import fixed_scale_state, is_fixed_scale_decoder
from lte.checkpoint.layouts import layout_of, refuse_other_decoder, to_layout_keys
from lte.checkpoint.loading import LoadedModel, load_with_file
from lte.checkpoint.lte_format import checkpoint_metadata
from lte.checkpoint.official import (
    OFFICIAL_SCALE_MAX,
    decoder_arguments,
    encoder_spec,
    official_models,
    release_buffers,
    to_official_keys,
)
from lte.errors import UserError
from lte.files import check_output
from lte.models.spec import ModelSpec
from lte.models.sr import SRModel


def _layouts() -> tuple[str, ...]:
    return ("standard", *(name for name, (_, layout) in official_models().items() if layout))


#: The released layouts :func:`official_state` can write: ``standard`` is each decoder's own
#: release (``lte``, ``liif``, ``metasr``); ``lte-fast`` is LTE with its MLP as 1x1 convolutions.
OFFICIAL_LAYOUTS = _layouts()
#: What :func:`convert_checkpoint` (``scripts/convert_checkpoint.py --to``) can write.
CONVERT_TARGETS = ("lte", "official", *OFFICIAL_LAYOUTS[1:])


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temp file in the same folder, then rename: a crash never leaves half a file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(p) as tmp:
        torch.save(obj, tmp)


def _refuse_overwrite(path: Path, overwrite: bool) -> None:
    """Before any work: an existing file (or dangling link) is kept unless ``overwrite``; a folder,
    FIFO or read-only file never is; a missing folder is made later by :func:`atomic_save`."""
    check_output(path, what="", overwrite=True if overwrite else None, make_folder=True)


def check_layout(layout: Any) -> str:
    """``layout`` if it is one of :data:`OFFICIAL_LAYOUTS`, else a one-line UserError."""
    layouts = _layouts()
    if not isinstance(layout, str) or layout not in layouts:
        raise UserError(
            f"layout {layout!r} is not an official layout: use one of {', '.join(layouts)}"
        )
    return layout


def official_state(model: SRModel, layout: str = "standard") -> dict[str, Any]:
    """The ``{"model": {"name", "args", "sd"}}`` dict of an official release holding ``model``'s weights.

    Names and arguments come from ``model.describe()``. A configuration the released code cannot
    express (e.g. ``scale_max`` other than 4, a Meta-SR MLP other than ``[256]``) is refused.
    ``layout="lte-fast"`` writes an LTE model as the ``lte-fast`` release (EDSR-baseline-LTE+): the
    same weights, its MLP as 1x1 convolutions under ``layers.*``.
    """
    check_layout(layout)
    spec = ModelSpec.from_dict(model.describe(), "model to export")
    if is_fixed_scale_decoder(spec.decoder.kind):
        if layout != "standard":
            refuse_other_decoder(layout, spec.decoder.kind)
        return fixed_scale_state(model, spec)
    decoder = spec.decoder.to_dict()
    if spec.scale_max != OFFICIAL_SCALE_MAX:
        raise UserError(
            f"scale_max {spec.scale_max:g} cannot be stored in an official file (the released code "
            f"assumes {OFFICIAL_SCALE_MAX:g}): save it as an lte checkpoint"
        )
    args: dict[str, Any] = {"encoder_spec": encoder_spec(spec.encoder.to_dict())}
    sd = to_official_keys(model.state_dict())
    if layout == "standard":
        name, rest = decoder_arguments(decoder)
    else:
        refuse_other_decoder(layout, spec.decoder.kind)
        _, other = layout_of(layout)
        name, rest = layout, other.write(decoder)
        sd = to_layout_keys(sd, other)
    sd.update(release_buffers(spec.encoder))
    return {"model": {"name": name, "args": args | rest, "sd": sd}}


def save_official(
    model: SRModel,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    layout: str = "standard",
) -> None:
    """Write ``model`` as an official-format ``.pth`` (atomically), loadable by the released code.

    ``layout``: ``standard`` (the decoder's own release) or ``lte-fast`` (LTE+, LTE models only).

    Raises:
        UserError: ``path`` exists and ``overwrite`` is false, or the model has no official form
            in ``layout``.
    """
    p = Path(path)
    check_layout(layout)
    _refuse_overwrite(p, overwrite)
    atomic_save(official_state(model, layout), p)


def save_lte(model: SRModel, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Write ``model`` as a minimal lte checkpoint (``state_dict`` under ``net.`` plus ``"lte"``)."""
    p = Path(path)
    _refuse_overwrite(p, overwrite)
    sd = {f"net.{k}": v for k, v in model.state_dict().items()}
    atomic_save({"state_dict": sd, "lte": checkpoint_metadata(model)}, p)


def convert_checkpoint(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], to: str = "lte"
) -> LoadedModel:
    """Rewrite any readable checkpoint (format 1, 2 or an official release) as ``to`` at ``dst``.

    ``to="lte"`` writes the current format; a Lightning checkpoint keeps every other entry (optimizer
    state, loops), so training can still resume from it. ``to="official"`` writes the released layout,
    ``to="lte-fast"`` the ``lte-fast`` release of an LTE model (LTE+). ``dst`` is never overwritten.
    """
    source, target = Path(src), Path(dst)
    if to not in CONVERT_TARGETS:
        raise UserError(f"--to must be one of {', '.join(CONVERT_TARGETS)}, got {to!r}")
    _refuse_overwrite(target, False)
    loaded, obj = load_with_file(source)
    if to != "lte":
        save_official(loaded.model, target, layout="standard" if to == "official" else to)
    elif loaded.source != "lte":  # an official release or a .safetensors: no Lightning entries
        save_lte(loaded.model, target)
    else:
        obj["lte"] = checkpoint_metadata(loaded.model, prefix=obj["lte"]["prefix"])
        atomic_save(obj, target)
    return loaded
