"""The ``"compiled"`` kernel (``--backend compile``) and bfloat16 honesty (``lte.devices.native_bf16``).

The compiled kernel must compute the literal reading of SPEC (tests/literal.py) within 1e-5 in
float32, as the fast kernel does, and compile once per model: different chunk sizes, tiles, images
and query counts (padded to the block) run the same compiled function. Compiling costs seconds, so
one tiny-width model per family is compiled once for the whole module and reused.
"""

from __future__ import annotations

import copy
import logging
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli import run_module
from conftest import sample_photos
from grids import query_grid
from literal import LITERAL
from lte.checkpoint import save_lte
from lte.cli.upscale import main as upscale_main
from lte.data.images import load_rgb, normalize, to_tensor
from lte.devices import compile_unavailable, native_bf16, native_fp16, slow_lowp_warning
from lte.errors import UserError
from lte.inference import BACKENDS, batched_query, kernel_for_backend, predict
from lte.models import SRModel, build_model
from lte.models.decoders import BLOCK, KERNELS, LIIFDecoder, LTEDecoder
from lte.models.decoders.base import COMPILED_CACHE_ATTR
from lte.testsets import FolderSet

CPU = torch.device("cpu")
NO_COMPILE = compile_unavailable(CPU)
needs_compile = pytest.mark.skipif(
    NO_COMPILE is not None, reason=f"torch.compile cannot run here: {NO_COMPILE}"
)


def tiny(kind: str) -> SRModel:
    """A tiny-encoder model with a narrow decoder: compiles in seconds, same code paths."""
    encoder = build_model(kind, "edsr_tiny").encoder
    if kind == "lte":
        decoder = LTEDecoder(encoder.out_channels, hidden_dim=16, mlp_hidden=(16, 16))
    else:
        decoder = LIIFDecoder(encoder.out_channels, mlp_hidden=(16, 16))
    return SRModel(encoder, decoder).eval()


def photo_lr(h: int, w: int, top: int = 40, left: int = 60) -> torch.Tensor:
    """A normalised ``(1, 3, h, w)`` crop of a real photo."""
    img = load_rgb(sample_photos()[0])[top : top + h, left : left + w]
    return normalize(to_tensor(img)).unsqueeze(0)


@pytest.fixture(scope="module")
def compiled_models() -> Iterator[dict[str, SRModel]]:
    """One model per family whose compiled block is built once (by the first query) and reused."""
    torch.manual_seed(0)
    models = {kind: tiny(kind) for kind in ("lte", "liif")}
    for net in models.values():
        coord, cell = query_grid((5, 7), 1)
        with torch.inference_mode():
            net.query(net.encode(photo_lr(4, 5)), coord, cell, kernel="compiled")
    yield models


# --- choosing the kernel (no compiling) --------------------------------------------------------


def test_kernel_names() -> None:
    assert KERNELS == ("exact", "fast", "compiled")
    assert BACKENDS == ("auto", "eager", "compile")
    assert build_model("lte", "edsr_tiny").has_compiled_kernel
    assert build_model("liif", "edsr_tiny").has_compiled_kernel
    assert not build_model("metasr", "edsr_tiny").has_compiled_kernel


def test_unknown_backend_is_a_user_error() -> None:
    net = build_model("lte", "edsr_tiny")
    with pytest.raises(
        UserError, match=r"--backend 'jit' is not a backend: use one of auto, eager, co"
    ):
        kernel_for_backend(net, "jit")
    with pytest.raises(UserError, match=r"eval\.backend='' is not a backend"):
        kernel_for_backend(net, "", option="eval.backend=")


def test_eager_backend_is_the_default_kernel() -> None:
    for kind in ("lte", "liif", "metasr"):
        net = build_model(kind, "edsr_tiny")
        assert kernel_for_backend(net, "eager") == net.inference_kernel == "fast"


def test_compile_falls_back_with_one_line_when_the_decoder_has_no_compiled_kernel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    net = build_model("metasr", "edsr_tiny")
    with caplog.at_level(logging.WARNING, logger="lte.inference"):
        assert kernel_for_backend(net, "compile") == "fast"
    assert [r.getMessage() for r in caplog.records] == [
        "backend compile: the metasr decoder has no compiled kernel; using the eager backend"
    ]


def test_compile_falls_back_with_the_reason_where_it_cannot_compile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A device the compiler does not target (here ``meta``) gets the eager kernel and the reason."""
    net = build_model("lte", "edsr_tiny").to("meta")
    with caplog.at_level(logging.WARNING, logger="lte.inference"):
        assert kernel_for_backend(net, "compile") == "fast"
    (record,) = caplog.records
    assert "backend compile is not available here (" in record.getMessage()
    assert "not 'meta'" in record.getMessage()


@needs_compile
def test_compile_backend_picks_the_compiled_kernel(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lte.inference"):
        assert kernel_for_backend(build_model("lte", "edsr_tiny"), "compile") == "compiled"
    assert not caplog.records


def test_compiled_kernel_refuses_gradients_and_families_without_it() -> None:
    lte = build_model("lte", "edsr_tiny")
    coord, cell = query_grid((4, 4), 1)
    with pytest.raises(ValueError, match="kernel='compiled' gives no gradients"):
        lte.query(lte.encode(torch.randn(1, 3, 4, 4)), coord, cell, kernel="compiled")
    metasr = build_model("metasr", "edsr_tiny")
    with torch.no_grad(), pytest.raises(ValueError, match="has no compiled kernel"):
        metasr.query(metasr.encode(torch.randn(1, 3, 4, 4)), coord, cell, kernel="compiled")


# --- bfloat16 honesty --------------------------------------------------------------------------


def test_native_low_precision_checks_answer_a_bool() -> None:
    for check in (native_bf16, native_fp16):
        assert isinstance(check(CPU), bool)
        assert check("meta") is False
    assert slow_lowp_warning(CPU, None) is None
    assert slow_lowp_warning("meta", torch.bfloat16) is None  # only CPUs are judged
    bf16 = slow_lowp_warning(CPU, torch.bfloat16)
    assert (bf16 is None) == native_bf16(CPU)
    assert (slow_lowp_warning(CPU, torch.float16) is None) == native_fp16(CPU)
    if bf16 is not None:
        assert "no native bfloat16" in bf16 and "float32 is the faster choice" in bf16
        assert "\n" not in bf16


def test_upscale_warns_about_emulated_bfloat16_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--dtype bfloat16`` on a CPU without native bf16: one warning line, the output still made."""
    photo = tmp_path / "in.png"
    Image.open(sample_photos()[0]).convert("RGB").crop((50, 60, 62, 70)).save(photo)
    ckpt = tmp_path / "tiny.ckpt"
    save_lte(tiny("lte"), ckpt)
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / f"{dtype}.png"
        args = [str(photo), str(out), "--ckpt", str(ckpt), "--scale", "2", "--device", "cpu"]
        upscale_main([*args, "--dtype", dtype])
        err = capsys.readouterr().err
        assert out.exists()
        warnings = [line for line in err.splitlines() if line.startswith("warning:")]
        if dtype == "bfloat16" and not native_bf16(CPU):
            assert len(warnings) == 1 and "--dtype bfloat16" in warnings[0], err
        else:
            assert warnings == [], err


# --- the compiled kernel -----------------------------------------------------------------------


@pytest.mark.slow
@needs_compile
@pytest.mark.parametrize("kind", ["lte", "liif"])
def test_compiled_matches_literal_without_recompiling(
    compiled_models: dict[str, SRModel], kind: str
) -> None:
    """Padding (713 queries: not a multiple of the block), per-query cells, chunks and a batch of two
    images all reuse the one compiled block."""
    net = compiled_models[kind]
    assert 31 * 23 % BLOCK
    lr = torch.cat([photo_lr(9, 14), photo_lr(9, 14, top=80, left=20)])
    coord, cell = query_grid((31, 23), 2, cell_scale=(1.5, 1.2))
    with torch._dynamo.config.patch(error_on_recompile=True), torch.inference_mode():
        state = net.encode(lr)
        ref = LITERAL[kind](net, lr, coord, cell)
        per_query = net.query(state, coord, cell, kernel="compiled")
        shared = batched_query(net, state, coord, cell[:, :1], 100, kernel="compiled")
        ref_shared = LITERAL[kind](net, lr, coord, cell[:, :1].expand_as(cell))
        for chunk in (1, 333, 30000):
            chunked = batched_query(net, state, coord, cell, chunk, kernel="compiled")
            assert torch.allclose(chunked, ref, atol=1e-5, rtol=0)
    assert per_query.shape == ref.shape == (2, 31 * 23, 3)
    assert torch.allclose(per_query, ref, atol=1e-5, rtol=0), (per_query - ref).abs().max()
    assert torch.allclose(shared, ref_shared, atol=1e-5, rtol=0)


@pytest.mark.slow
@needs_compile
@pytest.mark.parametrize("kind", ["lte", "liif"])
def test_compiled_tiles_match_literal_without_recompiling(
    compiled_models: dict[str, SRModel], kind: str
) -> None:
    net = compiled_models[kind]
    lr = photo_lr(12, 16)
    coord, cell = query_grid((29, 37), 1)
    with torch.inference_mode():
        ref = LITERAL[kind](net, lr, coord, cell).transpose(1, 2).reshape(1, 3, 29, 37)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for tile, chunk in ((0, 30000), (5, 64), (7, 1000)):
            out = predict(net, lr, (29, 37), tile=tile, chunk=chunk, kernel="compiled")
            assert torch.allclose(out, ref, atol=1e-5, rtol=0), (tile, (out - ref).abs().max())
        other = photo_lr(8, 8, top=5, left=5)  # another image size: same block shapes
        fast = predict(net, other, (20, 20), tile=0, kernel="fast")
        compiled = predict(net, other, (20, 20), tile=0, kernel="compiled")
    assert torch.allclose(compiled, fast, atol=1e-5, rtol=0)


@pytest.mark.slow
@needs_compile
def test_compiled_sees_weight_changes_and_stays_out_of_the_model_data(
    compiled_models: dict[str, SRModel],
) -> None:
    """Weights are inputs of the compiled block (no freezing): a change is seen at once, without a
    recompile; the cache is in no state_dict, description, pickle or deep copy."""
    net = copy.deepcopy(compiled_models["lte"])
    assert not getattr(net.decoder, COMPILED_CACHE_ATTR, None)  # deep copies drop the cache
    net.decoder.__dict__[COMPILED_CACHE_ATTR] = compiled_models["lte"].decoder._compiled_blocks
    keys = set(net.state_dict())
    described = net.describe()
    lr = photo_lr(6, 6)
    coord, cell = query_grid((13, 11), 1)
    with torch._dynamo.config.patch(error_on_recompile=True), torch.inference_mode():
        before = net.query(net.encode(lr), coord, cell, kernel="compiled")
        net.decoder.imnet.layers[0].weight.mul_(-0.5)
        after = net.query(net.encode(lr), coord, cell, kernel="compiled")
        ref = LITERAL["lte"](net, lr, coord, cell)
    assert (after - before).abs().max() > 1e-3
    assert torch.allclose(after, ref, atol=1e-5, rtol=0)
    assert getattr(net.decoder, COMPILED_CACHE_ATTR)
    assert set(net.state_dict()) == keys and net.describe() == described
    clone = pickle.loads(pickle.dumps(net))
    assert not hasattr(clone.decoder, COMPILED_CACHE_ATTR)


@pytest.mark.slow
@needs_compile
@pytest.mark.parametrize("kind", ["lte", "liif"])
def test_compiled_bfloat16_within_the_fast_kernels_tolerance(kind: str) -> None:
    """Same tolerance as the fast kernel's bf16 test (test_inference.test_both_kernels_honour_dtype).

    Runs on every CPU: without native bf16 the arithmetic is emulated (slower, same rounding), and
    the 16-wide MLP keeps it to milliseconds."""
    net = tiny(kind)
    lr = photo_lr(12, 12)
    exact = predict(net, lr, (30, 30), tile=0, kernel="exact", dtype=torch.bfloat16)
    compiled = predict(net, lr, (30, 30), tile=0, kernel="compiled", dtype=torch.bfloat16)
    assert compiled.dtype == torch.float32
    assert (compiled - exact).abs().max().item() < 2e-3


@pytest.mark.slow
@needs_compile
def test_upscale_backend_compile_equals_eager(tmp_path: Path) -> None:
    """``lte.upscale --backend compile`` end to end: the same PNG as ``--backend eager`` (1/255)."""
    photo = tmp_path / "crop.png"
    Image.open(sample_photos()[0]).convert("RGB").crop((50, 60, 90, 92)).save(photo)  # 40x32
    ckpt = tmp_path / "tiny.ckpt"
    torch.manual_seed(1)
    save_lte(tiny("lte"), ckpt)
    args = ["--ckpt", str(ckpt), "--scale", "2.5", "--device", "cpu", "--tile", "16"]
    eager, compiled = tmp_path / "eager.png", tmp_path / "compiled.png"
    upscale_main([str(photo), str(eager), *args, "--backend", "eager"])
    res = run_module("lte.upscale", str(photo), str(compiled), *args, "--backend", "compile")
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr.lower(), res.stderr
    a = np.asarray(Image.open(eager)).astype(np.int16)
    b = np.asarray(Image.open(compiled)).astype(np.int16)
    assert a.shape == b.shape == (80, 100, 3)
    assert np.abs(a - b).max() <= 1


@pytest.mark.slow
@needs_compile
def test_lte_test_compile_backend_scores_as_the_eager_one(
    compiled_models: dict[str, SRModel], tmp_path: Path
) -> None:
    """``eval.backend=compile`` runs the compiled block (no recompile across images and scales) and
    scores every image as the eager backend does, to float32 rounding."""
    from lte.data.images import save_rgb
    from lte.evaluation import EvalSettings, evaluate_testset

    root = tmp_path / "crops"
    root.mkdir()
    for i, src in enumerate(sample_photos()[:2]):
        save_rgb(load_rgb(src)[40:76, 50:92], root / f"c{i}.png")
    testset = FolderSet(root, name="crops", protocol="benchmark")
    net = compiled_models["lte"]
    with torch._dynamo.config.patch(error_on_recompile=True):
        compiled = evaluate_testset(
            net, testset, EvalSettings([2, 3], backend="compile", workers=0)
        )
    eager = evaluate_testset(net, testset, EvalSettings([2, 3], backend="eager", workers=0))
    for c, e in zip(compiled, eager, strict=True):
        assert c.scale == e.scale and len(c.per_image) == len(e.per_image) == 2
        for a, b in zip(c.per_image, e.per_image, strict=True):
            assert a.name == b.name
            assert abs(a.psnr - b.psnr) < 1e-3, (a, b)
