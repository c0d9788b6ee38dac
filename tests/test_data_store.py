"""ImageStore: scanning awkward and broken files, size filtering, and the three cache modes."""

from __future__ import annotations

import multiprocessing as mp
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lte.data.layouts import list_images
from lte.data.store import ImageStore
from lte.errors import UserError

SAMPLE_VAL = Path(__file__).resolve().parents[1] / "data" / "sample" / "val"


def ramp(h: int = 64, w: int = 80) -> np.ndarray:
    """A colourful (H, W, 3) uint8 test pattern."""
    yy, xx = np.mgrid[:h, :w]
    return np.stack([yy * 3 % 256, xx * 3 % 256, (yy + xx) % 256], axis=-1).astype(np.uint8)


def write_awkward(folder: Path) -> dict[str, np.ndarray]:
    """One file per awkward kind, with the RGB we expect to read back (None: lossy, size only)."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = ramp()
    expect: dict[str, np.ndarray] = {}
    grey = rgb[..., 0]
    Image.fromarray(grey).save(folder / "grey.png")
    expect["grey.png"] = np.repeat(grey[..., None], 3, axis=-1)
    pal = Image.fromarray(rgb).quantize(colors=16)
    pal.save(folder / "palette.png")
    expect["palette.png"] = np.asarray(pal.convert("RGB"))
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 7, np.uint8)], axis=-1)
    Image.fromarray(rgba).save(folder / "rgba.png")
    expect["rgba.png"] = rgb  # colours kept, alpha dropped
    deep = (grey.astype(np.uint16) * 257).astype(np.uint16)  # v*257: exact 16-bit twin of v
    Image.fromarray(deep).save(folder / "deep16.png")
    expect["deep16.png"] = expect["grey.png"]
    for name in ("plain.bmp", "plain.tif"):
        Image.fromarray(rgb).save(folder / name)
        expect[name] = rgb
    Image.fromarray(rgb).save(folder / "lossless.webp", lossless=True)
    expect["lossless.webp"] = rgb
    Image.fromarray(rgb).save(folder / "photo.jpg", quality=95)
    expect["photo.jpg"] = None  # lossy: checked for size and closeness only
    return expect


def test_awkward_formats_read_as_rgb8(tmp_path: Path) -> None:
    expect = write_awkward(tmp_path)
    modes = {f.name: Image.open(f).mode for f in tmp_path.iterdir()}
    assert modes["grey.png"] == "L" and modes["palette.png"] == "P" and modes["rgba.png"] == "RGBA"
    assert modes["deep16.png"] in ("I;16", "I")  # a true 16-bit file on disk
    store = ImageStore(list_images(tmp_path), cache="memory")
    assert len(store) == len(expect)
    for i, f in enumerate(store.files):
        got = store.get(i)
        assert got.shape == (64, 80, 3) and got.dtype == np.uint8, f.name
        if expect[f.name] is None:
            assert np.abs(got.astype(int) - ramp().astype(int)).mean() < 4, f.name
        else:
            assert np.array_equal(got, expect[f.name]), f.name


def test_truncated_file_fails_at_scan_naming_it(tmp_path: Path) -> None:
    Image.fromarray(ramp(200, 200)).save(tmp_path / "good.png")
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "broken.png").write_bytes(data[: len(data) // 2])
    files = list_images(tmp_path)
    for mode in ("none", "memory"):
        with pytest.raises(UserError, match=r"broken\.png"):
            ImageStore(files, cache=mode)
    (tmp_path / "broken.png").write_bytes(b"definitely not an image")
    with pytest.raises(UserError, match=r"broken\.png' is not an image"):
        ImageStore(files)


def test_too_small_skipped_with_one_warning(tmp_path: Path) -> None:
    for name, size in [("big.png", 120), ("small1.png", 50), ("small2.png", 99)]:
        Image.fromarray(ramp(size, size)).save(tmp_path / name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = ImageStore(list_images(tmp_path), min_size=100, what="the test set")
    msgs = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(msgs) == 1
    assert "2 image(s)" in msgs[0] and "small1.png" in msgs[0] and "small2.png" in msgs[0]
    assert [f.name for f in store.files] == ["big.png"]
    with pytest.warns(UserWarning), pytest.raises(UserError, match="no image in the test set"):
        ImageStore(list_images(tmp_path), min_size=121, what="the test set")


def test_cache_modes_agree(tmp_path: Path) -> None:
    files = list_images(SAMPLE_VAL)
    stores = {
        mode: ImageStore(files, cache=mode, cache_dir=tmp_path / "cache")
        for mode in ("none", "memory", "disk")
    }
    for i in range(len(files)):
        ref = stores["none"].get(i)
        assert np.array_equal(stores["memory"].get(i), ref)
        assert np.array_equal(stores["disk"].get(i), ref)
    assert stores["memory"]._flat is not None and stores["memory"]._flat.is_shared()
    assert len(list((tmp_path / "cache").glob("*.npy"))) == len(files)
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_disk_cache_reused_and_invalidated(tmp_path: Path) -> None:
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    Image.fromarray(ramp(100, 100)).save(img_dir / "a.png")
    cache = tmp_path / "cache"
    ImageStore(list_images(img_dir), cache="disk", cache_dir=cache)
    (npy,) = cache.glob("*.npy")
    stamp = npy.stat().st_mtime_ns
    ImageStore(list_images(img_dir), cache="disk", cache_dir=cache)
    assert npy.stat().st_mtime_ns == stamp  # reused, not rewritten
    new = ramp(100, 100)[::-1].copy()
    Image.fromarray(new).save(img_dir / "a.png")  # same path, new content
    store = ImageStore(list_images(img_dir), cache="disk", cache_dir=cache)
    assert np.array_equal(store.get(0), new)


def _build_disk_cache(args: tuple[list[str], str]) -> list[int]:
    files, cache = args
    store = ImageStore([Path(f) for f in files], cache="disk", cache_dir=cache)
    return [int(store.get(i).sum()) for i in range(len(store))]


def test_disk_cache_safe_with_concurrent_ranks(tmp_path: Path) -> None:
    # Two "ranks" start at once on an empty cache: both must succeed and read identical pixels.
    files = [str(f) for f in list_images(SAMPLE_VAL)]
    with mp.get_context("fork").Pool(2) as pool:
        a, b = pool.map(_build_disk_cache, [(files, str(tmp_path))] * 2)
    assert a == b
    assert len(list(tmp_path.glob("*.npy"))) == len(files)
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_cache_options(tmp_path: Path) -> None:
    files = list_images(SAMPLE_VAL)
    with pytest.raises(UserError, match=r"data\.cache 'ram' is unknown"):
        ImageStore(files, cache="ram")
    with pytest.raises(UserError, match=r"needs data\.cache_dir"):
        ImageStore(files, cache="disk")


def test_training_images_get_the_readers_pixel_limit_and_orientation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training and lte.test size their images from the header: the same limit and EXIF rotation
    as :func:`lte.data.images.load_rgb`, so a bomb is one line and a phone photo keeps its shape."""
    from test_images import crop, patched_png, with_orientation

    upright = with_orientation(crop(40, 30), tmp_path / "phone.jpg", 6)  # stored 40x30, seen 30x40
    store = ImageStore([upright], cache="memory")
    assert store.get(0).shape == (40, 30, 3)
    bomb = patched_png(tmp_path / "bomb.png", 90000, 90000)
    with pytest.raises(UserError, match=r"bomb\.png' is 90000x90000 .*LTE_MAX_IMAGE_PIXELS"):
        ImageStore([upright, bomb])
    monkeypatch.setenv("LTE_MAX_IMAGE_PIXELS", "100")
    with pytest.raises(UserError, match="over the limit of 100"):
        ImageStore([upright])
