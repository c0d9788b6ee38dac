"""The model card: a small JSON file beside each export saying what the model is and where it is from.

``lte-export CKPT OUT`` writes ``OUT.card.json`` (``model.safetensors.card.json``,
``model.onnx.card.json``: the full name, so two formats of one model never share a card). Its
top-level fields follow OpenModelDB's model schema where one fits, so the card reads as a model
entry there: ``name``, ``author``, ``license`` (an SPDX expression or null), ``description``,
``date`` (of the export, yyyy-mm-dd), ``architecture``, ``scale`` (the native scale of a fixed-scale
model; null for an arbitrary-scale one, which OpenModelDB has no field for), ``inputChannels``,
``outputChannels``, ``resources`` (one per file: ``type``, ``platform``, ``size``, ``sha256``,
``urls``; lte adds ``file`` and ``role``, and ``type`` is ``safetensors`` where OpenModelDB knows
``pth`` and ``onnx`` only), and from a training checkpoint ``dataset``, ``trainingEpochs``,
``trainingIterations`` and ``trainingBatchSize``. What OpenModelDB has no field for is under
``"lte"``: the description (``SRModel.describe()``), labels, ``scale_max``, the normalisation, the
parameter count, the source file and its SHA-256, the official repository and its licence, the
training data and W&B run, and ``lte.test`` results for this checkpoint.

Licences: an official release's card records the licence of the repository that released it (data
in :data:`OFFICIAL_ORIGINS`; both are BSD-3-Clause). A model trained here gets no licence unless
``--license`` gives one: its weights' terms follow from its training data (DIV2K is for academic
research), which lte cannot know, so the card says ``null`` and why instead of guessing.

What a checkpoint records of its training (``train_config``, ``epoch``) is data: only known keys of
plain types are copied, never interpreted.
"""

from __future__ import annotations

import datetime
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lte
from lte.checkpoint import NORMALIZATION, LoadedModel
from lte.checksum import sha256_file
from lte.errors import UserError, quote
from lte.results import method_label, read_results

#: The card's own layout, for readers: raised when a field changes meaning.
CARD_VERSION = 1

#: An SPDX license expression as users write it: ids, ``AND``/``OR``/``WITH``, parentheses.
_SPDX = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9.+\-]*(?:\s+(?:AND|OR|WITH)\s+[A-Za-z0-9(][A-Za-z0-9.+\-()]*)*"
)
#: A value copied from a checkpoint's training record: strings are cut to this many characters.
_MAX_TEXT = 300


@dataclass(frozen=True)
class Origin:
    """Where an official release comes from: its repositories, their licence and the paper's authors."""

    repositories: tuple[str, ...]
    license: str
    authors: tuple[str, ...]
    paper: str


_LTE = Origin(
    ("https://github.com/jaewon-lee-b/lte",),
    "BSD-3-Clause",
    ("Jaewon Lee", "Kyong Hwan Jin"),
    "Local Texture Estimator for Implicit Representation Function (CVPR 2022)",
)
_LIIF = Origin(
    ("https://github.com/yinboc/liif",),
    "BSD-3-Clause",
    ("Yinbo Chen", "Sifei Liu", "Xiaolong Wang"),
    "Learning Continuous Image Representation with Local Implicit Image Function (CVPR 2021)",
)
#: Official releases by released model name. The licences are those of the repositories' LICENSE
#: files (both BSD 3-Clause); Meta-SR is LIIF's reimplementation. The fixed-scale baselines are
#: released as ``liif`` without an MLP; both repositories hold their training configs.
OFFICIAL_ORIGINS: Mapping[str, Origin] = {
    "lte": _LTE,
    "lte-fast": _LTE,
    "liif": _LIIF,
    "metasr": _LIIF,
}
_FIXED_SCALE = Origin(
    (*_LIIF.repositories, *_LTE.repositories),
    "BSD-3-Clause",
    (),
    "the EDSR-baseline / RDN rows of the LIIF and LTE papers",
)

#: What a card says of a model trained here when no ``--license`` is given.
NO_LICENSE = (
    "not given at export (lte-export --license SPDX): the weights' terms follow from the training "
    "data (DIV2K is for academic research use), which lte does not decide"
)

_TITLES = {"lte": "LTE", "liif": "LIIF", "metasr": "Meta-SR", "nearest": "fixed-scale"}


def card_path(path: str | os.PathLike[str]) -> Path:
    """The card of exported file ``path``: ``NAME.card.json`` beside it."""
    p = Path(path)
    return p.with_name(p.name + ".card.json")


def check_license(value: str | None) -> str | None:
    """``value`` if it looks like an SPDX expression (``MIT``, ``BSD-3-Clause``, ``CC-BY-4.0 OR
    MIT``, ``LicenseRef-...``), ``None`` for none; else a one-line UserError."""
    if value is None:
        return None
    if len(value) > 200 or not _SPDX.fullmatch(value.strip()):
        raise UserError(
            f"--license {quote(value)} is not an SPDX license expression: use an id from "
            "https://spdx.org/licenses/ such as MIT, Apache-2.0 or CC-BY-4.0 (or LicenseRef-NAME)"
        )
    return value.strip()


def origin_of(loaded: LoadedModel) -> Origin | None:
    """The official origin of a loaded model (an official file, or an export of one), else None."""
    if loaded.release is None:
        return None
    if loaded.model.native_scale is not None:
        return _FIXED_SCALE
    return OFFICIAL_ORIGINS.get(loaded.release)


def read_test_results(results: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record of an ``lte.test`` results file, validated (before any checkpoint is loaded)."""
    return read_results(results, option="--results")


def results_for(
    records: Sequence[dict[str, Any]],
    results: str | os.PathLike[str],
    ckpt: str | os.PathLike[str],
    loaded: LoadedModel,
) -> list[dict[str, Any]]:
    """The records of results file ``results`` that score this checkpoint.

    A record counts when it names this model (labels) and this file: the path as given, or the
    same file under another spelling.

    Raises:
        UserError: no record of this checkpoint.
    """
    mine = [
        rec
        for rec in records
        if rec["model"] == loaded.model_name
        and rec["encoder"] == loaded.encoder_name
        and _same_file(rec["ckpt"], ckpt)
    ]
    if not mine:
        seen = sorted({str(rec["ckpt"]) for rec in records})
        listing = ", ".join(quote(s) for s in seen[:3]) + (" ..." if len(seen) > 3 else "")
        raise UserError(
            f"--results {quote(results)} holds no lte.test record of {quote(ckpt)} "
            f"({loaded.model_name}, {loaded.encoder_name}); it scores {listing or 'nothing'}: "
            f"run python -m lte.test ckpt={ckpt} results_file=... first"
        )
    return [{k: v for k, v in rec.items() if k != "per_image"} for rec in mine]


def _same_file(recorded: str, ckpt: str | os.PathLike[str]) -> bool:
    if str(recorded) == str(ckpt):
        return True
    try:
        return os.path.samefile(recorded, ckpt)
    except OSError:
        return False


def _plain(value: Any) -> Any:
    """A value from a checkpoint's training record if it is a plain finite number, bool or short
    text; ``None`` otherwise (a card never carries what it cannot show as data)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value[:_MAX_TEXT]
    return None


def _node(data: Any, *keys: str) -> Any:
    for key in keys:
        data = data.get(key) if isinstance(data, Mapping) else None
    return data


def training_record(obj: Mapping[str, Any] | None, loaded: LoadedModel) -> dict[str, Any] | None:
    """What a training checkpoint says of its run (``train_config``, ``epoch``, ``global_step``,
    the W&B run), as plain data; ``None`` for files without it (releases, exports)."""
    if obj is None:
        return None
    config = obj.get("train_config")
    data = _node(config, "data")
    run = loaded.training_run.to_dict() if loaded.training_run is not None else None
    if not isinstance(config, Mapping) and run is None:
        return None
    train_dir = _plain(_node(data, "train_dir"))
    record = {
        "train_dir_name": Path(train_dir).name if isinstance(train_dir, str) else None,
        "data": {
            key: _plain(_node(data, key))
            for key in ("scale_min", "scale_max", "scale", "inp_size", "sample_q", "sampler")
            if _node(data, key) is not None
        },
        "batch_size": _plain(_node(data, "batch_size")),
        "epoch": _plain(obj.get("epoch")),
        "global_step": _plain(obj.get("global_step")),
        "max_epochs": _plain(_node(config, "trainer", "max_epochs")),
        "seed": _plain(_node(config, "seed")),
        "wandb_run": run,
    }
    return record


def _authors(origin: Origin | None) -> list[str] | None:
    """The paper's authors of an official release, else ``None`` (unknown)."""
    return list(origin.authors) if origin is not None and origin.authors else None


def _resources(files: Sequence[Path], fmt: str) -> list[dict[str, Any]]:
    platform = "onnx" if fmt == "onnx" else "pytorch"
    roles = ["weights"] if fmt == "safetensors" else ["encoder graph", "query graph"]
    return [
        {
            "type": fmt,
            "platform": platform,
            "file": p.name,
            "role": role,
            "size": p.stat().st_size,
            "sha256": sha256_file(p),
            "urls": [],
        }
        for p, role in zip(files, roles, strict=True)
    ]


def build_card(
    loaded: LoadedModel,
    files: Sequence[Path],
    fmt: str,
    *,
    license: str | None = None,
    author: str | None = None,
    results: list[dict[str, Any]] | None = None,
    checkpoint: Mapping[str, Any] | None = None,
    ckpt_sha256: str | None = None,
) -> dict[str, Any]:
    """The card of an export: ``files`` written in format ``fmt`` (``safetensors`` or ``onnx``)
    from ``loaded``; ``checkpoint`` is the source file's dict when it is a torch file."""
    description = loaded.model.describe()
    model_name, encoder_name = loaded.model_name, loaded.encoder_name
    origin = origin_of(loaded)
    native = loaded.model.native_scale
    chosen = license if license is not None else (origin.license if origin else None)
    training = training_record(checkpoint, loaded) if loaded.source == "lte" else None
    if native is not None:
        scales = f"x{native} only (a fixed-scale model)"
    else:
        scales = f"any scale, trained up to x{loaded.scale_max:g} (the cell is enlarged beyond)"
    card: dict[str, Any] = {
        "name": method_label(model_name, encoder_name),
        "author": author if author is not None else _authors(origin),
        "license": chosen,
        "description": (
            f"{_TITLES.get(model_name, model_name)} super-resolution with the {encoder_name} encoder: "
            f"{scales}. Exported by lte {lte.__version__} from {loaded.source} file "
            f"{Path(loaded.path).name}."
        ),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "architecture": model_name,
        "scale": native,
        "inputChannels": 3,
        "outputChannels": 3,
        "resources": _resources(files, fmt),
    }
    if training is not None:
        card["dataset"] = training["train_dir_name"]
        card["trainingEpochs"] = training["epoch"]
        card["trainingIterations"] = training["global_step"]
        card["trainingBatchSize"] = training["batch_size"]
    card["lte"] = {
        "card_version": CARD_VERSION,
        "format": fmt,
        "model": description,
        "model_name": model_name,
        "encoder_name": encoder_name,
        "scale_max": loaded.scale_max,
        "native_scale": native,
        "normalization": dict(NORMALIZATION),
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "source": {
            "kind": loaded.source,
            "file": Path(loaded.path).name,
            "sha256": ckpt_sha256,
            "release": loaded.release,
            "repositories": list(origin.repositories) if origin else None,
            "paper": origin.paper if origin else None,
        },
        "license_note": (
            "given at export"
            if license is not None
            else (f"the licence of {', '.join(origin.repositories)}" if origin else NO_LICENSE)
        ),
        "training": training,
        "results": results,
    }
    return card
