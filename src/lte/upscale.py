"""``python -m lte.upscale``: upscale one image to any scale or size with a trained or released model.

Examples:
    python -m lte.upscale photo.png photo_x3.png --ckpt edsr-baseline-lte.pth --scale 3
    python -m lte.upscale photo.jpg poster.png --ckpt runs/demo/checkpoints/last.ckpt --size 3840x2160
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

import torch

from lte.checkpoint import load_checkpoint
from lte.data.images import denormalize, load_rgb, normalize, save_rgb, to_tensor, to_uint8
from lte.errors import UserError, exit_on_user_error
from lte.geometry import cell_enlargement
from lte.inference import DEFAULT_CHUNK, predict, resolve_device, stderr_progress

#: ``--dtype`` names → the decoder MLP's compute type (``None``: the model's own float32).
DTYPES: dict[str, torch.dtype | None] = {
    "float32": None,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2), like every other bad input in lte."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see python -m lte.upscale --help)")


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` → ``(H, W)``; a UserError for anything else."""
    parts = text.lower().split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise UserError(f"--size '{text}' is not WIDTHxHEIGHT, e.g. --size 1920x1080") from None
    if w <= 0 or h <= 0:
        raise UserError(f"--size '{text}' must have a positive width and height")
    return h, w


def round_half_up(x: float) -> int:
    """Round to nearest with halves up, so sizes don't depend on banker's rounding."""
    return math.floor(x + 0.5)


def output_size(
    lr_hw: tuple[int, int], scale: float | None, size: tuple[int, int] | None
) -> tuple[int, int]:
    """Output ``(H, W)``: ``round(S·H) × round(S·W)`` for ``--scale``, or exactly ``--size``."""
    if size is not None:
        return size
    assert scale is not None
    if not math.isfinite(scale) or scale <= 0:
        raise UserError(f"--scale must be a positive number, got {scale}")
    h, w = round_half_up(scale * lr_hw[0]), round_half_up(scale * lr_hw[1])
    if h < 1 or w < 1:
        raise UserError(
            f"--scale {scale} gives an empty {w}x{h} output for a {lr_hw[1]}x{lr_hw[0]} input"
        )
    return h, w


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="lte-upscale",
        description="Upscale an image to any scale or size with LTE, LIIF or Meta-SR.",
    )
    p.add_argument(
        "input", help="input image (png, jpg, bmp, tif, webp; grey/palette/RGBA become RGB)"
    )
    p.add_argument("output", help="output image; the format follows the suffix")
    p.add_argument("--ckpt", required=True, help="official .pth release or lte training checkpoint")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--scale", type=float, help="scale factor S: the output is round(S*W) x round(S*H)"
    )
    group.add_argument("--size", help="exact output size WIDTHxHEIGHT, e.g. 1920x1080")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda[:N]")
    p.add_argument(
        "--chunk",
        type=int,
        default=DEFAULT_CHUNK,
        help=f"queries per chunk (default {DEFAULT_CHUNK})",
    )
    p.add_argument(
        "--dtype",
        default="float32",
        choices=sorted(DTYPES),
        help="decoder MLP precision: float32 (default, exact), bfloat16 (about 2-3x faster on CPUs "
        "with AVX512-BF16) or float16 (GPU); coordinates stay float32",
    )
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        help="LR tile side in pixels for memory-bounded encoding (default: from available memory; "
        "0 encodes the whole image at once)",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar on stderr for tiled images"
    )
    p.add_argument(
        "--scale-max",
        type=float,
        default=None,
        help="training scale_max (default: from the checkpoint; 4 for official files)",
    )
    return p


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``lte-upscale`` / ``python -m lte.upscale``."""
    args = build_parser().parse_args(argv)
    if args.chunk <= 0:
        raise UserError(f"--chunk must be a positive number of queries, got {args.chunk}")
    if args.tile is not None and args.tile < 0:
        raise UserError(f"--tile must be 0 (no tiling) or a positive LR tile side, got {args.tile}")
    if args.scale_max is not None and args.scale_max <= 0:
        raise UserError(f"--scale-max must be positive, got {args.scale_max}")
    size = parse_size(args.size) if args.size is not None else None
    image = load_rgb(args.input)
    lr_hw = image.shape[:2]
    out_hw = output_size(lr_hw, args.scale, size)
    # Check the destination before the (possibly long) computation.
    save_target_check(args.output)
    device = resolve_device(args.device, "--device")
    loaded = load_checkpoint(args.ckpt, map_location=device)
    scale_max = args.scale_max if args.scale_max is not None else loaded.scale_max
    cell_scale = (
        cell_enlargement(out_hw[0] / lr_hw[0], scale_max),
        cell_enlargement(out_hw[1] / lr_hw[1], scale_max),
    )
    lr = normalize(to_tensor(image)).unsqueeze(0).to(device)
    sr = predict(
        loaded.model.to(device).eval(),
        lr,
        out_hw,
        cell_scale=cell_scale,
        chunk=args.chunk,
        dtype=DTYPES[args.dtype],
        tile=args.tile,
        progress=None if args.no_progress else _tile_progress(),
    )
    save_rgb(to_uint8(denormalize(sr[0])), args.output)
    print(
        f"{args.input} ({lr_hw[1]}x{lr_hw[0]}) -> {args.output} ({out_hw[1]}x{out_hw[0]}) with {loaded.model_name}-{loaded.encoder_name}",
        file=sys.stderr,
    )


def _tile_progress():
    """A stderr progress bar, drawn only when the image is split into more than one tile."""
    bar = stderr_progress("upscaling tiles")

    def show(done: int, total: int) -> None:
        if total > 1:
            bar(done, total)

    return show


def save_target_check(path: str) -> None:
    """Fail early, before any compute, on an output that :func:`save_rgb` would refuse."""
    from pathlib import Path

    from PIL import Image

    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"output folder '{parent}' does not exist: create it first")
    if Image.registered_extensions().get(p.suffix.lower()) is None:
        raise UserError(f"output '{p}' has no image suffix: use .png, .jpg, .bmp, .tif or .webp")


if __name__ == "__main__":
    main()
