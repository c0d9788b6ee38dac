"""Loss per step of the same tiny recipe under each training option, against float32.

Each option is a real ``python -m lte.train`` run (same seed, so the same initial weights and the
same batches) on the bundled photos, logging ``train/loss`` every step to CSV; the curves go to
``OUT/loss_curves.csv`` (step, one column per option) and ``OUT/loss_curves.png``, and the largest
difference from the float32 run is printed per option.

    python scripts/loss_curves.py                       # 100 steps each: fp32, bf16, compile
    python scripts/loss_curves.py --steps 300 --options fp32,compile --out runs/curves
    python scripts/loss_curves.py --steps 2             # checks it runs

Options: ``fp32`` (``trainer.precision=32-true``), ``bf16`` (``trainer.precision=bf16-mixed``;
on a CPU without AVX512-BF16/AMX this is very slow), ``compile`` (``model.compile=true``).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

#: The tiny recipe: EDSR-tiny + LTE on the bundled photos, small patches, one step logged per row.
RECIPE = [
    "data=sample",
    "encoder=edsr_tiny",
    "model=lte",
    "data.inp_size=24",
    "data.sample_q=256",
    "data.batch_size=4",
    "data.repeat=100",
    "data.num_workers=0",
    "trainer=cpu",
    "trainer.max_epochs=-1",
    "trainer.limit_val_batches=0",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "logger=csv",
    "callbacks=none",
    "print_config=false",
    "seed=0",
]

OPTIONS = {
    "fp32": ["trainer.precision=32-true"],
    "bf16": ["trainer.precision=bf16-mixed"],
    "compile": ["model.compile=true"],
}


def run(option: str, steps: int, out: Path, extra: list[str]) -> list[float]:
    """Train one option for ``steps`` steps into ``out/option``; its ``train/loss`` per step."""
    run_dir = out / option
    if run_dir.exists() and any(run_dir.iterdir()):
        raise SystemExit(f"{run_dir} exists and is not empty: choose another --out")
    args = [*RECIPE, *OPTIONS[option], f"trainer.max_steps={steps}", f"hydra.run.dir={run_dir}"]
    cmd = [sys.executable, "-m", "lte.train", *args, *extra]
    print(f"{option}: {' '.join(cmd[1:])}", flush=True)
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{option} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    losses: dict[int, float] = {}
    for metrics in sorted(run_dir.glob("csv/*/metrics.csv")):
        with metrics.open() as f:
            for row in csv.DictReader(f):
                if row.get("train/loss"):
                    losses[int(row["step"])] = float(row["train/loss"])
    return [losses[s] for s in sorted(losses)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--options", default="fp32,bf16,compile")
    parser.add_argument("--out", type=Path, default=Path("outputs/loss_curves"))
    parser.add_argument("overrides", nargs="*", help="extra training overrides, e.g. model=liif")
    args = parser.parse_args()
    options = args.options.split(",")
    unknown = [o for o in options if o not in OPTIONS]
    if unknown or not options or options[0] != "fp32":
        raise SystemExit(f"--options: start with fp32, then any of {', '.join(OPTIONS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    curves = {o: run(o, args.steps, args.out, args.overrides) for o in options}
    n = min(len(c) for c in curves.values())
    table = args.out / "loss_curves.csv"
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", *options])
        for i in range(n):
            writer.writerow([i, *(f"{curves[o][i]:.8g}" for o in options)])
    base = curves["fp32"]
    for option in options[1:]:
        diff = [abs(a - b) for a, b in zip(curves[option][:n], base[:n], strict=True)]
        rel = [d / abs(b) for d, b in zip(diff, base, strict=False) if b]
        print(
            f"{option}: max |loss - fp32 loss| over {n} steps {max(diff):.3g} "
            f"(relative {max(rel):.3g}); final {curves[option][n - 1]:.5f} vs {base[n - 1]:.5f}"
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for option in options:
        ax.plot(range(n), curves[option][:n], label=option, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("train/loss (L1, normalised)")
    ax.set_title("EDSR-tiny + LTE on data/sample, seed 0")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "loss_curves.png", dpi=120)
    print(f"wrote {table} and {args.out / 'loss_curves.png'}")


if __name__ == "__main__":
    main()
