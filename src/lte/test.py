"""``python -m lte.test`` and the ``lte-test`` script: an alias of :mod:`lte.cli.test` (see there)."""

from lte.cli.test import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
