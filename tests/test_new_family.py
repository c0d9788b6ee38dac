"""A new encoder family, declared and registered here (outside ``src``), goes the whole way with no
edit to lte: trained by the real ``lte.train``, saved, reloaded from the checkpoint alone, tiled
exactly, and scored by ``lte.test``.

The family is what a family file in ``src/lte/models`` holds: a module declaring the encoder
contract, a :class:`~lte.models.fields.FamilyConfig` with its bounds, a preset, and the one
``register_encoder`` call that puts it on the allow-list. The Hydra config is a YAML file written
into a temporary config folder, found through ``hydra.searchpath``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from cli import SMALL_TRAIN, run_in_process
from conftest import ROOT, sample_photos
from lte.checkpoint import load_checkpoint, official_state, save_lte
from lte.data.images import load_rgb, normalize, to_tensor
from lte.errors import UserError
from lte.inference import predict
from lte.models import families
from lte.models.families import encoder_family, register_encoder
from lte.models.family import EncoderFamily
from lte.models.fields import IN_CHANNELS, FamilyConfig, int_field, param
from lte.models.spec import ModelSpec


class GridEncoder(nn.Module):
    """A 3x3 convolution, then ``depth`` times ReLU and a 3x3 convolution: ``width`` features per
    LR pixel, each reading ``depth + 1`` pixels around it."""

    kind = "grid_conv"
    pad_multiple = 0
    upscale: int | None = None

    def __init__(self, width: int = 8, depth: int = 1, in_channels: int = 3) -> None:
        super().__init__()
        self.config = GridConfig(width, depth, in_channels).to_dict()
        self.out_channels = width
        self.receptive_radius = depth + 1
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1)]
        for _ in range(depth):
            layers += [nn.ReLU(), nn.Conv2d(width, width, 3, padding=1)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)  # (B, width, h, w)


@dataclass(frozen=True)
class GridConfig(FamilyConfig):
    """The new family's fields and bounds."""

    width: int = param(int_field(1, 64), 8)
    depth: int = param(int_field(0, 8), 1)
    in_channels: int = param(IN_CHANNELS, 3)


FAMILY = EncoderFamily(module=GridEncoder, config=GridConfig, presets={"grid_tiny": GridConfig()})


@pytest.fixture(scope="module", autouse=True)
def _registered() -> Iterator[None]:
    """The family on the allow-list for this module's tests only (the rest of the session keeps
    lte's own families, as a fresh process has them)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(families, "_registered_encoders", [])
        register_encoder(FAMILY)  # Python only: nothing read from a file can do this
        yield


#: The small decoder and training run (cli.SMALL_TRAIN with the new encoder).
TRAIN = [
    *(o for o in SMALL_TRAIN if not o.startswith("encoder=")),
    "encoder=grid_tiny",
    "model.decoder.hidden_dim=16",
    "model.decoder.mlp_hidden=[16,16]",
    "logger=none",
]
LABEL = "grid_conv-width=8-depth=1-in_channels=3"  # spelled out: the family names no label


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoint ``lte.train`` writes for the new family, configured from a YAML file in a
    config folder of its own."""
    root = tmp_path_factory.mktemp("new_family")
    conf = root / "conf" / "encoder"
    conf.mkdir(parents=True)
    preset = {"_target_": f"{__name__}.GridEncoder", **FAMILY.presets["grid_tiny"].to_dict()}
    OmegaConf.save(OmegaConf.create(preset), conf / "grid_tiny.yaml")
    res = run_in_process(
        "lte.train",
        *TRAIN,
        f"hydra.searchpath=[file://{root / 'conf'}]",
        f"hydra.run.dir={root / 'run'}",
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (ckpt,) = (root / "run").rglob("last.ckpt")
    return ckpt


def test_the_family_is_allow_listed_from_python_only() -> None:
    assert encoder_family("grid_conv") is FAMILY
    register_encoder(FAMILY)  # the same family again: nothing happens
    other = EncoderFamily(module=GridEncoder, config=GridConfig)
    with pytest.raises(ValueError, match="'grid_conv' already exists"):
        register_encoder(other)
    bad = {
        "decoder": {"kind": "liif", "mlp_hidden": [8]},
        "encoder": {"kind": "grid_conv", "width": 65, "depth": 1, "in_channels": 3},
        "scale_max": 4.0,
    }
    with pytest.raises(UserError, match=r"model\.encoder\.width must be a positive int <= 64"):
        ModelSpec.from_dict(bad, "checkpoint 'x.ckpt'")


def test_train_save_reload_tile_and_score(trained: Path, tmp_path: Path) -> None:
    raw = torch.load(trained, map_location="cpu", weights_only=True)
    assert raw["lte"]["model"]["encoder"] == {
        "kind": "grid_conv",
        "width": 8,
        "depth": 1,
        "in_channels": 3,
    }
    loaded = load_checkpoint(trained)
    assert loaded.source == "lte" and (loaded.model_name, loaded.encoder_name) == ("lte", LABEL)
    assert isinstance(loaded.model.encoder, GridEncoder)
    trained_sd = {k.removeprefix("net."): v for k, v in raw["state_dict"].items()}
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, trained_sd[key]), key

    # Saved again and reloaded: the same model. It has no released form, and says so in one line.
    again = tmp_path / "again.ckpt"
    save_lte(loaded.model, again)
    reloaded = load_checkpoint(again).model
    for (key, a), b in zip(
        loaded.model.state_dict().items(), reloaded.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), key
    with pytest.raises(UserError, match=r"grid_conv encoder .* has no official-format equivalent"):
        official_state(loaded.model)

    # Tiled prediction equals the whole image (margin: the encoder's radius plus the decoder's reach).
    assert loaded.model.receptive_radius == 2 + loaded.model.decoder.reach
    image = load_rgb(sample_photos()[0])[20:43, 30:49]
    lr = normalize(to_tensor(image)).unsqueeze(0)
    whole = predict(loaded.model, lr, (46, 38), tile=0)
    for tile in (5, 8):
        tiled = predict(loaded.model, lr, (46, 38), tile=tile, chunk=101)
        assert (tiled - whole).abs().max().item() < 1e-5, tile

    # lte.test scores it from the checkpoint alone.
    results = tmp_path / "results.json"
    res = run_in_process(
        "lte.test",
        f"ckpt={trained}",
        "testset=sample",
        "scales=[3]",
        f"results_file={results}",
        f"hydra.run.dir={tmp_path / 'test'}",
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (record,) = json.loads(results.read_text())
    assert (record["model"], record["encoder"]) == ("lte", LABEL)
    assert record["images"] == 3 and np.isfinite(record["psnr"])


def test_an_unregistered_kind_is_refused_in_one_line(trained: Path, tmp_path: Path) -> None:
    raw = torch.load(trained, map_location="cpu", weights_only=True)
    raw["lte"]["model"]["encoder"]["kind"] = "grid_conv_2"
    path = tmp_path / "unknown.ckpt"
    torch.save(raw, path)
    with pytest.raises(UserError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert re.search(r"model\.encoder\.kind must be one of edsr, rdn, swinir, .*grid_conv", text)
    assert "\n" not in text
