"""Each acquisition change checked pixel by pixel on known synthetic images (core/imaging/perturbations.py)."""

from __future__ import annotations

import numpy as np
import pytest

from core.imaging import perturbations as P


def gradient(size: int = 100) -> np.ndarray:
    """A horizontal ramp 0..255 on (size, size): every column a different grey."""
    return np.tile(np.round(np.linspace(0, 255, size)).astype(np.uint8), (size, 1))


def test_identity_is_an_equal_copy():
    image = gradient()
    out = P.identity(image)
    assert out is not image and np.array_equal(out, image)


def test_zoom_out_pads_with_black_at_the_border():
    white = np.full((100, 100), 255, np.uint8)
    out = P.zoom(white, 0.85)
    assert out.shape == (100, 100) and out.dtype == np.uint8
    inner = np.zeros((100, 100), bool)
    inner[7:92, 7:92] = True  # 85 px centred: (100 - 85) // 2 = 7
    assert (out[inner] == 255).all()
    assert (out[~inner] == 0).all()


def test_zoom_in_crops_the_edges_away():
    framed = np.full((100, 100), 100, np.uint8)
    framed[:3], framed[-3:], framed[:, :3], framed[:, -3:] = 255, 255, 255, 255
    out = P.zoom(framed, 1.15)  # keeps the central 87 px: rows/cols 6..92, inside the 3-px frame
    assert (out == 100).all()


def test_zoom_rejects_absurd_factors():
    with pytest.raises(ValueError, match="zoom factor"):
        P.zoom(gradient(), 0.0)


def test_shift_moves_content_and_fills_black():
    image = gradient()
    right = P.shift(image, dx=0.10)
    assert (right[:, :10] == 0).all()
    assert np.array_equal(right[:, 10:], image[:, :90])
    down = P.shift(image, dy=0.10)
    assert (down[:10] == 0).all() and np.array_equal(down[10:], image[:90])
    left = P.shift(image, dx=-0.10)
    assert np.array_equal(left[:, :90], image[:, 10:]) and (left[:, 90:] == 0).all()


def test_gamma_maps_grey_levels_by_the_power_law():
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    bright = P.gamma(levels, 0.7)
    dark = P.gamma(levels, 1.4)
    assert bright[8, 0] == 157 and dark[8, 0] == 97  # grey 128: 255 * (128/255) ** 0.7 = 157.4, ** 1.4 = 97.2
    assert np.array_equal(bright.ravel(), np.round(255 * (np.arange(256) / 255) ** 0.7).astype(np.uint8))
    assert bright.ravel()[0] == 0 and bright.ravel()[-1] == 255 and dark.ravel()[-1] == 255


def test_contrast_about_the_image_mean():
    image = np.full((10, 10), 100, np.uint8)
    image[:, 5:] = 200  # mean 150
    assert np.array_equal(P.contrast(image, 1.0), image)
    lower = P.contrast(image, 0.8)
    assert set(np.unique(lower)) == {110, 190}
    higher = P.contrast(image, 2.0)
    assert set(np.unique(higher)) == {50, 250}


def test_blur_and_sharpen_keep_flat_images_and_act_on_edges():
    flat = np.full((64, 64), 90, np.uint8)
    assert np.array_equal(P.blur(flat), flat) and np.array_equal(P.sharpen(flat), flat)
    step = np.zeros((64, 64), np.uint8)
    step[:, 32:] = 200
    blurred = P.blur(step, 0.03)  # ~1.9 px sigma
    assert 0 < blurred[0, 31] < 200 and 0 < blurred[0, 32] < 200
    sharpened = P.sharpen(np.where(step > 0, 150, 50).astype(np.uint8), 1.0, 0.03)
    assert sharpened[0, 31] < 50 and sharpened[0, 32] > 150  # overshoot on both sides of the edge


def test_noise_is_seeded_and_has_the_asked_spread():
    image = np.full((200, 200), 128, np.uint8)
    a, b = P.noise(image, 8.0, seed=0), P.noise(image, 8.0, seed=0)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, P.noise(image, 8.0, seed=1))
    assert abs((a.astype(float) - 128).std() - 8.0) < 0.3


def test_quantise_to_six_bits():
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    out = P.quantise(levels, 6)
    assert len(np.unique(out)) == 64
    assert out.ravel()[0] == 0 and out.ravel()[-1] == 255
    assert np.abs(out.astype(int) - levels.astype(int)).max() <= 2  # levels 255/63 = 4.05 apart
    assert np.array_equal(P.quantise(levels, 8), levels)


def test_pad_sides_adds_black_bars_left_and_right_only():
    white = np.full((100, 100), 255, np.uint8)
    out = P.pad_sides(white, 0.10)  # 10 px bars on a 100 px image, squeezed from 120 to 100 columns
    assert (out[:, :8] == 0).all() and (out[:, -8:] == 0).all()
    assert (out[:, 10:90] == 255).all()
    assert (out == out[0]).all()  # every row the same: nothing happens vertically


def test_black_frame_blacks_out_the_band_only():
    image = np.full((100, 100), 77, np.uint8)
    out = P.black_frame(image, 0.06)
    inner = np.zeros((100, 100), bool)
    inner[6:94, 6:94] = True
    assert (out[inner] == 77).all() and (out[~inner] == 0).all()
    assert (image == 77).all()  # the input is not modified


def test_every_named_perturbation_keeps_shape_and_dtype_and_is_deterministic():
    image = gradient(64)
    names = [p.name for p in P.PERTURBATIONS]
    assert len(names) == len(set(names)) and names[0] == "identity"
    for perturbation in P.PERTURBATIONS:
        out = perturbation.apply(image)
        assert out.shape == image.shape and out.dtype == np.uint8, perturbation.name
        assert np.array_equal(out, perturbation.apply(image)), perturbation.name
    goal = {p.name for p in P.PERTURBATIONS if p.goal}
    assert {"zoom_in_15", "zoom_out_15", "gamma_0.7", "gamma_1.4", "pad_sides_10"} <= goal
    assert P.by_name("bits_6").name == "bits_6"
    with pytest.raises(ValueError, match="No perturbation"):
        P.by_name("nope")


def test_wrong_input_type_gets_an_actionable_error():
    with pytest.raises(ValueError, match="grey uint8"):
        P.gamma(np.zeros((10, 10), np.float32), 0.7)
    with pytest.raises(ValueError, match="grey uint8"):
        P.zoom(np.zeros((10, 10, 3), np.uint8), 1.15)
