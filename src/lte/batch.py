"""Many pictures through one model: which files, which names, what to skip, and what to say.

``lte.upscale IN OUT`` with IN a folder or a glob pattern writes one file per image into the folder
OUT. Everything about the names is settled before the model is loaded (:func:`plan`): the inputs
(images by suffix, hidden files skipped, sub-folders with ``--recursive``, mirrored under OUT),
each output's name (``--suffix``, ``--format``), two inputs that would write one file, an output that
would replace an input, and every output path (:func:`lte.files.check_output`). An output that
exists is skipped (``--skip-existing``, the default), so a stopped batch resumes where it stopped:
every file is written atomically, so one that exists is whole.

:func:`run_jobs` then runs the jobs in order under one progress bar. A file that fails (not an
image, over a limit) is one ``failed:`` line, and the batch goes on; Ctrl-C stops it with one line
saying how many files are done. Per image, :class:`Upscaler` checks the header, the output size and
its memory before reading the pixels, as the single-file command does.
"""

from __future__ import annotations

import glob
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lte.checkpoint import LoadedModel
from lte.data.images import IMAGE_SUFFIXES, MAX_SIDE, image_size
from lte.data.picture import read_picture
from lte.data.picture_write import (
    ALPHA_FORMATS,
    FORMATS,
    SIXTEEN_BIT_FORMATS,
    format_of,
    write_picture,
)
from lte.errors import Interrupted, UserError, escape_controls, quote
from lte.files import check_output
from lte.fixed_scale import check_output_size
from lte.inference import ProgressFn
from lte.limits import check_output_request
from lte.models.decoders import Kernel
from lte.upscaling import NonFiniteOutput, UpscaleSettings, upscale_picture

if TYPE_CHECKING:
    from lte.onnx_runtime import OnnxLoaded

#: ``--format`` choices: the formats of :data:`lte.data.picture_write.FORMATS`, or the input's.
FORMAT_CHOICES = (*FORMATS, "same")
#: Exit status of a batch in which some files failed (bad options are 2, Ctrl-C 130).
EXIT_SOME_FAILED = 1


def is_batch(source: str, output: str) -> bool:
    """Whether ``lte.upscale SOURCE OUTPUT`` is a batch: SOURCE a folder or a glob pattern (not an
    existing file), and OUTPUT not a file name with an image suffix (it may be a folder that
    exists, or a name to create). Anything else is the single-file command."""
    many = os.path.isdir(source) or (glob.has_magic(source) and not os.path.lexists(source))
    return many and (os.path.isdir(output) or format_of(output) is None)


@dataclass(frozen=True)
class Naming:
    """How outputs are named: ``<stem><suffix>.<format>`` under OUT, sub-folders mirrored."""

    suffix: str = ""
    format: str = "same"
    recursive: bool = False


@dataclass(frozen=True)
class Job:
    """One input and its output; ``skip``: the output exists and is kept."""

    source: Path
    target: Path
    skip: bool = False


def find_inputs(
    source: str, *, recursive: bool, exclude: Path | None = None
) -> tuple[Path, list[Path]]:
    """``(base, images)``: the images of the folder or glob pattern ``source`` (by suffix, hidden
    files and folders skipped, sorted) and the folder their relative names start from. With
    ``recursive``, sub-folders (a folder) or ``**`` (a pattern) too; ``exclude`` (the output
    folder, when it is inside the input folder) is never searched.

    Raises:
        UserError: no image found.
    """
    skip = None if exclude is None else os.path.realpath(exclude)
    if os.path.isdir(source):
        base = Path(source)
        found: list[Path] = []
        for folder, dirs, files in os.walk(base):
            dirs[:] = sorted(
                d
                for d in dirs
                if not d.startswith(".") and os.path.realpath(Path(folder, d)) != skip
            )
            found += [Path(folder, f) for f in files if not f.startswith(".")]
            if not recursive:
                break
    else:
        parts = Path(source).parts
        fixed = next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))
        base = Path(*parts[:fixed]) if fixed else Path(".")
        found = [Path(p) for p in glob.glob(source, recursive=recursive)]
        found = [p for p in found if not p.name.startswith(".")]
    images = sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        what = "folder" if os.path.isdir(source) else "pattern"
        deeper = "" if recursive else " (add --recursive to look in sub-folders)"
        raise UserError(
            f"input {what} {quote(source)} holds no image ({', '.join(IMAGE_SUFFIXES)}){deeper}"
        )
    return base, images


def plan(
    source: str,
    out_dir: str,
    naming: Naming,
    *,
    skip_existing: bool,
    overwrite: bool,
    sixteen_bits: bool,
) -> list[Job]:
    """Every job of ``lte.upscale SOURCE OUT_DIR``, checked before any work.

    ``sixteen_bits``: ``--bit-depth 16`` was asked, so every output format must hold it.

    Raises:
        UserError: OUT_DIR is a file; no images; two inputs would write one output; an output
            would replace an input; an output format cannot hold 16 bits; an output path cannot
            be written (:func:`lte.files.check_output`).
    """
    out = Path(out_dir)
    if os.path.lexists(out) and not os.path.isdir(out):
        raise UserError(
            f"output folder {quote(out)} is a file: give a folder for the images (it is created "
            "if it does not exist)"
        )
    inside = os.path.realpath(out).startswith(os.path.realpath(source) + os.sep)
    base, images = find_inputs(source, recursive=naming.recursive, exclude=out if inside else None)
    inputs = {os.path.realpath(p): p for p in images}
    owners: dict[str, Path] = {}
    jobs = []
    for src in images:
        relative = src.relative_to(base) if naming.recursive else Path(src.name)
        ext = src.suffix if naming.format == "same" else FORMATS[naming.format][1]
        target = out / relative.parent / f"{src.stem}{naming.suffix}{ext}"
        real = os.path.realpath(target)
        if real in owners:
            raise UserError(
                f"{quote(owners[real])} and {quote(src)} would both be written to {quote(target)}: "
                "use --format same, or move one of them away"
            )
        owners[real] = src
        if real in inputs:
            raise UserError(
                f"output {quote(target)} would replace the input image {quote(inputs[real])}: "
                "choose another output folder or a --suffix (inputs are never replaced)"
            )
        fmt = format_of(target)
        if sixteen_bits and fmt not in SIXTEEN_BIT_FORMATS:
            raise UserError(
                f"--bit-depth 16: {quote(target)} would be {fmt}, which holds 8 bits per sample: "
                "use --format png or --format tif"
            )
        exists = os.path.lexists(target)
        if exists and skip_existing and not overwrite and os.path.isfile(target):
            jobs.append(Job(src, target, skip=True))
            continue
        check_output(target, what="output", overwrite=overwrite, make_folder=True)
        jobs.append(Job(src, target))
    return jobs


@dataclass(frozen=True)
class Upscaler:
    """The loaded model and the settings: what turns one input file into one output file.

    ``loaded`` is a checkpoint's model, or an ONNX export (:class:`lte.onnx_runtime.OnnxLoaded`,
    whose model has the part of ``SRModel``'s surface that :func:`lte.inference.predict` uses)."""

    loaded: LoadedModel | OnnxLoaded
    settings: UpscaleSettings
    kernel: Kernel | None = None
    max_pixels: int | None = None
    max_output_pixels: int | None = None

    def check(self, source: Path, target: Path) -> tuple[int, int]:
        """The output's ``(H, W)``, after every check that reads no pixel: the input's header and
        pixel limit, the output's size, pixel limit, memory and its format's largest side.

        Raises:
            UserError: one line naming the file.
        """
        out_hw = self.settings.size.output_size(image_size(source, self.max_pixels))
        check_output_request(out_hw, self.max_output_pixels)
        fmt = format_of(target)
        if fmt in MAX_SIDE and max(out_hw) > MAX_SIDE[fmt]:
            raise UserError(
                f"output {quote(target)}: {fmt} images are at most {MAX_SIDE[fmt]} pixels a side, "
                f"and this one would be {out_hw[1]}x{out_hw[0]}: use .png or .tif"
            )
        return out_hw

    def run(
        self,
        source: Path,
        target: Path,
        progress: ProgressFn | None = None,
        before_write: Callable[[], None] | None = None,
    ) -> list[str]:
        """Upscale ``source`` into ``target`` (its folders created); returns warnings to show.
        ``before_write`` runs between computing and writing (a last check of the destination).

        Raises:
            UserError: the image cannot be read, the model makes no such size (fixed-scale), the
                result is not finite, or the output cannot be written.
        """
        pic = read_picture(source, self.max_pixels)
        size = self.settings.size
        out_hw = size.output_size(pic.size)
        check_output_size(
            self.loaded.model.native_scale,
            pic.size,
            out_hw,
            option=size.option,
            what=f"checkpoint {quote(self.loaded.path)}",
        )
        try:
            up = upscale_picture(
                self.loaded.model, pic, out_hw, self.settings, kernel=self.kernel, progress=progress
            )
        except NonFiniteOutput:
            hint = "" if self.settings.dtype is None else " (or try --dtype float32)"
            raise UserError(
                f"checkpoint {quote(self.loaded.path)} produced non-finite values (NaN or "
                f"infinity) for {quote(source)}: its weights are probably corrupt; use another "
                f"checkpoint{hint}"
            ) from None
        fmt = format_of(target) or ""
        warnings = []
        if up.alpha is not None and fmt not in ALPHA_FORMATS:
            warnings.append(
                f"{quote(source)} has transparent pixels, and {fmt} files hold no alpha: "
                f"{quote(target)} is written opaque (use .png, .tif or .webp to keep it)"
            )
        if before_write is not None:
            before_write()
        target.parent.mkdir(parents=True, exist_ok=True)
        write_picture(
            up, target, bits=self.settings.output_bits(pic, fmt), quality=self.settings.quality
        )
        return warnings


@dataclass
class Tally:
    """What a batch did so far: files upscaled, skipped (already there) and failed."""

    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)

    def summary(self, out_dir: str) -> str:
        seconds = time.monotonic() - self.started
        return (
            f"upscaled {self.done}, skipped {self.skipped} (already in {quote(out_dir)}), "
            f"failed {self.failed}, of {self.total} files in {seconds:.1f} s"
        )


def run_jobs(
    jobs: list[Job],
    upscaler: Upscaler,
    *,
    out_dir: str,
    overwrite: bool = False,
    progress: bool = True,
    say: Callable[[str], None] | None = None,
) -> Tally:
    """Run every job under one progress bar (files; the postfix counts a file's tiles).

    A file that fails is one ``failed:`` line through ``say`` and the batch goes on; warnings are
    ``warning:`` lines. Without ``overwrite``, an output that appeared while its file was computed
    is kept, and that file fails. Returns the tally; the caller prints its summary and sets the exit status.

    Raises:
        Interrupted: Ctrl-C: how many files are done (written now or before) and how to finish.
    """
    from tqdm.auto import tqdm

    tally = Tally(total=len(jobs), skipped=sum(job.skip for job in jobs))
    todo = [job for job in jobs if not job.skip]
    bar = tqdm(
        total=len(todo), desc="upscaling", unit="file", disable=not progress, file=sys.stderr
    )
    show = say or (lambda line: bar.write(line, file=sys.stderr))

    name = ""

    def tiles(done: int, total: int) -> None:
        if total > 1:
            bar.set_postfix_str(f"{name}, tile {done}/{total}")

    try:
        with bar:
            for job in todo:
                name = escape_controls(job.source.name)
                bar.set_postfix_str(name)
                try:
                    upscaler.check(job.source, job.target)
                    recheck = _recheck(job.target, overwrite)
                    for line in upscaler.run(job.source, job.target, tiles, recheck):
                        show(f"warning: {escape_controls(line)}")
                    tally.done += 1
                except UserError as err:
                    tally.failed += 1
                    show(f"failed: {escape_controls(str(err))}")
                bar.update()
    except KeyboardInterrupt:
        finished = tally.done + tally.skipped
        raise Interrupted(
            f"{finished} of {tally.total} files done into {quote(out_dir)}; run the same command "
            "again to finish"
        ) from None
    return tally


def _recheck(target: Path, overwrite: bool) -> Callable[[], None]:
    """Before writing ``target``: refuse it if it appeared meanwhile (unless ``overwrite``)."""

    def check() -> None:
        if not overwrite and os.path.lexists(target):
            check_output(target, what="output", overwrite=False, make_folder=True)

    return check
