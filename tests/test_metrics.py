"""PSNR/SSIM against values worked out by hand, the Y conversion and the protocols' shaving."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import sample_photos
from lte.data.images import load_rgb, to_tensor
from lte.metrics import (
    Y_OFFSET,
    Y_WEIGHTS,
    psnr,
    psnr_protocol,
    rgb_to_y,
    rgb_to_y_weighted,
    shave,
    shave_border,
    ssim,
    ssim_protocol,
)

K_SUM = (65.738 + 129.057 + 25.064) / 256  # 0.858824...


def photo_crop(size: int = 48) -> torch.Tensor:
    img = load_rgb(sample_photos()[0])[:size, :size]
    return to_tensor(img).unsqueeze(0)  # (1, 3, size, size)


def test_y_weights_are_the_papers() -> None:
    assert pytest.approx((0.25679, 0.50413, 0.09791), abs=1e-5) == Y_WEIGHTS
    white = torch.ones(1, 3, 2, 2)
    # Studio range: white is 235/255, black 16/255.
    assert rgb_to_y(white)[0, 0, 0, 0].item() == pytest.approx(235 / 255, abs=1e-4)
    assert rgb_to_y(torch.zeros(1, 3, 2, 2))[0, 0, 0, 0].item() == pytest.approx(16 / 255)


def test_y_of_a_pixel_by_hand() -> None:
    x = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1)
    want = (0.2 * 65.738 + 0.4 * 129.057 + 0.6 * 25.064) / 256
    assert rgb_to_y_weighted(x).item() == pytest.approx(want, rel=1e-6)
    assert rgb_to_y(x).item() == pytest.approx(want + Y_OFFSET, rel=1e-6)


def test_psnr_constant_error_rgb_and_y() -> None:
    gt = torch.full((1, 3, 20, 20), 0.5)
    pred = gt + 0.1
    # RGB: mse = 0.01 -> 20 dB exactly.
    assert psnr(pred, gt, border=0, y_channel=False).item() == pytest.approx(20.0, abs=1e-4)
    # Y of the difference: 0.1 * sum(k) per pixel.
    want = -10 * math.log10((0.1 * K_SUM) ** 2)
    assert psnr(pred, gt, border=0, y_channel=True).item() == pytest.approx(want, abs=1e-4)


def test_psnr_y_uses_the_difference_of_channels() -> None:
    # Errors of opposite sign in R and G partly cancel in Y (they would not in RGB).
    gt = torch.full((1, 3, 8, 8), 0.5)
    pred = gt.clone()
    pred[:, 0] += 0.1
    pred[:, 1] -= 0.05
    dy = (0.1 * 65.738 - 0.05 * 129.057) / 256
    assert psnr(pred, gt, border=0, y_channel=True).item() == pytest.approx(
        -10 * math.log10(dy**2), abs=1e-3
    )
    rgb_mse = (0.1**2 + 0.05**2) / 3
    assert psnr(pred, gt, border=0, y_channel=False).item() == pytest.approx(
        -10 * math.log10(rgb_mse), abs=1e-4
    )


@pytest.mark.parametrize(("protocol", "scale", "border"), [("benchmark", 4, 4), ("div2k", 4, 10)])
def test_protocol_shaves_the_border(protocol: str, scale: int, border: int) -> None:
    gt = photo_crop(48)
    pred = gt.clone()
    pred[..., border:-border, border:-border] += 0.02  # the scored interior: a known error
    pred[..., :border, :] = 1 - gt[..., :border, :]  # garbage in the shaved band only
    pred[..., :, -border:] = 0.0
    want = (
        -10 * math.log10(0.02**2) if protocol == "div2k" else -10 * math.log10((0.02 * K_SUM) ** 2)
    )
    assert psnr_protocol(pred, gt, scale, protocol).item() == pytest.approx(want, abs=1e-3)
    # One pixel less shaved and the garbage shows up.
    assert psnr(pred, gt, border=border - 1, y_channel=protocol == "benchmark").item() < want - 3


def test_shave_border_values() -> None:
    assert shave_border(2, "benchmark") == 2
    assert shave_border(30, "div2k") == 36
    assert shave_border(2.5, "benchmark") == 3  # fractional scales round up
    assert shave_border(2.5, "div2k") == 9
    with pytest.raises(ValueError):
        shave_border(2, "rgb")
    assert shave(torch.zeros(1, 1, 10, 12), 3).shape == (1, 1, 4, 6)
    with pytest.raises(ValueError):
        shave(torch.zeros(1, 1, 6, 12), 3)


def test_psnr_is_per_image() -> None:
    gt = torch.full((2, 3, 10, 10), 0.5)
    pred = gt.clone()
    pred[0] += 0.1
    pred[1] += 0.01
    out = psnr(pred, gt, border=0, y_channel=False)
    assert out.shape == (2,)
    assert out.tolist() == pytest.approx([20.0, 40.0], abs=1e-3)


def ssim_constant(a: float, b: float) -> float:
    """SSIM of two constant images: the variance terms are 0/0-free and equal 1."""
    c1 = 0.01**2
    return (2 * a * b + c1) / (a * a + b * b + c1)


def test_ssim_of_constant_images_by_hand() -> None:
    x = torch.full((1, 3, 32, 32), 0.5)
    y = torch.full((1, 3, 32, 32), 0.6)
    assert ssim(x, y, border=0, y_channel=False).item() == pytest.approx(
        ssim_constant(0.5, 0.6), abs=1e-5
    )
    ya, yb = Y_OFFSET + 0.5 * K_SUM, Y_OFFSET + 0.6 * K_SUM
    assert ssim(x, y, border=0, y_channel=True).item() == pytest.approx(
        ssim_constant(ya, yb), abs=1e-5
    )


def test_ssim_identical_photo_is_one_and_shave_applies() -> None:
    gt = photo_crop(48)
    assert ssim_protocol(gt, gt.clone(), 2, "benchmark").item() == pytest.approx(1.0, abs=1e-6)
    noisy = gt.clone()
    noisy[..., :2, :] = torch.rand_like(noisy[..., :2, :])  # only inside the x2 shave band
    assert ssim_protocol(noisy, gt, 2, "benchmark").item() == pytest.approx(1.0, abs=1e-6)
    assert ssim(noisy, gt, border=0, y_channel=True).item() < 0.999


def test_ssim_drops_with_noise_on_a_photo() -> None:
    gt = photo_crop(48)
    rng = np.random.default_rng(0)
    small = (gt + torch.from_numpy(rng.normal(0, 0.01, gt.shape)).float()).clamp(0, 1)
    large = (gt + torch.from_numpy(rng.normal(0, 0.1, gt.shape)).float()).clamp(0, 1)
    s_small = ssim_protocol(small, gt, 2, "div2k").item()
    s_large = ssim_protocol(large, gt, 2, "div2k").item()
    assert 0 < s_large < s_small < 1
