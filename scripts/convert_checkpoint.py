"""Rewrite a checkpoint in the current lte format (or as an official release), as data only.

Format-1 lte checkpoints (a Hydra config with ``_target_`` strings in their ``"lte"`` entry) and the
officially released ``.pth`` files are read strictly as data (:func:`lte.checkpoint.load_checkpoint`)
and written back with a format-2 entry holding the model's own description. A Lightning checkpoint
keeps every other entry, so training can resume from the converted file. NEW is never overwritten.

    python scripts/convert_checkpoint.py old.ckpt new.ckpt               # -> lte format 2
    python scripts/convert_checkpoint.py edsr-baseline-lte.pth lte.ckpt  # official -> lte
    python scripts/convert_checkpoint.py run/last.ckpt release.pth --to official
    python scripts/convert_checkpoint.py run/last.ckpt lte-plus.pth --to lte-fast   # LTE+ layout
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lte.checkpoint import CONVERT_TARGETS, convert_checkpoint
from lte.errors import exit_on_user_error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="checkpoint to read: lte (format 1 or 2) or an official .pth")
    parser.add_argument("new", help="file to write; must not exist yet")
    parser.add_argument(
        "--to",
        choices=CONVERT_TARGETS,
        default="lte",
        help="lte: current lte format (default); official: the released LTE/LIIF/Meta-SR layout; "
        "lte-fast: the released LTE+ layout (EDSR-baseline-LTE+, LTE models only)",
    )
    return parser


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    loaded = convert_checkpoint(args.old, args.new, to=args.to)
    origin = loaded.source + (f" {loaded.release}" if loaded.release else "")
    print(
        f"{args.old} ({origin}) -> {args.new} ({args.to}): "
        f"{loaded.model_name}-{loaded.encoder_name}, scale_max {loaded.scale_max:g}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
