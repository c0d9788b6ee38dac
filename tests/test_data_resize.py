"""The two downsamplers: PIL bicubic (training protocol) and the MATLAB-compatible imresize."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lte.data.images import load_rgb
from lte.data.resize import (
    crop_to_scale,
    cubic,
    downsample_pil,
    imresize_matlab,
    lr_size,
    make_lr,
    matlab_weights,
)
from lte.errors import UserError

PHOTO = Path(__file__).resolve().parents[1] / "data" / "sample" / "val" / "chelsea.png"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load_rgb(PHOTO)


def test_downsample_pil_is_pil_bicubic(photo: np.ndarray) -> None:
    out = downsample_pil(photo, (100, 150))
    ref = np.asarray(Image.open(PHOTO).convert("RGB").resize((150, 100), Image.BICUBIC))
    assert out.shape == (100, 150, 3) and out.dtype == np.uint8
    assert np.array_equal(out, ref)


def test_cubic_kernel_values() -> None:
    # Keys' cubic with a = -0.5 at quarter steps, worked out by hand.
    x = np.array([0.0, 0.25, 0.75, 1.0, 1.25, 1.75, 2.0, 2.5])
    expect = [1.0, 0.8671875, 0.2265625, 0.0, -0.0703125, -0.0234375, 0.0, 0.0]
    assert np.allclose(cubic(x), expect)
    assert np.allclose(cubic(-x), expect)


def test_x2_taps_closed_form() -> None:
    # At x2 each output pixel sits between two inputs: 8 taps at distances ±0.5, ±1.5, ±2.5, ±3.5,
    # weight 0.5·cubic(d/2) = (-3, -9, 29, 111, 111, 29, -9, -3) / 256.
    weights, indices = matlab_weights(20, 10)
    closed = np.array([-3, -9, 29, 111, 111, 29, -9, -3]) / 256
    assert weights.shape == (10, 8)
    assert np.allclose(weights, closed[None, :], atol=1e-15)
    assert np.allclose(weights.sum(axis=1), 1.0)
    d = np.array([3.5, 2.5, 1.5, 0.5, -0.5, -1.5, -2.5, -3.5])
    assert np.allclose(weights[4], 0.5 * cubic(0.5 * d))
    # Output u (0-based) is centred between inputs 2u and 2u+1.
    assert indices[4].tolist() == list(range(5, 13))


@pytest.mark.parametrize(("n_in", "n_out"), [(30, 10), (37, 9), (12, 30), (48, 17)])
def test_weights_normalised_any_scale(n_in: int, n_out: int) -> None:
    weights, indices = matlab_weights(n_in, n_out)
    assert np.allclose(weights.sum(axis=1), 1.0)
    assert indices.min() >= 0 and indices.max() < n_in


def test_symmetric_padding() -> None:
    # The first x2 taps reach 3 px past the left border: MATLAB mirrors with the edge repeated
    # (... 2 1 0 | 0 1 2 ...), which is numpy's 'symmetric' pad.
    _, indices = matlab_weights(16, 8)
    assert indices[0].tolist() == [2, 1, 0, 0, 1, 2, 3, 4]
    assert indices[-1].tolist() == [11, 12, 13, 14, 15, 15, 14, 13]
    row = np.arange(16, dtype=np.float64) ** 2  # not linear, so padding mistakes show
    padded = np.pad(row, 3, mode="symmetric")
    taps = np.array([-3, -9, 29, 111, 111, 29, -9, -3]) / 256
    img = np.repeat(np.repeat(row[None, :, None], 4, axis=0), 3, axis=2)  # (4, 16, 3)
    img = np.clip(img, 0, 255).astype(np.uint8)
    out = imresize_matlab(img, (4, 8))
    expect_first = np.floor(np.dot(taps, np.clip(padded, 0, 255)[0:8]) + 0.5)
    assert out[0, 0, 0] == expect_first


@pytest.mark.parametrize("size", [(10, 10), (7, 13), (45, 45), (30, 31)])
def test_constant_image_stays_constant(size: tuple[int, int]) -> None:
    img = np.full((30, 30, 3), 173, dtype=np.uint8)
    out = imresize_matlab(img, size)
    assert out.shape == (*size, 3)
    assert np.all(out == 173)


def test_matlab_antialiases_checkerboard() -> None:
    # A 1-px checkerboard has no content below Nyquist at x2: antialiased resampling gives grey.
    yy, xx = np.mgrid[:32, :32]
    board = (((yy + xx) % 2) * 255).astype(np.uint8)
    img = np.repeat(board[..., None], 3, axis=2)
    out = imresize_matlab(img, (16, 16))
    assert np.all(np.abs(out[3:-3, 3:-3].astype(int) - 128) <= 1)


def test_matlab_close_to_pil_on_a_photo(photo: np.ndarray) -> None:
    # Both are antialiased a=-0.5 bicubic; they differ in border handling and rounding only.
    hr = crop_to_scale(photo, 4)
    size = lr_size(photo.shape[:2], 4)
    diff = np.abs(imresize_matlab(hr, size).astype(int) - downsample_pil(hr, size).astype(int))
    assert diff[4:-4, 4:-4].mean() < 1.0


@pytest.mark.parametrize("scale", [2, 3, 4, 2.5])
def test_make_lr_sizes(photo: np.ndarray, scale: float) -> None:
    h, w = photo.shape[:2]  # 300 x 451
    hr, lr = make_lr(photo, scale, "matlab")
    assert lr.shape[:2] == (int(h // scale), int(w // scale))
    assert hr.shape[:2] == (round(lr.shape[0] * scale), round(lr.shape[1] * scale))
    assert np.array_equal(hr, photo[: hr.shape[0], : hr.shape[1]])


def test_bad_kernel_and_size(photo: np.ndarray) -> None:
    with pytest.raises(UserError, match="kernel 'lanczos'"):
        make_lr(photo, 2, "lanczos")
    with pytest.raises(UserError, match="too small"):
        downsample_pil(photo, (0, 10))
