"""Command-line entry points, kept apart from the library: each module parses its options (argparse
or Hydra), calls library functions, and turns user mistakes into one ``error:`` line with exit 2.
``python -m lte.train`` / ``lte.test`` / ``lte.upscale`` stay as thin aliases of these modules."""
