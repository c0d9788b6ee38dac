"""The LightningModule: the training logic around an :class:`~lte.models.SRModel`, kept apart from it.

The network itself (``self.net``, encoder + decoder built from the ``model`` and ``encoder`` config
groups) knows nothing about training; this module adds the L1 loss on normalised values, the
optimizer and scheduler (both Hydra ``_partial_`` objects), the skipping of non-finite steps,
whole-patch validation in bounded-memory chunks, and the ``"lte"`` entry that makes a training
checkpoint loadable by :func:`lte.checkpoint.load_checkpoint` with no other file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torchmetrics import MeanMetric

from lte.checkpoint import checkpoint_metadata
from lte.data.images import denormalize
from lte.errors import UserError
from lte.inference import DEFAULT_CHUNK, batched_query
from lte.metrics import psnr
from lte.models.sr import SRModel

log = logging.getLogger(__name__)

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


def _plain(cfg: Any) -> dict[str, Any]:
    """A config (DictConfig or dict, possibly None) as a resolved plain dict."""
    if cfg is None:
        return {}
    if isinstance(cfg, DictConfig):
        out = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(out, dict)
        return out  # type: ignore[return-value]
    return dict(cfg)


class NonFiniteLossError(UserError):
    """Training diverged: the loss stayed NaN/Inf for too many steps in a row."""


class SRLitModule(L.LightningModule):
    """Train an SRModel with L1 loss; validate PSNR on whole patches at mixed and fixed scales.

    Args:
        net: the SR network (encoder + decoder); saved under ``net.`` in the state dict, the prefix
            :func:`lte.checkpoint.load_checkpoint` expects.
        optimizer: ``params -> Optimizer``, e.g. a ``_partial_`` ``torch.optim.Adam`` (lr 1e-4).
        scheduler: ``optimizer -> LRScheduler`` stepped once per epoch (``MultiStepLR`` at epochs
            200/400/600/800, x0.5), or None for a constant lr.
        Checkpoints store ``net.describe()`` (:func:`lte.checkpoint.checkpoint_metadata`), and
            validation enlarges the cell of scales beyond ``net.scale_max`` as at test time, so the
            module keeps no model metadata of its own.
        val_chunk: queries per decoder call in validation (bounds memory, never changes results).
        max_bad_steps: stop after this many non-finite losses in a row (each one skips its step).
        train_config: the whole resolved run config (plain containers), kept in checkpoints for
            reference.
        compile_net: train through ``torch.compile`` (``model.compile=true``): the network's
            ``__call__`` is compiled in place (``nn.Module.compile``), so checkpoint keys stay
            ``net.*`` and validation (``encode``/``query``) stays eager. When compile cannot run
            here (no C++ compiler, ...) one warning line says so and training runs eagerly.
    """

    def __init__(
        self,
        net: SRModel,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        *,
        val_chunk: int = DEFAULT_CHUNK,
        max_bad_steps: int = 20,
        train_config: dict[str, Any] | None = None,
        compile_net: bool = False,
    ) -> None:
        super().__init__()
        if val_chunk <= 0:
            raise UserError(f"module.val_chunk={val_chunk} must be a positive number of queries")
        if max_bad_steps < 1:
            raise UserError(f"module.max_bad_steps={max_bad_steps} must be at least 1")
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # Plain containers only: checkpoints must load with torch.load(weights_only=True).
        self.val_chunk = int(val_chunk)
        self.max_bad_steps = int(max_bad_steps)
        self.train_config = _plain(train_config)
        self.loss_fn = nn.L1Loss()
        self.bad_steps = 0  # consecutive non-finite losses
        self.val_names: list[str] = ["psnr"]
        self.val_psnr = nn.ModuleList([MeanMetric()])
        #: Set by the W&B helper so a resumed run continues the same W&B run.
        self.wandb_run_id: str | None = None
        self.compile_net = bool(compile_net)
        self._compile_done = False

    # --- setup -------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """One PSNR mean per validation loader, named after the datamodule's ``val_names``."""
        dm = getattr(self.trainer, "datamodule", None)
        names = list(getattr(dm, "val_names", None) or ["psnr"])
        if names != self.val_names:
            self.val_names = names
            self.val_psnr = nn.ModuleList([MeanMetric() for _ in names])

    def configure_model(self) -> None:
        """``compile_net``: compile the network's forward once (Lightning may call this hook again)."""
        if not self.compile_net or self._compile_done:
            return
        self._compile_done = True
        from lte.devices import compile_unavailable

        device = self.trainer.strategy.root_device if self._trainer is not None else self.device
        reason = compile_unavailable(device)
        if reason is not None:
            log.warning("model.compile=true: %s; training runs eagerly", reason)
            return
        self.net.compile()

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.net.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        # Milestones are epochs, as in the paper's recipe (1000 epochs of 1000 iterations).
        # "name": the key LearningRateMonitor logs the learning rate under.
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "name": "lr"},
        }

    # --- training ----------------------------------------------------------------------------

    def forward(self, inp: Tensor, coord: Tensor, cell: Tensor) -> Tensor:
        return self.net(inp, coord, cell)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        """L1 between predicted and true (normalised) RGB at the sampled queries.

        A NaN/Inf loss on any rank skips the step on every rank (so DDP's gradient all-reduce stays
        in step) with a warning; ``max_bad_steps`` of them in a row stop training.
        """
        coord, cell, gt = batch["coord"], batch["cell"], batch["gt"]
        if coord.dim() == 4:  # LTE+'s grid batches (data.sampler=fast): (B, n, n, 2), cell (B, 2)
            coord, cell, gt = coord.flatten(1, 2), cell.unsqueeze(1), gt.flatten(1, 2)
        pred = self.net(batch["inp"], coord, cell)  # (B, Q, 3)
        loss = self.loss_fn(pred, gt)
        bad = self.trainer.strategy.reduce_boolean_decision(
            not bool(torch.isfinite(loss)), all=False
        )
        if bad:
            self.bad_steps += 1
            log.warning(
                "non-finite loss (%s) at step %d: skipping it (%d in a row, limit %d)",
                float(loss.detach()),
                self.global_step,
                self.bad_steps,
                self.max_bad_steps,
            )
            if self.bad_steps >= self.max_bad_steps:
                raise NonFiniteLossError(
                    f"the loss was NaN/Inf for {self.bad_steps} steps in a row (step "
                    f"{self.global_step}): training diverged; lower optimizer.lr or resume from an "
                    "earlier checkpoint (module.max_bad_steps sets the limit)"
                )
            return None
        self.bad_steps = 0
        batch_size = batch["inp"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        return loss  # the learning rate is logged by LearningRateMonitor (callbacks.lr_monitor)

    # --- validation --------------------------------------------------------------------------

    def predict_queries(self, inp: Tensor, coord: Tensor, cell: Tensor, scale: float) -> Tensor:
        """Normalised RGB at every query, chunked; cells enlarged beyond the model's ``scale_max``."""
        cell = self.net.enlarge_cell(cell, scale)
        # float32 under trainer.precision=bf16-mixed too: the weights are float32, and this scores
        # the model lte.test will score (autocast would also send the fast kernel to slow bf16).
        with torch.autocast(inp.device.type, enabled=False):
            state = self.net.encode(inp, cell=cell)
            return batched_query(self.net, state, coord, cell, self.val_chunk)

    def validation_step(
        self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """PSNR (RGB, no shave) of each whole patch, on denormalised and clamped values."""
        scale = float(batch["scale"].reshape(-1)[0])
        pred = self.predict_queries(batch["inp"], batch["coord"], batch["cell"], scale)
        b = pred.shape[0]
        h, w = (int(v) for v in batch["hr_shape"].reshape(-1, 2)[0])
        # (B, H*W, 3) -> (B, 3, H, W): queries are every HR pixel, row-major.
        pred_img = denormalize(pred).transpose(1, 2).reshape(b, 3, h, w)
        gt_img = denormalize(batch["gt"]).transpose(1, 2).reshape(b, 3, h, w)
        values = psnr(pred_img, gt_img, border=0, y_channel=False)  # (B,)
        metric = self.val_psnr[dataloader_idx]
        metric.update(values)
        self.log(
            f"val/{self.val_names[dataloader_idx]}",
            metric,
            on_step=False,
            on_epoch=True,
            prog_bar=dataloader_idx == 0,
            add_dataloader_idx=False,
            batch_size=b,
        )

    # --- checkpoints -------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add what inference needs (``"lte"``), the run config and the W&B run id; all plain data."""
        checkpoint["lte"] = checkpoint_metadata(self.net)
        checkpoint["train_config"] = self.train_config
        if self.wandb_run_id:
            checkpoint["wandb_run_id"] = self.wandb_run_id
