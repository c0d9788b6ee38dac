"""``python -m lte.export``: an alias of :mod:`lte.cli.export` (the ``lte-export`` console script)."""

from lte.cli.export import main

if __name__ == "__main__":
    main()
