"""``lte-cache`` / ``python -m lte.cache``: list or clear lte's compile cache (:mod:`lte.compile_cache`).

    lte-cache list     # each entry: its key (model, dtype, device, CPU, versions) and size
    lte-cache clear    # delete what lte wrote there (entries, its inductor folder, locks)

The cache folder is ``$LTE_CACHE_DIR``, else ``$XDG_CACHE_HOME/lte``, else ``~/.cache/lte``. Parses
the options, calls the library and reports; listing reads only the entries' ``key.json`` files.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from lte.cli.options import Parser
from lte.errors import UserError, exit_on_user_error


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line's options (see ``lte-cache --help``)."""
    parser = Parser(
        command="python -m lte.cache",
        prog="lte-cache",
        description="List or clear lte's compile cache (torch.compile'd decoder blocks, reused "
        "across processes by --backend compile/auto and eval.backend=compile/auto).",
    )
    parser.add_argument(
        "action",
        choices=("list", "clear"),
        help="list: the entries and their keys; clear: delete what lte wrote in the cache",
    )
    return parser.parse_args(argv)


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _describe(key: dict) -> str:
    """One entry's key on one line: the decoder, its dtype and device, and the versions."""
    decoder = key.get("decoder", {})
    args = ", ".join(f"{k}={v}" for k, v in sorted(decoder.items()) if k != "kind")
    cpu = f" {key['cpu_capability']}" if key.get("cpu_capability") else ""
    cpu += f" x{key['threads']} threads" if key.get("threads") else ""
    return (
        f"{decoder.get('kind', '?')}({args}) {key.get('mlp_dtype')} on {key.get('device')}{cpu}, "
        f"torch {key.get('torch')}, python {key.get('python')}, lte {key.get('lte')}"
    )


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    """List the entries (one line each, then the total) or clear them."""
    args = parse_args(argv)
    from lte.compile_cache import clear, compile_dir, entries, inductor_bytes

    folder = compile_dir()
    if args.action == "clear":
        try:
            count, freed = clear()
        except OSError as err:
            raise UserError(f"cannot clear {folder}: {err.strerror or err}") from None
        print(f"cleared {count} compile cache entries ({_size(freed)}) from {folder}")
        return
    found = entries()
    for entry in found:
        shown = _describe(entry.key) if entry.key is not None else "unreadable (rebuilt on use)"
        print(f"{entry.path.name}  {_size(entry.bytes)}  {shown}")
    total = sum(e.bytes for e in found) + inductor_bytes()
    print(
        f"{len(found)} compile cache entries in {folder} "
        f"({_size(total)} with inductor's kernels); lte-cache clear deletes them"
    )
