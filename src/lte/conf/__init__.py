"""Hydra configs of lte; a package so that Hydra finds them by module name (``pkg://lte.conf``),
which is how the console scripts and ``lte.cli.*`` entry points locate them."""
