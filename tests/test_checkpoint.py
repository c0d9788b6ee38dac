"""Official checkpoints: every released configuration loads exactly; bad files get one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lte.checkpoint import checkpoint_metadata, load_checkpoint, official_state, save_official
from lte.errors import UserError
from lte.models import build_model, instantiate_model, model_config
from lte.models.spec import ModelSpec

LAYOUT = json.loads((Path(__file__).parent / "data" / "official_checkpoints.json").read_text())[
    "models"
]
CONFIGS = {
    "lte_edsr": ("lte", "edsr_baseline"),
    "liif_edsr": ("liif", "edsr_baseline"),
    "metasr_edsr": ("metasr", "edsr_baseline"),
    "lte_rdn": ("lte", "rdn"),
    "lte_swinir": ("lte", "swinir"),
    "lte_edsr_full": ("lte", "edsr"),
}
LARGE = {"lte_rdn", "lte_swinir", "lte_edsr_full"}


def official_file(key: str, path: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """Write a file in the released layout straight from the JSON listing (random tensors, not via lte)."""
    gen = torch.Generator().manual_seed(seed)
    spec = LAYOUT[key]
    sd = {k: torch.randn(*shape, generator=gen) for k, shape in spec["state_dict_shapes"].items()}
    torch.save({"model": {"name": spec["name"], "args": spec["args"], "sd": sd}}, path)
    return sd


@pytest.mark.parametrize(
    "key", [pytest.param(k, marks=pytest.mark.slow) if k in LARGE else k for k in CONFIGS]
)
def test_every_release_loads_and_matches(key: str, tmp_path: Path) -> None:
    path = tmp_path / f"{key}.pth"
    sd = official_file(key, path)
    loaded = load_checkpoint(path)
    assert (loaded.model_name, loaded.encoder_name) == CONFIGS[key]
    assert loaded.scale_max == 4.0 and loaded.source == "official"
    own = loaded.model.state_dict()
    for name, value in own.items():
        official_name = name if name.startswith("encoder.") else name.removeprefix("decoder.")
        assert torch.equal(value, sd[official_name]), name
    skipped = set(sd) - {n if n.startswith("encoder.") else n.removeprefix("decoder.") for n in own}
    assert all("mean" in k or "attn_mask" in k or "relative_position_index" in k for k in skipped)


@pytest.mark.parametrize(
    "key",
    [k for k in CONFIGS if k not in LARGE]
    + [pytest.param(k, marks=pytest.mark.slow) for k in sorted(LARGE)],
)
def test_export_reproduces_the_release_layout(key: str, tmp_path: Path) -> None:
    model_name, encoder_name = CONFIGS[key]
    net = build_model(model_name, encoder_name)
    state = official_state(net)["model"]
    assert state["args"] == LAYOUT[key]["args"]
    assert {k: list(v.shape) for k, v in state["sd"].items()} == LAYOUT[key]["state_dict_shapes"]
    path = tmp_path / "x.pth"
    save_official(net, path)
    again = load_checkpoint(path).model
    for (name, a), b in zip(net.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_recomputed_swinir_buffers_equal_the_released_ones() -> None:
    """The masks and indices we skip on load are the ones the release would have held (48×48 patches)."""
    net = build_model("lte", "swinir")
    sd = official_state(net)["model"]["sd"]
    mask = sd["encoder.layers.0.residual_group.blocks.1.attn_mask"]
    assert mask.shape == (36, 64, 64)
    assert set(mask.unique().tolist()) == {0.0, -100.0}
    assert (mask[0] == 0).all()  # the top-left window never straddles the shift seam
    index = sd["encoder.layers.0.residual_group.blocks.0.attn.relative_position_index"]
    assert index.shape == (64, 64) and index.min() == 0 and index.max() == 224
    assert (index.diagonal() == 112).all()  # zero offset: the centre of the 15×15 table


def _save_with(tmp_path: Path, mutate) -> Path:
    path = tmp_path / "edit.pth"
    official_file("lte_edsr", path)
    obj = torch.load(path, weights_only=True)
    mutate(obj)
    torch.save(obj, path)
    return path


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda o: o["model"]["sd"].pop("coef.weight"),
            "lacks weights the model needs: decoder.coef.weight",
        ),
        (
            lambda o: o["model"]["sd"].__setitem__("extra.w", torch.zeros(1)),
            "does not use: decoder.extra.w",
        ),
        (
            lambda o: o["model"]["sd"].__setitem__("phase.weight", torch.zeros(64, 2)),
            "wrong shape: decoder.phase.weight (64, 2)",
        ),
        (lambda o: o["model"].__setitem__("name", "nerf"), "unknown model name 'nerf'"),
        (
            lambda o: o["model"]["args"]["encoder_spec"].__setitem__("name", "vgg"),
            "unknown encoder 'vgg'",
        ),
    ],
    ids=["missing", "unexpected", "shape", "model-name", "encoder-name"],
)
def test_bad_releases_get_one_line_errors(tmp_path: Path, mutate, message: str) -> None:
    path = _save_with(tmp_path, mutate)
    with pytest.raises(UserError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert message in text and str(path) in text
    assert "\n" not in text


class Payload:
    """A pickled class instance: weights_only loading must refuse it rather than run code."""


def test_unreadable_files(tmp_path: Path) -> None:
    cases = {
        "missing.pth": None,
        "text.pth": b"hello, not a checkpoint",
        "truncated.pth": None,
        "list.pth": None,
        "code.pth": None,
        "weights.pth": None,
    }
    official_file("lte_edsr", tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pth").write_bytes(cases["text.pth"])
    torch.save([1, 2, 3], tmp_path / "list.pth")
    torch.save({"model": Payload()}, tmp_path / "code.pth")
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "weights.pth")
    expected = {
        "missing.pth": "does not exist",
        "text.pth": "not a PyTorch file",
        "truncated.pth": "not a PyTorch file or truncated",
        "list.pth": "not a dict of weights",
        "code.pth": "never runs code",
        "weights.pth": "is not an LTE/LIIF/Meta-SR checkpoint",
    }
    for name, message in expected.items():
        with pytest.raises(UserError, match=message) as info:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(info.value)


# --- model descriptions (lte.models.spec) ---------------------------------------------------------

TINY_ENCODERS = ["edsr_tiny", "rdn_tiny", "swinir_tiny"]


@pytest.mark.parametrize("decoder", ["lte", "liif", "metasr"])
@pytest.mark.parametrize("encoder", TINY_ENCODERS)
def test_description_round_trip(decoder: str, encoder: str) -> None:
    described = build_model(decoder, encoder).describe()
    spec = ModelSpec.from_dict(described)
    assert spec.to_dict() == described
    assert spec.build().describe() == described
    assert ModelSpec.from_dict(spec.to_dict()) == spec  # frozen and comparable


def _edit(path: tuple, value: object) -> dict:
    described = build_model("lte", "swinir_tiny").describe()
    node = described
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return described


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("encoder", "embed_dim"), True, "model.encoder.embed_dim must be a positive int"),
        (("encoder", "embed_dim"), 24.0, "model.encoder.embed_dim must be a positive int"),
        (("encoder", "embed_dim"), "24", "got '24'"),
        (("encoder", "window_size"), "${oc.env:HOME}", "window_size must be a positive int"),
        (("encoder", "mlp_ratio"), float("nan"), "model.encoder.mlp_ratio must be a finite number"),
        (("encoder", "mlp_ratio"), {"_target_": "os.getcwd"}, "mlp_ratio must be a finite number"),
        (("encoder", "drop_path_rate"), 1.0, "drop_path_rate must be a finite number >= 0 and < 1"),
        (("encoder", "depths"), [2] * 100, "model.encoder.depths must be a list of 1 to 32"),
        (("encoder", "depths", 1), -2, "model.encoder.depths[1] must be a positive int"),
        (("encoder", "num_heads"), [2], "num_heads must have one entry per stage of depths (2)"),
        (("encoder", "num_heads"), [5, 2], "num_heads[0] must divide embed_dim 24, got 5"),
        (("encoder", "in_channels"), 4, "model.encoder.in_channels must be 3, got 4"),
        (("encoder", "_target_"), "lte.models.SwinIR", "model.encoder holds a '_target_'"),
        (("encoder", "extra"), 1, "model.encoder has unknown field 'extra' (swinir takes"),
        (("encoder", "depths"), DELETE, "model.encoder.depths is missing"),
        (("encoder", "kind"), "vgg", "model.encoder.kind must be one of edsr, rdn, swinir"),
        (("decoder", "hidden_dim"), 255, "model.decoder.hidden_dim must be an even int"),
        (("decoder", "mlp_hidden"), 256, "model.decoder.mlp_hidden must be a list"),
        (("decoder",), "lte", "model.decoder must be a dict"),
        (("scale_max",), 0.5, "model.scale_max must be a finite number >= 1"),
        (("scale_max",), float("inf"), "model.scale_max must be a finite number >= 1"),
        (("scale_max",), DELETE, "model.scale_max is missing"),
        (("name",), "x", "model has unknown field 'name'"),
    ],
)
def test_bad_descriptions_name_the_field(path: tuple, value: object, message: str) -> None:
    with pytest.raises(UserError) as info:
        ModelSpec.from_dict(_edit(path, value), where="checkpoint 'x.ckpt'")
    text = str(info.value)
    assert text.startswith("checkpoint 'x.ckpt': ") and message in text, text
    assert "\n" not in text


# --- lte's own files: format 2, format 1, conversion ----------------------------------------------


def lte_checkpoint(net, path: Path, **extra) -> Path:
    """What training writes: weights under ``net.`` and the ``"lte"`` entry (plus Lightning's own)."""
    sd = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": sd, "lte": checkpoint_metadata(net), **extra}, path)
    return path


def v1_checkpoint(decoder: str, encoder: str, path: Path) -> tuple[object, Path]:
    """A format-1 file exactly as ``checkpoint_metadata`` wrote it before format 2 (resolved config)."""
    cfg = model_config(decoder, encoder)
    net = instantiate_model(cfg)
    meta = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "model_name": decoder,
        "encoder_name": encoder,
        "scale_max": 4.0,
        "normalization": {"mean": 0.5, "std": 0.5},
        "prefix": "net.",
        "format_version": 1,
    }
    sd = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": sd, "lte": meta, "global_step": 7}, path)
    return net, path


def assert_same_model(a, b) -> None:
    assert a.describe() == b.describe()
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_lte_file_keeps_scale_max_and_labels(tmp_path: Path) -> None:
    described = build_model("liif", "rdn_tiny").describe()
    net = ModelSpec.from_dict({**described, "scale_max": 3.0}).build()
    loaded = load_checkpoint(lte_checkpoint(net, tmp_path / "m.ckpt"))
    assert loaded.model.scale_max == 3.0 and loaded.scale_max == 3.0
    assert loaded.source == "lte" and loaded.spec.to_dict() == net.describe()
    rdn_tiny = "rdn-g0=16-n_blocks=2-n_layers=2-growth=8"
    assert (loaded.model_name, loaded.encoder_name) == ("liif", rdn_tiny)
    assert_same_model(net, loaded.model)


@pytest.mark.parametrize(("decoder", "encoder"), [("lte", "edsr_tiny"), ("metasr", "swinir_tiny")])
def test_format_1_files_load_as_data(decoder: str, encoder: str, tmp_path: Path) -> None:
    net, path = v1_checkpoint(decoder, encoder, tmp_path / "v1.ckpt")
    loaded = load_checkpoint(path)
    assert_same_model(net, loaded.model)
    assert loaded.scale_max == 4.0 and loaded.model_name == decoder
    assert loaded.encoder_name != encoder  # the stored config name is not the label any more


def test_format_1_refuses_unknown_targets(tmp_path: Path) -> None:
    _, path = v1_checkpoint("lte", "edsr_tiny", tmp_path / "v1.ckpt")
    obj = torch.load(path, weights_only=True)
    obj["lte"]["config"]["model"]["decoder"]["_target_"] = "lte.models.build.build_model"
    torch.save(obj, path)
    with pytest.raises(UserError, match=r"lte\.config\.model\.decoder\._target_ must be one of"):
        load_checkpoint(path)


def run_converter(*args: str) -> subprocess.CompletedProcess:
    script = Path(__file__).resolve().parents[1] / "scripts" / "convert_checkpoint.py"
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300
    )


def test_convert_format_1_and_official(tmp_path: Path) -> None:
    net, old = v1_checkpoint("lte", "edsr_tiny", tmp_path / "v1.ckpt")
    new = tmp_path / "v2.ckpt"
    res = run_converter(str(old), str(new))
    assert res.returncode == 0, res.stderr
    raw = torch.load(new, weights_only=True)
    assert raw["lte"] == checkpoint_metadata(net) and raw["global_step"] == 7  # the rest is kept
    assert_same_model(net, load_checkpoint(new).model)
    # NEW is never overwritten: one line, exit 2, file untouched.
    before = new.read_bytes()
    res = run_converter(str(old), str(new))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "already exists" in res.stderr
    assert new.read_bytes() == before
    # To the released layout and back.
    release = tmp_path / "release.pth"
    assert run_converter(str(new), str(release), "--to", "official").returncode == 0
    assert load_checkpoint(release).source == "official"
    again = tmp_path / "again.ckpt"
    assert run_converter(str(release), str(again)).returncode == 0
    assert_same_model(net, load_checkpoint(again).model)


def test_save_official_refuses_overwrite_and_inexpressible_models(tmp_path: Path) -> None:
    net = build_model("lte", "edsr_tiny")
    path = tmp_path / "m.pth"
    save_official(net, path)
    with pytest.raises(UserError, match="already exists"):
        save_official(net, path)
    save_official(net, path, overwrite=True)
    args = torch.load(path, weights_only=True)["model"]["args"]["encoder_spec"]["args"]
    assert args == {"no_upsampling": True, "n_resblocks": 2, "n_feats": 16, "res_scale": 1.0}
    described = net.describe()
    cases = {
        "scale_max 3 cannot be stored": {**described, "scale_max": 3.0},
        "Meta-SR with mlp_hidden [16]": {
            **described,
            "decoder": {"kind": "metasr", "mlp_hidden": [16]},
        },
        "swinir encoder": build_model("lte", "swinir_tiny").describe(),
    }
    for message, description in cases.items():
        with pytest.raises(UserError, match=re.escape(message)) as info:
            official_state(ModelSpec.from_dict(description).build())
        assert "\n" not in str(info.value)
