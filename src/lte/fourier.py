"""``python -m lte.fourier``: an alias of :mod:`lte.cli.fourier` (the ``lte-fourier`` console script)."""

from lte.cli.fourier import main

if __name__ == "__main__":
    main()
