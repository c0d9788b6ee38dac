"""``python -m lte.train``: an alias of :mod:`lte.cli.train` (the ``lte-train`` console script)."""

from __future__ import annotations

import sys

from lte.cli.train import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
