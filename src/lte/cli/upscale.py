"""``python -m lte.upscale`` / ``lte-upscale``: upscale one image to any scale or size with a trained or
released model.

Examples:
    python -m lte.upscale photo.png photo_x3.png --ckpt edsr-baseline-lte.pth --scale 3
    python -m lte.upscale photo.jpg poster.png --ckpt runs/demo/checkpoints/last.ckpt --size 3840x2160

Everything that can be checked without computing is checked first, in this order: the options'
values, the device, the input's header (a regular file, an image, within the pixel limit), the
output path (not the input; not an existing file or dangling link unless ``--overwrite``; never a
folder, FIFO or read-only file; a suffix PIL writes at the output's size; a writable folder; a name
the file system can hold: :func:`lte.files.check_output`) and the output's size and memory; only
then are the checkpoint loaded (its weights dense, floating-point and finite: :mod:`lte.weights`)
and the image decoded.
A non-finite result is an error naming the checkpoint, never a black image.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence

import torch

from lte.checkpoint import LoadedModel, load_checkpoint
from lte.cli.options import Parser, check_not_input
from lte.data.images import (
    MAX_PIXELS_ENV,
    check_output_path,
    denormalize,
    image_size,
    load_rgb,
    normalize,
    parse_pixel_limit,
    save_rgb,
    to_tensor,
    to_uint8,
)
from lte.devices import resolve_device, slow_lowp_warning
from lte.errors import UserError, exit_on_user_error
from lte.files import check_output as check_destination
from lte.fixed_scale import check_output_size
from lte.inference import BACKENDS, DEFAULT_CHUNK, kernel_for_backend, predict, stderr_progress
from lte.limits import DEFAULT_MAX_OUTPUT_PIXELS, check_output_request, finite_positive
from lte.multiscale import CMSRTables, check_model

#: ``--dtype`` names → the decoder MLP's compute type (``None``: the model's own float32).
DTYPES: dict[str, torch.dtype | None] = {
    "float32": None,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


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
    finite_positive(scale, "--scale")
    exact = (scale * lr_hw[0], scale * lr_hw[1])
    if not all(
        math.isfinite(v) and v < 2**53 for v in exact
    ):  # beyond any limit and float precision
        raise UserError(
            f"--scale {scale} gives an output too large to represent: use a smaller one"
        )
    h, w = round_half_up(exact[0]), round_half_up(exact[1])
    if h < 1 or w < 1:
        raise UserError(
            f"--scale {scale} gives an empty {w}x{h} output for a {lr_hw[1]}x{lr_hw[0]} input"
        )
    return h, w


def build_parser() -> argparse.ArgumentParser:
    """The command line's options (see ``lte-upscale --help``)."""
    p = Parser(
        command="python -m lte.upscale",
        prog="lte-upscale",
        description="Upscale an image to any scale or size with LTE, LIIF or Meta-SR. "
        "EXIF orientation is applied (the output is upright). An existing output is never "
        "replaced without --overwrite, and the input is never replaced.",
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
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUTPUT if it exists (never allowed when OUTPUT is the input file)",
    )
    p.add_argument(
        "--device", default="auto", help="auto (default), cpu, cuda[:N] or mps, if present"
    )
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
        help="decoder MLP precision: float32 (default, exact), bfloat16 (pays only on GPUs and CPUs "
        "with native bf16, AVX512-BF16 or AMX; elsewhere it is emulated, much slower, and a "
        "warning says so) or float16 (GPU); coordinates stay float32",
    )
    p.add_argument(
        "--backend",
        default="eager",
        choices=BACKENDS,
        help="decoder kernels: eager (default) or compile (torch.compile the decoder's query block "
        "once per run: tens of seconds of compiling first, same results within 1e-5; pays only "
        "for large outputs, if at all; LTE and LIIF; falls back to eager with a warning where it "
        "cannot work, e.g. no C++ compiler)",
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
    p.add_argument(
        "--cmsr",
        default=None,
        metavar="TABLES",
        help="LM-LTE/LM-LIIF only: a CMSR table file (python -m lte.cmsr); beyond the training "
        "scales, simple regions are rendered at lower scales (faster, within the tables' MSE)",
    )
    p.add_argument(
        "--max-pixels",
        default=None,
        help=f"largest input image in pixels, e.g. 200000000 or 20000x10000 (default: "
        f"${MAX_PIXELS_ENV} or 2**27); guards against files whose header claims a huge size",
    )
    p.add_argument(
        "--max-output-pixels",
        default=None,
        help=f"largest output in pixels (default: {DEFAULT_MAX_OUTPUT_PIXELS} = 2**28, and no more "
        "than the available memory holds at 48 bytes per pixel); a given value replaces both",
    )
    return p


def check_options(args: argparse.Namespace) -> None:
    """Numbers that no computation can make sense of, refused before anything is read."""
    if args.chunk <= 0:
        raise UserError(f"--chunk must be a positive number of queries, got {args.chunk}")
    if args.tile is not None and args.tile < 0:
        raise UserError(f"--tile must be 0 (no tiling) or a positive LR tile side, got {args.tile}")
    if args.scale is not None:
        finite_positive(args.scale, "--scale")
    if args.scale_max is not None:
        finite_positive(args.scale_max, "--scale-max")


def check_output(
    input_path: str, output_path: str, overwrite: bool, size: tuple[int, int] | None = None
) -> None:
    """Refuse an output that would replace the input, or an existing file without ``--overwrite``.

    Also the folder, the suffix (a format PIL writes at ``size``, the output's ``(H, W)``), the name
    length and writability, so that no computation is wasted (:func:`lte.files.check_output`).
    """
    check_not_input(input_path, output_path, what="output")
    check_output_path(output_path, size=size)
    check_destination(output_path, what="output", overwrite=overwrite)


def upscale(
    loaded: LoadedModel,
    lr: torch.Tensor,
    out_hw: tuple[int, int],
    *,
    chunk: int,
    dtype: torch.dtype | None,
    tile: int | None,
    progress: bool,
    backend: str = "eager",
    cmsr: CMSRTables | None = None,
) -> torch.Tensor:
    """The one call of :func:`lte.inference.predict` in the CLI: ``(1, 3, h, w)`` → ``(1, 3, H, W)``.

    The model's ``scale_max`` (given to :func:`load_checkpoint`) is where :func:`predict` enlarges
    the cell per axis beyond the training range. ``backend`` (``eager``/``compile``) picks the
    decoder kernel; ``cmsr`` an LMF model's multi-scale rendering tables (:mod:`lte.multiscale`).
    """
    return predict(
        loaded.model,
        lr,
        out_hw,
        chunk=chunk,
        dtype=dtype,
        kernel=kernel_for_backend(loaded.model, backend),
        tile=tile,
        progress=_tile_progress() if progress else None,
        cmsr=cmsr,
    )


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``lte-upscale`` / ``python -m lte.upscale``."""
    args = build_parser().parse_args(argv)
    check_options(args)
    size = parse_size(args.size) if args.size is not None else None
    max_pixels = (
        parse_pixel_limit(args.max_pixels, "--max-pixels") if args.max_pixels is not None else None
    )
    max_out = (
        parse_pixel_limit(args.max_output_pixels, "--max-output-pixels")
        if args.max_output_pixels is not None
        else None
    )
    device = resolve_device(args.device, "--device")
    slow = slow_lowp_warning(device, DTYPES[args.dtype])
    if slow is not None:
        print(f"warning: --dtype {args.dtype}: {slow}", file=sys.stderr)
    # The destination and the request's size, before any pixel or weight is read.
    lr_hw = image_size(args.input, max_pixels)  # exists, is an image, header within the limit
    out_hw = output_size(lr_hw, args.scale, size)
    check_output(args.input, args.output, args.overwrite, out_hw)
    check_output_request(out_hw, max_out)
    cmsr = CMSRTables.load(args.cmsr, "--cmsr") if args.cmsr is not None else None

    # Dense, floating, finite weights; --scale-max replaces the file's scale_max when given.
    loaded = load_checkpoint(args.ckpt, map_location=device, scale_max=args.scale_max)
    image = load_rgb(args.input, max_pixels)
    lr_hw = image.shape[:2]
    out_hw = output_size(lr_hw, args.scale, size)
    option = f"--scale {args.scale:g}" if args.scale is not None else f"--size {args.size}"
    check_output_size(
        loaded.model.native_scale, lr_hw, out_hw, option=option, what=f"checkpoint '{loaded.path}'"
    )
    if cmsr is not None:
        check_model(loaded.model, f"--cmsr with checkpoint '{loaded.path}'")
    lr = normalize(to_tensor(image)).unsqueeze(0).to(device)
    sr = upscale(
        loaded,
        lr,
        out_hw,
        chunk=args.chunk,
        dtype=DTYPES[args.dtype],
        tile=args.tile,
        progress=not args.no_progress,
        backend=args.backend,
        cmsr=cmsr,
    )
    if not bool(torch.isfinite(sr).all()):
        hint = (
            "" if args.dtype == "float32" else f" (or try --dtype float32 instead of {args.dtype})"
        )
        raise UserError(
            f"checkpoint '{loaded.path}' produced non-finite values (NaN or infinity) for "
            f"'{args.input}': its weights are probably corrupt; use another checkpoint{hint}"
        )
    if not args.overwrite and os.path.lexists(args.output):  # appeared while computing
        check_output(args.input, args.output, args.overwrite, out_hw)
    save_rgb(to_uint8(denormalize(sr[0])), args.output)
    print(
        f"{args.input} ({lr_hw[1]}x{lr_hw[0]}) -> {args.output} ({out_hw[1]}x{out_hw[0]}) "
        f"with {loaded.model_name}-{loaded.encoder_name}",
        file=sys.stderr,
    )


def _tile_progress():
    """A stderr progress bar, drawn only when the image is split into more than one tile."""
    bar = stderr_progress("upscaling tiles")

    def show(done: int, total: int) -> None:
        if total > 1:
            bar(done, total)

    return show


if __name__ == "__main__":
    main()
