"""The GPU check (issue #23): lte's CUDA paths, checked in minutes on a lent GPU machine.

A GPU machine is lent for minutes, so the check must start at once and say everything in one report:
each section drives the project's own command lines (``python -m lte.train``, ``lte.test``,
``lte.upscale``) in subprocesses, as a user would, with its own time budget; a section that fails
or runs out of time is recorded and the next one still runs. The report is one JSON file and a
table; the exit status is 1 if any check failed.

Sections (docs/gpu.md says what each one's numbers mean):

- ``model``: a brief ``lte.train`` run on the bundled photos; the model the next sections use.
- ``parity``: ``lte.upscale`` and ``lte.test`` on the device against the CPU: images within one
  8-bit level, PSNR within 0.001 dB.
- ``training``: 50 steps of LTE, LIIF and Meta-SR at the paper's shape in float32,
  ``trainer.precision=bf16-mixed`` and ``model.compile=true``: it/s, peak memory, the loss.
- ``ddp``: DDP over every visible device (NCCL; gloo over 2 CPU processes in ``--smoke``), then a
  resume from ``last.ckpt`` that must continue the step counter.
- ``tf32``: ``float32_matmul_precision`` as the run sees it, and what the GPU's matmul does.
- ``compile_backend``: ``lte.upscale --backend compile`` against ``eager`` on CUDA.

``--smoke`` runs the same sections with a tiny model and a few steps, so the script itself is
tested on a CPU (``tests/test_gpu_check.py``)::

    bash scripts/gpu_check.sh --out gpu_check.json            # on the GPU machine
    bash scripts/gpu_check.sh --smoke --out /tmp/report.json   # anywhere: CPU, tiny, ~2 minutes
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
VAL_DIR = "data/sample/val"
PROBE_FILE = "gpu_probe.json"  # gpu_check_probe.PROBE_FILE, without importing Lightning here
REPORT_VERSION = 1

SECTIONS = ("model", "parity", "training", "ddp", "tf32", "compile_backend")
DECODERS = ("lte", "liif", "metasr")
#: Training options (``trainer.precision=32-true``, ``=bf16-mixed``, ``model.compile=true``);
#: float32 is the reference of the others.
OPTIONS = ("fp32", "bf16", "compile")

#: Seconds per section on a GPU: 480 in all, the 8 minutes the check may take (``--budget-scale``).
GPU_BUDGETS = {
    "model": 40,
    "parity": 90,
    "training": 195,
    "ddp": 60,
    "tf32": 25,
    "compile_backend": 70,
}
#: ``--smoke``: generous, since a busy 2-core machine is slow to start each process.
SMOKE_BUDGETS = dict.fromkeys(SECTIONS, 240)

#: Pass rules (docs/gpu.md).
MAX_LEVEL_DIFF = 1  # 8-bit levels, device against CPU and compile against eager
MAX_PSNR_DIFF = 0.001  # dB, lte.test on the device against the CPU
MAX_LOSS_REL_DIFF = 0.03  # mean loss of the last 10 steps, an option against float32
TF32_MIN_ERROR = 1e-4  # a 1024-deep float32 matmul: about 1e-3 in TF32, about 1e-6 in IEEE
IEEE_MAX_ERROR = 1e-5
LOSS_WINDOW = 10


class SectionTimeoutError(Exception):
    """A command ran past its section's budget (it was killed, with its child processes)."""


class SectionSkippedError(Exception):
    """The section cannot run on this machine (e.g. no CUDA); the message says why."""


@dataclass(frozen=True)
class Settings:
    """Everything one check run needs, decided once from the command line and the machine."""

    smoke: bool
    device: str  # "cuda" or "cpu": where the model runs; the CPU is always the reference
    gpus: int  # CUDA devices visible
    work: Path
    budgets: dict[str, float]
    options: tuple[str, ...]
    train_steps: int
    model_steps: int
    ddp_steps: int
    scale: float  # lte.upscale's --scale

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def encoder_args(self) -> list[str]:
        """EDSR-baseline, the paper's encoder; EDSR-tiny (2 blocks, 16 channels) in ``--smoke``."""
        return ["encoder=edsr_tiny" if self.smoke else "encoder=edsr_baseline"]

    def model_args(self) -> list[str]:
        """The LTE network of the ``model``, ``ddp`` and ``tf32`` sections.

        In ``--smoke`` its MLP is 16 wide, so that ``lte.test`` and ``lte.upscale`` take seconds
        on a busy 2-core CPU.
        """
        narrow = ["model.decoder.hidden_dim=16", "model.decoder.mlp_hidden=[16,16]"]
        return ["model=lte", *self.encoder_args(), *(narrow if self.smoke else [])]

    def train_args(self, steps: int, *, batch: int | None = None) -> list[str]:
        """The data and trainer of a training run of ``steps`` steps on the bundled photos.

        The paper's shape on a GPU (batch 16, 48² LR patches, 2304 queries). ``data.repeat`` makes
        the epoch longer than the run, so it stops on ``max_steps`` before any validation.
        """
        batch = batch or (4 if self.smoke else 16)
        if self.smoke:
            size = ["data.inp_size=16", "data.sample_q=64"]
            loader = ["data.num_workers=0"]
        else:
            size = ["data.inp_size=48", "data.sample_q=2304"]
            loader = ["data.num_workers=4", "data.persistent_workers=true"]
        photos = len(list((ROOT / "data/sample/train").glob("*.png")))
        size += [f"data.batch_size={batch}", f"data.repeat={(steps + 1) * batch // photos + 1}"]
        accelerator = "gpu" if self.cuda else "cpu"
        return [
            "data=sample",
            *size,
            *loader,
            f"trainer.accelerator={accelerator}",
            "trainer.num_sanity_val_steps=0",
            "trainer.log_every_n_steps=10",
            "trainer.enable_progress_bar=false",
            "print_config=false",
            "logger=csv",
            "seed=0",
        ]


@dataclass
class Check:
    """One pass rule applied to one measured value; ``status`` is passed, failed or skipped."""

    name: str
    status: str
    value: Any
    rule: str


@dataclass
class Section:
    """One section's outcome: its checks, what it measured, and where its logs are."""

    name: str
    budget_s: float
    status: str = "running"
    reason: str | None = None
    seconds: float = 0.0
    checks: list[Check] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)
    log_dir: Path = Path(".")
    deadline: float = 0.0

    def check(self, name: str, ok: bool | None, value: Any, rule: str) -> bool:
        """Record a check (``ok`` None: skipped, ``rule`` then says why); returns ``ok is True``."""
        status = "skipped" if ok is None else ("passed" if ok else "failed")
        self.checks.append(Check(name, status, value, rule))
        return ok is True

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


# --- running the project's command lines ---------------------------------------------------------


#: SLURM's task counts, hidden from the runs: the check is one SLURM task that starts its own
#: processes, and with these set Lightning would expect ``srun`` to have started one task per GPU
#: (and refuse ``trainer.devices=N`` in a one-task job) instead of starting the DDP workers itself.
SLURM_TASK_VARIABLES = ("SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_NPROCS")


def child_env() -> dict[str, str]:
    """The environment of every command: W&B offline, ``scripts/`` importable (the probe), and
    SLURM's task counts left out (:data:`SLURM_TASK_VARIABLES`)."""
    env = {k: v for k, v in os.environ.items() if k not in SLURM_TASK_VARIABLES}
    env["WANDB_MODE"] = "offline"
    env.pop("WANDB_API_KEY", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SCRIPTS), env.get("PYTHONPATH")) if p)
    return env


def run_cli(section: Section, log_name: str, module: str, *args: str) -> None:
    """``python -m module *args`` from the repository root within the section's budget.

    The output goes to ``<work>/logs/<log_name>.log`` (listed in the report). A command still
    running at the deadline is killed with its whole process group (DDP workers included) and
    raises :class:`SectionTimeoutError`; a non-zero exit raises ``RuntimeError`` with its last line.
    """
    log = section.log_dir / f"{log_name}.log"
    section.logs.append(str(log))
    timeout = section.remaining()
    if timeout <= 1:
        raise SectionTimeoutError(f"no time left for {log_name} (budget {section.budget_s:g} s)")
    cmd = [sys.executable, "-m", module, *args]
    with log.open("w") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise SectionTimeoutError(
                f"{log_name} ran past the section's budget of {section.budget_s:g} s (killed)"
            ) from None
        except KeyboardInterrupt:  # its own session gets no Ctrl-C from the terminal: end it here
            kill_group(proc)
            raise
    if rc != 0:
        raise RuntimeError(f"{log_name} exited with status {rc}: {last_line(log)} (log: {log})")


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """End a command and every process it started (its own session): TERM, then KILL."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def last_line(log: Path) -> str:
    """The last non-empty line of a log, where a CLI's ``error: ...`` line is."""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "(no output)"


def read_probe(run_dir: Path) -> dict[str, Any] | None:
    """What :class:`gpu_check_probe.StepProbe` wrote in a run directory, or None."""
    path = run_dir / PROBE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def probe_args() -> list[str]:
    return ["+callbacks.gpu_probe._target_=gpu_check_probe.StepProbe"]


def checkpoint_step(path: Path) -> int:
    """The ``global_step`` a Lightning checkpoint holds (read as data, no code)."""
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


# --- comparisons ---------------------------------------------------------------------------------


def compare_images(ref_dir: Path, dev_dir: Path) -> dict[str, Any]:
    """Largest per-pixel difference in 8-bit levels between same-named images of two folders."""
    import numpy as np
    from PIL import Image

    names = sorted(p.name for p in ref_dir.iterdir() if p.is_file())
    if not names:
        raise RuntimeError(f"no images in {ref_dir}")
    per_image = {}
    for name in names:
        other = dev_dir / name
        if not other.is_file():
            raise RuntimeError(f"{other} is missing")
        a = np.asarray(Image.open(ref_dir / name), dtype=np.int16)
        b = np.asarray(Image.open(other), dtype=np.int16)
        if a.shape != b.shape:
            raise RuntimeError(f"{name}: {a.shape} against {b.shape}")
        diff = np.abs(a - b)
        per_image[name] = {
            "size": [int(a.shape[1]), int(a.shape[0])],
            "max_level_diff": int(diff.max()),
            "pixels_differing": int((diff.max(axis=-1) > 0).sum()),
            "mean_level": float(b.mean()),
            "std_level": float(b.std()),
        }
    return {
        "images": per_image,
        "max_level_diff": max(v["max_level_diff"] for v in per_image.values()),
    }


def psnr_records(path: Path) -> dict[str, float]:
    """``lte.test``'s records as ``{"<testset> x<scale>": psnr}``."""
    records = json.loads(path.read_text())
    return {f"{r['testset']} x{r['scale']:g}": float(r["psnr"]) for r in records}


def loss_summary(probe: dict[str, Any], warmup: int) -> dict[str, Any]:
    """it/s after ``warmup`` steps, the first step's seconds, the losses and peak memory of a run."""
    losses = [x for x in probe["losses"] if x is not None]
    ends = probe["step_ends"]
    steps = len(ends)
    timed = steps - warmup
    its = timed / (ends[-1] - ends[warmup - 1]) if timed > 0 and warmup >= 1 else None
    window = losses[-LOSS_WINDOW:]
    peak = probe.get("peak_memory_bytes")
    return {
        "steps": probe["end_step"] - probe["start_step"],
        "it_per_s": its,
        "first_step_s": ends[0] if ends else None,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "loss_last_mean": sum(window) / len(window) if window else None,
        "skipped_steps": sum(x is None for x in probe["losses"]),
        "peak_memory_mib": peak / 2**20 if peak is not None else None,
        "precision": probe["precision"],
        "float32_matmul_precision": probe["float32_matmul_precision"],
    }


# --- the training commands (tests/test_gpu_check.py composes the GPU ones) ---------------------


def model_command(s: Settings, run_dir: Path) -> list[str]:
    """``lte.train`` arguments of the ``model`` section: LTE, ``model_steps`` steps, checkpoints."""
    return [
        *s.model_args(),
        *s.train_args(s.model_steps),
        "trainer.devices=1",
        f"trainer.max_steps={s.model_steps}",
        "callbacks=minimal",
        *probe_args(),
        f"hydra.run.dir={run_dir}",
    ]


def training_command(s: Settings, precisions: str, extra: Sequence[str], sweep: Path) -> list[str]:
    """A multirun over the three decoders and ``precisions`` (``32-true,bf16-mixed``)."""
    return [
        "-m",
        f"model={','.join(DECODERS)}",
        f"trainer.precision={precisions}",
        *s.encoder_args(),
        *s.train_args(s.train_steps),
        *(["model.decoder.mlp_hidden=[16,16]"] if s.smoke else []),
        "trainer.devices=1",
        f"trainer.max_steps={s.train_steps}",
        "callbacks=none",
        *probe_args(),
        *extra,
        f"hydra.sweep.dir={sweep}",
    ]


def ddp_command(s: Settings, devices: int, run_dir: Path) -> list[str]:
    """DDP over ``devices`` (16 samples each, 4 in ``--smoke``); the caller adds the step limit."""
    per_device = 4 if s.smoke else 16
    return [
        *s.model_args(),
        *s.train_args(2 * s.ddp_steps, batch=per_device * devices),
        f"trainer.devices={devices}",
        "trainer.strategy=ddp",
        "callbacks=minimal",
        *probe_args(),
        f"hydra.run.dir={run_dir}",
    ]


def tf32_command(s: Settings, values: Sequence[str], sweep: Path) -> list[str]:
    """One step per ``float32_matmul_precision`` value, one multirun."""
    return [
        "-m",
        f"float32_matmul_precision={','.join(values)}",
        *s.model_args(),
        *s.train_args(1),
        "trainer.devices=1",
        "trainer.max_steps=1",
        "callbacks=none",
        *probe_args(),
        f"hydra.sweep.dir={sweep}",
    ]


# --- sections ------------------------------------------------------------------------------------


def val_dir(s: Settings) -> Path:
    """The photos ``parity`` and ``compile_backend`` upscale and score: the bundled validation
    photos, or in ``--smoke`` a 96 x 72 crop of the centre of each (written once into the work
    folder), so that a tiny model on a busy 2-core CPU takes seconds per command, not minutes."""
    if not s.smoke:
        return ROOT / VAL_DIR
    crops = s.work / "val_crops"
    if not crops.is_dir():
        from PIL import Image

        tmp = s.work / "val_crops.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        for photo in sorted((ROOT / VAL_DIR).glob("*.png")):
            with Image.open(photo) as im:
                w, h = im.size
                box = ((w - 96) // 2, (h - 72) // 2, (w + 96) // 2, (h + 72) // 2)
                im.convert("RGB").crop(box).save(tmp / photo.name)
        tmp.rename(crops)
    return crops


def model_checkpoint(s: Settings) -> Path:
    return s.work / "model" / "checkpoints" / "last.ckpt"


def section_model(s: Settings, sec: Section) -> None:
    """Train the model the ``parity`` and ``compile_backend`` sections use: LTE, briefly."""
    run_dir = s.work / "model"
    run_cli(sec, "model_train", "lte.train", *model_command(s, run_dir))
    probe = read_probe(run_dir)
    ckpt = model_checkpoint(s)
    sec.check("checkpoint written", ckpt.is_file(), str(ckpt), "last.ckpt exists")
    if probe is None:
        sec.check("probe", False, None, f"{PROBE_FILE} written by the run")
        return
    summary = loss_summary(probe, warmup=min(5, len(probe["step_ends"]) - 1))
    sec.results.update(summary)
    sec.check("steps", summary["steps"] == s.model_steps, summary["steps"], f"== {s.model_steps}")
    last = summary["loss_last"]
    sec.check("loss finite", last is not None and math.isfinite(last), last, "finite")


def need_model(s: Settings) -> Path:
    ckpt = model_checkpoint(s)
    if not ckpt.is_file():
        raise RuntimeError(f"no model to check: {ckpt} is missing (see the model section)")
    return ckpt


def upscale_folder(s: Settings, sec: Section, name: str, ckpt: Path, *extra: str) -> Path:
    """``lte.upscale`` of the bundled validation photos into ``<work>/upscale/<name>``."""
    out = s.work / "upscale" / name
    run_cli(
        sec,
        f"upscale_{name}",
        "lte.upscale",
        str(val_dir(s)),
        str(out),
        "--ckpt",
        str(ckpt),
        "--scale",
        f"{s.scale:g}",
        "--no-progress",
        *extra,
    )
    return out


def section_parity(s: Settings, sec: Section) -> None:
    """``lte.upscale`` and ``lte.test`` on the device against the CPU, same model and photos."""
    ckpt = need_model(s)
    ref = upscale_folder(s, sec, "cpu", ckpt, "--device", "cpu")
    dev = upscale_folder(s, sec, f"{s.device}_parity", ckpt, "--device", s.device)
    images = compare_images(ref, dev)
    sec.results["upscale"] = images
    sec.check(
        "upscale max level diff",
        images["max_level_diff"] <= MAX_LEVEL_DIFF,
        images["max_level_diff"],
        f"<= {MAX_LEVEL_DIFF} (8-bit levels, {s.device} against cpu)",
    )
    stds = [v["std_level"] for v in images["images"].values()]
    sec.check("outputs non-trivial", min(stds) > 5, min(stds), "std of every output > 5 levels")
    scores = {}
    for tag, device in (("cpu", "cpu"), (f"{s.device}_parity", s.device)):
        out = s.work / "test" / tag
        run_cli(
            sec,
            f"test_{tag}",
            "lte.test",
            f"ckpt={ckpt}",
            "testset=folder",
            f"testset.hr_dir={val_dir(s)}",
            "testset.name=sample",
            "testset.protocol=div2k",
            f"device={device}",
            f"results_file={out / 'results.json'}",
            f"hydra.run.dir={out}",
        )
        scores[tag] = psnr_records(out / "results.json")
    cpu, dev_scores = scores["cpu"], scores[f"{s.device}_parity"]
    diffs = {k: abs(cpu[k] - dev_scores[k]) for k in cpu if k in dev_scores}
    sec.results["test"] = {"psnr": scores, "abs_diff_db": diffs}
    sec.check("test records", set(cpu) == set(dev_scores) and bool(cpu), sorted(cpu), "same rows")
    worst = max(diffs.values()) if diffs else math.inf
    sec.check(
        "test max PSNR diff", worst <= MAX_PSNR_DIFF, worst, f"<= {MAX_PSNR_DIFF} dB ({s.device})"
    )


def option_of(probe: dict[str, Any]) -> str:
    """Which training option a run was, from what the probe saw inside it."""
    if probe.get("compiled"):
        return "compile"
    return "bf16" if "bf16" in str(probe.get("precision")) else "fp32"


def section_training(s: Settings, sec: Section) -> None:
    """50 steps of each decoder under each option; losses against float32's, it/s, peak memory.

    One Hydra multirun process runs the decoders under float32 and bf16-mixed, one job after
    another, so its start-up is paid once; ``model.compile`` runs in a second process, last, as
    it is the slowest and the likeliest to fail. A job's option and decoder are read back from
    its probe, not from the job's number.
    """
    warmup = min(10, max(1, s.train_steps // 5))
    precisions = {"fp32": "32-true", "bf16": "bf16-mixed"}
    groups = [("eager", [o for o in s.options if o != "compile"], [])]
    if "compile" in s.options:
        groups.append(("compile", ["fp32"], ["model.compile=true"]))
    runs: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for name, options, extra in groups:
        sweep = s.work / "training" / name
        chosen = ",".join(precisions[o] for o in options)
        try:
            run_cli(sec, f"train_{name}", "lte.train", *training_command(s, chosen, extra, sweep))
        except (RuntimeError, SectionTimeoutError) as err:  # the jobs that finished still count
            errors[name] = str(err)
        for job in sorted(sweep.glob("*/" + PROBE_FILE)) if sweep.is_dir() else []:
            probe = json.loads(job.read_text())
            runs[f"{probe.get('decoder')}/{option_of(probe)}"] = loss_summary(probe, warmup)
    if "compile" not in s.options:
        sec.check(
            "compile", None, None, "skipped: --smoke leaves model.compile out (minutes on a CPU)"
        )
    for decoder in DECODERS:
        ref = runs.get(f"{decoder}/fp32", {}).get("loss_last_mean")
        for option in s.options:
            key = f"{decoder}/{option}"
            run = runs.get(key)
            if run is None:
                why = errors.get("compile" if option == "compile" else "eager", "no probe record")
                runs[key] = {"error": why}
                sec.check(f"{key} ran", False, None, why)
                continue
            steps = run["steps"]
            sec.check(f"{key} steps", steps == s.train_steps, steps, f"== {s.train_steps}")
            mean = run["loss_last_mean"]
            if mean is None or not math.isfinite(mean):
                sec.check(f"{key} loss finite", False, mean, "finite")
                continue
            if option == "fp32" or ref is None:
                continue
            rel = abs(mean - ref) / abs(ref)
            run["loss_rel_diff_fp32"] = rel
            sec.check(
                f"{key} loss vs fp32",
                rel <= MAX_LOSS_REL_DIFF,
                rel,
                f"<= {MAX_LOSS_REL_DIFF} relative, mean of the last {LOSS_WINDOW} steps",
            )
    order = [f"{d}/{o}" for o in s.options for d in DECODERS]
    sec.results.update(
        runs={k: runs[k] for k in order if k in runs}, warmup_steps=warmup, steps=s.train_steps
    )


def section_ddp(s: Settings, sec: Section) -> None:
    """DDP over every device (NCCL on GPUs, gloo over 2 CPU processes), then a resume."""
    devices = s.gpus if s.cuda else 2
    backend = "nccl" if s.cuda else "gloo"
    run_dir = s.work / "ddp"
    args = ddp_command(s, devices, run_dir)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    first, second = s.ddp_steps, 2 * s.ddp_steps
    run_cli(sec, "ddp_first", "lte.train", *args, f"trainer.max_steps={first}")
    probe = read_probe(run_dir) or {}
    sec.results["first"] = {k: probe.get(k) for k in ("world_size", "process_group_backend")}
    sec.check(
        "world size", probe.get("world_size") == devices, probe.get("world_size"), f"== {devices}"
    )
    got = probe.get("process_group_backend")
    sec.check("backend", got == backend, got, f"== {backend}")
    sec.check(
        "first run steps", probe.get("end_step") == first, probe.get("end_step"), f"== {first}"
    )
    saved = checkpoint_step(ckpt)
    sec.check("last.ckpt step", saved == first, saved, f"== {first}")
    (run_dir / PROBE_FILE).unlink(missing_ok=True)  # the resumed start must write its own
    run_cli(sec, "ddp_resume", "lte.train", *args, f"trainer.max_steps={second}", "ckpt_path=last")
    resumed = read_probe(run_dir) or {}
    start = resumed.get("start_step")
    sec.check("resume starts at", start == first, start, f"== {first} (the step counter continues)")
    end = resumed.get("end_step")
    sec.check("resume ends at", end == second, end, f"== {second}")
    saved = checkpoint_step(ckpt)
    sec.check("resumed last.ckpt step", saved == second, saved, f"== {second}")
    sec.results["resume"] = {
        "start_step": start,
        "end_step": end,
        "world_size": resumed.get("world_size"),
    }


def project_matmul_precision() -> str:
    """The project's TF32 setting: ``float32_matmul_precision`` in ``conf/train.yaml``."""
    from omegaconf import OmegaConf

    from lte.conf import CONF_DIR

    return str(OmegaConf.load(CONF_DIR / "train.yaml")["float32_matmul_precision"])


def section_tf32(s: Settings, sec: Section) -> None:
    """The precision each run trains with, as torch reports it inside the run, and on CUDA what a
    float32 matmul actually computes: the project's ``high`` (TF32) against ``highest`` (IEEE)."""
    default = project_matmul_precision()
    sec.results["project_setting"] = (
        f"float32_matmul_precision: {default} (src/lte/conf/train.yaml)"
    )
    values = [default] if default == "highest" else [default, "highest"]
    sweep = s.work / "tf32"
    run_cli(sec, "tf32", "lte.train", *tf32_command(s, values, sweep))
    for i, value in enumerate(values):
        probe = read_probe(sweep / str(i)) or {}
        tf32 = value != "highest"
        seen = {
            k: probe.get(k)
            for k in ("float32_matmul_precision", "cuda_matmul_allow_tf32", "matmul_rel_error")
        }
        sec.results[value] = seen
        got = seen["float32_matmul_precision"]
        sec.check(
            f"{value}: torch.get_float32_matmul_precision()", got == value, got, f"== {value}"
        )
        allow = seen["cuda_matmul_allow_tf32"]
        sec.check(f"{value}: allow_tf32", allow is tf32, allow, f"is {tf32}")
        err = seen["matmul_rel_error"]
        if not s.cuda:
            sec.check(f"{value}: matmul error", None, None, "skipped: no CUDA")
        elif tf32:
            rule = f">= {TF32_MIN_ERROR} (TF32 in use)"
            sec.check(
                f"{value}: matmul error", err is not None and err >= TF32_MIN_ERROR, err, rule
            )
        else:
            rule = f"<= {IEEE_MAX_ERROR} (IEEE float32)"
            sec.check(
                f"{value}: matmul error", err is not None and err <= IEEE_MAX_ERROR, err, rule
            )


def section_compile_backend(s: Settings, sec: Section) -> None:
    """``lte.upscale --backend compile`` against ``--backend eager``, both on CUDA."""
    if not s.cuda:
        raise SectionSkippedError("no CUDA")
    ckpt = need_model(s)
    times = {}
    outs = {}
    for backend in ("eager", "compile"):
        t0 = time.monotonic()
        outs[backend] = upscale_folder(
            s, sec, f"cuda_{backend}", ckpt, "--device", "cuda", "--backend", backend
        )
        times[backend] = time.monotonic() - t0
    images = compare_images(outs["eager"], outs["compile"])
    sec.results.update(images=images, command_seconds=times)
    sec.check(
        "compile vs eager max level diff",
        images["max_level_diff"] <= MAX_LEVEL_DIFF,
        images["max_level_diff"],
        f"<= {MAX_LEVEL_DIFF} (8-bit levels)",
    )


RUNNERS: dict[str, Callable[[Settings, Section], None]] = {
    "model": section_model,
    "parity": section_parity,
    "training": section_training,
    "ddp": section_ddp,
    "tf32": section_tf32,
    "compile_backend": section_compile_backend,
}


# --- the run and its report ------------------------------------------------------------------------


def run_section(s: Settings, sec: Section, total_deadline: float) -> None:
    """Run one section within its budget (and the whole check's); record how it ended."""
    start = time.monotonic()
    sec.deadline = min(start + sec.budget_s, total_deadline)
    try:
        if sec.deadline - start < 5:
            raise SectionTimeoutError("the check's total time was spent before this section")
        RUNNERS[sec.name](s, sec)
    except SectionSkippedError as why:
        sec.status, sec.reason = "skipped", f"skipped: {why}"
    except SectionTimeoutError as err:
        sec.status, sec.reason = "failed", f"timed out: {err}"
    except Exception as err:  # any failure is the section's; the others still run
        sec.status, sec.reason = "failed", f"{type(err).__name__}: {err}"
    else:
        failed = [c.name for c in sec.checks if c.status == "failed"]
        ran = [c for c in sec.checks if c.status != "skipped"]
        if failed:
            sec.status, sec.reason = "failed", "failed: " + ", ".join(failed)
        elif not ran:
            sec.status = "skipped"
            sec.reason = sec.reason or "skipped: " + "; ".join(c.rule for c in sec.checks)
        else:
            sec.status = "passed"
    sec.seconds = round(time.monotonic() - start, 1)


def machine() -> dict[str, Any]:
    """What ran the check: host, Python, torch and CUDA, the GPUs, the commit."""
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpus": gpus,
        "cpu_count": os.cpu_count(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "commit": commit or None,
    }


def report_dict(
    s: Settings, sections: Sequence[Section], started: datetime, done: bool, info: dict[str, Any]
) -> dict[str, Any]:
    failed = [x.name for x in sections if x.status == "failed"]
    return {
        "report_version": REPORT_VERSION,
        "tool": "scripts/gpu_check.py",
        "mode": "smoke" if s.smoke else "gpu",
        "device": s.device,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds") if done else None,
        "seconds": round((datetime.now(timezone.utc) - started).total_seconds(), 1),
        "passed": done and not failed,
        "failed_sections": failed,
        "machine": info,
        "settings": {
            "work": str(s.work),
            "budgets_s": s.budgets,
            "options": list(s.options),
            "train_steps": s.train_steps,
            "model_steps": s.model_steps,
            "ddp_steps": s.ddp_steps,
            "upscale_scale": s.scale,
            "rules": {
                "max_level_diff": MAX_LEVEL_DIFF,
                "max_psnr_diff_db": MAX_PSNR_DIFF,
                "max_loss_rel_diff": MAX_LOSS_REL_DIFF,
                "loss_window_steps": LOSS_WINDOW,
                "tf32_min_matmul_error": TF32_MIN_ERROR,
                "ieee_max_matmul_error": IEEE_MAX_ERROR,
            },
        },
        "sections": {
            x.name: {k: v for k, v in asdict(x).items() if k not in ("name", "deadline", "log_dir")}
            for x in sections
        },
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write the report whole or not at all (temp file + rename): a killed check leaves the last one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def table(sections: Sequence[Section]) -> str:
    """The report at a glance: one row per section and its worst news."""
    rows = [("section", "status", "seconds", "budget", "note")]
    for x in sections:
        note = x.reason or f"{sum(c.status == 'passed' for c in x.checks)} checks passed"
        rows.append((x.name, x.status, f"{x.seconds:g}", f"{x.budget_s:g}", note[:100]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
        for r in rows
    )


def training_table(section: Section) -> str | None:
    """it/s, first step, peak memory and loss per decoder and option (the training section)."""
    runs = section.results.get("runs")
    if not runs:
        return None
    lines = ["run           it/s    1st step  peak MiB  loss(last10)  vs fp32"]
    for key, r in runs.items():
        if "error" in r:
            lines.append(f"{key:<13} {r['error'][:60]}")
            continue

        def num(v: Any, fmt: str) -> str:
            return format(v, fmt) if isinstance(v, int | float) else "-"

        lines.append(
            f"{key:<13} {num(r['it_per_s'], '6.2f'):>6}  {num(r['first_step_s'], '7.1f'):>7}s"
            f"  {num(r['peak_memory_mib'], '8.0f'):>8}  {num(r['loss_last_mean'], '12.5f'):>12}"
            f"  {num(r.get('loss_rel_diff_fp32'), '.2%'):>7}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/gpu_check.sh",
        description="Check lte on a GPU in minutes: parity with the CPU, training options, DDP "
        "and resume, TF32, the compile backend. One JSON report; exit 1 if a check failed.",
    )
    p.add_argument("--out", required=True, type=Path, help="the JSON report to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--smoke", action="store_true", help="tiny model, a few steps (CPU test)")
    p.add_argument(
        "--device", default="auto", choices=("auto", "cuda", "cpu"), help="auto: cuda if present"
    )
    p.add_argument(
        "--work", type=Path, help="run folders and logs (default: outputs/gpu_check/<time>)"
    )
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated, in order")
    p.add_argument(
        "--options", help="training options (default fp32,bf16,compile; --smoke: fp32,bf16)"
    )
    p.add_argument("--budget-scale", type=float, default=1.0, help="multiply every time budget")
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace, cuda_devices: int, started: datetime) -> Settings:
    """Validate the options against this machine; a mistake is one ``error:`` line (SystemExit 2)."""

    def fail(msg: str) -> SystemExit:
        print(f"error: {msg}", file=sys.stderr)
        return SystemExit(2)

    device = args.device
    if device == "auto":
        device = "cuda" if cuda_devices else "cpu"
    if device == "cuda" and not cuda_devices:
        raise fail(
            "--device cuda: torch sees no CUDA device (nvidia-smi; the CUDA build of torch?)"
        )
    if device == "cpu" and not args.smoke:
        raise fail(
            "the full check trains at the paper's shape and needs a GPU; on a CPU run --smoke"
        )
    sections = tuple(x for x in args.sections.split(",") if x)
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown or not sections:
        raise fail(f"--sections: unknown {unknown}; choose from {','.join(SECTIONS)}")
    default_options = "fp32,bf16" if args.smoke else "fp32,bf16,compile"
    options = tuple(x for x in (args.options or default_options).split(",") if x)
    if set(options) - set(OPTIONS) or "fp32" not in options:
        raise fail(f"--options {args.options}: choose from {','.join(OPTIONS)}, fp32 included")
    if not args.budget_scale > 0:
        raise fail("--budget-scale must be > 0")
    base = SMOKE_BUDGETS if args.smoke else GPU_BUDGETS
    stamp = started.strftime("%Y-%m-%d_%H-%M-%S")
    work = (args.work or ROOT / "outputs" / "gpu_check" / stamp).resolve()
    if work.exists() and any(work.iterdir()):  # its run folders would refuse to start again
        raise fail(f"--work {work} is not empty: choose a new folder")
    return Settings(
        smoke=args.smoke,
        device=device,
        gpus=cuda_devices,
        work=work,
        budgets={k: base[k] * args.budget_scale for k in sections},
        options=tuple(o for o in OPTIONS if o in options),  # fp32 first, compile last
        train_steps=5 if args.smoke else 50,
        model_steps=8 if args.smoke else 200,
        ddp_steps=2 if args.smoke else 20,
        scale=2.0 if args.smoke else 2.5,
    )


def stop_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (``kill``, SLURM's time limit) ends the check as Ctrl-C does: the running command
    is ended with its process group and the report keeps the sections already done."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    out = args.out.resolve()
    if out.exists() and not args.overwrite:
        print(
            f"error: {args.out} exists: choose another --out, or add --overwrite", file=sys.stderr
        )
        return 2
    if not out.parent.is_dir():
        print(f"error: --out: the folder {out.parent} does not exist", file=sys.stderr)
        return 2
    started = datetime.now(timezone.utc)
    import torch

    s = settings_from(args, torch.cuda.device_count(), started)
    log_dir = s.work / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    info = machine()
    sections = [Section(name, budget, log_dir=log_dir) for name, budget in s.budgets.items()]
    total_deadline = time.monotonic() + sum(s.budgets.values())
    print(f"gpu check ({'smoke' if s.smoke else 'gpu'}, {s.device}): work folder {s.work}")
    for sec in sections:
        print(f"- {sec.name} (budget {sec.budget_s:g} s) ...", flush=True)
        try:
            run_section(s, sec, total_deadline)
        except KeyboardInterrupt:
            sec.status, sec.reason = "failed", "interrupted (Ctrl-C or SIGTERM)"
            write_json(out, report_dict(s, sections, started, False, info))
            print(f"interrupted: the report so far is in {out}", file=sys.stderr)
            return 130
        print(f"  {sec.status} in {sec.seconds:g} s{': ' + sec.reason if sec.reason else ''}")
        # After every section, so that a check stopped from outside (a SLURM time limit) still
        # leaves a report of what it did ("finished": null).
        write_json(out, report_dict(s, sections, started, False, info))
    report = report_dict(s, sections, started, True, info)
    write_json(out, report)
    print()
    print(table(sections))
    train = next((x for x in sections if x.name == "training"), None)
    detail = training_table(train) if train else None
    if detail:
        print()
        print(detail)
    print(
        f"\nreport: {out} ({'passed' if report['passed'] else 'FAILED'}, {report['seconds']:g} s)"
    )
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
