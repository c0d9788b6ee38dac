"""lte's ``.safetensors`` files: the weights with no pickle at all, the model's description as data.

A safetensors file is an 8-byte little-endian header length, a JSON header, then the raw bytes of
each tensor. Reading it runs no Python object constructor, so it is the portable form of a model:
``lte-export CKPT OUT.safetensors`` writes it, and every reader of checkpoints (``lte.upscale``,
``lte.test``, ``lte.fourier``, the converter) loads it through :func:`lte.checkpoint.load_checkpoint`.

The header lte writes::

    {
      "__metadata__": {                      # str -> str, as safetensors requires
        "format": "pt",                      # safetensors' convention for PyTorch tensors
        "lte": "<JSON>",                     # the checkpoint's "lte" entry, prefix "":
                                             #   {"format_version": 2, "model": SRModel.describe(),
                                             #    "normalization": {"mean": 0.5, "std": 0.5},
                                             #    "prefix": ""}
        "lte.release": "lte-fast"            # only when the weights came from an official release
      },
      "encoder.head.0.weight": {"dtype": "F32", "shape": [64, 3, 3, 3], "data_offsets": [0, 6912]},
      ...                                    # every SRModel.state_dict() key, float32
    }

On reading, the ``"lte"`` string is parsed as JSON and validated exactly as a checkpoint's entry is
(:func:`~lte.checkpoint.lte_format.lte_spec`: format version, normalisation, then
:class:`~lte.models.spec.ModelSpec`); the tensors then go through the same weight checks as every
other layout (:mod:`.building`). Every problem is one :class:`~lte.errors.UserError` line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from lte.atomic import atomic_path
from lte.checkpoint.lte_format import checkpoint_metadata, lte_spec
from lte.checkpoint.official import official_models
from lte.errors import UserError, quote
from lte.files import check_input
from lte.models.fields import short_repr
from lte.models.spec import ModelSpec
from lte.models.sr import SRModel

#: The file suffix lte reads as safetensors whatever its first bytes hold.
SUFFIX = ".safetensors"
#: Header keys lte writes and reads; other keys (another tool's notes) are left alone.
LTE_KEY = "lte"
RELEASE_KEY = "lte.release"
#: The longest ``"lte"`` entry read: a description is a few hundred bytes, never megabytes.
MAX_ENTRY_CHARS = 1 << 16
#: Largest header the sniffing of :func:`is_safetensors` believes (safetensors' own limit).
_MAX_HEADER = 100_000_000


def is_safetensors(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is read as safetensors: its suffix, or a header length and a ``{``.

    Content decides too, so a renamed file still loads; a torch file starts with a zip or pickle
    signature, never with a small little-endian length followed by ``{``.
    """
    if Path(path).suffix.lower() == SUFFIX:
        return True
    if not os.path.isfile(path):  # missing, a folder, a FIFO (opening it would block): not sniffed
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return 2 <= size <= _MAX_HEADER and head[8:9] == b"{"


def safetensors_metadata(model: SRModel, release: str | None = None) -> dict[str, str]:
    """The ``__metadata__`` of ``model``'s safetensors file (see the module docstring)."""
    meta = {"format": "pt", LTE_KEY: json.dumps(checkpoint_metadata(model, prefix=""))}
    if release is not None:
        meta[RELEASE_KEY] = release
    return meta


def save_safetensors(model: SRModel, path: Path, *, release: str | None = None) -> None:
    """Write ``model``'s weights and description to ``path`` atomically (the caller checked ``path``).

    ``release`` records the official release the weights came from (``lte-fast``, ...), so an ONNX
    file or a card made from this file later still knows their origin.
    """
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=safetensors_metadata(model, release))


def _decode_entry(text: Any, where: str) -> Any:
    """The ``"lte"`` header entry as JSON data: plain numbers only (no NaN or Infinity)."""
    if not isinstance(text, str) or len(text) > MAX_ENTRY_CHARS:
        raise UserError(
            f"{where}: header entry 'lte' must be a JSON text of at most {MAX_ENTRY_CHARS} "
            f"characters, got {short_repr(text)}"
        )

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        return json.loads(text, parse_constant=no_constant)
    except (ValueError, RecursionError) as err:
        msg = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise UserError(f"{where}: header entry 'lte' is not valid JSON ({msg})") from None


def check_release(value: Any, where: str, key: str) -> str:
    """An official release name recorded beside a description (``lte.release``), checked as data."""
    names = tuple(official_models())
    if not isinstance(value, str) or value not in names:
        raise UserError(
            f"{where}: {key} must be one of {', '.join(names)} (the official release the weights "
            f"came from), got {short_repr(value)}"
        )
    return value


def description_entry(meta: Mapping[str, Any], where: str) -> tuple[ModelSpec, str, str | None]:
    """The validated model, weight prefix and release of a header's (or ONNX file's) lte keys.

    ``meta`` maps header keys to strings: ``"lte"`` (required) and ``"lte.release"`` (optional).

    Raises:
        UserError: no ``"lte"`` entry (a file lte did not write), bad JSON, or any field that a
            checkpoint's entry would be refused for.
    """
    if LTE_KEY not in meta:
        raise UserError(
            f"{where} was not written by lte: it holds no 'lte' model description; export it "
            "with lte-export from a checkpoint"
        )
    spec, prefix = lte_spec(_decode_entry(meta[LTE_KEY], where), where)
    release = meta.get(RELEASE_KEY)
    return spec, prefix, None if release is None else check_release(release, where, RELEASE_KEY)


@dataclass(frozen=True)
class SafetensorsFile:
    """What a safetensors file holds: the validated description and the tensors, unchecked."""

    spec: ModelSpec
    prefix: str
    release: str | None
    tensors: dict[str, torch.Tensor]


def read_safetensors(path: Path, map_location: str | torch.device = "cpu") -> SafetensorsFile:
    """Read ``path``'s header and tensors (no pickle; the weights are checked by the caller's build).

    Raises:
        UserError: not a regular file, not a safetensors file or truncated, no lte description, or
            a description that does not validate.
    """
    where = f"checkpoint {quote(path)}"
    check_input(path, "checkpoint", missing="check --ckpt / ckpt=")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            spec, prefix, release = description_entry(meta, where)
            tensors = {key: f.get_tensor(key).to(map_location) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, RuntimeError, TypeError, ValueError) as err:
        msg = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise UserError(
            f"cannot read checkpoint {quote(path)}: not a safetensors file or truncated ({msg})"
        ) from None
    return SafetensorsFile(spec, prefix, release, tensors)
