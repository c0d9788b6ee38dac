"""``python -m lte.compare``: an alias of :mod:`lte.cli.compare` (the ``lte-compare`` console script)."""

from lte.cli.compare import main

if __name__ == "__main__":
    main()
