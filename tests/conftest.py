"""Shared fixtures: real photos from the bundled sample set, and tiny models."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/literal.py, the reference reading

SAMPLE_DIR = ROOT / "data" / "sample"
SHARED_PHOTOS = ROOT.parent / "shared" / "sample-photos"


def sample_photos() -> list[Path]:
    """The bundled photos (data/sample), or the shared originals before they are bundled."""
    photos = sorted(SAMPLE_DIR.glob("*/*.png"))
    return photos or sorted(SHARED_PHOTOS.glob("*.png"))


@pytest.fixture(scope="session")
def photo_path() -> Path:
    photos = sample_photos()
    assert photos, "no sample photos found under data/sample"
    return photos[0]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
