"""Whole-image inference with bounded memory: encode the LR in overlapping tiles, query in chunks.

Both are plain functions over ``SRModel.encode`` / ``SRModel.query``, never hidden module state, and
neither changes results:

- chunking: each query's prediction depends only on its own coordinate and cell;
- tiling: a tile is encoded with a margin of ``model.receptive_radius`` LR pixels (the encoder's
  receptive field plus the decoder's reach: its own 3×3 convolution or unfold, and the neighbouring
  codes the local ensemble reads), and its queries use the geometry of the whole image
  (``SRModel.encode(crop, full_lr=, origin=)``). For convolutional encoders (EDSR, RDN) tiled and
  untiled outputs agree to float round-off. SwinIR's attention has no finite receptive field: it
  tiles with :data:`SWIN_MARGIN` and differs slightly.

Peak memory is then set by the tile and chunk sizes, not by the image size. By default the tile is
picked from the memory available (:func:`auto_tile`); an image that fits is encoded in one piece.

Backends (``lte.upscale --backend``, ``lte.test eval.backend=``) name the decoder kernel the user
picks: ``eager`` is the decoder's fast kernel, ``compile`` its ``torch.compile``d one
(:func:`kernel_for_backend`), with the eager kernel as the fallback where compiling cannot work.
``auto`` (the commands' default) is :func:`pick_backend`: compile when it pays, i.e. when the compile
cache is warm for this model or the job is large enough to repay a cold compile. ``--dtype auto`` /
``eval.dtype=auto`` is :func:`pick_dtype`: bfloat16 only where it is native and checked.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lte.devices import compile_unavailable
from lte.errors import UserError
from lte.geometry import (
    dihedral_views,
    from_view,
    make_cell,
    make_coord_1d,
    nearest_code_index,
    to_view,
    view_size,
)
from lte.models.decoders import DecoderState, Kernel
from lte.models.sr import SRModel

if TYPE_CHECKING:
    from lte.multiscale import CMSRTables

log = logging.getLogger(__name__)

#: User-facing inference backends: picked per job (:func:`pick_backend`), the decoder's eager fast
#: kernel, or its compiled one.
BACKENDS: tuple[str, ...] = ("auto", "eager", "compile")
#: User-facing names of the decoder MLP's compute type (:data:`DTYPES`), ``auto`` first.
DTYPE_NAMES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
#: The explicit dtype names → the MLP's compute type (``None``: the model's own float32).
DTYPES: dict[str, torch.dtype | None] = {
    "float32": None,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

#: Output pixels (times the self-ensemble's views) from which ``auto`` pays a cold compile where
#: compiling pays at all (:data:`COMPILE_PAYS_ON`). Derived from docs/benchmarks.md, Backends (A)
#: (a ~20 s compile against 9.3 s saved per megapixel in-process: break-even near 2.2 MP, doubled
#: for the ±20% the GEMM rate moves); a warm cache needs no size.
AUTO_COMPILE_PIXELS = 4_000_000
#: Device types on which ``auto`` may pick ``compile``. Not the CPU: as whole ``lte.upscale``
#: processes on a 2-core AVX2 EPYC (docs/benchmarks.md, 2026-12-05) EDSR-baseline-LTE took 27.0 s
#: compiled with a warm cache against 24.9 s eager at 0.96 MP, and 138.3 s against 135.9 s at
#: 8.3 MP (960x540 -> 4K): the compiled kernel never repaid even its cache load. CUDA is kept on the
#: documented rule until scripts/gpu_check.sh measures it.
COMPILE_PAYS_ON: tuple[str, ...] = ("cuda",)
#: Decoder families whose bfloat16 MLP was measured within 0.01 dB of float32 (docs/inference.md:
#: LTE, 0.0002 dB on the validation photos); ``auto`` picks bfloat16 only for these.
BF16_CHECKED: tuple[str, ...] = ("lte",)

#: Queries per chunk in the papers' test code.
DEFAULT_CHUNK = 30000
#: Tile margin (LR pixels) for encoders without a finite receptive field (SwinIR).
SWIN_MARGIN = 16
#: Largest working set the automatic tile size aims at on CPU, and its share of available memory.
CPU_BUDGET_BYTES = 512 * 2**20
BUDGET_SHARE = 0.25
#: Smallest automatic tile side (LR pixels): below this the margins dominate the encoder's cost.
MIN_TILE = 32

#: ``progress(done, total)`` is called after each tile.
ProgressFn = Callable[[int, int], None]


def check_backend(backend: object, option: str = "--backend") -> str:
    """``backend`` when it is one of :data:`BACKENDS`; checked apart from any model so that
    ``lte.test`` refuses a wrong ``eval.backend=`` before loading a checkpoint.

    Raises:
        UserError: one line naming ``option`` and the backends.
    """
    if not isinstance(backend, str) or backend not in BACKENDS:
        sep = "" if option.endswith("=") else " "
        raise UserError(
            f"{option}{sep}{backend!r} is not a backend: use one of {', '.join(BACKENDS)} "
            "(auto: compile when it pays; eager: the default kernels; compile: torch.compile'd "
            "decoder blocks)"
        )
    return backend


def check_dtype(dtype: object, option: str = "--dtype") -> str:
    """``dtype`` when it is one of :data:`DTYPE_NAMES` (checked before any model is loaded).

    Raises:
        UserError: one line naming ``option`` and the dtypes.
    """
    if not isinstance(dtype, str) or dtype not in DTYPE_NAMES:
        sep = "" if option.endswith("=") else " "
        raise UserError(
            f"{option}{sep}{dtype!r} is not a dtype: use one of {', '.join(DTYPE_NAMES)} "
            "(auto: bfloat16 only where it is native and checked, else float32)"
        )
    return dtype


def _device_of(model: SRModel) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.2g} MP"


def pick_backend(
    model: SRModel,
    *,
    work_pixels: int,
    dtype: torch.dtype | None = None,
    pays_on: tuple[str, ...] | None = None,
) -> tuple[str, str]:
    """``auto``'s backend for ``model`` and a job of ``work_pixels`` output pixels: ``(backend, why)``.

    ``compile`` when the decoder has a compiled kernel, ``torch.compile`` works on the model's
    device (:func:`lte.devices.compile_unavailable`), compiling pays on that device type at all
    (``pays_on``, default :data:`COMPILE_PAYS_ON`: not the CPU), and either the compile cache holds this
    model's entry (:func:`lte.compile_cache.is_warm`: the compile is a load) or the job reaches
    :data:`AUTO_COMPILE_PIXELS` (it repays a cold compile); otherwise ``eager``. ``why`` is the
    reason, for the one line the commands print (``backend auto: eager (why)``).
    """
    from lte import compile_cache

    if not model.has_compiled_kernel:
        return "eager", f"the {model.describe()['decoder']['kind']} decoder has no compiled kernel"
    device = _device_of(model)
    # The device rule first: it is free, while compile_unavailable imports inductor and searches
    # for a C++ compiler (2.2 s of a 24 s lte.upscale process on a 2-core CPU).
    if device.type not in (pays_on if pays_on is not None else COMPILE_PAYS_ON):
        return "eager", (
            f"on {device.type} the compiled kernel was measured no faster than eager as a "
            "process, even with a warm cache (docs/benchmarks.md)"
        )
    reason = compile_unavailable(device)
    if reason is not None:
        return "eager", f"torch.compile is not available here: {reason}"
    param = next(model.decoder.parameters(), None)
    mlp_dtype = dtype or (param.dtype if param is not None else torch.float32)
    if compile_cache.is_warm(compile_cache.cache_key(model.decoder, mlp_dtype, device)):
        return "compile", "the compile cache is warm for this model"
    size, bar = _megapixels(work_pixels), _megapixels(AUTO_COMPILE_PIXELS)
    if work_pixels >= AUTO_COMPILE_PIXELS:
        return "compile", f"compile cache cold, and {size} reaches the {bar} that repays a compile"
    return "eager", f"compile cache cold, and {size} is below the {bar} that repays a compile"


def pick_dtype(model: SRModel) -> tuple[torch.dtype | None, str]:
    """``auto``'s MLP dtype for ``model`` on its device: ``(dtype, why)``; ``None`` is float32.

    bfloat16 only where the device multiplies it natively (:func:`lte.devices.native_bf16`) and the
    decoder family's bfloat16 results were checked within 0.01 dB (:data:`BF16_CHECKED`); float32
    everywhere else (it is exact, and the faster choice where bfloat16 is emulated).
    """
    from lte.devices import native_bf16

    device = _device_of(model)
    kind = model.describe()["decoder"]["kind"]
    if not native_bf16(device):
        return None, f"{device.type} has no native bfloat16 matrix multiply"
    if kind not in BF16_CHECKED:
        return None, f"bfloat16 is not checked for the {kind} decoder"
    return torch.bfloat16, f"native on {device.type} and checked for the {kind} decoder"


def kernel_for_backend(model: SRModel, backend: str, *, option: str = "--backend") -> Kernel:
    """The decoder kernel for a user's backend choice: ``eager`` or ``compile`` (:data:`BACKENDS`;
    resolve ``auto`` first with :func:`pick_backend`, which needs the job's size).

    ``eager`` is ``model.inference_kernel`` (the fast kernel when the decoder has one). ``compile``
    is ``"compiled"`` when the decoder has a compiled kernel and ``torch.compile`` can build it on the
    model's device; otherwise one warning line says why and the eager kernel is returned (same
    results, no compile). ``option`` names the setting in messages (``eval.backend=`` for lte.test).

    Raises:
        UserError: ``backend`` is not one of :data:`BACKENDS`.
    """
    check_backend(backend, option)
    if backend == "auto":
        raise ValueError("resolve backend 'auto' with pick_backend before kernel_for_backend")
    if backend == "eager":
        return model.inference_kernel
    if not model.has_compiled_kernel:
        log.warning(
            "backend compile: the %s decoder has no compiled kernel; using the eager backend",
            model.describe()["decoder"]["kind"],
        )
        return model.inference_kernel
    reason = compile_unavailable(_device_of(model))
    if reason is not None:
        log.warning("backend compile is not available here (%s); using the eager backend", reason)
        return model.inference_kernel
    return "compiled"


def batched_query(
    model: SRModel,
    state: DecoderState,
    coord: Tensor,
    cell: Tensor,
    chunk: int = DEFAULT_CHUNK,
    *,
    dtype: torch.dtype | None = None,
    kernel: Kernel | None = None,
) -> Tensor:
    """``model.query`` over ``(B, Q, 2)`` queries, ``chunk`` queries at a time: ``(B, Q, 3)``.

    ``cell`` is ``(B, Q, 2)``, or ``(B, 1, 2)`` when every query shares it (the decoders then compute
    cell-only terms once). ``dtype`` (e.g. ``torch.bfloat16``) runs the decoder's MLP in that type.
    ``kernel`` defaults to ``model.inference_kernel`` (the fast one when the decoder has it);
    ``"compiled"`` compiles the decoder's block once (:func:`kernel_for_backend`). Runs under ``torch.inference_mode``: no gradients.
    """
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    kernel = model.inference_kernel if kernel is None else kernel
    shared = cell.shape[1] == 1
    with torch.inference_mode():
        parts = [
            model.query(
                state,
                coord[:, i : i + chunk],
                cell if shared else cell[:, i : i + chunk],
                dtype=dtype,
                kernel=kernel,
            )
            for i in range(0, coord.shape[1], chunk)
        ]
        return torch.cat(parts, dim=1)


# --- memory and tile size ----------------------------------------------------------------------


def available_memory(device: torch.device) -> int:
    """Bytes free for this process: CUDA's free memory, else ``MemAvailable`` of /proc/meminfo."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30  # unknown platform: assume a modest machine


def tile_margin(model: SRModel) -> int:
    """LR pixels of context around a tile so that its core's outputs equal whole-image outputs.

    ``model.receptive_radius`` (encoder radius plus decoder reach: EDSR-baseline 34 + 3, RDN
    131 + 3); :data:`SWIN_MARGIN` for a global encoder (SwinIR: approximate, see docs/inference.md).
    """
    radius = model.receptive_radius
    return SWIN_MARGIN if radius is None else radius


def auto_tile(model: SRModel, lr: Tensor, *, budget: int | None = None) -> int:
    """LR tile side for ``lr`` (0: encode it whole), from the memory available on its device.

    The working set (tile plus margins, times ``model.bytes_per_code()``) is kept under ``budget``
    bytes: by default ``min(512 MiB, available / 4)`` on CPU and ``available / 2`` on CUDA.
    """
    if budget is None:
        free = available_memory(lr.device)
        budget = (
            int(free / 2)
            if lr.device.type == "cuda"
            else min(CPU_BUDGET_BYTES, int(free * BUDGET_SHARE))
        )
    h, w = lr.shape[-2:]
    per_code = model.bytes_per_code() * lr.shape[0]
    if h * w * per_code <= budget:
        return 0
    side = int(math.sqrt(budget / per_code)) - 2 * tile_margin(model)
    multiple = max(model.pad_multiple, 8)
    return max(MIN_TILE, side // multiple * multiple)


# --- prediction --------------------------------------------------------------------------------


def _bands(n_codes: int, tile: int, centres: Tensor) -> list[tuple[int, int, int, int]]:
    """Split one axis into tiles: ``(code_start, code_end, out_start, out_end)`` per band.

    Output pixel ``i`` belongs to the tile holding the code that contains its centre, so every
    output pixel is answered by exactly one tile.
    """
    owner = nearest_code_index(centres, n_codes)  # (N,) non-decreasing
    bands = []
    for start in range(0, n_codes, tile):
        end = min(n_codes, start + tile)
        lo = int(torch.searchsorted(owner, start))
        hi = int(torch.searchsorted(owner, end))
        if hi > lo:
            bands.append((start, end, lo, hi))
    return bands


def stderr_progress(label: str = "tiles", *, disable: bool | None = False) -> ProgressFn:
    """A tqdm bar on stderr for :func:`predict`'s ``progress``: ``tiles: 50%|#### | 5/10 [ETA]``.

    The bar opens at the first call and closes when ``done == total``. ``disable=None`` draws it
    only when stderr is a terminal; ``True`` never (``lte.upscale --no-progress``).
    """
    from tqdm.auto import tqdm

    bar: Any = None

    def show(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=label, unit="tile", disable=disable)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            bar = None

    return show


def predict(
    model: SRModel,
    lr: Tensor,
    out_hw: tuple[int, int],
    *,
    chunk: int = DEFAULT_CHUNK,
    dtype: torch.dtype | None = None,
    kernel: Kernel | None = None,
    tile: int | None = None,
    progress: ProgressFn | None = None,
    ensemble: int = 1,
    cmsr: CMSRTables | None = None,
) -> Tensor:
    """Super-resolve a normalised ``(B, 3, h, w)`` batch to ``(B, 3, H, W)`` (normalised, unclamped).

    The cell is ``(2/H, 2/W)``, enlarged per axis by ``max((H/h) / model.scale_max, 1)`` (resp.
    ``W/w``) beyond the training scales (:func:`lte.geometry.make_cell`): callers never compute it.

    Args:
        chunk: queries per decoder call.
        dtype: the decoder MLP's compute type (``torch.bfloat16`` or ``torch.float16``); ``None``
            keeps float32. Coordinates and geometry stay float32 either way.
        kernel: ``"fast"``, ``"compiled"`` or ``"exact"``; ``None`` is ``model.inference_kernel``
            (fast when the decoder has a fast kernel). From a user's ``eager``/``compile`` choice:
            :func:`kernel_for_backend`. The compiled kernel compiles once per model, MLP dtype and
            device: tile and chunk sizes do not recompile.
        tile: LR tile side in pixels; ``0`` encodes the image in one piece, ``None`` picks it from
            the available memory (:func:`auto_tile`).
        progress: called as ``progress(done, total)`` after each tile (e.g. :func:`stderr_progress`);
            with an ensemble, ``total`` counts the tiles of every view.
        ensemble: the self-ensemble (:func:`lte.geometry.dihedral_views`): ``1`` one prediction;
            ``4`` the mean over the image turned by 0, 90, 180 and 270 degrees; ``8`` also over
            their mirror images. Each view is predicted as a whole image of its own (the target
            size transposed with it for quarter turns, so non-square and anisotropic outputs keep
            their cells per axis), turned back, and the views are averaged. It costs ``ensemble``
            times the compute, and typically buys a little PSNR (measured: docs/upscale.md).
        cmsr: an LMF model's multi-scale rendering tables (:class:`lte.multiscale.CMSRTables`):
            beyond the training scales, simple regions are rendered at lower scales
            (:func:`lte.multiscale.predict_multiscale`, per view under an ensemble); within them
            nothing changes.
    """
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    if tile is not None and tile < 0:
        raise ValueError(f"tile must be >= 0, got {tile}")
    views = dihedral_views(ensemble)
    if tile is None:
        tile = auto_tile(model, lr)  # the same for every view: a view has the same pixel count
    plans = []
    for turns, mirrored in views:
        view_lr = to_view(lr, turns, mirrored)
        plans.append(
            (turns, mirrored, view_lr, _tiles(model, view_lr, view_size(out_hw, turns), tile))
        )
    total = sum(len(rows) * len(cols) for *_, (rows, cols) in plans)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    out: Tensor | None = None
    for turns, mirrored, view_lr, (rows, cols) in plans:
        view_hw = view_size(out_hw, turns)
        if cmsr is not None and _multiscale().applies(model, tuple(view_lr.shape[-2:]), view_hw):
            pred, _ = _multiscale().predict_multiscale(
                model, view_lr, view_hw, cmsr, chunk=chunk, dtype=dtype, kernel=kernel, tile=tile
            )
            for _ in range(len(rows) * len(cols)):
                step()
        else:
            pred = _predict_view(model, view_lr, view_hw, rows, cols, chunk, dtype, kernel, step)
        pred = from_view(pred, turns, mirrored)
        out = pred if out is None else out.add_(pred)
    assert out is not None
    return out if len(views) == 1 else out.div_(len(views))


Bands = list[tuple[int, int, int, int]]


def _multiscale() -> Any:
    """:mod:`lte.multiscale` (CMSR), built on this module: imported when a table is given."""
    from lte import multiscale

    return multiscale


def _tiles(model: SRModel, lr: Tensor, out_hw: tuple[int, int], tile: int) -> tuple[Bands, Bands]:
    """The row and column bands (:func:`_bands`) of ``lr``'s tiles for an ``out_hw`` output."""
    h, w = lr.shape[-2:]
    tile_h, tile_w = (tile, tile) if tile > 0 else (h, w)
    ys = make_coord_1d(out_hw[0], device=lr.device)
    xs = make_coord_1d(out_hw[1], device=lr.device)
    return _bands(h, tile_h, ys), _bands(w, tile_w, xs)


def _predict_view(
    model: SRModel,
    lr: Tensor,
    out_hw: tuple[int, int],
    rows: Bands,
    cols: Bands,
    chunk: int,
    dtype: torch.dtype | None,
    kernel: Kernel | None,
    step: Callable[[], None],
) -> Tensor:
    """One whole prediction of ``lr`` at ``out_hw``, tile by tile; ``step()`` after each tile."""
    b, _, h, w = lr.shape
    out_h, out_w = out_hw
    device = lr.device
    # One cell shared by every query (the decoders then compute cell terms once per image).
    cell = make_cell((out_h, out_w), 1, lr_hw=(h, w), scale_max=model.scale_max, device=device)
    cell = cell.unsqueeze(0).expand(b, 1, 2)  # (B, 1, 2)
    ys = make_coord_1d(out_h, device=device)
    xs = make_coord_1d(out_w, device=device)
    margin = tile_margin(model)
    out = torch.empty(b, 3, out_h, out_w, dtype=lr.dtype, device=device)
    with torch.inference_mode():
        for y0, y1, r0, r1 in rows:
            for x0, x1, c0, c1 in cols:
                cy0, cy1 = max(0, y0 - margin), min(h, y1 + margin)
                cx0, cx1 = max(0, x0 - margin), min(w, x1 + margin)
                # Queries use the whole image's grid; the table is read relative to the crop.
                crop = lr[..., cy0:cy1, cx0:cx1]
                state = model.encode(crop, full_lr=lr, origin=(cy0, cx0), cell=cell)
                grid = torch.stack(torch.meshgrid(ys[r0:r1], xs[c0:c1], indexing="ij"), dim=-1)
                coord = grid.reshape(1, -1, 2).expand(b, -1, -1)  # (B, Q, 2)
                rgb = batched_query(model, state, coord, cell, chunk, dtype=dtype, kernel=kernel)
                out[:, :, r0:r1, c0:c1] = rgb.transpose(1, 2).reshape(b, 3, r1 - r0, c1 - c0)
                del state, rgb
                step()
    return out
