"""What a training run prints: one copy of each log line, no known-harmless warnings, rank 0 only.

Hydra configures the root logger (console + ``<run dir>/train.log``) before the job starts;
``import lightning`` then adds its own stderr handler to the ``lightning`` logger, so every Lightning
INFO line would print twice (``INFO: ...`` on stderr and Hydra's line on stdout). :func:`setup_console`
removes Lightning's handler when the root logger already has one, so its lines go through Hydra's
(and into ``train.log``). Warnings known to be harmless are filtered by message *and* the module
they are attributed to, never by category alone. Under DDP, the processes of rank > 0 keep warnings
and errors but drop INFO lines: the run is described once, by rank 0.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: (message regex, module regex) of warnings that say nothing about this run.
HARMLESS_WARNINGS: tuple[tuple[str, str], ...] = (
    # torch 2.13 deprecates LeafSpec; lightning 2.6's own _pytree still uses it.
    (r".*isinstance\(treespec, LeafSpec\)", r"lightning\.pytorch\.utilities\._pytree"),
)

#: Lightning INFO lines that advertise a product rather than describe the run.
_ADVERTS = ("💡 Tip:",)


class _DropAdverts(logging.Filter):
    """Drop Lightning's product tips (``💡 Tip: ... litlogger``); every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_ADVERTS)


def setup_console(rank: int) -> None:
    """Make the console say each thing once; call after Hydra configured logging, before the Trainer.

    Args:
        rank: this process's global rank; ranks > 0 log warnings and errors only.
    """
    import lightning  # noqa: F401 - adds its handler on import; it must be there to be removed

    root = logging.getLogger()
    ours = logging.getLogger("lightning")
    if root.handlers:
        for handler in list(ours.handlers):
            if type(handler) is logging.StreamHandler:
                ours.removeHandler(handler)
        ours.propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropAdverts) for f in target.filters):
            target.addFilter(_DropAdverts())
    for message, module in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, module=module)
    if rank > 0:
        for name in ("lte", "lightning"):
            logging.getLogger(name).setLevel(logging.WARNING)


def config_tree(cfg: DictConfig, *, resolve: bool = False) -> str:
    """The composed config as a tree, one top-level section after another (rich if installed).

    rich is an optional extra of Lightning, not a dependency of lte: without it the tree is the
    config's YAML, sections in the order of ``train.yaml``.
    """
    order = ["data", "model", "encoder", "optimizer", "scheduler", "module", "trainer"]
    order += ["callbacks", "logger", "paths"]
    keys = [k for k in order if k in cfg] + [k for k in cfg if k not in order]
    sections: list[tuple[str, Any]] = []
    for key in keys:
        node = cfg[key]
        if isinstance(node, DictConfig):
            text = OmegaConf.to_yaml(node, resolve=resolve).rstrip()
        else:
            text = str(node)
        sections.append((str(key), text))
    try:
        from rich.console import Console
        from rich.syntax import Syntax
        from rich.tree import Tree
    except ImportError:
        lines = ["config:"]
        for key, text in sections:
            if "\n" in text or text.endswith(":"):
                lines.append(f"  {key}:")
                lines += [f"    {line}" for line in text.splitlines()]
            else:
                lines.append(f"  {key}: {text}")
        return "\n".join(lines)
    tree = Tree("config", guide_style="dim")
    for key, text in sections:
        tree.add(key).add(Syntax(text, "yaml"))
    console = Console(width=100, record=True, force_terminal=False)
    with console.capture() as capture:
        console.print(tree)
    return "\n".join(line.rstrip() for line in capture.get().rstrip().splitlines())
