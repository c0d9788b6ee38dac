"""lte's own checkpoints: the ``"lte"`` entry beside a Lightning ``state_dict``, formats 1 and 2.

Format 2 (written now): ``{"format_version": 2, "model": SRModel.describe(), "normalization",
"prefix"}``, the model as plain data validated by :class:`~lte.models.spec.ModelSpec`. Format 1
(older files) stored a resolved Hydra config with ``_target_`` strings: those strings are looked up
among the families' ``v1_targets``, never imported, and the rest is read as a format-2 description.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from lte.errors import UserError
from lte.models.families import decoder_families, encoder_families
from lte.models.fields import (
    FieldError,
    check_node,
    float_field,
    must_be_true,
    one_of,
    short_repr,
)
from lte.models.spec import DecoderSpec, EncoderSpec, ModelSpec, validate_scale_max
from lte.models.sr import SRModel

#: The normalisation every model here uses: ``(v - mean) / std`` on RGB in [0, 1].
NORMALIZATION = {"mean": 0.5, "std": 0.5}
#: The ``"lte"`` entry's layout written by :func:`checkpoint_metadata`.
FORMAT_VERSION = 2

_PREFIX = re.compile(r"^([A-Za-z_]\w*\.){0,4}$")  # "net.", "model.net.", or "" (no prefix)
_LABEL = re.compile(r"^[\w.=\-]{1,200}$")  # format-1 model_name / encoder_name

#: Format-1 ``_target_`` strings of the model (the only ones this project ever wrote).
_V1_MODEL_TARGETS = ("lte.models.SRModel", "lte.models.sr.SRModel")


def checkpoint_metadata(model: SRModel, prefix: str = "net.") -> dict[str, Any]:
    """The ``"lte"`` entry of a checkpoint: the model's own description, as plain data.

    ``prefix`` is where the model's weights sit in the checkpoint's ``state_dict`` (Lightning puts
    ``self.net`` under ``net.``).
    """
    return {
        "format_version": FORMAT_VERSION,
        "model": model.describe(),
        "normalization": dict(NORMALIZATION),
        "prefix": prefix,
    }


def _check_normalization(value: Any, path: str) -> None:
    check_node(value, path, ("mean", "std"))
    for key in ("mean", "std"):
        if float_field(-1e6, 1e6)(value[key], f"{path}.{key}") != NORMALIZATION[key]:
            raise FieldError(
                f"{path}.{key}",
                f"must be {NORMALIZATION[key]} (the only normalisation lte models use), "
                f"got {short_repr(value[key])}",
            )


def _check_prefix(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _PREFIX.match(value):
        raise FieldError(
            path, f"must be a weight-name prefix such as 'net.', got {short_repr(value)}"
        )
    return value


def _v1_node(data: Any, path: str, targets: Mapping[str, str], partial: bool) -> dict[str, Any]:
    """A format-1 Hydra node as a ``{"kind", ...}`` description: ``_target_`` looked up, never imported."""
    if not isinstance(data, Mapping):
        raise FieldError(
            path, f"must be a dict with _target_ and arguments, got {short_repr(data)}"
        )
    if "_target_" not in data:
        raise FieldError(f"{path}._target_", "is missing")
    kind = one_of(data["_target_"], f"{path}._target_", targets)
    if partial:
        if "_partial_" not in data:
            raise FieldError(f"{path}._partial_", "is missing")
        must_be_true(
            data["_partial_"], f"{path}._partial_", "the decoder is built from the encoder's width"
        )
    return {"kind": kind, **{k: v for k, v in data.items() if k not in ("_target_", "_partial_")}}


def _lte_v1_spec(meta: Mapping[str, Any], where: str) -> tuple[ModelSpec, str]:
    """A format-1 ``"lte"`` entry, read as data: known ``_target_`` strings map to kinds."""
    keys = ("config", "model_name", "encoder_name", "scale_max", "normalization", "prefix")
    encoder_targets = {t: f.kind for f in encoder_families() for t in f.v1_targets}
    decoder_targets = {t: f.kind for f in decoder_families() for t in f.v1_targets}
    try:
        check_node(meta, "lte", (*keys, "format_version"))
        # The stored labels: checked, then ignored (labels come from the model itself).
        for key in ("model_name", "encoder_name"):
            if not isinstance(meta[key], str) or not _LABEL.match(meta[key]):
                raise FieldError(
                    f"lte.{key}", f"must be a name such as 'lte', got {short_repr(meta[key])}"
                )
        _check_normalization(meta["normalization"], "lte.normalization")
        prefix = _check_prefix(meta["prefix"], "lte.prefix")
        config = meta["config"]
        check_node(config, "lte.config", ("model", "encoder"))
        check_node(config["model"], "lte.config.model", ("_target_", "decoder"))
        one_of(config["model"]["_target_"], "lte.config.model._target_", _V1_MODEL_TARGETS)
        decoder = _v1_node(
            config["model"]["decoder"], "lte.config.model.decoder", decoder_targets, True
        )
        encoder = _v1_node(config["encoder"], "lte.config.encoder", encoder_targets, False)
    except FieldError as err:
        raise UserError(f"{where}: {err}") from None
    spec = ModelSpec(
        EncoderSpec.from_dict(encoder, where, "lte.config.encoder"),
        DecoderSpec.from_dict(decoder, where, "lte.config.model.decoder"),
        validate_scale_max(meta["scale_max"], where, "lte.scale_max"),
    )
    return spec, prefix


def lte_spec(meta: Any, where: str) -> tuple[ModelSpec, str]:
    """The validated model description and weight prefix of an ``"lte"`` entry (format 1 or 2)."""
    try:
        if not isinstance(meta, Mapping):
            raise FieldError(
                "lte", f"must be a dict with format_version and model, got {short_repr(meta)}"
            )
        if "format_version" not in meta:
            raise FieldError("lte.format_version", "is missing")
        version = meta["format_version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise FieldError("lte.format_version", f"must be 1 or 2, got {short_repr(version)}")
        if version > FORMAT_VERSION:
            raise FieldError(
                "lte.format_version",
                f"is {version}: written by a newer lte (this one reads 1 and 2); upgrade lte",
            )
        if version == 1:
            return _lte_v1_spec(meta, where)
        check_node(meta, "lte", ("format_version", "model", "normalization", "prefix"))
        _check_normalization(meta["normalization"], "lte.normalization")
        prefix = _check_prefix(meta["prefix"], "lte.prefix")
    except FieldError as err:
        raise UserError(f"{where}: {err}") from None
    return ModelSpec.from_dict(meta["model"], where, "lte.model"), prefix


def lte_weights(raw: Mapping[Any, Any], prefix: str) -> dict[Any, Any]:
    """The model's weights of a ``state_dict``: the keys under ``prefix``, without it (entries
    that are not strings are kept for the weight checks to name)."""
    return {
        k.removeprefix(prefix) if isinstance(k, str) else k: v
        for k, v in raw.items()
        if not isinstance(k, str) or k.startswith(prefix)
    }
