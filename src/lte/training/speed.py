"""Training-speed options: ``model.compile``, ``float32_matmul_precision``, ``keep_freed_memory``
and the bf16 warning.

Each is a setting of torch or Lightning, not a change of the model's math: ``torch.compile`` runs
the same network (``nn.Module.compile``, so checkpoint keys stay ``net.*``), the matmul precision
is torch's own switch, and ``trainer.precision=bf16-mixed`` is Lightning's autocast plugin.
"""

from __future__ import annotations

import ctypes
import platform
from typing import Any

import torch

from lte.devices import native_bf16
from lte.errors import UserError

#: Values of ``float32_matmul_precision`` (torch.set_float32_matmul_precision).
MATMUL_PRECISIONS = ("highest", "high", "medium")


def check_matmul_precision(value: Any) -> str:
    """``float32_matmul_precision``: one of :data:`MATMUL_PRECISIONS`, else a one-line UserError."""
    if value not in MATMUL_PRECISIONS:
        raise UserError(
            f"float32_matmul_precision={value} is not a matmul precision: use one of "
            f"{', '.join(MATMUL_PRECISIONS)} (default high: TF32 on Ampere and later GPUs)"
        )
    return str(value)


def check_compile_flag(value: Any) -> bool:
    """``model.compile``: true or false, else a one-line UserError."""
    if not isinstance(value, bool):
        raise UserError(f"model.compile={value} must be true or false")
    return value


def bf16_warning(precision: str, device: torch.device) -> str | None:
    """One line when a bf16 precision is asked for on a device without native bf16, else None."""
    if "bf16" not in str(precision) or native_bf16(device):
        return None
    what = "CPU has no AVX512-BF16 or AMX" if device.type == "cpu" else f"{device} has no bf16"
    return (
        f"trainer.precision={precision}: this {what}, so bf16 matmuls and convolutions run in a "
        "slow fallback (about 13x slower than float32 on an AVX2 CPU); use trainer.precision=32-true here"
    )


#: ``keep_freed_memory``: blocks up to this size come from glibc's heap, and freed memory up to it
#: stays with the process (mallopt M_MMAP_THRESHOLD and M_TRIM_THRESHOLD).
KEEP_FREED_BYTES = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>


def check_keep_freed_memory(value: Any) -> bool:
    """``keep_freed_memory``: true or false, else a one-line UserError."""
    if not isinstance(value, bool):
        raise UserError(f"keep_freed_memory={value} must be true or false")
    return value


def glibc_allocator() -> bool:
    """Whether this process's C allocator is glibc's (the one :func:`keep_freed_memory` tunes)."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def keep_freed_memory() -> str:
    """Keep the memory of freed tensors in the process for the next step; returns what was done.

    Why: a training step allocates and frees tensors of 50-150 MB (activations, their gradients),
    and glibc serves each from a fresh ``mmap`` region and unmaps it when freed, so every step
    page-faults (and the kernel zeroes) the same memory again. With both thresholds at
    :data:`KEEP_FREED_BYTES` those blocks come from the heap and are reused: an EDSR-baseline-LTE
    step at the paper's shape page-faulted 18-37 K times instead of 720-770 K, and took 0.72-0.88x
    the time on a 2-core AVX2 EPYC, for 0.5-1.2 GB more peak RSS (docs/benchmarks.md). The
    computation is unchanged; only where its memory comes from. A process-wide setting of the C
    allocator; a no-op (said so) where the C library is not glibc.
    """
    if not glibc_allocator():
        return "keep_freed_memory: not glibc, the allocator is left as it is"
    try:
        libc = ctypes.CDLL(None)
        done = libc.mallopt(_M_MMAP_THRESHOLD, KEEP_FREED_BYTES) and libc.mallopt(
            _M_TRIM_THRESHOLD, KEEP_FREED_BYTES
        )
    except (OSError, AttributeError):
        done = 0
    if not done:
        return "keep_freed_memory: glibc refused mallopt, the allocator is left as it is"
    return f"keep_freed_memory: blocks up to {KEEP_FREED_BYTES >> 20} MiB reused, not unmapped"
