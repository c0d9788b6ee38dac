"""Turning a user's ``--device`` / ``device=`` into a torch device this machine really has.

``torch.device`` accepts many names that cannot run a model here: ``meta`` (no data at all),
``mps`` off Apple silicon, ``cuda:7`` on a one-GPU machine, ``xla``... Loading a checkpoint onto
them fails much later with a misleading message ("not a PyTorch file") or a traceback. Resolving the
name first, against what the machine has, turns each of those into one line naming the option and
the valid choices.
"""

from __future__ import annotations

import functools
import importlib
import os
import shutil
import sys

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


# --- torch.compile -------------------------------------------------------------------------------


@functools.cache
def _inductor_cpu_compiler_problem() -> str | None:
    """Why inductor finds no C++ compiler for CPU kernels, or ``None`` (inductor's own lookup)."""
    try:
        from torch._inductor import cpp_builder

        compiler = cpp_builder.get_cpp_compiler()
    except Exception as exc:  # inductor raises its own types when no compiler is found
        return (
            f"no C++ compiler found for torch.compile's CPU backend ({exc}); install g++ or clang"
        )
    if not compiler or shutil.which(compiler) is None:
        return f"no C++ compiler found for torch.compile's CPU backend ('{compiler}'); install g++"
    return None


def compile_unavailable(device: torch.device | str) -> str | None:
    """Why ``torch.compile`` cannot build kernels for ``device`` here, or ``None`` when it can.

    The one answer for every compiled path (``--backend compile``, ``eval.backend=compile``,
    ``model.compile=true``), so each can fall back with the same one-line reason. Checked:
    ``torch.compile`` and inductor exist in this torch, Dynamo supports this Python and platform,
    and the device's code generator is present: a C++ compiler on CPU (``$CXX`` when set, else
    inductor's own search), Triton on CUDA. Other device types are not compiled for.
    """
    device = torch.device(device)
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile (needs torch >= 2.0)"
    try:
        dynamo = importlib.import_module("torch._dynamo")
        importlib.import_module("torch._inductor")
    except Exception as exc:  # a stripped or broken build
        return f"torch {torch.__version__} cannot import its compiler (inductor): {exc}"
    if not dynamo.is_dynamo_supported():
        return (
            f"torch.compile does not support Python {sys.version.split()[0]} "
            f"in torch {torch.__version__}"
        )
    if device.type == "cpu":
        cxx = os.environ.get("CXX")
        if cxx and shutil.which(cxx) is None:
            return (
                f"no C++ compiler: '{cxx}' (set by $CXX) is not on PATH, which torch.compile "
                "needs on the CPU; install it or unset $CXX"
            )
        return _inductor_cpu_compiler_problem()
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return (
            None if has_triton() else "torch.compile needs Triton for CUDA kernels (not installed)"
        )
    return f"torch.compile is used here on CPU and CUDA, not '{device.type}'"
