"""The PSNR numbers the LTE paper publishes (as SPEC.md lists them), as data.

``lte.compare --published`` adds them as reference rows, and ``scripts/paper_tables.sh`` prints them
next to a reproduction, so a reader can see at a glance how far a run is from the paper. Only values
stated in SPEC.md are here; nothing is interpolated or filled in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: Table 1 scales: DIV2K validation, RGB, ``s + 6`` px shaved.
DIV2K_SCALES: tuple[int, ...] = (2, 3, 4, 6, 12, 18, 24, 30)
#: Table 2 scales: benchmarks, Y, ``s`` px shaved (SPEC lists ×2–×4 only).
BENCHMARK_SCALES: tuple[int, ...] = (2, 3, 4, 6, 8, 12)
#: The ``ckpt`` field of published rows, so they can never be mistaken for a measured checkpoint.
PUBLISHED_CKPT = "published"

#: Table 1: ``(encoder, model) -> PSNR at DIV2K_SCALES``. ``bicubic`` has no encoder (``none``).
DIV2K_PSNR: dict[tuple[str, str], tuple[float, ...]] = {
    ("none", "bicubic"): (31.01, 28.22, 26.66, 24.82, 22.27, 21.00, 20.19, 19.59),
    ("edsr_baseline", "metasr"): (34.64, 30.93, 28.92, 26.61, 23.55, 22.03, 21.06, 20.37),
    ("edsr_baseline", "liif"): (34.67, 30.96, 29.00, 26.75, 23.71, 22.17, 21.18, 20.48),
    ("edsr_baseline", "lte"): (34.72, 31.02, 29.04, 26.81, 23.78, 22.23, 21.24, 20.53),
    ("rdn", "metasr"): (35.00, 31.27, 29.25, 26.88, 23.73, 22.18, 21.17, 20.47),
    ("rdn", "liif"): (34.99, 31.26, 29.27, 26.99, 23.89, 22.34, 21.31, 20.59),
    ("rdn", "lte"): (35.04, 31.32, 29.33, 27.04, 23.95, 22.40, 21.36, 20.64),
    # SPEC marks this row as not yet checked against the paper.
    ("swinir", "lte"): (35.24, 31.50, 29.51, 27.20, 24.09, 22.50, 21.47, 20.73),
}

#: Table 2 (RDN encoder): ``(model, testset) -> PSNR at ×2, ×3, ×4``.
BENCHMARK_PSNR: dict[tuple[str, str], tuple[float, float, float]] = {
    ("lte", "set5"): (38.23, 34.72, 32.61),
    ("lte", "set14"): (34.09, 30.58, 28.88),
    ("lte", "b100"): (32.36, 29.30, 27.77),
    ("lte", "urban100"): (33.04, 28.97, 26.81),
    ("liif", "set5"): (38.17, 34.68, 32.50),
    ("liif", "urban100"): (32.87, 28.82, 26.68),
    ("metasr", "set5"): (38.22, 34.63, 32.38),
    ("metasr", "urban100"): (32.92, 28.82, 26.55),
}

#: Rows SPEC flags as unchecked; compare marks them in its table.
UNCHECKED: frozenset[tuple[str, str]] = frozenset({("swinir", "lte")})


def published_records(
    testsets: Iterable[str] | None = None,
    scales: Iterable[float] | None = None,
) -> list[dict[str, Any]]:
    """The published numbers as results-file records (``ssim`` and ``images`` are ``None``).

    ``testsets`` / ``scales`` keep only those test sets and scales (``None``: all).
    """
    keep_sets = None if testsets is None else {t.lower() for t in testsets}
    keep_scales = None if scales is None else {float(s) for s in scales}

    def wanted(testset: str, scale: float) -> bool:
        return (keep_sets is None or testset in keep_sets) and (
            keep_scales is None or float(scale) in keep_scales
        )

    out: list[dict[str, Any]] = []
    for (encoder, model), values in DIV2K_PSNR.items():
        for scale, value in zip(DIV2K_SCALES, values, strict=True):
            if wanted("div2k", scale):
                out.append(_record("div2k", scale, "div2k", value, model, encoder))
    for (model, testset), values in BENCHMARK_PSNR.items():
        for scale, value in zip((2, 3, 4), values, strict=True):
            if wanted(testset, scale):
                out.append(_record(testset, scale, "benchmark", value, model, "rdn"))
    return out


def _record(
    testset: str, scale: int, protocol: str, psnr: float, model: str, encoder: str
) -> dict[str, Any]:
    return {
        "testset": testset,
        "scale": scale,
        "protocol": protocol,
        "psnr": psnr,
        "ssim": None,
        "images": None,
        "model": model,
        "encoder": encoder,
        "ckpt": PUBLISHED_CKPT,
    }
