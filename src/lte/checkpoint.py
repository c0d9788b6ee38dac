"""Read and write model checkpoints: the officially released LTE/LIIF/Meta-SR files and lte's own.

Two layouts load into the same :class:`~lte.models.SRModel`:

* official: ``{"model": {"name", "args", "sd"}}`` as released by the LTE and LIIF projects, decoder
  parameters at the top level (``coef.*``, ``imnet.*``) and encoder ones under ``encoder.``;
* lte: a Lightning checkpoint (or any dict) with ``state_dict`` (parameters under ``net.``) and an
  ``"lte"`` entry carrying what inference needs: model and encoder configs, ``scale_max``, normalisation.

Files are read with ``torch.load(weights_only=True)``: no code is ever unpickled.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from lte.atomic import atomic_path
from lte.errors import UserError
from lte.models.build import instantiate_model, model_config
from lte.models.sr import SRModel

#: ``scale_max`` of the released models: all were trained on scales U(1, 4).
OFFICIAL_SCALE_MAX = 4.0
#: The normalisation every model here uses: ``(v - mean) / std`` on RGB in [0, 1].
NORMALIZATION = {"mean": 0.5, "std": 0.5}

_OFFICIAL_ENCODERS = {
    "edsr-baseline": "edsr_baseline",
    "edsr": "edsr",
    "rdn": "rdn",
    "swinir": "swinir",
}
_OFFICIAL_MODELS = ("lte", "liif", "metasr")
# Official encoder args that only concern the upsampler or data range, which these models don't have.
_IGNORED_ENCODER_ARGS = {
    "no_upsampling",
    "scale",
    "rgb_range",
    "upscale",
    "upsampler",
    "img_size",
    "img_range",
}
_RDN_CONFIGS = {"A": (20, 6, 32), "B": (16, 8, 64)}  # (D, C, G)
# Buffers that the released files hold but that are recomputed (or unused) here.
_SKIPPED_SUFFIXES = (".attn_mask", ".relative_position_index")
_SKIPPED_PREFIXES = ("encoder.sub_mean.", "encoder.add_mean.")


@dataclass
class LoadedModel:
    """A model read from a checkpoint, with what inference needs to know about it."""

    model: SRModel
    model_name: str
    encoder_name: str
    scale_max: float
    source: str  # "official" or "lte"
    path: Path
    config: dict[str, Any] = field(default_factory=dict)


def _read(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    if not path.exists():
        raise UserError(f"checkpoint '{path}' does not exist: check --ckpt / ckpt=")
    if path.is_dir():
        raise UserError(f"checkpoint '{path}' is a folder: give the .pth or .ckpt file inside it")
    try:
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


def _official_config(path: Path, spec: dict[str, Any]) -> tuple[str, str, list[str]]:
    """Model name, encoder name and config overrides for an official ``{"name", "args"}`` spec."""
    name = spec.get("name")
    if name not in _OFFICIAL_MODELS:
        raise UserError(
            f"checkpoint '{path}': unknown model name '{name}' (expected one of {', '.join(_OFFICIAL_MODELS)})"
        )
    args = dict(spec.get("args") or {})
    enc_spec = args.pop("encoder_spec", None) or {}
    enc_official = enc_spec.get("name")
    if enc_official not in _OFFICIAL_ENCODERS:
        raise UserError(
            f"checkpoint '{path}': unknown encoder '{enc_official}' (expected one of {', '.join(_OFFICIAL_ENCODERS)})"
        )
    encoder = _OFFICIAL_ENCODERS[enc_official]
    overrides: list[str] = []
    enc_args = {
        k: v for k, v in (enc_spec.get("args") or {}).items() if k not in _IGNORED_ENCODER_ARGS
    }
    if encoder in ("edsr_baseline", "edsr"):
        for key in ("n_resblocks", "n_feats", "res_scale"):
            if key in enc_args:
                overrides.append(f"encoder.{key}={enc_args.pop(key)}")
    elif encoder == "rdn":
        if "G0" in enc_args:
            overrides.append(f"encoder.g0={enc_args.pop('G0')}")
        if "RDNkSize" in enc_args:
            overrides.append(f"encoder.kernel={enc_args.pop('RDNkSize')}")
        if "RDNconfig" in enc_args:
            d, c, g = _RDN_CONFIGS[enc_args.pop("RDNconfig")]
            overrides += [f"encoder.n_blocks={d}", f"encoder.n_layers={c}", f"encoder.growth={g}"]
    if enc_args:
        raise UserError(
            f"checkpoint '{path}': unsupported {enc_official} encoder arguments {sorted(enc_args)}"
        )
    imnet = args.pop("imnet_spec", None)
    if imnet is not None:
        imnet_args = imnet.get("args") or {}
        if imnet.get("name") != "mlp" or imnet_args.get("out_dim", 3) != 3:
            raise UserError(f"checkpoint '{path}': unsupported imnet_spec {imnet}")
        overrides.append(f"model.decoder.mlp_hidden={list(imnet_args['hidden_list'])}")
    if "hidden_dim" in args:
        overrides.append(f"model.decoder.hidden_dim={args.pop('hidden_dim')}")
    for flag in ("local_ensemble", "feat_unfold", "cell_decode"):
        if args.pop(flag, True) is not True:
            raise UserError(
                f"checkpoint '{path}': {flag}=False variants of {name} are not supported"
            )
    if args:
        raise UserError(f"checkpoint '{path}': unsupported {name} arguments {sorted(args)}")
    return name, encoder, overrides


def _to_model_keys(official_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official key names → SRModel's (decoder parameters move under ``decoder.``); skip recomputed buffers."""
    out = {}
    for key, value in official_sd.items():
        if key.startswith(_SKIPPED_PREFIXES) or key.endswith(_SKIPPED_SUFFIXES):
            continue
        out[key if key.startswith("encoder.") else f"decoder.{key}"] = value
    return out


def _to_official_keys(model_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`_to_model_keys` for the parameters this model holds."""
    return {k.removeprefix("decoder."): v for k, v in model_sd.items()}


def _load_weights(model: SRModel, sd: dict[str, torch.Tensor], path: Path) -> None:
    """Copy ``sd`` into ``model``, with a one-line error naming missing, unexpected or mis-shaped keys."""
    own = model.state_dict()

    def listing(keys: list[str]) -> str:
        return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing:
        raise UserError(f"checkpoint '{path}' lacks weights the model needs: {listing(missing)}")
    if unexpected:
        raise UserError(
            f"checkpoint '{path}' has weights this model does not use: {listing(unexpected)}"
        )
    wrong = [
        f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}"
        for k, v in own.items()
        if sd[k].shape != v.shape
    ]
    if wrong:
        raise UserError(f"checkpoint '{path}' has weights of the wrong shape: {listing(wrong)}")
    model.load_state_dict(sd, strict=True)


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> LoadedModel:
    """Load an official release or an lte checkpoint into an :class:`SRModel` in eval mode.

    Raises:
        UserError: the file is missing, unreadable, not a model checkpoint, names an unknown model,
            or its weights don't match the model (one line naming the keys).
    """
    p = Path(path)
    obj = _read(p, map_location)
    if "lte" in obj and "state_dict" in obj:
        meta = obj["lte"]
        cfg = OmegaConf.create(meta["config"])
        model = instantiate_model(cfg)
        sd = obj["state_dict"]
        prefix = meta.get("prefix", "net.")
        sd = {k.removeprefix(prefix): v for k, v in sd.items() if k.startswith(prefix)}
        _load_weights(model, sd, p)
        loaded = LoadedModel(
            model,
            meta["model_name"],
            meta["encoder_name"],
            float(meta["scale_max"]),
            "lte",
            p,
            meta["config"],
        )
    elif isinstance(obj.get("model"), dict) and "sd" in obj["model"]:
        spec = obj["model"]
        name, encoder, overrides = _official_config(p, spec)
        cfg = model_config(name, encoder, overrides)
        model = instantiate_model(cfg)
        _load_weights(model, _to_model_keys(spec["sd"]), p)
        config = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(config, dict)
        loaded = LoadedModel(model, name, encoder, OFFICIAL_SCALE_MAX, "official", p, config)  # type: ignore[arg-type]
    else:
        raise UserError(
            f"'{p}' is not an LTE/LIIF/Meta-SR checkpoint: expected an official release "
            "({'model': {'name', 'args', 'sd'}}) or an lte training checkpoint ('state_dict' and 'lte')"
        )
    loaded.model.eval()
    return loaded


def checkpoint_metadata(
    config: dict[str, Any],
    model_name: str,
    encoder_name: str,
    scale_max: float,
    prefix: str = "net.",
) -> dict[str, Any]:
    """The ``"lte"`` entry of a checkpoint: everything :func:`load_checkpoint` needs, as plain data."""
    return {
        "config": config,
        "model_name": model_name,
        "encoder_name": encoder_name,
        "scale_max": float(scale_max),
        "normalization": dict(NORMALIZATION),
        "prefix": prefix,
        "format_version": 1,
    }


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temp file in the same folder, then rename: a crash never leaves half a file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(p) as tmp:
        torch.save(obj, tmp)


_OFFICIAL_ENCODER_NAMES = {v: k for k, v in _OFFICIAL_ENCODERS.items()}


def official_state(model: SRModel, model_name: str, encoder_name: str) -> dict[str, Any]:
    """The ``{"model": {"name", "args", "sd"}}`` dict of an official release holding ``model``'s weights.

    Only configurations that the released code can express are accepted (the four paper encoders
    with their standard widths); the decoder's MLP widths are written to ``imnet_spec``.
    """
    if encoder_name not in _OFFICIAL_ENCODER_NAMES or model_name not in _OFFICIAL_MODELS:
        raise UserError(f"{model_name}/{encoder_name} has no official-format equivalent")
    args: dict[str, Any] = {
        "encoder_spec": {
            "name": _OFFICIAL_ENCODER_NAMES[encoder_name],
            "args": {"no_upsampling": True},
        }
    }
    decoder = model.decoder
    if model_name in ("lte", "liif"):
        hidden = [m.out_features for m in decoder.imnet.layers if isinstance(m, torch.nn.Linear)][
            :-1
        ]
        args["imnet_spec"] = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": hidden}}
    if model_name == "lte":
        args["hidden_dim"] = decoder.hidden_dim
    sd = _to_official_keys(model.state_dict())
    sd.update(_recomputable_buffers(model, encoder_name))
    return {"model": {"name": model_name, "args": args, "sd": sd}}


#: EDSR's DIV2K RGB mean, held by the released files' (unused) mean-shift layers.
_EDSR_RGB_MEAN = (0.4488, 0.4371, 0.4040)
#: The training patch size the released SwinIR attention masks were built for.
_SWINIR_IMG_SIZE = 48


def _recomputable_buffers(model: SRModel, encoder_name: str) -> dict[str, torch.Tensor]:
    """The buffers a released file holds that this model recomputes or never uses, for a faithful export."""
    from lte.models.swinir import relative_position_index, shift_attention_mask

    extra: dict[str, torch.Tensor] = {}
    if encoder_name in ("edsr_baseline", "edsr"):
        mean = torch.tensor(_EDSR_RGB_MEAN)
        eye = torch.eye(3).view(3, 3, 1, 1)
        extra |= {"encoder.sub_mean.weight": eye.clone(), "encoder.sub_mean.bias": -mean}
        extra |= {"encoder.add_mean.weight": eye.clone(), "encoder.add_mean.bias": mean.clone()}
    elif encoder_name == "swinir":
        window = model.encoder.window_size
        size = _SWINIR_IMG_SIZE
        mask = shift_attention_mask(size, size, window, window // 2, torch.device("cpu"))
        for i, layer in enumerate(model.encoder.layers):
            for j, _block in enumerate(layer.residual_group.blocks):
                prefix = f"encoder.layers.{i}.residual_group.blocks.{j}"
                extra[f"{prefix}.attn.relative_position_index"] = relative_position_index(window)
                if j % 2 == 1:
                    extra[f"{prefix}.attn_mask"] = mask.clone()
    return extra


def save_official(
    model: SRModel, path: str | os.PathLike[str], model_name: str, encoder_name: str
) -> None:
    """Write ``model`` as an official-format ``.pth`` (atomically), loadable by the released code."""
    atomic_save(official_state(model, model_name, encoder_name), path)
