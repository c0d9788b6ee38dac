"""The compile cache: ``torch.compile``'s work for a decoder block is done once per machine, not per process.

The compiled kernel (:mod:`lte.models.decoders.compiled`) costs tens of seconds of inductor work the
first time a process calls it. Two of torch's own caches make a later process skip that work, and
this module keeps both in the user's cache folder (:func:`cache_root`):

- **torch's portable cache artifacts** ("mega-cache": ``torch.compiler.save_cache_artifacts`` /
  ``load_cache_artifacts``): the FX graph and AOTAutograd cache entries of a compile, one file per
  key here (``compile/<digest>/artifacts.bin``). Loading them before the first call turns inductor's
  lowering and AOTAutograd's tracing into cache hits (``fxgraph_cache_hit``, ``autograd_cache_hit``).
  torch saves every artifact of the process, so an entry may also carry blocks compiled before it
  in the same process: harmless, since torch looks each one up by its own key.
- **inductor's local cache folder** (``compile/inductor``, as ``$TORCHINDUCTOR_CACHE_DIR`` unless
  the user set that variable): on the CPU the artifacts carry the generated C++ source but not the
  built ``.so`` files (measured on torch 2.13), so without this folder every new process would run
  the C++ compiler again. With it, a warm process builds nothing.

An entry is keyed by what decides the compiled code (:class:`CacheKey`): the decoder's description
and weights layout (names, shapes and dtypes; not values: the weights are inputs of the compiled
function, never folded in), the MLP dtype, the device type and CPU capability, the torch, Python and
lte versions, and a digest of the compiled blocks' source. The key's parts are written beside each
entry (``key.json``, written last: an entry without it is incomplete) so ``lte-cache list`` can show
them. A first use takes the entry's lock (:mod:`filelock`), so two processes starting together
compile once: the second waits, then loads what the first wrote. Files are written atomically
(:mod:`lte.atomic`). An entry that does not read back (truncated, edited, a digest mismatch, or
torch refusing it) is deleted and rebuilt with one warning line; the cache never stops a run.

Trust: the artifacts are read by torch's own loader (which unpickles them), like ``~/.cache/torch``;
lte itself imports or unpickles nothing from here (docs/hardening.md).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from lte import __version__
from lte.atomic import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

#: The user's override of the cache folder (else ``$XDG_CACHE_HOME/lte``, else ``~/.cache/lte``).
CACHE_ENV = "LTE_CACHE_DIR"
#: Sub-folder of the cache folder holding the compile cache.
COMPILE_DIR = "compile"
#: Inductor's local cache folder inside :data:`COMPILE_DIR` (used when the user did not choose one).
INDUCTOR_DIR = "inductor"
#: Lock files of the entries (one per key), inside :data:`COMPILE_DIR`.
LOCK_DIR = "locks"
#: An entry's files: torch's serialized cache artifacts, and the key beside them (written last).
ARTIFACTS = "artifacts.bin"
KEY_FILE = "key.json"
#: Marks each ``key.json`` as lte's: ``clear`` deletes only folders holding one.
FORMAT = "lte-compile-cache/1"
#: How long a process waits for another one compiling the same key before compiling uncached.
LOCK_TIMEOUT_S = 900.0

#: inductor's ``$TORCHINDUCTOR_CACHE_DIR``.
INDUCTOR_ENV = "TORCHINDUCTOR_CACHE_DIR"


def cache_root() -> Path:
    """lte's cache folder: ``$LTE_CACHE_DIR``, else ``$XDG_CACHE_HOME/lte``, else ``~/.cache/lte``."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return Path(chosen).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lte"


def compile_dir() -> Path:
    """The compile cache's folder (:data:`COMPILE_DIR` under :func:`cache_root`)."""
    return cache_root() / COMPILE_DIR


# --- the key -----------------------------------------------------------------------------------


@functools.cache
def _code_digest() -> str:
    """A digest of the compiled blocks' source: a change to them is a new key, not a stale hit."""
    from lte.models.decoders import compiled, ensemble

    h = hashlib.sha256()
    for module in (compiled, ensemble):
        h.update(Path(str(module.__file__)).read_bytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class CacheKey:
    """What decides the compiled code of a decoder block; equal keys share one cache entry.

    Every field is plain data (``key.json`` holds them as they are). ``layout`` maps each decoder
    tensor's name to its shape and dtype: values are not part of the key, since the compiled
    function takes the weights as inputs (no freezing: :mod:`lte.models.decoders.compiled`).
    """

    decoder: dict[str, Any]
    layout: dict[str, list[Any]]
    mlp_dtype: str
    device: str
    cpu_capability: str
    threads: int
    torch: str
    python: str
    lte: str
    code: str

    def to_json(self) -> dict[str, Any]:
        """The key as the JSON object written beside its entry (and compared on reading)."""
        return json.loads(json.dumps(asdict(self), sort_keys=True))

    @property
    def digest(self) -> str:
        """The entry's folder name: a digest of the whole key."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_key(
    decoder: torch.nn.Module,
    mlp_dtype: torch.dtype,
    device: torch.device | str,
    *,
    torch_version: str | None = None,
    python_version: str | None = None,
    cpu_capability: str | None = None,
    threads: int | None = None,
) -> CacheKey:
    """The key of ``decoder``'s compiled block for an MLP in ``mlp_dtype`` on ``device``.

    The versions, the CPU capability and the thread count default to this process's
    (``torch.__version__``, the running Python, ``torch.backends.cpu.get_cpu_capability()``,
    inductor's ``parallel_num_threads()``); passing them shows which entry another installation
    would use (the tests change the torch version this way). The thread count is part of it
    because inductor writes it into the CPU kernels it generates: a process with another
    ``OMP_NUM_THREADS`` misses torch's cache (measured on torch 2.13).
    """
    device = torch.device(device)
    if threads is None:
        threads = _inductor_threads() if device.type == "cpu" else 0
    layout = {
        name: [*map(int, t.shape), str(t.dtype).removeprefix("torch.")]
        for name, t in decoder.state_dict().items()
    }
    if cpu_capability is None:
        cpu_capability = torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else ""
    if device.type == "cuda" and torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(device)
        cpu_capability = f"{cpu_capability}+sm_{major}{minor}"
    return CacheKey(
        decoder={"kind": getattr(decoder, "kind", type(decoder).__name__)}
        | dict(getattr(decoder, "config", {})),
        layout=layout,
        mlp_dtype=str(mlp_dtype).removeprefix("torch."),
        device=device.type,
        cpu_capability=cpu_capability,
        threads=threads,
        torch=torch.__version__ if torch_version is None else torch_version,
        python=sys.version.split()[0] if python_version is None else python_version,
        lte=__version__,
        code=_code_digest(),
    )


def _inductor_threads() -> int:
    """The thread count inductor generates CPU kernels for (its ``parallel_num_threads``)."""
    try:
        from torch._inductor.utils import parallel_num_threads

        return int(parallel_num_threads())
    except Exception:  # another torch layout: the count torch runs with
        return torch.get_num_threads()


def entry_dir(key: CacheKey) -> Path:
    """The folder of ``key``'s entry."""
    return compile_dir() / key.digest


def is_warm(key: CacheKey) -> bool:
    """Whether ``key``'s entry is complete (its ``key.json`` names this key, its artifacts exist).

    A cheap check, for choosing a backend: whether torch accepts the artifacts is found on use.
    """
    folder = entry_dir(key)
    try:
        written = json.loads((folder / KEY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(written, dict)
        and written.get("key") == key.to_json()
        and (folder / ARTIFACTS).is_file()
    )


# --- using an entry ----------------------------------------------------------------------------


#: The ``$TORCHINDUCTOR_CACHE_DIR`` this process set (so a later call may move it with the cache).
_set_by_lte: str | None = None


def use_inductor_dir() -> None:
    """Point inductor's local cache at ``compile/inductor``, unless the user chose a folder.

    inductor keeps its built ``.so`` kernels there; torch's default (``/tmp/torchinductor_$USER``)
    does not survive a reboot. A ``$TORCHINDUCTOR_CACHE_DIR`` the user set is kept as it is; one
    that torch or lte set follows the cache folder.
    """
    global _set_by_lte
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    current = os.environ.get(INDUCTOR_ENV)
    ours = current is None or current == _set_by_lte
    if not ours and os.path.abspath(current or "") != os.path.abspath(default_cache_dir()):
        return
    _set_by_lte = str(compile_dir() / INDUCTOR_DIR)
    os.environ[INDUCTOR_ENV] = _set_by_lte


def cache_misses() -> int:
    """Inductor and AOTAutograd cache misses in this process so far (torch's own counters)."""
    from torch._dynamo.utils import counters

    return int(counters["inductor"]["fxgraph_cache_miss"]) + int(
        counters["aot_autograd"]["autograd_cache_miss"]
    )


def _load(key: CacheKey) -> bool:
    """Load ``key``'s artifacts into torch's caches; ``False`` when there is no usable entry.

    An entry that is there but does not read back is deleted, with one warning line.
    """
    folder = entry_dir(key)
    if not folder.exists():
        return False
    try:
        written = json.loads((folder / KEY_FILE).read_text(encoding="utf-8"))
        data = (folder / ARTIFACTS).read_bytes()
        if not isinstance(written, dict) or written.get("key") != key.to_json():
            raise ValueError("its key.json does not match its folder")
        if written.get("sha256") != hashlib.sha256(data).hexdigest():
            raise ValueError("its artifacts do not match their recorded SHA-256")
        torch.compiler.load_cache_artifacts(data)
    except Exception as exc:  # whatever is wrong with it, the entry is rebuilt, never fatal
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning(
            "compile cache entry %s is unreadable (%s); rebuilding it", folder, reason[:200]
        )
        shutil.rmtree(folder, ignore_errors=True)
        return False
    return True


def _save(key: CacheKey) -> None:
    """Write this process's cache artifacts as ``key``'s entry (artifacts first, key last)."""
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        return
    data, info = saved
    folder = entry_dir(key)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / ARTIFACTS, data)
    record = {
        "format": FORMAT,
        "key": key.to_json(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "artifacts": {kind: len(names) for kind, names in info.artifacts.items()},
    }
    atomic_write_text(folder / KEY_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def _entry_lock(key: CacheKey) -> Iterator[bool]:
    """Hold ``key``'s lock; yields ``False`` (uncached) when it cannot be had."""
    from filelock import FileLock, Timeout

    try:
        locks = compile_dir() / LOCK_DIR
        locks.mkdir(parents=True, exist_ok=True)
        lock = FileLock(locks / f"{key.digest}.lock", timeout=LOCK_TIMEOUT_S)
        lock.acquire()
    except (OSError, Timeout) as exc:
        log.warning("compile cache %s is unusable (%s); compiling without it", compile_dir(), exc)
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def first_call(key: CacheKey, call: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``call()`` (a compiled function's first call in this process) through ``key``'s entry.

    Under the entry's lock: load the entry (if any), call, and write the entry when torch had to
    compile something (no entry, or a miss in its caches). A cache folder that cannot be written
    costs one warning line and the compile, never the run.
    """
    with _entry_lock(key) as locked:
        if not locked:
            return call()  # torch's own caches, where torch keeps them
        use_inductor_dir()  # only once the folder has proved writable
        loaded = _load(key)
        before = cache_misses()
        out = call()
        if not loaded or cache_misses() > before:
            try:
                _save(key)
            except Exception as exc:  # a full disk or a read-only folder: the run goes on
                log.warning("compile cache: could not write %s (%s)", entry_dir(key), exc)
        return out


# --- listing and clearing ----------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One entry as ``lte-cache list`` shows it: its folder, size and key (``None``: unreadable)."""

    path: Path
    bytes: int
    key: dict[str, Any] | None


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def entries() -> list[Entry]:
    """The compile cache's entries: every folder holding lte's ``key.json``."""
    folder = compile_dir()
    found = []
    if not folder.is_dir():
        return found
    for sub in sorted(folder.iterdir()):
        if sub.name in (INDUCTOR_DIR, LOCK_DIR) or not sub.is_dir() or sub.is_symlink():
            continue
        try:
            written = json.loads((sub / KEY_FILE).read_text(encoding="utf-8"))
            key = written["key"] if written.get("format") == FORMAT else None
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            key = None
        if key is None and not (sub / ARTIFACTS).exists():
            continue  # not an lte entry: left alone
        found.append(Entry(sub, _size(sub), key))
    return found


def inductor_bytes() -> int:
    """Bytes in lte's inductor folder (``compile/inductor``)."""
    folder = compile_dir() / INDUCTOR_DIR
    return _size(folder) if folder.is_dir() and not folder.is_symlink() else 0


def clear() -> tuple[int, int]:
    """Delete the entries, lte's inductor folder and the entries' locks: ``(entries, bytes)``.

    Only what lte wrote: entry folders (:func:`entries`), ``compile/inductor`` and
    ``compile/locks``; any other file in the folder stays.
    """
    removed = entries()
    freed = sum(e.bytes for e in removed) + inductor_bytes()
    for entry in removed:
        shutil.rmtree(entry.path, ignore_errors=True)
    for name in (INDUCTOR_DIR, LOCK_DIR):
        path = compile_dir() / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
    return len(removed), freed
