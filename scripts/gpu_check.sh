#!/usr/bin/env bash
# The GPU check (docs/gpu.md): ready to run the minute a GPU machine is lent.
#
#   bash scripts/gpu_check.sh --out gpu_check.json            # every section, about 8 minutes
#   bash scripts/gpu_check.sh --smoke --out /tmp/report.json   # tiny, on a CPU (what the tests run)
#
# The Python it runs: $LTE_PYTHON if set, else the active virtual environment's, else the
# checkout's .venv, which `make install` creates first when it is missing (torch's CUDA build
# where nvidia-smi works). Every argument goes to scripts/gpu_check.py; --help lists them.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ -n "${LTE_PYTHON:-}" ]]; then
    python="$LTE_PYTHON"
elif [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then
    python="$VIRTUAL_ENV/bin/python"
else
    if [[ ! -x "$root/.venv/bin/python" ]]; then
        echo "gpu_check: no .venv: setting up with make install" >&2
        make -C "$root" install
    fi
    python="$root/.venv/bin/python"
fi

# W&B never goes online from a check; runs log CSV (logger=csv) anyway.
export WANDB_MODE=offline
exec "$python" "$root/scripts/gpu_check.py" "$@"
