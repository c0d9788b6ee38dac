"""Load any checkpoint lte reads (an official release, an lte file or an lte ``.safetensors``) into
an ``SRModel``, once.

A ``.safetensors`` file (its suffix or its first bytes: :func:`~.safetensors_format.is_safetensors`)
is read by :mod:`.safetensors_format`, with no pickle involved at all; any other file once by
:func:`~lte.checkpoint.reading.read_checkpoint` (``torch.load(weights_only=True)``), whose layout
decides which reader describes the model (:mod:`.lte_format`, :mod:`.official`, :mod:`.fixed_scale`).
Every layout ends in the same checked build (:mod:`.building`). What the file records besides the
model (the training run) comes back with it, so no caller opens the file a second time. An ONNX
export is no checkpoint: :mod:`lte.onnx_runtime` runs it, and this module says so in one line.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lte.checkpoint.building import build_with_weights, check_storage, state_dict_of
from lte.checkpoint.fixed_scale import fixed_scale_description, is_fixed_scale
from lte.checkpoint.layouts import from_layout_keys
from lte.checkpoint.lte_format import lte_spec, lte_weights
from lte.checkpoint.official import official_description, release_buffers, to_model_keys
from lte.checkpoint.reading import TrainingRun, read_checkpoint, training_run
from lte.checkpoint.safetensors_format import is_safetensors, read_safetensors
from lte.errors import UserError, quote
from lte.models.fields import FieldError
from lte.models.identity import labels
from lte.models.spec import ModelSpec
from lte.models.sr import SRModel


@dataclass
class LoadedModel:
    """A model read from a checkpoint, with what inference needs to know about it.

    ``model_name`` / ``encoder_name`` are labels of what the model *is* (``lte.models.identity``),
    never names stored in the file.
    """

    model: SRModel
    source: str  # "official", "lte" or "safetensors"
    path: Path
    #: The description the model was built from (``scale_max`` as given to :func:`load_checkpoint`).
    spec: ModelSpec
    #: The released model name of an official file (``lte``, ``lte-fast``, ...), or the one a
    #: ``.safetensors`` export records; None for lte files. ``lte-fast`` is LTE's function in
    #: another layout: labels say ``lte``, this says where from.
    release: str | None = None
    #: The W&B run that trained it, as the file records it (lte files written by training), or None.
    training_run: TrainingRun | None = None

    @property
    def scale_max(self) -> float:
        """The model's largest training scale (inference beyond it enlarges the cell)."""
        return self.model.scale_max

    @property
    def model_name(self) -> str:
        """Decoder label, e.g. ``lte``."""
        return labels(self.model.describe())[0]

    @property
    def encoder_name(self) -> str:
        """Encoder label, e.g. ``edsr_baseline`` or ``edsr-n_resblocks=2-n_feats=16``."""
        return labels(self.model.describe())[1]


def with_scale_max(spec: ModelSpec, scale_max: float | None) -> ModelSpec:
    """``spec`` with ``scale_max`` replaced when given (any finite positive number: a user's
    ``--scale-max`` may be below the files' lower bound of 1)."""
    if scale_max is None:
        return spec
    value = float(scale_max) if isinstance(scale_max, int | float) else math.nan
    if isinstance(scale_max, bool) or not (math.isfinite(value) and value > 0):
        raise UserError(f"scale_max must be a finite number > 0, got {scale_max!r}")
    return dataclasses.replace(spec, scale_max=value)


def _official(
    entry: Mapping[str, Any], where: str, scale_max: float | None
) -> tuple[SRModel, ModelSpec]:
    try:
        if is_fixed_scale(entry):
            description, layout = fixed_scale_description(entry), None
        else:
            description, layout = official_description(entry)
    except FieldError as err:
        raise UserError(f"{where}: {err}") from None
    spec = with_scale_max(ModelSpec.from_dict(description, where), scale_max)
    sd = state_dict_of(entry["sd"], where, "model.sd")
    check_storage(sd, where)
    if layout is not None:
        sd = from_layout_keys(sd, layout, where)
    skipped = set(release_buffers(spec.encoder))
    return build_with_weights(spec, to_model_keys(sd, skipped), where), spec


def refuse_onnx(path: Path) -> None:
    """An ``.onnx`` export is run by ``lte.upscale`` (:mod:`lte.onnx_runtime`), never loaded as
    a checkpoint: one line saying what to give instead."""
    if path.suffix.lower() == ".onnx":
        raise UserError(
            f"checkpoint {quote(path)} is an ONNX export: only lte.upscale runs it (--ckpt); "
            "give the .safetensors, .ckpt or .pth it was exported from"
        )


def load_with_file(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    *,
    scale_max: float | None = None,
) -> tuple[LoadedModel, dict[str, Any]]:
    """:func:`load_checkpoint`, and the file's whole dict as read (for a converter that keeps it;
    a ``.safetensors`` file's tensors)."""
    p = Path(path)
    where = f"checkpoint {quote(p)}"
    refuse_onnx(p)
    if is_safetensors(p):
        found = read_safetensors(p, map_location)
        spec = with_scale_max(found.spec, scale_max)
        sd = lte_weights(found.tensors, found.prefix)
        check_storage(sd, where)
        model = build_with_weights(spec, sd, where)
        loaded = LoadedModel(model, "safetensors", p, spec, found.release)
        loaded.model.eval()
        return loaded, dict(found.tensors)
    obj = read_checkpoint(p, map_location)
    if "lte" in obj:
        spec, prefix = lte_spec(obj["lte"], where)
        spec = with_scale_max(spec, scale_max)
        if "state_dict" not in obj:
            raise UserError(f"{where} has an 'lte' entry but no 'state_dict' of weights")
        sd = lte_weights(state_dict_of(obj["state_dict"], where, "state_dict"), prefix)
        check_storage(sd, where)
        model = build_with_weights(spec, sd, where)
        loaded = LoadedModel(model, "lte", p, spec, training_run=training_run(obj))
    elif isinstance(obj.get("model"), Mapping) and "sd" in obj["model"]:
        model, spec = _official(obj["model"], where, scale_max)
        loaded = LoadedModel(model, "official", p, spec, obj["model"]["name"])
    else:
        raise UserError(
            f"'{p}' is not an LTE/LIIF/Meta-SR checkpoint: expected an official release "
            "({'model': {'name', 'args', 'sd'}}), an lte training checkpoint ('state_dict' and "
            "'lte') or an lte .safetensors export"
        )
    loaded.model.eval()
    return loaded, obj


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    *,
    scale_max: float | None = None,
) -> LoadedModel:
    """Load an official release, an lte checkpoint or an lte ``.safetensors`` into an
    :class:`SRModel` in eval mode.

    ``scale_max`` overrides the model's largest training scale (the file's own, 4 for official
    files): inference enlarges the cell beyond it. The model is built with it, never changed after.

    Raises:
        UserError: the file is missing, unreadable, not a model checkpoint, describes a model with an
            unknown kind or a bad field, or its weights don't match the model (one line naming the
            field or the keys); ``scale_max`` is not a finite positive number.
    """
    return load_with_file(path, map_location, scale_max=scale_max)[0]
