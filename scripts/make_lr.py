"""Make LR images for a folder of HR images: ``OUT/X{s}/<stem>x{s}.png`` for each scale.

Each LR is ``floor(H/s) x floor(W/s)``, made from the HR cropped (top-left) to a multiple of ``s``.
The default kernel is PIL's antialiased bicubic, the very function the training sampler uses
(:func:`lte.data.resize.downsample_pil`); ``--kernel matlab`` reproduces MATLAB's ``imresize``, the
way the shipped DIV2K and benchmark ×2/×3/×4 LR images were made. The output follows the benchmark
layout, so :func:`lte.data.layouts.pair_by_name` pairs it with the HR folder.

    python scripts/make_lr.py --hr data/sample/val --out /tmp/sample_LR --scales 2,3,4

For ``data=paired`` (the fixed-scale baselines' recipe, like DIV2K's shipped LR sets):

    python scripts/make_lr.py --hr data/sample/train --out /tmp/sample_LR/train --kernel matlab
    python scripts/make_lr.py --hr data/sample/val --out /tmp/sample_LR/val --kernel matlab
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lte.data.images import load_rgb, save_rgb
from lte.data.layouts import list_images
from lte.data.resize import lr_size, make_lr
from lte.errors import UserError, exit_on_user_error, quote
from lte.files import check_output
from lte.scales import format_scale


def parse_scales(text: str) -> list[float]:
    """``"2,3,4"`` → ``[2.0, 3.0, 4.0]``; every scale must be > 1."""
    try:
        scales = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"--scales '{text}' is not a comma-separated list of numbers") from None
    if not scales or any(s <= 1 for s in scales):
        raise UserError(f"--scales '{text}': give one or more scales above 1, e.g. 2,3,4")
    return scales


def make_lr_folder(
    hr_dir: Path, out_dir: Path, scales: list[float], kernel: str, *, overwrite: bool = False
) -> int:
    """Write the LR images of every HR image in ``hr_dir``; returns how many files were written.

    LR files already in ``out_dir`` are a user's work (perhaps made with the other kernel): they
    are refused up front, before anything is written, unless ``overwrite``.
    """
    files = list_images(hr_dir)
    planned = [
        out_dir / f"X{format_scale(s)}" / f"{f.stem}x{format_scale(s)}.png"
        for s in scales
        for f in files
    ]
    existing = [p for p in planned if os.path.lexists(p)]  # a dangling link counts too
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        verb = "exist" if more else "exists"
        raise UserError(
            f"{quote(existing[0])}{more} already {verb}: pass --overwrite to replace them, or "
            "choose another --out"
        )
    for p in existing:  # a folder, FIFO or read-only file is never replaced, even with --overwrite
        check_output(p, what="", overwrite=True)
    written = 0
    for s in scales:
        (out_dir / f"X{format_scale(s)}").mkdir(parents=True, exist_ok=True)
    for f in files:
        img = load_rgb(f)
        for s in scales:
            sub = out_dir / f"X{format_scale(s)}"
            if min(lr_size(img.shape[:2], s)) < 1:
                raise UserError(f"'{f}' ({img.shape[1]}x{img.shape[0]}) is too small for x{s}")
            _, lr = make_lr(img, s, kernel)
            save_rgb(lr, sub / f"{f.stem}x{format_scale(s)}.png")
            written += 1
    return written


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hr", type=Path, required=True, help="folder of HR images")
    parser.add_argument("--out", type=Path, required=True, help="output folder (X{s}/ inside)")
    parser.add_argument("--scales", default="2,3,4", help="comma-separated scales (default 2,3,4)")
    parser.add_argument(
        "--kernel",
        choices=("pil", "matlab"),
        default="pil",
        help="pil: the training protocol (default); matlab: like the shipped benchmark LR images",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace LR files that already exist in --out"
    )
    args = parser.parse_args(argv)
    n = make_lr_folder(
        args.hr, args.out, parse_scales(args.scales), args.kernel, overwrite=args.overwrite
    )
    print(f"wrote {n} LR images under {args.out}")


if __name__ == "__main__":
    main()
