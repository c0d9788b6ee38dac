"""Paired LR/HR data at one integer scale: real LR files instead of LR made on the fly.

SPEC.md, "Fixed-scale baselines" (the official ``sr-implicit-paired`` loader): LR/HR pairs such as
DIV2K's shipped ``DIV2K_train_LR_bicubic/X{s}``; per sample a ``48 × 48`` LR crop at a random
``(x0, y0)`` and the HR crop at ``(s·x0, s·y0)`` of side ``48·s``; random flips and transpose (the
same :func:`lte.data.sampling.augment` on both); every HR pixel of the crop is a query. Any decoder
trains on it (the fixed-scale baselines, or LTE / LIIF / Meta-SR fine-tuned on real pairs), and
the batch has the keys of the random-scale sampler: ``inp``, ``coord``, ``cell``, ``gt``, ``scale``.

Pairs are matched by name (:func:`lte.data.layouts.pair_by_name`) and every pair's sizes are
checked from the file headers before anything is decoded: an LR must be exactly
``floor(HR / s)`` on both sides (DIV2K's and ``scripts/make_lr.py``'s convention; the HR crop
never reaches the ``HR mod s`` rows and columns beyond ``s · LR``), and at least as large as the
LR crop. Randomness comes from torch's global RNG, which :mod:`lte.training.data` seeds per
sample, so an interrupted run resumes on the very samples an uninterrupted one would draw.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from lte.data.datamodule import SRDataModule, download_hint, resolve_dir
from lte.data.datasets import int_option
from lte.data.images import normalize, to_tensor
from lte.data.layouts import list_images, lr_candidates, pair_by_name
from lte.data.sampling import augment
from lte.data.store import ImageStore, read_size
from lte.errors import UserError
from lte.geometry import make_cell, make_coord

Size = tuple[int, int]  # (H, W)


def check_scale(value: object) -> int:
    """``data.scale`` as an int >= 2, or a one-line UserError (pairs have one integer scale)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 2:
        raise UserError(
            f"data.scale={value!r} must be a whole number >= 2 (the LR/HR pairs' integer scale, "
            "e.g. data.scale=2, 3 or 4)"
        )
    return int(value)


def _wh(size: Size) -> str:
    return f"{size[1]}x{size[0]}"


def check_pair_size(
    hr: Path, hr_size: Size, lr: Path, lr_size: Size, scale: int, crop: int, crop_option: str
) -> None:
    """Reject a pair whose LR is not ``floor(HR / scale)`` or is smaller than the LR crop.

    The message names both files and the fix; when the sizes fit another integer scale, it says
    which one (the usual mistake: the X3 folder given for ``data.scale=2``).
    """
    want = (hr_size[0] // scale, hr_size[1] // scale)
    if lr_size != want:
        other = [
            k for k in range(2, 17) if (hr_size[0] // k, hr_size[1] // k) == lr_size and k != scale
        ]
        fix = (
            f"the pair is x{other[0]}: set data.scale={other[0]} or use the X{scale} LR folder"
            if other
            else f"remake the LR with scripts/make_lr.py --scales {scale} (docs/data.md)"
        )
        raise UserError(
            f"LR '{lr}' is {_wh(lr_size)} but its HR '{hr}' ({_wh(hr_size)}) needs "
            f"{_wh(want)} at x{scale} (floor(HR/{scale})): {fix}"
        )
    if min(lr_size) < crop:
        raise UserError(
            f"LR '{lr}' ({_wh(lr_size)}) is smaller than the {crop}x{crop} LR crop "
            f"(data.{crop_option}={crop}): use larger images or lower data.{crop_option}"
        )


def paired_files(
    hr_dir: str | os.PathLike[str],
    lr_dir: str | os.PathLike[str],
    *,
    scale: int,
    crop: int,
    options: tuple[str, str],
    crop_option: str,
) -> tuple[list[tuple[Path, Path]], list[Size], list[Size]]:
    """The ``(hr, lr)`` files of two folders matched by name, with their header sizes, all checked.

    Every HR file needs its LR (``<stem>x{s}.png`` or the HR's own name); LR files without an HR
    are ignored (an LR folder may cover more images than a trimmed HR folder). Only headers are
    read here, so a mistake in an 800-image set costs a second, not a decoding pass.

    Raises:
        UserError: a folder missing or empty, an HR without its LR, or a pair whose sizes do not
        fit ``scale`` and the crop (:func:`check_pair_size`); each names the file and the fix.
    """
    hr_option, lr_option = options
    hr_path = resolve_dir(hr_dir, hr_option)
    lr_path = resolve_dir(lr_dir, lr_option)
    hr_hint = download_hint(hr_path, hr_option)
    if not hr_hint.startswith("data=sample"):
        hr_hint = f"set {hr_option} to an image folder, or {hr_hint}"
    hr_files = list_images(hr_path, hint=hr_hint)
    make = (
        f"make it with python scripts/make_lr.py --hr {hr_path} --out OUT --scales {scale} "
        f"--kernel matlab and set {lr_option}=OUT/X{scale} (docs/data.md)"
    )
    lr_hint = (
        "run scripts/download_div2k.sh (see docs/data.md)" if "DIV2K" in str(lr_path) else make
    )
    list_images(lr_path, hint=f"set {lr_option} to the LR folder, or {lr_hint}")
    pairs, _ = pair_by_name(hr_files, lr_path, scale)
    paired_hr = {hr for hr, _ in pairs}
    missing = [f for f in hr_files if f not in paired_hr]
    if missing:
        looked = " or ".join(c.name for c in lr_candidates(missing[0], lr_path, scale)[:1])
        more = f" (and {len(missing) - 1} more HR files)" if len(missing) > 1 else ""
        raise UserError(
            f"HR '{missing[0]}' has no x{scale} LR in {lr_option} '{lr_path}' (looked for "
            f"{looked} or {missing[0].name}){more}: point {lr_option} at the X{scale} LR folder, "
            f"or {make}"
        )
    hr_sizes = [read_size(hr) for hr, _ in pairs]
    lr_sizes = [read_size(lr) for _, lr in pairs]
    for (hr, lr), hs, ls in zip(pairs, hr_sizes, lr_sizes, strict=True):
        check_pair_size(hr, hs, lr, ls, scale, crop, crop_option)
    return pairs, hr_sizes, lr_sizes


def paired_crop(
    hr: np.ndarray,
    lr: np.ndarray,
    *,
    y0: int,
    x0: int,
    inp_size: int,
    scale: int,
    flags: Sequence[bool] = (False, False, False),
) -> dict[str, Tensor]:
    """The LR crop at ``(y0, x0)`` and the HR crop at ``(s·y0, s·x0)``, augmented alike.

    Args:
        hr, lr: ``(H, W, 3)`` and ``(H // s, W // s, 3)`` uint8 images.
        y0, x0: top-left corner of the LR crop, in LR pixels.
        inp_size: LR crop side (48); the HR crop side is ``inp_size · scale``.
        flags: vertical flip, horizontal flip, transpose (:func:`lte.data.sampling.augment`).

    Returns:
        ``inp`` (3, inp, inp) normalised LR, ``coord`` (S², 2) every HR pixel centre of the
        ``S × S`` crop in row-major order, ``cell`` (S², 2) = ``2 / S``, ``gt`` (S², 3)
        normalised HR RGB, ``scale`` () float32.
    """
    side = inp_size * scale
    crop_lr = augment(lr[y0 : y0 + inp_size, x0 : x0 + inp_size], *flags)
    crop_hr = augment(hr[scale * y0 : scale * y0 + side, scale * x0 : scale * x0 + side], *flags)
    n = side * side
    gt = torch.from_numpy(np.ascontiguousarray(crop_hr)).reshape(n, 3).float().div_(255.0)
    return {
        "inp": normalize(to_tensor(np.ascontiguousarray(crop_lr))),
        "coord": make_coord((side, side)),
        "cell": make_cell((side, side), n),
        "gt": normalize(gt),
        "scale": torch.tensor(float(scale), dtype=torch.float32),
    }


def paired_sample(
    hr: np.ndarray,
    lr: np.ndarray,
    *,
    inp_size: int,
    scale: int,
    augment_flips: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """One training sample: :func:`paired_crop` at a random LR position, randomly augmented.

    Draws ``y0``, ``x0``, then the three flip flags (p = 0.5 each), from ``generator`` (torch's
    global RNG when None, which :mod:`lte.training.data` seeds per sample).
    """
    h, w = lr.shape[:2]
    y0 = int(torch.randint(0, h - inp_size + 1, (), generator=generator))
    x0 = int(torch.randint(0, w - inp_size + 1, (), generator=generator))
    flags = [False, False, False]
    if augment_flips:
        flags = (torch.rand(3, generator=generator) < 0.5).tolist()
    return paired_crop(hr, lr, y0=y0, x0=x0, inp_size=inp_size, scale=scale, flags=flags)


class PairedDataset(Dataset):
    """Training pairs, each seen ``repeat`` times an epoch, a random crop each time.

    Args:
        hr, lr: the HR and LR images, index ``i`` of one pairing with index ``i`` of the other.
        scale: the pairs' integer scale.
        inp_size: LR crop side (48).
        augment: random flips and transpose.
        repeat: times each pair is seen per epoch.
    """

    def __init__(
        self,
        hr: ImageStore,
        lr: ImageStore,
        *,
        scale: int,
        inp_size: int = 48,
        augment: bool = True,
        repeat: int = 1,
    ) -> None:
        if len(hr) != len(lr):
            raise ValueError(f"PairedDataset: {len(hr)} HR images but {len(lr)} LR images")
        self.hr, self.lr = hr, lr
        self.scale = int(scale)
        self.inp_size = int(inp_size)
        self.augment = augment
        self.repeat = int(repeat)

    def __len__(self) -> int:
        return len(self.hr) * self.repeat

    def __getitem__(self, idx: int) -> dict[str, Tensor]:
        i = idx % len(self.hr)
        return paired_sample(
            self.hr.get(i),
            self.lr.get(i),
            inp_size=self.inp_size,
            scale=self.scale,
            augment_flips=self.augment,
        )


@dataclass(frozen=True)
class LRPatch:
    """One fixed validation patch: which pair, and the LR crop's top-left corner."""

    image: int
    y0: int
    x0: int


def lr_patch_specs(
    lr_shapes: list[Size], *, inp_size: int, patches: int, seed: int
) -> list[LRPatch]:
    """``patches`` LR crops per pair at positions seeded from ``seed`` and the file list alone."""
    g = torch.Generator().manual_seed(seed)
    specs = []
    for i, (h, w) in enumerate(lr_shapes):
        for _ in range(patches):
            y0 = int(torch.randint(0, h - inp_size + 1, (), generator=g))
            x0 = int(torch.randint(0, w - inp_size + 1, (), generator=g))
            specs.append(LRPatch(i, y0, x0))
    return specs


class PairedPatchDataset(Dataset):
    """Validation patches of the pairs, fixed in advance, with all their HR pixels as queries."""

    def __init__(
        self,
        hr: ImageStore,
        lr: ImageStore,
        specs: list[LRPatch],
        *,
        scale: int,
        inp_size: int = 48,
    ) -> None:
        self.hr, self.lr = hr, lr
        self.specs = specs
        self.scale = int(scale)
        self.inp_size = int(inp_size)

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, idx: int) -> dict[str, Tensor]:
        sp = self.specs[idx]
        item = paired_crop(
            self.hr.get(sp.image),
            self.lr.get(sp.image),
            y0=sp.y0,
            x0=sp.x0,
            inp_size=self.inp_size,
            scale=self.scale,
        )
        side = self.inp_size * self.scale
        item["hr_shape"] = torch.tensor([side, side], dtype=torch.long)
        return item


class PairedDataModule(SRDataModule):
    """Paired LR/HR folders at one integer scale (``data=div2k_paired``, ``data=paired``).

    The loader options (``batch_size`` as the global batch, workers, cache, ``repeat``, ``seed``)
    mean what they mean for :class:`SRDataModule`, and so do the batches. ``scale_min`` and
    ``scale_max`` exist only so that the model's ``scale_max`` (``model.scale_max:
    ${data.scale_max}``) is the training scale; they must equal ``scale``. One validation loader,
    ``val/psnr``, of fixed patches of the validation pairs at ``scale``.

    Args:
        train_hr_dir, train_lr_dir: training HR folder and its LR folder (``<stem>x{s}.png``).
        val_hr_dir, val_lr_dir: validation HR folder and its LR folder.
        scale: the pairs' integer scale (2, 3, 4; any whole number >= 2 whose sizes agree).
        inp_size: LR crop side (48); the HR crop is ``inp_size · scale``.
    """

    def __init__(
        self,
        train_hr_dir: str | os.PathLike[str],
        train_lr_dir: str | os.PathLike[str],
        val_hr_dir: str | os.PathLike[str],
        val_lr_dir: str | os.PathLike[str],
        *,
        scale: int,
        inp_size: int = 48,
        augment: bool = True,
        batch_size: int = 16,
        repeat: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        cache: str = "none",
        cache_dir: str | os.PathLike[str] | None = None,
        val_inp_size: int = 48,
        val_patches: int = 1,
        seed: int = 0,
        scale_min: float | None = None,
        scale_max: float | None = None,
    ) -> None:
        s = check_scale(scale)
        for name, value in (("scale_min", scale_min), ("scale_max", scale_max)):
            if value is not None and value != s:
                raise UserError(
                    f"data.{name}={value!r} differs from data.scale={s}: paired data trains at "
                    "its one scale; set data.scale only"
                )
        inp = int_option("inp_size", inp_size, 1, " (LR patch side in pixels)")
        super().__init__(
            train_hr_dir,
            val_hr_dir,
            inp_size=inp,
            scale_min=s,
            scale_max=s,
            sample_q=(inp * s) ** 2,
            augment=augment,
            batch_size=batch_size,
            repeat=repeat,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=persistent_workers,
            cache=cache,
            cache_dir=cache_dir,
            val_scales=[s],
            val_inp_size=val_inp_size,
            val_patches=val_patches,
            seed=seed,
        )
        self.scale = s
        self.train_lr_dir = train_lr_dir
        self.val_lr_dir = val_lr_dir

    @property
    def val_names(self) -> list[str]:
        """One validation loader at the pairs' scale, logged as ``val/psnr`` (what checkpoints watch)."""
        return ["psnr"]

    def _pair_stores(
        self, hr_dir: object, lr_dir: object, split: str, crop: int, crop_option: str
    ) -> tuple[ImageStore, ImageStore, list[Size]]:
        options = (f"data.{split}_hr_dir", f"data.{split}_lr_dir")
        pairs, _, lr_sizes = paired_files(
            hr_dir,  # type: ignore[arg-type]
            lr_dir,  # type: ignore[arg-type]
            scale=self.scale,
            crop=crop,
            options=options,
            crop_option=crop_option,
        )
        common = {"cache": self.cache, "cache_dir": self.cache_dir}
        hr = ImageStore([h for h, _ in pairs], what=f"{options[0]} '{hr_dir}'", **common)
        lr = ImageStore([lr for _, lr in pairs], what=f"{options[1]} '{lr_dir}'", **common)
        return hr, lr, lr_sizes

    def setup(self, stage: str | None = None) -> None:
        """Pair, check (headers first) and load the folders; errors come before any step runs."""
        self.per_device_batch()
        if stage in (None, "fit") and self.train_set is None:
            hr, lr, _ = self._pair_stores(
                self.train_dir, self.train_lr_dir, "train", self.inp_size, "inp_size"
            )
            self.train_set = PairedDataset(  # type: ignore[assignment]
                hr,
                lr,
                scale=self.scale,
                inp_size=self.inp_size,
                augment=self.augment,
                repeat=self.repeat,
            )
        if stage in (None, "fit", "validate") and self.val_sets is None:
            hr, lr, lr_sizes = self._pair_stores(
                self.val_dir, self.val_lr_dir, "val", self.val_inp_size, "val_inp_size"
            )
            specs = lr_patch_specs(
                lr_sizes, inp_size=self.val_inp_size, patches=self.val_patches, seed=self.seed
            )
            self.val_sets = [  # type: ignore[list-item]
                PairedPatchDataset(hr, lr, specs, scale=self.scale, inp_size=self.val_inp_size)
            ]
