"""PSNR and time of the decoder MLP in bfloat16 / float16 against float32, on real photos.

The fast query path can run the decoder's MLP in a lower precision (``--dtype`` of ``lte.upscale``).
This measures what that costs in PSNR and gains in time, in one run, on full validation photos with
the DIV2K protocol (RGB PSNR, s+6 px shaved, on-the-fly PIL-bicubic LR):

    python scripts/bench_dtype.py --ckpt runs/demo/checkpoints/last.ckpt
    python scripts/bench_dtype.py --ckpt rdn-lte.pth --images load/DIV2K_valid_HR --scales 2,4

A low precision the CPU does not run natively (``lte.devices.native_bf16``/``native_fp16``: no
AVX512-BF16/AMX) is emulated and takes hours on full photos: it is skipped with a printed reason
unless ``--force-lowp``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lte.checkpoint import load_checkpoint
from lte.data.images import denormalize, load_rgb, normalize, to_tensor
from lte.data.layouts import list_images
from lte.devices import native_bf16, native_fp16
from lte.errors import exit_on_user_error
from lte.inference import predict
from lte.metrics import psnr_protocol
from lte.testsets import pair_on_the_fly

DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
NEEDS = {"bfloat16": "needs AVX512-BF16 or AMX", "float16": "needs AVX512-FP16 or AMX-FP16"}


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ckpt", required=True, help="trained checkpoint (official .pth or lte .ckpt)"
    )
    parser.add_argument("--images", default="data/sample/val", help="folder of HR photos")
    parser.add_argument("--scales", default="2,3,4", help="comma-separated scales")
    parser.add_argument("--dtypes", default="bfloat16,float16", help="compared against float32")
    parser.add_argument(
        "--force-lowp",
        action="store_true",
        help="measure bfloat16/float16 even where the CPU has no native support (very slow)",
    )
    args = parser.parse_args(argv)
    loaded = load_checkpoint(args.ckpt)
    model = loaded.model
    scales = [float(s) for s in args.scales.split(",")]
    dtypes = ["float32"]
    for d in (d for d in args.dtypes.split(",") if d and d != "float32"):
        if d not in DTYPES:
            parser.error(f"--dtypes {args.dtypes}: use bfloat16 and/or float16")
        native = native_bf16("cpu") if d == "bfloat16" else native_fp16("cpu")
        if native or args.force_lowp:
            dtypes.append(d)
        else:
            print(
                f"{d} skipped: this CPU has no native {d} matrix multiply ({NEEDS[d]}), "
                "so it is emulated and would take hours; --force-lowp measures it anyway"
            )
    files = list_images(args.images)
    psnrs = {(d, s): [] for d in dtypes for s in scales}
    seconds = dict.fromkeys(dtypes, 0.0)
    for path in files:
        img = load_rgb(path)
        for s in scales:
            lr, hr = pair_on_the_fly(img, s)
            gt = to_tensor(hr).unsqueeze(0)
            inp = normalize(to_tensor(lr)).unsqueeze(0)
            for d in dtypes:
                start = time.perf_counter()
                # predict enlarges the cell beyond model.scale_max itself.
                pred = predict(model, inp, hr.shape[:2], dtype=DTYPES[d])
                seconds[d] += time.perf_counter() - start
                psnrs[(d, s)].append(float(psnr_protocol(denormalize(pred), gt, s, "div2k")))
    print(
        f"{loaded.model_name}-{loaded.encoder_name}, {len(files)} images from {args.images}, DIV2K protocol"
    )
    print(
        "| dtype | "
        + " | ".join(f"x{s:g} PSNR" for s in scales)
        + " | max abs ΔPSNR vs float32 | seconds |"
    )
    print("|---|" + "---|" * (len(scales) + 2))
    for d in dtypes:
        means = [np.mean(psnrs[(d, s)]) for s in scales]
        delta = max(
            abs(a - b)
            for s in scales
            for a, b in zip(psnrs[(d, s)], psnrs[("float32", s)], strict=True)
        )
        cells = " | ".join(f"{m:.4f}" for m in means)
        print(f"| {d} | {cells} | {delta:.4f} dB | {seconds[d]:.1f} |")


if __name__ == "__main__":
    main()
