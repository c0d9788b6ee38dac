"""Training throughput: Lightning (``SRLitModule``) against a plain PyTorch loop, per decoder, on CPU.

Both loops train the same model (same initial weights) on the same batches at the paper's batch
shape (16 x 48² LR patches, 2304 queries each) from the bundled photos, and time the same number
of optimizer steps after a warm-up. Lightning's overhead (the ratio minus one) should stay <= 5%.

    python scripts/bench_train.py                   # 2 warm-up + 10 timed steps per loop and decoder
    python scripts/bench_train.py --steps 20 --decoders lte
"""

from __future__ import annotations

import argparse
import copy
import time
from functools import partial

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from lte.data.datamodule import SRDataModule
from lte.models.build import build_model
from lte.training import SRLitModule


class FixedBatches(Dataset):
    """Pre-built batches, served as they are (``batch_size=None``): no sampling cost in the timing."""

    def __init__(self, batches: list[dict[str, torch.Tensor]], n: int) -> None:
        self.batches, self.n = batches, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.batches[i % len(self.batches)]


class StepTimer(L.Callback):
    """Wall time from the start of step ``warmup`` to the end of the last step."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.t0, self.t1 = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        if batch_idx == self.warmup:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self.t1 = time.perf_counter()


def make_batches(n: int) -> list[dict[str, torch.Tensor]]:
    dm = SRDataModule(
        "data/sample/train", "data/sample/val", batch_size=16, repeat=16, cache="memory"
    )
    dm.setup("fit")
    batches = []
    for batch in dm.train_dataloader():
        batches.append({k: batch[k] for k in ("inp", "coord", "cell", "gt")})
        if len(batches) == n:
            break
    return batches


def plain_loop(net: torch.nn.Module, batches: list, warmup: int, steps: int) -> float:
    """Seconds per step of the textbook loop."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    loss_fn = torch.nn.L1Loss()
    net.train()
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        b = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(b["inp"], b["coord"], b["cell"]), b["gt"])
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def lightning_loop(net: torch.nn.Module, batches: list, warmup: int, steps: int) -> float:
    """Seconds per step of SRLitModule under a CPU Trainer (no logger, checkpoints or validation)."""
    module = SRLitModule(net, partial(torch.optim.Adam, lr=1e-4), None)
    timer = StepTimer(warmup)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=warmup + steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
    )
    loader = DataLoader(FixedBatches(batches, warmup + steps), batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    return (timer.t1 - timer.t0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decoders", default="lte,liif,metasr")
    parser.add_argument("--encoder", default="edsr_baseline")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    batches = make_batches(4)
    print(
        f"{args.encoder}, batch {tuple(batches[0]['inp'].shape)}, {batches[0]['coord'].shape[1]} "
        f"queries, {args.warmup} warm-up + {args.steps} timed steps, {torch.get_num_threads()} threads"
    )
    rows = []
    for name in args.decoders.split(","):
        net = build_model(name, args.encoder)
        t_plain = plain_loop(copy.deepcopy(net), batches, args.warmup, args.steps)
        t_light = lightning_loop(copy.deepcopy(net), batches, args.warmup, args.steps)
        rows.append((name, t_plain, t_light))
        print(f"  {name}: plain {t_plain:.3f} s/step, lightning {t_light:.3f} s/step", flush=True)
    print(
        f"\n{'decoder':<8} {'plain it/s':>10} {'lightning it/s':>14} {'ratio':>6} {'overhead':>9}"
    )
    for name, tp, tl in rows:
        print(
            f"{name:<8} {1 / tp:10.3f} {1 / tl:14.3f} {tl / tp:6.3f} {100 * (tl / tp - 1):+8.1f}%"
        )


if __name__ == "__main__":
    main()
