"""``python -m lte.fourier`` / ``lte-fourier``: draw the LTE paper's Fourier feature-space figure.

Examples:
    python -m lte.fourier --ckpt edsr-baseline-lte.pth --image photo.png --at 120,80 --out f.png
    python -m lte.fourier --ckpt runs/demo/checkpoints/last.ckpt --image data/sample/val/coffee.png \\
        --at 300,120 --scale 4 --out fourier.png

Everything checkable without computing is checked first, in this order: the options' values, the
device, the output path (not the input; not an existing file or dangling link unless
``--overwrite``; never a folder, FIFO or read-only file; a writable folder; a suffix matplotlib
writes: :func:`lte.files.check_output`), the image's header and ``--at`` against its size; then the
checkpoint is loaded and must have an LTE decoder; only then is the image decoded and encoded
(:mod:`lte.spectrum` makes the figure).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lte.atomic import atomic_path
from lte.checkpoint import load_checkpoint
from lte.cli.options import Parser, check_not_input
from lte.data.images import MAX_PIXELS_ENV, image_size, load_rgb, parse_pixel_limit, to_tensor
from lte.devices import resolve_device
from lte.errors import UserError, exit_on_user_error, quote
from lte.files import check_output as check_destination
from lte.limits import finite_positive
from lte.spectrum import figure, fourier_view, is_finite

#: Output suffixes and the format matplotlib writes for them.
FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg", ".jpg": "jpg", ".jpeg": "jpg"}
#: Resolution range of ``--dpi``: below it the text is unreadable, above it the PNG is huge.
DPI_RANGE = (20, 600)


def parse_at(text: str) -> tuple[int, int]:
    """``"X,Y"`` → ``(x, y)``: LR column and row, 0-based; a UserError for anything else."""
    parts = text.replace(" ", "").split(",")
    try:
        x, y = (int(p) for p in parts)
    except ValueError:
        raise UserError(
            f"--at '{text}' is not X,Y (LR column,row in pixels, from 0), e.g. --at 120,80"
        ) from None
    if x < 0 or y < 0:
        raise UserError(f"--at '{text}': X and Y count LR pixels from 0 and cannot be negative")
    return x, y


def check_at(at: tuple[int, int], hw: tuple[int, int], image: str | os.PathLike[str]) -> None:
    """Refuse a position outside the LR image, naming its size and the valid ranges."""
    x, y = at
    h, w = hw
    if x >= w or y >= h:
        raise UserError(
            f"--at {x},{y} is outside the {w}x{h} LR image '{image}': "
            f"X must be 0..{w - 1} and Y 0..{h - 1}"
        )


def check_output(image: str, out: str, overwrite: bool) -> str:
    """The matplotlib format of ``out``, after refusing to replace the image or an existing file."""
    src, dst = Path(image), Path(out)
    if os.path.isdir(dst):
        raise UserError(
            f"--out {quote(dst)} is a folder: give a file name inside it, e.g. "
            f"{quote(dst / 'fourier.png')}"
        )
    fmt = FORMATS.get(dst.suffix.lower())
    if fmt is None:
        raise UserError(
            f"--out {quote(dst)} must end in {', '.join(FORMATS)} (the figure's format)"
        )
    check_not_input(src, dst, what="--out")
    check_destination(dst, what="--out", overwrite=overwrite)
    return fmt


def build_parser() -> argparse.ArgumentParser:
    """The command line's options (see ``lte-fourier --help``)."""
    p = Parser(
        command="python -m lte.fourier",
        prog="lte-fourier",
        description="Draw the LTE paper's Fourier feature-space figure for one LR position of an "
        "image: the LR image and crop, a map of the dominant estimated frequency's magnitude over "
        "the whole image, and the scatter of the K estimated frequencies (f_x, f_y) at the "
        "position, coloured by magnitude A[k]^2 + A[K+k]^2. The image is the LR input, used as "
        "it is. Needs a model with an LTE decoder (LTE, LTE+); see docs/fourier.md.",
    )
    p.add_argument("--ckpt", required=True, help="official .pth release or lte training checkpoint")
    p.add_argument("--image", required=True, help="the LR input image (png, jpg, bmp, tif, webp)")
    p.add_argument(
        "--at",
        required=True,
        metavar="X,Y",
        help="X,Y: LR column and row (0-based, from the top-left) where the frequencies are read",
    )
    p.add_argument(
        "--out",
        required=True,
        help="figure file (.png, .pdf, .svg, .jpg); never replaced without --overwrite",
    )
    p.add_argument(
        "--scale",
        type=float,
        metavar="S",
        default=None,
        help="output scale S. Frequencies and amplitudes do not depend on it (they come from the "
        "LR image alone); with S, a fifth panel shows the phase term P(rel_cell)_k of a xS output "
        "(cell enlarged beyond the model's scale_max as inference does), and the title names S",
    )
    p.add_argument(
        "--notebook-flip",
        action="store_true",
        help="flip the image vertically before encoding and the maps back, as the official "
        "notebook does (default: encode the image as it is and draw (f_x, -f_y); both draw y up)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument(
        "--device", default="auto", help="auto (default), cpu, cuda[:N] or mps, if present"
    )
    p.add_argument(
        "--dpi",
        type=int,
        default=100,
        help=f"figure resolution (default 100: 400x450 pixels per panel; {DPI_RANGE[0]}..{DPI_RANGE[1]})",
    )
    p.add_argument(
        "--max-pixels",
        default=None,
        help=f"largest input image in pixels (default: ${MAX_PIXELS_ENV} or 2**27); the whole "
        "image is encoded at once, so memory grows with it",
    )
    return p


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``lte-fourier`` / ``python -m lte.fourier``."""
    args = build_parser().parse_args(argv)
    at = parse_at(args.at)
    if args.scale is not None:
        finite_positive(args.scale, "--scale")
    if not DPI_RANGE[0] <= args.dpi <= DPI_RANGE[1]:
        raise UserError(f"--dpi must be {DPI_RANGE[0]}..{DPI_RANGE[1]}, got {args.dpi}")
    max_pixels = (
        parse_pixel_limit(args.max_pixels, "--max-pixels") if args.max_pixels is not None else None
    )
    device = resolve_device(args.device, "--device")
    fmt = check_output(args.image, args.out, args.overwrite)
    hw = image_size(args.image, max_pixels)  # exists, is an image, within the pixel limit
    check_at(at, hw, args.image)

    loaded = load_checkpoint(args.ckpt, map_location=device)
    if not loaded.model.has_fourier:
        kind = loaded.model.describe()["decoder"]["kind"]
        raise UserError(
            f"checkpoint '{loaded.path}' is a {loaded.model_name} model (decoder kind '{kind}'), "
            "which estimates no Fourier features: --ckpt must have an LTE decoder (LTE or LTE+)"
        )
    image = to_tensor(load_rgb(args.image, max_pixels))
    check_at(at, tuple(image.shape[-2:]), args.image)
    view = fourier_view(loaded.model, image, at, scale=args.scale, notebook_flip=args.notebook_flip)
    if not is_finite(view):
        raise UserError(
            f"checkpoint '{loaded.path}' gives non-finite frequencies or amplitudes (NaN or "
            f"infinity) for '{args.image}': its weights are probably corrupt; use another checkpoint"
        )
    name = f"{loaded.model_name}-{loaded.encoder_name}"
    title = f"{name}: {Path(args.image).name} at x={at[0]}, y={at[1]}"
    if args.scale is not None:
        title += f", x{args.scale:g}"
    if args.notebook_flip:
        title += " (notebook flip)"
    fig = figure(view, title, dpi=args.dpi)
    if not args.overwrite and os.path.lexists(args.out):  # appeared while computing
        check_output(args.image, args.out, args.overwrite)
    with atomic_path(args.out, suffix=Path(args.out).suffix) as tmp:
        fig.savefig(tmp, format=fmt, dpi=args.dpi)
    print(f"{args.image} at {at[0]},{at[1]} -> {args.out} with {name}", file=sys.stderr)


if __name__ == "__main__":
    main()
