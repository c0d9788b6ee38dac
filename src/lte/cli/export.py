"""``lte-export`` / ``python -m lte.export``: a checkpoint as portable files, with a card and a digest.

    lte-export edsr-baseline-lte.pth lte.safetensors              # weights + description, no pickle
    lte-export runs/a/checkpoints/best.ckpt model.onnx --license MIT --results res/a.json

Parses the options and calls :func:`lte.exporting.export_model`: ``OUT.safetensors`` or ``OUT.onnx``
(with ``OUT.query.onnx``), then ``OUT.sha256`` and ``OUT.card.json`` beside it, where ``OUT`` is the
name given. Existing files are replaced only with ``--overwrite``; the checkpoint never is.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lte.checksum import parse_sha256
from lte.cli.options import Parser
from lte.errors import exit_on_user_error
from lte.exporting import export_model


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line's options (see ``lte-export --help``)."""
    parser = Parser(
        command="python -m lte.export",
        prog="lte-export",
        description="Export a checkpoint (official .pth, lte .ckpt or .safetensors) as .safetensors "
        "(weights and description, no pickle) or .onnx (graphs for onnxruntime), with a SHA-256 "
        "file (sha256sum -c) and a JSON model card beside it.",
    )
    parser.add_argument("ckpt", help="checkpoint to export")
    parser.add_argument(
        "out",
        help="OUT.safetensors, or OUT.onnx (writes OUT.query.onnx too; needs lte[onnx]); "
        "OUT.sha256 and OUT.card.json are written beside it",
    )
    parser.add_argument(
        "--license",
        help="SPDX licence of the weights for the card, e.g. MIT (default: an official release's "
        "own, BSD-3-Clause; none for a model trained here)",
    )
    parser.add_argument(
        "--author", help="the card's author (default: an official release's authors)"
    )
    parser.add_argument(
        "--results", help="lte.test results JSON: its records of CKPT go into the card"
    )
    parser.add_argument("--sha256", help="the SHA-256 CKPT must have (checked before reading it)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace outputs that exist (never CKPT itself)"
    )
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``lte-export`` / ``python -m lte.export``."""
    args = parse_args(argv)
    digest = parse_sha256(args.sha256, "--sha256") if args.sha256 is not None else None
    done = export_model(
        args.ckpt,
        args.out,
        license=args.license,
        author=args.author,
        results=args.results,
        ckpt_sha256=digest,
        overwrite=args.overwrite,
    )
    loaded = done.loaded
    print(
        f"{args.ckpt} ({loaded.model_name}-{loaded.encoder_name}) -> "
        + ", ".join(str(p) for p in (*done.files, done.sha256_file, done.card)),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
