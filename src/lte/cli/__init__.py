"""Command-line entry points, kept apart from the library: each module parses its options (argparse
or Hydra), calls library functions, and turns user mistakes into one ``error:`` line with exit 2.
The console scripts point here (``lte-<tool>`` is ``lte.cli.<tool>:main``) and ``python -m
lte.<tool>`` runs a five-line alias of the same ``main``; nothing in the library imports this
package (``tests/test_imports.py``)."""
