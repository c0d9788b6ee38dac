"""``python -m lte.fourier``: an alias of :mod:`lte.cli.fourier` (the ``lte-fourier`` console script).

The figure itself is :mod:`lte.spectrum`; its names are also here only for
``lte.training.fourier_callback``, until that module imports them from there.
"""

from lte.cli.fourier import main
from lte.spectrum import figure, fourier_view, is_finite, to_rgb

__all__ = ["figure", "fourier_view", "is_finite", "main", "to_rgb"]

if __name__ == "__main__":
    main()
