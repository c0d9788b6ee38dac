"""LM-LTE and LM-LIIF (SPEC.md "LMF"): the literal reading, the fast kernel, tiles, chunks, sizes.

Random initialisation leaves the modulations and latent frequencies near zero, where a wrong layout
(shifts read as scales, a swapped frequency pair, a missing ``+1``) changes little. ``lively`` makes
them count, as a trained model's do: the frequency convolution of LM-LTE and the hypernetwork's
output layer are scaled up, so modulations are of order one.
"""

from __future__ import annotations

import pytest
import torch

from grids import query_grid
from literal import LITERAL, literal_image
from lte.inference import batched_query, predict
from lte.models import SRModel, build_model

LMF = ("lm_lte", "lm_liif")
TINY = ("edsr_tiny", "rdn_tiny", "swinir_tiny")


def lively(net: SRModel, seed: int = 0) -> SRModel:
    """``net`` with modulations and latent codes of order one (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    dec = net.decoder
    with torch.no_grad():
        if dec.kind == "lm_lte":
            dec.freq.weight.mul_(30)
            dec.freq.bias.copy_(torch.rand(dec.freq.bias.shape, generator=gen) * 4 - 2)
        last = dec.hypernet.layers[-1]
        last.weight.mul_(4)
        last.bias.copy_(torch.rand(last.bias.shape, generator=gen) - 0.5)
    return net.eval()


def model(kind: str, encoder: str = "edsr_tiny", overrides: tuple[str, ...] = ()) -> SRModel:
    torch.manual_seed(0)
    return lively(build_model(kind, encoder, list(overrides)))


@pytest.mark.parametrize("kernel", ["exact", "fast"])
@pytest.mark.parametrize("enc_name", TINY)
@pytest.mark.parametrize("kind", LMF)
def test_matches_literal_reading_of_spec(kind: str, enc_name: str, kernel: str) -> None:
    net = model(kind, enc_name)
    lr = torch.randn(2, 3, 9, 14)
    # 9 -> 31 rows (x3.44), 14 -> 23 columns (x1.64), the cell enlarged x1.5 and x1.2.
    coord, cell = query_grid((31, 23), 2, cell_scale=(1.5, 1.2))
    with torch.no_grad():
        state = net.encode(lr, cell=cell)
        out = net.query(state, coord, cell, kernel=kernel)
        ref = LITERAL[kind](net, lr, coord, cell)
        assert net.complexity(state).mean() > 0.1  # the modulations are not negligible
    assert out.shape == ref.shape == (2, 31 * 23, 3)
    assert (out - ref).abs().max() < 1e-5


@pytest.mark.parametrize("flags", [(True, False), (False, True), (False, False)])
def test_either_modulation_can_be_switched_off(flags: tuple[bool, bool]) -> None:
    """The layout without scales (shifts first) or without shifts, as the official lmmlp has it."""
    scale, shift = flags
    for kind in LMF:
        net = model(
            kind, overrides=(f"model.decoder.mod_scale={scale}", f"model.decoder.mod_shift={shift}")
        )
        width = net.decoder.mod.total
        assert width == 16 * (2 if kind == "lm_lte" else 1) + 16 * net.describe()["decoder"][
            "render_depth"
        ] * (scale + shift)
        lr = torch.randn(1, 3, 7, 8)
        coord, cell = query_grid((20, 13), 1)
        with torch.no_grad():
            ref = LITERAL[kind](net, lr, coord, cell)
            for kernel in ("exact", "fast"):
                out = net.query(net.encode(lr, cell=cell), coord, cell, kernel=kernel)
                assert (out - ref).abs().max() < 1e-5, (kind, kernel)


@pytest.mark.parametrize("kind", LMF)
def test_training_path_is_differentiable_and_equal(kind: str) -> None:
    net = model(kind, "rdn_tiny").train()
    lr = torch.randn(2, 3, 8, 9)
    coord, cell = query_grid((19, 23), 2, cell_scale=(1.3, 1.3))
    out = net(lr, coord, cell)
    out.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    net.eval()
    with torch.no_grad():
        fast = net.query(net.encode(lr, cell=cell), coord, cell, kernel="fast")
        ref = LITERAL[kind](net, lr, coord, cell)
    assert (out - ref).abs().max() < 1e-5
    assert (fast - ref).abs().max() < 1e-5


@pytest.mark.parametrize("kind", LMF)
def test_tiled_equals_untiled_and_chunks_change_nothing(kind: str) -> None:
    """Tiles carry the encoder's receptive field plus the decoder's reach, and are encoded for the
    whole image's cell: the hypernetwork runs once per code of a tile, the render per query."""
    net = model(kind, "rdn_tiny")
    lr = torch.randn(1, 3, 21, 17)
    for out_hw in [(42, 34), (73, 40), (130, 110)]:  # x2, x3.5 by x2.4, beyond x4 (cell enlarged)
        whole = predict(net, lr, out_hw, tile=0)
        for tile in (5, 8):
            tiled = predict(net, lr, out_hw, tile=tile, chunk=333)
            assert (tiled - whole).abs().max() < 1e-5, (out_hw, tile)
    coord, cell = query_grid((37, 29), 1)
    with torch.no_grad():
        state = net.encode(lr, cell=cell)
        whole = net.query(state, coord, cell)
        for chunk in (1, 7, 1000, 5000):
            for kernel in ("exact", "fast"):
                got = batched_query(net, state, coord, cell, chunk, kernel=kernel)
                assert (got - whole).abs().max() < 1e-5, (chunk, kernel)


@pytest.mark.parametrize("kind", LMF)
def test_literal_test_loop_and_predict_agree(kind: str) -> None:
    """``predict`` (tiles, chunks, cell enlarged beyond x4) against the literal loop at x5.5."""
    net = model(kind, "edsr_tiny")
    lr = torch.randn(2, 3, 10, 8)
    out_hw = (55, 44)
    ours = predict(net, lr, out_hw, tile=4, chunk=500)
    ref = literal_image(net, lr, out_hw, chunk=700)
    assert (ours - ref).abs().max() < 1e-5


@pytest.mark.parametrize("kind", LMF)
def test_the_hypernetwork_sees_one_cell_per_image(kind: str) -> None:
    """The table depends on the image and the scale only; beyond x4 rel_cell is 0.5 whatever the
    scale, so the tables of x6 and x8 are equal, and one of x2 is not."""
    net = model(kind)
    lr = torch.randn(1, 3, 6, 7)
    tables = {}
    with torch.no_grad():
        for s in (2, 6, 8):
            _, cell = query_grid((6 * s, 7 * s), 1, cell_scale=(max(s / 4, 1),) * 2)
            tables[s] = net.encode(lr, cell=cell).table
            # one cell per image: (B, 2), (B, 1, 2) and every query's (B, Q, 2) agree
            assert torch.equal(net.encode(lr, cell=cell[:, :1]).table, tables[s])
            assert torch.equal(net.encode(lr, cell=cell[:, 0]).table, tables[s])
    assert torch.allclose(tables[6], tables[8], atol=1e-6)
    assert not torch.allclose(tables[2], tables[6], atol=1e-3)
    with pytest.raises(ValueError, match=r"depends on the output cell: encode\(lr, cell=\.\.\.\)"):
        net.encode(lr)
    with pytest.raises(ValueError, match="cell must be float32"):
        net.encode(lr, cell=torch.ones(3, 2))


@pytest.mark.parametrize("kind", LMF)
def test_batch_items_are_independent_and_bfloat16_is_close(kind: str) -> None:
    net = model(kind, "swinir_tiny")
    lr = torch.randn(3, 3, 10, 9)
    with torch.no_grad():
        together = predict(net, lr, (25, 17))
        alone = torch.cat([predict(net, lr[i : i + 1], (25, 17)) for i in range(3)])
        low = predict(net, lr, (25, 17), dtype=torch.bfloat16)
        coord, cell = query_grid((25, 17), 3)
        state = net.encode(lr, cell=cell)
        exact_low = net.query(state, coord, cell, dtype=torch.bfloat16)
    assert (together - alone).abs().max() < 1e-5
    scale = together.abs().max()
    assert (low - together).abs().max() < 0.05 * scale
    exact_low = exact_low.transpose(1, 2).reshape(3, 3, 25, 17)
    assert (exact_low - together).abs().max() < 0.05 * scale


def test_lm_lte_with_zero_modulations_and_biases_is_bilinear() -> None:
    """With a' = 0 the render input is zero, so each code predicts its MLP's response to 0:
    with no modulations and zero biases, LM-LTE is exactly the bilinear upsampling."""
    net = build_model("lm_lte", "edsr_tiny").eval()
    with torch.no_grad():
        last = net.decoder.hypernet.layers[-1]
        last.weight.zero_()
        last.bias.zero_()  # every modulation and latent value 0 (scales: 1 + 0)
        for layer in net.decoder.imnet.layers:
            if isinstance(layer, torch.nn.Linear):
                layer.bias.zero_()
        lr = torch.rand(1, 3, 8, 8) * 2 - 1
        sr = predict(net, lr, (16, 16))
    bilinear = torch.nn.functional.interpolate(
        lr, size=(16, 16), mode="bilinear", align_corners=False
    )
    assert torch.allclose(sr, bilinear, atol=1e-6)


def test_sizes_match_spec() -> None:
    """SPEC "Cost": decoder parameters LM-LTE 270,467; LM-LIIF 165,651 (SwinIR 179,571)."""

    def size(kind: str, enc: str, overrides: tuple[str, ...] = ()) -> int:
        return sum(p.numel() for p in build_model(kind, enc, list(overrides)).decoder.parameters())

    assert size("lm_lte", "edsr_baseline") == 270_467
    assert size("lm_lte", "swinir") == 270_467  # the same for every 64-wide encoder
    assert size("lm_liif", "edsr_baseline") == 165_651
    assert size("lm_liif", "rdn") == 165_651
    assert size("lm_liif", "swinir", ("model.decoder.render_depth=8",)) == 179_571


def test_state_dict_keys_are_the_released_ones() -> None:
    """SPEC "LM-LTE"/"LM-LIIF": the decoder's keys and shapes as the official files hold them."""
    lte_sd = {
        k.removeprefix("decoder."): tuple(v.shape)
        for k, v in build_model("lm_lte", "edsr_baseline").state_dict().items()
        if k.startswith("decoder.")
    }
    expected = {
        "coef.weight": (128, 64, 3, 3),
        "coef.bias": (128,),
        "freq.weight": (128, 64, 3, 3),
        "freq.bias": (128,),
        "phase.weight": (64, 2),
        "hypernet.layers.0.weight": (288, 128),
        "hypernet.layers.0.bias": (288,),
        "hypernet.layers.2.weight": (288, 288),
        "hypernet.layers.2.bias": (288,),
        "imphase.weight": (8, 2),
    }
    for i in range(8):
        expected |= {f"imnet.layers.{2 * i}.weight": (16, 16), f"imnet.layers.{2 * i}.bias": (16,)}
    expected |= {"imnet.layers.16.weight": (3, 16), "imnet.layers.16.bias": (3,)}
    assert lte_sd == expected
    liif_sd = {
        k.removeprefix("decoder."): tuple(v.shape)
        for k, v in build_model("lm_liif", "edsr_baseline").state_dict().items()
        if k.startswith("decoder.")
    }
    expected = {
        "hypernet.layers.0.weight": (208, 578),
        "hypernet.layers.0.bias": (208,),
        "hypernet.layers.2.weight": (208, 208),
        "hypernet.layers.2.bias": (208,),
        "imnet.layers.0.weight": (16, 20),
        "imnet.layers.0.bias": (16,),
    }
    for i in range(1, 6):
        expected |= {f"imnet.layers.{2 * i}.weight": (16, 16), f"imnet.layers.{2 * i}.bias": (16,)}
    expected |= {"imnet.layers.12.weight": (3, 16), "imnet.layers.12.bias": (3,)}
    assert liif_sd == expected


def test_the_fast_kernel_refuses_gradients_and_capabilities_are_declared() -> None:
    net = model("lm_lte").train()
    lr = torch.randn(1, 3, 6, 6)
    coord, cell = query_grid((12, 12), 1)
    state = net.encode(lr, cell=cell)
    with pytest.raises(ValueError, match="kernel='fast' gives no gradients"):
        net.query(state, coord, cell, kernel="fast")
    assert net.cell_dependent and net.has_complexity and net.complexity_max == 0.5
    assert net.inference_kernel == "fast" and not net.has_compiled_kernel and not net.has_fourier
    plain = build_model("lte", "edsr_tiny")
    assert not plain.cell_dependent and not plain.has_complexity and plain.complexity_max is None
    with pytest.raises(ValueError, match="CMSR\\) needs an LMF model"):
        plain.complexity(plain.encode(lr))
