"""How a scale is written in folder and file names, tables, metric names and results files.

One spelling everywhere (``x2``, not ``x2.0``; ``x2.5``), so that a results file, an LR folder
(``X2``) and a metric (``val/psnr_x2``) name the same scale the same way. Pure functions with no
dependencies: data layouts, evaluation, results and comparison all import them.
"""

from __future__ import annotations


def format_scale(scale: float) -> str:
    """A scale as folders, files, tables and metric names spell it: ``2`` for 2.0, ``2.5`` for 2.5.

    Write ``f"x{format_scale(s)}"`` for a column or file tag (``x2``, ``x2.5``).
    """
    s = float(scale)
    return str(int(s)) if s.is_integer() else f"{s:g}"


def scale_value(scale: float) -> int | float:
    """A scale as JSON stores it: ``2`` for 2.0 (as the tables print it), the float otherwise."""
    s = float(scale)
    return int(s) if s.is_integer() else s
