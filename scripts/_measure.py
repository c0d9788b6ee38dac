"""Measuring helpers shared by the ``scripts/bench_*.py`` benchmarks (not part of the package).

Why not ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: on Linux a process's ``ru_maxrss`` survives
``execve`` and starts from its parent's high-water mark (``vfork``/``posix_spawn`` share the parent's
memory until ``exec``), so a child started from a benchmark that has imported torch and built models
reports at least the parent's peak. ``VmHWM`` in ``/proc/self/status`` belongs to the process's own
address space, which ``exec`` replaces: it is the child's own peak.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path


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
