"""Running lte's command-line entry points as a user would (test helper): in a subprocess or in-process.

:func:`run_module` runs ``python -m lte.<tool>`` in a subprocess: W&B without an account (the key
and a forced mode are dropped, so runs log offline into their run folder) and one OpenMP thread (the
suite shares two cores), from the repository root unless told otherwise.

:func:`run_main` runs the same entry point function inside the pytest process and returns the same
``CompletedProcess`` (exit status, stdout, stderr), so a table of bad inputs pays for importing torch,
Lightning and Hydra once instead of once per row. What a fresh interpreter would differ in is reset
around each call: ``sys.argv``, the working directory, the environment, Hydra's global state, the
logging configuration (Hydra reconfigures it; with no handler, warnings print to stderr as in a fresh
process), and Python's default warning filters (warnings print to the captured stderr, as they would
in a fresh process, instead of going to pytest's warning summary). An exception that is not a
``SystemExit`` prints its traceback to stderr with status 1, as the interpreter would. Each CLI keeps
at least one real subprocess test for what only a fresh process shows (import-time output).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import subprocess
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Environment variables a test run must not inherit: W&B logs offline without an account.
DROPPED_ENV = ("WANDB_API_KEY", "WANDB_MODE")


def run_module(
    module: str, *args: str, cwd: Path = ROOT, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m module *args`` with W&B offline and one thread; output captured as text."""
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _logger_state() -> list[tuple[logging.Logger, list, int, bool, bool, list]]:
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    return [
        (lg, list(lg.handlers), lg.level, lg.propagate, lg.disabled, list(lg.filters))
        for lg in loggers
    ]


@contextlib.contextmanager
def _fresh_logging() -> Iterator[None]:
    """Logging as a fresh interpreter has it (root at WARNING, no handlers); restored afterwards."""
    saved = _logger_state()
    known = {id(h) for _, handlers, *_ in saved for h in handlers}
    root = logging.getLogger()
    root.handlers.clear()  # pytest's capture handlers; with none, logging's last resort prints
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        current = _logger_state()
        for lg, handlers, *_ in current:
            for h in handlers:
                if id(h) not in known:  # added by the run (Hydra's console and file handlers)
                    lg.removeHandler(h)
                    h.close()
        for lg, handlers, level, propagate, disabled, filters in saved:
            lg.handlers[:] = handlers
            lg.level, lg.propagate, lg.disabled = level, propagate, disabled
            lg.filters[:] = filters
        for lg, *_ in current:  # loggers created by the run: back to their defaults
            if all(lg is not s[0] for s in saved):
                lg.setLevel(logging.NOTSET)
                lg.propagate, lg.disabled = True, False


@contextlib.contextmanager
def _default_warnings(stderr: io.StringIO) -> Iterator[None]:
    """Python's default warning filters; each warning shown is written to ``stderr``."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning):
            warnings.simplefilter("ignore", category, append=True)
        warnings.simplefilter("ignore", ResourceWarning, append=True)

        def show(message, category, filename, lineno, file=None, line=None) -> None:
            stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

        warnings.showwarning = show
        yield


def _clear_hydra() -> None:
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()


def run_main(
    main: Callable[[], object],
    argv: Sequence[str],
    *,
    prog: str,
    cwd: Path = ROOT,
    env: Mapping[str, str] | None = None,
    drop_env: Sequence[str] = DROPPED_ENV,
) -> subprocess.CompletedProcess[str]:
    """Run ``main()`` with ``sys.argv = [prog, *argv]`` in-process, as :func:`run_module` runs a module.

    ``main`` is the function behind the entry point (``lte.cli.train.main``; a lambda for one that
    takes its argv, e.g. ``lambda: upscale_main(argv)``). The environment loses ``drop_env`` and
    gains ``env`` and ``OMP_NUM_THREADS=1`` for the call only.
    """
    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    out, err = io.StringIO(), io.StringIO()
    code: int = 0
    for key in drop_env:
        os.environ.pop(key, None)
    os.environ.update({"OMP_NUM_THREADS": "1", **(env or {})})
    os.chdir(cwd)
    sys.argv = [prog, *argv]
    _clear_hydra()
    try:
        with (
            _fresh_logging(),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            _default_warnings(err),
        ):
            try:
                main()
            except SystemExit as exit_:
                if exit_.code is None or isinstance(exit_.code, int):
                    code = exit_.code or 0
                else:
                    print(exit_.code, file=sys.stderr)
                    code = 1
            except Exception:  # what the interpreter does with an uncaught exception
                traceback.print_exc()
                code = 1
    finally:
        _clear_hydra()
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess([prog, *argv], code, out.getvalue(), err.getvalue())


def run_in_process(module: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """What :func:`run_module` does, through ``module.main`` in this process (:func:`run_main`).

    For the entry points that read their options from ``sys.argv``: ``lte.train``, ``lte.test``,
    ``lte.upscale``, ``lte.fourier``.
    """
    entry = importlib.import_module(module)
    return run_main(entry.main, args, prog=str(entry.__file__), cwd=cwd)


#: The real training config, shrunk to seconds on a CPU: 9 photos / batch 4 = 2 steps an epoch.
SMALL_TRAIN = [
    "data=sample",
    "encoder=edsr_tiny",
    "data.inp_size=16",
    "data.sample_q=64",
    "data.batch_size=4",
    "data.repeat=1",
    "data.val_inp_size=8",
    "trainer=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_val_batches=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "module.val_chunk=100",
]


def file_state(path: Path) -> tuple[object, ...]:
    """What a user would notice changed about ``path``: whether it exists, a link and its target,
    the mode bits, and for a regular file its bytes. Compare before and after a refused command."""
    if not os.path.lexists(path):
        return ("missing",)
    st = os.lstat(path)
    link = os.readlink(path) if os.path.islink(path) else None
    content = Path(path).read_bytes() if os.path.isfile(path) and not link else None
    return ("present", link, st.st_mode, content)


def snapshot(*paths: Path) -> dict[str, tuple[object, ...]]:
    """:func:`file_state` of every path, and of every entry of the folders among them."""
    out = {}
    for path in paths:
        out[str(path)] = file_state(path)
        if os.path.isdir(path) and not os.path.islink(path):
            for entry in sorted(Path(path).rglob("*")):
                out[str(entry)] = file_state(entry)
    return out
