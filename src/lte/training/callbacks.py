"""Callbacks and the checkpoint writer of a training run: atomic saves, per-rank RNG state, image logs."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lte.checkpoint import atomic_save
from lte.data.images import denormalize, save_rgb, to_uint8
from lte.errors import UserError
from lte.training.rng import capture_rng_state, restore_rng_state

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but through a temp file and ``os.replace``.

    Lightning's own writer streams into the final path, so a crash (or a full disk, or SLURM's kill)
    during a save can leave a truncated ``last.ckpt`` behind: exactly the file a resume needs.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike[str], storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        try:
            atomic_save(checkpoint, path)
        except (OSError, RuntimeError) as err:
            # torch.save reports a full disk as RuntimeError("... file write failed").
            text = (str(err).strip().splitlines() or [type(err).__name__])[0]
            if isinstance(err, RuntimeError) and "writ" not in text:
                raise
            raise UserError(
                f"cannot write checkpoint '{path}' ({text[:200]}): free disk space or make the "
                "folder writable, then resume with ckpt_path=last (the previous checkpoint is intact)"
            ) from None


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, plus ``last.ckpt`` at the step where ``trainer.max_steps`` stops.

    ModelCheckpoint saves after validation; a run that reaches ``max_steps`` in mid-epoch stops
    without one, and its ``last.ckpt`` would lag behind the weights it reports. This saves the final
    step there, in ``on_train_batch_end`` (a regular mid-epoch checkpoint that Lightning resumes
    from), unless a validation follows that batch and saves it anyway.
    """

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if (
            not self.save_last
            or trainer.max_steps < 0
            or trainer.global_step < trainer.max_steps
            or self._last_global_step_saved == trainer.global_step
            or self._validation_follows(trainer)
        ):
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    @staticmethod
    def _validation_follows(trainer: L.Trainer) -> bool:
        """Whether Lightning validates right after this batch (then on_validation_end saves)."""
        loop = trainer.fit_loop
        fetcher = getattr(loop, "_data_fetcher", None)
        return fetcher is not None and bool(loop.epoch_loop._should_check_val_fx(fetcher))


class RNGState(L.Callback):
    """Save every rank's RNG states (torch, numpy, python) in the checkpoint, and restore them on resume.

    The checkpoint is written by rank 0 alone, so the states are gathered from all ranks first. A
    resume on a different number of processes restores what it can (rank ``r`` takes rank
    ``r mod n``'s state) and says so.
    """

    KEY = "rng_states"

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        state = capture_rng_state()
        if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
            states: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(states, state)
        else:
            states = [state]
        checkpoint[self.KEY] = states

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = checkpoint.get(self.KEY)
        if not states:
            log.warning("the checkpoint holds no RNG states: the resumed run draws new samples")
            return
        if len(states) != trainer.world_size:
            log.warning(
                "the checkpoint holds RNG states of %d processes, this run has %d: "
                "samples will differ from an uninterrupted run",
                len(states),
                trainer.world_size,
            )
        restore_rng_state(states[trainer.global_rank % len(states)])


def side_by_side(
    inp: torch.Tensor, pred: torch.Tensor, gt: torch.Tensor, crop: int | None = None
) -> torch.Tensor:
    """``bicubic | ours | HR`` of one patch as a ``(3, H, 3W + 8)`` image in [0, 1].

    ``inp`` is the normalised ``(3, h, w)`` LR, ``pred`` and ``gt`` normalised ``(3, H, W)``. The
    bicubic reference is ``F.interpolate`` on the LR; a 4 px white gap separates the panels. With
    ``crop``, the central ``crop × crop`` region of each panel is shown.
    """
    h, w = gt.shape[-2:]
    bicubic = F.interpolate(inp[None], size=(h, w), mode="bicubic", align_corners=False)[0]
    panels = [denormalize(x) for x in (bicubic, pred, gt)]
    if crop is not None and crop < min(h, w):
        y0, x0 = (h - crop) // 2, (w - crop) // 2
        panels = [p[:, y0 : y0 + crop, x0 : x0 + crop] for p in panels]
    gap = torch.ones(3, panels[0].shape[1], 4, dtype=gt.dtype, device=gt.device)
    return torch.cat([panels[0], gap, panels[1], gap, panels[2]], dim=-1)


class ImageLogger(L.Callback):
    """Every ``every_n_epochs`` validations, rank 0 logs ``bicubic | ours | HR`` crops.

    To W&B when the run logs there (``val/images``), and always as PNGs under
    ``<run dir>/images/epoch{N}_{i}.png`` so a CSV or offline run can be looked at too.

    Args:
        every_n_epochs: log after every n-th validation epoch (0 disables).
        loader: index of the validation loader to take patches from (default 3: ``x4`` with the
            default ``val_scales``, clamped to the loaders that exist).
        num_images: patches per log.
        crop: side of the central crop shown (HR pixels), or None for the whole patch.
        out_dir: folder for the PNGs (default: ``<trainer.default_root_dir>/images``).
    """

    def __init__(
        self,
        every_n_epochs: int = 10,
        loader: int = 3,
        num_images: int = 2,
        crop: int | None = 128,
        out_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.every_n_epochs = int(every_n_epochs)
        self.loader = int(loader)
        self.num_images = int(num_images)
        self.crop = crop
        self.out_dir = out_dir

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs <= 0 or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        loaders = trainer.val_dataloaders
        if loaders is None:
            return
        if not isinstance(loaders, list | tuple):
            loaders = [loaders]
        loader = loaders[min(self.loader, len(loaders) - 1)]
        images = []
        with torch.no_grad():
            for i, batch in enumerate(loader):
                if i >= self.num_images:
                    break
                batch = {k: v.to(pl_module.device) for k, v in batch.items()}
                scale = float(batch["scale"].reshape(-1)[0])
                pred = pl_module.predict_queries(batch["inp"], batch["coord"], batch["cell"], scale)
                h, w = (int(v) for v in batch["hr_shape"][0])
                # (1, H*W, 3) -> (3, H, W): queries are every HR pixel, row-major.
                pred_img = pred[0].transpose(0, 1).reshape(3, h, w)
                gt_img = batch["gt"][0].transpose(0, 1).reshape(3, h, w)
                images.append((side_by_side(batch["inp"][0], pred_img, gt_img, self.crop), scale))
        out = Path(self.out_dir or Path(trainer.default_root_dir) / "images")
        out.mkdir(parents=True, exist_ok=True)
        for i, (img, _scale) in enumerate(images):
            save_rgb(to_uint8(img.cpu()), out / f"epoch{trainer.current_epoch:04d}_{i}.png")
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(
                    key="val/images",
                    images=[to_uint8(img.cpu()) for img, _ in images],
                    caption=[f"x{s:g}: bicubic | ours | HR" for _, s in images],
                    step=trainer.global_step,
                )
