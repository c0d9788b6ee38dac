"""Every encoder × decoder: shapes, exactness against the literal reading of SPEC, chunking."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch

from grids import query_grid
from literal import LITERAL
from lte.inference import batched_query, predict
from lte.models import SRModel, build_model
from lte.models.edsr import EDSR
from lte.models.identity import labels

MODELS = ("lte", "liif", "metasr")
ENCODERS = ("edsr_baseline", "edsr", "rdn", "swinir")
TINY = ("edsr_tiny", "rdn_tiny", "swinir_tiny")
OFFICIAL = json.loads((Path(__file__).parent / "data" / "official_checkpoints.json").read_text())[
    "models"
]


@functools.cache
def encoder(name: str) -> torch.nn.Module:
    """Full-size encoders are large: build each once and share it between decoders."""
    torch.manual_seed(0)
    return build_model("lte", name).encoder.eval()


def with_decoder(model: str, enc_name: str) -> SRModel:
    """A model on a shared encoder with a fresh random decoder of the given family."""
    return SRModel(
        encoder(enc_name),
        build_model(model, "edsr_tiny").decoder.__class__(encoder(enc_name).out_channels),
    ).eval()


@pytest.mark.parametrize("enc_name", ENCODERS + TINY)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    "out_hw", [(22, 26), (41, 48), (18, 61)], ids=["x2", "x3.7", "anisotropic"]
)
def test_output_shapes(model: str, enc_name: str, out_hw: tuple[int, int]) -> None:
    net = with_decoder(model, enc_name)
    lr = torch.randn(2, 3, 11, 13)
    with torch.no_grad():
        sr = predict(net, lr, out_hw)
    assert sr.shape == (2, 3, *out_hw)
    assert torch.isfinite(sr).all()


@pytest.mark.parametrize("kernel", ["exact", "fast"])
@pytest.mark.parametrize("enc_name", TINY)
@pytest.mark.parametrize("model", MODELS)
def test_matches_literal_reading_of_spec(model: str, enc_name: str, kernel: str) -> None:
    net = build_model(model, enc_name).eval()
    lr = torch.randn(2, 3, 9, 14)
    # Non-integer and anisotropic: 9 -> 31 rows (x3.44), 14 -> 23 columns (x1.64), cell enlarged
    # x1.5 on one axis and x1.2 on the other.
    coord, cell = query_grid((31, 23), 2, cell_scale=(1.5, 1.2))
    with torch.no_grad():
        out = net.query(net.encode(lr), coord, cell, kernel=kernel)
        ref = LITERAL[model](net, lr, coord, cell)
    assert out.shape == ref.shape == (2, 31 * 23, 3)
    assert torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()


@pytest.mark.parametrize("model", MODELS)
def test_chunked_equals_unchunked(model: str) -> None:
    net = build_model(model, "edsr_tiny").eval()
    lr = torch.randn(1, 3, 10, 12)
    coord, cell = query_grid((37, 29), 1)
    with torch.no_grad():
        state = net.encode(lr)
        whole = net.query(state, coord, cell)
        for chunk in (1, 7, 100, 10_000):
            for kernel in ("exact", "fast"):
                assert torch.allclose(
                    batched_query(net, state, coord, cell, chunk, kernel=kernel),
                    whole,
                    atol=1e-5,
                    rtol=0,
                )


@pytest.mark.parametrize("model", MODELS)
def test_batch_items_are_independent(model: str) -> None:
    net = build_model(model, "swinir_tiny").eval()
    lr = torch.randn(3, 3, 10, 9)
    with torch.no_grad():
        together = predict(net, lr, (25, 17))
        alone = torch.cat([predict(net, lr[i : i + 1], (25, 17)) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_lte_query_uses_channel_pairs_and_bilinear_residual() -> None:
    """With a zero amplitude the decoder output is exactly the bilinear upsampling of the input."""
    net = build_model("lte", "edsr_tiny").eval()
    with torch.no_grad():
        net.decoder.coef.weight.zero_()
        net.decoder.coef.bias.zero_()
        for layer in net.decoder.imnet.layers:
            if isinstance(layer, torch.nn.Linear):
                layer.bias.zero_()
        lr = torch.rand(1, 3, 8, 8) * 2 - 1
        sr = predict(net, lr, (16, 16))
        bilinear = torch.nn.functional.interpolate(
            lr, size=(16, 16), mode="bilinear", align_corners=False
        )
    assert torch.allclose(sr, bilinear, atol=1e-6)


def test_swinir_any_input_size_crops_features_back() -> None:
    enc = build_model("lte", "swinir_tiny").encoder.eval()
    for hw in [(5, 7), (8, 8), (13, 3), (16, 12)]:
        with torch.no_grad():
            feat = enc(torch.randn(1, 3, *hw))
        assert feat.shape == (1, enc.out_channels, *hw)


def test_swinir_is_translation_consistent_on_window_aligned_input() -> None:
    """Internal padding must not change the features of a window-aligned input."""
    enc = build_model("lte", "swinir_tiny").encoder.eval()
    x = torch.randn(1, 3, 12, 16)  # a multiple of the window (4): no padding
    with torch.no_grad():
        direct = enc.conv_before_upsample(
            enc.conv_after_body(enc.forward_features(enc.conv_first(x))) + enc.conv_first(x)
        )
        assert torch.allclose(enc(x), direct, atol=1e-6)


@pytest.mark.parametrize(
    ("key", "model", "enc_name"),
    [
        ("lte_edsr", "lte", "edsr_baseline"),
        ("liif_edsr", "liif", "edsr_baseline"),
        ("metasr_edsr", "metasr", "edsr_baseline"),
        ("lte_rdn", "lte", "rdn"),
        ("lte_swinir", "lte", "swinir"),
        ("lte_edsr_full", "lte", "edsr"),
    ],
)
def test_parameter_counts_match_the_releases(key: str, model: str, enc_name: str) -> None:
    net = with_decoder(model, enc_name)
    n = sum(p.numel() for p in net.parameters())
    # The released EDSR files also hold the two unused 3→3 mean-shift convs (2 × (9 + 3) values).
    unused = 24 if isinstance(net.encoder, EDSR) else 0
    assert n + unused == OFFICIAL[key]["parameters"]


def test_decoder_sizes_match_the_paper() -> None:
    """SPEC: Meta-SR 0.45 M, LIIF 0.35 M, LTE 0.49 M decoder parameters (EDSR-baseline width 64)."""
    sizes = {
        m: sum(p.numel() for p in build_model(m, "edsr_baseline").decoder.parameters()) / 1e6
        for m in MODELS
    }
    assert round(sizes["metasr"], 2) == 0.45
    assert round(sizes["liif"], 2) == 0.35
    assert round(sizes["lte"], 2) == 0.49


@pytest.mark.parametrize("model", MODELS)
def test_training_path_is_differentiable_and_equal(model: str) -> None:
    """The exact kernel (the definition, used by training) is differentiable and equals the fast one."""
    net = build_model(model, "rdn_tiny")
    lr = torch.randn(2, 3, 8, 9)
    coord, cell = query_grid((19, 23), 2, cell_scale=(1.3, 1.3))
    out = net(lr, coord, cell)
    out.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert net.encoder.SFENet1.weight.grad.abs().sum() > 0
    with torch.no_grad():
        fast = net.query(net.encode(lr), coord, cell, kernel="fast")
        ref = LITERAL[model](net, lr, coord, cell)
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(out, fast, atol=1e-5)


def test_feature_extractors_keep_their_identity_beside_the_fixed_scale_tails() -> None:
    """``upscale`` is absent from feature extractors' descriptions, so saved models and labels of
    LTE/LIIF/Meta-SR are unchanged; a fixed-scale encoder names its scale."""
    for enc_name in ("edsr_baseline", "rdn"):
        net = build_model("lte", enc_name)
        assert "upscale" not in net.describe()["encoder"] and net.native_scale is None
        assert labels(net.describe()) == ("lte", enc_name)
        fixed = build_model("nearest", enc_name, ["encoder.upscale=3"])
        assert fixed.describe()["encoder"]["upscale"] == 3 and fixed.native_scale == 3
        assert labels(fixed.describe()) == ("nearest", f"{enc_name}_x3")
        assert fixed.receptive_radius > net.encoder.receptive_radius


@pytest.mark.parametrize("enc_name", TINY)
@pytest.mark.parametrize("model", MODELS)
def test_features_are_the_encoder_channels_last_and_the_table_needs_no_copy(
    model: str, enc_name: str
) -> None:
    """SRModel.features is the encoder's function (float32 round-off apart) on channels-last maps,
    and a convolutional table is then written channel-last by its convolution itself: the state's
    table is that convolution's own storage (a view), not a copy of it."""
    torch.manual_seed(0)
    net = build_model(model, enc_name).eval()
    lr = torch.rand(2, 3, 13, 17) * 2 - 1
    with torch.no_grad():
        feat = net.features(lr)
        assert feat.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(feat, net.encoder(lr), rtol=0, atol=1e-5)
        table = net.decoder.prepare(feat)
        assert table.is_contiguous()
        if model in ("lte", "liif"):  # a convolution's NHWC output, permuted: no copy was made
            assert table.permute(0, 3, 1, 2).is_contiguous(memory_format=torch.channels_last)
            assert table._base is not None
