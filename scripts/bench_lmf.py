"""Benchmark LMF (LM-LTE, LM-LIIF) against LTE, LIIF and Meta-SR, in one run: cost, upscaling, training.

Three sections (``--sections``, all by default):

- ``macs``: multiply-adds per output pixel counted from the models themselves (PyTorch's
  ``FlopCounterMode`` over every matmul and convolution; element-wise work such as cos/sin or the
  modulations is not a multiply-add), split into the encoder, the LR-space work (``encode`` minus
  the encoder: LTE's and LM-LTE's convolutions, LIIF's folded first layer, LMF's hypernetwork) and
  the HR-space work (the differentiable query, per output pixel). LMF rows also give the LR work per
  code and the HR work per query and neighbour, the units of SPEC.md "Cost".
- ``upscale``: ``python -m lte.upscale`` as whole processes, wall time and peak RSS (each child's
  own, by ``/usr/bin/time``), LM-LTE against LTE with the same encoder, for each size and backend (``compile``
  applies to LTE; LM-LTE has no compiled kernel and falls back to eager, which its row says), as
  ratios from this one run (median of ``--repeat``).
- ``train``: seconds per training step (L1, Adam, forward and backward) of LM-LTE against LTE at the
  paper's batch shape (16 patches of 48x48 LR, 2304 queries each), on the bundled photos.

    python scripts/bench_lmf.py                       # the full benchmark (EDSR-baseline, x4)
    python scripts/bench_lmf.py --sections upscale --device cuda --repeat 5
    python scripts/bench_lmf.py --smoke               # tiny sizes: checks the script runs

Weights are random (``build_model``): cost and speed do not depend on them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from _measure import run_process

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("lte", "liif", "metasr", "lm_lte", "lm_liif")
PHOTO = ROOT / "data" / "sample" / "val" / "coffee.png"


def parse_size(text: str) -> tuple[int, int]:
    """``WxH`` -> ``(H, W)``."""
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def counted_macs(fn) -> int:  # type: ignore[no-untyped-def]
    """Multiply-adds of every matmul and convolution ``fn()`` runs (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops() // 2


def macs_table(args: argparse.Namespace) -> None:
    """Multiply-adds per output pixel: encoder, LR space, HR space (see the module docstring)."""
    from lte.geometry import make_cell, make_coord
    from lte.models import build_model

    h, w = parse_size(args.macs_size)
    out_hw = (round(h * args.scale), round(w * args.scale))
    pixels = out_hw[0] * out_hw[1]
    print(f"\n## Multiply-adds per output pixel: {args.encoder}, {w}x{h} LR, x{args.scale:g}")
    print("| model | encoder | LR space | HR space | decoder | total | LR / code | HR / query·nb |")
    print("|---|---|---|---|---|---|---|---|")
    torch.manual_seed(0)
    lr = torch.randn(1, 3, h, w)
    coord = make_coord(out_hw).unsqueeze(0)
    cell = make_cell(out_hw, 1, lr_hw=(h, w), scale_max=4.0).view(1, 1, 2)
    for kind in args.models:
        net = build_model(kind, args.encoder).eval()
        encoder = counted_macs(lambda net=net: net.encoder(lr))
        encode = counted_macs(lambda net=net: net.encode(lr, cell=cell))
        with torch.no_grad():
            state = net.encode(lr, cell=cell)
        hr = counted_macs(lambda net=net, state=state: net.query(state, coord, cell))
        lr_space = encode - encoder
        per_code = f"{lr_space / (h * w) / 1e3:.1f} K"
        neighbours = 1 if kind == "metasr" else 4
        per_query = f"{hr / pixels / neighbours / 1e3:.2f} K"
        print(
            f"| {kind} | {encoder / pixels / 1e3:.1f} K | {lr_space / pixels / 1e3:.2f} K | "
            f"{hr / pixels / 1e3:.2f} K | {(lr_space + hr) / pixels / 1e3:.2f} K | "
            f"{(encoder + lr_space + hr) / pixels / 1e3:.1f} K | {per_code} | {per_query} |"
        )


def upscale_table(args: argparse.Namespace) -> None:
    """``lte.upscale`` processes, LM-LTE against LTE (see the module docstring)."""
    from PIL import Image

    from lte.checkpoint import save_lte
    from lte.models import build_model

    work = Path(tempfile.mkdtemp(prefix="bench-lmf-"))
    ckpts = {}
    for kind in ("lte", "lm_lte"):
        ckpts[kind] = work / f"{kind}.ckpt"
        save_lte(build_model(kind, args.encoder), ckpts[kind])
    print(
        f"\n## lte.upscale x{args.scale:g} as processes: {args.encoder}, device {args.device}, "
        f"median of {args.repeat}"
    )
    print(
        "| input -> output | backend | LTE s | LM-LTE s | time LM/LTE | LTE MiB | LM-LTE MiB | RSS LM/LTE |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        h, w = parse_size(size)
        image = work / f"in_{w}x{h}.png"
        Image.open(PHOTO).convert("RGB").resize((w, h), Image.Resampling.BICUBIC).save(image)
        out_w, out_h = round(w * args.scale), round(h * args.scale)
        for backend in args.backends:
            rows = {}
            for kind, ckpt in ckpts.items():
                cmd = [
                    sys.executable, "-m", "lte.upscale", str(image), str(work / "out.png"),
                    "--ckpt", str(ckpt), "--scale", f"{args.scale:g}", "--device", args.device,
                    "--backend", backend, "--overwrite", "--no-progress",
                ]  # fmt: skip
                runs = [run_process(cmd) for _ in range(args.repeat)]
                rows[kind] = (
                    statistics.median(r[0] for r in runs),
                    statistics.median(r[1] for r in runs),
                )
            (t0, m0), (t1, m1) = rows["lte"], rows["lm_lte"]
            note = " (LM-LTE: eager)" if backend == "compile" else ""
            print(
                f"| {w}x{h} -> {out_w}x{out_h} | {backend}{note} | {t0:.2f} | {t1:.2f} | "
                f"{t1 / t0:.3f} | {m0:.0f} | {m1:.0f} | {m1 / m0:.3f} |"
            )


def train_table(args: argparse.Namespace) -> None:
    """Seconds per training step at the paper's batch shape, LM-LTE against LTE."""
    from lte.data.datamodule import SRDataModule
    from lte.models import build_model

    dm = SRDataModule(
        str(ROOT / "data/sample/train"),
        str(ROOT / "data/sample/val"),
        batch_size=args.batch,
        inp_size=args.inp_size,
        sample_q=args.sample_q,
        repeat=16,
        cache="memory",
    )
    dm.setup("fit")
    batches = []
    for batch in dm.train_dataloader():
        batches.append({k: batch[k].to(args.device) for k in ("inp", "coord", "cell", "gt")})
        if len(batches) == 4:
            break
    print(
        f"\n## Training step: {args.encoder}, batch {args.batch} of {args.inp_size}x"
        f"{args.inp_size} LR, {args.sample_q} queries, device {args.device}"
    )
    print("| model | s / step | LM-LTE / LTE |")
    print("|---|---|---|")
    times = {}
    for kind in ("lte", "lm_lte"):
        torch.manual_seed(0)
        net = build_model(kind, args.encoder).to(args.device).train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        loss_fn = torch.nn.L1Loss()
        for i in range(args.warmup + args.steps):
            if i == args.warmup:
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            b = batches[i % len(batches)]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(b["inp"], b["coord"], b["cell"]), b["gt"]).backward()
            opt.step()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times[kind] = (time.perf_counter() - t0) / args.steps
        ratio = "" if kind == "lte" else f"{times[kind] / times['lte']:.3f}"
        print(f"| {kind} | {times[kind]:.3f} | {ratio} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default="macs,upscale,train", help="macs,upscale,train")
    parser.add_argument("--encoder", default="edsr_baseline")
    parser.add_argument("--scale", type=float, default=4.0)
    parser.add_argument("--models", default=",".join(MODELS), help="macs: the models compared")
    parser.add_argument("--macs-size", default="64x64", help="macs: the LR size (WxH)")
    parser.add_argument("--sizes", default="256x256,960x540", help="upscale: LR sizes (WxH)")
    parser.add_argument("--backends", default="eager,compile", help="upscale: eager,compile")
    parser.add_argument("--repeat", type=int, default=3, help="upscale: runs per row (median)")
    parser.add_argument("--device", default="cpu", help="upscale and train: cpu or cuda[:N]")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--inp-size", type=int, default=48)
    parser.add_argument("--sample-q", type=int, default=2304)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: only checks it runs")
    args = parser.parse_args()
    if args.smoke:
        args.encoder, args.macs_size, args.sizes, args.repeat = "edsr_tiny", "12x10", "20x16", 1
        args.backends, args.batch, args.inp_size, args.sample_q = "eager", 2, 16, 64
        args.warmup, args.steps = 1, 1
    args.models = args.models.split(",")
    args.sizes = args.sizes.split(",")
    args.backends = args.backends.split(",")
    sections = args.sections.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if "macs" in sections:
        macs_table(args)
    if "upscale" in sections:
        upscale_table(args)
    if "train" in sections:
        train_table(args)


if __name__ == "__main__":
    main()
