"""The paper's training sample and the deterministic validation patch, as pure functions of an image.

Training (SPEC.md, "Training recipe"): per sample a scale ``s ~ U(scale_min, scale_max)``, an HR
crop of ``round(inp_size · s)`` px at a random position, its LR by PIL's antialiased bicubic on the
8-bit crop (:func:`lte.data.resize.downsample_pil`, the same function ``make_lr.py`` uses), random
flips and transpose applied to LR and HR alike, then ``sample_q`` HR pixels drawn without
replacement as queries. LTE+'s sampler (:func:`grid_train_sample`) is the same draw with the
queries laid out as an ``inp_size × inp_size`` grid. Validation uses the same recipe with every
random choice fixed in advance and all HR pixels as queries.

Randomness comes from a ``torch.Generator`` (or torch's global RNG, which DataLoader seeds per
worker), so a seed reproduces every sample.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lte.data.images import normalize, to_tensor
from lte.data.resize import downsample_pil
from lte.geometry import make_cell, make_coord, make_coord_1d


def augment(img: np.ndarray, flip_rows: bool, flip_cols: bool, transpose: bool) -> np.ndarray:
    """Vertical flip, horizontal flip, then transpose of an ``(H, W, C)`` array (each optional).

    Applied with the same flags to LR and HR so they stay aligned.
    """
    if flip_rows:
        img = img[::-1]
    if flip_cols:
        img = img[:, ::-1]
    if transpose:
        img = img.transpose(1, 0, 2)
    return img


def draw_without_replacement(n: int, k: int, generator: torch.Generator | None) -> Tensor:
    """``k`` distinct indices from ``range(n)``, uniformly, seeded from the torch generator.

    numpy's set-based draw costs O(k); ``torch.randperm(n)[:k]`` costs O(n) and is multi-threaded,
    which is 5-25x slower for 2304 of 36864 and suffers badly when the CPU is shared.
    """
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    picked = np.random.default_rng(seed).choice(n, size=k, replace=False)
    return torch.from_numpy(picked.astype(np.int64))


def query_coords(hr_hw: tuple[int, int], index: Tensor) -> Tensor:
    """Pixel-centre (y, x) coordinates of flat row-major pixel indices on an ``H × W`` grid.

    Bit-identical to ``make_coord(hr_hw)[index]`` without building the full grid.
    """
    h, w = hr_hw
    # index_select, not advanced indexing: the latter goes multi-threaded on tiny tensors and is
    # 100x slower on a shared CPU. Same values either way.
    ys = make_coord_1d(h).index_select(0, index // w)
    xs = make_coord_1d(w).index_select(0, index % w)
    return torch.stack([ys, xs], dim=-1)  # (Q, 2)


def train_sample(
    img: np.ndarray,
    *,
    inp_size: int,
    scale_min: float,
    scale_max: float,
    sample_q: int,
    augment_flips: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """One training sample from an ``(H, W, 3)`` uint8 image (at least ``round(inp_size·scale_max)``).

    Returns:
        ``inp`` (3, inp, inp) normalised LR, ``coord`` (Q, 2) float32 (y, x) pixel centres of the
        HR crop, ``cell`` (Q, 2) = (2/H_hr, 2/W_hr), ``gt`` (Q, 3) normalised HR RGB at ``coord``,
        ``scale`` () the drawn scale.
    """
    g = generator
    s = scale_min + (scale_max - scale_min) * torch.rand((), generator=g).item()
    size_hr = round(inp_size * s)
    h, w = img.shape[:2]
    y0 = int(torch.randint(0, h - size_hr + 1, (), generator=g))
    x0 = int(torch.randint(0, w - size_hr + 1, (), generator=g))
    crop_hr = np.ascontiguousarray(img[y0 : y0 + size_hr, x0 : x0 + size_hr])
    crop_lr = downsample_pil(crop_hr, (inp_size, inp_size))
    if augment_flips:
        flags = (torch.rand(3, generator=g) < 0.5).tolist()
        crop_hr = augment(crop_hr, *flags)
        crop_lr = augment(crop_lr, *flags)
    index = draw_without_replacement(size_hr * size_hr, sample_q, g)  # (Q,)
    hr = torch.from_numpy(np.ascontiguousarray(crop_hr)).reshape(-1, 3)  # (H*W, 3) uint8
    gt = hr.index_select(0, index).float().div_(255.0)  # (Q, 3)
    return {
        "inp": normalize(to_tensor(crop_lr)),
        "coord": query_coords((size_hr, size_hr), index),
        "cell": make_cell((size_hr, size_hr), sample_q),
        "gt": normalize(gt),
        "scale": torch.tensor(size_hr / inp_size, dtype=torch.float32),
    }


def grid_train_sample(
    img: np.ndarray,
    *,
    inp_size: int,
    scale_min: float,
    scale_max: float,
    augment_flips: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """LTE+'s training sample ("sr-implicit-downsampled-fast", ``data.sampler=fast``).

    The very draw of :func:`train_sample` with ``inp_size²`` queries (same scale, crop, flips and
    pixels for the same random state), laid out as an ``inp_size × inp_size`` grid of queries with
    one cell per image, which is how the released LTE+ code batches its queries.

    Returns:
        ``inp`` (3, n, n), ``coord`` (n, n, 2), ``cell`` (2,) = (2/H_hr, 2/W_hr), ``gt`` (n, n, 3)
        (channel-last like ``coord``), ``scale`` (); ``n = inp_size``.
    """
    n = inp_size
    flat = train_sample(
        img,
        inp_size=inp_size,
        scale_min=scale_min,
        scale_max=scale_max,
        sample_q=n * n,
        augment_flips=augment_flips,
        generator=generator,
    )
    return {
        "inp": flat["inp"],
        "coord": flat["coord"].reshape(n, n, 2),
        "cell": flat["cell"][0].clone(),
        "gt": flat["gt"].reshape(n, n, 3),
        "scale": flat["scale"],
    }


def val_sample(
    img: np.ndarray, *, y0: int, x0: int, size_hr: int, inp_size: int
) -> dict[str, Tensor]:
    """A fixed validation patch: the HR crop at ``(y0, x0)`` of ``size_hr`` px and its LR.

    Returns:
        ``inp`` (3, inp, inp), ``coord`` (H*W, 2) every HR pixel row-major, ``cell`` (H*W, 2),
        ``gt`` (H*W, 3), ``hr_shape`` [H, W] long, ``scale`` () float32 = ``size_hr / inp_size``.
    """
    crop_hr = np.ascontiguousarray(img[y0 : y0 + size_hr, x0 : x0 + size_hr])
    crop_lr = downsample_pil(crop_hr, (inp_size, inp_size))
    n = size_hr * size_hr
    gt = to_tensor(crop_hr).permute(1, 2, 0).reshape(n, 3)  # (H*W, 3)
    return {
        "inp": normalize(to_tensor(crop_lr)),
        "coord": make_coord((size_hr, size_hr)),
        "cell": make_cell((size_hr, size_hr), n),
        "gt": normalize(gt),
        "hr_shape": torch.tensor([size_hr, size_hr], dtype=torch.long),
        "scale": torch.tensor(size_hr / inp_size, dtype=torch.float32),
    }
