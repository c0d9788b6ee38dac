"""Training throughput on the paper's batch shape (16 x 48² LR patches, 2304 queries each).

Three modes, each timing the same model (same initial weights) on the same batches from the bundled
photos, the same number of optimizer steps after a warm-up:

- default: Lightning (``SRLitModule``) against a plain PyTorch loop, per decoder. Lightning's
  overhead (the ratio minus one) should stay <= 5%.
- ``--options``: steps/s of the plain loop per training option, as ratios against the baseline
  measured in the same run: ``old`` (the differentiable query as it was before the cheaper
  ``exact``: ``torch.gather`` rows and plain-op Fourier features, kept below as ``old_*``),
  ``fp32`` (today's ``exact``), ``bf16`` (``torch.autocast`` bf16, what
  ``trainer.precision=bf16-mixed`` runs; skipped without native bf16 unless ``--force-bf16``),
  ``compile`` (``nn.Module.compile``, what ``model.compile=true`` runs; compile time is reported
  apart). ``fp32`` and ``old`` losses of the first step are printed: they must be equal.
- ``--profile``: where one step's time goes (encoder forward, decoder table, query forward, loss,
  backward split at the table and at the encoder output, optimizer), then torch.profiler's top ops.

    python scripts/bench_train.py                   # 2 warm-up + 10 timed steps per loop and decoder
    python scripts/bench_train.py --steps 20 --decoders lte
    python scripts/bench_train.py --options old,fp32,bf16,compile --decoders lte,liif --steps 5
    python scripts/bench_train.py --profile --decoders lte --steps 3
    python scripts/bench_train.py --options old,fp32 --quick    # tiny shapes: checks it runs
"""

from __future__ import annotations

import argparse
import copy
import math
import time
import types
from contextlib import nullcontext
from functools import partial

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from lte import geometry
from lte.data.datamodule import SRDataModule
from lte.devices import compile_unavailable, native_bf16
from lte.models.build import build_model
from lte.models.decoders import DecoderState
from lte.models.decoders.ensemble import ensemble_sum, neighbours, rel_cell
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


def make_batches(
    n: int, batch: int = 16, inp_size: int = 48, sample_q: int = 2304
) -> list[dict[str, torch.Tensor]]:
    dm = SRDataModule(
        "data/sample/train",
        "data/sample/val",
        batch_size=batch,
        inp_size=inp_size,
        sample_q=sample_q,
        repeat=16,
        cache="memory",
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


# --- the differentiable query before the cheaper exact (the --options baseline) -----------------


def old_gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The previous ``gather_rows``: ``torch.gather`` with the index expanded over the D columns."""
    b, d = table.shape[0], table.shape[-1]
    flat = table.reshape(b, -1, d)
    rows = torch.gather(flat, 1, index.reshape(b, -1, 1).expand(-1, -1, d))
    return rows.view(*index.shape, d)


def old_run_layers(layers, x, mlp_dtype):  # type: ignore[no-untyped-def]
    """The previous ``run_layers``: the Sequential on the N-D features (in-place ReLU on views)."""
    if mlp_dtype is None or mlp_dtype == x.dtype:
        return layers(x)
    x = x.to(mlp_dtype)
    for m in layers:
        if isinstance(m, torch.nn.Linear):
            x = F.linear(x, m.weight.to(mlp_dtype), m.bias.to(mlp_dtype))
        else:
            x = m(x)
    return x.float()


def old_lte_exact(self, state, coord, cell, mlp_dtype):  # type: ignore[no-untyped-def]
    """The previous ``LTEDecoder.exact``: plain ops, autograd keeps every temporary."""
    hid, half = self.hidden_dim, self.hidden_dim // 2
    nb = neighbours(state, coord)
    codes = old_gather_rows(state.table, nb.index)
    amp, fy, fx = codes[..., :hid], codes[..., hid : hid + half], codes[..., hid + half :]
    theta = fy * nb.rel[..., :1] + fx * nb.rel[..., 1:]
    theta = theta + self.phase(rel_cell(cell, state.lr_hw)).unsqueeze(2)
    theta = theta * math.pi
    z = amp * torch.cat([torch.cos(theta), torch.sin(theta)], dim=-1)
    pred = old_run_layers(self.imnet.layers, z, mlp_dtype)
    return ensemble_sum(pred, nb.weights) + geometry.bilinear_sample(state.lr, coord)


def old_liif_exact(self, state, coord, cell, mlp_dtype):  # type: ignore[no-untyped-def]
    """The previous ``LIIFDecoder.exact``."""
    w_rel, w_cell, bias = self._first_layer_columns()
    nb = neighbours(state, coord)
    x = old_gather_rows(state.table, nb.index)
    x = x + F.linear(nb.rel, w_rel)
    x = x + F.linear(rel_cell(cell, state.lr_hw), w_cell, bias).unsqueeze(2)
    pred = old_run_layers(self.imnet.layers[1:], x, mlp_dtype)
    return ensemble_sum(pred, nb.weights)


OLD_EXACT = {"lte": old_lte_exact, "liif": old_liif_exact}


def with_old_query(net: torch.nn.Module, name: str) -> torch.nn.Module | None:
    """A copy of ``net`` whose decoder answers with the previous exact path (None: no old path)."""
    if name not in OLD_EXACT:
        return None
    old = copy.deepcopy(net)
    old.decoder.exact = types.MethodType(OLD_EXACT[name], old.decoder)
    return old


# --- --options --------------------------------------------------------------------------------


def option_loop(
    net: torch.nn.Module, batches: list, warmup: int, steps: int, autocast: bool = False
) -> tuple[float, float, float]:
    """(seconds per timed step, seconds of the first step, first loss) of the plain loop."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    loss_fn = torch.nn.L1Loss()
    net.train()
    ctx = partial(torch.autocast, "cpu", dtype=torch.bfloat16) if autocast else nullcontext
    first = first_loss = 0.0
    t0 = time.perf_counter()
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        ts = time.perf_counter()
        b = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        with ctx():
            loss = loss_fn(net(b["inp"], b["coord"], b["cell"]), b["gt"])
        loss.backward()
        opt.step()
        if i == 0:
            first, first_loss = time.perf_counter() - ts, float(loss.detach())
    return (time.perf_counter() - t0) / steps, first, first_loss


def run_options(args: argparse.Namespace, batches: list) -> None:
    options = args.options.split(",")
    unknown = set(options) - {"old", "fp32", "bf16", "compile"}
    if unknown:
        raise SystemExit(f"--options: unknown {sorted(unknown)}; use old, fp32, bf16, compile")
    cpu = torch.device("cpu")
    rows = []
    for name in args.decoders.split(","):
        net = build_model(name, args.encoder)
        results: dict[str, tuple[float, float, float]] = {}
        for option in options:
            if option == "old":
                old = with_old_query(net, name)
                if old is None:
                    print(f"  {name} old: no separate previous path (exact unchanged)")
                    continue
                results[option] = option_loop(old, batches, args.warmup, args.steps)
            elif option == "fp32":
                results[option] = option_loop(copy.deepcopy(net), batches, args.warmup, args.steps)
            elif option == "bf16":
                if not native_bf16(cpu) and not args.force_bf16:
                    print(f"  {name} bf16: skipped, this CPU has no native bf16 (--force-bf16)")
                    continue
                results[option] = option_loop(
                    copy.deepcopy(net), batches, args.warmup, args.steps, autocast=True
                )
            else:
                reason = compile_unavailable(cpu)
                if reason:
                    print(f"  {name} compile: skipped, {reason}")
                    continue
                compiled = copy.deepcopy(net)
                compiled.compile()
                results[option] = option_loop(compiled, batches, max(args.warmup, 1), args.steps)
            t, first, loss = results[option]
            print(
                f"  {name} {option}: {t:.3f} s/step (first step {first:.1f} s), "
                f"first loss {loss:.8f}",
                flush=True,
            )
        rows.append((name, results))
    base_name = options[0]
    print(f"\n{'decoder':<8} {'option':<8} {'it/s':>8} {'vs ' + base_name:>10}")
    for name, results in rows:
        base = results.get(base_name) or next(iter(results.values()), None)
        for option, (t, _, _) in results.items():
            ratio = f"{base[0] / t:9.3f}x" if base else ""
            print(f"{name:<8} {option:<8} {1 / t:8.3f} {ratio:>10}")


# --- --profile --------------------------------------------------------------------------------


def profile_step(net, batch, opt, loss_fn) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """One training step in timed sections; backward split by hooks on the table and features."""
    marks: dict[str, float] = {}

    def mark(key: str):  # type: ignore[no-untyped-def]
        def hook(grad: torch.Tensor) -> None:
            marks[key] = time.perf_counter()

        return hook

    t = [time.perf_counter()]
    opt.zero_grad(set_to_none=True)
    feat = net.features(batch["inp"])
    t.append(time.perf_counter())
    table = net.decoder.prepare(feat).float()
    t.append(time.perf_counter())
    pred = net.query(DecoderState(table, batch["inp"]), batch["coord"], batch["cell"])
    t.append(time.perf_counter())
    loss = loss_fn(pred, batch["gt"])
    t.append(time.perf_counter())
    table.register_hook(mark("table"))
    feat.register_hook(mark("feat"))
    loss.backward()
    t.append(time.perf_counter())
    opt.step()
    t.append(time.perf_counter())
    return {
        "encoder forward": t[1] - t[0],
        "decoder table (conv) forward": t[2] - t[1],
        "query forward": t[3] - t[2],
        "loss": t[4] - t[3],
        "query backward (to the table)": marks["table"] - t[4],
        "decoder table backward": marks["feat"] - marks["table"],
        "encoder backward": t[5] - marks["feat"],
        "optimizer": t[6] - t[5],
    }


def run_profile(args: argparse.Namespace, batches: list) -> None:
    from torch.profiler import ProfilerActivity, profile

    for name in args.decoders.split(","):
        net = build_model(name, args.encoder).train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        loss_fn = torch.nn.L1Loss()
        for i in range(args.warmup):
            profile_step(net, batches[i % len(batches)], opt, loss_fn)
        sums: dict[str, float] = {}
        for i in range(args.steps):
            for key, value in profile_step(net, batches[i % len(batches)], opt, loss_fn).items():
                sums[key] = sums.get(key, 0.0) + value / args.steps
        total = sum(sums.values())
        print(f"\n{name}: one step {total:.3f} s (mean of {args.steps})")
        for key, value in sums.items():
            print(f"  {key:<32} {value:8.3f} s {100 * value / total:6.1f}%")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            profile_step(net, batches[0], opt, loss_fn)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decoders", default="lte,liif,metasr")
    parser.add_argument("--encoder", default="edsr_baseline")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--options", default=None, help="e.g. old,fp32,bf16,compile")
    parser.add_argument("--force-bf16", action="store_true", help="time bf16 without native bf16")
    parser.add_argument("--profile", action="store_true", help="where one step's time goes")
    parser.add_argument("--top", type=int, default=25, help="--profile: ops listed")
    parser.add_argument(
        "--quick", action="store_true", help="tiny shapes (edsr_tiny, 4 x 16², 64 queries)"
    )
    parser.add_argument(
        "--allocator-defaults",
        action="store_true",
        help="leave glibc's allocator as it is (lte.train's keep_freed_memory=false)",
    )
    args = parser.parse_args()
    if not args.allocator_defaults:
        from lte.training.speed import keep_freed_memory

        print(keep_freed_memory(), "(as lte.train by default; --allocator-defaults: not)")
    torch.manual_seed(0)
    if args.quick:
        args.encoder = "edsr_tiny"
        batches = make_batches(4, batch=4, inp_size=16, sample_q=64)
    else:
        batches = make_batches(4)
    print(
        f"{args.encoder}, batch {tuple(batches[0]['inp'].shape)}, {batches[0]['coord'].shape[1]} "
        f"queries, {args.warmup} warm-up + {args.steps} timed steps, {torch.get_num_threads()} threads"
    )
    if args.profile:
        run_profile(args, batches)
        return
    if args.options:
        run_options(args, batches)
        return
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
