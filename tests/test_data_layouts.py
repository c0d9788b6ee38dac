"""Folder layouts: listing images and pairing LR with HR by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lte.data.images import save_rgb
from lte.data.layouts import (
    list_images,
    pair_by_name,
    require_pairs,
)
from lte.errors import UserError

TINY = np.zeros((4, 4, 3), dtype=np.uint8)


def touch_images(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        save_rgb(TINY, folder / n)
    return [folder / n for n in names]


def test_list_images_sorted_and_filtered(tmp_path: Path) -> None:
    touch_images(tmp_path, ["b.png", "a.JPG", "c.webp", "d.bmp", "e.tif"])
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"")
    (tmp_path / "X2").mkdir()
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["a.JPG", "b.png", "c.webp", "d.bmp", "e.tif"]


def test_list_images_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"'.*nowhere' does not exist: check the path"):
        list_images(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        list_images(tmp_path / "empty")
    f = touch_images(tmp_path, ["x.png"])[0]
    with pytest.raises(UserError, match="is not a folder"):
        list_images(f)


def test_pair_by_name_not_position(tmp_path: Path) -> None:
    # Sorted positions would pair a<->b, b<->c: names must win, and the odd ones be listed.
    hr = touch_images(tmp_path / "HR", ["a.png", "b.png", "c.png"])
    lr_dir = tmp_path / "LR_bicubic" / "X2"
    touch_images(lr_dir, ["bx2.png", "cx2.png", "dx2.png"])
    pairs, unpaired = pair_by_name(hr, lr_dir, 2)
    assert [(h.name, lr.name) for h, lr in pairs] == [("b.png", "bx2.png"), ("c.png", "cx2.png")]
    assert [p.name for p in unpaired] == ["a.png", "dx2.png"]
    with pytest.raises(
        UserError, match=r"2 file\(s\) have no HR/LR partner at x2.*a\.png.*dx2\.png"
    ):
        require_pairs(hr, lr_dir, 2)


def test_pair_div2k_and_same_name_and_fractional(tmp_path: Path) -> None:
    hr = touch_images(tmp_path / "HR", ["0801.png", "0802.png"])
    lr_dir = tmp_path / "X4"
    touch_images(lr_dir, ["0801x4.png", "0802.png"])  # DIV2K naming, and an LR keeping its HR name
    pairs, unpaired = pair_by_name(hr, lr_dir, 4.0)
    assert [lr.name for _, lr in pairs] == ["0801x4.png", "0802.png"]
    assert unpaired == []
    lr25 = tmp_path / "X2.5"
    touch_images(lr25, ["0801x2.5.png", "0802x2.5.jpg"])
    pairs, unpaired = pair_by_name(hr, lr25, 2.5)
    assert [lr.name for _, lr in pairs] == ["0801x2.5.png", "0802x2.5.jpg"] and not unpaired
