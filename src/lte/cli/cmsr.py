"""``lte-cmsr`` / ``python -m lte.cmsr``: build CMSR tables for an LMF checkpoint.

    lte-cmsr --ckpt lm-lte.pth --images DIV2K_train_HR --out lm-lte_cmsr.yaml [--scales 6 12 18]
        [--mse 2e-5] [--limit N] [--device auto] [--tile N] [--chunk N] [--overwrite]

Parses the options, checks them and the output before any work, and calls
:func:`lte.multiscale.build_tables`; the file is then used by ``lte.test eval.cmsr=FILE`` and
``lte.upscale --cmsr FILE``. An existing ``--out`` is replaced only with ``--overwrite``, and only if
lte wrote it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lte.cli.options import Parser
from lte.errors import UserError, exit_on_user_error
from lte.files import check_output, label


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line's options (see ``lte-cmsr --help``)."""
    from lte.multiscale import DEFAULT_MSE, DEFAULT_SCALES

    parser = Parser(
        command="python -m lte.cmsr",
        prog="lte-cmsr",
        description="Build controllable multi-scale rendering (CMSR) tables for an LM-LTE or "
        "LM-LIIF checkpoint on a folder of HR images (the official init_cmsr.py).",
    )
    parser.add_argument("--ckpt", required=True, help="LMF checkpoint (official .pth or lte's)")
    parser.add_argument(
        "--images", required=True, help="folder of HR images (the official tables: DIV2K train)"
    )
    parser.add_argument("--out", required=True, help="YAML table file to write")
    parser.add_argument(
        "--scales",
        type=float,
        nargs="+",
        default=list(DEFAULT_SCALES),
        help="target scales, each a table (default: 6 12 18; CMSR applies only beyond x4)",
    )
    parser.add_argument(
        "--mse",
        type=float,
        default=DEFAULT_MSE,
        help=f"MSE a lower-scale render may add, in [-1, 1] units (default {DEFAULT_MSE:g})",
    )
    parser.add_argument("--limit", type=int, default=None, help="use the first N images only")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda[:N] or mps")
    parser.add_argument(
        "--tile", type=int, default=None, help="LR tile side (default: from free memory; 0: whole)"
    )
    parser.add_argument("--chunk", type=int, default=30000, help="queries per decoder call")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists (lte's files only)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser.parse_args(argv)


def check_options(args: argparse.Namespace) -> None:
    """Numbers and the output, before the checkpoint or any image is read."""
    from lte.multiscale import HEADER

    for scale in args.scales:
        if not math.isfinite(scale) or scale <= 1:
            raise UserError(f"--scales: {scale:g} is not a scale > 1")
    if not math.isfinite(args.mse) or args.mse <= 0:
        raise UserError(f"--mse must be a positive number, got {args.mse:g}")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be a positive number of images, got {args.limit}")
    if args.chunk <= 0:
        raise UserError(f"--chunk must be a positive number of queries, got {args.chunk}")
    if args.tile is not None and args.tile < 0:
        raise UserError(f"--tile must be 0 (no tiling) or a positive LR tile side, got {args.tile}")
    target = check_output(args.out, what="--out", overwrite=args.overwrite, make_folder=True)
    if target.is_file():  # --overwrite given: only a table file lte wrote is replaced
        with open(target, encoding="utf-8", errors="replace") as f:
            first = f.readline().rstrip("\n")
        if first != HEADER:
            raise UserError(
                f"{label('--out', args.out)} was not written by lte.cmsr: choose another name "
                "(lte replaces only its own table files)"
            )


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    """Build the tables, write them, print them and where they went."""
    args = parse_args(argv)
    check_options(args)
    from lte.atomic import atomic_write_text
    from lte.checkpoint import load_checkpoint
    from lte.data.images import load_rgb
    from lte.data.layouts import list_images
    from lte.devices import resolve_device
    from lte.multiscale import build_tables, check_model

    files = list_images(args.images)[: args.limit]
    device = resolve_device(args.device, "--device")
    loaded = load_checkpoint(args.ckpt, map_location=device)
    check_model(loaded.model, f"checkpoint '{loaded.path}'")
    images = ((f.name, load_rgb(f)) for f in files)
    tables = build_tables(
        loaded.model,
        images,
        args.scales,
        mse=args.mse,
        chunk=args.chunk,
        tile=args.tile,
        device=device,
        progress=None if not args.no_progress else False,
    )
    comment = (
        f"built by lte.cmsr for {loaded.model_name}-{loaded.encoder_name} ({Path(args.ckpt).name}) "
        f"on {len(files)} images of {args.images}, MSE {args.mse:g}\n"
        "{target scale: {decode scale: largest code complexity rendered at it}}"
    )
    text = tables.to_yaml(comment)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(os.fspath(args.out), text)
    print(text, end="")
    print(f"tables: {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
