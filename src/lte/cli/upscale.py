"""``python -m lte.upscale`` / ``lte-upscale``: upscale an image, a folder or a glob pattern of images
to any scale or size with a trained or released model.

Examples:
    python -m lte.upscale photo.png photo_x3.png --ckpt edsr-baseline-lte.pth --scale 3
    python -m lte.upscale photo.jpg poster.png --ckpt runs/demo/checkpoints/last.ckpt --size 3840x2160
    lte-upscale photos/ out/ --ckpt rdn-lte.pth --long-side 4000 --format png --recursive

One file: everything that can be checked without computing is checked first, in this order: the
options' values, the device, the input's header (a regular file, an image, within the pixel limit),
the output path (not the input; not an existing file or dangling link unless ``--overwrite``; never
a folder, FIFO or read-only file; a suffix PIL writes at the output's size; a writable folder; a
name the file system can hold: :func:`lte.files.check_output`) and the output's size and memory;
only then are the checkpoint loaded (its weights dense, floating-point and finite:
:mod:`lte.weights`) and the image decoded. A non-finite result is an error naming the checkpoint,
never a black image. ``--sha256 HEX`` checks the file's digest first, before it is read.

``--ckpt`` takes every file :func:`lte.checkpoint.load_checkpoint` reads (official ``.pth``, lte
``.ckpt``, ``.safetensors``) and an lte ONNX export (``.onnx``, run by onnxruntime through
:mod:`lte.onnx_runtime`, float32 on the CPU); :func:`load_model` is the one place a model is loaded.

A folder or a pattern (:mod:`lte.batch`): the names and output paths of every file are checked
before the checkpoint is loaded (once), then each file's header, size and memory before its own
work. A file that fails is one ``failed:`` line and the batch goes on; the exit status is then 1.
The picture itself (alpha, 16 bits, grey, metadata) is :mod:`lte.upscaling`'s.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from lte.batch import (
    EXIT_SOME_FAILED,
    FORMAT_CHOICES,
    Naming,
    Upscaler,
    is_batch,
    plan,
    run_jobs,
)
from lte.checkpoint import LoadedModel, load_checkpoint
from lte.checksum import check_sha256, parse_sha256
from lte.cli.options import Parser, check_not_input
from lte.data.images import MAX_PIXELS_ENV, check_output_path, image_size, parse_pixel_limit
from lte.data.picture_write import DEFAULT_QUALITY, SIXTEEN_BIT_FORMATS, format_of
from lte.devices import resolve_device, slow_lowp_warning
from lte.errors import UserError, exit_on_user_error, quote
from lte.files import check_output as check_destination
from lte.fixed_scale import is_native
from lte.geometry import ENSEMBLE_SIZES
from lte.inference import (
    AUTO_COMPILE_PIXELS,
    BACKENDS,
    DEFAULT_CHUNK,
    DTYPE_NAMES,
    DTYPES,
    kernel_for_backend,
    pick_backend,
    pick_dtype,
    stderr_progress,
)
from lte.limits import DEFAULT_MAX_OUTPUT_PIXELS, check_output_request, finite_positive
from lte.multiscale import CMSRTables, check_model
from lte.onnx_runtime import OnnxLoaded, load_onnx
from lte.upscaling import ALPHA_METHODS, BIT_DEPTHS, SizeRule, UpscaleSettings, parse_box


def build_parser() -> argparse.ArgumentParser:
    """The command line's options (see ``lte-upscale --help``)."""
    p = Parser(
        command="python -m lte.upscale",
        prog="lte-upscale",
        description="Upscale an image to any scale or size with LTE, LIIF or Meta-SR. "
        "EXIF orientation is applied (the output is upright). An existing output is never "
        "replaced without --overwrite, and the input is never replaced.",
    )
    p.add_argument(
        "input",
        help="input image (png, jpg, bmp, tif, webp), a folder of images, or a quoted glob "
        "pattern ('photos/*.jpg'; with --recursive, '**' matches sub-folders)",
    )
    p.add_argument(
        "output",
        help="output image (the format follows its suffix), or, for a folder or a pattern, the "
        "output folder (created if missing)",
    )
    p.add_argument(
        "--ckpt",
        required=True,
        help="official .pth release, lte training checkpoint, .safetensors or lte .onnx export",
    )
    p.add_argument(
        "--sha256",
        help="the SHA-256 the --ckpt file must have (as sha256sum prints it); checked before "
        "the file is read",
    )
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--scale", type=float, help="scale factor S: the output is round(S*W) x round(S*H)"
    )
    group.add_argument("--size", help="exact output size WIDTHxHEIGHT, e.g. 1920x1080")
    group.add_argument(
        "--fit",
        help="the largest size inside the box WIDTHxHEIGHT with the input's aspect ratio (the "
        "binding side exactly the box's, the other rounded)",
    )
    group.add_argument(
        "--long-side", type=int, help="the long side exactly N pixels, the other rounded"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs that exist (never an input file)",
    )
    p.add_argument(
        "--skip-existing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep outputs that exist and skip their inputs (the default for a folder or "
        "pattern, so a stopped batch resumes); --no-skip-existing redoes them, as --overwrite",
    )
    p.add_argument(
        "--suffix",
        default=None,
        help="folder/pattern: added to each output's name (a.png -> a_x4.png with _x4)",
    )
    p.add_argument(
        "--format",
        choices=FORMAT_CHOICES,
        default=None,
        help="folder/pattern: the outputs' format (default same: each input's own)",
    )
    p.add_argument(
        "--recursive",
        action="store_true",
        help="folder/pattern: sub-folders too, mirrored under the output folder",
    )
    p.add_argument(
        "--alpha",
        choices=ALPHA_METHODS,
        default="bicubic",
        help="how an alpha plane is upscaled: bicubic (default) or model (through the network "
        "as grey: twice the compute)",
    )
    p.add_argument(
        "--bit-depth",
        choices=BIT_DEPTHS,
        default="same",
        help="bits per sample of the output: 8, 16 (PNG and TIFF only) or same (default: the "
        "input's, where the output format holds it)",
    )
    p.add_argument(
        "--keep-grey", action="store_true", help="a grey input gives a grey output (default: RGB)"
    )
    p.add_argument(
        "--quality",
        type=int,
        default=DEFAULT_QUALITY,
        help=f"JPEG and WebP quality, 1-100 (default {DEFAULT_QUALITY}; JPEG without chroma "
        "subsampling)",
    )
    p.add_argument(
        "--ensemble",
        type=int,
        choices=ENSEMBLE_SIZES,
        default=1,
        help="self-ensemble: the mean of the predictions over 1 (default), 4 (rotations) or 8 "
        "(rotations and mirror images) views; 4x / 8x the compute",
    )
    p.add_argument(
        "--device", default="auto", help="auto (default), cpu, cuda[:N] or mps, if present"
    )
    p.add_argument(
        "--chunk",
        type=int,
        default=DEFAULT_CHUNK,
        help=f"queries per chunk (default {DEFAULT_CHUNK})",
    )
    p.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPE_NAMES,
        help="decoder MLP precision: auto (default: bfloat16 only where the device multiplies it "
        "natively and the family was checked, else float32), float32 (exact), bfloat16 (pays only "
        "on GPUs and CPUs with native bf16, AVX512-BF16 or AMX; elsewhere it is emulated, much "
        "slower, and a warning says so) or float16 (GPU); coordinates stay float32",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="decoder kernels: auto (default: compile when the compile cache is warm for the "
        f"model or the job reaches {AUTO_COMPILE_PIXELS / 1e6:g} MP of output, else eager), eager, "
        "or compile (torch.compile the decoder's query block: tens of seconds of compiling the "
        "first time on this machine, then loaded from the cache (lte-cache); same results within "
        "1e-5; LTE and LIIF; falls back to eager with a warning where it cannot work, e.g. no C++ "
        "compiler)",
    )
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        help="LR tile side in pixels for memory-bounded encoding (default: from available memory; "
        "0 encodes the whole image at once)",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar on stderr for tiled images"
    )
    p.add_argument(
        "--scale-max",
        type=float,
        default=None,
        help="training scale_max (default: from the checkpoint; 4 for official files)",
    )
    p.add_argument(
        "--cmsr",
        default=None,
        metavar="TABLES",
        help="LM-LTE/LM-LIIF only: a CMSR table file (python -m lte.cmsr); beyond the training "
        "scales, simple regions are rendered at lower scales (faster, within the tables' MSE)",
    )
    p.add_argument(
        "--max-pixels",
        default=None,
        help=f"largest input image in pixels, e.g. 200000000 or 20000x10000 (default: "
        f"${MAX_PIXELS_ENV} or 2**27); guards against files whose header claims a huge size",
    )
    p.add_argument(
        "--max-output-pixels",
        default=None,
        help=f"largest output in pixels (default: {DEFAULT_MAX_OUTPUT_PIXELS} = 2**28, and no more "
        "than the available memory holds at 48 bytes per pixel); a given value replaces both",
    )
    return p


def settings_of(args: argparse.Namespace) -> UpscaleSettings:
    """The options that shape each picture, checked: numbers no computation can make sense of are
    refused before anything is read."""
    if is_onnx(args.ckpt):
        check_onnx_options(args)
    if args.fit is not None:
        size = SizeRule(fit=parse_box(args.fit, "--fit"))
    elif args.size is not None:
        size = SizeRule(size=parse_box(args.size, "--size"))
    elif args.long_side is not None:
        size = SizeRule(long_side=args.long_side)
    else:
        size = SizeRule(scale=args.scale)
    settings = UpscaleSettings(
        size=size,
        alpha=args.alpha,
        bit_depth=args.bit_depth,
        keep_grey=args.keep_grey,
        quality=args.quality,
        ensemble=args.ensemble,
        chunk=args.chunk,
        tile=args.tile,
        dtype=DTYPES.get(args.dtype),  # auto: float32 until the model is loaded (pick_dtype)
        cmsr=CMSRTables.load(args.cmsr, "--cmsr") if args.cmsr is not None else None,
    )
    if args.scale_max is not None:
        finite_positive(args.scale_max, "--scale-max")
    if args.sha256 is not None:
        args.sha256 = parse_sha256(args.sha256, "--sha256")
    return settings


def is_onnx(ckpt: str) -> bool:
    """Whether ``--ckpt`` names an ONNX export (by its suffix): onnxruntime runs it."""
    return Path(ckpt).suffix.lower() == ".onnx"


def check_onnx_options(args: argparse.Namespace) -> None:
    """Options an ONNX export cannot honour (a float32 graph run by onnxruntime on the CPU).

    ``auto`` (the default of ``--dtype`` and ``--backend``) means float32 and onnxruntime here.
    """
    if args.dtype not in ("auto", "float32"):
        raise UserError(
            f"--dtype {args.dtype}: an ONNX model computes in float32; drop --dtype, or use the "
            "checkpoint it was exported from"
        )
    if args.backend not in ("auto", "eager"):
        raise UserError(
            f"--backend {args.backend}: an ONNX model runs in onnxruntime; drop --backend"
        )
    if args.device not in ("auto", "cpu"):
        raise UserError(
            f"--device {args.device}: an ONNX model runs on onnxruntime's CPU provider; use "
            "--device cpu (or auto)"
        )
    if args.cmsr is not None:
        raise UserError(
            "--cmsr: an ONNX model renders at one scale; drop --cmsr, or use the checkpoint it "
            "was exported from"
        )


def load_model(args: argparse.Namespace, device: torch.device) -> LoadedModel | OnnxLoaded:
    """The one place a model is loaded, after every other check: with ``--sha256``, the file's
    digest first; an ``.onnx`` export opens in onnxruntime (:func:`lte.onnx_runtime.load_onnx`);
    anything else is a checkpoint (official, lte or ``.safetensors``: dense, floating, finite
    weights, on ``device``). ``--scale-max`` replaces the file's ``scale_max`` when given."""
    if args.sha256 is not None:
        check_sha256(args.ckpt, args.sha256, option="--sha256")
    if is_onnx(args.ckpt):
        return load_onnx(args.ckpt, scale_max=args.scale_max)
    return load_checkpoint(args.ckpt, map_location=device, scale_max=args.scale_max)


def check_output(
    input_path: str, output_path: str, overwrite: bool, size: tuple[int, int] | None = None
) -> None:
    """Refuse an output that would replace the input, or an existing file without ``--overwrite``.

    Also the folder, the suffix (a format PIL writes at ``size``, the output's ``(H, W)``), the name
    length and writability, so that no computation is wasted (:func:`lte.files.check_output`).
    """
    check_not_input(input_path, output_path, what="output")
    check_output_path(output_path, size=size)
    check_destination(output_path, what="output", overwrite=overwrite)


def check_bit_depth(settings: UpscaleSettings, output: str) -> None:
    """``--bit-depth 16`` into a format that holds 8 bits per sample, refused before any work."""
    fmt = format_of(output)
    if settings.bit_depth == "16" and fmt not in SIXTEEN_BIT_FORMATS:
        raise UserError(
            f"--bit-depth 16: output {quote(output)} is {fmt}, which holds 8 bits per sample: "
            "use a .png or .tif output"
        )


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``lte-upscale`` / ``python -m lte.upscale``."""
    args = build_parser().parse_args(argv)
    settings = settings_of(args)
    max_pixels = (
        parse_pixel_limit(args.max_pixels, "--max-pixels") if args.max_pixels is not None else None
    )
    max_out = (
        parse_pixel_limit(args.max_output_pixels, "--max-output-pixels")
        if args.max_output_pixels is not None
        else None
    )
    device = resolve_device("cpu" if is_onnx(args.ckpt) else args.device, "--device")
    slow = slow_lowp_warning(device, DTYPES.get(args.dtype))
    if slow is not None:
        print(f"warning: --dtype {args.dtype}: {slow}", file=sys.stderr)
    overwrite = args.overwrite or args.skip_existing is False
    if is_batch(args.input, args.output):
        naming = Naming(args.suffix or "", args.format or "same", args.recursive)
        jobs = plan(
            args.input,
            args.output,
            naming,
            skip_existing=args.skip_existing is not False,
            overwrite=overwrite,
            sixteen_bits=settings.bit_depth == "16",
        )
        work = sum(_output_pixels(job.source, settings, max_pixels) for job in jobs if not job.skip)
        upscaler, picked = _upscaler(
            args, settings, device, max_pixels, max_out, work * settings.ensemble
        )
        native, scale = upscaler.loaded.model.native_scale, settings.size.scale
        if scale is not None and not is_native(native, scale):
            raise UserError(
                f"--scale {scale:g}: checkpoint {quote(upscaler.loaded.path)} is a fixed-scale "
                f"model with native scale x{native}: use --scale {native}"
            )
        tally = run_jobs(
            jobs, upscaler, out_dir=args.output, overwrite=overwrite, progress=not args.no_progress
        )
        for line in picked:
            print(line, file=sys.stderr)
        print(tally.summary(args.output), file=sys.stderr)
        if tally.failed:
            raise SystemExit(EXIT_SOME_FAILED)
        return
    for option in ("suffix", "format"):
        if getattr(args, option) is not None:
            raise UserError(
                f"--{option} names the files written into an output folder; output "
                f"{quote(args.output)} is one file, named by its own suffix"
            )
    if args.recursive:
        raise UserError(
            f"--recursive needs a folder or a pattern as input, not {quote(args.input)}"
        )
    if glob.has_magic(args.input) and not os.path.lexists(args.input):
        raise UserError(
            f"input pattern {quote(args.input)} names many images, and output "
            f"{quote(args.output)} is one file: give an output folder"
        )
    # The destination and the request's size, before any pixel or weight is read.
    lr_hw = image_size(args.input, max_pixels)  # exists, is an image, header within the limit
    out_hw = settings.size.output_size(lr_hw)
    if args.skip_existing and os.path.isfile(args.output) and not args.overwrite:
        print(f"skipped: output {quote(args.output)} already exists", file=sys.stderr)
        return
    check_output(args.input, args.output, overwrite, out_hw)
    check_output_request(out_hw, max_out)
    check_bit_depth(settings, args.output)
    work = out_hw[0] * out_hw[1] * settings.ensemble
    upscaler, picked = _upscaler(args, settings, device, max_pixels, max_out, work)
    source, target = Path(args.input), Path(args.output)
    progress = None if args.no_progress else _tile_progress()
    warnings = upscaler.run(
        source, target, progress, before_write=lambda: _recheck(args, overwrite, out_hw)
    )
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    for line in picked:
        print(line, file=sys.stderr)
    print(
        f"{args.input} ({lr_hw[1]}x{lr_hw[0]}) -> {args.output} ({out_hw[1]}x{out_hw[0]}) "
        f"with {upscaler.loaded.model_name}-{upscaler.loaded.encoder_name}",
        file=sys.stderr,
    )


def _upscaler(
    args: argparse.Namespace,
    settings: UpscaleSettings,
    device: torch.device,
    max_pixels: int | None,
    max_out: int | None,
    work_pixels: int,
) -> tuple[Upscaler, list[str]]:
    """The model, loaded once (:func:`load_model`), with its kernel and the settings, and the lines
    that say what ``auto`` picked.

    ``--backend auto`` and ``--dtype auto`` are decided here, for this model and ``work_pixels``
    output pixels (:func:`lte.inference.pick_backend`, :func:`~lte.inference.pick_dtype`), each
    with one line saying what was picked and why. The caller prints them with the run's summary,
    so a refusal met later stays one ``error:`` line. An ONNX model has neither choice.
    """
    loaded = load_model(args, device)
    picked: list[str] = []
    if isinstance(loaded, OnnxLoaded):
        kernel = loaded.model.inference_kernel
        return Upscaler(loaded, settings, kernel, max_pixels, max_out), picked
    if settings.cmsr is not None:
        check_model(loaded.model, f"--cmsr with checkpoint {quote(loaded.path)}")
    if args.dtype == "auto":
        dtype, why = pick_dtype(loaded.model)
        settings = dataclasses.replace(settings, dtype=dtype)
        picked.append(f"dtype auto: {_dtype_name(dtype)} ({why})")
    backend = args.backend
    if backend == "auto":
        backend, why = pick_backend(loaded.model, work_pixels=work_pixels, dtype=settings.dtype)
        picked.append(f"backend auto: {backend} ({why})")
    kernel = kernel_for_backend(loaded.model, backend)
    return Upscaler(loaded, settings, kernel, max_pixels, max_out), picked


def _dtype_name(dtype: torch.dtype | None) -> str:
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


def _output_pixels(source: Path, settings: UpscaleSettings, max_pixels: int | None) -> int:
    """The output pixels of one batch input, from its header; 0 when it cannot be read (that
    file's own check reports it later)."""
    try:
        h, w = settings.size.output_size(image_size(source, max_pixels))
    except (UserError, OSError, ValueError):
        return 0
    return h * w


def _recheck(args: argparse.Namespace, overwrite: bool, out_hw: tuple[int, int]) -> None:
    """An output that appeared while computing is refused as it would have been at the start."""
    if not overwrite and os.path.lexists(args.output):
        check_output(args.input, args.output, overwrite, out_hw)


def _tile_progress():
    """A stderr progress bar, drawn only when the image is split into more than one tile."""
    bar = stderr_progress("upscaling tiles")

    def show(done: int, total: int) -> None:
        if total > 1:
            bar(done, total)

    return show


if __name__ == "__main__":
    main()
