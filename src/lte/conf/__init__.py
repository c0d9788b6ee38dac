"""Hydra configs shipped with lte.

A package (not a bare folder) because Hydra finds the configs of an installed lte through
``pkg://lte.conf`` when a console script such as ``lte-train`` imports the entry module.
:data:`CONF_DIR` is the same folder for code that hands Hydra a directory (``initialize_config_dir``)
or lists a group's options.
"""

from importlib.resources import files
from pathlib import Path

#: This package's folder: the configs of the lte that is imported, wherever it is installed.
CONF_DIR = Path(str(files(__name__))).resolve()
