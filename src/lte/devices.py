"""Turning a user's ``--device`` / ``device=`` into a torch device this machine really has.

``torch.device`` accepts many names that cannot run a model here: ``meta`` (no data at all),
``mps`` off Apple silicon, ``cuda:7`` on a one-GPU machine, ``xla``... Loading a checkpoint onto
them fails much later with a misleading message ("not a PyTorch file") or a traceback. Resolving the
name first, against what the machine has, turns each of those into one line naming the option and
the valid choices.
"""

from __future__ import annotations

import torch

from lte.errors import UserError


def available_devices() -> list[str]:
    """The device names this machine can run models on, as accepted by :func:`resolve_device`."""
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names.append("cuda")
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str, option: str = "--device") -> torch.device:
    """``auto`` is CUDA when available, else CPU; anything this machine can't run is a UserError.

    ``option`` names the setting in the message (``--device`` for the CLI, ``device=`` for Hydra apps).

    Raises:
        UserError: not a device name, a device type lte doesn't run on (``meta``, ``xla``, ...), or one
            this machine lacks (``mps`` off Apple silicon, ``cuda`` without a GPU, ``cuda:7`` with
            fewer GPUs); the message lists the valid choices here.
    """
    text = str(name).strip()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sep = "" if option.endswith("=") else " "
    shown = f"{option}{sep}{text}"
    choices = ", ".join(available_devices())
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"{shown} is not a device: use one of {choices}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"{shown}: CUDA is not available on this machine; use one of {choices}")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UserError(
                f"{shown}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1}); "
                f"use one of {choices}"
            )
        return device
    if device.type == "mps":
        if not _mps_available():
            raise UserError(
                f"{shown}: Apple MPS is not available on this machine; use one of {choices}"
            )
        return device
    raise UserError(
        f"{shown}: lte cannot run models on '{device.type}' devices; use one of {choices}"
    )


# --- low-precision support -----------------------------------------------------------------------


def _mkldnn_check(name: str) -> bool:
    """oneDNN's own CPU check ``torch.ops.mkldnn.<name>()``; ``False`` where this torch lacks it."""
    try:
        return bool(getattr(torch.ops.mkldnn, name)())
    except (AttributeError, RuntimeError):
        return False


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively, i.e. faster than float32 can pay.

    CUDA: ``torch.cuda.is_bf16_supported()``. CPU: oneDNN's check for AVX512-BF16 / AMX (or
    AVX-NE-CONVERT); without them bfloat16 GEMMs are emulated: 0.08x the float32 rate at the MLP's
    shapes on an AVX2 CPU (``scripts/bench_gemm.py``). Other device types: ``False`` (not checked).
    """
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return _mkldnn_check("_is_mkldnn_bf16_supported")
    return False


def native_fp16(device: torch.device | str) -> bool:
    """Whether ``device`` multiplies float16 matrices natively: CUDA, or a CPU with AVX512-FP16 / AMX-FP16."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available())
    if device.type == "cpu":
        return _mkldnn_check("_is_mkldnn_fp16_supported")
    return False


def slow_lowp_warning(device: torch.device | str, dtype: torch.dtype | None) -> str | None:
    """A one-line warning that ``dtype`` is emulated (slow) on this CPU, or ``None`` when it is not.

    Only CPUs are judged: float32 is the faster choice there without native bfloat16/float16.
    """
    device = torch.device(device)
    if device.type != "cpu" or dtype not in (torch.bfloat16, torch.float16):
        return None
    native = native_bf16(device) if dtype == torch.bfloat16 else native_fp16(device)
    if native:
        return None
    name = str(dtype).removeprefix("torch.")
    needs = "AVX512-BF16 or AMX" if dtype == torch.bfloat16 else "AVX512-FP16 or AMX-FP16"
    return (
        f"this CPU has no native {name} matrix multiply (needs {needs}): {name} is "
        f"emulated and much slower than float32 here, so float32 is the faster choice; "
        f"computing in {name} as asked"
    )
