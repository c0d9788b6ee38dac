"""``lte-compare`` / ``python -m lte.compare``: compare ``lte.test`` results files.

    lte-compare results/*.json --out compare/ --published --baseline rdn-liif [--overwrite]

Parses the options and calls :func:`lte.comparison.compare`; like that module it loads neither
torch nor Hydra. Existing comparison files in ``--out`` are replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from lte.cli.options import Parser
from lte.comparison import compare
from lte.errors import exit_on_user_error


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line's options (see ``lte-compare --help``)."""
    parser = Parser(
        command="python -m lte.compare",
        prog="lte-compare",
        description="Compare lte.test results files: markdown table, PSNR-vs-scale plot, W&B.",
    )
    parser.add_argument("results", nargs="*", help="results JSON files written by lte.test")
    parser.add_argument(
        "--out",
        required=True,
        help="folder for comparison.md/.png/.csv (made if missing; existing files are kept "
        "unless --overwrite)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace comparison.md/.png/.csv if --out already holds them",
    )
    parser.add_argument("--baseline", help="method to show differences against, e.g. rdn-liif")
    parser.add_argument(
        "--published", action="store_true", help="add the paper's numbers as reference rows"
    )
    parser.add_argument(
        "--wandb",
        action="store_true",
        help="log the table, native line charts and the markdown to one W&B run (offline in OUT/wandb without WANDB_API_KEY)",
    )
    parser.add_argument("--wandb-project", default="lte", help="W&B project (default: lte)")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    """Write the comparison, print the markdown table and where each file went."""
    args = parse_args(argv)
    paths = compare(
        args.results,
        args.out,
        baseline=args.baseline,
        published=args.published,
        use_wandb=args.wandb,
        wandb_project=args.wandb_project,
        overwrite=args.overwrite,
    )
    print(paths["markdown"].read_text())
    for kind, path in paths.items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
