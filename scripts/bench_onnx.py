"""Benchmark an lte ONNX export in onnxruntime against the same model in PyTorch, in one run.

One model (random weights, seeded) is written as ``.safetensors`` and exported to ONNX
(``lte-export``'s two graphs) in a temporary folder; then each of the two rows is measured in its own
subprocess: ``torch`` (``lte.inference.predict`` with the decoder's fast kernel, the ``eager``
backend of ``lte.upscale``) and ``onnxruntime`` (``lte.onnx_runtime``: the same ``predict`` driver,
the exported graphs in onnxruntime's CPU provider). Both use the same number of threads, the same
chunks and tiles. The ratio printed comes from timings taken in this same run.

    python scripts/bench_onnx.py                       # LTE x4 on a 256x256 LR, EDSR-baseline
    python scripts/bench_onnx.py --models lte,liif,metasr --repeat 3
    python scripts/bench_onnx.py --encoder edsr_tiny --size 16 --repeat 1   # smoke run (seconds)

Columns: best-of-``--repeat`` seconds of one upscale, peak RSS of the measuring process (its own ``VmHWM``), time /
torch, and the max |difference| of the output to the torch row's (normalised units).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from _measure import peak_rss_mib, use_threads

IMPLS = ("torch", "onnxruntime")


def measure(spec: dict) -> dict:
    """One measurement (run in a child process): the best time, peak RSS, and the output saved."""
    from lte.checkpoint import load_checkpoint
    from lte.inference import predict

    use_threads(spec["threads"])
    lr = torch.rand(1, 3, spec["size"], spec["size"], generator=torch.Generator().manual_seed(1))
    lr = lr * 2 - 1
    side = round(spec["size"] * spec["scale"])
    tile = spec["tile"]
    if spec["impl"] == "torch":
        model = load_checkpoint(spec["weights"]).model

        def call() -> torch.Tensor:
            return predict(model, lr, (side, side), chunk=spec["chunk"], tile=tile)

    else:
        from lte.onnx_runtime import load_onnx

        onnx_model = load_onnx(spec["onnx"], threads=spec["threads"]).model

        def call() -> torch.Tensor:
            return onnx_model.predict(lr, (side, side), chunk=spec["chunk"], tile=tile)

    best = float("inf")
    for _ in range(max(1, spec["repeat"])):
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = call()
        best = min(best, time.perf_counter() - t0)
    torch.save(out, spec["save"])
    return {"seconds": best, "rss_mb": peak_rss_mib()}


def run_child(spec: dict) -> dict:
    """:func:`measure` in a fresh interpreter, so each row has its own process and peak RSS."""
    proc = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"measurement {spec['impl']} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prepare(model_kind: str, encoder: str, folder: Path) -> tuple[Path, Path, float]:
    """The model as ``.safetensors`` and ONNX in ``folder``; returns both paths and export seconds."""
    from lte.checkpoint import save_safetensors
    from lte.models.build import build_model
    from lte.onnx_export import export_onnx

    torch.manual_seed(0)
    model = build_model(model_kind, encoder).eval()
    weights = folder / f"{model_kind}.safetensors"
    save_safetensors(model, weights)
    t0 = time.perf_counter()
    onnx = folder / f"{model_kind}.onnx"
    export_onnx(model, onnx)
    return weights, onnx, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", default="lte", help="comma-separated: lte, liif, metasr")
    p.add_argument(
        "--encoder", default="edsr_baseline", help="encoder preset (default EDSR-baseline)"
    )
    p.add_argument("--size", type=int, default=256, help="LR side in pixels (default 256)")
    p.add_argument("--scale", type=float, default=4.0, help="scale factor (default 4)")
    p.add_argument("--repeat", type=int, default=2, help="timed calls per row; the best is kept")
    p.add_argument("--chunk", type=int, default=30000, help="queries per decoder call")
    p.add_argument("--tile", type=int, default=None, help="LR tile side (default: automatic)")
    p.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="threads of both rows"
    )
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one is not None:
        print(json.dumps(measure(json.loads(args.one))))
        return

    print(
        f"LR {args.size}x{args.size}, x{args.scale:g}, encoder {args.encoder}, "
        f"{args.threads} thread(s), best of {args.repeat}; torch {torch.__version__}"
    )
    header = f"{'model':8} {'impl':12} {'seconds':>9} {'RSS MB':>8} {'/torch':>7} {'max|diff|':>10}"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = []
        for kind in args.models.split(","):
            weights, onnx, export_s = prepare(kind, args.encoder, folder)
            print(f"{kind}: exported to ONNX in {export_s:.1f} s")
            results = {}
            for impl in IMPLS:
                spec = {
                    "impl": impl,
                    "weights": str(weights),
                    "onnx": str(onnx),
                    "size": args.size,
                    "scale": args.scale,
                    "repeat": args.repeat,
                    "chunk": args.chunk,
                    "tile": args.tile,
                    "threads": args.threads,
                    "save": str(folder / f"{kind}-{impl}.pt"),
                }
                results[impl] = run_child(spec)
            base = torch.load(folder / f"{kind}-torch.pt")
            for impl in IMPLS:
                out = torch.load(folder / f"{kind}-{impl}.pt")
                r = results[impl]
                ratio = r["seconds"] / results["torch"]["seconds"]
                diff = (out - base).abs().max().item()
                rows.append(
                    f"{kind:8} {impl:12} {r['seconds']:9.3f} {r['rss_mb']:8.0f} {ratio:7.2f} {diff:10.2e}"
                )
    print(header)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
