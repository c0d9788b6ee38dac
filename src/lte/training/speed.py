"""Training-speed options: ``model.compile``, ``float32_matmul_precision`` and the bf16 warning.

Each is a setting of torch or Lightning, not a change of the model's math: ``torch.compile`` runs
the same network (``nn.Module.compile``, so checkpoint keys stay ``net.*``), the matmul precision
is torch's own switch, and ``trainer.precision=bf16-mixed`` is Lightning's autocast plugin.
"""

from __future__ import annotations

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
