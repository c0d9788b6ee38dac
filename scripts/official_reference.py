"""Run a local checkout of the official LTE code on the CPU, to check lte against it on the same file.

The official repository (github.com/jaewon-lee-b/lte, a LIIF fork) hard-codes ``.cuda()`` and
imports torchvision, timm, tensorboardX and imageio. Nothing of it is part of lte: this script takes
a checkout you made (``--official DIR``), turns ``.cuda()`` into a no-op at run time, and stands in
for the four imports with a few lines each (PIL for torchvision's ToTensor, ToPILImage and Resize,
with ToPILImage's truncation to 8 bits kept, since the official LR images are made through it).

    git clone https://github.com/jaewon-lee-b/lte /tmp/official-lte
    # an official-format file, from the official class with PyTorch's initialisation
    python scripts/official_reference.py --official /tmp/official-lte make plus.pth --name lte-fast
    # the official forward of one image at one scale, as float RGB in [0, 1] (.npy, (3, H, W))
    python scripts/official_reference.py --official /tmp/official-lte forward plus.pth photo.png 4 ref.npy
    # the official test.py loop on a folder of HR images (LR by bicubic), e.g. benchmark-4 or div2k-6
    python scripts/official_reference.py --official /tmp/official-lte test plus.pth HR_DIR 4 benchmark-4
    # lte.upscale's image against the official forward: max and mean 8-bit level difference
    python scripts/official_reference.py compare ref.npy ours.png

Compare with ``lte-upscale --ckpt plus.pth --scale 4 photo.png ours.png`` and
``python -m lte.test ckpt=plus.pth testset=folder testset.hr_dir=HR_DIR testset.protocol=benchmark
scales=[4]``. ``make`` multiplies the amplitude and frequency weights (and spreads the frequency
bias) so that the Fourier features, and their channel pairing, dominate the prediction as they do
in a trained model; PyTorch's initialisation alone leaves them near zero.
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import torch

#: Stand-ins for the official code's imports that lte does not install.
_SHIMS = {
    "torchvision/__init__.py": "from . import transforms  # noqa: F401\n",
    "torchvision/transforms.py": """
        import numpy as np
        import torch
        from PIL import Image

        class ToTensor:
            def __call__(self, img):
                a = np.asarray(img, dtype=np.uint8)
                a = a[:, :, None] if a.ndim == 2 else a
                return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div(255)

        class ToPILImage:
            def __call__(self, t):
                if t.is_floating_point():
                    t = t.mul(255).byte()  # truncates, as torchvision's to_pil_image does
                return Image.fromarray(t.permute(1, 2, 0).numpy())

        class Resize:
            def __init__(self, size, interpolation=Image.BILINEAR):
                self.size, self.interpolation = size, interpolation

            def __call__(self, img):
                if isinstance(self.size, int):  # the shorter side becomes `size`
                    w, h = img.size
                    s = self.size
                    size = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
                else:
                    size = (self.size[1], self.size[0])
                return img.resize(size, self.interpolation)
    """,
    "timm/__init__.py": "",
    "timm/models/__init__.py": "",
    "timm/models/layers.py": """
        import torch.nn as nn

        def to_2tuple(x):
            return x if isinstance(x, tuple) else (x, x)

        def trunc_normal_(t, std=1.0, **kw):
            return nn.init.trunc_normal_(t, std=std, **kw)

        class DropPath(nn.Identity):
            def __init__(self, p=0.0):
                super().__init__()
    """,
    "tensorboardX/__init__.py": "class SummaryWriter:\n    pass\n",
    "imageio/__init__.py": "def imread(path):\n    raise NotImplementedError(path)\n",
}


def import_official(official: Path):
    """The official ``models``, ``datasets``, ``utils`` and ``test`` modules, running on the CPU."""
    if not (official / "models" / "ltep.py").is_file():
        sys.exit(
            f"error: '{official}' is not a checkout of the official LTE code (no models/ltep.py)"
        )
    shims = Path(tempfile.mkdtemp(prefix="lte-official-shims-"))
    atexit.register(shutil.rmtree, shims, ignore_errors=True)
    for name, text in _SHIMS.items():
        (shims / name).parent.mkdir(parents=True, exist_ok=True)
        (shims / name).write_text(textwrap.dedent(text))
    sys.path[:0] = [str(shims), str(official)]
    torch.Tensor.cuda = lambda self, *a, **k: self  # the official code calls .cuda() everywhere
    torch.nn.Module.cuda = lambda self, *a, **k: self
    import datasets
    import models
    import test
    import utils

    return models, datasets, utils, test


def make(official: Path, out: Path, name: str, seed: int) -> None:
    models, *_ = import_official(official)
    if out.exists():
        sys.exit(f"error: '{out}' already exists: choose a new file name")
    torch.manual_seed(seed)
    encoder = {"name": "edsr-baseline", "args": {"no_upsampling": True}}
    if name == "lte-fast":
        args = {"encoder_spec": encoder, "num_layer": 3, "hidden_dim": 256, "out_dim": 3}
    else:
        mlp = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [256, 256, 256]}}
        args = {"encoder_spec": encoder, "imnet_spec": mlp, "hidden_dim": 256}
    spec = {"name": name, "args": args}
    model = models.make(spec)
    with torch.no_grad():
        model.coef.weight.mul_(30)
        model.freq.weight.mul_(30)
        model.freq.bias.uniform_(-2, 2)
    torch.save({"model": {**spec, "sd": model.state_dict()}}, out)
    print(f"wrote {out} (official {name}, seed {seed})")


def _load(models, ckpt: Path):
    spec = torch.load(ckpt, map_location="cpu", weights_only=True)["model"]
    return spec["name"], models.make(spec, load_sd=True).eval()


def forward(official: Path, ckpt: Path, image: Path, scale: float, out: Path) -> None:
    """The official forward at ``scale`` with the demo's cell rule (``cell * max(s / 4, 1)``)."""
    from PIL import Image

    models, _, utils, test = import_official(official)
    name, model = _load(models, ckpt)
    from torchvision import transforms

    img = transforms.ToTensor()(Image.open(image).convert("RGB"))
    h, w = round(img.shape[-2] * scale), round(img.shape[-1] * scale)
    inp = ((img - 0.5) / 0.5).unsqueeze(0)
    factor = max(scale / 4, 1)
    with torch.no_grad():
        if name == "lte-fast":  # a (B, H, W, 2) grid and one cell per image
            coord = utils.make_coord((h, w), flatten=False).unsqueeze(0)
            pred = model(inp, coord, torch.tensor([[2 / h, 2 / w]]) * factor)[0]  # (3, H, W)
        else:
            coord = utils.make_coord((h, w)).unsqueeze(0)
            cell = torch.ones_like(coord)
            cell[..., 0] *= 2 / h
            cell[..., 1] *= 2 / w
            pred = test.batched_predict(model, inp, coord, cell * factor, 30000)[0]
            pred = pred.view(h, w, 3).permute(2, 0, 1)
    np.save(out, (pred * 0.5 + 0.5).clamp(0, 1).numpy())
    print(f"wrote {out} ({w}x{h})")


def run_test(official: Path, ckpt: Path, hr_dir: Path, scale: float, eval_type: str) -> None:
    """The official ``eval_psnr`` on HR images in a folder, LR by bicubic (its image-folder set)."""
    from torch.utils.data import DataLoader

    models, datasets, _, test = import_official(official)
    name, model = _load(models, ckpt)
    fast = name == "lte-fast"
    wrapper = "sr-implicit-downsampled-fast" if fast else "sr-implicit-downsampled"
    folder = datasets.make({"name": "image-folder", "args": {"root_path": str(hr_dir)}})
    data = datasets.make({"name": wrapper, "args": {"scale_min": scale}}, args={"dataset": folder})
    norm = {"inp": {"sub": [0.5], "div": [0.5]}, "gt": {"sub": [0.5], "div": [0.5]}}
    with torch.no_grad():
        psnr = test.eval_psnr(
            DataLoader(data, batch_size=1),
            model,
            data_norm=norm,
            eval_type=eval_type,
            eval_bsize=30000,
            fast=fast,
        )
    print(f"{eval_type}: PSNR {psnr:.6f} dB (official test.py, {len(data)} images)")


def compare(ref: Path, ours: Path) -> None:
    """8-bit level differences between an official float prediction and an lte image."""
    from PIL import Image

    expected = np.round(np.load(ref).transpose(1, 2, 0) * 255)
    got = np.asarray(Image.open(ours).convert("RGB"), dtype=np.float64)
    if got.shape != expected.shape:
        sys.exit(f"error: '{ours}' is {got.shape}, the reference {expected.shape}")
    diff = np.abs(got - expected)
    print(
        f"{ours}: max {diff.max():.0f} levels, mean {diff.mean():.4f}, "
        f"{(diff > 1).mean() * 100:.2f}% of values off by more than one level"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, help="checkout of the official LTE repository")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make", help="write an official-format file from the official class")
    p.add_argument("out", type=Path)
    p.add_argument("--name", choices=("lte", "lte-fast"), default="lte-fast")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("forward", help="the official forward of one image, as .npy")
    p.add_argument("ckpt", type=Path)
    p.add_argument("image", type=Path)
    p.add_argument("scale", type=float)
    p.add_argument("out", type=Path)
    p = sub.add_parser("test", help="the official test.py loop on a folder of HR images")
    p.add_argument("ckpt", type=Path)
    p.add_argument("hr_dir", type=Path)
    p.add_argument("scale", type=float)
    p.add_argument("eval_type", help="benchmark-S or div2k-S (S: the integer scale for shaving)")
    p = sub.add_parser("compare", help="an lte image against an official .npy prediction")
    p.add_argument("ref", type=Path)
    p.add_argument("ours", type=Path)
    args = parser.parse_args()
    if args.command != "compare" and args.official is None:
        parser.error(f"{args.command} needs --official DIR (a checkout of the official code)")
    if args.command == "make":
        make(args.official, args.out, args.name, args.seed)
    elif args.command == "forward":
        forward(args.official, args.ckpt, args.image, args.scale, args.out)
    elif args.command == "test":
        run_test(args.official, args.ckpt, args.hr_dir, args.scale, args.eval_type)
    else:
        compare(args.ref, args.ours)


if __name__ == "__main__":
    main()
