"""Shared fixtures: real photos from the bundled sample set, and tiny models.

The tests folder is importable (``from conftest import ...``, ``tests/literal.py``) through pytest's
``pythonpath`` option in pyproject.toml.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

SAMPLE_DIR = ROOT / "data" / "sample"


def sample_photos() -> list[Path]:
    """The bundled photos (data/sample/train and val)."""
    return sorted(SAMPLE_DIR.glob("*/*.png"))


@pytest.fixture(scope="session")
def photo_path() -> Path:
    photos = sample_photos()
    assert photos, "no sample photos found under data/sample"
    return photos[0]


@pytest.fixture(autouse=True, scope="session")
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """lte's cache folder (the compile cache) in a temporary folder for the whole session, child
    processes included: tests never read or write the user's ~/.cache/lte."""
    saved = os.environ.get("LTE_CACHE_DIR")
    os.environ["LTE_CACHE_DIR"] = str(tmp_path_factory.mktemp("lte-cache"))
    yield
    if saved is None:
        os.environ.pop("LTE_CACHE_DIR", None)
    else:
        os.environ["LTE_CACHE_DIR"] = saved


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
