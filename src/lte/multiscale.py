"""Controllable multi-scale rendering (CMSR; He & Jin, CVPR 2024; SPEC.md "CMSR"): beyond the training
scales, an LMF model renders simple regions at lower scales and only complex ones at the target.

An LMF model's code *complexity* (the mean ``|shift modulation|``, :meth:`lte.models.SRModel.complexity`)
follows how hard a region is to render. For a target scale ``S`` beyond ``scale_max``, a *table* maps
lower decode scales ``d`` to complexity thresholds: codes up to the first threshold are rendered at
the lowest ``d``, the next band at the next ``d``, and the rest at ``S``. Each level's pixels are
rendered with the modulations of the target scale (one state per image, encoded for the target cell)
and the level's own cell; the levels are then composed from the normalised LR upwards, each level
the bilinear resampling of the one below with its own pixels written over it.

Tables are data (:class:`CMSRTables`): YAML ``{S: {d: threshold}}`` as the official ``init_cmsr.py``
writes them, read with ``yaml.safe_load``, validated, never executed. :func:`build_tables` makes them
for a model on a folder of HR images and an MSE threshold (``python -m lte.cmsr``), as the official
builder does. Rendering is tiled like :func:`lte.inference.predict` (memory bounded by the tile and
the output), and a level's pixels are found per tile from the complexity of the code that holds them.

One deliberate difference from the official code: each level is queried at its own pixel centres.
The official inference queries a level at the code-centre grid resampled bilinearly to the level's
size, which clamps the coordinates of the outermost half code (``S/2`` output pixels) to the
outermost code centres; both test protocols shave more than that, so scores are unaffected.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lte.errors import UserError
from lte.files import check_input, label
from lte.geometry import make_cell, make_coord_1d, nearest_code_index
from lte.inference import DEFAULT_CHUNK, auto_tile, batched_query, tile_margin
from lte.models.decoders import Kernel
from lte.models.sr import SRModel

#: The decode scales the official builder considers (those below the target scale).
DECODE_SCALES: tuple[float, ...] = (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32)
#: The official builder's MSE threshold, in the normalised [-1, 1] units.
DEFAULT_MSE = 2e-5
#: Target scales the command builds by default: CMSR applies only beyond x4.
DEFAULT_SCALES: tuple[int, ...] = (6, 12, 18)
#: Candidate thresholds per image: 101 values from 0 to the family's ``complexity_max``.
CANDIDATES = 101
#: A candidate threshold judges the pixels whose code complexity is within this of it.
BAND = 0.001
#: The first line of every table file lte writes: what ``--overwrite`` may replace.
HEADER = "# lte CMSR tables"
#: Limits on a table file: its size, the tables in it and the entries per table.
MAX_FILE_BYTES = 1 << 20
MAX_TABLES = 256
MAX_SCALE = 1000.0
MAX_THRESHOLD = 1e6


# --- tables as data -----------------------------------------------------------------------------


def _number(value: Any, where: str, lo: float, hi: float, what: str) -> float:
    """``value`` as a float in ``[lo, hi]`` (ints and floats only: no bools, strings or NaN)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not lo <= float(value) <= hi:
        raise UserError(f"{where}: {what} {value!r} must be a number from {lo:g} to {hi:g}")
    return float(value)


@dataclass(frozen=True)
class Level:
    """One rendering level: a grid, the cell its queries use, and the band of code complexity whose
    pixels it renders (``low``/``high`` ``None``: open on that side; both: every pixel).
    ``target``: the level at the target scale itself, on the output grid."""

    scale: float
    hw: tuple[int, int]
    cell: tuple[float, float]
    low: float | None = None
    high: float | None = None
    target: bool = False

    def select(self, complexity: Tensor) -> Tensor:
        """Which pixels, by the complexity of their code, this level renders (boolean, same shape).

        The official bands: the last level takes ``c >= low``, the first ``c <= high``, the others
        ``|c - mid| <= r`` for ``[low, high]``; ties go to both and the later level wins.
        """
        if self.low is None and self.high is None:
            return torch.ones_like(complexity, dtype=torch.bool)
        if self.high is None:
            return complexity >= self.low
        if self.low is None:
            return complexity <= self.high
        mid, radius = (self.high + self.low) / 2, (self.high - self.low) / 2
        return (complexity - mid).abs() <= radius


@dataclass(frozen=True)
class CMSRTables:
    """Scale-to-threshold tables: for each target scale ``S``, lower decode scales and the largest
    code complexity each renders. ``tables`` is sorted by ``S``, each table by decode scale."""

    tables: tuple[tuple[float, tuple[tuple[float, float], ...]], ...]

    @classmethod
    def from_data(cls, data: Any, where: str = "CMSR tables") -> CMSRTables:
        """Validate plain data ``{S: {d: threshold}}`` (numbers only; at least one table).

        Raises:
            UserError: one line naming the first bad key or value.
        """
        if not isinstance(data, Mapping) or not data:
            raise UserError(
                f"{where}: must be a mapping of target scales to tables {{S: {{d: threshold}}}}, "
                f"got {type(data).__name__}"
            )
        if len(data) > MAX_TABLES:
            raise UserError(f"{where}: {len(data)} tables, more than {MAX_TABLES}")
        tables = []
        for key, table in data.items():
            s = _number(key, where, 1.0, MAX_SCALE, "target scale")
            if not isinstance(table, Mapping) or not table or len(table) > MAX_TABLES:
                raise UserError(
                    f"{where}: the table of x{s:g} must map 1 to {MAX_TABLES} decode scales to "
                    f"thresholds, got {table!r:.60}"
                )
            entries = [
                (
                    _number(d, f"{where}, x{s:g}", 1.0, MAX_SCALE, "decode scale"),
                    _number(t, f"{where}, x{s:g}", 0.0, MAX_THRESHOLD, "threshold"),
                )
                for d, t in table.items()
            ]
            tables.append((s, tuple(sorted(entries))))
        return cls(tuple(sorted(tables)))

    def to_data(self) -> dict[float | int, dict[float | int, float]]:
        """``{S: {d: threshold}}``, whole numbers as ints (as the official files spell them)."""

        def key(v: float) -> float | int:
            return int(v) if float(v).is_integer() else v

        return {key(s): {key(d): t for d, t in table} for s, table in self.tables}

    def to_yaml(self, comment: str = "") -> str:
        """The tables as YAML, after the :data:`HEADER` line and ``comment`` lines."""
        import yaml

        lines = [HEADER, *(f"# {line}" for line in comment.splitlines() if line)]
        return "\n".join(lines) + "\n" + yaml.safe_dump(self.to_data(), sort_keys=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str], what: str = "CMSR tables") -> CMSRTables:
        """Read and validate a YAML table file (an lte one or the official ``init_cmsr.py``'s).

        Raises:
            UserError: missing, not a regular file, too large, not YAML, or not valid tables.
        """
        import yaml

        st = check_input(path, what, missing="build one with python -m lte.cmsr")
        where = label(what, path)
        if st.st_size > MAX_FILE_BYTES:
            raise UserError(f"{where} is {st.st_size} bytes: a table file is under 1 MiB")
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            reason = str(err).splitlines()[0]
            raise UserError(f"{where} is not a YAML file of tables: {reason}") from None
        return cls.from_data(data, where)

    def levels(
        self, lr_hw: tuple[int, int], out_hw: tuple[int, int], scale_max: float
    ) -> list[Level]:
        """The rendering levels of an ``lr_hw`` -> ``out_hw`` resize (the official selection).

        The scale is ``S = sqrt(H·W / (h·w))``; its table is the first with a key ``>= S`` (else the
        last). Its decode scales below ``S`` are levels, the first band starting at 0; a last level
        at ``S`` itself (the output grid) takes what is above the last threshold when that is
        under 1. A decode level's grid is ``(int(h·d), int(w·d))`` and its cell ``2 / grid``
        enlarged by ``max(d / scale_max, 1)``; the target level's is the usual enlarged cell.
        """
        (h, w), (out_h, out_w) = lr_hw, out_hw
        scale = math.sqrt(out_h * out_w / (h * w))
        table = next((t for s, t in self.tables if s >= scale), self.tables[-1][1])
        scales, thresholds = [], [0.0]
        for d, t in table:
            if d >= scale:
                break
            scales.append(d)
            thresholds.append(t)
        full = thresholds[-1] < 1
        if full:
            scales.append(scale)
            thresholds.append(1.0)
        levels = []
        for i, d in enumerate(scales):
            target = full and i == len(scales) - 1
            if target:
                hw = (out_h, out_w)
                cy, cx = make_cell(hw, 1, lr_hw=lr_hw, scale_max=scale_max)[0].tolist()
            else:
                hw = (int(h * d), int(w * d))
                factor = max(d / scale_max, 1.0)
                cy, cx = 2 / hw[0] * factor, 2 / hw[1] * factor
            last, first = i == len(scales) - 1, i == 0
            low = thresholds[i] if last or not first else None
            high = None if last else thresholds[i + 1]
            levels.append(Level(d, hw, (cy, cx), low, high, target))
        return levels


def applies(model: SRModel, lr_hw: tuple[int, int], out_hw: tuple[int, int]) -> bool:
    """Whether CMSR renders this resize: only beyond the training scales, i.e. when the output has
    more than ``scale_max² · h·w`` pixels (the official test)."""
    return out_hw[0] * out_hw[1] > model.scale_max**2 * lr_hw[0] * lr_hw[1]


def check_model(model: SRModel, what: str) -> None:
    """A one-line refusal when ``model`` has no latent modulations (only LMF models do)."""
    if not model.has_complexity:
        kind = model.describe()["decoder"]["kind"]
        raise UserError(
            f"{what}: multi-scale rendering (CMSR) needs an LMF model (lm_lte, lm_liif), and this "
            f"checkpoint is {kind}: drop the option"
        )


# --- rendering ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """What :func:`render_levels` rendered: per level the values ``(1, 3, qh, qw)`` (0 where not
    rendered) and the mask of rendered pixels ``(1, qh, qw)``, and every code's complexity
    ``(1, h, w)``."""

    values: list[Tensor]
    masks: list[Tensor]
    complexity: Tensor


def render_levels(
    model: SRModel,
    lr: Tensor,
    levels: Sequence[Level],
    table_cell: Tensor,
    *,
    chunk: int = DEFAULT_CHUNK,
    dtype: torch.dtype | None = None,
    kernel: Kernel | None = None,
    tile: int | None = None,
) -> Rendered:
    """Render each level's selected pixels of one normalised image ``(1, 3, h, w)``.

    The image is encoded tile by tile (as :func:`lte.inference.predict`, with the same margin) for
    ``table_cell`` ``(1, 1, 2)``: the target scale's modulations. A level pixel belongs to the tile
    holding its code, whose complexity selects it; selected pixels are queried with the level's
    cell, ``chunk`` at a time.
    """
    if lr.shape[0] != 1:
        raise ValueError(f"render_levels takes one image, got a batch of {lr.shape[0]}")
    _, _, h, w = lr.shape
    device = lr.device
    values = [torch.zeros(1, 3, *lv.hw, device=device) for lv in levels]
    masks = [torch.zeros(1, *lv.hw, dtype=torch.bool, device=device) for lv in levels]
    complexity = torch.empty(1, h, w, device=device)
    grids = [
        (make_coord_1d(lv.hw[0], device=device), make_coord_1d(lv.hw[1], device=device))
        for lv in levels
    ]
    owners = [(nearest_code_index(ys, h), nearest_code_index(xs, w)) for ys, xs in grids]
    tile = auto_tile(model, lr) if tile is None else tile
    tile_h, tile_w = (tile, tile) if tile > 0 else (h, w)
    margin = tile_margin(model)
    with torch.inference_mode():
        for y0 in range(0, h, tile_h):
            y1 = min(h, y0 + tile_h)
            for x0 in range(0, w, tile_w):
                x1 = min(w, x0 + tile_w)
                cy0, cy1 = max(0, y0 - margin), min(h, y1 + margin)
                cx0, cx1 = max(0, x0 - margin), min(w, x1 + margin)
                crop = lr[..., cy0:cy1, cx0:cx1]
                state = model.encode(crop, full_lr=lr, origin=(cy0, cx0), cell=table_cell)
                codes = model.complexity(state)  # (1, th, tw)
                complexity[:, y0:y1, x0:x1] = codes[:, y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]
                for lv, (ys, xs), (oy, ox), val, mask in zip(
                    levels, grids, owners, values, masks, strict=True
                ):
                    r0, r1 = (int(torch.searchsorted(oy, v)) for v in (y0, y1))
                    c0, c1 = (int(torch.searchsorted(ox, v)) for v in (x0, x1))
                    if r1 <= r0 or c1 <= c0:
                        continue
                    pixel = codes[0, oy[r0:r1] - cy0][:, ox[c0:c1] - cx0]  # (nr, nc)
                    idx = lv.select(pixel).nonzero()  # (n, 2)
                    if idx.shape[0] == 0:
                        continue
                    rows, cols = idx[:, 0] + r0, idx[:, 1] + c0
                    coord = torch.stack([ys[rows], xs[cols]], dim=-1).unsqueeze(0)  # (1, n, 2)
                    cell = torch.tensor([[lv.cell]], device=device)  # (1, 1, 2)
                    rgb = batched_query(
                        model, state, coord, cell, chunk, dtype=dtype, kernel=kernel
                    )
                    val[0, :, rows, cols] = rgb[0].t()
                    mask[0, rows, cols] = True
                del state
    return Rendered(values, masks, complexity)


def compose(
    lr: Tensor, levels: Sequence[Level], rendered: Rendered, out_hw: tuple[int, int]
) -> Tensor:
    """The output ``(1, 3, H, W)``: from the normalised LR up, each level the bilinear resampling
    (border, ``align_corners=False``) of the one below with its rendered pixels written over it.

    A level that rendered nothing is skipped, as the official code skips it (no resampling there).
    """
    out = lr
    for lv, val, mask in zip(levels, rendered.values, rendered.masks, strict=True):
        if not bool(mask.any()):
            continue
        out = F.interpolate(out, size=lv.hw, mode="bilinear", align_corners=False)
        out = torch.where(mask.unsqueeze(1), val, out)
    if tuple(out.shape[-2:]) != tuple(out_hw):
        out = F.interpolate(out, size=out_hw, mode="bilinear", align_corners=False)
    return out


@dataclass(frozen=True)
class CMSRStats:
    """How much of a full render CMSR did, over the images it rendered.

    Attributes:
        rendered: queries rendered at any level, as a fraction of the output pixels (the official
            "valid mask" ratio: the decoder's HR work relative to a full render).
        full_scale: pixels rendered at the target scale itself, as a fraction of the output.
        pixels: output pixels.
    """

    rendered: float
    full_scale: float
    pixels: int


def predict_multiscale(
    model: SRModel,
    lr: Tensor,
    out_hw: tuple[int, int],
    tables: CMSRTables,
    *,
    chunk: int = DEFAULT_CHUNK,
    dtype: torch.dtype | None = None,
    kernel: Kernel | None = None,
    tile: int | None = None,
) -> tuple[Tensor, CMSRStats]:
    """A normalised ``(B, 3, h, w)`` batch to ``(B, 3, H, W)`` by multi-scale rendering, and its stats.

    Callers normally go through :func:`lte.inference.predict` with ``cmsr=tables``, which renders
    this way only beyond the training scales (:func:`applies`).
    """
    check_model(model, "predict_multiscale")
    _, _, h, w = lr.shape
    levels = tables.levels((h, w), out_hw, model.scale_max)
    table_cell = make_cell(out_hw, 1, lr_hw=(h, w), scale_max=model.scale_max, device=lr.device)
    outs, rendered, full = [], 0, 0
    for i in range(lr.shape[0]):
        image = lr[i : i + 1]
        result = render_levels(
            model,
            image,
            levels,
            table_cell.view(1, 1, 2),
            chunk=chunk,
            dtype=dtype,
            kernel=kernel,
            tile=tile,
        )
        outs.append(compose(image, levels, result, out_hw))
        counts = [int(m.sum()) for m in result.masks]
        rendered += sum(counts)
        full += sum(c for lv, c in zip(levels, counts, strict=True) if lv.target)
    pixels = lr.shape[0] * out_hw[0] * out_hw[1]
    return torch.cat(outs), CMSRStats(rendered / pixels, full / pixels, pixels)


# --- building tables ------------------------------------------------------------------------------


def update_table(
    table: dict[float, float],
    model: SRModel,
    inp: Tensor,
    grid: tuple[int, int],
    *,
    mse: float = DEFAULT_MSE,
    chunk: int = DEFAULT_CHUNK,
    kernel: Kernel | None = None,
    tile: int | None = None,
) -> None:
    """Lower ``table``'s thresholds (in place) for one image, as the official ``update_scale2mean``.

    ``inp`` ``(1, 3, h, w)`` is the model's input and ``grid`` the target grid (``S·h × S·w``). The
    full render at ``S`` is the reference. For each decode scale ``d < S`` (ascending), the whole
    image is rendered at ``(int(h·d), int(w·d))`` with the cell ``2 / size`` (not enlarged) and
    resampled bilinearly to the target grid; candidate thresholds ``t`` (101 from 0 to the model's
    ``complexity_max``, shared across decode scales) are then accepted in ascending order while
    the pixels whose code complexity is within 0.001 of ``t`` stay within ``mse`` of the reference
    (candidates with no such pixels are passed over), and the first failure ends the search. ``d``
    keeps the lower of its entry and the largest accepted ``t``, and lower decode scales are
    capped by it. Finally the target scale itself gets the largest candidate never accepted.
    """
    _, _, h, w = inp.shape
    out_h, out_w = grid
    scale = math.sqrt(out_h * out_w / (h * w))
    cmax = float(model.complexity_max or 0.0)
    samples = [cmax * i / (CANDIDATES - 1) for i in range(CANDIDATES)]
    decode = [d for d in sorted(table) if d < scale]
    target_cell = make_cell(grid, 1, lr_hw=(h, w), scale_max=model.scale_max)[0].tolist()
    levels = [Level(scale, grid, (target_cell[0], target_cell[1]))]
    for d in decode:
        hw = (int(h * d), int(w * d))
        levels.append(Level(d, hw, (2 / hw[0], 2 / hw[1])))
    table_cell = torch.tensor([[target_cell]], device=inp.device)
    result = render_levels(model, inp, levels, table_cell, chunk=chunk, kernel=kernel, tile=tile)
    full = result.values[0][0].flatten(1)  # (3, H·W)
    iy = nearest_code_index(make_coord_1d(out_h, device=inp.device), h)
    ix = nearest_code_index(make_coord_1d(out_w, device=inp.device), w)
    pixel = result.complexity[0][iy][:, ix].flatten()  # (H·W,)
    for d, coarse in zip(decode, result.values[1:], strict=True):
        up = F.interpolate(coarse, size=grid, mode="bilinear", align_corners=False)[0].flatten(1)
        best = table[d]
        for mid in list(samples):
            band = (pixel - mid).abs() <= BAND
            if not bool(band.any()):
                continue  # the official MSE is NaN there, and NaN is passed over
            if float((up[:, band] - full[:, band]).square().mean()) <= mse:
                samples.remove(mid)
                best = mid
            else:
                break
        table[d] = min(best, table[d])
        for s in table:
            if s < d and table[s] > table[d]:
                table[s] = table[d]
    if samples:
        table[scale] = samples[-1]
        for s in table:
            if s < scale and table[s] > table[scale]:
                table[s] = table[scale]


def build_tables(
    model: SRModel,
    images: Iterable[tuple[str, np.ndarray]],
    scales: Sequence[float] = DEFAULT_SCALES,
    *,
    mse: float = DEFAULT_MSE,
    decode_scales: Sequence[float] = DECODE_SCALES,
    chunk: int = DEFAULT_CHUNK,
    kernel: Kernel | None = None,
    tile: int | None = None,
    device: torch.device | str = "cpu",
    progress: bool | None = False,
) -> CMSRTables:
    """Tables for ``model`` at each target scale, from ``(name, HR uint8 (H, W, 3))`` images.

    Each HR is cropped to a multiple of ``S`` and its LR made with PIL bicubic (the test protocol's
    LR at scales without shipped files); a SwinIR model sees its LR mirror-padded and is queried on
    the padded grid, as the official builder does. Every table starts at 1 for each decode scale up
    to ``S`` and is lowered image by image (:func:`update_table`), in the order given; ``images``
    is read once, one image at a time.
    """
    from tqdm.auto import tqdm

    from lte.data.images import to_tensor
    from lte.evaluation.protocol import model_input
    from lte.testsets import pair_on_the_fly

    check_model(model, "lte.cmsr")
    if not math.isfinite(mse) or mse <= 0:
        raise UserError(f"--mse must be a positive number, got {mse}")
    device = torch.device(device)
    model = model.to(device).eval()
    targets = sorted(float(v) for v in scales)
    tables = {s: {float(d): 1.0 for d in decode_scales if d <= s} for s in targets}
    total = len(images) if isinstance(images, Sized) else None
    bar = tqdm(images, total=total, unit="img", disable=None if progress is None else not progress)
    for name, hr in bar:  # one image in memory at a time, every table updated from it in turn
        for s in targets:
            bar.set_description(f"{name} x{s:g}")
            try:
                lr, _ = pair_on_the_fly(hr, s)
            except UserError as err:
                raise UserError(f"image '{name}' at x{s:g}: {err}") from None
            inp = model_input(to_tensor(lr).unsqueeze(0), model.pad_multiple).to(device)
            grid = (round(s * inp.shape[-2]), round(s * inp.shape[-1]))
            update_table(
                tables[s], model, inp, grid, mse=mse, chunk=chunk, kernel=kernel, tile=tile
            )
    return CMSRTables.from_data(tables)
