"""One spelling of a scale everywhere (lte.scales): names, tables and results files."""

from __future__ import annotations

import subprocess
import sys

from lte.scales import format_scale, scale_value


def test_format_scale() -> None:
    assert [format_scale(s) for s in (2, 2.0, 2.5, 12, 1.25)] == ["2", "2", "2.5", "12", "1.25"]


def test_scale_value() -> None:
    assert [scale_value(s) for s in (2, 2.0, 2.5, 4.0)] == [2, 2, 2.5, 4]
    assert isinstance(scale_value(3.0), int) and isinstance(scale_value(1.5), float)


def test_a_leaf_module() -> None:
    """Importing it pulls in nothing heavy: results, layouts and comparison stay light."""
    code = (
        "import sys, lte.scales\n"
        "heavy = ('torch', 'hydra', 'numpy', 'filelock')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy\n"
        "             or m.startswith('lte.') and m != 'lte.scales'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
