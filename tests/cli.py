"""Running lte's command-line entry points in a subprocess, as a user would (test helper).

Every end-to-end test runs ``python -m lte.<tool>`` the same way: W&B without an account (the key
and a forced mode are dropped, so runs log offline into their run folder) and one OpenMP thread (the
suite shares two cores), from the repository root unless told otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_module(
    module: str, *args: str, cwd: Path = ROOT, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m module *args`` with W&B offline and one thread; output captured as text."""
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_MODE")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
