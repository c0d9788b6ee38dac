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


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 natively, so a bf16 matmul is not slower than float32.

    CUDA: ``torch.cuda.is_bf16_supported()`` (Ampere and later). CPU: whether oneDNN has a native
    bf16 path (AVX512-BF16 / AMX; ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``). Without one,
    bf16 matmuls fall back to a generic kernel that can be ~90x slower than float32 (measured on an
    AVX2-only CPU), which callers say in a warning rather than let it cost silently.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False
