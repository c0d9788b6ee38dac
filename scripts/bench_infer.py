"""Benchmark lte's inference backends against the literal per-neighbour reference, in one run.

Rows per model and scale: the literal reference (tests/literal.py), then each backend (``eager``: the
decoder's fast kernel, ``compile``: its ``torch.compile``d block) in each dtype. Every measurement
runs in its own subprocess, so each reports its own peak RSS (``VmHWM``: ``scripts/_measure.py`` says
why not ``ru_maxrss``, which on Linux carries this parent's peak into every child), and with an empty
compile cache of its own (``$LTE_CACHE_DIR``, inductor's folder inside it), so the compiled backend
starts cold; the ratios printed come from timings taken in this same run.

    python scripts/bench_infer.py            # full table (tens of minutes on 2 CPU cores)
    python scripts/bench_infer.py --quick    # 64x64 LR, x2/x4, LTE only: a few minutes
    python scripts/bench_infer.py --models lte --scales 4 --dtypes float32 --repeat 2 --big 0
                                             # LTE x4 on 256x256: literal vs eager vs compile
    python scripts/bench_infer.py --kernel exact   # eager rows use the differentiable definition
    python scripts/bench_infer.py --quick --encoder edsr_tiny --size 12 --big 40  # smoke run

Columns: steady-state seconds (best of ``--repeat``), the first call's seconds for ``compile`` rows
(compiling included), peak RSS of the measuring process, time / literal and time / eager float32
(the default path), max |difference| to the literal output, and the share of the machine's
measured GEMM rate (same dtype) that the decoder's MLP multiply-adds reach, over the whole
prediction and over its query part alone (the time less one whole-image encode, timed apart). Meta-SR has no compiled
kernel: its ``compile`` rows run the eager kernel (the ``kernel`` column says so). bfloat16/float16 rows (and their GEMM rate)
are skipped with a printed reason where ``lte.devices`` finds no native support (on an AVX2 CPU
they would take hours); ``--force-lowp`` runs them anyway.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from _measure import peak_rss_mib, use_threads

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("lte", "liif", "metasr")
DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
NEEDS = {"bfloat16": "needs AVX512-BF16 or AMX", "float16": "needs AVX512-FP16 or AMX-FP16"}


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


def gemm_share(macs: float, seconds: float, rate: float) -> float:
    """``macs`` multiply-adds done in ``seconds`` as a share of ``rate`` (NaN: none, or no time)."""
    return macs / seconds / rate if macs and seconds > 0 else float("nan")


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
    """The literal reference, chunked like the papers' test code (``tests/literal.literal_image``)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from literal import literal_image

    return literal_image(model, lr, out_hw, chunk)


def measure(spec: dict) -> dict:
    """One measurement (run in a child process): times, output and peak RSS.

    ``compile`` rows time their first call separately (``first_seconds``: compiling included);
    ``seconds`` is the best of ``repeat`` further calls (steady state). Other rows time ``repeat``
    calls and keep the best.
    """
    from lte.inference import predict
    from lte.models.build import build_model

    torch.manual_seed(0)
    use_threads(spec["threads"])
    model = build_model(spec["model"], spec["encoder"]).eval()
    lr = (
        torch.rand(1, 3, spec["lr"], spec["lr"], generator=torch.Generator().manual_seed(1)) * 2 - 1
    )
    out_hw = (spec["lr"] * spec["scale"], spec["lr"] * spec["scale"])
    dtype = DTYPES[spec["dtype"]]
    kernel = spec["kernel"]
    if spec["impl"] == "compile":
        from lte.inference import kernel_for_backend

        kernel = kernel_for_backend(model, "compile")  # Meta-SR: its eager kernel, with a reason

    def call():
        if spec["impl"] == "literal":
            return _literal_run(model, lr, out_hw, spec["chunk"])
        return predict(
            model,
            lr,
            out_hw,
            chunk=spec["chunk"],
            dtype=dtype,
            kernel=kernel,
            tile=spec["tile"],
        )

    result: dict = {"kernel": kernel}
    if kernel == "compiled":
        t0 = time.perf_counter()
        out = call()
        result["first_seconds"] = time.perf_counter() - t0
    best = float("inf")
    for _ in range(max(1, spec["repeat"])):
        t0 = time.perf_counter()
        out = call()
        best = min(best, time.perf_counter() - t0)
    result["seconds"] = best
    result["rss_mb"] = peak_rss_mib()
    if spec["impl"] != "literal" and spec["tile"] == 0:
        # The encoder's share of ``seconds`` (one whole-image encode, best of 2), so that the
        # query kernel's own GEMM share can be given apart from the encoder's convolutions.
        enc = float("inf")
        with torch.inference_mode():
            for _ in range(2):
                t0 = time.perf_counter()
                model.encode(lr)
                enc = min(enc, time.perf_counter() - t0)
        result["encode_seconds"] = enc
    if spec.get("save"):
        torch.save(out, spec["save"])
    # Multiply-adds actually run: LIIF's first layer is folded into its table by every kernel but
    # the literal one; only the fast Meta-SR kernel evaluates its weight MLP once per distinct input.
    literal_macs = spec["impl"] == "literal" or (
        spec["kernel"] == "exact" and model.decoder.kind == "metasr"
    )
    result["macs_per_pixel"] = (
        mlp_macs_per_pixel(model) if literal_macs else fast_mlp_macs_per_pixel(model)
    )
    return result


def run_child(spec: dict) -> dict:
    """One measurement in a fresh process with an empty compile cache (deleted afterwards)."""
    with tempfile.TemporaryDirectory(prefix="lte-bench-cache-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
        env["LTE_CACHE_DIR"] = cache
        proc = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps(spec)],
            capture_output=True,
            text=True,
            env=env,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"measurement {spec} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def lowp_skip_reason(dtype: str, force: bool) -> str | None:
    """Why ``dtype`` rows are skipped on this machine's CPU, or ``None`` when they run."""
    from lte.devices import native_bf16, native_fp16

    if dtype == "float32" or force:
        return None
    native = native_bf16("cpu") if dtype == "bfloat16" else native_fp16("cpu")
    if native:
        return None
    return (
        f"{dtype} rows skipped: this CPU has no native {dtype} matrix multiply "
        f"(lte.devices; {NEEDS[dtype]}), so it is emulated and would take hours; "
        "--force-lowp runs them anyway"
    )


def backend_kernel(backend: str, eager_kernel: str) -> str:
    """The decoder kernel a backend row uses (``compile`` falls back like ``kernel_for_backend``)."""
    if backend == "eager":
        return eager_kernel
    from lte.devices import compile_unavailable

    reason = compile_unavailable("cpu")
    if reason is not None:
        raise SystemExit(f"--backends compile: {reason}")
    return "compiled"


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
        help="decoder kernel of the eager rows (exact: the differentiable definition)",
    )
    p.add_argument(
        "--backends", default="eager,compile", help="comma-separated: eager, compile (both)"
    )
    p.add_argument(
        "--dtypes", default="float32,bfloat16", help="comma-separated: float32, bfloat16, float16"
    )
    p.add_argument(
        "--force-lowp",
        action="store_true",
        help="run bfloat16/float16 rows even where the CPU has no native support (very slow)",
    )
    p.add_argument("--models", default=None, help="comma-separated (default all; --quick: lte)")
    p.add_argument("--scales", default=None, help="comma-separated (default 2,4,8; --quick: 2,4)")
    p.add_argument("--size", type=int, default=None, help="LR side (default 256, --quick 64)")
    p.add_argument(
        "--big",
        type=int,
        default=None,
        help="LR side of the tiled rows (1024, --quick 128; 0 skips them)",
    )
    p.add_argument(
        "--big-scales", default="2,4", help="comma-separated scales of the tiled rows (default 2,4)"
    )
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one is not None:
        print(json.dumps(measure(json.loads(args.one))))
        return

    backends = [b for b in args.backends.split(",") if b]
    if not set(backends) <= {"eager", "compile"}:
        p.error(f"--backends {args.backends}: use eager and/or compile")
    dtypes = [d for d in args.dtypes.split(",") if d]
    if not set(dtypes) <= set(DTYPES):
        p.error(f"--dtypes {args.dtypes}: use float32, bfloat16 and/or float16")
    for d in dtypes:
        reason = lowp_skip_reason(d, args.force_lowp)
        if reason is not None:
            print(reason)
    dtypes = [d for d in dtypes if lowp_skip_reason(d, args.force_lowp) is None]
    kernels = {b: backend_kernel(b, args.kernel) for b in backends}

    tmp = Path("/tmp") / f"bench_infer_{time.time_ns()}"
    tmp.mkdir()
    use_threads(args.threads)
    rates = {d: gemm_rate(getattr(torch, d)) for d in dict.fromkeys(["float32", *dtypes])}
    print(
        f"GEMM (2048x256 @ 256x256, {args.threads} threads): "
        + ", ".join(
            f"{d} {r / 1e9:.1f} GMAC/s ({r / rates['float32']:.2f}x float32)"
            for d, r in rates.items()
        )
    )
    size = args.size or (64 if args.quick else 256)
    models = args.models.split(",") if args.models else (["lte"] if args.quick else list(MODELS))
    scales = (
        [int(s) for s in args.scales.split(",")]
        if args.scales
        else ([2, 4] if args.quick else [2, 4, 8])
    )
    base = {
        "encoder": args.encoder,
        "lr": size,
        "threads": args.threads,
        "repeat": args.repeat,
        "chunk": args.chunk,
        "tile": 0,
    }
    rows = []
    header = (
        "| model | scale | backend | kernel | dtype | seconds | first call s | peak RSS MB "
        "| time / literal | time / eager f32 | max abs diff | MLP MAC/px | GEMM share "
        "| query GEMM share |"
    )
    print(header)
    print("|" + "---|" * 14)
    for model in models:
        for scale in scales:
            literal_path = tmp / f"{model}_{scale}_lit.pt"
            lit = run_child(
                {
                    **base,
                    "model": model,
                    "scale": scale,
                    "impl": "literal",
                    "kernel": "literal",
                    "dtype": "float32",
                    "save": str(literal_path),
                }
            )
            ref = torch.load(literal_path)
            results = [("literal", "literal", "float32", lit, 0.0)]
            for dtype in dtypes:
                for backend in backends:
                    path = tmp / f"{model}_{scale}_{dtype}_{backend}.pt"
                    res = run_child(
                        {
                            **base,
                            "model": model,
                            "scale": scale,
                            "impl": backend,
                            "kernel": kernels[backend],
                            "dtype": dtype,
                            "save": str(path),
                        }
                    )
                    diff = (torch.load(path) - ref).abs().max().item()
                    results.append((backend, res["kernel"], dtype, res, diff))
            eager_seconds = {d: r["seconds"] for b, _, d, r, _ in results if b == "eager"}
            pixels = (size * scale) ** 2
            for backend, kernel, dtype, res, diff in results:
                macs = res["macs_per_pixel"] * pixels
                share = gemm_share(macs, res["seconds"], rates[dtype])
                query_seconds = res["seconds"] - res.get("encode_seconds", float("nan"))
                query_share = gemm_share(macs, query_seconds, rates[dtype])
                eager_f32 = eager_seconds.get("float32")
                vs_eager = None if eager_f32 is None else res["seconds"] / eager_f32
                row = {
                    "model": model,
                    "scale": scale,
                    "backend": backend,
                    "kernel": kernel,
                    "dtype": dtype,
                    **res,
                    "ratio": res["seconds"] / lit["seconds"],
                    "ratio_eager": vs_eager,
                    "diff": diff,
                    "gemm_share": share,
                    "query_gemm_share": query_share,
                }
                rows.append(row)
                first = f"{res['first_seconds']:.2f}" if "first_seconds" in res else "-"
                eager_col = "-" if vs_eager is None or backend == "literal" else f"{vs_eager:.2f}"
                print(
                    f"| {model} | x{scale} | {backend} | {kernel} | {dtype} | {res['seconds']:.2f} "
                    f"| {first} | {res['rss_mb']:.0f} | {row['ratio']:.2f} | {eager_col} "
                    f"| {diff:.1e} | {res['macs_per_pixel'] / 1e3:.0f} K | {share:.0%} "
                    f"| {query_share:.0%} |",
                    flush=True,
                )
    # Memory at a large input: the fast path tiles automatically (tile=None).
    big = args.big if args.big is not None else (128 if args.quick else 1024)
    if big > 0:
        print(f"\nPeak RSS for a {big}x{big} LR (eager fast path, automatic tiles, float32):")
        print("| model | scale | seconds | peak RSS MB |")
        print("|---|---|---|---|")
        for scale in [int(s) for s in args.big_scales.split(",") if s]:
            res = run_child(
                {
                    **base,
                    "lr": big,
                    "model": "lte",
                    "scale": scale,
                    "impl": "eager",
                    "kernel": "fast",
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
