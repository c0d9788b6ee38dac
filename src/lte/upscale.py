"""``python -m lte.upscale``: an alias of :mod:`lte.cli.upscale` (the ``lte-upscale`` console script)."""

from lte.cli.upscale import main

if __name__ == "__main__":
    main()
