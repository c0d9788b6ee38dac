"""A scanned, validated set of images with optional decoded caches (none, memory, disk).

Decoding a 2K PNG costs more than everything else a training sample needs, and a corrupt file found
mid-epoch wastes hours. So a folder is scanned once up front: every file is opened *and decoded*
(errors name the file), sizes are recorded, images too small for the largest crop are dropped with
one warning, and the decoded pixels are optionally kept:

- ``none``: decode the file again for every sample (no extra memory, slowest).
- ``memory``: all images in ONE flat uint8 tensor in shared memory, so DataLoader workers map the
  same pages instead of each holding a copy (forked or spawned alike).
- ``disk``: one ``.npy`` per image in ``cache_dir``, read with ``mmap``; files are named by path,
  size and mtime (a changed image is decoded again) and written to a temp file then renamed, so
  several DDP ranks filling the same cache at once are safe.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lte.atomic import atomic_path
from lte.data.images import image_size, load_rgb
from lte.errors import UserError

CACHE_MODES = ("none", "memory", "disk")


def check_cache(cache: object, cache_dir: object) -> None:
    """Reject an unknown ``data.cache`` mode, or ``disk`` without a usable ``data.cache_dir``."""
    if not isinstance(cache, str) or cache not in CACHE_MODES:
        raise UserError(f"data.cache '{cache}' is unknown: use one of {', '.join(CACHE_MODES)}")
    if cache_dir is not None and not isinstance(cache_dir, str | os.PathLike):
        raise UserError(f"data.cache_dir={cache_dir!r} must be a folder path")
    if cache == "disk" and not cache_dir:
        raise UserError("data.cache=disk needs data.cache_dir: set it to a writable folder")


def _threads() -> int:
    """Decode threads: PIL releases the GIL while decoding, so threads scale with cores."""
    return max(1, min(8, os.cpu_count() or 1))


def _map(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``map`` on a thread pool, in order; the first exception propagates."""
    if len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=_threads()) as pool:
        return list(pool.map(fn, items))


def read_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` from the file header, without decoding, as :func:`load_rgb` will return it (EXIF
    orientation applied) and under the same pixel limit (``LTE_MAX_IMAGE_PIXELS``).

    Raises:
        UserError: the file is not an image PIL can read, or too large (names the file).
    """
    return image_size(path)


def cache_key(path: Path) -> str:
    """A cache file name that changes when the image file changes (path, size, mtime)."""
    st = path.stat()
    ident = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
    return f"{path.stem}-{hashlib.sha256(ident).hexdigest()[:16]}.npy"


def _save_npy_atomic(arr: np.ndarray, target: Path) -> None:
    """Write ``arr`` to ``target`` via a temp file + ``os.replace`` (safe with concurrent writers)."""
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)


def _npy_shape(path: Path) -> tuple[int, ...] | None:
    """Shape of a valid uint8 ``.npy`` file, or None if it is missing or unreadable."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    return tuple(arr.shape) if arr.dtype == np.uint8 and arr.ndim == 3 else None


class ImageStore:
    """The images of one folder (or file list), validated at construction, read by index.

    Args:
        files: image files, in the order they are indexed.
        min_size: images with height or width below this are skipped (one warning lists them).
        cache: ``none``, ``memory`` or ``disk`` (see the module docstring).
        cache_dir: folder for ``disk`` cache files (created if missing).
        what: how to name this set in messages (e.g. ``data.train_dir 'load/DIV2K_train_HR'``).

    Raises:
        UserError: a file cannot be decoded (named), no image is large enough, or the cache
        options are wrong.
    """

    def __init__(
        self,
        files: Sequence[Path],
        *,
        min_size: int = 1,
        cache: str = "none",
        cache_dir: str | os.PathLike[str] | None = None,
        what: str = "images",
    ) -> None:
        check_cache(cache, cache_dir)
        self.cache = cache
        files = [Path(f) for f in files]
        sizes = _map(read_size, files)
        small = [(f, s) for f, s in zip(files, sizes, strict=True) if min(s) < min_size]
        if small:
            listed = ", ".join(f"{f.name} ({s[1]}x{s[0]})" for f, s in small)
            warnings.warn(
                f"skipping {len(small)} image(s) in {what} smaller than {min_size} px "
                f"(the largest crop): {listed}",
                UserWarning,
                stacklevel=2,
            )
        kept = [(f, s) for f, s in zip(files, sizes, strict=True) if min(s) >= min_size]
        if not kept:
            raise UserError(
                f"no image in {what} is at least {min_size}x{min_size} px (the largest crop): "
                "use larger images or lower data.inp_size / data.scale_max"
            )
        self.files: list[Path] = [f for f, _ in kept]
        self.shapes: list[tuple[int, int]] = [s for _, s in kept]
        self._flat: torch.Tensor | None = None
        self._offsets: list[int] = []
        self._npy: list[Path] = []
        self._mmaps: dict[int, np.ndarray] = {}
        if cache == "memory":
            self._fill_memory()
        elif cache == "disk":
            self._fill_disk(Path(cache_dir))  # type: ignore[arg-type]
        else:
            _map(self._decode_checked, list(range(len(self.files))))

    def __len__(self) -> int:
        return len(self.files)

    def _decode_checked(self, i: int) -> np.ndarray:
        """Decode image ``i`` fully (catches truncated files) and check its size against the header."""
        arr = load_rgb(self.files[i])
        if arr.shape[:2] != self.shapes[i]:
            raise UserError(
                f"image '{self.files[i]}' decodes to {arr.shape[1]}x{arr.shape[0]} but its header "
                f"says {self.shapes[i][1]}x{self.shapes[i][0]}: the file is damaged"
            )
        return arr

    def _fill_memory(self) -> None:
        """Decode every image into one shared flat uint8 tensor (one segment, not one per image)."""
        sizes = [h * w * 3 for h, w in self.shapes]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        flat = torch.empty(self._offsets[-1], dtype=torch.uint8)
        flat.share_memory_()
        view = flat.numpy()

        def fill(i: int) -> None:
            arr = self._decode_checked(i)
            view[self._offsets[i] : self._offsets[i + 1]] = arr.reshape(-1)

        _map(fill, list(range(len(self.files))))
        self._flat = flat

    def _fill_disk(self, cache_dir: Path) -> None:
        """Make sure every image has a valid ``.npy`` in ``cache_dir``; decode only the missing."""
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create data.cache_dir '{cache_dir}': {err}") from None
        self._npy = [cache_dir / cache_key(f) for f in self.files]

        def fill(i: int) -> None:
            shape = _npy_shape(self._npy[i])
            if shape == (*self.shapes[i], 3):
                return
            _save_npy_atomic(self._decode_checked(i), self._npy[i])

        _map(fill, list(range(len(self.files))))

    def get(self, i: int) -> np.ndarray:
        """Image ``i`` as ``(H, W, 3)`` uint8. Cached modes return a read-only view: copy to edit."""
        if self.cache == "memory":
            h, w = self.shapes[i]
            flat = self._flat.numpy()  # type: ignore[union-attr]
            return flat[self._offsets[i] : self._offsets[i + 1]].reshape(h, w, 3)  # (H, W, 3)
        if self.cache == "disk":
            arr = self._mmaps.get(i)
            if arr is None:
                arr = np.load(self._npy[i], mmap_mode="r")
                self._mmaps[i] = arr
            return arr
        return load_rgb(self.files[i])

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps are per process: each DataLoader worker opens its own.
        state = self.__dict__.copy()
        state["_mmaps"] = {}
        return state
