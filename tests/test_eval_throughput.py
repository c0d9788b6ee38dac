"""Evaluation throughput (issue #12, part 3): DataLoader workers, the stage profile, the backend option,
and the separable SSIM, each checked to give exactly the numbers of the plain protocol."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from cli import run_module
from conftest import ROOT, sample_photos
from lte.data.images import load_rgb, save_rgb, to_tensor
from lte.errors import UserError
from lte.evaluation import (
    BICUBIC,
    PREP_STAGES,
    STAGES,
    EvalSettings,
    Network,
    StageProfile,
    auto_workers,
    evaluate_testset,
    super_resolve,
)
from lte.inference import BACKENDS, kernel_for_backend
from lte.metrics import (
    filter_valid,
    gaussian_window,
    psnr_protocol,
    rgb_to_y,
    shave,
    ssim,
    ssim_protocol,
)
from lte.models.build import build_model
from lte.testsets import FolderSet

VAL = ROOT / "data" / "sample" / "val"


def tiny_lte(encoder: str = "edsr_tiny") -> torch.nn.Module:
    """A real LTE (fast kernel, local ensemble) with a 16-wide MLP: cheap enough for whole photos."""
    torch.manual_seed(0)
    overrides = ["model.decoder.hidden_dim=16", "model.decoder.mlp_hidden=[16]"]
    return build_model("lte", encoder, overrides).eval()


def crops(root: Path, size: tuple[int, int] = (40, 46)) -> FolderSet:
    """Three crops of the bundled photos (one per photo) as a folder test set, LR on the fly."""
    root.mkdir(parents=True)
    for i, src in enumerate(sample_photos()[:3]):
        save_rgb(load_rgb(src)[40 : 40 + size[0], 50 : 50 + size[1]], root / f"c{i}.png")
    return FolderSet(root, name="crops", protocol="benchmark")


def as_rows(records: list) -> list[tuple]:
    """Everything a record holds, per-image scores included, for exact comparison."""
    return [
        (
            r.to_dict(),
            [(p.name, p.psnr, p.ssim if not math.isnan(p.ssim) else None) for p in r.per_image],
        )
        for r in records
    ]


# --- workers -----------------------------------------------------------------------------------


def test_workers_give_the_same_records_for_a_model_and_for_bicubic(tmp_path: Path) -> None:
    testset = crops(tmp_path / "crops")
    model = tiny_lte()
    runs = {
        w: evaluate_testset(model, testset, EvalSettings([2, 3.5], chunk=700, workers=w))
        for w in (0, 2)
    }
    assert as_rows(runs[0]) == as_rows(runs[2])
    assert [r.images for r in runs[0]] == [3, 3]
    sample = FolderSet(VAL, name="sample", protocol="div2k")  # the bundled photos, whole
    base = {w: evaluate_testset(BICUBIC, sample, EvalSettings([3], workers=w)) for w in (0, 2)}
    assert as_rows(base[0]) == as_rows(base[2])


@pytest.mark.slow
def test_workers_give_the_same_records_on_the_whole_bundled_photos(tmp_path: Path) -> None:
    """A whole bundled validation photo (the smallest, data/sample/val/chelsea.png) with its
    full-size LR, div2k protocol; SwinIR (padding made in the workers) on crops of the photos."""
    (tmp_path / "whole").mkdir()
    save_rgb(load_rgb(VAL / "chelsea.png"), tmp_path / "whole" / "chelsea.png")
    whole = FolderSet(tmp_path / "whole", name="sample", protocol="div2k")
    for encoder, testset in (("edsr_tiny", whole), ("swinir_tiny", crops(tmp_path / "crops"))):
        model = tiny_lte(encoder)
        a = evaluate_testset(model, testset, EvalSettings([3], workers=0))
        b = evaluate_testset(model, testset, EvalSettings([3], workers=2))
        assert as_rows(a) == as_rows(b)
        assert a[0].images == len(testset.hr_files())


def test_a_bad_lr_file_fails_the_same_way_with_workers(tmp_path: Path) -> None:
    testset = crops(tmp_path / "crops")
    (tmp_path / "LR" / "X2").mkdir(parents=True)  # an LR folder lacking c1's file
    save_rgb(load_rgb(tmp_path / "crops" / "c0.png")[::2, ::2], tmp_path / "LR/X2/c0x2.png")
    testset = FolderSet(tmp_path / "crops", tmp_path / "LR", name="crops")
    messages = []
    for w in (0, 2):
        with pytest.raises(UserError) as err:
            evaluate_testset(BICUBIC, testset, EvalSettings([2], workers=w))
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "c1.png" in messages[0]
    assert "\n" not in messages[0]


def test_automatic_workers_are_a_count() -> None:
    assert auto_workers("cpu") in (0, 1)
    assert EvalSettings([2], workers=None).workers is None
    assert EvalSettings([2], workers="auto").workers is None


# --- profile -----------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 2])
def test_profile_reports_every_stage_and_adds_up(tmp_path: Path, workers: int) -> None:
    testset = crops(tmp_path / "crops")
    prof = StageProfile()
    plain = evaluate_testset(tiny_lte(), testset, EvalSettings([2], workers=workers))
    timed = evaluate_testset(tiny_lte(), testset, EvalSettings([2], workers=workers), profile=prof)
    assert as_rows(plain) == as_rows(timed)  # profiling changes no number
    split = prof.as_dict()
    assert set(split["stages"]) == set(STAGES) and split["images"] == 3
    assert split["workers"] == workers
    assert sum(split["stages"].values()) == pytest.approx(split["total"], rel=1e-9, abs=1e-9)
    assert all(v >= -1e-9 for v in split["stages"].values())
    for stage in ("model", "psnr", "ssim", "denorm", "wait"):
        assert split["stages"][stage] > 0, stage
    made_in = split["stages"] if workers == 0 else split["in_workers"]
    assert all(made_in[stage] > 0 for stage in ("load", "make_lr", "tensors"))
    if workers:
        assert split["stages"]["load"] == split["stages"]["make_lr"] == 0
    assert split["model_share"] == pytest.approx(split["stages"]["model"] / split["total"])
    table = prof.table()
    assert all(label in table for label in STAGES.values()) and "inside encode + query" in table
    assert set(PREP_STAGES) <= set(STAGES)


def test_profile_spans_several_test_sets(tmp_path: Path) -> None:
    prof = StageProfile()
    for name in ("a", "b"):
        evaluate_testset(BICUBIC, crops(tmp_path / name), [2], profile=prof)
    split = prof.as_dict()
    assert split["images"] == 6
    assert sum(split["stages"].values()) == pytest.approx(split["total"], rel=1e-9, abs=1e-9)


def test_cli_logs_one_profile_table(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``run_test`` (the CLI's body) with eval.profile=true: one table for the whole run."""
    from lte.evaluation.run import run_test

    crops(tmp_path / "crops")
    cfg = OmegaConf.create(
        {
            "ckpt": None,
            "baseline": "bicubic",
            "testsets": None,
            "testset": {
                "_target_": "lte.testsets.FolderSet",
                "hr_dir": str(tmp_path / "crops"),
                "protocol": "div2k",
            },
            "scales": [2, 3],
            "results_file": str(tmp_path / "res.json"),
            "device": "cpu",
            "eval": {"chunk": 30000, "tile": 0, "fast": False, "workers": 0, "profile": True},
            "progress": False,
            "logger": None,
            "paths": {"data_dir": str(tmp_path)},
        }
    )
    with caplog.at_level("INFO", logger="lte.test"):
        run_test(cfg, tmp_path / "run")
    tables = [r.getMessage() for r in caplog.records if "where the time went" in r.getMessage()]
    assert len(tables) == 1
    assert STAGES["results"] in tables[0] and "total" in tables[0]


# --- backend -----------------------------------------------------------------------------------


def test_eager_backend_gives_the_numbers_of_the_plain_protocol(tmp_path: Path) -> None:
    testset = crops(tmp_path / "crops")
    model = tiny_lte()
    (rec,) = evaluate_testset(model, testset, EvalSettings([3], backend="eager"))
    assert kernel_for_backend(model, "eager") == model.inference_kernel
    for score, pair in zip(rec.per_image, testset.pairs(3), strict=True):
        lr = to_tensor(pair.lr).unsqueeze(0)
        pred = super_resolve(model, lr, pair.hr.shape[:2], 3)
        gt = to_tensor(pair.hr).unsqueeze(0)
        assert score.name == pair.name
        assert score.psnr == float(psnr_protocol(pred, gt, 3, "benchmark")[0])
        assert score.ssim == float(ssim_protocol(pred, gt, 3, "benchmark")[0])


def test_backends_are_the_agreed_names() -> None:
    assert BACKENDS == ("auto", "eager", "compile")
    with pytest.raises(
        UserError, match=r"eval\.backend='jit' is not a backend: use one of auto, eager, compile"
    ):
        kernel_for_backend(tiny_lte(), "jit", option="eval.backend=")


def test_the_backend_is_mapped_once_per_network(caplog: pytest.LogCaptureFixture) -> None:
    """``lte.test`` readies its network once: one kernel, one warning, for every test set."""
    net = Network(build_model("metasr", "edsr_tiny"))  # no compiled kernel: a warning, then eager
    cpu = torch.device("cpu")
    with caplog.at_level("WARNING", logger="lte.inference"):
        ready = net.ready(EvalSettings([2], backend="compile"), cpu)
        again = ready.ready(EvalSettings([3], backend="compile"), cpu)
    assert ready.kernel == again.kernel == "fast" and again.settings.scales == (3.0,)
    assert len([r for r in caplog.records if "no compiled kernel" in r.getMessage()]) == 1


# --- SSIM --------------------------------------------------------------------------------------


@pytest.mark.parametrize("y_channel", [True, False])
def test_separable_ssim_equals_torchmetrics(y_channel: bool) -> None:
    """Same numbers as torchmetrics' 2-D Gaussian SSIM, to float64 round-off, on real photos."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    hr = torch.stack([to_tensor(load_rgb(p)[:90, :101]) for p in sample_photos()[:2]]).double()
    gen = torch.Generator().manual_seed(1)
    pred = (hr + 0.04 * torch.randn(hr.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    ours = ssim(pred, hr, border=4, y_channel=y_channel)
    a, b = (rgb_to_y(pred), rgb_to_y(hr)) if y_channel else (pred, hr)
    ref = structural_similarity_index_measure(
        shave(a, 4),
        shave(b, 4),
        gaussian_kernel=True,
        sigma=1.5,
        kernel_size=11,
        data_range=1.0,
        reduction="none",
    )
    assert ours.shape == (2,)
    assert torch.allclose(ours, ref, rtol=0, atol=1e-12)


def test_ssim_strips_change_no_value() -> None:
    """The cache-sized strips of the separable filter give the very same bits as one strip."""
    gen = torch.Generator().manual_seed(2)
    maps = torch.rand(5, 3, 75, 41, generator=gen, dtype=torch.float64)
    taps = gaussian_window().tolist()
    whole = filter_valid(maps, taps, strip=10_000)
    assert whole.shape == (5, 3, 65, 31)
    for strip in (1, 7, 64):
        assert torch.equal(filter_valid(maps, taps, strip=strip), whole)


# --- bad values --------------------------------------------------------------------------------

BAD = [
    ({"workers": -1}, "eval.workers=-1 must be a whole number >= 0"),
    ({"workers": 1.5}, "eval.workers=1.5 must be a whole number >= 0"),
    ({"workers": "two"}, "eval.workers=two must be a whole number >= 0"),
    ({"workers": True}, "eval.workers=True must be a whole number >= 0"),
    ({"backend": "jit"}, "eval.backend='jit' is not a backend: use one of auto, eager, compile"),
    ({"backend": 3}, "eval.backend=3 is not a backend: use one of auto, eager, compile"),
    ({"profile": "maybe"}, "eval.profile=maybe must be true or false"),
    ({"profile": 1}, "eval.profile=1 must be true or false"),
]


@pytest.mark.parametrize(("option", "message"), BAD)
def test_bad_eval_options_are_one_line_errors(option: dict, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)) as err:
        EvalSettings([2], **option)
    assert "\n" not in str(err.value)
    # The CLI builds its settings from the config through the same function.
    cfg = OmegaConf.create({"scales": [2], "eval": {"chunk": 30000, **option}})
    with pytest.raises(UserError, match=re.escape(message)):
        EvalSettings.from_config(cfg)


def test_bad_backend_on_the_command_line_exits_2_before_any_work(tmp_path: Path) -> None:
    proc = run_module(
        "lte.test",
        "baseline=bicubic",
        "testset=sample",
        "eval.backend=jit",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "error: eval.backend='jit' is not a backend: use one of auto, eager, compile (auto: compile "
        "when it pays; eager: the default kernels; compile: torch.compile'd decoder blocks)"
    ]
