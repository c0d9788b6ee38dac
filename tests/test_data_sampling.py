"""The training sampler (SPEC.md recipe) and the deterministic validation patches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from lte.data.datasets import (
    FixedPatchDataset,
    RandomScaleDataset,
    fixed_scale_specs,
    mixed_scale_specs,
)
from lte.data.images import load_rgb, normalize, to_tensor
from lte.data.layouts import list_images
from lte.data.resize import downsample_pil
from lte.data.sampling import query_coords, train_sample, val_sample
from lte.data.store import ImageStore
from lte.errors import UserError
from lte.geometry import make_coord

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
RECIPE = {"inp_size": 48, "scale_min": 1.0, "scale_max": 4.0, "sample_q": 2304}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load_rgb(SAMPLE / "train" / "astronaut.png")


@pytest.fixture(scope="module")
def position_image() -> np.ndarray:
    """250×250 image whose R is the row and G the column: every pixel says where it came from."""
    yy, xx = np.mgrid[:250, :250]
    return np.stack([yy, xx, np.full_like(yy, 99)], axis=-1).astype(np.uint8)


def pixel_index(coord: torch.Tensor, side: int) -> torch.Tensor:
    """Row/column of pixel-centre coords on a side×side grid (exact for centres)."""
    return ((coord + 1) * side / 2 - 0.5).round().long()


def hr_side(sample: dict[str, torch.Tensor]) -> int:
    return round(2 / sample["cell"][0, 0].item())


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """Normalised values back to 0..255 integers."""
    return ((x * 0.5 + 0.5) * 255).round().long()


def test_scale_distribution_is_uniform(photo: np.ndarray) -> None:
    g = torch.Generator().manual_seed(1)
    n = 1000
    scales = np.array(
        [train_sample(photo, **RECIPE, generator=g)["scale"].item() for _ in range(n)]
    )
    assert scales.min() >= 1.0 and scales.max() <= 4.0
    counts, _ = np.histogram(scales, bins=6, range=(1.0, 4.0))
    expected = n / 6
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 20.5  # chi-square, 5 dof: p = 0.001
    # Kolmogorov-Smirnov distance to U(1, 4); HR sides are whole pixels, so allow 1/96 rounding.
    s = np.sort(scales)
    ecdf = np.arange(1, n + 1) / n
    ks = np.max(np.abs(ecdf - (s - 1) / 3))
    assert ks < 1.63 / np.sqrt(n) + 1 / (96 * 3)


def test_sample_shapes_crop_sizes_and_coords(photo: np.ndarray) -> None:
    g = torch.Generator().manual_seed(2)
    for _ in range(50):
        smp = train_sample(photo, **RECIPE, generator=g)
        assert smp["inp"].shape == (3, 48, 48) and smp["inp"].dtype == torch.float32
        assert smp["coord"].shape == (2304, 2) and smp["coord"].dtype == torch.float32
        assert smp["cell"].shape == (2304, 2) and smp["gt"].shape == (2304, 3)
        side = hr_side(smp)
        assert 48 <= side <= 192
        assert side == round(48 * smp["scale"].item())
        assert torch.allclose(smp["cell"], torch.full((2304, 2), 2 / side))
        c = smp["coord"]
        assert c.abs().max() < 1
        idx = (c + 1) * side / 2 - 0.5  # pixel centres land on integers
        assert torch.allclose(idx, idx.round(), atol=1e-4)
        flat = pixel_index(c, side)
        assert len(set((flat[:, 0] * side + flat[:, 1]).tolist())) == 2304  # no repeats
        assert smp["inp"].min() >= -1 and smp["inp"].max() <= 1
        assert smp["gt"].min() >= -1 and smp["gt"].max() <= 1


def test_gt_is_the_hr_pixel_at_its_coord(position_image: np.ndarray) -> None:
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        smp = train_sample(position_image, **RECIPE, augment_flips=False, generator=g)
        side = hr_side(smp)
        ij = pixel_index(smp["coord"], side)
        rgb = to_levels(smp["gt"])
        y0 = rgb[:, 0] - ij[:, 0]
        x0 = rgb[:, 1] - ij[:, 1]
        assert (y0 == y0[0]).all() and (x0 == x0[0]).all()  # one crop offset for every query
        assert (rgb[:, 2] == 99).all()
        # And the LR is exactly PIL bicubic of that crop, normalised.
        y, x = int(y0[0]), int(x0[0])
        crop = position_image[y : y + side, x : x + side]
        expect = normalize(to_tensor(downsample_pil(np.ascontiguousarray(crop), (48, 48))))
        assert torch.equal(smp["inp"], expect)


def test_flips_applied_alike_to_lr_and_hr(position_image: np.ndarray) -> None:
    # In the position image R grows down the rows and G along the columns. After any flip or
    # transpose the LR's and the HR's gradients must point the same way.
    g = torch.Generator().manual_seed(4)
    seen = set()
    for _ in range(60):
        smp = train_sample(position_image, **RECIPE, generator=g)
        side = hr_side(smp)
        ij = pixel_index(smp["coord"], side).float()
        rgb = to_levels(smp["gt"]).float()
        lr = smp["inp"]
        hr_dir = []
        lr_dir = []
        for ch in (0, 1):
            # Which image axis does this channel vary along, and in which sense? (HR queries)
            dy = torch.corrcoef(torch.stack([ij[:, 0], rgb[:, ch]]))[0, 1].item()
            dx = torch.corrcoef(torch.stack([ij[:, 1], rgb[:, ch]]))[0, 1].item()
            hr_dir.append((round(dy), round(dx)))
            ly = (lr[ch, -4, 4:-4] - lr[ch, 3, 4:-4]).mean().item()
            lx = (lr[ch, 4:-4, -4] - lr[ch, 4:-4, 3]).mean().item()
            lr_dir.append((int(np.sign(round(ly, 3))), int(np.sign(round(lx, 3)))))
        assert hr_dir == lr_dir
        seen.add(tuple(hr_dir))
    assert len(seen) == 8  # all 2×2×2 flip/transpose combinations occur


def test_reproducible_under_a_seed(photo: np.ndarray) -> None:
    def draw(seed: int) -> list[dict[str, torch.Tensor]]:
        g = torch.Generator().manual_seed(seed)
        return [train_sample(photo, **RECIPE, generator=g) for _ in range(5)]

    a, b, c = draw(7), draw(7), draw(8)
    for x, y in zip(a, b, strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert not torch.equal(a[0]["coord"], c[0]["coord"])


def test_dataset_reproducible_with_global_seed() -> None:
    ds = RandomScaleDataset(ImageStore(list_images(SAMPLE / "val")), **RECIPE, repeat=2)
    assert len(ds) == 6
    torch.manual_seed(11)
    first = [ds[i]["gt"] for i in range(6)]
    torch.manual_seed(11)
    again = [ds[i]["gt"] for i in range(6)]
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))


def test_query_coords_match_make_coord() -> None:
    idx = torch.randperm(37 * 53)[:500]
    assert torch.equal(query_coords((37, 53), idx), make_coord((37, 53))[idx])


def test_bad_sampler_settings() -> None:
    store = ImageStore(list_images(SAMPLE / "val"))
    with pytest.raises(UserError, match=r"data\.sample_q=3000"):
        RandomScaleDataset(store, inp_size=48, sample_q=3000)
    with pytest.raises(UserError, match="scale_min <= scale_max"):
        RandomScaleDataset(store, scale_min=3, scale_max=2)
    with pytest.raises(UserError, match=r"data\.repeat=0"):
        RandomScaleDataset(store, repeat=0)


def test_sharding_two_ranks_disjoint_and_covering() -> None:
    # Lightning wraps the loader in a DistributedSampler; with 2 ranks the shards must split the set.
    ds = RandomScaleDataset(ImageStore(list_images(SAMPLE / "train")), **RECIPE, repeat=2)
    shards = [
        list(DistributedSampler(ds, num_replicas=2, rank=r, shuffle=True, seed=0)) for r in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == len(ds) // 2
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(len(ds)))


def test_val_patch_has_every_hr_pixel(position_image: np.ndarray) -> None:
    smp = val_sample(position_image, y0=10, x0=20, size_hr=96, inp_size=48)
    assert smp["inp"].shape == (3, 48, 48)
    assert smp["coord"].shape == (96 * 96, 2) and smp["gt"].shape == (96 * 96, 3)
    assert smp["hr_shape"].tolist() == [96, 96] and smp["scale"].item() == 2.0
    assert torch.equal(smp["coord"], make_coord((96, 96)))
    rgb = to_levels(smp["gt"])
    ij = pixel_index(smp["coord"], 96)
    assert torch.equal(rgb[:, 0], ij[:, 0] + 10) and torch.equal(rgb[:, 1], ij[:, 1] + 20)


def test_val_specs_deterministic_and_spread() -> None:
    shapes = [(300, 451), (400, 600), (427, 640)]
    kw = {"inp_size": 48, "scale_min": 1.0, "scale_max": 4.0, "patches": 4, "seed": 0}
    a = mixed_scale_specs(shapes, **kw)
    assert a == mixed_scale_specs(shapes, **kw)  # same every call (epoch, rank)
    assert a != mixed_scale_specs(shapes, **{**kw, "seed": 1})
    sides = sorted(s.size_hr for s in a)
    assert len(a) == 12 and sides[0] < 60 and sides[-1] > 180  # spread over [48, 192]
    assert all(48 <= s <= 192 for s in sides)
    assert len(set(sides)) == 12
    assert [s.image for s in a] == [0] * 4 + [1] * 4 + [2] * 4
    for sp in a:
        h, w = shapes[sp.image]
        assert 0 <= sp.y0 <= h - sp.size_hr and 0 <= sp.x0 <= w - sp.size_hr
    fixed = fixed_scale_specs(shapes, inp_size=48, scale=2.5, patches=2, seed=0)
    assert {s.size_hr for s in fixed} == {120}


def test_fixed_patch_dataset_same_every_epoch() -> None:
    store = ImageStore(list_images(SAMPLE / "val"), cache="memory")
    specs = mixed_scale_specs(
        store.shapes, inp_size=48, scale_min=1, scale_max=4, patches=1, seed=0
    )
    ds = FixedPatchDataset(store, specs)
    first = [ds[i] for i in range(len(ds))]
    torch.manual_seed(123)  # the global RNG must not matter
    again = [ds[i] for i in range(len(ds))]
    for x, y in zip(first, again, strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)
