"""Shared fixtures: real photos from the bundled sample set, and tiny models.

The tests folder is importable (``from conftest import ...``, ``tests/literal.py``) through pytest's
``pythonpath`` option in pyproject.toml.
"""

from __future__ import annotations

import itertools
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
def _cache_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temporary folder for lte's cache folders (the compile cache): tests, and the processes
    they start, never read or write the user's ~/.cache/lte."""
    saved = os.environ.get("LTE_CACHE_DIR")
    base = tmp_path_factory.mktemp("lte-cache")
    os.environ["LTE_CACHE_DIR"] = str(base / "session")
    yield base
    if saved is None:
        os.environ.pop("LTE_CACHE_DIR", None)
    else:
        os.environ["LTE_CACHE_DIR"] = saved


_cache_count = itertools.count()


@pytest.fixture(autouse=True)
def _own_cache_dir(_cache_base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with an empty compile cache (a folder made only if it compiles), so
    ``--backend auto`` picks the same backend whatever ran before it."""
    monkeypatch.setenv("LTE_CACHE_DIR", str(_cache_base / f"t{next(_cache_count)}"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
