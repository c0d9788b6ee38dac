"""Log the Fourier feature-space figure (docs/fourier.md) of one fixed validation patch while training.

Off by default; ``python -m lte.train callbacks=fourier ...`` adds it to the default callbacks
(``conf/callbacks/fourier.yaml``). It shows how the texture estimator's frequencies develop: the same
LR patch and position every time, drawn by :func:`lte.spectrum.figure`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from lte.atomic import atomic_path
from lte.data.images import denormalize
from lte.errors import UserError
from lte.spectrum import figure, fourier_view, is_finite, to_rgb

log = logging.getLogger(__name__)


class FourierLogger(L.Callback):
    """At the end of every ``every_n_epochs``-th validation, rank 0 draws the Fourier figure.

    The patch is the ``index``-th sample of validation loader ``loader`` (the validation patches are
    fixed, so it is the same LR patch in every log), read at its centre unless ``at`` is given. With
    an active W&B logger the figure goes to W&B as ``val/fourier`` (a ``wandb.Image``); otherwise it
    is written to ``<run dir>/fourier/epoch{N}.png``. The validation sample's own scale sets the
    phase panel.

    Args:
        every_n_epochs: log after every n-th validation epoch (0 disables).
        loader: validation loader index (0: mixed scales), clamped to the loaders that exist.
        index: sample of that loader.
        at: ``[x, y]`` LR position in the patch, or ``None`` for its centre.
        dpi: figure resolution (100: 400x450 pixels per panel).
        out_dir: folder for the PNGs without W&B (default ``<trainer.default_root_dir>/fourier``).
    """

    KEY = "val/fourier"

    def __init__(
        self,
        every_n_epochs: int = 1,
        loader: int = 0,
        index: int = 0,
        at: list[int] | tuple[int, int] | None = None,
        dpi: int = 80,
        out_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.every_n_epochs = int(every_n_epochs)
        self.loader = int(loader)
        self.index = int(index)
        if at is not None and (len(at) != 2 or any(int(v) < 0 for v in at)):
            raise UserError(f"callbacks.fourier.at={list(at)!r} must be [x, y] (LR pixels) or null")
        self.at = None if at is None else (int(at[0]), int(at[1]))
        self.dpi = int(dpi)
        self.out_dir = out_dir
        self._patch: tuple[torch.Tensor, float] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        net = pl_module.net
        if not net.has_fourier:
            kind = net.describe()["decoder"]["kind"]
            raise UserError(
                f"callbacks=fourier needs an LTE model, this run trains a '{kind}' decoder, which "
                "estimates no Fourier features: drop callbacks=fourier or use model=lte"
            )

    def _fixed_patch(self, trainer: L.Trainer) -> tuple[torch.Tensor, float] | None:
        """``(LR patch (3, h, w) in [0, 1] on the CPU, its scale)``, read once and kept."""
        if self._patch is not None:
            return self._patch
        loaders = trainer.val_dataloaders
        if loaders is None:
            return None
        if not isinstance(loaders, list | tuple):
            loaders = [loaders]
        dataset = loaders[min(self.loader, len(loaders) - 1)].dataset
        sample = dataset[min(self.index, len(dataset) - 1)]
        inp = sample["inp"]
        scale = float(torch.as_tensor(sample["scale"]).reshape(-1)[0])
        self._patch = (denormalize(inp).clamp(0, 1).cpu(), scale)
        return self._patch

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs <= 0 or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        patch = self._fixed_patch(trainer)
        if patch is None:
            return
        image, scale = patch
        h, w = image.shape[-2:]
        x, y = self.at if self.at is not None else (w // 2, h // 2)
        x, y = min(x, w - 1), min(y, h - 1)
        was_training = pl_module.net.training
        pl_module.net.eval()
        try:
            view = fourier_view(pl_module.net, image, (x, y), scale=scale)
        finally:
            pl_module.net.train(was_training)
        if not is_finite(view):
            log.warning(
                "Fourier figure skipped at epoch %d: non-finite maps", trainer.current_epoch
            )
            return
        title = f"epoch {trainer.current_epoch}, step {trainer.global_step}: patch at x={x}, y={y}"
        fig = figure(view, title, dpi=self.dpi)
        caption = f"x{scale:g} validation patch, LR position ({x}, {y})"
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        for logger in wandb_loggers:
            logger.log_image(
                key=self.KEY, images=[to_rgb(fig)], caption=[caption], step=trainer.global_step
            )
        if not wandb_loggers:
            out = Path(self.out_dir or Path(trainer.default_root_dir) / "fourier")
            out.mkdir(parents=True, exist_ok=True)
            with atomic_path(out / f"epoch{trainer.current_epoch:04d}.png", suffix=".png") as tmp:
                fig.savefig(tmp, format="png", dpi=self.dpi)
