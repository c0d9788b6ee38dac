"""lte against the official LTE code (github.com/jaewon-lee-b/lte) on the same weights, in one run.

The baseline is the official code itself, run on the CPU through ``scripts/official_reference.py``
(``.cuda()`` a no-op, its four third-party imports stood in), from a checkout you made. Every
measurement is a process of its own, the two sides alternating, best of ``--repeat``:

- ``train``: seconds per optimizer step at the paper's shape (16 x 48² LR patches, 2304 queries, L1,
  Adam 1e-4) on the same batches from the bundled photos and the same initial weights (ours written
  as an official file by ``lte.checkpoint.save_official``, the official model built from it). Ours
  runs SRModel's differentiable path the way ``lte.train`` sets the process up
  (``keep_freed_memory``, its default). The first losses are printed: the same function, so they
  agree to float32 round-off. ``lte, allocator defaults`` is ours with ``keep_freed_memory=false``.
  The Lightning wrapper's own cost is measured by ``bench_train.py``.
- ``upscale``: ``lte.upscale`` with its default options against the official forward
  (``official_reference.py forward``: the demo's ``batched_predict``, 30000 queries per call) as
  whole processes, on a crop of a bundled photo; peak RSS from ``/usr/bin/time`` where present.

    git clone https://github.com/jaewon-lee-b/lte /tmp/official-lte
    python scripts/bench_official.py --official /tmp/official-lte train --decoders lte,liif,metasr
    python scripts/bench_official.py --official /tmp/official-lte upscale --size 256 --scale 4

Nothing here is a test; the ratios are only meaningful with nothing else running.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from _measure import peak_rss_mib, run_process

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


# --- train -------------------------------------------------------------------------------------


def train_child(spec: dict) -> dict:
    """One side's steps in this (child) process: seconds per step, first loss, peak RSS."""
    from bench_train import option_loop  # the same textbook loop bench_train.py times

    batches = torch.load(spec["batches"], weights_only=True)
    if spec["side"] == "official":  # after lte's imports: the checkout goes first on sys.path
        from official_reference import import_official

        models, *_ = import_official(Path(spec["official"]))
        saved = torch.load(spec["ckpt"], map_location="cpu", weights_only=True)["model"]
        net = models.make(saved, load_sd=True)
    else:
        from lte.checkpoint import load_checkpoint
        from lte.training.speed import keep_freed_memory

        if spec["side"] == "lte":
            keep_freed_memory()  # what lte.train does by default (keep_freed_memory=true)
        net = load_checkpoint(spec["ckpt"]).model
    seconds, _, first_loss = option_loop(net, batches, spec["warmup"], spec["steps"])
    return {"seconds": seconds, "first_loss": first_loss, "rss_mb": peak_rss_mib()}


def run_train(args: argparse.Namespace, work: Path) -> None:
    from bench_train import make_batches
    from lte.checkpoint import save_official
    from lte.models.build import build_model

    torch.manual_seed(0)
    batches_path = work / "batches.pt"
    torch.save(make_batches(4), batches_path)
    print(
        f"train: edsr_baseline, batch (16, 3, 48, 48), 2304 queries, {args.warmup} warm-up + "
        f"{args.steps} timed steps, best of {args.repeat} alternating processes"
    )
    print(
        "| decoder | official s/step | lte s/step | lte / official | lte, allocator defaults "
        "| / official | first loss official / lte |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in args.decoders.split(","):
        ckpt = work / f"{name}.pth"
        torch.manual_seed(0)
        save_official(build_model(name, "edsr_baseline"), ckpt)
        best: dict[str, dict] = {}
        for _ in range(args.repeat):
            for side in ("official", "lte", "lte-defaults"):
                spec = {
                    "side": side,
                    "official": str(args.official),
                    "ckpt": str(ckpt),
                    "batches": str(batches_path),
                    "warmup": args.warmup,
                    "steps": args.steps,
                }
                res = child(["train", json.dumps(spec)])
                if side not in best or res["seconds"] < best[side]["seconds"]:
                    best[side] = res
        o, ours, plain = best["official"], best["lte"], best["lte-defaults"]
        print(
            f"| {name} | {o['seconds']:.3f} | {ours['seconds']:.3f} | "
            f"**{ours['seconds'] / o['seconds']:.2f}** | {plain['seconds']:.3f} | "
            f"{plain['seconds'] / o['seconds']:.2f} | {o['first_loss']:.8f} / "
            f"{ours['first_loss']:.8f} |",
            flush=True,
        )


# --- upscale -----------------------------------------------------------------------------------


def run_upscale(args: argparse.Namespace, work: Path) -> None:
    from PIL import Image

    from lte.checkpoint import save_official
    from lte.models.build import build_model

    photo = work / "lr.png"
    img = Image.open(ROOT / "data" / "sample" / "val" / "coffee.png").convert("RGB")
    img.crop((0, 0, args.size, args.size)).save(photo)
    ckpt = work / "lte.pth"
    torch.manual_seed(0)
    save_official(build_model(args.decoder, "edsr_baseline"), ckpt)
    out = args.size * args.scale
    print(
        f"upscale: {args.decoder}, edsr_baseline, {args.size}² -> {out}² (x{args.scale}), "
        f"best of {args.repeat} alternating processes"
    )
    sides = {
        "official forward": [
            sys.executable,
            str(SCRIPTS / "official_reference.py"),
            "--official",
            str(args.official),
            "forward",
            str(ckpt),
            str(photo),
            str(args.scale),
            str(work / "official.npy"),
        ],
        "lte.upscale (defaults)": [
            sys.executable,
            "-m",
            "lte.upscale",
            str(photo),
            "--scale",
            str(args.scale),
            "--ckpt",
            str(ckpt),
            str(work / "ours.png"),
            "--overwrite",
            "--no-progress",
        ],
    }
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeat):
        for side, cmd in sides.items():
            res = run_process(cmd)
            if side not in best or res[0] < best[side][0]:
                best[side] = res
    base = best["official forward"][0]
    print("| process | seconds | peak RSS MiB | / official |")
    print("|---|---|---|---|")
    for side, (seconds, peak) in best.items():
        print(f"| {side} | {seconds:.2f} | {peak:.0f} | {seconds / base:.2f} |")


# --- driver ------------------------------------------------------------------------------------


def child(argv: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--one", *argv], capture_output=True, text=True, cwd=ROOT
    )
    if proc.returncode != 0:
        raise SystemExit(f"error: measurement {argv} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(train_child(json.loads(sys.argv[3]))))
        return
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--official", type=Path, required=True, help="checkout of jaewon-lee-b/lte")
    p.add_argument("--repeat", type=int, default=2, help="processes per side (best kept)")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="seconds per training step, official vs lte")
    t.add_argument("--decoders", default="lte,liif,metasr")
    t.add_argument("--warmup", type=int, default=2)
    t.add_argument("--steps", type=int, default=5)
    u = sub.add_parser("upscale", help="lte.upscale vs the official forward, as processes")
    u.add_argument("--decoder", default="lte")
    u.add_argument("--size", type=int, default=256, help="LR side (a crop of coffee.png)")
    u.add_argument("--scale", type=int, default=4)
    args = p.parse_args()
    if not (args.official / "models" / "lte.py").is_file():
        p.error(
            f"--official {args.official}: not a checkout of jaewon-lee-b/lte (no models/lte.py)"
        )
    with tempfile.TemporaryDirectory(prefix="bench-official-") as tmp:
        if args.command == "train":
            run_train(args, Path(tmp))
        else:
            run_upscale(args, Path(tmp))


if __name__ == "__main__":
    main()
