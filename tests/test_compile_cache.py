"""The compile cache (:mod:`lte.compile_cache`), ``lte-cache``, and the ``auto`` backend and dtype.

Reuse is judged by torch's own hit record (``torch._dynamo.utils.counters``: inductor's FX graph
cache and AOTAutograd's cache), printed by a real child process (``tests/compile_child.py``), never
by a stopwatch. Each test works in its own cache folder (``$LTE_CACHE_DIR``); children get no
``$TORCHINDUCTOR_CACHE_DIR``, so inductor's folder is the one under that cache folder too. One cold
compile of a tiny model is shared by the slow tests (:func:`warm`), copied where a test changes it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from compile_child import build
from conftest import sample_photos
from literal import literal_image
from lte import compile_cache
from lte.checkpoint import save_lte
from lte.cli.cache import main as cache_main
from lte.cli.upscale import check_onnx_options
from lte.cli.upscale import main as upscale_main
from lte.devices import compile_unavailable, native_bf16
from lte.errors import UserError
from lte.evaluation import EvalSettings
from lte.inference import (
    AUTO_COMPILE_PIXELS,
    BACKENDS,
    DTYPE_NAMES,
    DTYPES,
    kernel_for_backend,
    pick_backend,
    pick_dtype,
    predict,
)
from lte.models import build_model

CHILD = Path(__file__).with_name("compile_child.py")
ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
NO_COMPILE = compile_unavailable(CPU)
needs_compile = pytest.mark.skipif(
    NO_COMPILE is not None, reason=f"torch.compile cannot run here: {NO_COMPILE}"
)


@contextlib.contextmanager
def cache_at(folder: Path) -> Iterator[None]:
    """``$LTE_CACHE_DIR`` set to ``folder`` for this process, restored afterwards."""
    saved = os.environ.get(compile_cache.CACHE_ENV)
    os.environ[compile_cache.CACHE_ENV] = str(folder)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(compile_cache.CACHE_ENV, None)
        else:
            os.environ[compile_cache.CACHE_ENV] = saved


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """This process on one thread, as the children (``OMP_NUM_THREADS=1``): the thread count is
    part of the key, since inductor writes it into the kernels."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def child_env(cache: Path, inductor: Path | None = None) -> dict[str, str]:
    """The environment of a child: ``cache`` as lte's cache folder, and inductor's folder inside it
    unless ``inductor`` names one (as a user's ``$TORCHINDUCTOR_CACHE_DIR``)."""
    env = {k: v for k, v in os.environ.items() if k != compile_cache.INDUCTOR_ENV}
    env[compile_cache.CACHE_ENV] = str(cache)
    if inductor is not None:
        env[compile_cache.INDUCTOR_ENV] = str(inductor)
    env["OMP_NUM_THREADS"] = "1"
    return env


def start_child(cache: Path, *args: str, inductor: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        cwd=ROOT,
        env=child_env(cache, inductor),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[dict[str, Any], str]:
    """The child's counters and stderr, once it exited with status 0."""
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]), err


def run_child(cache: Path, *args: str, inductor: Path | None = None) -> tuple[dict[str, Any], str]:
    return finish(start_child(cache, *args, inductor=inductor))


def compiled_nothing(result: dict[str, Any]) -> bool:
    """Every lookup in inductor's and AOTAutograd's caches hit: nothing was compiled."""
    ind, aot = result["inductor"], result["aot_autograd"]
    return (
        ind.get("fxgraph_cache_hit", 0) >= 1
        and ind.get("fxgraph_cache_miss", 0) == 0
        and aot.get("autograd_cache_hit", 0) >= 1
        and aot.get("autograd_cache_miss", 0) == 0
    )


def misses(result: dict[str, Any]) -> int:
    return result["inductor"].get("fxgraph_cache_miss", 0)


def listed(cache: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    with cache_at(cache):
        cache_main(["list"])
    return capsys.readouterr().out.splitlines()


# --- the folder and the key (no compiling) -----------------------------------------------------


def test_cache_folder_is_lte_cache_dir_then_xdg_then_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LTE_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.compile_dir() == tmp_path / "mine" / "compile"
    monkeypatch.delenv("LTE_CACHE_DIR")
    assert compile_cache.cache_root() == tmp_path / "xdg" / "lte"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compile_cache.cache_root() == tmp_path / "home" / ".cache" / "lte"


def test_key_follows_layout_dtype_and_versions_not_weight_values() -> None:
    def key(hidden: int = 16, seed: int = 0, dtype: torch.dtype = torch.float32, **kw: Any):
        return compile_cache.cache_key(build(hidden, seed).decoder, dtype, "cpu", **kw)

    base = key()
    assert key(seed=1).digest == base.digest  # other weights, same shapes: the same code
    others = [
        key(hidden=8),
        key(dtype=torch.bfloat16),
        key(torch_version="9.9.9"),
        key(python_version="3.99.0"),
        key(cpu_capability="AVX512"),
        key(threads=64),
    ]
    assert len({base.digest, *(k.digest for k in others)}) == 1 + len(others)
    parts = base.to_json()
    assert parts["torch"] == torch.__version__ and parts["mlp_dtype"] == "float32"
    assert parts["device"] == "cpu" and parts["decoder"]["kind"] == "lte"
    assert parts["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    for *shape, dtype in parts["layout"].values():  # shapes and dtypes, never values
        assert all(isinstance(n, int) for n in shape) and dtype == "float32"
    assert json.loads(json.dumps(parts)) == parts  # plain data, as key.json holds it


# --- auto: the picks and their lines (no compiling) --------------------------------------------


def test_auto_backend_picks_eager_without_a_compiled_kernel_or_a_compiler(tmp_path: Path) -> None:
    with cache_at(tmp_path):
        assert pick_backend(build_model("metasr", "edsr_tiny"), work_pixels=10**9) == (
            "eager",
            "the metasr decoder has no compiled kernel",
        )
        meta = build_model("lte", "edsr_tiny").to("meta")
        # Where compiling would pay, a device it cannot run on is said so...
        backend, why = pick_backend(meta, work_pixels=10**9, pays_on=("meta",))
        assert backend == "eager"
        assert why.startswith("torch.compile is not available here: ") and "'meta'" in why
        # ...and the device rule comes first, without looking for a compiler.
        backend, why = pick_backend(meta, work_pixels=10**9)
    assert backend == "eager" and why.startswith("on meta the compiled kernel was measured")


@needs_compile
def test_auto_backend_weighs_a_cold_compile_against_the_job(tmp_path: Path) -> None:
    net = build()
    with cache_at(tmp_path):
        # The CPU default: compiling was measured no faster than eager as a process.
        assert pick_backend(net, work_pixels=10**9) == (
            "eager",
            "on cpu the compiled kernel was measured no faster than eager as a process, even "
            "with a warm cache (docs/benchmarks.md)",
        )
        # The rule where compiling pays (CUDA by default; the CPU here, to run it).
        cpu = ("cpu",)
        assert pick_backend(net, work_pixels=512 * 512, pays_on=cpu) == (
            "eager",
            "compile cache cold, and 0.26 MP is below the 4 MP that repays a compile",
        )
        assert pick_backend(net, work_pixels=AUTO_COMPILE_PIXELS, pays_on=cpu) == (
            "compile",
            "compile cache cold, and 4 MP reaches the 4 MP that repays a compile",
        )
    assert not (tmp_path / "compile").exists()  # choosing writes nothing


def test_auto_dtype_is_float32_unless_bfloat16_is_native_and_checked() -> None:
    lte, liif = build_model("lte", "edsr_tiny"), build_model("liif", "edsr_tiny")
    meta = build_model("lte", "edsr_tiny").to("meta")
    assert pick_dtype(meta) == (None, "meta has no native bfloat16 matrix multiply")
    if native_bf16(CPU):
        assert pick_dtype(lte)[0] == torch.bfloat16
        assert pick_dtype(liif) == (None, "bfloat16 is not checked for the liif decoder")
    else:
        assert pick_dtype(lte) == (None, "cpu has no native bfloat16 matrix multiply")
        assert pick_dtype(liif) == (None, "cpu has no native bfloat16 matrix multiply")


def test_upscale_says_what_auto_picked_in_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = tmp_path / "in.png"
    Image.open(sample_photos()[0]).convert("RGB").crop((50, 60, 62, 70)).save(photo)  # 12x10
    ckpt = tmp_path / "tiny.ckpt"
    save_lte(build_model("lte", "edsr_tiny"), ckpt)
    args = ["--ckpt", str(ckpt), "--scale", "2", "--device", "cpu"]
    with cache_at(tmp_path / "cache"):
        upscale_main([str(photo), str(tmp_path / "auto.png"), *args])
        auto = capsys.readouterr().err.splitlines()
        upscale_main(
            [str(photo), str(tmp_path / "x.png"), *args, "--backend", "eager", "--dtype", "float32"]
        )
        explicit = capsys.readouterr().err
    dtype_lines = [line for line in auto if line.startswith("dtype auto: ")]
    backend_lines = [line for line in auto if line.startswith("backend auto: ")]
    assert len(dtype_lines) == 1 and len(backend_lines) == 1, auto
    if not native_bf16(CPU):
        assert dtype_lines[0] == "dtype auto: float32 (cpu has no native bfloat16 matrix multiply)"
    if NO_COMPILE is None:
        assert backend_lines[0] == (
            "backend auto: eager (on cpu the compiled kernel was measured no faster than eager as "
            "a process, even with a warm cache (docs/benchmarks.md))"
        )
    assert " auto: " not in explicit


def test_onnx_models_take_auto_silently() -> None:
    def options(**kw: str) -> argparse.Namespace:
        base = {"dtype": "auto", "backend": "auto", "device": "auto", "cmsr": None}
        return argparse.Namespace(**(base | kw))

    check_onnx_options(options())
    check_onnx_options(options(dtype="float32", backend="eager"))
    with pytest.raises(UserError, match="--dtype bfloat16: an ONNX model computes in float32"):
        check_onnx_options(options(dtype="bfloat16"))
    with pytest.raises(UserError, match="--backend compile: an ONNX model runs in onnxruntime"):
        check_onnx_options(options(backend="compile"))


def test_eval_dtype_is_an_option_checked_before_loading() -> None:
    from omegaconf import OmegaConf

    conf = OmegaConf.load(ROOT / "src" / "lte" / "conf" / "test.yaml")
    assert conf.eval.backend == "auto" and conf.eval.dtype == "auto"
    assert BACKENDS == ("auto", "eager", "compile")
    assert DTYPE_NAMES == ("auto", "float32", "bfloat16", "float16")
    assert EvalSettings([2], dtype="auto", backend="auto").dtype == "auto"
    with pytest.raises(UserError) as err:
        EvalSettings([2], dtype="int8")
    assert str(err.value) == (
        "eval.dtype='int8' is not a dtype: use one of auto, float32, bfloat16, float16 (auto: "
        "bfloat16 only where it is native and checked, else float32)"
    )


# --- lte-cache on folders it did not fill (no compiling) ---------------------------------------


def test_lte_cache_lists_nothing_and_clears_only_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "compile"
    (folder / "mine").mkdir(parents=True)
    (folder / "notes.txt").write_text("keep me")
    (folder / "mine" / "data.bin").write_bytes(b"keep me too")
    assert listed(tmp_path, capsys) == [
        f"0 compile cache entries in {folder} (0.0 MiB with inductor's kernels); lte-cache clear "
        "deletes them"
    ]
    with cache_at(tmp_path):
        cache_main(["clear"])
    assert capsys.readouterr().out.startswith("cleared 0 compile cache entries")
    assert (folder / "notes.txt").exists() and (folder / "mine" / "data.bin").exists()
    with cache_at(tmp_path), pytest.raises(SystemExit) as stop:
        cache_main(["purge"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith("error: argument action: invalid choice: 'purge'")


# --- real compiles in real processes -----------------------------------------------------------


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder filled by one cold compile of the child's model in a real process."""
    if NO_COMPILE is not None:
        pytest.skip(f"torch.compile cannot run here: {NO_COMPILE}")
    cache = tmp_path_factory.mktemp("warm")
    result, err = run_child(cache)
    assert misses(result) >= 1 and not compiled_nothing(result), result
    assert "warning" not in err.lower(), err
    return cache


def copy_of(warm: Path, tmp_path: Path, *, inductor: bool = True) -> Path:
    """A copy of the warm cache; without ``inductor``, only lte's entries (no built kernels)."""
    cache = tmp_path / "cache"
    ignore = None if inductor else shutil.ignore_patterns(compile_cache.INDUCTOR_DIR)
    shutil.copytree(warm, cache, ignore=ignore)
    return cache


@pytest.mark.slow
def test_a_second_process_compiles_nothing(warm: Path, tmp_path: Path) -> None:
    result, err = run_child(copy_of(warm, tmp_path))
    assert compiled_nothing(result), result
    assert "warning" not in err.lower(), err


@pytest.mark.slow
def test_the_entry_alone_carries_the_compile(warm: Path, tmp_path: Path) -> None:
    """Without inductor's folder (e.g. deleted), lte's entry still turns the compile into hits."""
    cache = copy_of(warm, tmp_path, inductor=False)
    result, _ = run_child(cache)
    assert compiled_nothing(result), result


@pytest.mark.slow
def test_a_corrupt_entry_is_rebuilt_with_one_warning(
    warm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (entry,) = [p for p in (warm / "compile").iterdir() if (p / "key.json").exists()]
    for broken in (compile_cache.ARTIFACTS, compile_cache.KEY_FILE):
        cache = copy_of(warm, tmp_path / broken)
        path = cache / "compile" / entry.name / broken
        path.write_bytes(path.read_bytes()[:100] + b"\x00garbage")
        _, err = run_child(cache)
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        assert f"compile cache entry {cache / 'compile' / entry.name} is unreadable" in lines[0]
        assert lines[0].endswith("; rebuilding it")
        with cache_at(cache):
            (rebuilt,) = compile_cache.entries()
            assert rebuilt.key is not None and rebuilt.path.name == entry.name
        again, err = run_child(cache)
        assert compiled_nothing(again) and not err.strip(), err


@pytest.mark.slow
@needs_compile
def test_an_unusable_cache_folder_costs_one_warning_not_the_run(tmp_path: Path) -> None:
    """A cache folder that cannot be made (here its parent is a file): one warning, and the block
    compiles with torch's own caches only (here a folder of the test's, as a user's
    ``$TORCHINDUCTOR_CACHE_DIR``; torch's default would be /tmp/torchinductor_$USER)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result, err = run_child(blocker / "cache", inductor=tmp_path / "inductor")
    assert misses(result) >= 1  # compiled, and the run went on
    lines = [line for line in err.splitlines() if line.strip()]
    assert (
        len(lines) == 1 and f"compile cache {blocker / 'cache' / 'compile'} is unusable" in lines[0]
    )
    assert lines[0].endswith("; compiling without it"), err


@pytest.mark.slow
def test_two_processes_first_using_a_new_layout_compile_once(warm: Path, tmp_path: Path) -> None:
    """Another weights layout is another entry; two processes starting on it together compile it
    once (the second waits on the entry's lock, then loads it) and both succeed."""
    cache = copy_of(warm, tmp_path)
    first, second = start_child(cache, "--hidden", "8"), start_child(cache, "--hidden", "8")
    (a, err_a), (b, err_b) = finish(first), finish(second)
    assert a["sum"] == b["sum"] and a["digest"] == b["digest"]
    assert sorted([compiled_nothing(a), compiled_nothing(b)]) == [False, True], (a, b)
    assert misses(a) + misses(b) >= 1
    assert "warning" not in (err_a + err_b).lower(), err_a + err_b
    with cache_at(cache):
        assert len(compile_cache.entries()) == 2  # the warm model's and the new layout's


@pytest.mark.slow
def test_warm_cache_picks_compile_and_lte_cache_lists_and_clears_it(
    warm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = copy_of(warm, tmp_path)
    with one_thread(), cache_at(cache):
        assert pick_backend(build(), work_pixels=0, pays_on=("cpu",)) == (
            "compile",
            "the compile cache is warm for this model",
        )
        assert pick_backend(build(), work_pixels=0)[0] == "eager"  # the CPU default
        assert pick_backend(build(hidden=8), work_pixels=0, pays_on=("cpu",))[0] == "eager"
        assert (
            pick_backend(build(), work_pixels=0, dtype=torch.bfloat16, pays_on=("cpu",))[0]
            == "eager"
        )
    lines = listed(cache, capsys)
    assert len(lines) == 2, lines
    assert "lte(hidden_dim=16, mlp_hidden=[16, 16]) float32 on cpu" in lines[0]
    assert " x1 threads, " in lines[0]
    assert f"torch {torch.__version__}, python {sys.version.split()[0]}" in lines[0]
    assert lines[1].startswith(f"1 compile cache entries in {cache / 'compile'}")
    (cache / "compile" / "notes.txt").write_text("not lte's")
    with cache_at(cache):
        cache_main(["clear"])
    assert capsys.readouterr().out.startswith("cleared 1 compile cache entries")
    assert sorted(p.name for p in (cache / "compile").iterdir()) == ["notes.txt"]
    with cache_at(cache):
        assert pick_backend(build(), work_pixels=0, pays_on=("cpu",))[0] == "eager"


# --- every backend and dtype still computes the literal reading ---------------------------------


@pytest.mark.slow
def test_every_backend_and_dtype_equals_the_literal(warm: Path, tmp_path: Path) -> None:
    """``auto`` resolves to a real backend and dtype, and each result is the literal reference's
    (the compiled block loaded from a copy of the warm cache). That a warm cache compiles nothing
    is judged in fresh processes (above): in the whole suite this process has compiled other
    blocks under other settings, which torch may count as misses here."""
    net = build()
    img = torch.rand(1, 3, 9, 11) * 2 - 1
    out_hw = (23, 26)
    reference = literal_image(net, img, out_hw, chunk=97)
    with one_thread(), cache_at(copy_of(warm, tmp_path)):
        for backend in BACKENDS:
            for dtype_name in ("auto", "float32"):
                dtype = pick_dtype(net)[0] if dtype_name == "auto" else DTYPES[dtype_name]
                for work in (0, AUTO_COMPILE_PIXELS):
                    chosen = pick_backend(net, work_pixels=work, dtype=dtype, pays_on=("cpu",))[0]
                    chosen = chosen if backend == "auto" else backend
                    kernel = kernel_for_backend(net, chosen)
                    pred = predict(net, img, out_hw, chunk=97, dtype=dtype, kernel=kernel, tile=0)
                    tol = 1e-5 if dtype is None else 2e-2
                    err = (pred - reference).abs().max().item()
                    assert err < tol, (backend, dtype_name, work, chosen, err)


def test_a_low_precision_score_is_labelled(tmp_path: Path) -> None:
    """A bfloat16 MLP's records are another method's (``lte+bfloat16``), so a results file never
    passes them off as the float32 protocol's; float32 (what ``auto`` picks without native bf16)
    keeps the plain label."""
    from PIL import Image

    from conftest import sample_photos
    from lte.evaluation import evaluate_testset
    from lte.models import build_model
    from lte.testsets import FolderSet

    folder = tmp_path / "hr"
    folder.mkdir()
    Image.open(sample_photos()[0]).convert("RGB").crop((0, 0, 48, 36)).save(folder / "a.png")
    model = build_model("lte", "edsr_tiny").eval()
    testset = FolderSet(hr_dir=str(folder))
    labels = {
        dtype: evaluate_testset(model, testset, EvalSettings([2], dtype=dtype, backend="eager"))[
            0
        ].model
        for dtype in ("float32", "bfloat16")
    }
    assert labels == {"float32": "lte", "bfloat16": "lte+bfloat16"}
