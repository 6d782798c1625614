"""Acquisition changes as deterministic image functions: zoom, shift, gamma, contrast, blur, sharpen, noise,
bit depth, padding and a black frame.

Every function takes a grey uint8 image of shape (H, W) at the model's input size and returns a new uint8 image
of the same shape; none keeps state, and the noise is seeded, so the same input always gives the same output.
Sizes are fractions of the image side, so a perturbation means the same thing at 64, 128 or 224 pixels.
`PERTURBATIONS` names the set the audit applies (`core.audit`); `ROBUSTNESS_GOAL` lists those whose effect on
sensitivity and specificity must stay within `ROBUSTNESS_TOLERANCE` (issue 14).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ROBUSTNESS_TOLERANCE = 0.05  # max |change| of sensitivity and of specificity at the card threshold


def _check(image: np.ndarray) -> np.ndarray:
    """The image as a contiguous uint8 (H, W) array, or a ValueError saying what to pass instead."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"Perturbations take a grey uint8 image of shape (H, W); got {image.dtype} {image.shape}. "
                         "Convert with core.audit.to_grey_uint8 first.")
    return np.ascontiguousarray(image)


def identity(image: np.ndarray) -> np.ndarray:
    """The image unchanged (a copy): the reference every other perturbation is compared with."""
    return _check(image).copy()


def zoom(image: np.ndarray, factor: float) -> np.ndarray:
    """Magnify the content about the centre by `factor` (> 1 zooms in, < 1 zooms out), keeping the size.

    Zoom in: the central (H/factor, W/factor) crop is resized up (bilinear), so the edges of the film are lost.
    Zoom out: the whole film is resized down (area averaging) to (H*factor, W*factor) and centred on black
    (grey 0) padding, like a film framed more loosely with a black surround.
    """
    import cv2

    image = _check(image)
    if not 0.2 <= factor <= 5.0:
        raise ValueError(f"zoom factor must be in [0.2, 5], got {factor}; 1.15 zooms in by 15 %, 0.85 out by 15 %.")
    height, width = image.shape
    if factor >= 1.0:
        crop_h, crop_w = max(1, round(height / factor)), max(1, round(width / factor))
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        crop = image[top: top + crop_h, left: left + crop_w]
        return cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)
    inner_h, inner_w = max(1, round(height * factor)), max(1, round(width * factor))
    small = cv2.resize(image, (inner_w, inner_h), interpolation=cv2.INTER_AREA)
    out = np.zeros_like(image)
    top, left = (height - inner_h) // 2, (width - inner_w) // 2
    out[top: top + inner_h, left: left + inner_w] = small
    return out


def shift(image: np.ndarray, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """Translate the content by (dx * W, dy * H) pixels (positive: right, down), filling the uncovered edge with black."""
    image = _check(image)
    height, width = image.shape
    step_x, step_y = int(round(dx * width)), int(round(dy * height))
    out = np.zeros_like(image)
    src_y = slice(max(0, -step_y), min(height, height - step_y))
    dst_y = slice(max(0, step_y), min(height, height + step_y))
    src_x = slice(max(0, -step_x), min(width, width - step_x))
    dst_x = slice(max(0, step_x), min(width, width + step_x))
    out[dst_y, dst_x] = image[src_y, src_x]
    return out


def gamma(image: np.ndarray, value: float) -> np.ndarray:
    """Power-law grey mapping out = 255 * (in / 255) ** value, rounded (value < 1 brightens, > 1 darkens; 0 and 255 stay)."""
    image = _check(image)
    if value <= 0:
        raise ValueError(f"gamma must be positive, got {value}.")
    table = np.round(255.0 * (np.arange(256) / 255.0) ** value).astype(np.uint8)
    return table[image]


def contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Stretch (factor > 1) or flatten (< 1) grey levels about the image's own mean: out = mean + factor * (in - mean), clipped."""
    image = _check(image)
    mean = float(image.mean())
    return np.clip(np.round(mean + factor * (image.astype(np.float32) - mean)), 0, 255).astype(np.uint8)


def blur(image: np.ndarray, sigma: float = 0.007) -> np.ndarray:
    """Gaussian blur with standard deviation `sigma` x image width (0.007 is about 1.5 px at 224 px), reflected edges."""
    import cv2

    image = _check(image)
    sigma_px = max(1e-3, sigma * image.shape[1])
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma_px, sigmaY=sigma_px, borderType=cv2.BORDER_REFLECT_101)


def sharpen(image: np.ndarray, amount: float = 1.0, sigma: float = 0.007) -> np.ndarray:
    """Unsharp mask: out = in + amount * (in - blur(in, sigma)), rounded and clipped to [0, 255]."""
    image = _check(image)
    detail = image.astype(np.float32) - blur(image, sigma).astype(np.float32)
    return np.clip(np.round(image.astype(np.float32) + amount * detail), 0, 255).astype(np.uint8)


def noise(image: np.ndarray, sigma: float = 8.0, *, seed: int = 0) -> np.ndarray:
    """Add Gaussian noise of standard deviation `sigma` grey levels (seeded: same seed, same noise), rounded and clipped."""
    image = _check(image)
    rng = np.random.default_rng(seed)
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma, size=image.shape).astype(np.float32)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def quantise(image: np.ndarray, bits: int = 6) -> np.ndarray:
    """Reduce to 2**bits grey levels spread evenly over [0, 255] (0 and 255 stay; 6 bits = 64 levels, 4 grey levels apart)."""
    image = _check(image)
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be between 1 and 8, got {bits}.")
    top = 2 ** bits - 1
    table = np.round(np.round(np.arange(256) * top / 255.0) * 255.0 / top).astype(np.uint8)
    return table[image]


def pad_sides(image: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Letterbox: add black bars of `fraction` x W on the left and right, then resize back to (H, W).

    The content is squeezed horizontally by 1 / (1 + 2 * fraction) (a wider, padded acquisition shown square).
    """
    import cv2

    image = _check(image)
    height, width = image.shape
    bar = int(round(fraction * width))
    padded = cv2.copyMakeBorder(image, 0, 0, bar, bar, cv2.BORDER_CONSTANT, value=0)
    return cv2.resize(padded, (width, height), interpolation=cv2.INTER_AREA)


def black_frame(image: np.ndarray, fraction: float = 0.06) -> np.ndarray:
    """Set an outer band `fraction` of each side wide to black, without rescaling (collimator shutters, a frame)."""
    image = _check(image).copy()
    height, width = image.shape
    band_y, band_x = int(round(fraction * height)), int(round(fraction * width))
    if band_y:
        image[:band_y] = 0
        image[height - band_y:] = 0
    if band_x:
        image[:, :band_x] = 0
        image[:, width - band_x:] = 0
    return image


@dataclass(frozen=True)
class Perturbation:
    """One named acquisition change: `apply(uint8 (H, W)) -> uint8 (H, W)` and what it does in words."""

    name: str
    description: str
    apply: Callable[[np.ndarray], np.ndarray]
    goal: bool = False  # part of the robustness goal (sensitivity and specificity within ROBUSTNESS_TOLERANCE)


PERTURBATIONS: tuple[Perturbation, ...] = (
    Perturbation("identity", "no change (reference)", identity),
    Perturbation("zoom_in_15", "zoom in 15 %: central crop 1/1.15 of each side, resized up", lambda im: zoom(im, 1.15), True),
    Perturbation("zoom_out_15", "zoom out 15 %: film shrunk to 0.85 of each side, black padding", lambda im: zoom(im, 0.85), True),
    Perturbation("shift_right_10", "shift right by 10 % of the width, black fill on the left", lambda im: shift(im, dx=0.10), True),
    Perturbation("shift_down_10", "shift down by 10 % of the height, black fill at the top", lambda im: shift(im, dy=0.10), True),
    Perturbation("gamma_0.7", "gamma 0.7 (brighter mid-greys; 128 -> 157)", lambda im: gamma(im, 0.7), True),
    Perturbation("gamma_1.4", "gamma 1.4 (darker mid-greys; 128 -> 97)", lambda im: gamma(im, 1.4), True),
    Perturbation("pad_sides_10", "black bars of 10 % of the width left and right, squeezed back to square", lambda im: pad_sides(im, 0.10), True),
    Perturbation("black_frame_6", "outer 6 % band of each side set to black (no rescaling)", lambda im: black_frame(im, 0.06), True),
    Perturbation("contrast_0.8", "contrast x0.8 about the image mean", lambda im: contrast(im, 0.8)),
    Perturbation("contrast_1.25", "contrast x1.25 about the image mean (clipped)", lambda im: contrast(im, 1.25)),
    Perturbation("blur", "Gaussian blur, sigma 0.7 % of the width (1.5 px at 224)", lambda im: blur(im, 0.007)),
    Perturbation("sharpen", "unsharp mask, amount 1, sigma 0.7 % of the width", lambda im: sharpen(im, 1.0, 0.007)),
    Perturbation("noise_8", "Gaussian noise, sigma 8 grey levels (seed 0)", lambda im: noise(im, 8.0, seed=0)),
    Perturbation("bits_6", "6-bit quantisation (64 grey levels)", lambda im: quantise(im, 6)),
)


def by_name(name: str) -> Perturbation:
    """The perturbation called `name` (see PERTURBATIONS), or a ValueError listing the names."""
    for perturbation in PERTURBATIONS:
        if perturbation.name == name:
            return perturbation
    raise ValueError(f"No perturbation named {name!r}; choose from {[p.name for p in PERTURBATIONS]}.")
