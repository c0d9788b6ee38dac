"""``python -m lte.upscale``: alias of :mod:`lte.cli.upscale`, where the command lives.

Kept so that ``python -m lte.upscale`` and the ``lte-upscale`` script (``lte.upscale:main``) work.
"""

from __future__ import annotations

from lte.cli.upscale import (
    DTYPES,
    build_parser,
    check_output,
    main,
    output_size,
    parse_size,
    round_half_up,
)

__all__ = [
    "DTYPES",
    "build_parser",
    "check_output",
    "main",
    "output_size",
    "parse_size",
    "round_half_up",
]

if __name__ == "__main__":
    main()
