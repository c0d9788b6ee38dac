"""Torch data sets over an :class:`ImageStore`: random-scale training and deterministic validation.

The training set draws a fresh random sample on every access (torch's RNG, seeded per DataLoader
worker). The validation sets fix every random choice when they are built, from ``seed`` and the
sorted file list alone, so every epoch and every DDP rank sees the very same patches and scales.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import Dataset

from lte.data.sampling import grid_train_sample, train_sample, val_sample
from lte.data.store import ImageStore
from lte.errors import UserError


class RandomScaleDataset(Dataset):
    """The paper's training set: each image ``repeat`` times an epoch, a random-scale sample each.

    Args:
        store: the training images (each at least ``round(inp_size · scale_max)`` px).
        inp_size: LR patch side (48).
        scale_min, scale_max: the scale range ``U(scale_min, scale_max)`` (1, 4).
        sample_q: HR query pixels per sample (2304).
        augment: random flips and transpose.
        repeat: times each image is seen per epoch (20 for DIV2K).
        sampler: ``random`` (queries as a list) or ``fast`` (LTE+: ``sample_q = inp_size²``
            queries as an ``inp_size × inp_size`` grid, :func:`~lte.data.sampling.grid_train_sample`).
    """

    def __init__(
        self,
        store: ImageStore,
        *,
        inp_size: int = 48,
        scale_min: float = 1.0,
        scale_max: float = 4.0,
        sample_q: int = 2304,
        augment: bool = True,
        repeat: int = 1,
        sampler: str = "random",
    ) -> None:
        check_sampling(inp_size, scale_min, scale_max, sample_q, repeat, sampler)
        self.sampler = sampler
        self.store = store
        self.inp_size = inp_size
        self.scale_min = float(scale_min)
        self.scale_max = float(scale_max)
        self.sample_q = sample_q
        self.augment = augment
        self.repeat = repeat

    def __len__(self) -> int:
        return len(self.store) * self.repeat

    def __getitem__(self, idx: int) -> dict[str, Tensor]:
        img = self.store.get(idx % len(self.store))
        if self.sampler == "fast":
            return grid_train_sample(
                img,
                inp_size=self.inp_size,
                scale_min=self.scale_min,
                scale_max=self.scale_max,
                augment_flips=self.augment,
            )
        return train_sample(
            img,
            inp_size=self.inp_size,
            scale_min=self.scale_min,
            scale_max=self.scale_max,
            sample_q=self.sample_q,
            augment_flips=self.augment,
        )


def int_option(name: str, value: object, minimum: int, fix: str = "") -> int:
    """``value`` as an int ``>= minimum``, or a one-line UserError naming ``data.<name>``.

    Config values arrive from YAML and command-line overrides, so a typo such as
    ``data.batch_size=abc`` or ``data.num_workers=-1`` must be caught here, by name, rather than
    surface as a TypeError or a DataLoader error deep inside Lightning.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise UserError(f"data.{name}={value!r} must be a whole number >= {minimum}{fix}")
    return int(value)


def real_option(name: str, value: object, minimum: float) -> float:
    """``value`` as a finite float ``>= minimum``, or a one-line UserError naming ``data.<name>``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) < minimum:  # type: ignore[arg-type]
        raise UserError(f"data.{name}={value!r} must be a finite number >= {minimum:g}")
    return float(value)  # type: ignore[arg-type]


def bool_option(name: str, value: object) -> bool:
    """``value`` if it is a bool, else a one-line UserError (``"no"`` would otherwise be truthy)."""
    if not isinstance(value, bool):
        raise UserError(f"data.{name}={value!r} must be true or false")
    return value


#: ``data.sampler``: ``random`` (the LTE/LIIF recipe) or ``fast`` (LTE+'s grid of queries).
SAMPLERS = ("random", "fast")


def check_sampling(
    inp_size: int,
    scale_min: float,
    scale_max: float,
    sample_q: int,
    repeat: int = 1,
    sampler: str = "random",
) -> None:
    """Reject sampler settings that cannot work, naming the option."""
    inp_size = int_option("inp_size", inp_size, 1, " (LR patch side in pixels)")
    scale_min = real_option("scale_min", scale_min, 1)
    scale_max = real_option("scale_max", scale_max, 1)
    if scale_min > scale_max:
        raise UserError(
            f"data.scale_min={scale_min:g}, data.scale_max={scale_max:g}: need 1 <= scale_min <= scale_max"
        )
    smallest = round(inp_size * scale_min) ** 2
    sample_q = int_option("sample_q", sample_q, 1)
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise UserError(f"data.sampler={sampler!r} must be one of {', '.join(SAMPLERS)}")
    if sampler == "fast" and sample_q != inp_size * inp_size:
        raise UserError(
            f"data.sampler=fast lays the queries out as an inp_size x inp_size grid: "
            f"data.sample_q={sample_q} must be {inp_size * inp_size} (data.inp_size={inp_size} squared)"
        )
    if sample_q > smallest:
        raise UserError(
            f"data.sample_q={sample_q} must be between 1 and {smallest}, the pixels of the smallest "
            f"HR crop (round(inp_size*scale_min)^2)"
        )
    int_option("repeat", repeat, 1)


@dataclass(frozen=True)
class PatchSpec:
    """One fixed validation patch: which image, where, and how large the HR side is."""

    image: int
    y0: int
    x0: int
    size_hr: int


def mixed_scale_specs(
    shapes: list[tuple[int, int]],
    *,
    inp_size: int,
    scale_min: float,
    scale_max: float,
    patches: int,
    seed: int,
) -> list[PatchSpec]:
    """Patches whose HR sides are spread evenly over ``[round(inp·scale_min), round(inp·scale_max)]``.

    The ``N = len(shapes) · patches`` HR sides are the centres of ``N`` equal bins of the range,
    rounded to whole pixels (so every scale ``size_hr / inp`` is exact), dealt to patches in a
    seeded random order so that no image always gets the small scales. Positions are seeded too.
    """
    g = torch.Generator().manual_seed(seed)
    n = len(shapes) * patches
    lo, hi = inp_size * scale_min, inp_size * scale_max
    sides = [round(lo + (hi - lo) * (k + 0.5) / n) for k in range(n)]
    order = torch.randperm(n, generator=g).tolist()
    return _place([sides[k] for k in order], shapes, patches, g)


#: Fewest patches per image of a fixed-scale validation loader (``val/psnr_x{s}``), whatever
#: ``data.val_patches`` says: with one 24-px patch per image, x3 read 4.7 dB above x2 on the bundled
#: photos because each scale saw other content.
MIN_FIXED_PATCHES = 4


def fixed_scale_specs(
    shapes: list[tuple[int, int]], *, inp_size: int, scale: float, patches: int, seed: int
) -> list[PatchSpec]:
    """``max(patches, MIN_FIXED_PATCHES)`` patches per image at one scale (HR side ``round(inp · scale)``).

    The patches are centred on a fixed grid of each image (rows x columns, the same for every
    scale; clamped to fit), not at random: the loaders of x2, x3, x4 ... then score the same
    regions, so ``val/psnr_x{s}`` differ by the scale and not by which content each scale drew.
    ``seed`` is kept for the signature; the positions do not depend on it.
    """
    del seed
    n = max(int(patches), MIN_FIXED_PATCHES)
    side = round(inp_size * scale)
    rows = max(1, int(n**0.5))
    cols = -(-n // rows)
    specs = []
    for i, (h, w) in enumerate(shapes):
        for k in range(n):
            cy, cx = (k // cols + 0.5) / rows * h, (k % cols + 0.5) / cols * w
            y0 = min(max(round(cy - side / 2), 0), h - side)
            x0 = min(max(round(cx - side / 2), 0), w - side)
            specs.append(PatchSpec(i, y0, x0, side))
    return specs


def _place(
    sides: list[int], shapes: list[tuple[int, int]], patches: int, g: torch.Generator
) -> list[PatchSpec]:
    """Give patch ``k`` (image ``k // patches``) a seeded random position that fits its side."""
    specs = []
    for k, side in enumerate(sides):
        i = k // patches
        h, w = shapes[i]
        y0 = int(torch.randint(0, h - side + 1, (), generator=g))
        x0 = int(torch.randint(0, w - side + 1, (), generator=g))
        specs.append(PatchSpec(i, y0, x0, side))
    return specs


class FixedPatchDataset(Dataset):
    """Validation patches fixed in advance (:class:`PatchSpec`), each with all its HR pixels."""

    def __init__(self, store: ImageStore, specs: list[PatchSpec], *, inp_size: int = 48) -> None:
        self.store = store
        self.specs = specs
        self.inp_size = inp_size

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, idx: int) -> dict[str, Tensor]:
        sp = self.specs[idx]
        img = self.store.get(sp.image)
        return val_sample(img, y0=sp.y0, x0=sp.x0, size_hr=sp.size_hr, inp_size=self.inp_size)
