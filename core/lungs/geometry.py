"""Lung-mask geometry: resizing with the film, bounding box, outline, Dice, a heatmap's share inside the lungs,
and the lung-focused views of a film (crop to the lungs' box, weaken what lies outside) for training recipes.

Masks are boolean arrays of shape (height, width); films are 2-D grey arrays of any numeric type.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def _check_mask(mask: np.ndarray) -> np.ndarray:
    """The mask as a boolean 2-D array, or a ValueError that says what shape was given."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"A lung mask must be a 2-D array (height, width); got shape {mask.shape}.")
    return mask > 0 if mask.dtype != bool else mask


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a mask to `size` = (width, height) the way the films are resized (stretched, no padding).

    Area-averaged then thresholded at one half, so a mask shrunk from its original resolution keeps its outline.
    """
    mask = _check_mask(mask)
    width, height = int(size[0]), int(size[1])
    if width < 1 or height < 1:
        raise ValueError(f"The target size must be positive (width, height); got {size}.")
    if mask.shape == (height, width):
        return mask.copy()
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    resample = Image.BOX if width <= mask.shape[1] and height <= mask.shape[0] else Image.BILINEAR
    return np.asarray(image.resize((width, height), resample)) >= 128


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of the mask's pixels, bottom/right exclusive; None for an empty mask."""
    mask = _check_mask(mask)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def outline(mask: np.ndarray, *, thickness: int = 1) -> np.ndarray:
    """Boolean (height, width) of the mask's border pixels: inside the mask with a neighbour outside it."""
    mask = _check_mask(mask)
    if thickness < 1:
        raise ValueError(f"The outline thickness must be at least 1 pixel; got {thickness}.")
    inner = mask.copy()
    for _ in range(thickness):
        padded = np.pad(inner, 1, constant_values=False)
        inner = (
            padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        )
    return mask & ~inner


def draw_outline(image: np.ndarray, mask: np.ndarray, *, colour: tuple[int, int, int] = (0, 255, 255),
                 thickness: int = 2) -> np.ndarray:
    """A uint8 RGB copy of `image` (grey or RGB, same height/width as the mask, or resized to it) with the
    mask's outline drawn in `colour`."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"Expected a grey (H, W) or RGB (H, W, 3) image; got shape {image.shape}.")
    rgb = np.array(image[..., :3], copy=True)
    if rgb.dtype != np.uint8:
        scaled = rgb.astype(np.float64)
        if scaled.max() <= 1.0:
            scaled *= 255.0
        rgb = np.clip(scaled, 0, 255).astype(np.uint8)
    mask = resize_mask(mask, (rgb.shape[1], rgb.shape[0]))
    rgb[outline(mask, thickness=thickness)] = colour
    return rgb


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient 2|A∩B| / (|A|+|B|) of two masks of the same shape (1.0 when both are empty)."""
    a, b = _check_mask(a), _check_mask(b)
    if a.shape != b.shape:
        raise ValueError(f"Dice needs two masks of the same shape; got {a.shape} and {b.shape}. Resize one first.")
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def area_share(mask: np.ndarray) -> float:
    """Fraction of the film's area inside the mask (0..1)."""
    return float(_check_mask(mask).mean())


def share_inside(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share (0..1) of a non-negative heatmap's mass that lies inside the mask.

    The heatmap may have any resolution; the mask is resized to it. Negative values are clipped to zero;
    NaN is returned when the heatmap carries no mass.
    """
    heat = np.asarray(heatmap, dtype=np.float64)
    if heat.ndim != 2:
        raise ValueError(f"A heatmap must be a 2-D array (height, width); got shape {heat.shape}.")
    heat = np.clip(np.nan_to_num(heat, nan=0.0), 0.0, None)
    total = heat.sum()
    if total <= 0:
        return float("nan")
    inside = resize_mask(mask, (heat.shape[1], heat.shape[0]))
    return float(heat[inside].sum() / total)


def lung_box_with_margin(mask: np.ndarray, *, margin: float = 0.1) -> tuple[int, int, int, int]:
    """The lungs' bounding box grown by `margin` (a fraction of its height and width) on every side, clipped to
    the film; (top, left, bottom, right). ValueError when the mask is empty."""
    mask = _check_mask(mask)
    box = bounding_box(mask)
    if box is None:
        raise ValueError("The lung mask is empty, so there is no lung box to crop to. Check the film or the mask.")
    if margin < 0:
        raise ValueError(f"The margin must be zero or positive; got {margin}.")
    top, left, bottom, right = box
    dy, dx = int(round(margin * (bottom - top))), int(round(margin * (right - left)))
    height, width = mask.shape
    return max(0, top - dy), max(0, left - dx), min(height, bottom + dy), min(width, right + dx)


def crop_to_lungs(film: np.ndarray, mask: np.ndarray, *, margin: float = 0.1) -> np.ndarray:
    """The film cropped to its lungs' bounding box plus `margin` (mask resized to the film first).

    Keeps the film's dtype and channels; the caller resizes the crop to the model's input size.
    """
    film = np.asarray(film)
    mask = resize_mask(mask, (film.shape[1], film.shape[0]))
    top, left, bottom, right = lung_box_with_margin(mask, margin=margin)
    return film[top:bottom, left:right]


def weaken_outside(film: np.ndarray, mask: np.ndarray, *, weight: float = 0.3, blur: int = 7) -> np.ndarray:
    """The film with everything outside the lungs pulled towards the film's mean by (1 - `weight`).

    `weight` = 0 blanks the outside, 1 leaves the film unchanged. The mask edge is softened over about `blur`
    pixels (a box filter) so the model sees no hard artificial border. Returns float32 of the film's shape.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"The outside weight must be between 0 and 1; got {weight}.")
    film = np.asarray(film, dtype=np.float32)
    mask = resize_mask(mask, (film.shape[1], film.shape[0])).astype(np.float32)
    if blur > 1:
        from scipy.ndimage import uniform_filter

        mask = uniform_filter(mask, size=int(blur), mode="nearest")
    alpha = weight + (1.0 - weight) * mask
    if film.ndim == 3:
        alpha = alpha[..., None]
    mean = film.mean(axis=(0, 1), keepdims=True) if film.ndim == 3 else film.mean()
    return (mean + alpha * (film - mean)).astype(np.float32)
