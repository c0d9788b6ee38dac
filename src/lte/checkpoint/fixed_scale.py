"""The released fixed-scale baselines (``edsr_baseline_x{2,3,4}``, ``rdn_x{2,4}``), read and written.

Released as the ``liif`` wrapper with no ``imnet_spec`` around an encoder that keeps its upsampler
(``encoder_spec.args.scale = s``, no ``no_upsampling``): LIIF then returns, for each query, the
nearest pixel of the encoder's RGB output. Read as the decoder family whose release is a
:class:`~lte.models.family.FixedScaleRelease` (``nearest``) plus ``upscale: s`` on the encoder, with
``scale_max = s``. Which encoders have such a tail is their family's ``upscale`` field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lte.checkpoint.official import (
    encoder_releases,
    encoder_spec,
    read_encoder,
    release_buffers,
    to_official_keys,
)
from lte.errors import UserError
from lte.models.families import decoder_families
from lte.models.family import DecoderFamily, DecoderRelease, FixedScaleRelease
from lte.models.fields import FieldError, check_node, must_be_true, one_of, short_repr
from lte.models.spec import ModelSpec
from lte.models.sr import SRModel


def _fixed_scale() -> tuple[DecoderFamily, FixedScaleRelease, DecoderRelease]:
    """The fixed-scale decoder family, its release and the release of the model it wraps."""
    for family in decoder_families():
        if isinstance(family.release, FixedScaleRelease):
            wrapped = next(
                f.release
                for f in decoder_families()
                if isinstance(f.release, DecoderRelease) and f.release.name == family.release.wraps
            )
            return family, family.release, wrapped
    raise LookupError("no decoder family reads the released fixed-scale baselines")


def is_fixed_scale(entry: Any) -> bool:
    """An official entry whose model is the wrapper without its MLP: a fixed-scale baseline."""
    _, release, wrapped = _fixed_scale()
    return (
        isinstance(entry, Mapping)
        and entry.get("name") == release.wraps
        and isinstance(entry.get("args"), Mapping)
        and "imnet_spec" not in entry["args"]
        and wrapped.mlp
    )


def fixed_scale_description(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The description of a released fixed-scale baseline (:func:`is_fixed_scale` holds).

    Raises:
        FieldError: the first argument the released code would not accept, or lte does not read.
    """
    family, release, wrapped = _fixed_scale()
    check_node(entry, "model", ("name", "sd"), ("args",))
    args = entry["args"]
    check_node(args, "model.args", ("encoder_spec",), wrapped.accepted)
    for flag in wrapped.flags:
        if flag in args:  # the released code ignores them without an MLP
            must_be_true(
                args[flag], f"model.args.{flag}", f"lte implements {wrapped.name} with it only"
            )
    path = "model.args.encoder_spec"
    enc_spec = args["encoder_spec"]
    check_node(enc_spec, path, ("name",), ("args",))
    encoders = encoder_releases(fixed_scale=True)
    enc_family, _ = one_of(enc_spec["name"], f"{path}.name", encoders, "fixed-scale encoder")
    enc_args = enc_spec.get("args", {})
    if not isinstance(enc_args, Mapping):
        raise FieldError(f"{path}.args", f"must be a dict, got {short_repr(enc_args)}")
    if enc_args.get("no_upsampling", False) is not False:
        raise FieldError(
            f"{path}.args.no_upsampling",
            "must be absent: a liif model without imnet_spec is a fixed-scale baseline whose "
            f"encoder keeps its upsampler, got {short_repr(enc_args['no_upsampling'])}",
        )
    upscale = enc_family.config.rules()["upscale"]
    scale = upscale(enc_args.get("scale", release.default_scale), f"{path}.args.scale")
    rest = {k: v for k, v in enc_args.items() if k not in ("scale", "no_upsampling")}
    encoder = read_encoder({"name": enc_spec["name"], "args": rest}, path)
    # Trained at its one scale: scale_max = s, as data=paired sets it (no cell reads it anyway).
    return {
        "decoder": {"kind": family.kind, **family.config().to_dict()},
        "encoder": {**encoder, "upscale": scale},
        "scale_max": float(scale),
    }


def fixed_scale_state(model: SRModel, spec: ModelSpec) -> dict[str, Any]:
    """The released ``{"model": {"name": "liif", "args", "sd"}}`` of a fixed-scale model."""
    _, release, _ = _fixed_scale()
    encoder = spec.encoder.to_dict()
    upscale = encoder.pop("upscale")
    if spec.scale_max != upscale:
        raise UserError(
            f"scale_max {spec.scale_max:g} cannot be stored in an official fixed-scale file (it "
            f"reads back as the model's scale, {upscale}): save it as an lte checkpoint"
        )
    enc_spec = encoder_spec(encoder)
    enc_args = {k: v for k, v in enc_spec["args"].items() if k != "no_upsampling"}
    enc_spec = {"name": enc_spec["name"], "args": {**enc_args, "scale": upscale}}
    sd = to_official_keys(model.state_dict())
    sd.update(release_buffers(encoder))
    return {"model": {"name": release.wraps, "args": {"encoder_spec": enc_spec}, "sd": sd}}


def is_fixed_scale_decoder(kind: str) -> bool:
    """Whether ``kind`` is the decoder of the released fixed-scale baselines (``nearest``)."""
    return _fixed_scale()[0].kind == kind
