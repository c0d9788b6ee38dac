"""Training batches that are a pure function of ``(seed, epoch, position)``, so any resume is exact.

A plain shuffled ``DataLoader`` draws its order and every random crop from the process's global
RNG stream, which the model (drop path), validation loaders and Lightning's one-batch prefetch also
read. A run stopped in mid-epoch (``trainer.max_steps``, a preemption) cannot put that stream back
where an uninterrupted run had it, so the resumed run trains on other samples.

Here the order of epoch ``e`` is ``randperm`` seeded from ``(seed, e)``, and the sample at position
``p`` of that order is drawn under its own seed, derived from ``(seed, e, p)``, inside a forked RNG
(nothing leaks into, or depends on, the global stream). A resumed run skips the positions already
trained on without computing them. The global batch ``j`` is positions ``[j·B, (j+1)·B)``; with
``W`` processes rank ``r`` takes the ``r``-th slice of ``B / W`` of it, so the samples of a run do
not depend on the number of devices either.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

log = logging.getLogger(__name__)


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for one epoch (numpy's SeedSequence; never ``seed + epoch``)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch)]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


class SeededSamples(Dataset):
    """A map-style data set read at ``(index, seed)``: each sample drawn under its own seed.

    torch's, numpy's and python's global RNGs are seeded for the one ``__getitem__`` and put back
    afterwards, so the draw is the same in the main process or any worker, persistent or not.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        np_state, py_state = np.random.get_state(), random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            np.random.seed(seed & 0xFFFFFFFF)
            random.seed(seed)
            try:
                return self.dataset[index]
            finally:
                np.random.set_state(np_state)
                random.setstate(py_state)


class EpochBatches:
    """Batch sampler of ``(index, seed)`` keys for one rank: epoch order and sample seeds from ``seed``.

    Args:
        size: samples in the data set.
        batch_size: samples per batch on this rank (the global batch is ``batch_size · world_size``).
        seed: the run's seed.
        rank, world_size: this process and the number of processes.

    ``epoch`` and ``start`` (batches of the epoch already trained on) are set before each iteration.
    The last partial global batch is dropped, as in the paper's loader.
    """

    def __init__(
        self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self.size = int(size)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        self.start = 0

    def __len__(self) -> int:
        return self.size // (self.batch_size * self.world_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(self.size, generator=g).tolist()
        seeds = torch.randint(0, 2**62, (self.size,), generator=g).tolist()
        per_rank, total = self.batch_size, self.batch_size * self.world_size
        for j in range(self.start, len(self)):
            first = j * total + self.rank * per_rank
            yield [(order[p], seeds[p]) for p in range(first, first + per_rank)]


class ResumableLoader:
    """The training loader: a DataLoader over :class:`SeededSamples` driven by :class:`EpochBatches`.

    Before each pass it reads the epoch and the batches already done in it from the trainer, so a
    run resumed in mid-epoch continues with the very batches an uninterrupted run would have
    trained on. It is not a ``DataLoader``, so Lightning leaves its sampling alone (the ranks'
    shares are :class:`EpochBatches`' business); ``state_dict`` / ``load_state_dict`` make Lightning
    treat it as resumable.
    """

    def __init__(self, loader: DataLoader, trainer: L.Trainer, seed: int) -> None:
        self.trainer = trainer
        self.batches = EpochBatches(
            len(loader.dataset),  # type: ignore[arg-type]
            int(loader.batch_size or 1),
            seed,
            rank=trainer.global_rank,
            world_size=trainer.world_size,
        )
        self.loader = DataLoader(
            SeededSamples(loader.dataset),
            batch_sampler=self.batches,  # type: ignore[arg-type]
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            persistent_workers=loader.persistent_workers,
            prefetch_factor=loader.prefetch_factor,
            timeout=loader.timeout,
            multiprocessing_context=loader.multiprocessing_context,
            # Worker base seeds come from here, not from the global RNG (they matter for nothing).
            generator=torch.Generator().manual_seed(seed),
        )

    def __len__(self) -> int:
        return len(self.batches)

    def epoch_length(self) -> int:
        """Batches Lightning takes from this loader an epoch (``trainer.limit_train_batches`` applied)."""
        length, limit = len(self.batches), self.trainer.limit_train_batches
        if isinstance(limit, int) and not isinstance(limit, bool):
            return max(1, min(length, limit))
        if isinstance(limit, float) and limit < 1.0:
            return max(1, int(length * limit))
        return max(1, length)

    def __iter__(self) -> Iterator[Any]:
        # Where the run stands is the number of batches trained on so far, whatever Lightning's
        # epoch counter says (it can skip a number when resuming from an end-of-epoch checkpoint
        # of a max_steps run). `processed` counts a batch as soon as its step ran: a checkpoint
        # written in on_train_batch_end holds it one ahead of `completed`.
        done = int(self.trainer.fit_loop.epoch_loop.batch_progress.total.processed)
        length = self.epoch_length()
        self.batches.epoch, self.batches.start = divmod(done, length)
        if self.trainer.overfit_batches:  # debug=overfit: the same first batches every epoch
            self.batches.epoch, self.batches.start = 0, 0
        return iter(self.loader)

    def state_dict(self) -> dict[str, int]:
        """What the batches depend on besides the trainer's progress (compared on resume)."""
        return {"seed": self.batches.seed, "size": self.batches.size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Say so when the resumed run draws other samples than the original would have."""
        mine = self.state_dict()
        if any(state.get(k) != v for k, v in mine.items()):
            log.warning(
                "resuming with another seed or training set (checkpoint %s, now %s): the samples "
                "differ from those the original run would have drawn",
                state,
                mine,
            )


class TrainingData(L.LightningDataModule):
    """The run's data module with its training loader made resumable (:class:`ResumableLoader`).

    Everything else (folders, validation loaders, ``val_names``) is the wrapped data module's.
    """

    def __init__(self, inner: L.LightningDataModule, seed: int) -> None:
        super().__init__()
        self.inner = inner
        self.seed = int(seed)

    @property
    def val_names(self) -> list[str]:
        return list(getattr(self.inner, "val_names", None) or ["psnr"])

    def setup(self, stage: str) -> None:
        self.inner.trainer = self.trainer
        self.inner.setup(stage)

    def train_dataloader(self) -> ResumableLoader:
        assert self.trainer is not None
        return ResumableLoader(self.inner.train_dataloader(), self.trainer, self.seed)

    def val_dataloader(self) -> Any:
        return self.inner.val_dataloader()
