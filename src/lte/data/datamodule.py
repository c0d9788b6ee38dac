"""The LightningDataModule: folders in, training batches and validation loaders out.

It only wires the pieces: folder scanning (:mod:`lte.data.layouts`), validated and cached images
(:class:`lte.data.store.ImageStore`) and the data sets (:mod:`lte.data.datasets`). ``batch_size``
is the GLOBAL batch, as papers report it; each device gets ``batch_size / world_size``. Distributed
sampling is left to Lightning, which wraps these loaders in a ``DistributedSampler`` itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from lte.data.datasets import (
    FixedPatchDataset,
    RandomScaleDataset,
    bool_option,
    check_sampling,
    fixed_scale_specs,
    int_option,
    mixed_scale_specs,
    real_option,
)
from lte.data.layouts import list_images
from lte.data.store import ImageStore, check_cache
from lte.errors import UserError
from lte.scales import format_scale

#: The bundled photos (``train/``, ``val/``), relative to an lte checkout: ``data=sample`` names
#: ``data/sample/train`` and ``data/sample/val``.
SAMPLE_DIR = Path("data", "sample")


def package_dir() -> Path:
    """The folder of the lte package that is imported (``<checkout>/src/lte`` or site-packages)."""
    return Path(str(files("lte"))).resolve()


def checkout_root() -> Path | None:
    """The lte source checkout this package runs from, or None for an installed copy.

    The checkout is a src layout: with an editable install or ``PYTHONPATH=src`` the package is
    ``<checkout>/src/lte`` beside ``<checkout>/pyproject.toml``, so :data:`SAMPLE_DIR` is found from
    any working directory. A wheel installed into site-packages has no checkout around it.
    """
    src = package_dir().parent
    if src.name == "src" and (src.parent / "pyproject.toml").is_file():
        return src.parent
    return None


def resolve_dir(path: str | os.PathLike[str], option: str) -> Path:
    """A data folder from the config: as given (relative to the cwd), else under the checkout.

    The fallback lets ``data=sample`` find the bundled photos from any working directory when lte
    runs from its source checkout. Otherwise the path is returned as given, and a missing folder is
    reported by :func:`lte.data.layouts.list_images` with :func:`download_hint`.
    """
    if path is None or str(path) in ("", "???"):
        raise UserError(f"{option} is not set: pass {option}=/path/to/images")
    if not isinstance(path, str | os.PathLike):
        raise UserError(f"{option}={path!r} must be a folder path")
    p = Path(os.path.expanduser(str(path)))
    root = checkout_root()
    if not p.is_absolute() and not p.exists() and root is not None and (root / p).exists():
        return root / p
    return p


def download_hint(path: Path, option: str = "data.train_dir") -> str:
    """How to get the data for a folder, going by its name."""
    text = str(path)
    if not path.is_absolute() and path.parts[: len(SAMPLE_DIR.parts)] == SAMPLE_DIR.parts:
        root = checkout_root()
        if root is None:
            return (
                f"data=sample reads {SAMPLE_DIR} of an lte checkout, and this lte is installed at "
                f"{package_dir()} (no checkout): run from the checkout's folder, or set {option} "
                "to the photos' folder"
            )
        return (
            f"data=sample reads {SAMPLE_DIR} from the current folder or the lte checkout {root}, "
            f"and neither has it: set {option} to the photos' folder"
        )
    if "DIV2K" in text:
        return "run scripts/download_div2k.sh (see docs/data.md)"
    if any(name in text for name in ("Set5", "Set14", "B100", "Urban100", "benchmark")):
        return "run scripts/download_benchmarks.sh (see docs/data.md)"
    return (
        "check the path, run scripts/download_div2k.sh for DIV2K, or use data=sample "
        "for the bundled photos (see docs/data.md)"
    )


class SRDataModule(L.LightningDataModule):
    """Arbitrary-scale SR data: random-scale training patches, fixed validation patches.

    Args:
        train_dir: folder of HR training images.
        val_dir: folder of HR validation images.
        inp_size: LR patch side for training (48).
        scale_min, scale_max: training scales ``U(scale_min, scale_max)`` (1, 4).
        sample_q: HR query pixels per training sample (2304).
        sampler: ``random`` (queries as a list) or ``fast`` (LTE+: an ``inp_size²`` grid).
        augment: random flips and transpose in training.
        batch_size: GLOBAL training batch (16); per device ``batch_size / world_size``.
        repeat: times each training image is seen per epoch (DIV2K recipe: 20).
        num_workers, pin_memory, persistent_workers: DataLoader settings.
        cache: ``none``, ``memory`` or ``disk`` (see :mod:`lte.data.store`).
        cache_dir: folder for the ``disk`` cache.
        val_scales: fixed validation scales (one loader each, after the mixed-scale loader).
        val_inp_size: LR patch side of validation patches (48).
        val_patches: patches per validation image, in every validation loader.
        seed: fixes the validation patches (positions and scales).
    """

    def __init__(
        self,
        train_dir: str | os.PathLike[str],
        val_dir: str | os.PathLike[str],
        *,
        inp_size: int = 48,
        scale_min: float = 1.0,
        scale_max: float = 4.0,
        sample_q: int = 2304,
        sampler: str = "random",
        augment: bool = True,
        batch_size: int = 16,
        repeat: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        cache: str = "none",
        cache_dir: str | os.PathLike[str] | None = None,
        val_scales: Sequence[float] = (2, 3, 4, 6),
        val_inp_size: int = 48,
        val_patches: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        # Every option is checked here, once, so a typo fails before any folder is scanned or
        # any model is built, with the option's name in a one-line message.
        check_sampling(inp_size, scale_min, scale_max, sample_q, repeat, sampler)
        check_cache(cache, cache_dir)
        if isinstance(val_scales, str) or not isinstance(val_scales, Sequence):
            raise UserError(
                f"data.val_scales={val_scales!r} must be a list of scales, e.g. [2,3,4]"
            )
        try:
            scales = [real_option("val_scales", s, 1) for s in val_scales]
        except UserError:
            raise UserError(
                f"data.val_scales={list(val_scales)!r}: every scale must be a finite number >= 1"
            ) from None
        self.train_dir = train_dir
        self.val_dir = val_dir
        self.inp_size = int(inp_size)
        self.scale_min = float(scale_min)
        self.scale_max = float(scale_max)
        self.sample_q = int(sample_q)
        self.sampler = sampler
        self.augment = bool_option("augment", augment)
        self.batch_size = int_option("batch_size", batch_size, 1, " (the global batch)")
        self.repeat = int(repeat)
        self.num_workers = int_option(
            "num_workers", num_workers, 0, " (0 loads batches in the main process)"
        )
        self.pin_memory = bool_option("pin_memory", pin_memory)
        self.persistent_workers = bool_option("persistent_workers", persistent_workers)
        self.cache = cache
        self.cache_dir = cache_dir
        self.val_scales = scales
        self.val_inp_size = int_option("val_inp_size", val_inp_size, 1, " (LR patch side)")
        self.val_patches = int_option("val_patches", val_patches, 1)
        self.seed = int_option("seed", seed, 0)
        self.train_set: RandomScaleDataset | None = None
        self.val_sets: list[FixedPatchDataset] | None = None

    @property
    def val_names(self) -> list[str]:
        """Metric names of the validation loaders: ``psnr`` (mixed scales), then ``psnr_x{s}``."""
        return ["psnr"] + [f"psnr_x{format_scale(s)}" for s in self.val_scales]

    def world_size(self) -> int:
        """Processes sharing the global batch (1 without an attached trainer)."""
        return int(self.trainer.world_size) if self.trainer is not None else 1

    def per_device_batch(self) -> int:
        """``batch_size / world_size``; a UserError if it does not divide."""
        world = self.world_size()
        if self.batch_size % world:
            raise UserError(
                f"data.batch_size={self.batch_size} is the global batch and must divide by the "
                f"{world} devices (world size): use a multiple of {world}"
            )
        return self.batch_size // world

    def _store(self, folder: str | os.PathLike[str], option: str, min_size: int) -> ImageStore:
        path = resolve_dir(folder, option)
        hint = download_hint(path, option)
        if not hint.startswith("data=sample"):
            hint = f"set {option} to an image folder, or {hint}"
        files = list_images(path, hint=hint)
        return ImageStore(
            files,
            min_size=min_size,
            cache=self.cache,
            cache_dir=self.cache_dir,
            what=f"{option} '{path}'",
        )

    def setup(self, stage: str | None = None) -> None:
        """Scan and validate the folders (errors before any step runs) and build the data sets."""
        self.per_device_batch()
        if stage in (None, "fit") and self.train_set is None:
            store = self._store(
                self.train_dir, "data.train_dir", round(self.inp_size * self.scale_max)
            )
            self.train_set = RandomScaleDataset(
                store,
                inp_size=self.inp_size,
                scale_min=self.scale_min,
                scale_max=self.scale_max,
                sample_q=self.sample_q,
                augment=self.augment,
                repeat=self.repeat,
                sampler=self.sampler,
            )
        if stage in (None, "fit", "validate") and self.val_sets is None:
            largest = max([self.scale_max, *self.val_scales])
            store = self._store(self.val_dir, "data.val_dir", round(self.val_inp_size * largest))
            common = {"inp_size": self.val_inp_size, "patches": self.val_patches}
            specs = [
                mixed_scale_specs(
                    store.shapes,
                    scale_min=self.scale_min,
                    scale_max=self.scale_max,
                    seed=self.seed,
                    **common,
                )
            ]
            specs += [
                fixed_scale_specs(store.shapes, scale=s, seed=self.seed + 1 + k, **common)
                for k, s in enumerate(self.val_scales)
            ]
            self.val_sets = [
                FixedPatchDataset(store, sp, inp_size=self.val_inp_size) for sp in specs
            ]

    def _loader(self, dataset: object, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,  # type: ignore[arg-type]
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled random-scale batches of ``batch_size / world_size`` (last partial batch dropped)."""
        if self.train_set is None:
            self.setup("fit")
        return self._loader(self.train_set, self.per_device_batch(), shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        """Loader 0: mixed scales (``val/psnr``); loader i: ``val_scales[i-1]``. Batch size 1 each."""
        if self.val_sets is None:
            self.setup("validate")
        return [self._loader(ds, 1, shuffle=False) for ds in self.val_sets]  # type: ignore[union-attr]
