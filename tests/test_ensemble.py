"""The self-ensemble (``predict(..., ensemble=4|8)``, ``lte.upscale --ensemble``, ``eval.ensemble=``)
against a literal loop over the dihedral views.

The reference below is written out by hand, without :mod:`lte.geometry`'s view helpers: for each of
the 8 (or 4) views the LR is mirrored and turned with ``torch.flip`` / ``torch.rot90``, predicted on
its own (transposed for quarter turns) output grid by the literal decoder of ``tests/literal.py``,
turned back, and the predictions are averaged. A view handled wrongly (a missed transpose of an
anisotropic target, a rotation undone the wrong way) is off by far more than 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import sample_photos
from literal import literal_image
from lte.data.images import load_rgb, normalize, to_tensor
from lte.errors import UserError
from lte.evaluation import EvalSettings
from lte.evaluation.methods import Network
from lte.evaluation.protocol import super_resolve
from lte.inference import predict
from lte.models.build import build_model

MODELS = ("lte", "liif", "metasr")


def photo_lr(h: int, w: int) -> torch.Tensor:
    """A normalised ``(1, 3, h, w)`` crop of a real photo: no symmetry a bug could hide behind."""
    img = load_rgb(sample_photos()[1])[50 : 50 + h, 70 : 70 + w]
    return normalize(to_tensor(img)).unsqueeze(0)


def literal_ensemble(
    predict_one, lr: torch.Tensor, out_hw: tuple[int, int], n: int
) -> torch.Tensor:
    """The mean over the first ``n`` of: identity, 90°, 180°, 270° counter-clockwise turns, then the
    same four after a left-right mirror; each predicted whole and turned back."""
    total = None
    for k in range(n):
        turns, mirrored = k % 4, k >= 4
        view = torch.flip(lr, dims=[3]) if mirrored else lr
        view = torch.rot90(view, turns, dims=[2, 3])
        size = (out_hw[1], out_hw[0]) if turns in (1, 3) else out_hw
        pred = predict_one(view, size)
        assert pred.shape[-2:] == size
        back = torch.rot90(pred, -turns, dims=[2, 3])
        if mirrored:
            back = torch.flip(back, dims=[3])
        total = back if total is None else total + back
    assert total is not None
    return total / n


@pytest.mark.parametrize("n", [4, 8])
@pytest.mark.parametrize("tile", [0, 8])
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(
    ("lr_hw", "out_hw"),
    [((12, 12), (30, 30)), ((11, 15), (33, 45)), ((11, 15), (60, 31))],
    ids=["square", "non-square", "anisotropic"],
)
def test_ensemble_equals_the_literal_loop(
    name: str, n: int, tile: int, lr_hw: tuple[int, int], out_hw: tuple[int, int]
) -> None:
    """(60, 31) from (11, 15) is x5.5 by x2.1: turned, the cell is enlarged on the other axis."""
    model = build_model(name, "edsr_tiny").eval()
    lr = photo_lr(*lr_hw)
    ref = literal_ensemble(lambda v, size: literal_image(model, v, size, chunk=500), lr, out_hw, n)
    out = predict(model, lr, out_hw, tile=tile, ensemble=n)
    assert out.shape == (1, 3, *out_hw)
    assert (out - ref).abs().max().item() < 1e-5
    # The views do disagree: the ensemble is not the single prediction under another name.
    single = predict(model, lr, out_hw, tile=tile)
    assert (out - single).abs().max().item() > 1e-3


@pytest.mark.parametrize("tile", [0, 8])
def test_fixed_scale_model_ensemble(tile: int) -> None:
    """A fixed-scale (EDSR-baseline-style x2 upsampler + nearest lookup) model, non-square input."""
    model = build_model("nearest", "edsr_tiny", ["encoder.upscale=2"]).eval()
    lr = photo_lr(11, 15)

    def one(view: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return predict(model, view, size, tile=0, kernel="exact")

    ref = literal_ensemble(one, lr, (22, 30), 8)
    out = predict(model, lr, (22, 30), tile=tile, ensemble=8)
    assert (out - ref).abs().max().item() < 1e-5


def test_padded_encoder_turns_its_padding_with_the_image() -> None:
    """SwinIR's protocol mirror-pads bottom/right; each view is the padded image turned whole."""
    model = build_model("lte", "swinir_tiny").eval()
    lr01 = photo_lr(13, 10) * 0.5 + 0.5
    out = super_resolve(model, lr01, (39, 30), 3.0, ensemble=4)
    from lte.evaluation.protocol import model_input

    inp = model_input(lr01, model.pad_multiple)
    grid = (round(3 * inp.shape[-2]), round(3 * inp.shape[-1]))
    ref = literal_ensemble(lambda v, size: predict(model, v, size, tile=0), inp, grid, 4)
    ref = (ref[..., :39, :30] * 0.5 + 0.5).clamp(0, 1)
    assert (out - ref).abs().max().item() < 1e-5


def test_progress_counts_every_view() -> None:
    model = build_model("lte", "edsr_tiny").eval()
    calls: list[tuple[int, int]] = []
    predict(
        model,
        photo_lr(16, 16),
        (32, 32),
        tile=8,
        ensemble=4,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls == [(i, 16) for i in range(1, 17)]  # 2 x 2 tiles x 4 views


def test_bad_sizes_are_refused() -> None:
    model = build_model("lte", "edsr_tiny").eval()
    with pytest.raises(ValueError, match=r"ensemble must be one of \(1, 4, 8\), got 2"):
        predict(model, photo_lr(8, 8), (16, 16), ensemble=2)
    for bad in (2, 0, True, "8"):
        with pytest.raises(UserError, match=rf"eval.ensemble={bad} must be 1 \(no self-ensemble\)"):
            EvalSettings((2,), ensemble=bad)  # type: ignore[arg-type]


def test_records_name_the_ensemble() -> None:
    """An ensemble is another method: its records must not replace the plain model's."""
    net = Network(build_model("lte", "edsr_tiny"))
    assert net.ready(EvalSettings((2,)), torch.device("cpu")).model_name == "lte"
    ready = net.ready(EvalSettings((2,), ensemble=8), torch.device("cpu"))
    assert ready.model_name == "lte+ens8"


@pytest.mark.slow
def test_lte_test_with_eval_ensemble(tmp_path: Path) -> None:
    """``python -m lte.test ... eval.ensemble=4`` through the entry point: a record per scale,
    labelled ``lte+ens4``, whose PSNR is the literal loop's."""
    import json

    from lte.data.images import save_rgb
    from lte.metrics import psnr_protocol
    from test_test_cli import run_test_in_process, save_tiny_checkpoint

    hr_dir = tmp_path / "HR"
    hr_dir.mkdir()
    hr = load_rgb(sample_photos()[2])[40:88, 30:90]  # 48 x 60
    save_rgb(hr, hr_dir / "crop.png")
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.ckpt")
    results = tmp_path / "r.json"
    res = run_test_in_process(
        f"ckpt={ckpt}",
        "testset=folder",
        f"testset.hr_dir={hr_dir}",
        "scales=[3]",
        "eval.ensemble=4",
        f"results_file={results}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (rec,) = json.loads(results.read_text())
    assert rec["model"] == "lte+ens4"

    from lte.checkpoint import load_checkpoint
    from lte.data.resize import downsample_pil

    model = load_checkpoint(ckpt).model.eval()
    lr = normalize(to_tensor(downsample_pil(hr, (16, 20)))).unsqueeze(0)
    ref = literal_ensemble(
        lambda v, size: literal_image(model, v, size, chunk=3000), lr, (48, 60), 4
    )
    pred = (ref * 0.5 + 0.5).clamp(0, 1)
    psnr = float(psnr_protocol(pred, to_tensor(hr).unsqueeze(0), 3, "benchmark")[0])
    assert abs(rec["psnr"] - psnr) < 1e-4
