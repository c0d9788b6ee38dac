"""``python -m lte.cache``: an alias of :mod:`lte.cli.cache` (the ``lte-cache`` console script)."""

from lte.cli.cache import main

if __name__ == "__main__":
    main()
