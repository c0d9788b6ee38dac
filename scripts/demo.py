"""``make demo``: the whole pipeline on a laptop CPU in a few minutes, on the bundled photos.

1. Trains EDSR-baseline-LTE on ``data/sample/train`` (9 photos) with ``python -m lte.train`` on the
   CPU: a shortened recipe (smaller patches and query count, higher lr, a slimmer EDSR-baseline) that
   fits in minutes instead of the paper's 21 GPU-hours.
2. Scores it against bicubic on the 3 full validation photos (``data/sample/val``) at x2, x3, x4:
   LR made on the fly with PIL bicubic, PSNR on RGB with the DIV2K protocol's shave of ``s + 6`` px
   (:mod:`lte.evaluate`), and prints the table.
3. Upscales one validation photo x2 with the trained checkpoint (``python -m lte.upscale``).

    python scripts/demo.py                       # about 4-5 min on 2 cores
    python scripts/demo.py --epochs 2 --out /tmp/demo   # a quick smoke run
    python scripts/demo.py --resume              # continue runs/demo (e.g. after Ctrl-C)

A run folder that already holds checkpoints is never trained over: pass ``--resume`` to continue
it, or ``--out`` for a new one.

The numbers it prints are for this tiny training set and budget; the paper's results need DIV2K
and the full recipe (docs/training.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lte.checkpoint import load_checkpoint
from lte.data.images import load_rgb, to_tensor
from lte.errors import UserError, exit_on_user_error
from lte.evaluate import evaluate_testset
from lte.metrics import psnr_protocol
from lte.testsets import FolderSet, pair_on_the_fly

ROOT = Path(__file__).resolve().parents[1]
SCALES = (2.0, 3.0, 4.0)
PROTOCOL = "div2k"  # RGB, shave s + 6 px

#: The shortened recipe. Steps per epoch: 9 photos x repeat 16 / batch 8 = 18.
TRAIN_OVERRIDES = [
    "model=lte",
    "encoder=edsr_baseline",
    "encoder.n_resblocks=8",  # half the blocks of EDSR-baseline: twice the steps in the budget
    "data=sample",
    "data.inp_size=24",
    "data.sample_q=256",
    "data.batch_size=8",
    "data.repeat=16",
    "data.val_inp_size=24",
    "trainer=cpu",
    "trainer.log_every_n_steps=6",
    "trainer.num_sanity_val_steps=0",
    "optimizer.lr=5e-4",
    "scheduler=null",
    "logger=csv",
    "callbacks.image_log.every_n_epochs=0",
]


def bicubic_psnr(hr_files: list[Path], scale: float) -> float:
    """Mean PSNR of PIL bicubic upsampling of the PIL-bicubic LR, under the same protocol."""
    values = []
    for f in hr_files:
        lr, hr = pair_on_the_fly(load_rgb(f), scale)
        up = Image.fromarray(lr).resize((hr.shape[1], hr.shape[0]), Image.Resampling.BICUBIC)
        pred = to_tensor(np.asarray(up)).unsqueeze(0)
        gt = to_tensor(hr).unsqueeze(0)
        values.append(float(psnr_protocol(pred, gt, scale, PROTOCOL)[0]))
    return float(np.mean(values))


def run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    result = subprocess.run(cmd, cwd=ROOT, check=False)
    if result.returncode != 0:
        raise UserError(f"'{' '.join(cmd[:3])} ...' failed with exit code {result.returncode}")


def resume_args(out: Path, given: str, resume: bool) -> list[str]:
    """``ckpt_path=...`` for ``--resume``; refuse to train over a run that holds checkpoints.

    Training into a folder with checkpoints would replace its ``last.ckpt``: the earlier run
    would be lost without a word, so the user chooses explicitly.
    """
    ckpts = sorted((out / "checkpoints").glob("*.ckpt"))
    last = out / "checkpoints" / "last.ckpt"
    if resume:
        if not last.is_file():
            raise UserError(f"--resume: '{last}' does not exist: drop --resume to start a new run")
        return [f"ckpt_path={last}"]
    if ckpts:
        raise UserError(
            f"'{given}' already holds checkpoints ({', '.join(c.name for c in ckpts)}): pass "
            "--resume to continue that run, or --out NEW_DIR for a new one"
        )
    return []


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=60, help="epochs of 18 steps (default 60)")
    parser.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last.ckpt"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not out.is_absolute():
        out = ROOT / out
    resume = resume_args(out, args.out, args.resume)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("WANDB_MODE", "offline")

    t0 = time.perf_counter()
    run(
        [
            sys.executable,
            "-m",
            "lte.train",
            *TRAIN_OVERRIDES,
            f"trainer.max_epochs={args.epochs}",
            f"trainer.check_val_every_n_epoch={args.epochs}",  # validate (and save) once, at the end
            f"hydra.run.dir={out}",
            *resume,
        ]
    )
    t_train = time.perf_counter() - t0
    ckpt = out / "checkpoints" / "last.ckpt"

    t1 = time.perf_counter()
    loaded = load_checkpoint(ckpt)
    testset = FolderSet(ROOT / "data" / "sample" / "val", name="sample-val", protocol=PROTOCOL)
    records = evaluate_testset(loaded.model, testset, list(SCALES))
    hr_files = testset.hr_files()
    t_eval = time.perf_counter() - t1

    print(
        f"\nEDSR-baseline-LTE (8 blocks) trained {t_train / 60:.1f} min on CPU; "
        f"{len(hr_files)} val photos, PSNR (dB) on RGB, shave s+6, PIL-bicubic LR"
    )
    print(f"{'scale':>6} {'bicubic':>8} {'LTE':>8} {'gain':>7}")
    for rec in records:
        bic = bicubic_psnr(hr_files, rec.scale)
        print(f"{f'x{rec.scale:g}':>6} {bic:8.2f} {rec.psnr:8.2f} {rec.psnr - bic:+7.2f}")
    print(f"(evaluation took {t_eval:.0f} s)")

    example = out / "chelsea_x2.png"
    if resume and example.is_file():
        example.unlink()  # this run's own example, from before the resume: made again below
    run(
        [
            sys.executable,
            "-m",
            "lte.upscale",
            str(ROOT / "data" / "sample" / "val" / "chelsea.png"),
            str(example),
            "--ckpt",
            str(ckpt),
            "--scale",
            "2",
            "--device",
            "cpu",
        ]
    )
    print(f"checkpoint: {ckpt}\nexample:    {example}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
