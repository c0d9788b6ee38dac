"""Read and write model checkpoints: the officially released LTE/LIIF/Meta-SR files and lte's own.

Two layouts load into the same :class:`~lte.models.SRModel`:

* official: ``{"model": {"name", "args", "sd"}}`` as released by the LTE and LIIF projects, decoder
  parameters at the top level (``coef.*``, ``imnet.*``) and encoder ones under ``encoder.``; the
  ``lte-fast`` release (EDSR-baseline-LTE+) is the same LTE with its MLP written as 1x1
  convolutions (``layers.*``), and loads into the same LTE decoder (see :data:`OFFICIAL_LAYOUTS`);
* lte: a Lightning checkpoint (or any dict) with ``state_dict`` (parameters under ``net.``) and an
  ``"lte"`` entry ``{"format_version": 2, "model": SRModel.describe(), "normalization", "prefix"}``.
  Format-1 files (a Hydra config with ``_target_`` strings) still load, read strictly as data.

A checkpoint is data, never code. Files are read with ``torch.load(weights_only=True)``, and the
model they describe is validated field by field through :class:`~lte.models.spec.ModelSpec` and built
by calling allow-listed classes: nothing read from a file reaches Hydra's ``instantiate``, an import
or an OmegaConf interpolation. Every bad value is a one-line :class:`~lte.errors.UserError`.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lte.atomic import atomic_path
from lte.errors import UserError, quote
from lte.files import check_input, check_output
from lte.models.identity import NAMED_ENCODERS, labels
from lte.models.spec import (
    DecoderSpec,
    EncoderSpec,
    FieldError,
    ModelSpec,
    float_field,
    int_field,
    int_list_field,
    short_repr,
    validate_scale_max,
)
from lte.models.sr import FIXED_SCALE_DECODER, SRModel
from lte.weights import check_weights, nonfinite_weights

#: ``scale_max`` of the released models: all were trained on scales U(1, 4).
OFFICIAL_SCALE_MAX = 4.0
#: The normalisation every model here uses: ``(v - mean) / std`` on RGB in [0, 1].
NORMALIZATION = {"mean": 0.5, "std": 0.5}
#: The ``"lte"`` entry's layout written by :func:`checkpoint_metadata`.
FORMAT_VERSION = 2

_PREFIX = re.compile(r"^([A-Za-z_]\w*\.){0,4}$")  # "net.", "model.net.", or "" (no prefix)
_LABEL = re.compile(r"^[\w.=\-]{1,200}$")  # format-1 model_name / encoder_name

# Buffers that the released files hold but that are recomputed (or unused) here.
_SKIPPED_SUFFIXES = (".attn_mask", ".relative_position_index")
_SKIPPED_PREFIXES = ("encoder.sub_mean.", "encoder.add_mean.")


@dataclass
class LoadedModel:
    """A model read from a checkpoint, with what inference needs to know about it.

    ``model_name`` / ``encoder_name`` are labels of what the model *is* (``lte.models.identity``),
    never names stored in the file.
    """

    model: SRModel
    source: str  # "official" or "lte"
    path: Path
    spec: ModelSpec
    #: The released model name of an official file (``lte``, ``lte-fast``, ...); None for lte files.
    #: ``lte-fast`` is LTE's function in another layout: labels say ``lte``, this says where from.
    release: str | None = None

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


def _read(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    if not path.exists():
        raise UserError(f"checkpoint '{path}' does not exist: check --ckpt / ckpt=")
    if path.is_dir():
        raise UserError(f"checkpoint '{path}' is a folder: give the .pth or .ckpt file inside it")
    check_input(path, "checkpoint")  # a FIFO or a device: refused before torch.load would block
    try:
        # Quiet: torch warns about some tensor types it rebuilds (quantised, sparse CSR), which
        # the weight checks then refuse in one line.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        if "GLOBAL" in text or "Unsupported global" in text:
            found = re.search(r"GLOBAL ([\w.]+)", text)
            what = found.group(1) if found else "a Python object"
            raise UserError(
                f"checkpoint '{path}' holds pickled objects other than tensors ({what}); "
                "lte loads weights only and never runs code from a file"
            ) from None
        raise UserError(
            f"cannot read checkpoint '{path}': not a PyTorch file or truncated"
        ) from None
    except Exception as err:  # torch raises many types on a damaged file (KeyError, EOFError, ...)
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"cannot read checkpoint '{path}': not a PyTorch file or truncated ({msg[:120]})"
        ) from None
    if not isinstance(obj, dict):
        raise UserError(
            f"checkpoint '{path}' is not a dict of weights (found {type(obj).__name__})"
        )
    return obj


# --- validation helpers -----------------------------------------------------------------------


def _node(data: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    """``data`` must be a dict holding every ``required`` key and no key outside ``required + optional``."""
    allowed = required + optional
    if not isinstance(data, Mapping):
        raise FieldError(path, f"must be a dict with {', '.join(allowed)}, got {short_repr(data)}")
    for key in data:
        if key not in allowed:
            raise FieldError(
                path, f"has unknown field {short_repr(key)} (expected {', '.join(allowed)})"
            )
    for key in required:
        if key not in data:
            raise FieldError(f"{path}.{key}", "is missing")


def _one_of(
    value: Any, path: str, choices: Mapping[str, Any] | tuple[str, ...], what: str = ""
) -> Any:
    if not isinstance(value, str) or value not in choices:
        expected = ", ".join(repr(c) if c == "" else c for c in choices)
        if what:
            raise FieldError(
                path, f"names an unknown {what} {short_repr(value)}: expected one of {expected}"
            )
        raise FieldError(path, f"must be one of {expected}, got {short_repr(value)}")
    return choices[value] if isinstance(choices, Mapping) else value


def _true(value: Any, path: str, why: str) -> None:
    if value is not True:
        raise FieldError(path, f"must be True ({why}), got {short_repr(value)}")


def _check_normalization(value: Any, path: str) -> None:
    _node(value, path, ("mean", "std"))
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


# --- lte's own format ---------------------------------------------------------------------------

#: Format-1 ``_target_`` strings (the only ones this project ever wrote), mapped to kinds.
_V1_MODEL_TARGETS = ("lte.models.SRModel", "lte.models.sr.SRModel")
_V1_ENCODER_TARGETS = {
    f"lte.models.{mod}{cls}": kind
    for cls, kind, module in (
        ("EDSR", "edsr", "edsr"),
        ("RDN", "rdn", "rdn"),
        ("SwinIR", "swinir", "swinir"),
    )
    for mod in ("", f"{module}.")
}
_V1_DECODER_TARGETS = {
    f"lte.models.{mod}{cls}": kind
    for cls, kind in (("LTEDecoder", "lte"), ("LIIFDecoder", "liif"), ("MetaSRDecoder", "metasr"))
    for mod in ("", "decoders.")
}


def _v1_node(data: Any, path: str, targets: Mapping[str, str], partial: bool) -> dict[str, Any]:
    """A format-1 Hydra node as a ``{"kind", ...}`` description: ``_target_`` looked up, never imported."""
    if not isinstance(data, Mapping):
        raise FieldError(
            path, f"must be a dict with _target_ and arguments, got {short_repr(data)}"
        )
    if "_target_" not in data:
        raise FieldError(f"{path}._target_", "is missing")
    kind = _one_of(data["_target_"], f"{path}._target_", targets)
    if partial:
        if "_partial_" not in data:
            raise FieldError(f"{path}._partial_", "is missing")
        _true(
            data["_partial_"], f"{path}._partial_", "the decoder is built from the encoder's width"
        )
    return {"kind": kind, **{k: v for k, v in data.items() if k not in ("_target_", "_partial_")}}


def _lte_v1_spec(meta: Mapping[str, Any], where: str) -> tuple[ModelSpec, str]:
    """A format-1 ``"lte"`` entry, read as data: known ``_target_`` strings map to kinds."""
    keys = ("config", "model_name", "encoder_name", "scale_max", "normalization", "prefix")
    try:
        _node(meta, "lte", (*keys, "format_version"))
        # The old stored labels: checked, then ignored (labels now come from the model itself).
        for key in ("model_name", "encoder_name"):
            if not isinstance(meta[key], str) or not _LABEL.match(meta[key]):
                raise FieldError(
                    f"lte.{key}", f"must be a name such as 'lte', got {short_repr(meta[key])}"
                )
        _check_normalization(meta["normalization"], "lte.normalization")
        prefix = _check_prefix(meta["prefix"], "lte.prefix")
        config = meta["config"]
        _node(config, "lte.config", ("model", "encoder"))
        _node(config["model"], "lte.config.model", ("_target_", "decoder"))
        _one_of(config["model"]["_target_"], "lte.config.model._target_", _V1_MODEL_TARGETS)
        decoder = _v1_node(
            config["model"]["decoder"], "lte.config.model.decoder", _V1_DECODER_TARGETS, True
        )
        encoder = _v1_node(config["encoder"], "lte.config.encoder", _V1_ENCODER_TARGETS, False)
    except FieldError as err:
        raise UserError(f"{where}: {err}") from None
    spec = ModelSpec(
        EncoderSpec.from_dict(encoder, where, "lte.config.encoder"),
        DecoderSpec.from_dict(decoder, where, "lte.config.model.decoder"),
        validate_scale_max(meta["scale_max"], where, "lte.scale_max"),
    )
    return spec, prefix


def _lte_spec(meta: Any, where: str) -> tuple[ModelSpec, str]:
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
        _node(meta, "lte", ("format_version", "model", "normalization", "prefix"))
        _check_normalization(meta["normalization"], "lte.normalization")
        prefix = _check_prefix(meta["prefix"], "lte.prefix")
    except FieldError as err:
        raise UserError(f"{where}: {err}") from None
    return ModelSpec.from_dict(meta["model"], where, "lte.model"), prefix


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


# --- official releases --------------------------------------------------------------------------

_OFFICIAL_MODELS = ("lte", "liif", "metasr", "lte-fast")
#: The released encoders and the description their defaults stand for.
_OFFICIAL_ENCODER_DEFAULTS = {
    "edsr-baseline": NAMED_ENCODERS["edsr_baseline"],
    "edsr": NAMED_ENCODERS["edsr"],
    "rdn": NAMED_ENCODERS["rdn"],
    "swinir": NAMED_ENCODERS["swinir"],
}
_RDN_CONFIGS = {"A": (20, 6, 32), "B": (16, 8, 64)}  # (D, C, G) = (n_blocks, n_layers, growth)
_UPSAMPLERS = ("", "none", "pixelshuffle", "pixelshuffledirect", "nearest+conv")


def _check_upsampler(value: Any, path: str) -> None:
    _one_of(value, path, _UPSAMPLERS)


#: Official encoder arguments that only concern the upsampler or data range (absent here): checked
#: for type, then dropped.
_IGNORED_ENCODER_ARGS = {
    "scale": int_field(1, 64),
    "upscale": int_field(1, 64),
    "rgb_range": float_field(0.0, 1e4, lo_open=True),
    "img_range": float_field(0.0, 1e4, lo_open=True),
    "img_size": int_field(1, 4096),
    "upsampler": _check_upsampler,
}
#: Per released encoder, the arguments that set our fields: official name -> (field, validator).
_EDSR_ARGS = {
    "n_resblocks": ("n_resblocks", int_field(1, 256)),
    "n_feats": ("n_feats", int_field(1, 4096)),
    "res_scale": ("res_scale", float_field(0.0, 10.0, lo_open=True)),
}
_ENCODER_ARGS = {
    "edsr-baseline": _EDSR_ARGS,
    "edsr": _EDSR_ARGS,
    "rdn": {"G0": ("g0", int_field(1, 4096)), "RDNkSize": ("kernel", int_field(1, 15, odd=True))},
    "swinir": {
        "embed_dim": ("embed_dim", int_field(1, 4096)),
        "depths": ("depths", int_list_field(1, 256, 32)),
        "num_heads": ("num_heads", int_list_field(1, 512, 32)),
        "window_size": ("window_size", int_field(1, 64)),
        "mlp_ratio": ("mlp_ratio", float_field(0.0, 64.0, lo_open=True)),
    },
}
#: Released decoder defaults (``hidden_list`` of ``imnet_spec``, LTE's ``hidden_dim``).
_OFFICIAL_DECODER_DEFAULTS = {
    "lte": {"kind": "lte", "hidden_dim": 256, "mlp_hidden": [256, 256, 256]},
    "liif": {"kind": "liif", "mlp_hidden": [256, 256, 256, 256]},
    "metasr": {"kind": "metasr", "mlp_hidden": [256]},
}
#: The arguments each released model class takes besides ``encoder_spec``.
_OFFICIAL_MODEL_ARGS = {
    "lte": ("imnet_spec", "hidden_dim"),
    "liif": ("imnet_spec", "local_ensemble", "feat_unfold", "cell_decode"),
    "metasr": (),
    "lte-fast": ("num_layer", "hidden_dim", "out_dim"),
}


def _official_encoder(enc_spec: Any, path: str) -> dict[str, Any]:
    _node(enc_spec, path, ("name",), ("args",))
    name = _one_of(enc_spec["name"], f"{path}.name", tuple(_OFFICIAL_ENCODER_DEFAULTS), "encoder")
    encoder = {
        k: list(v) if isinstance(v, list) else v
        for k, v in _OFFICIAL_ENCODER_DEFAULTS[name].items()
    }
    args = enc_spec.get("args", {})
    mapped = _ENCODER_ARGS[name]
    allowed = (
        *mapped,
        "no_upsampling",
        *_IGNORED_ENCODER_ARGS,
        *(("RDNconfig",) if name == "rdn" else ()),
    )
    _node(args, f"{path}.args", (), allowed)
    for key, value in args.items():
        where = f"{path}.args.{key}"
        if key == "no_upsampling":
            _true(value, where, "lte uses the encoder without its upsampler")
        elif key == "RDNconfig":
            d, c, g = _one_of(value, where, _RDN_CONFIGS)
            encoder |= {"n_blocks": d, "n_layers": c, "growth": g}
        elif key in _IGNORED_ENCODER_ARGS:
            _IGNORED_ENCODER_ARGS[key](value, where)
        else:
            field, check = mapped[key]
            encoder[field] = list(v) if isinstance(v := check(value, where), tuple) else v
    return encoder


def _official_description(spec: Any, where: str) -> dict[str, Any]:
    """The ``describe()``-shaped description of an official ``{"name", "args", "sd"}`` entry.

    Every argument is checked against what the released code accepts; each unsupported or
    ill-typed one is a one-line error naming it (``model.args.hidden_dim``).
    """
    fixed = _official_fixed_scale_description(spec, where)
    if fixed is not None:
        return fixed
    try:
        _node(spec, "model", ("name", "sd"), ("args",))
        name = _one_of(spec["name"], "model.name", _OFFICIAL_MODELS, "model name")
        args = spec.get("args", {})
        _node(args, "model.args", ("encoder_spec",), _OFFICIAL_MODEL_ARGS[name])
        encoder = _official_encoder(args["encoder_spec"], "model.args.encoder_spec")
        if name == "lte-fast":
            decoder = _lte_fast_decoder(args)
            return {"decoder": decoder, "encoder": encoder, "scale_max": OFFICIAL_SCALE_MAX}
        decoder = dict(_OFFICIAL_DECODER_DEFAULTS[name])
        if "imnet_spec" in args:
            path = "model.args.imnet_spec"
            _node(args["imnet_spec"], path, ("name", "args"))
            _one_of(args["imnet_spec"]["name"], f"{path}.name", ("mlp",))
            imnet = args["imnet_spec"]["args"]
            _node(imnet, f"{path}.args", ("hidden_list",), ("out_dim",))
            if (
                "out_dim" in imnet
                and int_field(1, 4096)(imnet["out_dim"], f"{path}.args.out_dim") != 3
            ):
                raise FieldError(f"{path}.args.out_dim", f"must be 3 (RGB), got {imnet['out_dim']}")
            hidden = int_list_field(1, 4096, 32)(imnet["hidden_list"], f"{path}.args.hidden_list")
            decoder["mlp_hidden"] = list(hidden)
        if "hidden_dim" in args:
            decoder["hidden_dim"] = int_field(2, 4096, even=True)(
                args["hidden_dim"], "model.args.hidden_dim"
            )
        for flag in ("local_ensemble", "feat_unfold", "cell_decode"):
            if flag in args:
                _true(args[flag], f"model.args.{flag}", f"lte implements {name} with {flag} only")
    except FieldError as err:
        raise UserError(f"{where}: {err}") from None
    return {"decoder": decoder, "encoder": encoder, "scale_max": OFFICIAL_SCALE_MAX}


# --- LTE+ (the "lte-fast" release) ------------------------------------------------------------------

#: The released layouts :func:`official_state` can write: ``standard`` is each decoder's own
#: release (``lte``, ``liif``, ``metasr``); ``lte-fast`` is LTE with its MLP as 1x1 convolutions.
OFFICIAL_LAYOUTS = ("standard", "lte-fast")
#: ``lte-fast``'s constructor defaults (``num_layer``, ``hidden_dim``, ``out_dim``).
_LTE_FAST_DEFAULTS = {"num_layer": 3, "hidden_dim": 256, "out_dim": 3}
_LTE_FAST_LAYER = re.compile(r"^layers\.(\d+)\.(weight|bias)$")


def _lte_fast_decoder(args: Mapping[str, Any]) -> dict[str, Any]:
    """Our LTE decoder description for ``lte-fast`` args (already checked to be allow-listed).

    The released class uses ``hidden_dim`` both for the Fourier features and for each of its
    ``num_layer`` hidden 1x1 convolutions, so the MLP is ``[hidden_dim] * num_layer``.
    """
    merged = {**_LTE_FAST_DEFAULTS, **args}
    hidden = int_field(2, 4096, even=True)(merged["hidden_dim"], "model.args.hidden_dim")
    layers = int_field(1, 32)(merged["num_layer"], "model.args.num_layer")
    if int_field(1, 4096)(merged["out_dim"], "model.args.out_dim") != 3:
        raise FieldError("model.args.out_dim", f"must be 3 (RGB), got {merged['out_dim']}")
    return {"kind": "lte", "hidden_dim": hidden, "mlp_hidden": [hidden] * layers}


#: The frequency convolution, whose output channels ``lte-fast`` pairs differently from LTE.
_LTE_FAST_FREQ = ("freq.weight", "freq.bias")


def _freq_to_lte(value: Any) -> Any:
    """``lte-fast``'s frequency channels in LTE's order: LTE ``2k`` <- ``k``, ``2k+1`` <- ``K+k``.

    LTE reads frequency k from channels (2k, 2k+1) as its (y, x) components; the released LTE+
    splits the map into halves instead (y from channel k, x from K+k; SPEC.md "LTE+"). Loading
    without this reorder gives a different function (up to 7 levels off the official forward).
    Anything that is not a tensor with an even, non-empty first axis is passed on unchanged for
    the type and shape checks to name.
    """
    if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] % 2:
        return value
    half = value.shape[0] // 2
    # (2, K, ...) -> (K, 2, ...): y_k and x_k become neighbours.
    return torch.stack([value[:half], value[half:]], dim=1).flatten(0, 1).contiguous()


def _freq_to_lte_fast(value: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_freq_to_lte`: all y components (channels ``2k``), then all x (``2k+1``)."""
    return torch.cat([value[0::2], value[1::2]]).contiguous()


def _from_lte_fast_keys(sd: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``lte-fast`` weights in the ``lte`` release's names and order.

    - ``layers.N`` -> ``imnet.layers.N``: a 1x1 convolution over channels is a Linear layer, so
      weights ``(out, in, 1, 1)`` become ``(out, in)``. Any other shape is passed on unchanged,
      so the shape check names it.
    - ``freq.*``: output channels reordered from the halves pairing to LTE's (:func:`_freq_to_lte`).
    """
    stray = [k for k in sd if isinstance(k, str) and k.startswith("imnet.")]
    if stray:
        raise UserError(
            f"{where} has weights this model does not use: {_listing(stray)} "
            "(an lte-fast release holds its MLP under layers.*)"
        )
    out: dict[str, Any] = {}
    for key, value in sd.items():
        if isinstance(key, str) and _LTE_FAST_LAYER.match(key):
            if isinstance(value, torch.Tensor) and value.dim() == 4 and value.shape[2:] == (1, 1):
                value = value.flatten(1)
            key = f"imnet.{key}"
        elif key in _LTE_FAST_FREQ:
            value = _freq_to_lte(value)
        out[key] = value
    return out


def _lte_fast_args(decoder: Mapping[str, Any]) -> dict[str, Any]:
    """``lte-fast``'s ``num_layer``/``hidden_dim``/``out_dim`` for an LTE decoder description.

    Raises:
        UserError: not an LTE decoder, or an MLP the released class cannot build (it ties every
            hidden width to ``hidden_dim``).
    """
    if decoder["kind"] != "lte":
        raise UserError(
            f"layout 'lte-fast' holds LTE models only, and this model's decoder is "
            f"{decoder['kind']}: export it with the standard layout"
        )
    hidden, mlp = decoder["hidden_dim"], list(decoder["mlp_hidden"])
    if any(width != hidden for width in mlp):
        raise UserError(
            f"layout 'lte-fast' needs every MLP hidden width equal to hidden_dim ({hidden}), as "
            f"the released class builds it; this LTE has mlp_hidden {mlp}: export it with the "
            "standard layout"
        )
    return {"num_layer": len(mlp), "hidden_dim": hidden, "out_dim": 3}


def _to_lte_fast_keys(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`_from_lte_fast_keys`: ``imnet.layers.N`` -> ``layers.N``, (out, in, 1, 1),
    and the frequency channels back in the halves pairing."""
    out = {}
    for key, value in sd.items():
        if key.startswith("imnet.layers."):
            key = key.removeprefix("imnet.")
            if value.dim() == 2:
                value = value.reshape(*value.shape, 1, 1)
        elif key in _LTE_FAST_FREQ:
            value = _freq_to_lte_fast(value)
        out[key] = value
    return out


# --- official fixed-scale baselines (edsr_baseline_x{2,3,4}, rdn_x{2,4}) -------------------------
#
# Released as the ``liif`` wrapper with no ``imnet_spec`` around an encoder that keeps its upsampler
# (``encoder_spec.args.scale = s``, no ``no_upsampling``): LIIF then returns, for each query, the
# nearest pixel of the encoder's RGB output. Read as ``{"kind": "nearest"}`` + ``upscale: s``.

#: The released encoders that have a fixed-scale tail here.
_FIXED_SCALE_ENCODERS = ("edsr-baseline", "edsr", "rdn")
#: The released code's default ``scale`` when a file leaves it out.
_OFFICIAL_DEFAULT_SCALE = 2


def _is_official_fixed_scale(spec: Any) -> bool:
    """An official entry whose model is ``liif`` without ``imnet_spec``: a fixed-scale baseline."""
    return (
        isinstance(spec, Mapping)
        and spec.get("name") == "liif"
        and isinstance(spec.get("args"), Mapping)
        and "imnet_spec" not in spec["args"]
    )


def _official_fixed_scale_description(spec: Any, where: str) -> dict[str, Any] | None:
    """The description of a released fixed-scale baseline, or ``None`` if ``spec`` is not one."""
    if not _is_official_fixed_scale(spec):
        return None
    try:
        _node(spec, "model", ("name", "sd"), ("args",))
        args = spec["args"]
        _node(args, "model.args", ("encoder_spec",), _OFFICIAL_MODEL_ARGS["liif"])
        for flag in ("local_ensemble", "feat_unfold", "cell_decode"):
            if flag in args:  # the released code ignores them without an MLP
                _true(args[flag], f"model.args.{flag}", "lte implements liif with it only")
        path = "model.args.encoder_spec"
        enc_spec = args["encoder_spec"]
        _node(enc_spec, path, ("name",), ("args",))
        _one_of(enc_spec["name"], f"{path}.name", _FIXED_SCALE_ENCODERS, "fixed-scale encoder")
        enc_args = enc_spec.get("args", {})
        if not isinstance(enc_args, Mapping):
            raise FieldError(f"{path}.args", f"must be a dict, got {short_repr(enc_args)}")
        if enc_args.get("no_upsampling", False) is not False:
            raise FieldError(
                f"{path}.args.no_upsampling",
                "must be absent: a liif model without imnet_spec is a fixed-scale baseline whose "
                f"encoder keeps its upsampler, got {short_repr(enc_args['no_upsampling'])}",
            )
        scale = int_field(2, 4)(
            enc_args.get("scale", _OFFICIAL_DEFAULT_SCALE), f"{path}.args.scale"
        )
        rest = {k: v for k, v in enc_args.items() if k not in ("scale", "no_upsampling")}
        encoder = _official_encoder({"name": enc_spec["name"], "args": rest}, path)
    except FieldError as err:
        raise UserError(f"{where}: {err}") from None
    # Trained at its one scale: scale_max = s, as data=paired sets it (no cell reads it anyway).
    return {
        "decoder": {"kind": FIXED_SCALE_DECODER},
        "encoder": {**encoder, "upscale": scale},
        "scale_max": float(scale),
    }


def _official_fixed_scale_state(model: SRModel, spec: ModelSpec) -> dict[str, Any]:
    """The released ``{"model": {"name": "liif", "args", "sd"}}`` of a fixed-scale model."""
    encoder = spec.encoder.to_dict()
    upscale = encoder.pop("upscale")
    if spec.scale_max != upscale:
        raise UserError(
            f"scale_max {spec.scale_max:g} cannot be stored in an official fixed-scale file (it "
            f"reads back as the model's scale, {upscale}): save it as an lte checkpoint"
        )
    enc_spec = _official_encoder_spec(encoder)
    enc_args = {k: v for k, v in enc_spec["args"].items() if k != "no_upsampling"}
    enc_spec = {"name": enc_spec["name"], "args": {**enc_args, "scale": upscale}}
    sd = _to_official_keys(model.state_dict())
    sd.update(_recomputable_buffers(encoder))
    return {"model": {"name": "liif", "args": {"encoder_spec": enc_spec}, "sd": sd}}


def _to_model_keys(official_sd: Mapping[str, Any]) -> dict[str, Any]:
    """Official key names → SRModel's (decoder parameters move under ``decoder.``); skip recomputed buffers."""
    out = {}
    for key, value in official_sd.items():
        if isinstance(key, str) and (
            key.startswith(_SKIPPED_PREFIXES) or key.endswith(_SKIPPED_SUFFIXES)
        ):
            continue
        out[key if str(key).startswith("encoder.") else f"decoder.{key}"] = value
    return out


def _to_official_keys(model_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`_to_model_keys` for the parameters this model holds."""
    return {k.removeprefix("decoder."): v for k, v in model_sd.items()}


# --- weights --------------------------------------------------------------------------------------


def _listing(keys: list[str]) -> str:
    return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")


def _compare(own: Mapping[str, Any], sd: Mapping[str, Any], where: str) -> None:
    """One-line errors for weights that are missing, unexpected, not tensors, of a kind of number
    the model cannot take (:func:`lte.weights.check_weights`) or mis-shaped."""
    missing = [k for k in own if k not in sd]
    unexpected = [k if isinstance(k, str) else short_repr(k) for k in sd if k not in own]
    if missing:
        raise UserError(f"{where} lacks weights the model needs: {_listing(missing)}")
    if unexpected:
        raise UserError(f"{where} has weights this model does not use: {_listing(unexpected)}")
    bad = [f"{k} ({type(sd[k]).__name__})" for k in own if not isinstance(sd[k], torch.Tensor)]
    if bad:
        raise UserError(f"{where} has weights that are not tensors: {_listing(bad)}")
    check_weights(sd, where, own)
    wrong = [
        f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}"
        for k, v in own.items()
        if sd[k].shape != v.shape
    ]
    if wrong:
        raise UserError(f"{where} has weights of the wrong shape: {_listing(wrong)}")


def _build(spec: ModelSpec, sd: Mapping[str, Any], where: str) -> SRModel:
    """Build ``spec`` and load ``sd`` into it, checking names, kinds and shapes first, finiteness after.

    The check runs on a skeleton built on the ``meta`` device where the architecture allows it, so a
    file describing a huge network with small weights fails before anything is allocated.
    Half-precision and float64 weights are converted to the model's dtype by ``load_state_dict``
    (see :mod:`lte.weights`); the non-finite check runs on what the model then holds, so float64
    values beyond float32's range are caught too.
    """
    try:
        with torch.device("meta"):
            skeleton = spec.build()
    except (
        Exception
    ):  # some constructors read values (SwinIR's drop-path rates): check after building
        skeleton = None
    if skeleton is not None:
        _compare(skeleton.state_dict(), sd, where)
    model = spec.build()
    _compare(model.state_dict(), sd, where)
    model.load_state_dict(dict(sd), strict=True)
    _check_finite(model, sd, where)
    return model


def _check_finite(model: SRModel, sd: Mapping[str, Any], where: str) -> None:
    """Refuse a model whose weights hold NaN or infinity once loaded: it would make a black image."""
    bad = nonfinite_weights(model.state_dict())
    if not bad:
        return
    key = bad[0]
    stored = sd[key]
    if bool(torch.isfinite(stored).all()):  # finite in the file: float64 beyond float32's range
        raise UserError(
            f"{where}: weight {key} holds {stored.dtype} values beyond the range of the model's "
            f"{model.state_dict()[key].dtype} (they would load as infinity): the file is corrupt "
            "or not a model checkpoint; use another checkpoint"
        )
    raise UserError(
        f"{where} has non-finite weights (NaN or infinity) in {len(bad)} tensor(s), e.g. {key}: "
        "the file is corrupt; use another checkpoint"
    )


def _state_dict(value: Any, where: str, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise UserError(f"{where}: {name} must be a dict of tensors, got {short_repr(value)}")
    return value


def _check_storage(sd: Mapping[Any, Any], where: str) -> None:
    """Every tensor dense and holding values, before any is reshaped (the ``lte-fast`` keys) or
    compared; their kind of number and shape are checked against the model in :func:`_compare`."""
    check_weights({k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}, where)


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> LoadedModel:
    """Load an official release or an lte checkpoint into an :class:`SRModel` in eval mode.

    Raises:
        UserError: the file is missing, unreadable, not a model checkpoint, describes a model with an
            unknown kind or a bad field, or its weights don't match the model (one line naming the
            field or the keys).
    """
    p = Path(path)
    obj = _read(p, map_location)
    where = f"checkpoint {quote(p)}"
    if "lte" in obj:
        spec, prefix = _lte_spec(obj["lte"], where)
        if "state_dict" not in obj:
            raise UserError(f"{where} has an 'lte' entry but no 'state_dict' of weights")
        raw = _state_dict(obj["state_dict"], where, "state_dict")
        sd = {
            k.removeprefix(prefix) if isinstance(k, str) else k: v
            for k, v in raw.items()
            if not isinstance(k, str) or k.startswith(prefix)
        }
        _check_storage(sd, where)
        loaded = LoadedModel(_build(spec, sd, where), "lte", p, spec)
    elif isinstance(obj.get("model"), Mapping) and "sd" in obj["model"]:
        description = _official_description(obj["model"], where)
        spec = ModelSpec.from_dict(description, where)
        sd = _state_dict(obj["model"]["sd"], where, "model.sd")
        _check_storage(sd, where)
        release = obj["model"]["name"]
        if release == "lte-fast":
            sd = _from_lte_fast_keys(sd, where)
        model = _build(spec, _to_model_keys(sd), where)
        loaded = LoadedModel(model, "official", p, spec, release)
    else:
        raise UserError(
            f"'{p}' is not an LTE/LIIF/Meta-SR checkpoint: expected an official release "
            "({'model': {'name', 'args', 'sd'}}) or an lte training checkpoint ('state_dict' and 'lte')"
        )
    loaded.model.eval()
    return loaded


# --- writing --------------------------------------------------------------------------------------


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


def _official_encoder_spec(encoder: Mapping[str, Any]) -> dict[str, Any]:
    """The released ``encoder_spec`` for an encoder description, or UserError if there is none."""
    args: dict[str, Any] = {"no_upsampling": True}
    kind = encoder["kind"]
    named = {k: v for k, v in NAMED_ENCODERS.items() if v == dict(encoder)}
    if "edsr_baseline" in named:
        return {"name": "edsr-baseline", "args": args}
    if named:
        return {"name": next(iter(named)), "args": args}
    if kind == "edsr":
        args |= {k: encoder[k] for k in ("n_resblocks", "n_feats", "res_scale")}
        return {"name": "edsr", "args": args}
    if kind == "rdn":
        config = [
            c
            for c, dcg in _RDN_CONFIGS.items()
            if dcg == (encoder["n_blocks"], encoder["n_layers"], encoder["growth"])
        ]
        if config:
            args |= {"G0": encoder["g0"], "RDNkSize": encoder["kernel"], "RDNconfig": config[0]}
            return {"name": "rdn", "args": args}
    raise UserError(
        f"the {kind} encoder {short_repr(dict(encoder), 200)} has no official-format equivalent "
        "(the released code builds only its paper configurations): save it as an lte checkpoint"
    )


def check_layout(layout: Any) -> str:
    """``layout`` if it is one of :data:`OFFICIAL_LAYOUTS`, else a one-line UserError."""
    if not isinstance(layout, str) or layout not in OFFICIAL_LAYOUTS:
        raise UserError(
            f"layout {layout!r} is not an official layout: use one of {', '.join(OFFICIAL_LAYOUTS)}"
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
    description = model.describe()
    spec = ModelSpec.from_dict(description, "model to export")
    if spec.decoder.kind == FIXED_SCALE_DECODER:
        if layout == "lte-fast":
            _lte_fast_args(spec.decoder.to_dict())  # refuses: not an LTE decoder
        return _official_fixed_scale_state(model, spec)
    decoder = spec.decoder.to_dict()
    if spec.scale_max != OFFICIAL_SCALE_MAX:
        raise UserError(
            f"scale_max {spec.scale_max:g} cannot be stored in an official file (the released code "
            f"assumes {OFFICIAL_SCALE_MAX:g}): save it as an lte checkpoint"
        )
    args: dict[str, Any] = {"encoder_spec": _official_encoder_spec(spec.encoder.to_dict())}
    if layout == "lte-fast":
        args |= _lte_fast_args(decoder)
        sd = _to_lte_fast_keys(_to_official_keys(model.state_dict()))
        sd.update(_recomputable_buffers(spec.encoder.to_dict()))
        return {"model": {"name": "lte-fast", "args": args, "sd": sd}}
    name = decoder["kind"]
    if name in ("lte", "liif"):
        hidden = list(decoder["mlp_hidden"])
        args["imnet_spec"] = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": hidden}}
    elif decoder["mlp_hidden"] != _OFFICIAL_DECODER_DEFAULTS["metasr"]["mlp_hidden"]:
        raise UserError(
            f"Meta-SR with mlp_hidden {decoder['mlp_hidden']} has no official-format equivalent "
            "(the released code fixes [256]): save it as an lte checkpoint"
        )
    if name == "lte":
        args["hidden_dim"] = decoder["hidden_dim"]
    sd = _to_official_keys(model.state_dict())
    sd.update(_recomputable_buffers(spec.encoder.to_dict()))
    return {"model": {"name": name, "args": args, "sd": sd}}


#: EDSR's DIV2K RGB mean, held by the released files' (unused) mean-shift layers.
_EDSR_RGB_MEAN = (0.4488, 0.4371, 0.4040)
#: The training patch size the released SwinIR attention masks were built for.
_SWINIR_IMG_SIZE = 48


def _recomputable_buffers(encoder: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The buffers a released file holds that this model recomputes or never uses, for a faithful export."""
    from lte.models.swinir import relative_position_index, shift_attention_mask

    extra: dict[str, torch.Tensor] = {}
    if encoder["kind"] == "edsr":
        mean = torch.tensor(_EDSR_RGB_MEAN)
        eye = torch.eye(3).view(3, 3, 1, 1)
        extra |= {"encoder.sub_mean.weight": eye.clone(), "encoder.sub_mean.bias": -mean}
        extra |= {"encoder.add_mean.weight": eye.clone(), "encoder.add_mean.bias": mean.clone()}
    elif encoder["kind"] == "swinir":
        window = encoder["window_size"]
        size = _SWINIR_IMG_SIZE
        mask = shift_attention_mask(size, size, window, window // 2, torch.device("cpu"))
        for i, depth in enumerate(encoder["depths"]):
            for j in range(depth):
                prefix = f"encoder.layers.{i}.residual_group.blocks.{j}"
                extra[f"{prefix}.attn.relative_position_index"] = relative_position_index(window)
                if j % 2 == 1:
                    extra[f"{prefix}.attn_mask"] = mask.clone()
    return extra


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


#: What :func:`convert_checkpoint` (``scripts/convert_checkpoint.py --to``) can write.
CONVERT_TARGETS = ("lte", "official", "lte-fast")


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
    loaded = load_checkpoint(source)
    if to in ("official", "lte-fast"):
        save_official(loaded.model, target, layout="standard" if to == "official" else to)
    elif loaded.source == "official":
        save_lte(loaded.model, target)
    else:
        obj = _read(source, "cpu")
        obj["lte"] = checkpoint_metadata(loaded.model, prefix=obj["lte"]["prefix"])
        atomic_save(obj, target)
    return loaded
