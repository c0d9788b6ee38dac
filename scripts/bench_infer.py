"""Benchmark lte's inference against the literal per-neighbour reference (tests/literal.py), in one run.

Every measurement runs in its own subprocess, so each reports its own peak RSS (``ru_maxrss``), and
the ratios printed at the end come from timings taken in this same run.

    python scripts/bench_infer.py            # full table (tens of minutes on 2 CPU cores)
    python scripts/bench_infer.py --quick    # 64x64 LR, x2/x4, LTE only: about a minute
    python scripts/bench_infer.py --kernel exact   # the differentiable definition instead of fast
    python scripts/bench_infer.py --quick --encoder edsr_tiny --size 12 --big 40  # smoke run

Columns: seconds (best of ``--repeat``), peak RSS of the measuring process (torch and the model
included), the fast/literal time ratio, the max |difference| between their outputs, and the share
of the machine's measured GEMM rate that the decoder's MLP multiply-adds reach.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("lte", "liif", "metasr")


def mlp_macs_per_pixel(model) -> int:
    """Multiply-adds of the decoder's MLP per output pixel, as the literal method computes them.

    LTE and LIIF run their MLP once per ensemble neighbour (4 times); Meta-SR once per pixel.
    """
    linears = [m for m in model.decoder.imnet.modules() if isinstance(m, torch.nn.Linear)]
    per_row = sum(m.in_features * m.out_features for m in linears)
    return per_row * (1 if model.decoder.kind == "metasr" else 4)


def fast_mlp_macs_per_pixel(model) -> int:
    """Multiply-adds the fast path actually runs per pixel (LIIF's first layer is folded)."""
    linears = [m for m in model.decoder.imnet.modules() if isinstance(m, torch.nn.Linear)]
    name = model.decoder.kind
    if name == "liif":
        return 4 * sum(m.in_features * m.out_features for m in linears[1:])
    if name == "metasr":
        return 0  # weights per distinct offset: negligible per pixel
    return mlp_macs_per_pixel(model)


def gemm_rate(dtype: torch.dtype, rows: int = 2048, reps: int = 30) -> float:
    """Multiply-adds per second of a ``(rows, 256) @ (256, 256)`` matmul (the MLP's shape)."""
    x = torch.randn(rows, 256).to(dtype)
    w = torch.randn(256, 256).to(dtype)
    b = torch.randn(256).to(dtype)
    out = torch.empty(rows, 256, dtype=dtype)
    for _ in range(5):
        torch.addmm(b, x, w, out=out)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.addmm(b, x, w, out=out)
        best = min(best, (time.perf_counter() - t0) / reps)
    return rows * 256 * 256 / best


def _literal_run(model, lr, out_hw, chunk: int):
    """The literal reference, chunked like the papers' test code: features computed once per image.

    Cells are enlarged per axis beyond ``model.scale_max`` exactly as ``predict`` does (SPEC).
    """
    sys.path.insert(0, str(ROOT / "tests"))
    from grids import query_grid
    from literal import LITERAL
    from lte.geometry import cell_enlargement

    name = model.decoder.kind
    cell_scale = tuple(
        cell_enlargement(out / inp, model.scale_max)
        for out, inp in zip(out_hw, lr.shape[-2:], strict=True)
    )
    with torch.no_grad():
        feat = model.encoder(lr)
        dec = model.decoder
        if name == "lte":
            coef, freq = dec.coef(feat), dec.freq(feat)
            # Per-image maps computed once, as the official gen_feat does; the rest is literal.
            dec = SimpleNamespace(
                coef=lambda _: coef, freq=lambda _: freq, phase=dec.phase, imnet=dec.imnet
            )
        wrapped = SimpleNamespace(encoder=lambda _: feat, decoder=dec)
        coord, cell = query_grid(out_hw, lr.shape[0], cell_scale=cell_scale)
        parts = [
            LITERAL[name](wrapped, lr, coord[:, i : i + chunk], cell[:, i : i + chunk])
            for i in range(0, coord.shape[1], chunk)
        ]
        rgb = torch.cat(parts, dim=1)
    return rgb.transpose(1, 2).reshape(lr.shape[0], 3, *out_hw)


def measure(spec: dict) -> dict:
    """One measurement (run in a child process): time, output digest and peak RSS."""
    from lte.inference import predict
    from lte.models.build import build_model

    torch.manual_seed(0)
    torch.set_num_threads(spec["threads"])
    model = build_model(spec["model"], spec["encoder"]).eval()
    lr = (
        torch.rand(1, 3, spec["lr"], spec["lr"], generator=torch.Generator().manual_seed(1)) * 2 - 1
    )
    out_hw = (spec["lr"] * spec["scale"], spec["lr"] * spec["scale"])
    dtype = {"float32": None, "bfloat16": torch.bfloat16}[spec["dtype"]]
    best, out = float("inf"), None
    for _ in range(spec["repeat"]):
        t0 = time.perf_counter()
        if spec["impl"] == "literal":
            out = _literal_run(model, lr, out_hw, spec["chunk"])
        else:
            out = predict(
                model,
                lr,
                out_hw,
                chunk=spec["chunk"],
                dtype=dtype,
                kernel=spec["kernel"],
                tile=spec["tile"],
            )
        best = min(best, time.perf_counter() - t0)
    result = {"seconds": best, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if spec.get("save"):
        torch.save(out, spec["save"])
    # Multiply-adds actually run: LIIF's first layer is folded into its table by both kernels;
    # only the fast Meta-SR kernel evaluates its weight MLP once per distinct input.
    literal_macs = spec["impl"] == "literal" or (
        spec["impl"] == "exact" and model.decoder.kind == "metasr"
    )
    result["macs_per_pixel"] = (
        mlp_macs_per_pixel(model) if literal_macs else fast_mlp_macs_per_pixel(model)
    )
    return result


def run_child(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"measurement {spec} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="small image, LTE only, x2 and x4")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    p.add_argument("--repeat", type=int, default=1, help="timed runs per measurement (best kept)")
    p.add_argument("--chunk", type=int, default=30000, help="queries per chunk")
    p.add_argument("--encoder", default="edsr_baseline", help="encoder config for every row")
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    p.add_argument(
        "--kernel",
        choices=["fast", "exact"],
        default="fast",
        help="decoder kernel of the non-literal rows (exact: the differentiable definition)",
    )
    p.add_argument("--size", type=int, default=None, help="LR side (default 256, --quick 64)")
    p.add_argument(
        "--big", type=int, default=None, help="LR side of the tiled rows (1024, --quick 128)"
    )
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one is not None:
        print(json.dumps(measure(json.loads(args.one))))
        return

    tmp = Path("/tmp") / f"bench_infer_{time.time_ns()}"
    tmp.mkdir()
    torch.set_num_threads(args.threads)
    rates = {d: gemm_rate(getattr(torch, d)) for d in ("float32", "bfloat16")}
    print(
        f"GEMM (2048x256 @ 256x256, {args.threads} threads): float32 {rates['float32'] / 1e9:.1f} GMAC/s, "
        f"bfloat16 {rates['bfloat16'] / 1e9:.1f} GMAC/s ({rates['bfloat16'] / rates['float32']:.2f}x)"
    )
    size = args.size or (64 if args.quick else 256)
    models = ("lte",) if args.quick else MODELS
    scales = (2, 4) if args.quick else (2, 4, 8)
    base = {
        "encoder": args.encoder,
        "lr": size,
        "threads": args.threads,
        "repeat": args.repeat,
        "chunk": args.chunk,
        "tile": 0,
        "kernel": args.kernel,
    }
    rows = []
    header = "| model | scale | impl | dtype | seconds | peak RSS MB | time / literal | max abs diff | MLP MAC/px | GEMM share |"
    print(header)
    print("|" + "---|" * 10)
    for model in models:
        for scale in scales:
            literal_path = tmp / f"{model}_{scale}_lit.pt"
            lit = run_child(
                {
                    **base,
                    "model": model,
                    "scale": scale,
                    "impl": "literal",
                    "dtype": "float32",
                    "save": str(literal_path),
                }
            )
            ref = torch.load(literal_path)
            results = [("literal", "float32", lit, 0.0)]
            for dtype in ("float32", "bfloat16"):
                path = tmp / f"{model}_{scale}_{dtype}.pt"
                res = run_child(
                    {
                        **base,
                        "model": model,
                        "scale": scale,
                        "impl": args.kernel,
                        "dtype": dtype,
                        "save": str(path),
                    }
                )
                diff = (torch.load(path) - ref).abs().max().item()
                results.append((args.kernel, dtype, res, diff))
            pixels = (size * scale) ** 2
            for impl, dtype, res, diff in results:
                share = (
                    res["macs_per_pixel"] * pixels / res["seconds"] / rates[dtype]
                    if res["macs_per_pixel"]
                    else float("nan")
                )
                row = {
                    "model": model,
                    "scale": scale,
                    "impl": impl,
                    "dtype": dtype,
                    **res,
                    "ratio": res["seconds"] / lit["seconds"],
                    "diff": diff,
                    "gemm_share": share,
                }
                rows.append(row)
                print(
                    f"| {model} | x{scale} | {impl} | {dtype} | {res['seconds']:.2f} | {res['rss_mb']:.0f} | "
                    f"{row['ratio']:.2f} | {diff:.1e} | {res['macs_per_pixel'] / 1e3:.0f} K | {share:.0%} |",
                    flush=True,
                )
    # Memory at a large input: the fast path tiles automatically (tile=None).
    big = args.big or (128 if args.quick else 1024)
    print(f"\nPeak RSS for a {big}x{big} LR (fast path, automatic tiles, float32):")
    print("| model | scale | seconds | peak RSS MB |")
    print("|---|---|---|---|")
    for scale in (2, 4):
        res = run_child(
            {
                **base,
                "lr": big,
                "model": "lte",
                "scale": scale,
                "impl": "fast",
                "dtype": "float32",
                "tile": None,
                "repeat": 1,
            }
        )
        rows.append({"model": "lte", "scale": scale, "lr": big, "impl": "fast-tiled", **res})
        print(f"| lte | x{scale} | {res['seconds']:.1f} | {res['rss_mb']:.0f} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"gemm": rates, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
