"""The Fourier feature-space figure: maps read as SPEC says, the CLI on real checkpoint files, the callback.

The maps are held to a literal reading of SPEC.md ("Fourier feature space": channels 2k / 2k+1 are
(f_y, f_x), magnitude ``A[k]² + A[K+k]²``), and to the decoder's own function: rebuilding an LTE
query from the maps alone must give what ``SRModel.query`` gives. The CLI runs on checkpoint files
written by ``lte.checkpoint`` (lte format 2 and the official layout); the callback in a real Lightning
run, logging offline to W&B.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lte.fourier
import lte.train
from cli import run_main
from literal import _ensemble, _nearest
from lte.checkpoint import save_lte, save_official
from lte.cli.fourier import main
from lte.geometry import make_coord
from lte.models import build_model
from lte.spectrum import figure, figure_size, fourier_view, to_rgb

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.decoder.hidden_dim=16", "model.decoder.mlp_hidden=[16,16]"]
K = 8  # frequencies of the tiny model: hidden_dim / 2


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(3)
    return build_model("lte", "edsr_tiny", TINY).eval()


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory, tiny) -> dict[str, Path]:
    """Real checkpoint files of tiny models: lte format 2, official layout, and a LIIF."""
    folder = tmp_path_factory.mktemp("ckpts")
    paths = {"lte": folder / "tiny.ckpt", "official": folder / "tiny.pth"}
    save_lte(tiny, paths["lte"])
    save_official(tiny, paths["official"])
    paths["liif"] = folder / "liif.ckpt"
    save_lte(build_model("liif", "edsr_tiny", ["model.decoder.mlp_hidden=[16]"]), paths["liif"])
    return paths


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small crop (40x30) of a bundled photo, so that the tiny model encodes it in no time."""
    src = ROOT / "data" / "sample" / "val" / "chelsea.png"
    path = tmp_path_factory.mktemp("img") / "chelsea_crop.png"
    Image.open(src).convert("RGB").crop((150, 60, 190, 90)).save(path)
    return path


# --- the maps --------------------------------------------------------------------------------------


def test_maps_are_spec_literal(tiny) -> None:
    lr = torch.rand(2, 3, 7, 9) * 2 - 1
    maps = tiny.fourier(lr, scale=2.5)
    dec = tiny.decoder
    with torch.no_grad():
        feat = tiny.features(lr)  # the encoder as SRModel runs it (channels-last)
        freq, amp = dec.freq(feat), dec.coef(feat)  # (B, 2K, h, w) each
        assert maps.freq.shape == (2, K, 2, 7, 9) and maps.amplitude.shape == (2, 2 * K, 7, 9)
        for k in range(K):
            assert torch.equal(maps.freq[:, k, 0], freq[:, 2 * k])  # f_y
            assert torch.equal(maps.freq[:, k, 1], freq[:, 2 * k + 1])  # f_x
            expected = amp[:, k] ** 2 + amp[:, K + k] ** 2
            torch.testing.assert_close(maps.magnitude[:, k], expected, rtol=1e-6, atol=0)
        # The phase term P(rel_cell) of a x2.5 output: rel_cell = cell ⊙ (h, w) = 2 / 2.5.
        torch.testing.assert_close(maps.phase, dec.phase(torch.full((2, 2), 2 / 2.5)))
        # Beyond scale_max (4) the cell is enlarged by s / 4, as inference does: 2 / 8 · 2.
        torch.testing.assert_close(
            tiny.fourier(lr, scale=8.0).phase, dec.phase(torch.full((2, 2), 0.5))
        )
    assert tiny.fourier(lr).phase is None


def test_maps_rebuild_the_decoders_query(tiny) -> None:
    """An LTE query written from the maps alone (θ = f_y·rel_y + f_x·rel_x + P, a[:K] on cos and
    a[K:] on sin) equals the model's own: the pairing is the one the decoder really uses."""
    h, w, s = 6, 10, 3.0
    lr = torch.rand(1, 3, h, w) * 2 - 1
    coord = make_coord((round(h * s), round(w * s))).unsqueeze(0)  # (1, Q, 2)
    cell = torch.tensor([[[2 / (h * s), 2 / (w * s)]]]).expand_as(coord)
    with torch.no_grad():
        maps = tiny.fourier(lr, scale=s)
        fy, fx = maps.freq[:, :, 0], maps.freq[:, :, 1]
        amp = maps.amplitude

        def predict(q: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
            theta = _nearest(fy, q) * rel[..., :1] + _nearest(fx, q) * rel[..., 1:]
            theta = math.pi * (theta + maps.phase[:, None, :])
            a = _nearest(amp, q)
            z = a[..., :K] * torch.cos(theta)
            z = torch.cat([z, a[..., K:] * torch.sin(theta)], dim=-1)
            return tiny.decoder.imnet(z)

        rebuilt = _ensemble(fy, coord, predict) + torch.nn.functional.grid_sample(
            lr, coord.flip(-1).unsqueeze(1), mode="bilinear", padding_mode="border",
            align_corners=False,
        )[:, :, 0].permute(0, 2, 1)  # fmt: skip
        out = tiny.query(tiny.encode(lr), coord, cell)
    torch.testing.assert_close(rebuilt, out, rtol=1e-4, atol=1e-5)


def test_view_reads_position_x_column_y_row_and_draws_y_up(tiny) -> None:
    image = torch.rand(3, 7, 11)
    x, y = 9, 2
    view = fourier_view(tiny, image, (x, y), scale=2.0)
    with torch.no_grad():
        maps = tiny.fourier(image[None] * 2 - 1, 2.0)
    f = maps.freq[0, :, :, y, x]  # (K, 2) = (f_y, f_x)
    np.testing.assert_allclose(view.freq, torch.stack([f[:, 1], -f[:, 0]], -1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(view.magnitude, maps.magnitude[0, :, y, x].numpy(), rtol=1e-6)
    np.testing.assert_allclose(view.dominant, maps.magnitude[0].amax(0).numpy(), rtol=1e-6)
    assert view.dominant.shape == (7, 11) and view.image.shape == (7, 11, 3)


def test_notebook_flip_encodes_the_flipped_image_and_flips_maps_back(tiny) -> None:
    image = torch.rand(3, 7, 11)
    x, y = 3, 1
    view = fourier_view(tiny, image, (x, y), notebook_flip=True)
    with torch.no_grad():
        maps = tiny.fourier(image.flip(-2)[None] * 2 - 1)
    f = maps.freq[0, :, :, 7 - 1 - y, x]  # the flipped image's row of y; its f_y is already y-up
    np.testing.assert_allclose(view.freq, torch.stack([f[:, 1], f[:, 0]], -1).numpy(), rtol=1e-6)
    flipped_back = maps.magnitude[0].amax(0).flip(0).numpy()
    np.testing.assert_allclose(view.dominant, flipped_back, rtol=1e-6)
    np.testing.assert_allclose(view.image, image.permute(1, 2, 0).numpy())  # shown unflipped


def test_non_lte_models_have_no_fourier() -> None:
    for kind in ("liif", "metasr"):
        net = build_model(kind, "edsr_tiny")
        assert not net.has_fourier
        with pytest.raises(ValueError, match=f"the {kind} decoder estimates no Fourier"):
            net.fourier(torch.zeros(1, 3, 4, 4))


def test_figure_has_the_documented_size(tiny) -> None:
    view = fourier_view(tiny, torch.rand(3, 9, 9), (4, 4))
    rgb = to_rgb(figure(view, "t", dpi=50))
    assert rgb.shape == (225, 800, 3) == (*figure_size(view, 50)[::-1], 3)
    assert rgb.std() > 10, "the figure is not blank"


# --- the command -----------------------------------------------------------------------------------


def run_cli_in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m lte.fourier *args`` through its entry point in-process (see :func:`cli.run_main`)."""
    return run_main(lte.fourier.main, args, prog=lte.fourier.__file__, drop_env=())


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m lte.fourier *args`` in a real subprocess."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lte.fourier", *args],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip


@pytest.mark.parametrize("layout", ["lte", "official"])
def test_cli_writes_png_of_expected_size(
    layout: str, ckpts: dict[str, Path], photo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "fourier.png"
    proc = run_cli_in_process(
        "--ckpt", str(ckpts[layout]), "--image", str(photo), "--at", "39,0", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (1600, 450)  # 4 panels of 400x450 at the default dpi
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fourier.png"], "no temp files left"


def test_cli_scale_adds_the_phase_panel(
    ckpts: dict[str, Path], photo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "f.png"
    main(["--ckpt", str(ckpts["lte"]), "--image", str(photo), "--at", "5,5", "--scale", "6",
          "--dpi", "40", "--out", str(out), "--notebook-flip"])  # fmt: skip
    assert Image.open(out).size == (800, 180)  # 5 panels of 160x180


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_cli_liif_checkpoint_is_one_line_error(
    ckpts: dict[str, Path], photo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "f.png"
    proc = run_cli(
        "--ckpt", str(ckpts["liif"]), "--image", str(photo), "--at", "1,1", "--out", str(out)
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert str(ckpts["liif"]) in proc.stderr and "'liif'" in proc.stderr
    assert not out.exists()


def test_cli_bad_inputs(
    capsys: pytest.CaptureFixture[str], ckpts: dict[str, Path], photo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "f.png"
    base = ["--ckpt", str(ckpts["lte"]), "--image", str(photo)]
    err = _fails(capsys, [*base, "--at", "40,3", "--out", str(out)])
    assert "40x30" in err and "X must be 0..39 and Y 0..29" in err
    assert "Y 0..29" in _fails(capsys, [*base, "--at", "3,30", "--out", str(out)])
    for bad in ("3", "a,b", "1,2,3"):
        assert "is not X,Y" in _fails(capsys, [*base, "--at", bad, "--out", str(out)])
    assert "negative" in _fails(capsys, [*base, "--at=-1,2", "--out", str(out)])
    for bad in ("0", "-2", "nan", "inf"):
        err = _fails(capsys, [*base, "--at", "1,1", "--scale", bad, "--out", str(out)])
        assert "--scale must be a positive, finite number" in err
    assert "invalid float" in _fails(
        capsys, [*base, "--at", "1,1", "--scale", "x", "--out", str(out)]
    )
    assert "--dpi" in _fails(capsys, [*base, "--at", "1,1", "--dpi", "5", "--out", str(out)])
    err = _fails(capsys, ["--ckpt", str(tmp_path / "no.ckpt"), "--image", str(photo), "--at", "1,1",
                          "--out", str(out)])  # fmt: skip
    assert "no.ckpt" in err and "does not exist" in err
    err = _fails(capsys, ["--ckpt", str(ckpts["lte"]), "--image", str(tmp_path / "no.png"),
                          "--at", "1,1", "--out", str(out)])  # fmt: skip
    assert "no.png" in err and "does not exist" in err
    assert "must end in .png" in _fails(
        capsys, [*base, "--at", "1,1", "--out", str(tmp_path / "f.txt")]
    )
    assert "is the input image" in _fails(
        capsys, [*base, "--at", "1,1", "--out", str(photo), "--overwrite"]
    )
    err = _fails(capsys, [*base, "--at", "1,1", "--out", str(tmp_path / "missing" / "f.png")])
    assert "does not exist: create it first" in err
    assert not out.exists()
    # An existing --out is never replaced without --overwrite; with it, it is (atomically).
    out.write_bytes(b"mine")
    err = _fails(capsys, [*base, "--at", "1,1", "--out", str(out)])
    assert "already exists" in err and "--overwrite" in err
    assert out.read_bytes() == b"mine"
    main([*base, "--at", "1,1", "--out", str(out), "--overwrite"])
    assert Image.open(out).size == (1600, 450)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]


# --- the training callback -------------------------------------------------------------------------


SMALL = [
    "data=sample", "encoder=edsr_tiny", "data.inp_size=16", "data.sample_q=64", "data.batch_size=4",
    "data.repeat=1", "data.val_inp_size=8", "trainer=cpu", "trainer.max_epochs=1",
    "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false", "module.val_chunk=100",
]  # fmt: skip


def run_train(*overrides: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_MODE")}
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="offline", WANDB_SILENT="true")
    return subprocess.run(
        [sys.executable, "-m", "lte.train", *SMALL, *overrides],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def run_train_in_process(*overrides: str) -> subprocess.CompletedProcess[str]:
    """:func:`run_train` through the entry point in-process (see :func:`cli.run_main`)."""
    from lte.cli.train import main as train_main

    return run_main(
        train_main,
        [*SMALL, *overrides],
        prog=lte.train.__file__,
        env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"},
    )


@pytest.mark.slow
def test_callback_logs_the_figure_to_offline_wandb(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_train(f"hydra.run.dir={run}", "callbacks=fourier", "logger=wandb", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (offline,) = (run / "wandb").glob("offline-run-*")
    record = next(offline.glob("run-*.wandb")).read_bytes()
    assert b"val/fourier" in record
    images = list((offline / "files" / "media" / "images").rglob("*.png"))
    assert len(images) == 1, images
    # 5 panels (the validation patch's scale adds the phase one) of 320x360 at dpi 80.
    assert Image.open(images[0]).size == (1600, 360)
    assert not (run / "fourier").exists(), "with W&B the figure goes there only"


@pytest.mark.slow
def test_callback_without_wandb_saves_png_and_refuses_liif(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_train(f"hydra.run.dir={run}", "callbacks=fourier", "logger=csv", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.name for p in (run / "fourier").iterdir()] == ["epoch0000.png"]
    assert Image.open(run / "fourier" / "epoch0000.png").size == (1600, 360)
    assert (run / "checkpoints" / "last.ckpt").is_file(), "the default callbacks still run"

    proc = run_train_in_process(f"hydra.run.dir={tmp_path / 'liif'}", "callbacks=fourier",
                                "logger=none", "model=liif", "model.decoder.mlp_hidden=[16]")  # fmt: skip
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: callbacks=fourier needs an LTE model") and "'liif'" in last
