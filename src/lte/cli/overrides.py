"""Check a Hydra command line before Hydra runs it, so that a config mistake is one line (exit 2).

Hydra answers an unknown key (``model.hidden_dim=7``), a group option that does not exist
(``model=nope``) or an override it cannot parse with a message of several lines, a hint about
``HYDRA_FULL_ERROR`` and exit status 1. :func:`check_command` composes the app's config first,
through Hydra's own compose API with the very overrides Hydra is about to apply, and turns those
errors into one :class:`~lte.errors.UserError` naming the option, with the closest known key or the
group's options. A sweep (``-m``, or a config that sets ``hydra.mode: MULTIRUN``) is checked with the
first value of each swept option. A command that composes nothing of the app (``--help``,
``--hydra-help``, ``--info``, shell completion, another ``--config-name/-path/-dir``) is Hydra's alone.

It also says where a single run will write (``hydra.run.dir``, resolved), so that the entry point can
hold that folder before Hydra writes into it (:mod:`lte.training.run_lock`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lte.conf import CONF_DIR as _CONF
from lte.errors import UserError

#: Hydra plugins that configs of lte select, and how to install them (pyproject extras).
PLUGINS = {
    "hydra/sweeper/optuna": ("the Optuna sweeper (hparams_search=...)", "sweep"),
    "hydra/launcher/submitit_slurm": ("the SLURM launcher (hydra/launcher=slurm)", "slurm"),
}

#: Group options that were replaced, per app (``train``, ``test``): the old option as written on a
#: command line, and the options that now do the same.
RENAMED = {
    "train": {
        "experiment=edsr_baseline_x2": "experiment=fixed_scale encoder=edsr_baseline data.scale=2",
        "experiment=edsr_baseline_x3": "experiment=fixed_scale encoder=edsr_baseline data.scale=3",
        "experiment=edsr_baseline_x4": "experiment=fixed_scale encoder=edsr_baseline data.scale=4",
        "experiment=rdn_x2": "experiment=fixed_scale encoder=rdn data.scale=2",
        "experiment=rdn_x3": "experiment=fixed_scale encoder=rdn data.scale=3",
        "experiment=rdn_x4": "experiment=fixed_scale encoder=rdn data.scale=4",
    },
}


def _check_renamed(overrides: list[str], config_name: str) -> None:
    """A replaced option, alone or among a sweep's values, is one line naming its replacement."""
    renamed = RENAMED.get(config_name, {})
    for text in overrides:
        key, _, values = text.lstrip("+").partition("=")
        for value in values.split(","):
            old = f"{key}={value.strip()}"
            if old in renamed:
                raise UserError(f"{old} was replaced by: {renamed[old]}")


@dataclass(frozen=True)
class HydraCommand:
    """What a checked command line will do.

    Attributes:
        runs_jobs: Hydra will run the app's task (not only print: ``--cfg``).
        multirun: one job per sweep value, each in its own folder under ``hydra.sweep.dir``.
        run_dir: the folder of a single run, with interpolations (``${now:...}``) resolved; None
            for a multirun or when it cannot be known before Hydra runs.
        run_dir_pinned: ``run_dir`` differs from what Hydra would resolve later (a time in it):
            the entry point passes it to Hydra as ``hydra.run.dir`` so both mean the same folder.
    """

    runs_jobs: bool
    multirun: bool
    run_dir: Path | None
    run_dir_pinned: bool


def _first_values(overrides: list[str]) -> tuple[list[str], list[str]]:
    """``overrides`` with each sweep replaced by its first value (to compose one job's config),
    and the sweeps as written (``data.scale_max=2,3``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType

    parsed = OverridesParser.create().parse_overrides(overrides)
    one_job, sweeps = [], []
    for override, text in zip(parsed, overrides, strict=True):
        if not override.is_sweep_override():
            one_job.append(text)
            continue
        sweeps.append(text)
        if override.value_type == ValueType.GLOB_CHOICE_SWEEP:
            continue  # group options by pattern: each one is a real option of the group
        if override.is_discrete_sweep():
            first = next(iter(override.sweep_string_iterator()), None)
        else:  # interval(a, b): an Optuna search space
            first = getattr(override.value(), "start", None)
        if first is not None:
            one_job.append(f"{override.get_key_element()}={first}")
    return one_job, sweeps


def _keys(node: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted key of a config, nodes and leaves."""
    if isinstance(node, DictConfig):
        for key in node:
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path
            yield from _keys(node._get_node(key), path)


def closest_key(key: str, known: Collection[str]) -> str | None:
    """The known key a mistyped one most likely meant: the same last name elsewhere
    (``model.hidden_dim`` -> ``model.decoder.hidden_dim``), else a close spelling in the same node
    (``trainer.devicess`` -> ``trainer.devices``), else a close spelling of the whole key."""
    parent, _, leaf = key.rpartition(".")
    same_leaf = [k for k in known if k.rpartition(".")[2] == leaf]
    if same_leaf:
        return max(same_leaf, key=lambda k: difflib.SequenceMatcher(None, key, k).ratio())
    siblings = {k.rpartition(".")[2]: k for k in known if k.rpartition(".")[0] == parent}
    close = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.75)
    if close:
        return siblings[close[0]]
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.85)
    return close[0] if close else None


def _one_line(text: str) -> str:
    """Hydra's message on one line, without its config search path listing."""
    text = text.split("Config search path:")[0]
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


class _Composer:
    """Composes the app's config (``conf/<name>.yaml``) with a list of overrides."""

    def __init__(self, config_name: str) -> None:
        self.config_name = config_name

    def __call__(self, overrides: list[str]) -> DictConfig:
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(_CONF), version_base=None):
            return compose(self.config_name, overrides=overrides, return_hydra_config=True)


def _unknown_key(err: Exception) -> str | None:
    """The key of Hydra's "Could not override 'KEY'" (a key the config does not have), or None."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    found = re.match(r"Could not override '([^']+)'", str(err))
    if found and (
        isinstance(err.__cause__, ConfigAttributeError | ConfigKeyError)
        or "No match in the defaults list" in str(err)  # a group this app does not have
    ):
        return found[1]
    return None


def _key_of(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0].split("@", 1)[0]


def _which(overrides: list[str], key: str) -> str:
    for text in overrides:
        if _key_of(text) == key:
            return text
    return f"{key}=VALUE"


def _explain(
    err: Exception,
    overrides: list[str],
    one_job: list[str],
    compose: _Composer,
    prog: str,
    hidden: Collection[str],
) -> UserError:
    """One line for a composition error of Hydra's: ``overrides`` as written, ``one_job`` as
    composed (the first value of each sweep)."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(err, OverrideParseException):
        return UserError(
            f"cannot read the option {err.override!r}: {_one_line(err.message)} (quote a value "
            "that holds spaces, commas or brackets: key='a,b')"
        )
    if isinstance(err, MissingConfigException):
        missing = err.missing_cfg_file or ""
        if missing in PLUGINS:
            what, extra = PLUGINS[missing]
            return UserError(
                f"{what} needs a Hydra plugin that is not installed: pip install 'lte[{extra}]' "
                f"(in a checkout: pip install -e '.[{extra}]')"
            )
        if err.options is not None and "/" in missing:
            group, name = missing.rsplit("/", 1)
            options = [o for o in err.options if f"{group}/{o}" not in hidden]
            return UserError(
                f"{group}={name} is not an option of {group}: choose one of {', '.join(options)}"
            )
        return UserError(_one_line(str(err)))
    exists = re.match(r"Could not append to config\. An item is already at '([^']+)'", str(err))
    if exists:
        text = _which(overrides, exists[1])
        return UserError(
            f"{text}: {exists[1]} exists already, and + only adds a new key: drop the + "
            f"({text.lstrip('+')}), or write ++ to set it whether or not it exists"
        )
    key = _unknown_key(err)
    if key is None:
        return UserError(_one_line(str(err)))
    text = _which(overrides, key)
    # The keys there are, from the same command without the unknown ones.
    rest = [o for o in one_job if _key_of(o) != key]
    known: list[str] = []
    for _ in range(len(rest) + 1):
        try:
            known = list(_keys(compose(rest)))
            break
        except Exception as again:
            other = _unknown_key(again)
            if other is None:
                break
            rest = [o for o in rest if _key_of(o) != other]
    if not key.startswith("hydra."):
        known = [k for k in known if not k.startswith("hydra")]
    guess = closest_key(key, known)
    hint = f"did you mean {guess}?" if guess else f"{prog} --cfg job lists the options"
    return UserError(
        f"unknown option {key}: {hint} (add + in front, +{text.lstrip('+')}, only to add a new key)"
    )


def check_command(
    argv: list[str], *, config_name: str, prog: str, hidden: Collection[str] = ()
) -> HydraCommand | None:
    """Check the overrides of a command line as Hydra would apply them; None: Hydra's alone.

    Args:
        argv: the command line after the program name.
        config_name: the app's primary config (``train``, ``test``).
        prog: how the user runs the app, for messages (``python -m lte.train``).
        hidden: ``group/option`` names not to list among a group's options (fragments).

    Raises:
        UserError: one line for the first replaced option (:data:`RENAMED`), unknown key, unknown
            group option, unreadable override, sweep outside a multirun, or missing Hydra plugin.
    """
    from hydra._internal.utils import get_args_parser
    from hydra.errors import HydraException
    from hydra.types import RunMode

    args = get_args_parser().parse_args(argv)
    if (
        args.help
        or args.hydra_help
        or args.info
        or args.shell_completion
        or args.config_path
        or args.config_name
        or args.config_dir
        or args.experimental_rerun
    ):
        return None
    overrides = list(args.overrides)
    _check_renamed(overrides, config_name)
    compose = _Composer(config_name)
    one_job = overrides
    try:
        one_job, sweeps = _first_values(overrides)
        cfg = compose(one_job)
    except HydraException as err:
        raise _explain(err, overrides, one_job, compose, prog, hidden) from None
    multirun = bool(args.multirun) or cfg.hydra.get("mode") == RunMode.MULTIRUN
    if sweeps and not multirun:
        key = sweeps[0].split("=", 1)[0]
        raise UserError(
            f"{sweeps[0]} gives several values: add -m to run one job per value, or write a list "
            f"as {key}=[a,b] or a text holding commas as {key}='a,b'"
        )
    runs_jobs = args.cfg is None
    if multirun or not runs_jobs:
        return HydraCommand(runs_jobs, multirun, None, False)
    raw = OmegaConf.to_container(cfg.hydra.run, resolve=False).get("dir")
    try:
        run_dir = str(cfg.hydra.run.dir)
    except Exception:  # an interpolation only a running Hydra resolves (${hydra:...})
        return HydraCommand(runs_jobs, multirun, None, False)
    return HydraCommand(runs_jobs, multirun, Path(run_dir), "${" in str(raw))


def pinned_run_dir(folder: Path) -> str:
    """The ``hydra.run.dir=...`` override naming ``folder``, quoted for Hydra's grammar if needed."""
    text = str(folder)
    if re.fullmatch(r"[\w./-]+", text):
        return f"hydra.run.dir={text}"
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"hydra.run.dir='{escaped}'"
