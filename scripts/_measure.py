"""Measuring helpers shared by the ``scripts/bench_*.py`` benchmarks (not part of the package).

Why not ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: on Linux a process's ``ru_maxrss`` survives
``execve`` and starts from its parent's high-water mark (``vfork``/``posix_spawn`` share the parent's
memory until ``exec``), so a child started from a benchmark that has imported torch and built models
reports at least the parent's peak. ``VmHWM`` in ``/proc/self/status`` belongs to the process's own
address space, which ``exec`` replaces: it is the child's own peak.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

#: ``/usr/bin/time`` reports the peak RSS of its own child. A child started straight from a large
#: benchmark process would carry that process's high-water mark through ``exec`` in ``ru_maxrss``.
TIME = "/usr/bin/time"


def peak_rss_mib() -> float:
    """This process's own peak resident set size in MiB (``VmHWM``; ``ru_maxrss`` where absent)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)  # bytes on macOS, else kB


def use_threads(threads: int) -> None:
    """``torch.set_num_threads(threads)`` only when it changes the count.

    Why: with torch 2.13 on a 2-core AVX2 EPYC, calling ``torch.set_num_threads(2)`` in a process
    that already had 2 threads made ``cos``/``sin`` written into column slices 6x slower, which
    made bench_infer's rows 1.5x slower than ``lte.upscale`` (which never sets the count).
    """
    import torch

    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)


def run_process(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` as a process of its own: its wall seconds and peak RSS in MiB.

    The peak is measured by :data:`TIME` where present (forked from a small process, so it is the
    command's own); without it, ``ru_maxrss`` from ``wait4``, which on Linux is at least this
    process's peak. A failing command stops the benchmark with its stderr's tail.
    """
    full = [TIME, "-f", "lte-bench-maxrss-kb=%M", *cmd] if os.path.exists(TIME) else cmd
    t0 = time.perf_counter()
    proc = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed ({code}):\n{err[-2000:]}")
    peak_kb = usage.ru_maxrss
    for line in err.splitlines():
        if line.startswith("lte-bench-maxrss-kb="):
            peak_kb = int(line.split("=", 1)[1])
    return wall, peak_kb / 1024
