"""Benchmark ``lte.test``'s evaluation loop against a plain loop over the literal reference, in one run.

Both score the same model on the same LR/HR pairs (the bundled photos ``data/sample/val`` by default,
DIV2K protocol, PIL bicubic LR, as ``lte.test testset=sample`` does) at the same scales:

- **lte.test**: :func:`lte.evaluation.evaluate_testset`, the library path ``python -m lte.test`` runs
  (whole image, ``eval.chunk=30000``, the chosen ``eval.workers`` and ``eval.backend``), PSNR and
  SSIM, with its stage profile (``eval.profile=true``);
- **literal**: the official test code's structure: per image, the encoder once on the whole LR,
  then ``tests/literal.py``'s per-neighbour decoder over 30000-query chunks of the HR grid, the
  prediction denormalised and clamped, PSNR only (the official loop computes no SSIM).

It prints seconds, the ratio lte.test / literal, the per-stage split of each lte.test run, the
share of its time inside encode + query, and the PSNR of both (they must agree).

    python scripts/bench_test.py                       # LTE, EDSR-baseline, x2 x3 x4, workers 0 and 1
    python scripts/bench_test.py --workers 0,1,2 --scales 2,4 --model liif
    python scripts/bench_test.py --quick --encoder edsr_tiny   # smoke run: 48 px crops, x2, seconds

Weights are random (seed 0): speed does not depend on them, and both loops see the same model.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _measure import use_threads

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the literal reference (tests/literal.py, tests/grids.py)


def literal_loop(model, testset, scales: list[float], chunk: int) -> dict[float, float]:
    """Mean PSNR per scale from the plain loop: pairs -> tensor -> literal prediction -> PSNR."""
    from literal import literal_image
    from lte.data.images import to_tensor
    from lte.metrics import psnr_protocol

    out = {}
    for s in scales:
        values = []
        for pair in testset.pairs(s):
            lr = to_tensor(pair.lr).unsqueeze(0)
            gt = to_tensor(pair.hr).unsqueeze(0)
            pred = literal_image(model, (lr - 0.5) / 0.5, pair.hr.shape[:2], chunk)
            pred = (pred * 0.5 + 0.5).clamp(0, 1)
            values.append(float(psnr_protocol(pred, gt, s, testset.protocol)[0]))
        out[s] = float(np.mean(values))
    return out


def crop_folder(src: Path, side: int, dest: Path) -> Path:
    """Top-left ``side``-px crops of every photo in ``src`` (``--quick``)."""
    from lte.data.images import load_rgb, save_rgb
    from lte.data.layouts import list_images

    for path in list_images(src):
        save_rgb(load_rgb(path)[:side, :side], dest / path.name)
    return dest


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="lte", choices=("lte", "liif", "metasr"))
    p.add_argument("--encoder", default="edsr_baseline", help="an EDSR or RDN encoder config")
    p.add_argument("--images", default=str(ROOT / "data/sample/val"), help="folder of HR images")
    p.add_argument("--protocol", default="div2k", choices=("div2k", "benchmark"))
    p.add_argument("--scales", default="2,3,4", help="comma-separated scales")
    p.add_argument("--workers", default="0,1", help="eval.workers values, one lte.test run each")
    p.add_argument("--backend", default="eager", help="eval.backend (eager or compile)")
    p.add_argument("--chunk", type=int, default=30000, help="queries per decoder call (both)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    p.add_argument("--quick", action="store_true", help="48 px crops, x2 only: a smoke run")
    p.add_argument("--out", default=None, help="also write the numbers as JSON here")
    args = p.parse_args()

    from lte.evaluation import EvalSettings, StageProfile, evaluate_testset
    from lte.models.build import build_model
    from lte.testsets import FolderSet

    use_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.model, args.encoder).eval()
    if model.pad_multiple > 0:
        raise SystemExit("the literal loop has no SwinIR padding: use an EDSR or RDN encoder")
    scales = [2.0] if args.quick else [float(v) for v in args.scales.split(",")]
    workers = [int(v) for v in args.workers.split(",")]
    tmp = tempfile.TemporaryDirectory()
    images = Path(args.images)
    if args.quick:
        images = crop_folder(images, 48, Path(tmp.name))
    testset = FolderSet(images, name=images.name, protocol=args.protocol)
    n_images = len(testset.hr_files())

    # Warm-up on one small crop: thread pools, allocator, lazy imports are not what is measured.
    warm = FolderSet(crop_folder(Path(args.images), 24, Path(tempfile.mkdtemp(dir=tmp.name))))
    literal_loop(model, warm, [2.0], args.chunk)
    evaluate_testset(model, warm, EvalSettings([2.0], workers=0, backend=args.backend))

    print(
        f"bench_test: {args.model} x {args.encoder}, scales {','.join(f'{s:g}' for s in scales)}, "
        f"{n_images} images from {args.images}{' (48 px crops)' if args.quick else ''}, "
        f"{args.protocol} protocol, chunk {args.chunk}, {args.threads} threads, "
        f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}"
    )
    t0 = time.perf_counter()
    literal_psnr = literal_loop(model, testset, scales, args.chunk)
    literal_s = time.perf_counter() - t0
    runs = []
    for w in workers:
        prof = StageProfile()
        settings = EvalSettings(scales, chunk=args.chunk, tile=0, workers=w, backend=args.backend)
        t0 = time.perf_counter()
        records = evaluate_testset(model, testset, settings, profile=prof)
        seconds = time.perf_counter() - t0
        psnr = {r.scale: r.psnr for r in records}
        runs.append({"workers": w, "seconds": seconds, "psnr": psnr, "profile": prof})

    print(f"\n{'loop':<34}{'seconds':>9}{'vs literal':>12}  PSNR per scale (dB)")
    row = "  ".join(f"x{s:g} {literal_psnr[s]:.4f}" for s in scales)
    print(f"{'literal reference (PSNR only)':<34}{literal_s:9.2f}{1.0:12.3f}  {row}")
    for run in runs:
        label = f"lte.test (workers={run['workers']}, {args.backend})"
        row = "  ".join(f"x{s:g} {run['psnr'][s]:.4f}" for s in scales)
        print(f"{label:<34}{run['seconds']:9.2f}{run['seconds'] / literal_s:12.3f}  {row}")
    worst = max(abs(run["psnr"][s] - literal_psnr[s]) for run in runs for s in scales)
    print(f"max |PSNR lte.test - literal|: {worst:.2e} dB")
    for run in runs:
        prof = run["profile"]
        print(f"\nlte.test stage split, workers={run['workers']}:\n{prof.table()}")
        print(
            f"share inside encode + query: {100 * prof.model_share:.1f}% "
            f"(overhead outside the model: {100 * (1 - prof.model_share):.1f}%)"
        )
    if args.out:
        data = {
            "args": vars(args),
            "literal_seconds": literal_s,
            "literal_psnr": literal_psnr,
            "runs": [{**r, "profile": r["profile"].as_dict()} for r in runs],
        }
        Path(args.out).write_text(json.dumps(data, indent=1, default=str))
        print(f"\nwritten: {args.out}")
    tmp.cleanup()
    assert all(math.isfinite(v) for v in literal_psnr.values())


if __name__ == "__main__":
    main()
