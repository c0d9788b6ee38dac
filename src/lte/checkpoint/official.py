"""The officially released LTE/LIIF/Meta-SR/LMF layout, read and written through the family declarations.

A release is ``{"model": {"name", "args", "sd"}}``: decoder parameters at the top level (``coef.*``,
``imnet.*``), encoder ones under ``encoder.``. Which names, arguments, defaults and buffers exist is
not written here: each family's ``release`` table (``lte.models.edsr.RELEASE``, ...) says it, and
the functions below use that one table both to read a file (:func:`official_description`) and to
write one (:func:`encoder_spec`, :func:`decoder_arguments`), so the two directions cannot drift.
A decoder with another layout (LTE+'s ``lte-fast``) declares it too (:mod:`.layouts`).

Every argument a file holds is checked against what the released code accepts; each unsupported or
ill-typed one is a one-line error naming it (``model.args.hidden_dim``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lte.errors import UserError
from lte.models.families import decoder_families, encoder_families, encoder_family
from lte.models.family import DecoderFamily, DecoderLayout, DecoderRelease, EncoderFamily
from lte.models.fields import (
    MAX_WIDTH,
    FieldError,
    check_node,
    float_field,
    int_field,
    must_be_true,
    one_of,
    short_repr,
)
from lte.models.spec import EncoderSpec

#: ``scale_max`` of the released models: all were trained on scales U(1, 4).
OFFICIAL_SCALE_MAX = 4.0

_UPSAMPLERS = ("", "none", "pixelshuffle", "pixelshuffledirect", "nearest+conv")


def _check_upsampler(value: Any, path: str) -> None:
    one_of(value, path, _UPSAMPLERS)


#: Released encoder arguments that only concern the upsampler or data range (absent here): checked
#: for type, then dropped. The released code accepts them for every encoder.
IGNORED_ENCODER_ARGS = {
    "scale": int_field(1, 64),
    "upscale": int_field(1, 64),
    "rgb_range": float_field(0.0, 1e4, lo_open=True),
    "img_range": float_field(0.0, 1e4, lo_open=True),
    "img_size": int_field(1, MAX_WIDTH),
    "upsampler": _check_upsampler,
}


def encoder_releases(fixed_scale: bool = False) -> dict[str, tuple[EncoderFamily, str]]:
    """Released encoder name -> (its family, the preset it stands for); with ``fixed_scale``, only
    the families that keep an upsampler tail."""
    return {
        name: (family, preset)
        for family in encoder_families()
        if family.release is not None and (family.fixed_scale or not fixed_scale)
        for name, preset in family.release.names.items()
    }


def read_encoder(enc_spec: Any, path: str) -> dict[str, Any]:
    """The encoder description of a released ``encoder_spec`` (a ``FieldError`` naming a bad field)."""
    check_node(enc_spec, path, ("name",), ("args",))
    releases = encoder_releases()
    family, preset = one_of(enc_spec["name"], f"{path}.name", releases, "encoder")
    release = family.release
    encoder = family.describe(preset)
    args = enc_spec.get("args", {})
    allowed = (*release.arguments, "no_upsampling", *IGNORED_ENCODER_ARGS, *release.choices)
    check_node(args, f"{path}.args", (), allowed)
    rules = family.config.rules()
    for key, value in args.items():
        where = f"{path}.args.{key}"
        if key == "no_upsampling":
            must_be_true(value, where, "lte uses the encoder without its upsampler")
        elif key in release.choices:
            encoder |= dict(one_of(value, where, release.choices[key]))
        elif key in IGNORED_ENCODER_ARGS:
            IGNORED_ENCODER_ARGS[key](value, where)
        else:
            field = release.arguments[key]
            checked = rules[field](value, where)
            encoder[field] = list(checked) if isinstance(checked, tuple) else checked
    return encoder


def encoder_spec(encoder: Mapping[str, Any]) -> dict[str, Any]:
    """The released ``encoder_spec`` for an encoder description, or UserError if there is none.

    A preset is written under its released name with no arguments; any other configuration under
    the family's ``general`` name with every argument spelled out, when the release can express it
    (a ``choices`` value for those fields, the other fields at the general preset's values).
    """
    args: dict[str, Any] = {"no_upsampling": True}
    kind = encoder["kind"]
    family = encoder_family(kind)
    release = None if family is None else family.release
    if family is not None and release is not None:
        for name, preset in release.names.items():
            if family.describe(preset) == dict(encoder):
                return {"name": name, "args": args}
        if release.general is not None:
            args |= {arg: encoder[field] for arg, field in release.arguments.items()}
            covered = set(release.arguments.values())
            for arg, values in release.choices.items():
                match = [
                    value
                    for value, fields in values.items()
                    if all(encoder[k] == v for k, v in fields.items())
                ]
                if not match:
                    break
                args[arg] = match[0]
                covered |= {k for fields in values.values() for k in fields}
            else:
                base = family.describe(release.names[release.general])
                if all(encoder[k] == base[k] for k in encoder if k not in covered):
                    return {"name": release.general, "args": args}
    raise UserError(
        f"the {kind} encoder {short_repr(dict(encoder), 200)} has no official-format equivalent "
        "(the released code builds only its paper configurations): save it as an lte checkpoint"
    )


def release_buffers(encoder: EncoderSpec | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The buffers a released file holds for this encoder that the model recomputes or never uses,
    under their released names (``encoder.sub_mean.weight``, ...)."""
    data = encoder.to_dict() if isinstance(encoder, EncoderSpec) else dict(encoder)
    family = encoder_family(data["kind"])
    if family is None or family.release is None or family.release.buffers is None:
        return {}
    return {f"encoder.{k}": v for k, v in family.release.buffers(data).items()}


# --- decoders ---------------------------------------------------------------------------------------


def official_models() -> dict[str, tuple[DecoderFamily, DecoderLayout | None]]:
    """Released model name -> (its decoder family, its other layout or ``None`` for the standard)."""
    out: dict[str, tuple[DecoderFamily, DecoderLayout | None]] = {}
    releases = [
        (family, family.release)
        for family in decoder_families()
        if isinstance(family.release, DecoderRelease)
    ]
    for family, release in releases:
        out[release.name] = (family, None)
    for family, release in releases:
        for layout in release.layouts:
            out[layout.name] = (family, layout)
    return out


def _read_decoder(family: DecoderFamily, args: Mapping[str, Any]) -> dict[str, Any]:
    """The decoder description of a standard release's arguments (allow-listed already)."""
    release = family.release
    assert isinstance(release, DecoderRelease)
    if release.read is not None:  # nested specs (LMF): the family reads its own arguments
        rest = {k: v for k, v in args.items() if k != "encoder_spec"}
        return {"kind": family.kind, **release.read(rest, "model.args")}
    rules = family.config.rules()
    decoder = {"kind": family.kind, **release.defaults.to_dict()}
    if release.mlp and "imnet_spec" in args:
        path = "model.args.imnet_spec"
        check_node(args["imnet_spec"], path, ("name", "args"))
        one_of(args["imnet_spec"]["name"], f"{path}.name", ("mlp",))
        imnet = args["imnet_spec"]["args"]
        check_node(imnet, f"{path}.args", ("hidden_list",), ("out_dim",))
        out_dim = int_field(1, MAX_WIDTH)
        if "out_dim" in imnet and out_dim(imnet["out_dim"], f"{path}.args.out_dim") != 3:
            raise FieldError(f"{path}.args.out_dim", f"must be 3 (RGB), got {imnet['out_dim']}")
        hidden = rules["mlp_hidden"](imnet["hidden_list"], f"{path}.args.hidden_list")
        decoder["mlp_hidden"] = list(hidden)
    for arg, field in release.arguments.items():
        if arg in args:
            decoder[field] = rules[field](args[arg], f"model.args.{arg}")
    for flag in release.flags:
        if flag in args:
            must_be_true(
                args[flag], f"model.args.{flag}", f"lte implements {release.name} with {flag} only"
            )
    return decoder


def official_description(entry: Any) -> tuple[dict[str, Any], DecoderLayout | None]:
    """The ``describe()``-shaped description of a released ``{"name", "args", "sd"}`` entry (not
    a fixed-scale baseline), and the decoder's other layout when the name is one (``lte-fast``).

    Raises:
        FieldError: the first argument the released code would not accept, or lte does not read.
    """
    check_node(entry, "model", ("name", "sd"), ("args",))
    models = official_models()
    family, layout = one_of(entry["name"], "model.name", models, "model name")
    release = family.release
    assert isinstance(release, DecoderRelease)
    args = entry.get("args", {})
    accepted = release.accepted if layout is None else layout.arguments
    check_node(args, "model.args", ("encoder_spec",), accepted)
    encoder = read_encoder(args["encoder_spec"], "model.args.encoder_spec")
    if layout is None:
        decoder = _read_decoder(family, args)
    else:
        rest = {k: v for k, v in args.items() if k != "encoder_spec"}
        decoder = {"kind": family.kind, **layout.read(rest, "model.args")}
    return {"decoder": decoder, "encoder": encoder, "scale_max": OFFICIAL_SCALE_MAX}, layout


def decoder_arguments(decoder: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The released model name and arguments (besides ``encoder_spec``) of a decoder description.

    Raises:
        UserError: the family has no release, or a field the release cannot carry differs from the
            release's default (Meta-SR's fixed MLP).
    """
    family = next(f for f in decoder_families() if f.kind == decoder["kind"])
    release = family.release
    if not isinstance(release, DecoderRelease):
        raise UserError(
            f"the {family.kind} decoder has no official-format equivalent: save it as an lte "
            "checkpoint"
        )
    if release.write is not None:
        return release.name, release.write(decoder)
    args: dict[str, Any] = {}
    if release.mlp:
        hidden = list(decoder["mlp_hidden"])
        args["imnet_spec"] = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": hidden}}
    carried = {*(("mlp_hidden",) if release.mlp else ()), *release.arguments.values()}
    defaults = release.defaults.to_dict()
    for field, default in defaults.items():
        if field not in carried and decoder[field] != default:
            raise UserError(
                f"{release.title} with {field} {decoder[field]} has no official-format "
                f"equivalent (the released code fixes {default}): save it as an lte checkpoint"
            )
    args |= {arg: decoder[field] for arg, field in release.arguments.items()}
    return release.name, args


# --- weight names -----------------------------------------------------------------------------------


def to_model_keys(official_sd: Mapping[str, Any], skipped: set[str]) -> dict[str, Any]:
    """Official key names → SRModel's (decoder parameters move under ``decoder.``), without the
    ``skipped`` keys (:func:`release_buffers`: recomputed or unused here)."""
    out = {}
    for key, value in official_sd.items():
        if isinstance(key, str) and key in skipped:
            continue
        out[key if str(key).startswith("encoder.") else f"decoder.{key}"] = value
    return out


def to_official_keys(model_sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`to_model_keys` for the parameters this model holds."""
    return {k.removeprefix("decoder."): v for k, v in model_sd.items()}
