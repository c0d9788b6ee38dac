"""A checkpoint can't run code: every non-tensor field of real files, replaced by live payloads.

Each payload below is checked to be *live*: handed to ``hydra.utils.instantiate`` (as the format-1
loader once did) it really writes its marker file. The files stay loadable by
``torch.load(weights_only=True)``, so only lte's own reading stands between them and the payload.
After every load: no marker exists, and the result is a clean load (only where the field is not read,
or the payload equals the original value) or a one-line UserError naming the file.
"""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from conftest import sample_photos
from lte.checkpoint import checkpoint_metadata, load_checkpoint, official_state
from lte.errors import UserError
from lte.models import build_model, model_config

#: A small LTE: tiny EDSR and a narrow decoder, so the hundreds of loads below stay quick.
TINY = ["model.decoder.hidden_dim=16", "model.decoder.mlp_hidden=[16,16]"]


class WritesMarker:
    """Pickles as a call to ``Path.write_text``: ``torch.load(weights_only=False)`` would run it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (Path(self.path), "x"))


def payloads(markers: Path, pickled: Path) -> dict[str, Any]:
    """The hostile values; the first three write ``markers/<name>`` if anything instantiates them."""
    return {
        "write_text": {
            "_target_": "pathlib.Path.write_text",
            "self": {"_target_": "pathlib.Path", "_args_": [str(markers / "write_text")]},
            "data": "x",
        },
        "open": {"_target_": "builtins.open", "file": str(markers / "open"), "mode": "w"},
        "torch_load": {"_target_": "torch.load", "f": str(pickled), "weights_only": False},
        "env": "${oc.env:HOME}",
        "create": "${oc.create:{_target_:builtins.open,file:"
        + str(markers / "create")
        + ",mode:w}}",
        "list": [1, 2],
        "bool": True,
        "huge": 10**30,
        "nan": math.nan,
        "negative": -1,
        "none": None,
    }


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    markers = tmp_path / "markers"
    markers.mkdir()
    pickled = tmp_path / "payload.pkl"
    torch.save(WritesMarker(markers / "torch_load"), pickled)
    return markers, payloads(markers, pickled)


def test_payloads_are_live(tmp_path: Path, hostile: tuple[Path, dict[str, Any]]) -> None:
    """Sanity check of the test itself: instantiated, each code payload writes its marker."""
    from hydra.utils import instantiate

    markers, cases = hostile
    for name in ("write_text", "open", "torch_load"):
        result = instantiate(cases[name])
        if hasattr(result, "close"):
            result.close()
        assert (markers / name).exists(), name
        (markers / name).unlink()


def lte_file() -> dict[str, Any]:
    """What training writes (format 2), plus entries load_checkpoint never reads."""
    torch.manual_seed(0)
    net = build_model("lte", "edsr_tiny", TINY)
    sd = {f"net.{k}": v for k, v in net.state_dict().items()}
    return {
        "state_dict": sd,
        "lte": checkpoint_metadata(net),
        "global_step": 2,
        "train_config": {"seed": 0, "model_name": "lte"},
    }


def v1_file() -> dict[str, Any]:
    """A format-1 checkpoint exactly as ``checkpoint_metadata`` wrote it before format 2."""
    torch.manual_seed(0)
    cfg = model_config("lte", "edsr_tiny", TINY)
    net = build_model("lte", "edsr_tiny", TINY)
    sd = {f"net.{k}": v for k, v in net.state_dict().items()}
    return {"state_dict": sd, "lte": v1_metadata(OmegaConf.to_container(cfg, resolve=True))}


def v1_metadata(config: Any, model_name: str = "lte", encoder_name: str = "edsr_tiny") -> dict:
    return {
        "config": config,
        "model_name": model_name,
        "encoder_name": encoder_name,
        "scale_max": 4.0,
        "normalization": {"mean": 0.5, "std": 0.5},
        "prefix": "net.",
        "format_version": 1,
    }


def official_file() -> dict[str, Any]:
    """An official-layout release of a tiny EDSR (its sizes given as ``encoder_spec.args``)."""
    torch.manual_seed(0)
    return official_state(build_model("lte", "edsr_tiny", TINY))


#: Entries of each file that load_checkpoint never reads (anything may be there).
UNREAD = {"lte": ("global_step", "train_config"), "v1": (), "official": ()}
FILES = {"lte": lte_file, "v1": v1_file, "official": official_file}


def fields(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """Every non-tensor node below the root, as (key path, value)."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        if isinstance(value, torch.Tensor):
            continue
        yield (*path, key), value
        if isinstance(value, dict | list):
            yield from fields(value, (*path, key))


def replaced(obj: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    out = copy.copy(obj)  # tensors are shared, containers along the path are copied
    node = out
    for key in path[:-1]:
        node[key] = copy.copy(node[key])
        node = node[key]
    node[path[-1]] = value
    return out


def check_load(path: Path, markers: Path, clean_ok: bool, what: str) -> None:
    try:
        load_checkpoint(path)
    except UserError as err:
        text = str(err)
        assert "\n" not in text, (what, text)
        assert str(path) in text, (what, text)
    else:
        assert clean_ok, f"{what}: loaded without complaint"
    assert not any(markers.iterdir()), f"{what}: a payload ran"


def same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("kind", list(FILES))
def test_every_field_resists_every_payload(
    kind: str, tmp_path: Path, hostile: tuple[Path, dict[str, Any]]
) -> None:
    markers, cases = hostile
    original = FILES[kind]()
    path = tmp_path / "bad.ckpt"
    torch.save(original, path)
    assert load_checkpoint(path).source == ("official" if kind == "official" else "lte")
    tried = 0
    for field_path, value in list(fields(original)):
        unread = field_path[0] in UNREAD[kind]
        for name, payload in cases.items():
            torch.save(replaced(original, field_path, payload), path)
            torch.load(path, weights_only=True)  # the file itself is "safe" to torch
            what = f"{kind} {'.'.join(map(str, field_path))} = {name}"
            check_load(path, markers, unread or same(payload, value), what)
            tried += 1
        if isinstance(value, dict) and value:  # a missing key is one line too
            for key in value:
                smaller = replaced(
                    original, field_path, {k: v for k, v in value.items() if k != key}
                )
                torch.save(smaller, path)
                # Official files may leave out arguments that have a released default, and the
                # EDSR mean-shift buffers that lte never uses.
                optional = kind == "official" and key not in (
                    "name",
                    "sd",
                    "encoder_spec",
                    "hidden_list",
                )
                optional |= kind == "official" and field_path[-1] == "sd" and "_mean." in key
                check_load(path, markers, unread or optional, f"{kind} without {field_path}.{key}")
    assert tried >= 100  # the walk really covered the file


def test_loading_never_reaches_hydra_or_omegaconf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All three layouts load with Hydra's instantiate and OmegaConf's parsers unusable."""
    import hydra.utils

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a checkpoint load reached Hydra/OmegaConf")

    files = {}
    for kind, make in FILES.items():
        files[kind] = tmp_path / f"{kind}.ckpt"
        torch.save(make(), files[kind])
    monkeypatch.setattr(hydra.utils, "instantiate", forbidden)
    for name in ("create", "merge", "from_dotlist", "to_container", "load"):
        monkeypatch.setattr(OmegaConf, name, forbidden)
    for kind, path in files.items():
        loaded = load_checkpoint(path)
        assert loaded.encoder_name == "edsr-n_resblocks=2-n_feats=16", kind


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("kind", "field_path", "payload"),
    [
        ("lte", ("lte", "model", "encoder", "n_feats"), "write_text"),
        ("lte", ("lte", "model", "encoder"), "open"),
        ("v1", ("lte", "config", "encoder", "_target_"), "env"),
        ("v1", ("lte", "config", "model", "decoder"), "torch_load"),
        ("official", ("model", "args", "hidden_dim"), "create"),
        ("official", ("model", "args", "encoder_spec", "args", "n_feats"), "write_text"),
    ],
)
def test_upscale_cli_refuses_in_one_line(
    kind: str,
    field_path: tuple,
    payload: str,
    tmp_path: Path,
    hostile: tuple[Path, dict[str, Any]],
) -> None:
    markers, cases = hostile
    ckpt = tmp_path / "bad.ckpt"
    torch.save(replaced(FILES[kind](), field_path, cases[payload]), ckpt)
    out = tmp_path / "out.png"
    res = subprocess.run(
        [sys.executable, "-m", "lte.upscale", str(sample_photos()[0]), str(out)]  # noqa: RUF005
        + ["--ckpt", str(ckpt), "--scale", "2"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: checkpoint"), res.stderr
    assert field_path[-1] in lines[0]  # the message names the field
    assert not out.exists() and not any(markers.iterdir())
