"""The papers' test protocol as library functions: LR/HR pairs, full-image prediction, PSNR/SSIM, records.

``python -m lte.test`` is a thin Hydra shell around :func:`evaluate_testset`; notebooks, the training
loop's validation and scripts can call the same functions and get the same numbers. Each step follows
the LIIF/LTE test code as SPEC.md describes it (see ``docs/evaluation.md``):

1. LR: the file in ``LR_bicubic/X{s}`` when that folder exists, with the HR cropped top-left to
   ``h_lr·s × w_lr·s``; otherwise the HR cropped to ``floor(H/s)·s`` and downsampled with PIL bicubic.
2. Queries at every HR pixel centre, cell ``(2/H, 2/W) · max(s / scale_max, 1)``; SwinIR-style
   encoders get their LR mirror-padded to a multiple of the window and the prediction cropped back.
3. Prediction denormalised and clamped (never rounded to 8 bits); PSNR and SSIM per image on Y with
   ``s`` px shaved (``benchmark``) or on RGB with ``s + 6`` shaved (``div2k``); plain mean over images.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lte.atomic import atomic_write_text
from lte.data.images import denormalize, load_rgb, normalize, to_tensor
from lte.data.layouts import format_scale, is_image, list_images, lr_candidates
from lte.data.resize import lr_size, make_lr
from lte.errors import UserError
from lte.geometry import cell_enlargement
from lte.inference import predict
from lte.metrics import PROTOCOLS, psnr_protocol, shave_border, ssim_protocol

log = logging.getLogger(__name__)

#: Queries per decoder call in the papers' test code; chunking never changes the result.
DEFAULT_CHUNK = 30000
#: SSIM's Gaussian window: images smaller than this after shaving get no SSIM (NaN).
SSIM_WINDOW = 11


# --- test sets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestSet:
    """Where a test set's images are and how to score them.

    Args:
        name: the name used in tables and result files (``set5``, ``div2k``, ...).
        root: the folder holding ``hr_dir`` and the LR folders.
        protocol: ``benchmark`` (Y, shave s) or ``div2k`` (RGB, shave s + 6).
        hr_dir: HR images, relative to ``root``.
        lr_dir: the LR folder of a scale, relative to ``root``; ``{scale}`` becomes ``2``, ``3``, ...
        download: the script that fetches this set, named in the error when it is missing.
    """

    __test__ = False  # not a pytest class, despite the name

    name: str
    root: Path
    protocol: str = "benchmark"
    hr_dir: str = "HR"
    lr_dir: str = "LR_bicubic/X{scale}"
    download: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise UserError(
                f"testset.protocol '{self.protocol}' for '{self.name}' is unknown: "
                f"use one of {', '.join(PROTOCOLS)}"
            )
        object.__setattr__(self, "root", Path(self.root))

    @property
    def hr_folder(self) -> Path:
        """The folder of HR images."""
        return self.root / self.hr_dir

    def lr_folder(self, scale: float) -> Path:
        """The folder that would hold the shipped LR images of ``scale``."""
        return self.root / self.lr_dir.format(scale=format_scale(scale))

    def hr_images(self) -> list[Path]:
        """The HR files, sorted by name; a missing folder names the download script.

        Raises:
            UserError: the folder is missing or holds no images.
        """
        if self.download:
            hint = f"run {self.download} (or point testset.root at your copy)"
        else:
            hint = f"put the HR images in '{self.hr_folder}' (set testset.root=DIR)"
        return list_images(self.hr_folder, hint=hint)


def has_lr_folder(testset: TestSet, scale: float) -> bool:
    """Whether shipped LR images exist for ``scale`` (then they are used instead of PIL bicubic)."""
    return testset.lr_folder(scale).is_dir()


def find_lr_file(hr_file: Path, lr_dir: Path, scale: float) -> Path:
    """The LR file of ``hr_file`` in ``lr_dir`` (``<stem>x{s}.png`` first), matched by name.

    Raises:
        UserError: the LR folder exists but has no file for this HR image.
    """
    for candidate in lr_candidates(hr_file, lr_dir, scale):
        if is_image(candidate):
            return candidate
    tag = format_scale(scale)
    raise UserError(
        f"LR folder '{lr_dir}' has no LR image for '{hr_file.name}' (expected "
        f"'{hr_file.stem}x{tag}.png'): add it, or remove the folder to make LR images on the fly"
    )


# --- LR/HR pairs -------------------------------------------------------------------------------


def pair_from_lr_file(
    hr: np.ndarray, lr: np.ndarray, scale: float, *, lr_path: Path | str = "LR image"
) -> np.ndarray:
    """The HR crop that a shipped LR image maps onto: top-left ``h_lr·s × w_lr·s``.

    The LR must be exactly ``floor(H/s) × floor(W/s)``: anything else means the files do not belong
    together (wrong scale folder, a resized HR), and scoring them would give a meaningless number.

    Raises:
        UserError: the LR size times ``s`` does not match the cropped HR (names ``lr_path``).
    """
    want = lr_size(hr.shape[:2], scale)
    got = lr.shape[:2]
    if tuple(got) != tuple(want):
        raise UserError(
            f"LR image '{lr_path}' is {got[1]}x{got[0]} px but its HR at x{format_scale(scale)} "
            f"needs {want[1]}x{want[0]} (HR {hr.shape[1]}x{hr.shape[0]} cropped to a multiple of "
            f"{format_scale(scale)}): the LR belongs to another image or scale"
        )
    return hr[: round(got[0] * scale), : round(got[1] * scale)]


def pair_on_the_fly(hr: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """``(lr, hr_crop)``: HR cropped to ``floor(H/s)·s`` and downsampled with PIL bicubic (8-bit).

    Raises:
        UserError: the image is smaller than one LR pixel at this scale.
    """
    hr_crop, lr = make_lr(hr, scale, kernel="pil")
    return lr, hr_crop


# --- prediction --------------------------------------------------------------------------------


def mirror_pad(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Pad ``(B, C, h, w)`` bottom/right by symmetric mirroring to the next multiple, 1..``multiple`` px.

    Follows the reference test code: ``pad = (h // m + 1) · m - h`` (a full ``m`` when ``h`` is
    already a multiple), and the padding continues the image's mirror image with the edge pixel
    repeated (``… a b c | c b a …``), i.e. ``cat([x, flip(x)])`` then cut. Returns the padded tensor
    and ``(h_pad, w_pad)``.
    """
    h, w = x.shape[-2:]
    h_pad = (h // multiple + 1) * multiple - h
    w_pad = (w // multiple + 1) * multiple - w
    # Index form of cat([x, flip(x)]) repeated, so even an image smaller than the pad works.
    rows = torch.arange(h + h_pad, device=x.device) % (2 * h)
    rows = torch.where(rows < h, rows, 2 * h - 1 - rows)
    cols = torch.arange(w + w_pad, device=x.device) % (2 * w)
    cols = torch.where(cols < w, cols, 2 * w - 1 - cols)
    return x.index_select(-2, rows).index_select(-1, cols), (h_pad, w_pad)


def super_resolve(
    model: nn.Module,
    lr: Tensor,
    out_hw: tuple[int, int],
    scale: float,
    *,
    scale_max: float,
    chunk: int = DEFAULT_CHUNK,
    tile: int | None = 0,
) -> Tensor:
    """Predict the ``out_hw`` HR image of ``lr`` (``(B, 3, h, w)`` in [0, 1]) as the test protocol does.

    Returns ``(B, 3, H, W)`` in [0, 1], clamped, not rounded. The cell is ``(2/H, 2/W)`` times
    ``max(s / scale_max, 1)``. An encoder with ``pad_multiple > 0`` (SwinIR's window) sees its
    LR mirror-padded (:func:`mirror_pad`); the padded image is queried on its own
    ``round(s·h_p) × round(s·w_p)`` grid with cell ``2 / (h_p·s)`` and the top-left ``H × W`` kept,
    so the border pixels are predicted from real content rather than from the encoder's own padding.
    Queries go to the decoder ``chunk`` at a time (:func:`lte.inference.predict`).

    ``tile`` is the LR tile side for encoding (``0``: the whole image, as the papers do; ``None``:
    picked from free memory). Tiles agree with the whole image to float round-off for convolutional
    encoders; SwinIR's attention sees the whole padded image in the protocol, so it is never tiled.
    """
    inp = normalize(lr)
    enlarge = cell_enlargement(scale, scale_max)
    multiple = int(getattr(model, "pad_multiple", 0) or 0)
    with torch.no_grad():
        if multiple > 0:
            inp, _ = mirror_pad(inp, multiple)
            hp, wp = inp.shape[-2:]
            grid = (round(scale * hp), round(scale * wp))
            # predict's cell is 2/grid; the protocol's is 2/(h_p·s). They are equal for integer s
            # (the factor below is exactly 1); for fractional s the factor corrects the rounding.
            cell_scale = (enlarge * grid[0] / (scale * hp), enlarge * grid[1] / (scale * wp))
            pred = predict(model, inp, grid, cell_scale=cell_scale, chunk=chunk, tile=0)
            pred = pred[..., : out_hw[0], : out_hw[1]]
        else:
            cell_scale = (enlarge, enlarge)
            pred = predict(model, inp, out_hw, cell_scale=cell_scale, chunk=chunk, tile=tile)
    return denormalize(pred)


# --- scoring -----------------------------------------------------------------------------------


@dataclass
class ImageScore:
    """PSNR (dB) and SSIM of one image at one scale."""

    name: str
    psnr: float
    ssim: float


def score_image(
    model: nn.Module,
    lr: np.ndarray,
    hr: np.ndarray,
    scale: float,
    protocol: str,
    *,
    scale_max: float,
    chunk: int = DEFAULT_CHUNK,
    tile: int | None = 0,
    device: torch.device | str = "cpu",
    name: str = "image",
) -> ImageScore:
    """Super-resolve one ``(h, w, 3)`` uint8 LR to its (already cropped) HR and score it.

    Raises:
        UserError: the HR is too small to shave the protocol's border.
    """
    border = shave_border(scale, protocol)
    h, w = hr.shape[:2]
    if min(h, w) <= 2 * border:
        raise UserError(
            f"image '{name}' is {w}x{h} px at x{format_scale(scale)}: too small to shave "
            f"{border} px per border ({protocol} protocol); drop this scale or the image"
        )
    lr_t = to_tensor(lr).unsqueeze(0).to(device)  # (1, 3, h, w)
    gt = to_tensor(hr).unsqueeze(0).to(device)  # (1, 3, H, W)
    pred = super_resolve(model, lr_t, (h, w), scale, scale_max=scale_max, chunk=chunk, tile=tile)
    p = float(psnr_protocol(pred, gt, scale, protocol)[0])
    if min(h, w) - 2 * border >= SSIM_WINDOW:
        s = float(ssim_protocol(pred, gt, scale, protocol)[0])
    else:
        s = math.nan
    return ImageScore(name, p, s)


# --- results -----------------------------------------------------------------------------------


@dataclass
class ResultRecord:
    """One row of a results file: a model on one test set at one scale (the schema of ``results_file``)."""

    testset: str
    scale: float
    protocol: str
    psnr: float
    ssim: float | None
    images: int | None
    model: str
    encoder: str
    ckpt: str
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the schema's keys only, scales as ``2`` rather than ``2.0``."""
        d = {k: v for k, v in asdict(self).items() if k != "extra"}
        d["scale"] = scale_value(self.scale)
        for key in ("psnr", "ssim"):
            if isinstance(d[key], float) and not math.isfinite(d[key]):
                d[key] = None  # JSON has no NaN / inf
        return d


#: The keys every record of a results file holds, in column order.
RESULT_KEYS: tuple[str, ...] = tuple(f.name for f in fields(ResultRecord) if f.name != "extra")


def scale_value(scale: float) -> int | float:
    """``2`` for 2.0 (as the tables print it), the float otherwise."""
    s = float(scale)
    return int(s) if s.is_integer() else s


def record_key(rec: dict[str, Any]) -> tuple[Any, ...]:
    """Records with the same key replace each other when results are merged into one file."""
    return (
        rec["ckpt"],
        rec["model"],
        rec["encoder"],
        rec["testset"],
        rec["protocol"],
        rec["scale"],
    )


def validate_record(rec: Any, where: str) -> dict[str, Any]:
    """Check one record against the schema; a bad one is a UserError naming ``where``."""
    if not isinstance(rec, dict):
        raise UserError(f"{where}: a result must be a JSON object, got {type(rec).__name__}")
    missing = [k for k in RESULT_KEYS if k not in rec]
    if missing:
        raise UserError(f"{where}: result lacks {', '.join(missing)} (is it an lte results file?)")
    if not isinstance(rec["scale"], int | float) or isinstance(rec["scale"], bool):
        raise UserError(f"{where}: scale {rec['scale']!r} is not a number")
    if rec["psnr"] is not None and not isinstance(rec["psnr"], int | float):
        raise UserError(f"{where}: psnr {rec['psnr']!r} is not a number")
    return rec


def read_results(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a results JSON file, checked against the schema.

    Raises:
        UserError: the file is missing, not JSON, or not a list of records.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"results file '{p}' does not exist: make it with python -m lte.test")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"results file '{p}' is not valid JSON: {err}") from None
    if not isinstance(data, list):
        raise UserError(f"results file '{p}' must hold a JSON list of records")
    return [validate_record(rec, f"'{p}' record {i}") for i, rec in enumerate(data)]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path.lock`` (POSIX), so parallel multirun jobs merge safely."""
    try:
        import fcntl
    except ImportError:  # Windows: no parallel launchers to guard against in practice
        yield
        return
    lock = path.with_name(f".{path.name}.lock")
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def results_to_csv(records: Sequence[dict[str, Any]]) -> str:
    """The records as CSV text, one column per schema key."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(RESULT_KEYS), extrasaction="ignore")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: "" if rec[k] is None else rec[k] for k in RESULT_KEYS})
    return buf.getvalue()


def write_results(
    records: Sequence[ResultRecord | dict[str, Any]],
    path: str | os.PathLike[str],
    *,
    merge: bool = True,
) -> list[dict[str, Any]]:
    """Write records to ``path`` (JSON list) and the same rows to ``path`` with ``.csv``, atomically.

    With ``merge`` the file's existing records are kept, and those with the same checkpoint, model,
    encoder, test set, protocol and scale are replaced: several runs (a Hydra multirun over test
    sets or checkpoints) can fill one file. Returns everything the file now holds.

    Raises:
        UserError: the folder does not exist, or the existing file is not a results file.
    """
    p = Path(path)
    if not p.parent.is_dir():
        raise UserError(f"results_file folder '{p.parent}' does not exist: create it first")
    if p.suffix.lower() != ".json":
        raise UserError(f"results_file '{p}' must end in .json (a .csv is written beside it)")
    new = [
        r.to_dict() if isinstance(r, ResultRecord) else validate_record(r, str(p)) for r in records
    ]
    with _locked(p):
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        if merge and p.exists():
            for rec in read_results(p):
                rows[record_key(rec)] = rec
        for rec in new:
            rows[record_key(rec)] = rec
        out = list(rows.values())
        atomic_write_text(p, json.dumps(out, indent=2) + "\n")
        atomic_write_text(p.with_suffix(".csv"), results_to_csv(out))
    return out


# --- a whole test set --------------------------------------------------------------------------


def evaluate_testset(
    model: nn.Module,
    testset: TestSet,
    scales: Sequence[float],
    *,
    scale_max: float,
    chunk: int = DEFAULT_CHUNK,
    tile: int | None = 0,
    device: torch.device | str = "cpu",
    model_name: str = "model",
    encoder_name: str = "encoder",
    ckpt: str = "",
    on_image: Callable[[float, ImageScore], None] | None = None,
) -> list[ResultRecord]:
    """Score ``model`` on every image of ``testset`` at every scale; one record per scale.

    Each HR image is read once and scored at all scales. A scale uses the shipped LR images when
    ``testset.lr_folder(scale)`` exists and PIL bicubic LR otherwise (logged once per scale).
    ``on_image`` is called after every image (progress bars, per-image logs).

    Raises:
        UserError: missing test-set folder, an LR file missing or of the wrong size (named).
    """
    if not scales:
        raise UserError("scales is empty: pass e.g. scales=[2,3,4]")
    for s in scales:
        if not float(s) >= 1:
            raise UserError(f"scale {s} is invalid: scales must be numbers >= 1")
    hr_files = testset.hr_images()
    lr_dirs: dict[float, Path | None] = {}
    for s in scales:
        if has_lr_folder(testset, s):
            lr_dirs[s] = testset.lr_folder(s)
            log.info("%s x%s: LR images from %s", testset.name, format_scale(s), lr_dirs[s])
        else:
            lr_dirs[s] = None
            log.info(
                "%s x%s: no LR folder %s, making LR on the fly (PIL bicubic)",
                testset.name,
                format_scale(s),
                testset.lr_folder(s),
            )
    scores: dict[float, list[ImageScore]] = {s: [] for s in scales}
    model = model.to(device).eval()
    for hr_file in hr_files:
        hr_full = load_rgb(hr_file)
        for s in scales:
            lr_dir = lr_dirs[s]
            if lr_dir is not None:
                lr_file = find_lr_file(hr_file, lr_dir, s)
                lr = load_rgb(lr_file)
                hr = pair_from_lr_file(hr_full, lr, s, lr_path=lr_file)
            else:
                lr, hr = pair_on_the_fly(hr_full, s)
            score = score_image(
                model,
                lr,
                hr,
                s,
                testset.protocol,
                scale_max=scale_max,
                chunk=chunk,
                tile=tile,
                device=device,
                name=str(hr_file),
            )
            scores[s].append(score)
            if on_image is not None:
                on_image(s, score)
    records = []
    for s in scales:
        ssims = [x.ssim for x in scores[s]]
        records.append(
            ResultRecord(
                testset=testset.name,
                scale=float(s),
                protocol=testset.protocol,
                psnr=float(np.mean([x.psnr for x in scores[s]])),
                ssim=None if any(math.isnan(v) for v in ssims) else float(np.mean(ssims)),
                images=len(scores[s]),
                model=model_name,
                encoder=encoder_name,
                ckpt=ckpt,
                extra={"per_image": scores[s]},
            )
        )
    return records
