"""The faster training step: the cheaper differentiable query, bf16-mixed, model.compile, matmul precision.

The query must stay the same function: the previous ``exact`` (plain ops, ``torch.gather`` rows) is
frozen below and the new one is held to it, values and gradients, on batches, tiles and shared
cells. The options run the real ``python -m lte.train`` on the bundled photos.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from cli import SMALL_TRAIN, run_module
from lte import geometry
from lte.checkpoint import load_checkpoint
from lte.devices import compile_unavailable
from lte.errors import UserError
from lte.models.build import build_model
from lte.models.decoders.ensemble import ensemble_sum, gather_rows, neighbours, rel_cell
from lte.models.decoders.lte import FourierFeatures
from lte.training.checks import check_config
from lte.training.speed import bf16_warning

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "src" / "lte" / "conf"

# --- the previous exact path, frozen ---------------------------------------------------------------


def old_gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    b, d = table.shape[0], table.shape[-1]
    flat = table.reshape(b, -1, d)
    rows = torch.gather(flat, 1, index.reshape(b, -1, 1).expand(-1, -1, d))
    return rows.view(*index.shape, d)


def old_lte(dec, state, coord, cell):  # type: ignore[no-untyped-def]
    hid, half = dec.hidden_dim, dec.hidden_dim // 2
    nb = neighbours(state, coord)
    codes = old_gather_rows(state.table, nb.index)
    amp, fy, fx = codes[..., :hid], codes[..., hid : hid + half], codes[..., hid + half :]
    theta = fy * nb.rel[..., :1] + fx * nb.rel[..., 1:]
    theta = theta + dec.phase(rel_cell(cell, state.lr_hw)).unsqueeze(2)
    theta = theta * math.pi
    z = amp * torch.cat([torch.cos(theta), torch.sin(theta)], dim=-1)
    pred = dec.imnet.layers(z)  # the plain Sequential on the 4-D features
    return ensemble_sum(pred, nb.weights) + geometry.bilinear_sample(state.lr, coord)


def old_liif(dec, state, coord, cell):  # type: ignore[no-untyped-def]
    w_rel, w_cell, bias = dec._first_layer_columns()
    nb = neighbours(state, coord)
    x = old_gather_rows(state.table, nb.index)
    x = x + F.linear(nb.rel, w_rel)
    x = x + F.linear(rel_cell(cell, state.lr_hw), w_cell, bias).unsqueeze(2)
    pred = dec.imnet.layers[1:](x)  # the plain Sequential
    return ensemble_sum(pred, nb.weights)


OLD = {"lte": old_lte, "liif": old_liif}


def outputs_and_grads(net, lr, coord, cell, origin, tile, old):  # type: ignore[no-untyped-def]
    """Output, parameter gradients and coordinate gradient of one weighted-sum backward."""
    net.zero_grad(set_to_none=True)
    coord = coord.clone().requires_grad_(True)
    if tile is None:
        state = net.encode(lr)
    else:
        oy, ox = origin
        crop = lr[:, :, oy : oy + tile[0], ox : ox + tile[1]]
        state = net.encode(crop, full_lr=lr, origin=origin)
    out = old(net.decoder, state, coord, cell) if old else net.query(state, coord, cell)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
    (out * weight).sum().backward()
    grads = {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}
    return out.detach(), grads, coord.grad.clone()


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-6) -> bool:
    return bool((a - b).abs().max() <= rel * max(float(b.abs().max()), 1e-30))


@pytest.mark.parametrize("shared_cell", [False, True])
@pytest.mark.parametrize("model", ["lte", "liif"])
def test_the_new_exact_path_equals_the_previous_one_values_and_gradients(
    model: str, shared_cell: bool
) -> None:
    torch.manual_seed(3)
    net = build_model(model, "edsr_tiny")
    lr = torch.randn(3, 3, 11, 13)
    cell = torch.rand(3, 1 if shared_cell else 70, 2) * 0.4
    # Untiled: queries anywhere. Tiled: queries inside a tile's interior (its margin covers the
    # reach), read from the tile's table at its origin in the whole image's geometry.
    cases = [((0, 0), None, torch.rand(3, 70, 2) * 2 - 1)]
    y = (torch.rand(3, 70) * 2 + 4 + 0.5) / 11 * 2 - 1  # rows 4.5 .. 6.5 of 11
    x = (torch.rand(3, 70) * 3 + 4 + 0.5) / 13 * 2 - 1  # columns 4.5 .. 7.5 of 13
    cases.append(((2, 2), (7, 8), torch.stack([y, x], dim=-1)))
    for origin, tile, coord in cases:
        new = outputs_and_grads(net, lr, coord, cell, origin, tile, None)
        old = outputs_and_grads(net, lr, coord, cell, origin, tile, OLD[model])
        assert close(new[0], old[0]), (new[0] - old[0]).abs().max()
        assert new[1].keys() == old[1].keys() and new[1]
        for key in new[1]:
            assert close(new[1][key], old[1][key]), key
        assert close(new[2], old[2])


def test_fourier_features_gradients_pass_gradcheck_in_float64() -> None:
    """The hand-written backward against finite differences, for every input (rows, offsets, phase)."""
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(2, 3, 4, 16, dtype=torch.float64, generator=g, requires_grad=True)
    ry = torch.rand(2, 3, 4, 1, dtype=torch.float64, generator=g).requires_grad_(True)
    rx = torch.rand(2, 3, 4, 1, dtype=torch.float64, generator=g).requires_grad_(True)
    for q in (3, 1):  # per-query and shared phase
        phase = torch.randn(2, q, 1, 4, dtype=torch.float64, generator=g, requires_grad=True)
        assert torch.autograd.gradcheck(FourierFeatures.apply, (rows, ry, rx, phase))


def test_gather_rows_reads_each_image_of_the_batch() -> None:
    table = torch.randn(3, 4, 5, 6)
    index = torch.randint(0, 20, (3, 7, 4))
    assert torch.equal(gather_rows(table, index), old_gather_rows(table, index))


def test_decoders_train_under_autocast_with_float32_geometry() -> None:
    """Under bf16 autocast the table and θ stay float32, the output is float32 and close to the
    float32 one (the MLP's matmuls are what runs in bf16), and backward reaches every parameter."""
    torch.manual_seed(0)
    lr = torch.randn(2, 3, 8, 9)
    coord, cell = torch.rand(2, 40, 2) * 2 - 1, torch.full((2, 40, 2), 0.1)
    for model in ("lte", "liif", "metasr"):
        net = build_model(model, "edsr_tiny")
        ref = net(lr, coord, cell).detach()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            state = net.encode(lr)
            out = net.query(state, coord, cell)
        assert state.table.dtype == torch.float32 and out.dtype == torch.float32
        assert (out.detach() - ref).abs().max() < 0.05, model
        out.square().mean().backward()
        assert all(p.grad is not None for p in net.parameters()), model


def test_bf16_warning_names_the_option_when_the_device_lacks_bf16() -> None:
    from lte.devices import native_bf16

    cpu = torch.device("cpu")
    assert bf16_warning("32-true", cpu) is None
    line = bf16_warning("bf16-mixed", cpu)
    if native_bf16(cpu):
        assert line is None
    else:
        assert line is not None and "trainer.precision=bf16-mixed" in line and "\n" not in line


# --- options ----------------------------------------------------------------------------------------


def compose_train(overrides: list[str]):  # type: ignore[no-untyped-def]
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(config_name="train", overrides=overrides)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "float32_matmul_precision=low",
            "float32_matmul_precision=low is not a matmul precision: use one of highest, high, "
            "medium (default high: TF32 on Ampere and later GPUs)",
        ),
        ("model.compile=maybe", "model.compile=maybe must be true or false"),
        ("keep_freed_memory=maybe", "keep_freed_memory=maybe must be true or false"),
    ],
)
def test_bad_speed_options_are_one_line_errors(override: str, message: str) -> None:
    cfg = compose_train([override])
    with pytest.raises(UserError) as err:
        check_config(cfg)
    assert str(err.value) == message


def test_default_speed_options() -> None:
    cfg = compose_train([])
    check_config(cfg)
    assert cfg.float32_matmul_precision == "high" and cfg.model.compile is False
    assert cfg.keep_freed_memory is True


#: A child that runs a step-like pattern of 64-128 MiB tensors five times, then counts the minor
#: page faults of five more: whether freed memory stayed with the process for the next step. (After
#: only three warm-up steps the allocator sometimes still placed one block afresh.)
REFAULT = """
import resource, sys, torch
from lte.training.speed import keep_freed_memory
if sys.argv[1] == "keep":
    print(keep_freed_memory())
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():
    a = torch.ones(16, 2**20)
    b = a * 2
    c = torch.cat([a, b])
    del a
    return float((c.sum(0) + b)[0, 0])
for _ in range(5):
    step()
before = faults()
for _ in range(5):
    step()
print("refaults", faults() - before)
"""


def test_keep_freed_memory_reuses_freed_blocks() -> None:
    """With keep_freed_memory a step's freed 64-128 MiB blocks are reused by the next step without
    faulting their pages in again; with glibc's defaults (mmap'd, unmapped on free) they fault again
    (81924 per step with 4 KiB pages; fewer with transparent huge pages: a comparison, not a count)."""
    import subprocess
    import sys

    from lte.training.speed import glibc_allocator

    if not glibc_allocator():
        pytest.skip("glibc only: elsewhere keep_freed_memory leaves the allocator as it is")
    outs = {
        mode: subprocess.run(
            [sys.executable, "-c", REFAULT, mode], capture_output=True, text=True, check=True
        ).stdout
        for mode in ("keep", "default")
    }
    refaults = {mode: int(out.split("refaults")[1]) for mode, out in outs.items()}
    assert outs["keep"].startswith("keep_freed_memory: blocks up to 1024 MiB reused, not unmapped")
    assert refaults["default"] >= 100, outs
    assert refaults["keep"] * 10 < refaults["default"], outs


def test_compile_unavailable_names_the_missing_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    reason = compile_unavailable(torch.device("cpu"))
    assert reason is not None and "'/nonexistent/c++'" in reason and "$CXX" in reason


SMALL = [*SMALL_TRAIN, "logger=csv", "print_config=false"]


def train(run_dir: Path, *overrides: str) -> str:
    result = run_module("lte.train", *SMALL, f"hydra.run.dir={run_dir}", *overrides, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def losses(run_dir: Path) -> list[float]:
    import csv

    rows = []
    for path in sorted(run_dir.glob("csv/*/metrics.csv")):
        with path.open() as f:
            rows += [r for r in csv.DictReader(f) if r.get("train/loss")]
    return [float(r["train/loss"]) for r in sorted(rows, key=lambda r: int(r["step"]))]


def state_dict(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_bf16_mixed_trains_resumes_and_its_checkpoint_loads(tmp_path: Path) -> None:
    from lte.devices import native_bf16

    out = train(tmp_path, "trainer.precision=bf16-mixed")
    assert ("no AVX512-BF16 or AMX" in out) != native_bf16(torch.device("cpu"))
    first = losses(tmp_path)
    assert len(first) == 2 and all(math.isfinite(v) for v in first)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    weights = state_dict(ckpt)
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())
    train(tmp_path, "trainer.precision=bf16-mixed", "ckpt_path=last", "trainer.max_epochs=2")
    resumed = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert resumed["global_step"] == 4 and len(losses(tmp_path)) == 4
    assert load_checkpoint(ckpt).model.describe()["decoder"]["kind"] == "lte"


@pytest.mark.slow
@pytest.mark.skipif(
    compile_unavailable(torch.device("cpu")) is not None,
    reason=f"torch.compile cannot run here: {compile_unavailable(torch.device('cpu'))}",
)
def test_compiled_training_equals_eager_and_keeps_checkpoint_keys(tmp_path: Path) -> None:
    """Two steps compiled and eager from the same seed: losses within 1e-4 relative (Inductor
    reorders float32 sums; measured ~1e-7), the same checkpoint keys, and inference reads it."""
    train(tmp_path / "eager")
    train(tmp_path / "compiled", "model.compile=true")
    eager, compiled = losses(tmp_path / "eager"), losses(tmp_path / "compiled")
    assert len(eager) == len(compiled) == 2
    for a, b in zip(compiled, eager, strict=True):
        assert abs(a - b) <= 1e-4 * abs(b), (compiled, eager)
    ckpt_e = tmp_path / "eager" / "checkpoints" / "last.ckpt"
    ckpt_c = tmp_path / "compiled" / "checkpoints" / "last.ckpt"
    sd_e, sd_c = state_dict(ckpt_e), state_dict(ckpt_c)
    assert list(sd_c) == list(sd_e)
    assert not any("_orig_mod" in k for k in sd_c)
    for key in sd_e:
        if sd_e[key].is_floating_point():
            assert torch.allclose(sd_c[key], sd_e[key], rtol=1e-4, atol=1e-6), key
    loaded = load_checkpoint(ckpt_c).model
    assert loaded.describe() == load_checkpoint(ckpt_e).model.describe()
    train(tmp_path / "compiled", "model.compile=true", "ckpt_path=last", "trainer.max_epochs=2")
    assert torch.load(ckpt_c, map_location="cpu", weights_only=True)["global_step"] == 4
