"""The Prediction page's lung piece: the outline on the overlay, the evidence share and its sentence."""

from __future__ import annotations

import numpy as np
import pytest

from core.lungs import geometry
from core.lungs import masks as evidence


def _evidence(heatmap: np.ndarray) -> evidence.LungEvidence:
    mask = np.zeros((60, 80), bool)
    mask[10:50, 10:35] = mask[10:50, 45:70] = True
    return evidence.LungEvidence(mask=mask, area=geometry.area_share(mask), share=geometry.share_inside(heatmap, mask),
                                 source="lung model")


def test_outline_is_drawn_on_the_overlay_where_the_mask_is() -> None:
    found = _evidence(np.ones((60, 80)))
    overlay = np.full((120, 160, 3), 90, np.uint8)  # the overlay is twice the mask's size
    drawn = evidence.outline_lungs(overlay, found, colour=(0, 255, 255))
    changed = np.any(drawn != overlay, axis=2)
    big_mask = geometry.resize_mask(found.mask, (160, 120))
    assert changed.any() and not (changed & ~big_mask).any()
    assert changed[20:100, 20].any() and not changed[60, 40]  # on the left lung's left edge, not in its middle
    assert evidence.outline_lungs(overlay, None) is overlay


def test_sentence_reports_share_against_area() -> None:
    heat = np.zeros((60, 80))
    heat[20:30, 15:30] = 1.0  # all the evidence inside the left lung
    found = _evidence(heat)
    assert found.share == pytest.approx(1.0)
    text = evidence.caption(found)
    assert "100% of the evidence lies inside the lungs" in text and f"{found.area:.0%} of the film" in text
    empty = evidence.LungEvidence(mask=np.zeros((4, 4), bool), area=0.0, share=float("nan"), source="lung model")
    assert "No lungs were found" in empty.sentence()
    assert evidence.caption(None) == ""
