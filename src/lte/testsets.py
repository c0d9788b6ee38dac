"""Test sets as objects that yield the papers' LR/HR pairs, one scale at a time.

Every ``conf/testset/*.yaml`` names one of these classes in ``_target_``, so ``lte.test`` builds a
test set with ``hydra.utils.instantiate`` and a notebook builds the same one directly::

    BenchmarkSet("set5", "load/benchmark/Set5")
    DIV2KValid("load")
    FolderSet("my_photos/HR", protocol="div2k")

The pairing follows the LIIF/LTE test code (SPEC.md, "Evaluation protocol"; ``docs/evaluation.md``):
a scale whose LR folder exists (the shipped ``LR_bicubic/X{s}``, made with MATLAB's bicubic) uses
those files, matched to the HR by name, with the HR cropped top-left to ``h_lr·s × w_lr·s``; any
other scale crops the HR to ``floor(H/s)·s`` and downsamples it with PIL bicubic on the 8-bit image.
Images are read with :func:`lte.data.images.load_rgb`, so the same checks apply as everywhere.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lte.data.images import image_size, load_rgb
from lte.data.layouts import is_image, list_images, lr_candidates
from lte.data.resize import lr_size, make_lr
from lte.errors import UserError, quote
from lte.metrics import PROTOCOLS, shave_border
from lte.scales import format_scale

log = logging.getLogger(__name__)

#: How LR folders are spelled: ``{scale}`` becomes ``2``, ``3``, ``2.5``, ...
SCALE_FIELD = "{scale}"


class Pair(NamedTuple):
    """One test image at one scale: ``name`` (the HR file's path), ``lr`` and the matching ``hr``,
    both ``(h, w, 3)`` uint8, the HR already cropped so that it is exactly ``s`` times the LR grid."""

    name: str
    lr: np.ndarray
    hr: np.ndarray


# --- pairing (the protocol) --------------------------------------------------------------------


def pair_from_lr_file(
    hr: np.ndarray, lr: np.ndarray, scale: float, *, lr_path: Path | str = "LR image"
) -> np.ndarray:
    """The HR crop that a shipped LR image maps onto: top-left ``h_lr·s × w_lr·s``.

    The LR must be exactly ``floor(H/s) × floor(W/s)``: anything else means the files do not belong
    together (wrong scale folder, a resized HR), and scoring them would give a meaningless number.

    Raises:
        UserError: the LR size does not match the HR at this scale (names ``lr_path``).
    """
    want = lr_size(hr.shape[:2], scale)
    got = lr.shape[:2]
    if tuple(got) != tuple(want):
        tag = format_scale(scale)
        raise UserError(
            f"LR image '{lr_path}' is {got[1]}x{got[0]} px but its HR at x{tag} "
            f"needs {want[1]}x{want[0]} (HR {hr.shape[1]}x{hr.shape[0]} cropped to a multiple of "
            f"{tag}): the LR belongs to another image or scale"
        )
    return hr[: round(got[0] * scale), : round(got[1] * scale)]


def pair_on_the_fly(hr: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """``(lr, hr_crop)``: HR cropped to ``floor(H/s)·s`` and downsampled with PIL bicubic (8-bit).

    Raises:
        UserError: the image is smaller than one LR pixel at this scale.
    """
    hr_crop, lr = make_lr(hr, scale, kernel="pil")
    return lr, hr_crop


def scale_problem(hr_hw: tuple[int, int], scale: float, protocol: str) -> str | None:
    """Why an HR image of ``hr_hw = (H, W)`` cannot be scored at ``scale``, or ``None`` if it can.

    Two things need room: the LR (``floor(H/s) x floor(W/s)``, at least one pixel) and the
    metric, which shaves :func:`lte.metrics.shave_border` px from every border of the HR crop.
    """
    lr = lr_size(hr_hw, scale)
    if min(lr) < 1:
        return f"its LR would be {lr[1]}x{lr[0]} px"
    crop = (round(lr[0] * scale), round(lr[1] * scale))
    border = shave_border(scale, protocol)  # type: ignore[arg-type]
    if min(crop) <= 2 * border:
        return (
            f"shaving {border} px per border ({protocol} protocol) leaves nothing of its "
            f"{crop[1]}x{crop[0]} px crop"
        )
    return None


def largest_scale(hr_hw: tuple[int, int], protocol: str) -> int:
    """The largest whole scale at which an HR image of ``hr_hw`` can be scored (0: none can)."""
    return next(
        (s for s in range(min(hr_hw), 0, -1) if scale_problem(hr_hw, s, protocol) is None), 0
    )


def too_small(name: object, hr_hw: tuple[int, int], scale: float, problem: str, advice: str) -> str:
    """The message for an image that ``scale`` leaves nothing of: names both and what to do."""
    return (
        f"image {quote(name)} ({hr_hw[1]}x{hr_hw[0]}) is too small for x{format_scale(scale)}: "
        f"{problem}; {advice}"
    )


def _scales_advice(largest: int, where: str) -> str:
    if largest < 1:
        return "no scale leaves room for it: remove it from the test set"
    return f"use scales up to x{largest} for {where}"


def find_lr_file(hr_file: Path, lr_dir: Path, scale: float) -> Path:
    """The LR file of ``hr_file`` in ``lr_dir`` (``<stem>x{s}.png`` first), matched by name.

    Raises:
        UserError: the LR folder exists but has no file for this HR image.
    """
    for candidate in lr_candidates(hr_file, lr_dir, scale):
        if is_image(candidate):
            return candidate
    tag = format_scale(scale)
    raise UserError(
        f"LR folder '{lr_dir}' has no LR image for '{hr_file.name}' (expected "
        f"'{hr_file.stem}x{tag}.png'): add it, or remove the folder to make LR images on the fly"
    )


# --- test sets ---------------------------------------------------------------------------------


class TestSet:
    """HR images, optional LR folders per scale, and the protocol to score them with.

    Args:
        name: the name in tables and results files (``set5``, ``div2k``, ...).
        hr_dir: the folder of HR images.
        lr_dir: the LR folder of a scale, with ``{scale}`` in it (``.../LR_bicubic/X{scale}``), or
            ``None``: every scale makes its LR on the fly. A scale whose folder does not exist gets
            on-the-fly LR too (x6 and up on the shipped sets).
        protocol: ``benchmark`` (Y, shave s) or ``div2k`` (RGB, shave s + 6).
        hint: how to get the images, said when ``hr_dir`` is missing.
        option: the config key this set comes from, named in errors (``testset``).
    """

    __test__ = False  # not a pytest class, despite the name

    def __init__(
        self,
        name: str,
        hr_dir: str | os.PathLike[str],
        lr_dir: str | os.PathLike[str] | None = None,
        protocol: str = "benchmark",
        *,
        hint: str | None = None,
        option: str = "testset",
    ) -> None:
        if protocol not in PROTOCOLS:
            raise UserError(
                f"{option}.protocol={protocol} is unknown for '{name}': use one of "
                f"{', '.join(PROTOCOLS)}"
            )
        if lr_dir is not None and SCALE_FIELD not in str(lr_dir):
            raise UserError(
                f"{option}.lr_dir={lr_dir} has no {SCALE_FIELD}: write e.g. "
                f"'DIR/LR_bicubic/X{SCALE_FIELD}' so each scale finds its folder"
            )
        self.name = str(name)
        self.hr_dir = Path(hr_dir)
        self.lr_dir = None if lr_dir is None else str(lr_dir)
        self.protocol = protocol
        self.hint = hint or f"put the HR images there or set {option}.hr_dir=DIR"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, hr_dir='{self.hr_dir}', "
            f"lr_dir={self.lr_dir!r}, protocol={self.protocol!r})"
        )

    def hr_files(self) -> list[Path]:
        """The HR files, sorted by name; call it early to fail before any slow work.

        Raises:
            UserError: the folder is missing or holds no images (says how to get them).
        """
        return list_images(self.hr_dir, hint=self.hint)

    def check_scales(self, scales: Sequence[float], files: Sequence[Path] | None = None) -> None:
        """Every image must have room for every scale; checked on the headers, before any work.

        Raises:
            UserError: the first (image, scale) that leaves an empty LR or nothing to score after
                shaving, naming both and the largest scale the whole set allows.
        """
        files = self.hr_files() if files is None else files
        sizes = {f: image_size(f) for f in files}
        for scale in scales:
            for f, hw in sizes.items():
                problem = scale_problem(hw, scale, self.protocol)
                if problem is not None:
                    smallest = min(sizes.values(), key=min)
                    advice = _scales_advice(largest_scale(smallest, self.protocol), "this test set")
                    raise UserError(too_small(f, hw, scale, problem, advice))

    def lr_folder(self, scale: float) -> Path | None:
        """The folder of shipped LR images for ``scale``, or ``None`` when there is none on disk."""
        if self.lr_dir is None:
            return None
        folder = Path(self.lr_dir.replace(SCALE_FIELD, format_scale(scale)))
        return folder if folder.is_dir() else None

    def lr_source(self, scale: float) -> Path | None:
        """:meth:`lr_folder`, saying (log) whether ``scale`` reads LR files or makes them.

        Called once per scale by :meth:`pairs` and by :func:`lte.evaluation.evaluate_testset`.
        """
        lr_dir = self.lr_folder(scale)
        tag = format_scale(scale)
        if lr_dir is not None:
            log.info("%s x%s: LR images from %s", self.name, tag, lr_dir)
        else:
            log.info("%s x%s: no LR folder, making LR on the fly (PIL bicubic)", self.name, tag)
        return lr_dir

    def pair(
        self,
        hr_file: Path,
        scale: float,
        lr_dir: Path | None,
        times: dict[str, float] | None = None,
    ) -> Pair:
        """The ``(name, lr, hr)`` of one HR file at ``scale`` (``lr_dir`` from :meth:`lr_folder`).

        A plain function of its arguments, so DataLoader workers can make pairs in any process and
        get the same pixels. ``times``, when given, receives the seconds spent reading files
        (``"load"``) and making the LR with PIL bicubic (``"make_lr"``) for profiling.

        Raises:
            UserError: an unreadable image, an LR file missing or of the wrong size (named).
        """
        t0 = time.perf_counter()
        hr = load_rgb(hr_file)
        hw = (hr.shape[0], hr.shape[1])
        if min(lr_size(hw, scale)) < 1:  # TestSet.check_scales says it before any work
            problem = scale_problem(hw, scale, self.protocol) or ""
            advice = _scales_advice(largest_scale(hw, self.protocol), "this image")
            raise UserError(too_small(hr_file, hw, scale, problem, advice))
        if lr_dir is not None:
            lr_file = find_lr_file(hr_file, lr_dir, scale)
            lr = load_rgb(lr_file)
            crop = pair_from_lr_file(hr, lr, scale, lr_path=lr_file)
            t1 = t2 = time.perf_counter()
        else:
            t1 = time.perf_counter()
            lr, crop = pair_on_the_fly(hr, scale)
            t2 = time.perf_counter()
        if times is not None:
            times["load"] = t1 - t0
            times["make_lr"] = t2 - t1
        return Pair(str(hr_file), lr, crop)

    def pairs(self, scale: float) -> Iterator[Pair]:
        """``(name, lr, hr)`` for every HR image at ``scale``, in file-name order.

        Says once (log) whether the scale reads LR files or makes them with PIL bicubic.

        Raises:
            UserError: missing HR folder, an LR file missing or of the wrong size (named).
        """
        hr_files = self.hr_files()
        lr_dir = self.lr_source(scale)
        for hr_file in hr_files:
            yield self.pair(hr_file, scale, lr_dir)


class FolderSet(TestSet):
    """Any folder of HR images (``testset=folder testset.hr_dir=DIR``).

    ``name`` defaults to the folder's name, or its parent's when the folder is called ``HR``
    (``photos/HR`` is ``photos``). ``lr_dir`` is a folder of LR files you already have, with one
    ``X{s}`` sub-folder per scale (``DIR/LR_bicubic``, as ``scripts/make_lr.py`` writes it; a path
    with ``{scale}`` in it works too); without it every scale uses PIL bicubic LR.
    """

    def __init__(
        self,
        hr_dir: str | os.PathLike[str] | None = None,
        lr_dir: str | os.PathLike[str] | None = None,
        name: str | None = None,
        protocol: str = "benchmark",
    ) -> None:
        if hr_dir is None or str(hr_dir) == "":
            raise UserError(
                "testset.hr_dir is not set: pass testset.hr_dir=DIR (a folder of HR images)"
            )
        folder = Path(hr_dir)
        if name is None:
            name = folder.resolve().parent.name if folder.name == "HR" else folder.resolve().name
        #: The folder the user named, which must exist: a mistyped one would otherwise just
        #: make every LR on the fly, and the scores would silently change protocol.
        self.lr_root = None if lr_dir is None else _fixed_part(str(lr_dir))
        if lr_dir is not None and SCALE_FIELD not in str(lr_dir):
            lr_dir = f"{lr_dir}/X{SCALE_FIELD}"
        super().__init__(name, folder, lr_dir, protocol)

    def hr_files(self) -> list[Path]:
        """:meth:`TestSet.hr_files`, and the ``lr_dir`` given must be an existing folder.

        Raises:
            UserError: the HR folder is missing or empty, or ``testset.lr_dir`` does not exist.
        """
        files = super().hr_files()
        if self.lr_root is not None and not self.lr_root.is_dir():
            what = "is not a folder" if self.lr_root.exists() else "does not exist"
            raise UserError(
                f"testset.lr_dir {quote(self.lr_root)} {what}: fix the path (it holds X2, X3, ... "
                "folders of LR images), or leave testset.lr_dir out to make every LR with PIL bicubic"
            )
        return files


def _fixed_part(lr_dir: str) -> Path:
    """The folder above the first part of ``lr_dir`` that holds ``{scale}`` (all of it if none)."""
    parts = Path(lr_dir).parts
    for i, part in enumerate(parts):
        if SCALE_FIELD in part:
            return Path(*parts[:i]) if i else Path(".")
    return Path(lr_dir)


class BenchmarkSet(TestSet):
    """One set of the EDSR/LIIF benchmark bundle: ``root/HR`` and ``root/LR_bicubic/X{s}``.

    Scored with the ``benchmark`` protocol (Y, ``s`` px shaved), as in the papers' Table 2.
    """

    def __init__(
        self,
        name: str,
        root: str | os.PathLike[str],
        download: str = "scripts/download_benchmarks.sh",
    ) -> None:
        root = Path(root)
        hint = f"run {download} (or set paths.data_dir / $LTE_DATA to your data folder)"
        super().__init__(
            name, root / "HR", f"{root}/LR_bicubic/X{SCALE_FIELD}", "benchmark", hint=hint
        )


class DIV2KValid(TestSet):
    """The DIV2K validation images 0801-0900: ``root/DIV2K_valid_HR`` and the shipped
    ``root/DIV2K_valid_LR_bicubic/X{s}``, scored with the ``div2k`` protocol (RGB, ``s + 6`` px
    shaved), as in the papers' Table 1."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        name: str = "div2k",
        download: str = "scripts/download_div2k.sh",
    ) -> None:
        root = Path(root)
        hint = f"run {download} (or set paths.data_dir / $LTE_DATA to your data folder)"
        super().__init__(
            name,
            root / "DIV2K_valid_HR",
            f"{root}/DIV2K_valid_LR_bicubic/X{SCALE_FIELD}",
            "div2k",
            hint=hint,
        )
