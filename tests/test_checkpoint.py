"""Official checkpoints: every released configuration loads exactly; bad files get one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lte.checkpoint import load_checkpoint, official_state, save_official
from lte.errors import UserError
from lte.models import build_model

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
