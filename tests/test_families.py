"""The family declarations: each one is the single statement of its architecture's identity.

Presets equal ``conf/encoder/*.yaml`` (and the decoders' defaults ``conf/model/*.yaml``), the
constructors' defaults equal the configs', each release table reads back what it writes, the
buffers skipped on load are exactly those export writes, and what a checkpoint records beside the
model (its training run) and a ``scale_max`` given at load time come back with the model.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class
from omegaconf import OmegaConf

from lte.checkpoint import checkpoint_metadata, load_checkpoint, official_state, save_official
from lte.checkpoint.official import encoder_spec, read_encoder, release_buffers
from lte.checkpoint.reading import valid_run_id
from lte.errors import UserError
from lte.models import build_model
from lte.models.edsr import EDSR
from lte.models.families import DECODER_FAMILIES, ENCODER_FAMILIES, register_encoder
from lte.models.identity import named_encoders
from lte.training.loggers import valid_run_id as training_valid_run_id

CONF = Path(__file__).resolve().parents[1] / "src" / "lte" / "conf"


def test_encoder_presets_are_the_encoder_configs() -> None:
    presets = {name: fam for fam in ENCODER_FAMILIES for name in fam.presets}
    files = sorted(p.stem for p in (CONF / "encoder").glob("*.yaml"))
    assert sorted(presets) == files
    for name, family in presets.items():
        node = OmegaConf.to_container(OmegaConf.load(CONF / "encoder" / f"{name}.yaml"))
        assert get_class(node.pop("_target_")) is family.module, name
        assert node == family.presets[name].to_dict(), name


def test_decoder_defaults_are_the_model_configs() -> None:
    for family in DECODER_FAMILIES:
        node = OmegaConf.to_container(OmegaConf.load(CONF / "model" / f"{family.kind}.yaml"))
        decoder = node["decoder"]
        assert get_class(decoder.pop("_target_")) is family.module
        assert decoder.pop("_partial_") is True
        assert decoder == family.config().to_dict(), family.kind


@pytest.mark.parametrize("family", ENCODER_FAMILIES + DECODER_FAMILIES, ids=lambda f: f.kind)
def test_constructor_defaults_are_the_config_defaults(family) -> None:
    params = inspect.signature(family.module).parameters
    for field in dataclasses.fields(family.config):
        default = params[field.name].default
        expected = field.default
        assert (tuple(default) if isinstance(default, list) else default) == expected, field.name


def test_labels_are_the_papers_encoders() -> None:
    assert named_encoders() == {
        "edsr_baseline": build_model("lte", "edsr_baseline").describe()["encoder"],
        "edsr": build_model("lte", "edsr").describe()["encoder"],
        "rdn": build_model("lte", "rdn").describe()["encoder"],
        "swinir": build_model("lte", "swinir").describe()["encoder"],
    }


@pytest.mark.parametrize(
    "encoder",
    [
        {"kind": "edsr", "n_resblocks": 16, "n_feats": 64, "res_scale": 1.0, "in_channels": 3},
        {"kind": "edsr", "n_resblocks": 2, "n_feats": 16, "res_scale": 0.5, "in_channels": 3},
        {"kind": "rdn", "g0": 64, "n_blocks": 20, "n_layers": 6, "growth": 32, "kernel": 3}
        | {"in_channels": 3},
        {"kind": "rdn", "g0": 32, "n_blocks": 16, "n_layers": 8, "growth": 64, "kernel": 5}
        | {"in_channels": 3},
    ]
    + [fam.describe(name) for fam in ENCODER_FAMILIES for name in fam.labels],
    ids=lambda e: "-".join(str(v) for v in e.values()),
)
def test_each_release_table_reads_back_what_it_writes(encoder: dict) -> None:
    assert read_encoder(encoder_spec(encoder), "model.args.encoder_spec") == encoder


def test_release_tables_refuse_what_they_cannot_write() -> None:
    swin = ENCODER_FAMILIES[2].describe("swinir_tiny")
    rdn = ENCODER_FAMILIES[1].describe("rdn") | {"n_blocks": 3}  # neither config A nor B
    for encoder in (swin, rdn):
        with pytest.raises(UserError, match="has no official-format equivalent"):
            encoder_spec(encoder)


@pytest.mark.parametrize("model", ["lte", "metasr"])
@pytest.mark.parametrize("encoder", ["edsr_tiny", "swinir_tiny"])
def test_skipped_buffers_are_the_written_ones(model: str, encoder: str) -> None:
    net = build_model(model, encoder)
    spec_encoder = net.describe()["encoder"]
    written = set(release_buffers(spec_encoder))
    assert written and all(k.startswith("encoder.") for k in written)
    own = {k if k.startswith("encoder.") else k.removeprefix("decoder.") for k in net.state_dict()}
    if encoder == "swinir_tiny":  # written only for released configurations: check the table alone
        assert {k.rsplit(".", 1)[-1] for k in written} == {"relative_position_index", "attn_mask"}
        return
    state = official_state(net)["model"]["sd"]
    assert set(state) - own == written


def test_load_takes_scale_max_and_never_changes_the_model_after(tmp_path: Path) -> None:
    net = build_model("lte", "edsr_tiny")
    path = tmp_path / "m.pth"
    save_official(net, path)
    assert load_checkpoint(path).scale_max == 4.0
    loaded = load_checkpoint(path, scale_max=2.5)
    assert loaded.scale_max == loaded.model.scale_max == loaded.spec.scale_max == 2.5
    assert load_checkpoint(path, scale_max=0.5).scale_max == 0.5  # --scale-max takes any > 0
    for bad in (0, -1.0, float("inf"), float("nan"), True, "3"):
        with pytest.raises(UserError, match="scale_max must be a finite number > 0"):
            load_checkpoint(path, scale_max=bad)  # type: ignore[arg-type]


def _lte_file(path: Path, **extra: object) -> Path:
    net = build_model("lte", "edsr_tiny")
    sd = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": sd, "lte": checkpoint_metadata(net), **extra}, path)
    return path


def test_the_training_run_comes_with_the_model(tmp_path: Path) -> None:
    wandb = {"logger": {"wandb": {"project": "lte", "entity": "me", "mode": "offline"}}}
    loaded = load_checkpoint(
        _lte_file(tmp_path / "a.ckpt", wandb_run_id="abc123", train_config=wandb)
    )
    assert loaded.training_run is not None
    assert loaded.training_run.to_dict() == {
        "id": "abc123",
        "project": "lte",
        "entity": "me",
        "path": "me/lte/abc123",
    }
    bad_names = {"logger": {"wandb": {"project": "a/b", "entity": None}}}
    loaded = load_checkpoint(
        _lte_file(tmp_path / "b.ckpt", wandb_run_id="abc123", train_config=bad_names)
    )
    assert loaded.training_run.to_dict() == {"id": "abc123", "path": "abc123"}
    for run_id in ("../x", "", 7, None):
        path = _lte_file(tmp_path / "c.ckpt", wandb_run_id=run_id, train_config=wandb)
        assert load_checkpoint(path).training_run is None
    official = tmp_path / "o.pth"
    save_official(build_model("lte", "edsr_tiny"), official)
    assert load_checkpoint(official).training_run is None


def test_run_ids_are_plain_names_only() -> None:
    """One rule for a run id read from a file (loading and training's resume share it)."""
    assert training_valid_run_id is valid_run_id
    for value in ("abc", "A-b_9", "x" * 128):
        assert valid_run_id(value) == value
    for value in ("x" * 129, "a b", "../x", "", None, 7, "é"):
        assert valid_run_id(value) is None, value


def test_capabilities_are_declared_not_probed() -> None:
    assert build_model("lte", "edsr_tiny").has_fourier
    assert not build_model("liif", "edsr_tiny").has_fourier
    assert EDSR(n_resblocks=1, n_feats=4).upscale is None
    assert build_model("lte", "swinir_tiny").native_scale is None  # SwinIR declares upscale None
    assert build_model("nearest", "edsr_tiny", ["encoder.upscale=3"]).native_scale == 3


def test_registration_takes_families_only() -> None:
    with pytest.raises(TypeError, match="takes an EncoderFamily"):
        register_encoder("edsr")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'edsr' already exists"):
        register_encoder(dataclasses.replace(ENCODER_FAMILIES[0], presets={}))
