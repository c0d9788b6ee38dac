"""Is the data pipeline fast enough? Loader samples/s vs the model's training consumption.

At the paper's batch shape (batch 16, inp 48, sample_q 2304, scales U(1, 4)) this measures, in one
run: the training loader's samples/s with 0 and 2 workers, and the samples/s of a full EDSR-baseline-
LTE training step (forward, L1 backward, Adam) on the same batches. The headroom ratio is loader
speed over model speed: at >= 5x the GPU never waits for data, even with other load on the CPU.

    python scripts/bench_data.py                       # bundled photos, CPU or the first GPU
    python scripts/bench_data.py --data-dir load/DIV2K_train_HR --cache disk --cache-dir /tmp/c
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from lte.atomic import atomic_write_text
from lte.data.datamodule import resolve_dir
from lte.data.datasets import RandomScaleDataset
from lte.data.layouts import list_images
from lte.data.store import ImageStore
from lte.errors import UserError, exit_on_user_error
from lte.models import build_model

RECIPE = {"inp_size": 48, "scale_min": 1.0, "scale_max": 4.0, "sample_q": 2304}


def loader_rate(dataset: RandomScaleDataset, batch: int, workers: int, batches: int) -> float:
    """Samples per second of a shuffled training loader, after its first batch (worker start-up)."""
    loader = DataLoader(
        dataset, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers
    )
    it = iter(loader)
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - start)


def model_rate(batches: list[dict[str, torch.Tensor]], device: torch.device, steps: int) -> float:
    """Samples per second of EDSR-baseline-LTE training steps (forward + L1 backward + Adam)."""
    model = build_model("lte", "edsr_baseline").to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    on_dev = [{k: v.to(device) for k, v in b.items()} for b in batches]

    def step(b: dict[str, torch.Tensor]) -> None:
        pred = model(b["inp"], b["coord"], b["cell"])  # (B, Q, 3)
        loss = torch.nn.functional.l1_loss(pred, b["gt"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(on_dev[0])  # warm-up: allocations, cuDNN autotuning
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for i in range(steps):
        step(on_dev[i % len(on_dev)])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * batches[0]["inp"].shape[0] / (time.perf_counter() - start)


def write_json(result: dict[str, object], path: Path) -> None:
    """Write the result atomically (temp file + rename)."""
    atomic_write_text(path, json.dumps(result, indent=2))


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="data/sample/train", help="HR training images")
    parser.add_argument("--cache", default="memory", choices=("none", "memory", "disk"))
    parser.add_argument("--cache-dir", default=None, help="folder for --cache disk")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=40, help="timed loader batches per setting")
    parser.add_argument("--workers", default="0,2", help="comma-separated worker counts")
    parser.add_argument("--steps", type=int, default=5, help="timed model training steps")
    parser.add_argument(
        "--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    try:
        workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        raise UserError(f"--workers '{args.workers}' is not a comma-separated list") from None

    folder = resolve_dir(args.data_dir, "--data-dir")
    store = ImageStore(
        list_images(folder),
        min_size=round(RECIPE["inp_size"] * RECIPE["scale_max"]),
        cache=args.cache,
        cache_dir=args.cache_dir,
        what=f"--data-dir '{folder}'",
    )
    repeat = -(-(args.batches + 2) * args.batch // len(store))  # enough samples for every run
    dataset = RandomScaleDataset(store, **RECIPE, repeat=repeat)

    torch.manual_seed(0)
    data = {w: loader_rate(dataset, args.batch, w, args.batches) for w in workers}
    batch_iter = iter(DataLoader(dataset, batch_size=args.batch, shuffle=True, drop_last=True))
    batches = [next(batch_iter) for _ in range(min(args.steps, 4))]
    model = model_rate(batches, device, args.steps)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    cores = os.cpu_count()
    print(
        f"batch {args.batch}, inp 48, sample_q 2304, scales U(1, 4); {len(store)} images, "
        f"cache={args.cache}; {cores} CPU cores; model on {device} ({name or 'cpu'})"
    )
    print(f"{'':28s}{'samples/s':>12s}{'headroom':>10s}")
    print(f"{'EDSR-baseline-LTE train':28s}{model:12.1f}")
    for w, rate in data.items():
        print(f"{f'data loader, {w} workers':28s}{rate:12.1f}{rate / model:9.1f}x")
    if args.json:
        write_json(
            {
                "batch": args.batch,
                "cache": args.cache,
                "images": len(store),
                "cpu_cores": cores,
                "device": str(device),
                "device_name": name,
                "model_samples_per_s": model,
                "loader_samples_per_s": {str(w): r for w, r in data.items()},
                "headroom": {str(w): r / model for w, r in data.items()},
            },
            args.json,
        )


if __name__ == "__main__":
    main()
