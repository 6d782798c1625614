"""The audit's Grad-CAM regions from a lung mask (human or the lung model's) instead of the Otsu heuristic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import audit

MASKS_DIR = Path(__file__).resolve().parents[2] / "data" / "lung_masks"


def test_a_given_lung_mask_is_the_lung_region_and_the_partition_holds() -> None:
    film = np.full((64, 64), 120, np.uint8)
    lungs = np.zeros((128, 128), bool)  # twice the film's size: resized to it
    lungs[4:100, 20:60] = lungs[4:100, 70:110] = True  # reaches into the top border band
    regions, method = audit.image_regions(film, lungs=lungs, lungs_source="human mask")
    assert method == "human mask"
    stacked = np.stack(list(regions.values())).astype(int)
    assert (stacked.sum(axis=0) == 1).all()
    np.testing.assert_array_equal(regions["lungs"], lungs[::2, ::2])
    assert regions["lungs"][2, 15] and not regions["border"][2, 15]


def test_gradcam_mass_counts_the_heatmap_inside_a_real_human_mask(data_root: Path) -> None:
    relpath = "test/PNEUMONIA/person100_bacteria_475"
    mask = np.asarray(Image.open(MASKS_DIR / f"{relpath}.png")) > 0
    film = np.asarray(Image.open(data_root / f"{relpath}.jpeg").convert("L"))
    inside = mask.astype(np.float32)
    cam = audit.gradcam_mass(np.stack([inside, 1.0 - inside]), np.stack([film, film]), [mask, mask], ["human mask"] * 2)
    assert cam["mass"]["lungs"] == pytest.approx(0.5)  # one map all inside, the other all outside
    assert cam["area"]["lungs"] == pytest.approx(mask.mean())
    assert cam["lungs_found"] == {"human mask": 1.0}
