"""Weights are checked for what they are: a tensor of the wrong kind is one line, never a model.

``load_state_dict`` alone would widen int8 weights into the float32 model (an image up to 8 levels
off), read bool and complex ones as garbage, and crash on sparse or meta tensors. Each row writes a
real checkpoint with one tensor replaced, in each layout lte reads (an lte checkpoint, an official
``.pth`` release, an ``lte-fast`` release, a fixed-scale baseline, a Lightning training checkpoint), and runs it through
the real entry points: ``lte.upscale``, ``lte.test`` and ``lte.train ckpt_path=`` (resume). A
refused file gives one ``error:`` line naming the file, the key and the dtype or layout, exit 2, and
the checkpoint is unchanged. Half precision and float64 are accepted (:mod:`lte.weights`): they
load into the float32 model exactly (float16, bfloat16) or rounded (float64).
"""

from __future__ import annotations

import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

import lte.test
import lte.train
import lte.upscale
from cli import SMALL_TRAIN, run_main, snapshot
from conftest import sample_photos
from lte.checkpoint import checkpoint_metadata, load_checkpoint, official_state
from lte.cli.test import main as lte_test_main
from lte.cli.train import main as train_main
from lte.cli.upscale import main as upscale_main
from lte.errors import UserError
from lte.models import EDSR, NearestDecoder, SRModel, build_model
from lte.weights import WEIGHT_DTYPES, tensor_problem

REFUSED_DTYPE = "lte reads floating-point weights only (float32, float16, bfloat16 or float64)"


def _quantised(t: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():  # torch deprecates making quantised tensors, not reading them
        warnings.simplefilter("ignore")
        return torch.quantize_per_tensor(t, 0.01, 0, torch.qint8)


#: kind -> (how to turn a float32 weight into it, the message's fragment or None if accepted).
KINDS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], str | None]] = {
    "int8": (lambda t: t.to(torch.int8), f"is torch.int8; {REFUSED_DTYPE}"),
    "int64": (lambda t: t.to(torch.int64), f"is torch.int64; {REFUSED_DTYPE}"),
    "bool": (lambda t: t > 0, f"is torch.bool; {REFUSED_DTYPE}"),
    "complex64": (lambda t: t.to(torch.complex64), f"is torch.complex64; {REFUSED_DTYPE}"),
    "qint8": (_quantised, f"is torch.qint8; {REFUSED_DTYPE}"),
    "sparse": (lambda t: t.to_sparse(), "is stored as torch.sparse_coo (not dense)"),
    "meta": (lambda t: torch.empty_like(t, device="meta"), "is a meta tensor"),
    "float16": (lambda t: t.half(), None),
    "bfloat16": (lambda t: t.bfloat16(), None),
    "float64": (lambda t: t.double(), None),
}

#: layout -> the key replaced in it: an encoder weight, an official decoder weight, LTE+'s
#: frequency convolution (reordered on load, so the reshaping code sees the odd tensors too) and
#: the upsampler of a released fixed-scale baseline.
LAYOUTS = {
    "lte": "encoder.head.0.weight",
    "official": "imnet.layers.0.weight",
    "lte-fast": "freq.weight",
    "fixed-scale": "encoder.tail.1.weight",
}


def write(layout: str, path: Path, kind: str | None = None) -> Path:
    """A real checkpoint of a tiny model in ``layout``, its :data:`LAYOUTS` key made ``kind``."""
    torch.manual_seed(0)
    if layout == "fixed-scale":  # EDSR with its x2 upsampler, as the released baselines
        net = SRModel(EDSR(n_resblocks=2, n_feats=8, upscale=2), NearestDecoder, scale_max=2)
    else:
        net = build_model("lte", "edsr_tiny")
    key = LAYOUTS[layout]
    if layout == "lte":
        obj = {"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}
        obj["lte"] = checkpoint_metadata(net)
        sd, key = obj["state_dict"], f"net.{key}"
    else:
        obj = official_state(net, "lte-fast" if layout == "lte-fast" else "standard")
        sd = obj["model"]["sd"]
    if kind is not None:
        sd[key] = KINDS[kind][0](sd[key])
    torch.save(obj, path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weights")
    photo = root / "photo.png"
    Image.open(sample_photos()[0]).convert("RGB").crop((100, 100, 140, 132)).save(photo)
    hr = root / "set" / "HR"
    hr.mkdir(parents=True)
    Image.open(sample_photos()[1]).convert("RGB").crop((0, 0, 48, 48)).save(hr / "a.png")
    return {"root": root, "photo": photo, "hr": hr}


def one_error_line(
    res: subprocess.CompletedProcess[str], path: Path, key: str, fragment: str
) -> None:
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr + res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr[-3000:]
    assert lines[0].startswith(f"error: checkpoint '{path}'") and key in lines[0], lines[0]
    assert fragment in lines[0], lines[0]


ROWS = [(layout, kind) for layout in LAYOUTS for kind in KINDS]


@pytest.mark.parametrize(("layout", "kind"), ROWS, ids=[f"{a}-{b}" for a, b in ROWS])
def test_upscale(world: dict[str, Path], tmp_path: Path, layout: str, kind: str) -> None:
    ckpt = write(layout, tmp_path / f"{kind}.pth", kind)
    before = snapshot(ckpt)
    out = tmp_path / "out.png"
    argv = [str(world["photo"]), str(out), "--ckpt", str(ckpt), "--scale", "2", "--device", "cpu"]
    res = run_main(lambda: upscale_main(argv), argv, prog=lte.upscale.__file__)
    fragment = KINDS[kind][1]
    if fragment is None:
        assert res.returncode == 0, res.stderr
        assert Image.open(out).size == (80, 64)
    else:
        one_error_line(res, ckpt, LAYOUTS[layout], fragment)
        assert not out.exists()
    assert snapshot(ckpt) == before


@pytest.mark.parametrize(("layout", "kind"), ROWS, ids=[f"{a}-{b}" for a, b in ROWS])
def test_lte_test(world: dict[str, Path], tmp_path: Path, layout: str, kind: str) -> None:
    ckpt = write(layout, tmp_path / f"{kind}.pth", kind)
    before = snapshot(ckpt)
    results = tmp_path / "r.json"
    argv = [
        f"ckpt={ckpt}",
        "testset=folder",
        f"testset.hr_dir={world['hr']}",
        "scales=[2]",
        f"results_file={results}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    res = run_main(lte_test_main, argv, prog=lte.test.__file__)
    fragment = KINDS[kind][1]
    if fragment is None:
        assert res.returncode == 0, res.stderr
        assert results.is_file()
    else:
        one_error_line(res, ckpt, LAYOUTS[layout], fragment)
        assert not results.exists()
    assert snapshot(ckpt) == before


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_file_loads_exactly(tmp_path: Path, dtype: torch.dtype) -> None:
    """A model saved in half precision loads into float32 without loss: every value is kept."""
    torch.manual_seed(0)
    net = build_model("lte", "edsr_tiny")
    half = {k: v.to(dtype) for k, v in net.state_dict().items()}
    torch.save(
        {"state_dict": {f"net.{k}": v for k, v in half.items()}, "lte": checkpoint_metadata(net)},
        tmp_path / "h.ckpt",
    )
    loaded = load_checkpoint(tmp_path / "h.ckpt").model.state_dict()
    for k, v in half.items():
        assert loaded[k].dtype == torch.float32 and torch.equal(loaded[k], v.float()), k


def test_float64_beyond_float32_is_refused(tmp_path: Path) -> None:
    path = write("lte", tmp_path / "big.ckpt")
    obj = torch.load(path, weights_only=True)
    obj["state_dict"]["net.encoder.head.0.weight"] = (
        obj["state_dict"]["net.encoder.head.0.weight"].double() * 1e300
    )
    torch.save(obj, path)
    with pytest.raises(
        UserError, match=r"encoder\.head\.0\.weight holds torch\.float64 values beyond"
    ):
        load_checkpoint(path)


def test_tensor_problem_by_kind() -> None:
    w = torch.ones(2, 3)
    for dtype in WEIGHT_DTYPES:
        assert tensor_problem(w.to(dtype), w) is None
    assert "is torch.int8" in str(tensor_problem(w.to(torch.int8), w))
    # A buffer the model keeps as integers takes exactly that dtype, and no float.
    counter = torch.zeros((), dtype=torch.int64)
    assert tensor_problem(counter.clone(), counter) is None
    assert "where the model keeps torch.int64" in str(tensor_problem(torch.zeros(()), counter))
    # Without the model's tensor, only what no weight may be (an official int64 index passes).
    assert tensor_problem(torch.arange(4)) is None
    with warnings.catch_warnings():  # torch calls its CSR support beta
        warnings.simplefilter("ignore")
        assert "stored as torch.sparse_csr (not dense)" in str(tensor_problem(w.to_sparse_csr()))
    assert "not a tensor" in str(tensor_problem([1.0, 2.0]))


# --- resuming training (ckpt_path=) ----------------------------------------------------------

TRAIN = [*SMALL_TRAIN, "logger=none", "trainer.max_steps=1"]


def train(*overrides: str) -> subprocess.CompletedProcess[str]:
    return run_main(train_main, [*TRAIN, *overrides], prog=lte.train.__file__)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The last.ckpt of a real one-step run of edsr_tiny."""
    run = tmp_path_factory.mktemp("trained") / "run"
    res = train(f"hydra.run.dir={run}")
    assert res.returncode == 0, res.stderr[-3000:]
    return run / "checkpoints" / "last.ckpt"


def resume_line(res: subprocess.CompletedProcess[str], path: Path, fragment: str) -> str:
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr + res.stdout
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr[-3000:]
    assert errors[0].startswith(f"error: ckpt_path '{path}'") and fragment in errors[0], errors[0]
    return errors[0]


RESUME_KEY = "net.encoder.head.0.weight"


@pytest.mark.slow
@pytest.mark.parametrize("kind", [k for k, (_, f) in KINDS.items() if f is not None])
def test_resume_refuses(trained: Path, tmp_path: Path, kind: str) -> None:
    obj = torch.load(trained, map_location="cpu", weights_only=True)
    obj["state_dict"][RESUME_KEY] = KINDS[kind][0](obj["state_dict"][RESUME_KEY])
    ckpt = tmp_path / "odd.ckpt"
    torch.save(obj, ckpt)
    before = snapshot(ckpt)
    res = train(f"hydra.run.dir={tmp_path / 'run'}", f"ckpt_path={ckpt}")
    resume_line(res, ckpt, f"weight {RESUME_KEY} {KINDS[kind][1]}")
    assert snapshot(ckpt) == before
    assert not (tmp_path / "run" / "checkpoints").exists() or not any(
        (tmp_path / "run" / "checkpoints").iterdir()
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        ("nan", f"has non-finite weights (NaN or infinity) in 1 tensor(s), e.g. {RESUME_KEY}"),
        ("exp_avg int8", "optimizer_states[0] state 0 exp_avg is torch.int8"),
        ("exp_avg sparse", "optimizer_states[0] state 0 exp_avg is stored as torch.sparse_coo"),
    ],
)
def test_resume_refuses_corrupt_state(
    trained: Path, tmp_path: Path, edit: str, fragment: str
) -> None:
    obj = torch.load(trained, map_location="cpu", weights_only=True)
    state = obj["optimizer_states"][0]["state"][0]
    if edit == "nan":
        obj["state_dict"][RESUME_KEY] = torch.full_like(obj["state_dict"][RESUME_KEY], float("nan"))
    elif edit == "exp_avg int8":
        state["exp_avg"] = state["exp_avg"].to(torch.int8)
    else:
        state["exp_avg"] = state["exp_avg"].to_sparse()
    ckpt = tmp_path / "odd.ckpt"
    torch.save(obj, ckpt)
    res = train(f"hydra.run.dir={tmp_path / 'run'}", f"ckpt_path={ckpt}")
    resume_line(res, ckpt, fragment)


@pytest.mark.slow
def test_resume_from_half_precision_weights(trained: Path, tmp_path: Path) -> None:
    """float16 weights resume: they load into the float32 model and training goes on."""
    obj = torch.load(trained, map_location="cpu", weights_only=True)
    obj["state_dict"] = {k: v.half() for k, v in obj["state_dict"].items()}
    ckpt = tmp_path / "half.ckpt"
    torch.save(obj, ckpt)
    res = train(f"hydra.run.dir={tmp_path / 'fresh'}", f"ckpt_path={ckpt}", "trainer.max_steps=2")
    assert res.returncode == 0, res.stderr[-3000:]
    after = torch.load(tmp_path / "fresh" / "checkpoints" / "last.ckpt", weights_only=True)
    assert after["global_step"] == 2
    assert all(v.dtype == torch.float32 for v in after["state_dict"].values())
