"""Mask geometry: outline where the mask is, masks resized with films stay aligned, heatmap shares, lung crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.lungs import geometry

MASKS_DIR = Path(__file__).resolve().parents[2] / "data" / "lung_masks"


def _two_lungs(height: int = 40, width: int = 50) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[5:30, 5:20] = True
    mask[8:32, 28:45] = True
    return mask


def test_outline_lies_on_the_mask_border_and_nowhere_else() -> None:
    mask = _two_lungs()
    edge = geometry.outline(mask)
    assert edge[5, 10] and edge[29, 10] and edge[15, 5] and edge[15, 19]  # the four sides of the left lung
    assert not edge[15, 12] and not edge[2, 2] and not edge[15, 24]  # inside, outside, between the lungs
    assert not (edge & ~mask).any()


def test_draw_outline_colours_exactly_the_outline_pixels() -> None:
    film = np.full((40, 50), 100, np.uint8)
    mask = _two_lungs()
    drawn = geometry.draw_outline(film, mask, colour=(0, 255, 255), thickness=2)
    coloured = np.all(drawn == (0, 255, 255), axis=2)
    np.testing.assert_array_equal(coloured, geometry.outline(mask, thickness=2))
    assert np.all(drawn[~coloured] == 100)


def test_bounding_box_and_empty_mask() -> None:
    assert geometry.bounding_box(_two_lungs()) == (5, 5, 32, 45)
    assert geometry.bounding_box(np.zeros((4, 4), bool)) is None
    with pytest.raises(ValueError, match="empty"):
        geometry.crop_to_lungs(np.zeros((4, 4)), np.zeros((4, 4), bool))


def test_share_inside_counts_heatmap_mass_in_the_mask() -> None:
    mask = _two_lungs()
    assert geometry.share_inside(np.ones(mask.shape), mask) == pytest.approx(mask.mean())
    assert geometry.share_inside(mask.astype(float), mask) == pytest.approx(1.0)
    assert geometry.share_inside((~mask).astype(float), mask) == pytest.approx(0.0)
    assert np.isnan(geometry.share_inside(np.zeros(mask.shape), mask))
    # a heatmap at a quarter of the resolution: the mask is resized to it
    coarse = np.zeros((10, 10))
    coarse[:5] = 1.0
    top = np.zeros((40, 40), bool)
    top[:20] = True
    assert geometry.share_inside(coarse, top) == pytest.approx(1.0)


def test_dice_against_hand_counts() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2], b[1:3] = True, True
    assert geometry.dice(a, b) == pytest.approx(2 * 4 / 16)
    with pytest.raises(ValueError, match="same shape"):
        geometry.dice(a, np.zeros((3, 3), bool))


def test_crop_and_weaken_keep_the_lungs() -> None:
    film = np.arange(40 * 50, dtype=np.float32).reshape(40, 50)
    mask = _two_lungs()
    crop = geometry.crop_to_lungs(film, mask, margin=0.0)
    np.testing.assert_array_equal(crop, film[5:32, 5:45])
    weakened = geometry.weaken_outside(film, mask, weight=0.0, blur=1)
    np.testing.assert_allclose(weakened[mask], film[mask])
    np.testing.assert_allclose(weakened[~mask], film.mean())
    np.testing.assert_allclose(geometry.weaken_outside(film, mask, weight=1.0), film)


def test_shipped_masks_resized_with_their_films_stay_aligned(data_root: Path) -> None:
    """Burn a real film's human mask into the film as white, resize both the film (as pages do) and the mask to a
    non-square size: the white pixels of the resized film fall on the resized mask."""
    for relpath in ("test/PNEUMONIA/person100_bacteria_475.jpeg", "train/NORMAL/IM-0115-0001.jpeg"):
        mask = np.asarray(Image.open(MASKS_DIR / Path(relpath).with_suffix(".png"))) > 0
        film = np.asarray(Image.open(data_root / relpath).convert("L")).copy()
        assert film.shape == mask.shape == (224, 224)
        film[mask] = 255
        film[~mask] = np.minimum(film[~mask], 200)
        resized_film = np.asarray(Image.fromarray(film).resize((150, 310), Image.BILINEAR)) >= 228
        resized_mask = geometry.resize_mask(mask, (150, 310))
        assert resized_mask.shape == (310, 150)
        assert geometry.dice(resized_film, resized_mask) > 0.97
        # a mask moved by 8 % of the side no longer matches
        shifted = np.roll(resized_mask, 25, axis=0)
        assert geometry.dice(resized_film, shifted) < 0.9
