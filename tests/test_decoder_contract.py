"""The decoder and encoder contracts: a decoder that writes only its definition works everywhere.

``OffsetEnsembleDecoder`` below has no fast kernel. It is trained with the real ``SRLitModule`` under
a real Lightning ``Trainer`` on the bundled photos, then used by tiled ``predict`` and scored by
``lte.evaluation``, with nothing in those paths knowing about it. The rest checks the contract's
refusals: each bad input gets a clear error instead of a silent default.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from conftest import SAMPLE_DIR, sample_photos
from lte import evaluation as evaluate
from lte.data.datamodule import SRDataModule
from lte.data.images import denormalize, load_rgb, normalize, save_rgb, to_tensor
from lte.inference import predict, tile_margin
from lte.metrics import psnr_protocol
from lte.models import SRModel, build_model
from lte.models.decoders import Decoder, DecoderState
from lte.models.decoders.ensemble import ensemble_sum, gather_rows, neighbours, rel_cell
from lte.models.edsr import EDSR
from lte.models.mlp import MLP
from lte.testsets import FolderSet, pair_on_the_fly
from lte.training import SRLitModule


class OffsetEnsembleDecoder(Decoder):
    """A minimal new family: a 1×1-projected RGB code per LR pixel, corrected by a small MLP of the
    offset and cell, blended by the local ensemble. Only the definition: no fast kernel."""

    kind = "offset_ensemble"
    reach = 1  # the ensemble's neighbouring code; the 1×1 projection reads nothing around it

    def __init__(self, in_channels: int, hidden: int = 16) -> None:
        super().__init__()
        self.config = {"hidden": hidden}
        self.proj = nn.Conv2d(in_channels, 3, 1)
        self.offset = MLP(4, 3, [hidden])

    def prepare(self, feat: Tensor) -> Tensor:
        return self.proj(feat).permute(0, 2, 3, 1).contiguous()  # (B, h, w, 3)

    def exact(
        self, state: DecoderState, coord: Tensor, cell: Tensor, mlp_dtype: torch.dtype
    ) -> Tensor:
        nb = neighbours(state, coord)
        codes = gather_rows(state.table, nb.index)  # (B, Q, 4, 3)
        rc = rel_cell(cell, state.lr_hw).unsqueeze(2).expand(-1, coord.shape[1], 4, 2)
        pred = codes + self.offset(torch.cat([nb.rel, rc], dim=-1), dtype=mlp_dtype)
        return ensemble_sum(pred, nb.weights)  # (B, Q, 3)


def new_model() -> SRModel:
    torch.manual_seed(0)
    return SRModel(EDSR(n_resblocks=1, n_feats=8), OffsetEnsembleDecoder, scale_max=4.0)


def photo_lr(h: int, w: int) -> Tensor:
    img = load_rgb(sample_photos()[0])[30 : 30 + h, 50 : 50 + w]
    return normalize(to_tensor(img)).unsqueeze(0)


def test_a_definition_only_decoder_trains_with_the_real_module_and_trainer(tmp_path) -> None:
    net = new_model()
    assert not net.decoder.has_fast_kernel and net.inference_kernel == "exact"
    before = {k: v.clone() for k, v in net.state_dict().items()}
    module = SRLitModule(net, lambda params: torch.optim.Adam(params, lr=1e-3), val_chunk=50)
    data = SRDataModule(
        SAMPLE_DIR / "train",
        SAMPLE_DIR / "val",
        inp_size=12,
        sample_q=32,
        batch_size=4,
        val_scales=[3],
        val_inp_size=8,
        seed=0,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=3,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 3
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert torch.isfinite(trainer.callback_metrics["val/psnr"])  # validation queried it too
    after = net.state_dict()
    for name in ("encoder.head.0.weight", "decoder.proj.weight", "decoder.offset.layers.0.weight"):
        assert not torch.equal(before[name], after[name]), f"{name} was not trained"


def test_a_definition_only_decoder_predicts_tiled_as_untiled() -> None:
    net = new_model().eval()
    assert tile_margin(net) == net.receptive_radius == 4 + 1  # EDSR 1 block: radius 4; reach 1
    lr = photo_lr(21, 17)
    for out_hw in [(42, 34), (73, 40)]:  # x2, and x3.5 by x2.4
        whole = predict(net, lr, out_hw, tile=0)
        for tile in (4, 7):
            tiled = predict(net, lr, out_hw, tile=tile, chunk=97)
            assert (tiled - whole).abs().max().item() < 1e-5, (out_hw, tile)
    with pytest.raises(ValueError, match="has no fast kernel: use kernel='exact'"):
        predict(net, lr, (42, 34), kernel="fast")


def test_a_definition_only_decoder_is_scored_by_evaluate(tmp_path: Path) -> None:
    """``lte.test``'s library loop (the CLI itself only loads allow-listed kinds from files)."""
    net = new_model().eval()
    hr_img = load_rgb(sample_photos()[0])[:48, :48]
    lr, hr = pair_on_the_fly(hr_img, 2)
    score = evaluate.score_image(net, lr, hr, 2, "div2k")
    pred = denormalize(predict(net, normalize(to_tensor(lr)).unsqueeze(0), hr.shape[:2], tile=0))
    expected = float(psnr_protocol(pred, to_tensor(hr).unsqueeze(0), 2, "div2k")[0])
    assert np.isfinite(score.psnr) and abs(score.psnr - expected) < 1e-4
    assert 0 < score.ssim <= 1
    folder = tmp_path / "HR"
    folder.mkdir()
    save_rgb(hr_img, folder / "a.png")
    save_rgb(load_rgb(sample_photos()[1])[:36, :30].copy(), folder / "b.png")
    (rec,) = evaluate.evaluate_testset(net, FolderSet(folder, protocol="div2k"), [2])
    assert rec.images == 2 and np.isfinite(rec.psnr) and rec.model == net.decoder.kind


# --- the contract's refusals -------------------------------------------------------------------


class NoRadius(nn.Module):
    out_channels = 8
    pad_multiple = 0

    def forward(self, x: Tensor) -> Tensor:
        return x


def test_an_encoder_must_declare_the_contract() -> None:
    with pytest.raises(TypeError, match="NoRadius does not declare receptive_radius"):
        SRModel(NoRadius(), OffsetEnsembleDecoder)
    enc = EDSR(n_resblocks=1, n_feats=8)
    enc.pad_multiple = -1
    with pytest.raises(TypeError, match="pad_multiple must be an int >= 0, got -1"):
        SRModel(enc, OffsetEnsembleDecoder)
    # SwinIR declares a global receptive field: no finite tile margin (None, not a default).
    swin = build_model("lte", "swinir_tiny")
    assert swin.receptive_radius is None and swin.pad_multiple == 4


def test_a_decoder_must_subclass_the_contract() -> None:
    with pytest.raises(TypeError, match=r"Linear is not an lte\.models\.decoders\.Decoder"):
        SRModel(EDSR(n_resblocks=1, n_feats=8), lambda in_channels: nn.Linear(in_channels, 3))


@pytest.mark.parametrize("name", ["lte", "liif", "metasr"])
def test_float64_is_refused_in_one_line(name: str) -> None:
    """No silent rounding to float32 and no deep dtype error: one ValueError saying what to do."""
    net = build_model(name, "edsr_tiny").eval()
    lr = photo_lr(8, 8)
    with pytest.raises(ValueError, match=r"image is torch.float64 \(float64 is not supported\)"):
        predict(net, lr.double(), (16, 16))
    state = net.encode(lr)
    coord = torch.zeros(1, 5, 2)
    cell = torch.full((1, 1, 2), 0.1)
    for kernel in ("exact", "fast"):
        with pytest.raises(ValueError, match=r"coord is torch\.float64"):
            net.query(state, coord.double(), cell, kernel=kernel)
        with pytest.raises(ValueError, match=r"dtype=torch\.float64 is not supported"):
            net.query(state, coord, cell, kernel=kernel, dtype=torch.float64)
    with pytest.raises(
        ValueError, match="kernel must be one of exact, fast, compiled, got 'quick'"
    ):
        net.query(state, coord, cell, kernel="quick")  # type: ignore[arg-type]


def test_the_fast_kernel_refuses_a_state_that_carries_gradients() -> None:
    net = build_model("lte", "edsr_tiny")
    state = net.encode(photo_lr(8, 8))  # grad mode on: the table requires grad
    coord, cell = torch.zeros(1, 5, 2), torch.full((1, 1, 2), 0.1)
    with pytest.raises(ValueError, match="kernel='fast' gives no gradients"):
        net.query(state, coord, cell, kernel="fast")
    net.query(state, coord, cell).sum().backward()  # the exact kernel is the training path
    assert net.decoder.coef.weight.grad is not None


def test_state_is_typed_and_frozen() -> None:
    net = build_model("liif", "edsr_tiny").eval()
    lr = photo_lr(12, 10)
    with torch.no_grad():
        state = net.encode(lr[..., 2:9, 3:8], full_lr=lr, origin=(2, 3))
    assert state.origin == (2, 3) and state.lr is lr and state.lr_hw == (12, 10)
    assert state.table.shape == (1, 7, 5, 256)
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.origin = (0, 0)  # type: ignore[misc]
    with pytest.raises(ValueError, match="does not lie in"):
        net.encode(lr[..., 2:9, 3:8], full_lr=lr, origin=(6, 3))
    with pytest.raises(ValueError, match="needs full_lr"):
        net.encode(lr, origin=(1, 0))
