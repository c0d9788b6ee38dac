"""Which files in a folder are images, and how LR files are matched to their HR originals.

Training, evaluation and the LR-making script all need the same answers to "which files are the
images here" and "which LR file belongs to this HR file", so they are answered once, here. LR files
are matched to HR files by *name*, never by sorted position: a single missing or extra file would
otherwise shift every later pair silently and ruin every PSNR after it.

Where the data sets themselves live is configuration, not code: the training presets build their
folders from ``paths.data_dir`` (``conf/paths/default.yaml``: ``$LTE_DATA``, else ``load``), and
the test-set presets are :mod:`lte.testsets`'s business. LR names follow the DIV2K/benchmark
convention ``<stem>x{s}.png``, which ``scripts/make_lr.py`` writes too.
"""

from __future__ import annotations

import os
from pathlib import Path

from lte.data.images import IMAGE_SUFFIXES
from lte.errors import UserError
from lte.scales import format_scale

_HINT_DIV2K = "run scripts/download_div2k.sh (see docs/data.md)"
_HINT_FOLDER = "check the path, or see docs/data.md for how to get the data"


def is_image(path: Path) -> bool:
    """Whether a path names an image file lte reads (by suffix, case-insensitive)."""
    suffix_ok = path.suffix.lower() in IMAGE_SUFFIXES
    return suffix_ok and path.is_file() and not path.name.startswith(".")


def list_images(folder: str | os.PathLike[str], *, hint: str = _HINT_FOLDER) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name.

    Only the suffixes in :data:`lte.data.images.IMAGE_SUFFIXES` count; hidden files and sub-folders
    are ignored (so ``X2/`` inside an LR folder is not mistaken for data).

    Args:
        folder: the folder to scan.
        hint: how to get the data, appended to the error message (e.g. the download script).

    Raises:
        UserError: the folder does not exist, is not a folder, or holds no images.
    """
    p = Path(folder)
    if not p.exists():
        raise UserError(f"image folder '{p}' does not exist: {hint}")
    if not p.is_dir():
        raise UserError(f"'{p}' is not a folder: pass a folder of images")
    files = sorted((f for f in p.iterdir() if is_image(f)), key=lambda f: f.name)
    if not files:
        suffixes = ", ".join(IMAGE_SUFFIXES)
        raise UserError(f"image folder '{p}' holds no images ({suffixes}): {hint}")
    return files


def lr_candidates(hr_file: Path, lr_dir: Path, scale: float) -> list[Path]:
    """LR names that may belong to ``hr_file`` at ``scale``, most specific first.

    ``<stem>x{s}<suffix>`` (DIV2K, the benchmark bundle and ``make_lr.py``), then ``<stem><suffix>``
    (a folder of LR files that keep the HR names), for every image suffix, the HR's own first.
    """
    tag = f"x{format_scale(scale)}"
    suffixes = [hr_file.suffix, *(s for s in IMAGE_SUFFIXES if s != hr_file.suffix.lower())]
    names = [f"{hr_file.stem}{tag}{s}" for s in suffixes] + [f"{hr_file.stem}{s}" for s in suffixes]
    return [lr_dir / n for n in names]


def pair_by_name(
    hr_files: list[Path], lr_dir: str | os.PathLike[str], scale: float
) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Match each HR file to its LR file in ``lr_dir`` by name.

    ``<stem>.png`` pairs with ``<stem>x{s}.png`` (also any image suffix, and an LR that keeps the
    HR's own name). Sorted positions are never used.

    Returns:
        ``pairs``: ``(hr, lr)`` in the order of ``hr_files``.
        ``unpaired``: files without a partner: HR files with no LR, then LR files with no HR
        (sorted), so the caller can list them in one message.

    Raises:
        UserError: ``lr_dir`` does not exist or holds no images.
    """
    lr_dir = Path(lr_dir)
    lr_files = list_images(lr_dir, hint=f"make it with scripts/make_lr.py or {_HINT_DIV2K}")
    available = {f.name: f for f in lr_files}
    pairs: list[tuple[Path, Path]] = []
    unpaired: list[Path] = []
    used: set[str] = set()
    for hr in hr_files:
        match = next((c for c in lr_candidates(hr, lr_dir, scale) if c.name in available), None)
        if match is None:
            unpaired.append(hr)
        else:
            pairs.append((hr, available[match.name]))
            used.add(match.name)
    unpaired.extend(f for f in lr_files if f.name not in used)
    return pairs, unpaired


def require_pairs(
    hr_files: list[Path], lr_dir: str | os.PathLike[str], scale: float
) -> list[tuple[Path, Path]]:
    """:func:`pair_by_name`, but any unpaired file is an error that lists them (up to 10)."""
    pairs, unpaired = pair_by_name(hr_files, lr_dir, scale)
    if unpaired:
        shown = ", ".join(str(p) for p in unpaired[:10])
        more = f" and {len(unpaired) - 10} more" if len(unpaired) > 10 else ""
        raise UserError(
            f"{len(unpaired)} file(s) have no HR/LR partner at x{format_scale(scale)} "
            f"in '{lr_dir}': {shown}{more}; LR names must be <stem>x{format_scale(scale)}.png"
        )
    return pairs
