"""The matrix-multiply rate of each dtype and kernel at the decoder MLP's block shapes, against float32.

The decoders' MLPs are chains of ``(rows, 256) @ (256, 256)`` products: the fast and compiled
kernels run them on blocks of 512 queries (2048 rows, :data:`lte.models.decoders.BLOCK`), the
training step on far taller matrices. Whether bfloat16 (or float16) can pay on a machine is decided
here, not guessed: each kernel's rate is printed as GMAC/s and as a ratio to float32 ``addmm``
measured in the same run.

    python scripts/bench_gemm.py                    # 2048 and 4096 rows, every dtype and kernel
    python scripts/bench_gemm.py --rows 2048 --seconds 0.5

Kernels: ``addmm`` (what the eager fast kernel calls, into a reused output), and oneDNN's
``torch.ops.mkldnn._linear_pointwise`` (the packed linear that ``torch.compile``'s CPU backend
uses with freezing). A kernel the CPU or this torch refuses is printed with its one-line reason.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from lte.devices import native_bf16, native_fp16

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def rate(fn: Callable[[], object], macs: int, seconds: float) -> float:
    """GMAC/s of ``fn``: two warm-up calls, then calls for about ``seconds`` (at least 3), best third."""
    fn()
    fn()
    times: list[float] = []
    spent = 0.0
    while spent < seconds or len(times) < 3:
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        times.append(dt)
        spent += dt
    times.sort()
    best = times[: max(1, len(times) // 3)]
    return macs / (sum(best) / len(best)) / 1e9


def kernels(rows: int, width: int, dtype: torch.dtype) -> dict[str, Callable[[], object]]:
    """The calls to time for one dtype: ``addmm`` into a reused buffer, and oneDNN's packed linear."""
    torch.manual_seed(0)
    x = torch.randn(rows, width).to(dtype)
    weight = (torch.randn(width, width) / width**0.5).to(dtype)
    bias = torch.randn(width).to(dtype)
    out = torch.empty(rows, width, dtype=dtype)
    wt = weight.t()
    calls: dict[str, Callable[[], object]] = {
        "addmm": lambda: torch.addmm(bias, x, wt, out=out),
    }
    mkldnn = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if mkldnn is not None:
        calls["mkldnn linear"] = lambda: mkldnn(x, weight, bias, "none", [], "")
    return calls


def main(argv: list[str] | None = None) -> None:
    """Print one row per (rows, dtype, kernel) with its rate and its ratio to float32 addmm."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="2048,4096", help="comma-separated row counts")
    parser.add_argument("--width", type=int, default=256, help="the MLP's hidden width")
    parser.add_argument("--dtypes", default="float32,bfloat16,float16")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    unknown = [d for d in names if d not in DTYPES]
    if unknown:
        parser.error(f"--dtypes: {unknown[0]!r} is not one of {', '.join(DTYPES)}")
    cpu = torch.device("cpu")
    print(
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{torch.get_num_threads()} threads; native bfloat16: {native_bf16(cpu)}, "
        f"native float16: {native_fp16(cpu)}"
    )
    print("| rows | dtype | kernel | GMAC/s | vs float32 addmm |")
    print("|---|---|---|---|---|")
    for rows in (int(r) for r in args.rows.split(",")):
        macs = rows * args.width * args.width
        base: float | None = None
        for name in ["float32", *(d for d in names if d != "float32")]:
            for kernel, fn in kernels(rows, args.width, DTYPES[name]).items():
                try:
                    gmacs = rate(fn, macs, args.seconds)
                except RuntimeError as err:  # e.g. oneDNN refusing a dtype this CPU lacks
                    reason = str(err).strip().splitlines()[0][:120]
                    print(f"| {rows} | {name} | {kernel} | refused: {reason} | - |")
                    continue
                if base is None:
                    base = gmacs
                print(f"| {rows} | {name} | {kernel} | {gmacs:.1f} | {gmacs / base:.3f}x |")


if __name__ == "__main__":
    main()
