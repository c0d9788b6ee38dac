"""``make demo``: the whole pipeline on a laptop CPU in a few minutes, on the bundled photos.

1. Trains EDSR-baseline-LTE on ``data/sample/train`` (9 photos) with ``python -m lte.train`` on the
   CPU: a shortened recipe (smaller patches and query count, higher lr, a slimmer EDSR-baseline) that
   fits in minutes instead of the paper's 21 GPU-hours. Logged as CSV and to W&B.
2. Scores it and the bicubic row on the 3 full validation photos (``data/sample/val``) at x2, x3, x4
   with ``python -m lte.test`` (``baseline=bicubic`` for the bicubic row): LR made on the fly with PIL
   bicubic, PSNR on RGB with the DIV2K protocol's shave of ``s + 6`` px, both into
   ``<out>/results.json``, then ``python -m lte.compare --wandb`` draws the comparison.
3. Upscales one validation photo x2 with the trained checkpoint (``python -m lte.upscale``).

Everything W&B gets is logged offline under the run folder when ``WANDB_API_KEY`` is unset (online
with a key): the training run in ``<out>/wandb``, the test runs in ``<out>/test/wandb`` and
``<out>/test_bicubic/wandb``, the comparison in ``<out>/compare/wandb`` (``wandb sync`` uploads
them; ``docs/wandb.md``). ``scripts/wandb_figures.py <out>`` draws the docs' figures from them.

    python scripts/demo.py                       # about 4-5 min on 2 idle cores
    python scripts/demo.py --threads 2           # a busy machine: fewer torch threads (make demo THREADS=2)
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

from lte.errors import UserError, exit_on_user_error
from lte.results import read_results

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
    "logger=[csv,wandb]",  # CSV beside the checkpoints, W&B offline in <out>/wandb without a key
    "callbacks.image_log.every_n_epochs=0",
]


#: ``lte.test`` options of the demo's evaluation (the bundled photos, DIV2K protocol).
TEST_OVERRIDES = [
    "testset=folder",
    f"testset.hr_dir={ROOT / 'data' / 'sample' / 'val'}",
    "testset.name=sample-val",
    f"testset.protocol={PROTOCOL}",
    f"scales=[{','.join(f'{s:g}' for s in SCALES)}]",
    "device=cpu",
    "logger=wandb",
]

#: Printed first: the README's timings are for an idle machine.
BUSY_HINT = (
    "The README's timings are for an idle machine. On a busy one, give the demo fewer threads: "
    "make demo THREADS=2 (python scripts/demo.py --threads 2)."
)


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


def set_threads(threads: int) -> None:
    """Limit torch's CPU threads (OpenMP/MKL, read at start-up) in every command the demo starts."""
    if threads < 0:
        raise UserError(f"--threads {threads} must be 0 (all cores) or a positive number")
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)


def print_table(results: Path, minutes: float) -> None:
    """The demo's summary: bicubic and LTE PSNR per scale, and the gain."""
    recs = read_results(results)
    psnr = {(r["model"], float(r["scale"])): r["psnr"] for r in recs}
    print(
        f"\nEDSR-baseline-LTE (8 blocks) trained {minutes:.1f} min on CPU; 3 val photos, "
        "PSNR (dB) on RGB, shave s+6, PIL-bicubic LR"
    )
    print(f"{'scale':>6} {'bicubic':>8} {'LTE':>8} {'gain':>7}")
    for s in SCALES:
        bic, lte = psnr.get(("bicubic", s)), psnr.get(("lte", s))
        if bic is None or lte is None:
            continue
        print(f"{f'x{s:g}':>6} {bic:8.2f} {lte:8.2f} {lte - bic:+7.2f}")


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=60, help="epochs of 18 steps (default 60)")
    parser.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (0: all cores); make demo THREADS=n"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last.ckpt"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not out.is_absolute():
        out = ROOT / out
    resume = resume_args(out, args.out, args.resume)
    set_threads(args.threads)
    print(BUSY_HINT, flush=True)
    if not os.environ.get("WANDB_API_KEY"):
        os.environ.setdefault(
            "WANDB_MODE", "offline"
        )  # no account needed, nothing leaves the machine

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

    # The model and the bicubic row, same protocol, into one results file; W&B runs beside them.
    results = out / "results.json"
    test = [sys.executable, "-m", "lte.test", *TEST_OVERRIDES, f"results_file={results}"]
    run([*test, f"ckpt={ckpt}", f"hydra.run.dir={out / 'test'}"])
    run([*test, "baseline=bicubic", f"hydra.run.dir={out / 'test_bicubic'}"])
    compare_dir = out / "compare"
    compare_cmd = [sys.executable, "-m", "lte.compare", str(results), "--out", str(compare_dir)]
    # --overwrite: the demo's own comparison, drawn again after a --resume.
    run([*compare_cmd, "--baseline", "bicubic", "--wandb", "--overwrite"])
    print_table(results, t_train / 60)

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
    print(f"checkpoint: {ckpt}\nexample:    {example}\nresults:    {results}")
    print(f"comparison: {compare_dir / 'comparison.md'}")
    print(
        f"W&B runs (offline without WANDB_API_KEY): {out}/wandb, {out}/{{test,test_bicubic,compare}}/wandb"
    )
    print(f"upload: wandb sync {out}/wandb/offline-run-* {out}/*/wandb/offline-run-*")


if __name__ == "__main__":
    main()
