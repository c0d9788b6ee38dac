"""Run a local checkout of the official LTE or LMF code on the CPU, to check lte against it on the same file.

The official repositories (github.com/jaewon-lee-b/lte, a LIIF fork, and github.com/HeZongyao/LMF,
which carries LM-LTE, LM-LIIF and CMSR) hard-code ``.cuda()`` and import torchvision, timm,
tensorboardX and imageio. Nothing of them is part of lte: this script takes a checkout you made
(``--official DIR``), turns ``.cuda()`` into a no-op at run time, and stands in for the four imports
with a few lines each (PIL for torchvision's ToTensor, ToPILImage and Resize, with ToPILImage's
truncation to 8 bits kept, since the official LR images are made through it).

    git clone https://github.com/jaewon-lee-b/lte /tmp/official-lte
    # an official-format file, from the official class with PyTorch's initialisation
    python scripts/official_reference.py --official /tmp/official-lte make plus.pth --name lte-fast
    # the official forward of one image at one scale, as float RGB in [0, 1] (.npy, (3, H, W))
    python scripts/official_reference.py --official /tmp/official-lte forward plus.pth photo.png 4 ref.npy
    # the official test.py loop on a folder of HR images (LR by bicubic), e.g. benchmark-4 or div2k-6
    python scripts/official_reference.py --official /tmp/official-lte test plus.pth HR_DIR 4 benchmark-4
    # lte.upscale's image against the official forward: max and mean 8-bit level difference
    python scripts/official_reference.py compare ref.npy ours.png

With the LMF checkout (``git clone https://github.com/HeZongyao/LMF /tmp/official-lmf``) the same
commands take ``--name lmlte`` / ``lmliif`` (EDSR-baseline, the train-lmf configs' arguments), and:

    # a few hundred steps of the official train.py loop on a folder of HR photos (48 px LR patches,
    # 2304 queries, U(1, 4) scales, flips), written back in the official layout
    python scripts/official_reference.py --official /tmp/official-lmf train lm.pth DIR lm-trained.pth --steps 300
    # official CMSR: init_cmsr.py's tables for a folder at scale S, then test.py with them
    python scripts/official_reference.py --official /tmp/official-lmf cmsr-build lm.pth DIR 6 tables.yaml
    python scripts/official_reference.py --official /tmp/official-lmf test lm.pth DIR 6 div2k-6 --cmsr tables.yaml

Compare with ``lte-upscale --ckpt plus.pth --scale 4 photo.png ours.png`` and
``python -m lte.test ckpt=plus.pth testset=folder testset.hr_dir=HR_DIR testset.protocol=benchmark
scales=[4]`` (``eval.cmsr=tables.yaml`` for CMSR). ``make`` multiplies the amplitude and frequency
weights of LTE (and spreads the frequency bias) so that the Fourier features, and their channel
pairing, dominate the prediction as they do in a trained model; PyTorch's initialisation alone leaves
them near zero. LMF files are made non-trivial by ``train`` instead.
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
    "torchvision/models/__init__.py": "",
    "torchvision/models/vgg.py": "",  # imported (unused) by the LMF repository's CiaoSR modules
    "torchvision/transforms.py": """
        import numpy as np
        import torch
        from PIL import Image

        class InterpolationMode:
            BICUBIC = Image.BICUBIC
            BILINEAR = Image.BILINEAR

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


#: The official LMF models' arguments (configs/train-lmf, EDSR-baseline), by model name.
LMF_ARGS = {
    "lmlte": {
        "imnet_spec": {
            "name": "lmmlp",
            "args": {
                "out_dim": 3,
                "hidden_dim": 16,
                "hidden_depth": 8,
                "mod_scale": True,
                "mod_shift": True,
            },
        },
        "hypernet_spec": {"name": "mlp", "args": {"out_dim": 288, "hidden_list": [288]}},
        "hidden_dim": 128,
        "local_ensemble": True,
        "cell_decode": True,
        "mod_input": True,
    },
    "lmliif": {
        "imnet_spec": {
            "name": "lmmlp",
            "args": {
                "out_dim": 3,
                "hidden_dim": 16,
                "hidden_depth": 6,
                "mod_scale": True,
                "mod_shift": True,
            },
        },
        "hypernet_spec": {"name": "mlp", "args": {"out_dim": 208, "hidden_list": [208]}},
        "local_ensemble": True,
        "feat_unfold": True,
        "cell_decode": True,
        "mod_input": True,
    },
}
#: Models whose official evaluation queries the whole grid in one call (test.py's ``fast``).
WHOLE_GRID = ("lte-fast", "lmlte", "lmliif")


def make(official: Path, out: Path, name: str, seed: int) -> None:
    models, *_ = import_official(official)
    if out.exists():
        sys.exit(f"error: '{out}' already exists: choose a new file name")
    torch.manual_seed(seed)
    encoder = {"name": "edsr-baseline", "args": {"no_upsampling": True}}
    if name in LMF_ARGS:
        spec = {"name": name, "args": {"encoder_spec": encoder, **LMF_ARGS[name]}}
        model = models.make(spec)
        torch.save({"model": {**spec, "sd": model.state_dict()}}, out)
        print(f"wrote {out} (official {name}, seed {seed}, PyTorch's initialisation)")
        return
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


def _load(models, ckpt: Path, cmsr: Path | None = None):
    """The official model of a file; with ``cmsr``, its CMSR tables as test.py passes them."""
    spec = torch.load(ckpt, map_location="cpu", weights_only=True)["model"]
    if spec["name"] in LMF_ARGS:  # the LMF constructors take cmsr_spec (test.py sets it)
        spec["args"]["cmsr_spec"] = None if cmsr is None else _cmsr_spec(cmsr)
    elif cmsr is not None:
        sys.exit(f"error: --cmsr needs an LMF file (lmlte, lmliif), '{ckpt}' is {spec['name']}")
    return spec["name"], models.make(spec, load_sd=True).eval()


def _cmsr_spec(tables: Path, mse: float = 2e-5) -> dict:
    """test.py's ``cmsr_spec`` for a table file (read as data: ``yaml.safe_load``)."""
    import yaml

    return {
        "mse_threshold": mse,
        "path": str(tables),
        "s2m_tables": yaml.safe_load(tables.read_text()),
        "log": False,
    }


def forward(
    official: Path, ckpt: Path, image: Path, scale: float, out: Path, cmsr: Path | None = None
) -> None:
    """The official forward at ``scale`` with the demo's cell rule (``cell * max(s / 4, 1)``); LMF
    models answer the whole grid in one call, as demo.py (``--fast True``) runs them."""
    from PIL import Image

    models, _, utils, test = import_official(official)
    name, model = _load(models, ckpt, cmsr)
    from torchvision import transforms

    img = transforms.ToTensor()(Image.open(image).convert("RGB"))
    h, w = round(img.shape[-2] * scale), round(img.shape[-1] * scale)
    inp = ((img - 0.5) / 0.5).unsqueeze(0)
    factor = max(scale / 4, 1)
    with torch.no_grad():
        if name == "lte-fast":  # a (B, H, W, 2) grid and one cell per image
            coord = utils.make_coord((h, w), flatten=False).unsqueeze(0)
            pred = model(inp, coord, torch.tensor([[2 / h, 2 / w]]) * factor)[0]  # (3, H, W)
        elif name in LMF_ARGS:  # demo.py --fast True: one call, the model batches itself
            coord = utils.make_coord((h, w)).unsqueeze(0)
            cell = torch.ones_like(coord)
            cell[..., 0] *= 2 / h
            cell[..., 1] *= 2 / w
            pred = model(inp, coord, cell * factor)[0].view(h, w, 3).permute(2, 0, 1)
        else:
            coord = utils.make_coord((h, w)).unsqueeze(0)
            cell = torch.ones_like(coord)
            cell[..., 0] *= 2 / h
            cell[..., 1] *= 2 / w
            pred = test.batched_predict(model, inp, coord, cell * factor, 30000)[0]
            pred = pred.view(h, w, 3).permute(2, 0, 1)
    np.save(out, (pred * 0.5 + 0.5).clamp(0, 1).numpy())
    print(f"wrote {out} ({w}x{h})")


#: The official data normalisation: (v - 0.5) / 0.5 for input and ground truth.
NORM = {"inp": {"sub": [0.5], "div": [0.5]}, "gt": {"sub": [0.5], "div": [0.5]}}


def _folder(datasets, hr_dir: Path, scale: float, wrapper: str = "sr-implicit-downsampled"):
    """The official image-folder set of ``hr_dir`` at one scale (LR by PIL bicubic)."""
    folder = datasets.make({"name": "image-folder", "args": {"root_path": str(hr_dir)}})
    return datasets.make({"name": wrapper, "args": {"scale_min": scale}}, args={"dataset": folder})


def run_test(
    official: Path,
    ckpt: Path,
    hr_dir: Path,
    scale: float,
    eval_type: str,
    cmsr: Path | None = None,
) -> None:
    """The official ``eval_psnr`` on HR images in a folder, LR by bicubic (its image-folder set).

    The LMF repository's ``eval_psnr`` also saves every SR image under ``./outputs``: it runs in a
    temporary folder, which is removed afterwards.
    """
    import inspect
    import os

    from torch.utils.data import DataLoader

    models, datasets, _, test = import_official(official)
    hr_dir = hr_dir.resolve()  # eval_psnr runs in a scratch folder (below)
    name, model = _load(models, ckpt, cmsr)
    fast = name in WHOLE_GRID
    wrapper = "sr-implicit-downsampled-fast" if name == "lte-fast" else "sr-implicit-downsampled"
    data = _folder(datasets, hr_dir, scale, wrapper)
    extra = {}
    if "verbose" in inspect.signature(test.eval_psnr).parameters:
        extra["verbose"] = False
    here = os.getcwd()
    scratch = tempfile.mkdtemp(prefix="lte-official-test-")
    os.chdir(scratch)
    try:
        with torch.no_grad():
            psnr = test.eval_psnr(
                DataLoader(data, batch_size=1),
                model,
                data_norm=NORM,
                eval_type=eval_type,
                eval_bsize=30000,
                fast=fast,
                **extra,
            )
    finally:
        os.chdir(here)
        shutil.rmtree(scratch, ignore_errors=True)
    how = f", CMSR tables {cmsr}" if cmsr is not None else ""
    print(f"{eval_type}: PSNR {psnr:.6f} dB (official test.py, {len(data)} images{how})")


def train(
    official: Path, ckpt: Path, hr_dir: Path, out: Path, steps: int, batch: int, seed: int
) -> None:
    """``steps`` steps of the official ``train.py`` loop (its ``train`` function: L1 on normalised
    values, Adam 1e-4) on 48 px LR patches of ``hr_dir`` with 2304 queries, U(1, 4) scales and
    flips (the train-lmf recipe's sampler), starting from ``ckpt``; written in the official layout."""
    import random

    from torch.utils.data import DataLoader

    models, datasets, utils, _ = import_official(official)
    import train as official_train  # the official train.py, importable once the checkout is on the path

    if out.exists():
        sys.exit(f"error: '{out}' already exists: choose a new file name")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    spec = torch.load(ckpt, map_location="cpu", weights_only=True)["model"]
    model = models.make(spec, load_sd=True)
    files = len([f for f in hr_dir.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg")])
    repeat = -(-steps * batch // files)
    folder = datasets.make(
        {"name": "image-folder", "args": {"root_path": str(hr_dir), "repeat": repeat}}
    )
    wrapper = {
        "name": "sr-implicit-downsampled",
        "args": {"inp_size": 48, "scale_max": 4, "augment": True, "sample_q": 2304},
    }
    data = torch.utils.data.Subset(
        datasets.make(wrapper, args={"dataset": folder}), range(steps * batch)
    )
    optimizer_spec = {"name": "adam", "args": {"lr": 1.0e-4}}
    optimizer = utils.make_optimizer(model.parameters(), optimizer_spec)

    class Quiet:  # the loop logs to tensorboardX
        def add_scalars(self, *args, **kwargs) -> None:
            pass

    official_train.config = {
        "train_dataset": {"batch_size": batch, "dataset": {"args": {"repeat": repeat}}},
        "data_norm": NORM,
    }
    official_train.writer = Quiet()
    loader = DataLoader(data, batch_size=batch, shuffle=True)
    loss = official_train.train(loader, model, optimizer, 1)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save({"model": {**spec, "sd": sd}, "optimizer": optimizer_spec, "epoch": 1}, out)
    print(f"wrote {out} ({steps} steps of batch {batch} from {ckpt}, mean L1 {loss:.4f})")


def cmsr_build(official: Path, ckpt: Path, hr_dir: Path, scale: int, out: Path, mse: float) -> None:
    """init_cmsr.py on a folder at one scale: the official scale-to-threshold table, as YAML."""
    import yaml
    from torch.utils.data import DataLoader

    models, datasets, *_ = import_official(official)
    import init_cmsr  # the official init_cmsr.py

    if out.exists():
        sys.exit(f"error: '{out}' already exists: choose a new file name")
    spec = torch.load(ckpt, map_location="cpu", weights_only=True)["model"]
    tables = {scale: {s: 1 for s in [1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32] if s <= scale}}
    spec["args"]["cmsr_spec"] = {
        "mse_threshold": mse,
        "path": str(out),
        "s2m_tables": tables,
        "updating_scale": scale,
    }
    model = models.make(spec, load_sd=True)
    loader = DataLoader(_folder(datasets, hr_dir, scale), batch_size=1)
    table = init_cmsr.build_scale2mean(loader, model, scale=scale, data_norm=NORM)
    out.write_text(yaml.safe_dump({scale: dict(table)}))
    print(f"wrote {out}: {dict(table)}")


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
    p.add_argument("--name", choices=("lte", "lte-fast", *LMF_ARGS), default="lte-fast")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("forward", help="the official forward of one image, as .npy")
    p.add_argument("ckpt", type=Path)
    p.add_argument("image", type=Path)
    p.add_argument("scale", type=float)
    p.add_argument("out", type=Path)
    p.add_argument("--cmsr", type=Path, help="LMF: CMSR tables (YAML), as demo.py --cmsr True")
    p = sub.add_parser("test", help="the official test.py loop on a folder of HR images")
    p.add_argument("ckpt", type=Path)
    p.add_argument("hr_dir", type=Path)
    p.add_argument("scale", type=float)
    p.add_argument("eval_type", help="benchmark-S or div2k-S (S: the integer scale for shaving)")
    p.add_argument("--cmsr", type=Path, help="LMF: CMSR tables (YAML), as test.py --cmsr True")
    p = sub.add_parser("train", help="LMF: the official train.py loop on a folder of HR photos")
    p.add_argument("ckpt", type=Path)
    p.add_argument("hr_dir", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("cmsr-build", help="LMF: init_cmsr.py's table for a folder at one scale")
    p.add_argument("ckpt", type=Path)
    p.add_argument("hr_dir", type=Path)
    p.add_argument("scale", type=int)
    p.add_argument("out", type=Path)
    p.add_argument("--mse", type=float, default=2e-5)
    p = sub.add_parser("compare", help="an lte image against an official .npy prediction")
    p.add_argument("ref", type=Path)
    p.add_argument("ours", type=Path)
    args = parser.parse_args()
    if args.command != "compare" and args.official is None:
        parser.error(f"{args.command} needs --official DIR (a checkout of the official code)")
    if args.command == "make":
        make(args.official, args.out, args.name, args.seed)
    elif args.command == "forward":
        forward(args.official, args.ckpt, args.image, args.scale, args.out, args.cmsr)
    elif args.command == "test":
        run_test(args.official, args.ckpt, args.hr_dir, args.scale, args.eval_type, args.cmsr)
    elif args.command == "train":
        train(args.official, args.ckpt, args.hr_dir, args.out, args.steps, args.batch, args.seed)
    elif args.command == "cmsr-build":
        cmsr_build(args.official, args.ckpt, args.hr_dir, args.scale, args.out, args.mse)
    else:
        compare(args.ref, args.ours)


if __name__ == "__main__":
    main()
