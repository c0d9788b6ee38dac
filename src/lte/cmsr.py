"""``python -m lte.cmsr``: an alias of :mod:`lte.cli.cmsr` (the ``lte-cmsr`` console script); the
library is :mod:`lte.multiscale`."""

from lte.cli.cmsr import main

if __name__ == "__main__":
    main()
