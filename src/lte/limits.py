"""Up-front limits: refuse an absurd request before allocating anything for it.

``--scale 1e6`` on a photo asks for an output of 10^16 pixels; without a check, the first allocation
fails deep inside torch (or the machine starts swapping). Here the output size and the memory it needs
are estimated from the numbers alone, and a request over the limit is one line that gives the size,
the limit and the option that lifts it.

Limits (see docs/hardening.md):

- output pixels: :data:`DEFAULT_MAX_OUTPUT_PIXELS` (2**28 = 268M px, e.g. 16384x16384), and at most
  what the available memory holds at :data:`BYTES_PER_OUTPUT_PIXEL` bytes per output pixel. An explicit
  ``--max-output-pixels N`` replaces both (the user takes responsibility for the memory).
- scales and sizes: finite and positive.
"""

from __future__ import annotations

import math

import torch

from lte.errors import UserError

#: Output pixels allowed without ``--max-output-pixels``: 2**28 (16384x16384).
DEFAULT_MAX_OUTPUT_PIXELS = 2**28

#: Peak host bytes per output pixel: the float32 RGB result (12), the temporaries of denormalising
#: and rounding it (2 x 12), the 8-bit copies handed to PIL and its encoder (2 x 3), rounded up.
BYTES_PER_OUTPUT_PIXEL = 48

GIB = 2**30


def finite_positive(value: float, option: str) -> float:
    """``value`` if it is a finite number > 0.

    Raises:
        UserError: NaN, infinite, zero or negative, naming ``option``.
    """
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{option} must be a positive, finite number, got {value}")
    return value


def estimate_bytes(out_hw: tuple[int, int]) -> int:
    """Host memory an ``(H, W)`` output needs at its peak (see :data:`BYTES_PER_OUTPUT_PIXEL`)."""
    return BYTES_PER_OUTPUT_PIXEL * out_hw[0] * out_hw[1]


def available_host_memory() -> int:
    """Bytes of host memory free for this process (``MemAvailable``)."""
    from lte.inference import available_memory

    return available_memory(torch.device("cpu"))


def check_output_request(
    out_hw: tuple[int, int],
    max_output_pixels: int | None,
    *,
    option: str = "--max-output-pixels",
    shrink: str = "a smaller --scale or --size",
    available: int | None = None,
) -> None:
    """Refuse an output of ``out_hw`` pixels that is over the limit, before anything is allocated.

    ``max_output_pixels`` ``None`` means the default: :data:`DEFAULT_MAX_OUTPUT_PIXELS` and the memory
    available (``available`` bytes, default: measured). A given value is the only limit.

    Raises:
        UserError: the size, its memory estimate, the limit, and how to lift it (``option``).
    """
    h, w = out_hw
    pixels = h * w
    need = estimate_bytes(out_hw)
    size = f"{w}x{h} = {pixels} pixels (about {need / GIB:.3g} GiB of memory)"
    limit = DEFAULT_MAX_OUTPUT_PIXELS if max_output_pixels is None else max_output_pixels
    if pixels > limit:
        raise UserError(
            f"the output would be {size}, over the limit of {limit} pixels: use {shrink}, "
            f"or lift the limit with {option} {pixels}"
        )
    if max_output_pixels is None:
        free = available_host_memory() if available is None else available
        if need > free:
            raise UserError(
                f"the output would be {size} at {BYTES_PER_OUTPUT_PIXEL} bytes per pixel, but only "
                f"{free / GIB:.3g} GiB of memory is available: use {shrink}, or insist with "
                f"{option} {pixels}"
            )
