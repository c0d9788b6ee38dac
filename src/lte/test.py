"""``python -m lte.test``: an alias of :mod:`lte.cli.test` (the ``lte-test`` console script)."""

from lte.cli.test import main

if __name__ == "__main__":
    main()
