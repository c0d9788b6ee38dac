"""Official LMF files (``lmlte``/``lmliif``, SPEC.md "LMF: Checkpoints"): written by hand in the
released layout, read through the one weights-only path, and written back identically.

The releases cannot be downloaded here, so each file below is built from SPEC's key list and the
official ``configs/train-lmf`` arguments (``mixed_le`` included, as the released configs carry it),
never through lte's exporter; the EDSR-baseline encoder's keys come from the LTE layout listing.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from literal import LITERAL
from lte.checkpoint import checkpoint_metadata, load_checkpoint, official_state, save_official
from lte.errors import UserError
from lte.models import build_model

LAYOUT = json.loads((Path(__file__).parent / "data" / "official_checkpoints.json").read_text())[
    "models"
]
#: The released EDSR-baseline encoder's keys and shapes (mean shifts included).
EDSR_BASELINE = {
    k: v for k, v in LAYOUT["lte_edsr"]["state_dict_shapes"].items() if k.startswith("encoder.")
}
ENCODER_SPEC = {"name": "edsr-baseline", "args": {"no_upsampling": True}}


def lmlte_args(mixed_le: bool = True) -> dict:
    """``configs/train-lmf/train_edsr-baseline-lmlte.yaml``'s model arguments."""
    return {
        "encoder_spec": copy.deepcopy(ENCODER_SPEC),
        "imnet_spec": {
            "name": "lmmlp",
            "args": {
                "out_dim": 3,
                "hidden_dim": 16,
                "hidden_depth": 8,
                "mod_scale": True,
                "mod_shift": True,
            },
        },
        "hypernet_spec": {"name": "mlp", "args": {"out_dim": 288, "hidden_list": [288]}},
        "hidden_dim": 128,
        "local_ensemble": True,
        **({"mixed_le": True} if mixed_le else {}),
        "cell_decode": True,
        "mod_input": True,
    }


def lmliif_args(depth: int = 6, mixed_le: bool = True) -> dict:
    """``configs/train-lmf/train_edsr-baseline-lmliif.yaml``'s model arguments (the SwinIR file
    renders 8 deep and still says ``out_dim: 208``, which the constructor overrides)."""
    return {
        "encoder_spec": copy.deepcopy(ENCODER_SPEC),
        "imnet_spec": {
            "name": "lmmlp",
            "args": {
                "out_dim": 3,
                "hidden_dim": 16,
                "hidden_depth": depth,
                "mod_scale": True,
                "mod_shift": True,
            },
        },
        "hypernet_spec": {"name": "mlp", "args": {"out_dim": 208, "hidden_list": [208]}},
        "local_ensemble": True,
        **({"mixed_le": True} if mixed_le else {}),
        "feat_unfold": True,
        "cell_decode": True,
        "mod_input": True,
    }


def lmlte_shapes() -> dict[str, list[int]]:
    """SPEC "LM-LTE": ``coef``/``freq`` [128, 64, 3, 3], ``phase`` [64, 2], ``hypernet.layers.{0,2}``
    ([288, 128], [288, 288]), ``imphase`` [8, 2], ``imnet.layers.{0..14}`` [16, 16], ``16`` [3, 16]."""
    shapes = dict(EDSR_BASELINE)
    for name in ("coef", "freq"):
        shapes |= {f"{name}.weight": [128, 64, 3, 3], f"{name}.bias": [128]}
    shapes |= {"phase.weight": [64, 2]}
    shapes |= {"hypernet.layers.0.weight": [288, 128], "hypernet.layers.0.bias": [288]}
    shapes |= {"hypernet.layers.2.weight": [288, 288], "hypernet.layers.2.bias": [288]}
    shapes |= {"imphase.weight": [8, 2]}
    for i in range(0, 16, 2):
        shapes |= {f"imnet.layers.{i}.weight": [16, 16], f"imnet.layers.{i}.bias": [16]}
    return shapes | {"imnet.layers.16.weight": [3, 16], "imnet.layers.16.bias": [3]}


def lmliif_shapes(depth: int = 6) -> dict[str, list[int]]:
    """SPEC "LM-LIIF": ``hypernet`` 578 -> 208 -> 16·2·depth + 16, ``imnet.layers.0`` [16, 20]."""
    out = 16 * 2 * depth + 16
    shapes = dict(EDSR_BASELINE)
    shapes |= {"hypernet.layers.0.weight": [208, 578], "hypernet.layers.0.bias": [208]}
    shapes |= {"hypernet.layers.2.weight": [out, 208], "hypernet.layers.2.bias": [out]}
    shapes |= {"imnet.layers.0.weight": [16, 20], "imnet.layers.0.bias": [16]}
    for i in range(2, 2 * depth, 2):
        shapes |= {f"imnet.layers.{i}.weight": [16, 16], f"imnet.layers.{i}.bias": [16]}
    return shapes | {
        f"imnet.layers.{2 * depth}.weight": [3, 16],
        f"imnet.layers.{2 * depth}.bias": [3],
    }


def release(name: str, args: dict, shapes: dict, path: Path, seed: int = 0) -> dict:
    """Write ``{"model": {"name", "args", "sd"}, "optimizer", "epoch"}`` as the official train.py
    saves it (random tensors; the optimizer entry as plain data)."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in shapes.items():
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 100
        # Damped in the encoder: 16 residual blocks of unit-gain convolutions grow without bound.
        gain = 0.3 if key.startswith("encoder.") else 1.0
        sd[key] = torch.randn(*shape, generator=gen) * gain / math.sqrt(fan_in)
    # The official EDSR's unused mean shifts: identity 1x1 convolutions, bias -/+ the DIV2K mean.
    mean = torch.tensor([0.4488, 0.4371, 0.4040])
    for shift, sign in (("sub_mean", -1), ("add_mean", 1)):
        if f"encoder.{shift}.weight" in sd:
            sd[f"encoder.{shift}.weight"] = torch.eye(3).view(3, 3, 1, 1)
            sd[f"encoder.{shift}.bias"] = sign * mean
    entry = {"name": name, "args": args, "sd": sd}
    torch.save(
        {"model": entry, "optimizer": {"name": "adam", "args": {"lr": 1e-4}}, "epoch": 3}, path
    )
    return sd


CASES = {
    "lmlte": (lmlte_args, lmlte_shapes, "lm_lte"),
    "lmliif": (lmliif_args, lmliif_shapes, "lm_liif"),
}


@pytest.mark.parametrize("name", CASES)
def test_a_hand_written_release_loads_and_exports_back_identically(
    name: str, tmp_path: Path
) -> None:
    args_of, shapes_of, kind = CASES[name]
    path = tmp_path / f"{name}.pth"
    sd = release(name, args_of(), shapes_of(), path)
    loaded = load_checkpoint(path)
    assert (loaded.model_name, loaded.encoder_name) == (kind, "edsr_baseline")
    assert loaded.source == "official" and loaded.scale_max == 4.0
    own = loaded.model.state_dict()
    for key, value in own.items():
        assert torch.equal(value, sd[key.removeprefix("decoder.")]), key
    assert set(sd) - {k.removeprefix("decoder.") for k in own} == {
        k for k in EDSR_BASELINE if "mean" in k
    }
    # Written back: the same arguments (mixed_le, which the current code rejects, is dropped) and
    # the same tensors under the same names.
    state = official_state(loaded.model)["model"]
    assert state["name"] == name
    expected_args = args_of(mixed_le=False)
    if name == "lmliif":
        expected_args["hypernet_spec"]["args"]["out_dim"] = 208  # 16·2·6 + 16, as the file says
    assert state["args"] == expected_args
    assert set(state["sd"]) == set(sd)
    for key, value in sd.items():
        assert torch.equal(state["sd"][key], value), key
    again = tmp_path / "again.pth"
    save_official(loaded.model, again)
    reread = load_checkpoint(again).model.state_dict()
    for key, value in own.items():
        assert torch.equal(reread[key], value), key


def test_the_loaded_release_computes_spec(tmp_path: Path) -> None:
    """The weights land where SPEC's math reads them: the loaded model equals the literal reading."""
    from grids import query_grid

    for name, (args_of, shapes_of, kind) in CASES.items():
        path = tmp_path / f"{name}.pth"
        release(name, args_of(), shapes_of(), path, seed=1)
        net = load_checkpoint(path).model.eval()
        lr = torch.randn(1, 3, 7, 9)
        coord, cell = query_grid((23, 30), 1, cell_scale=(1.2, 1.2))
        with torch.no_grad():
            out = net.query(net.encode(lr, cell=cell), coord, cell, kernel="fast")
            ref = LITERAL[kind](net, lr, coord, cell)
        assert (out - ref).abs().max() < 1e-5, name


def test_the_swinir_lmliif_release_renders_eight_deep(tmp_path: Path) -> None:
    """The SwinIR file's yaml says ``out_dim: 208``; the constructor makes the hypernetwork's output
    272 (8 layers of scales and shifts plus the latent code). Read on an EDSR-baseline encoder, which
    is what changes nothing here but the encoder."""
    path = tmp_path / "deep.pth"
    release("lmliif", lmliif_args(depth=8), lmliif_shapes(depth=8), path)
    loaded = load_checkpoint(path)
    assert loaded.spec.decoder.to_dict() == {
        "kind": "lm_liif",
        "hypernet_hidden": [208],
        "render_width": 16,
        "render_depth": 8,
        "mod_scale": True,
        "mod_shift": True,
    }
    assert (
        loaded.model.describe()["decoder"]
        == build_model("lm_liif", "edsr_tiny", ["model.decoder.render_depth=8"]).describe()[
            "decoder"
        ]
    )


def _edited(tmp_path: Path, edit) -> Path:
    args = lmlte_args()
    edit(args)
    path = tmp_path / "edited.pth"
    release("lmlte", args, lmlte_shapes(), path)
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a: a.pop("mod_input"), "model.args.mod_input is missing: lte implements LM-LTE"),
        (lambda a: a.__setitem__("mod_input", False), "model.args.mod_input must be True"),
        (
            lambda a: a.__setitem__("local_ensemble", False),
            "model.args.local_ensemble must be True",
        ),
        (lambda a: a.__setitem__("mixed_le", "yes"), "model.args.mixed_le must be true or false"),
        (lambda a: a.pop("hypernet_spec"), "model.args.hypernet_spec is missing"),
        (
            lambda a: a["imnet_spec"].__setitem__("name", "mlp"),
            "imnet_spec.name must be one of lmmlp",
        ),
        (
            lambda a: a["imnet_spec"]["args"].__setitem__("use_conv", True),
            "imnet_spec.args.use_conv must be false",
        ),
        (
            lambda a: a["imnet_spec"]["args"].__setitem__("hidden_depth", 0),
            "imnet_spec.args.hidden_depth must be a positive int",
        ),
        (
            lambda a: a["imnet_spec"]["args"].__setitem__("hidden_dim", 15),
            "imnet_spec.args.hidden_dim must be even",
        ),
        (
            lambda a: a["imnet_spec"]["args"].__setitem__("mod_scale", 1),
            "imnet_spec.args.mod_scale must be true or false, got 1",
        ),
        (
            lambda a: a["hypernet_spec"]["args"].__setitem__("hidden_list", "288"),
            "hypernet_spec.args.hidden_list must be a list",
        ),
        (lambda a: a.__setitem__("cmsr_spec", None), "model.args has unknown field 'cmsr_spec'"),
        (lambda a: a.__setitem__("hidden_dim", {"_target_": "os.system"}), "hidden_dim must be"),
    ],
)
def test_bad_release_arguments_get_one_line_errors(tmp_path: Path, edit, message: str) -> None:
    path = _edited(tmp_path, edit)
    with pytest.raises(UserError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert message in text and str(path) in text, text
    assert "\n" not in text


def test_release_weights_must_match_their_arguments(tmp_path: Path) -> None:
    """A file whose render MLP is deeper than its arguments say is refused, naming the weights."""
    path = tmp_path / "mismatch.pth"
    release("lmliif", lmliif_args(depth=6), lmliif_shapes(depth=8), path)
    with pytest.raises(UserError, match=r"does not use: decoder\.imnet\.layers\.14\.weight"):
        load_checkpoint(path)


@pytest.mark.parametrize("kind", ["lm_lte", "lm_liif"])
def test_lte_format_files_round_trip(kind: str, tmp_path: Path) -> None:
    """A checkpoint trained here (format 2) holds the description and loads the same model."""
    net = build_model(kind, "rdn_tiny", ["model.decoder.render_depth=3"])
    path = tmp_path / "m.ckpt"
    sd = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": sd, "lte": checkpoint_metadata(net)}, path)
    loaded = load_checkpoint(path)
    assert loaded.model.describe() == net.describe()
    for (key, a), b in zip(
        net.state_dict().items(), loaded.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), key
    with pytest.raises(UserError, match="has no official-format equivalent"):
        save_official(loaded.model, tmp_path / "x.pth")  # rdn_tiny: no released encoder
