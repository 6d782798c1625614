"""Lung fields: human masks for the shipped films, a small U-Net that finds the lungs on any film, and geometry
(bounding box, outline, a heatmap's share inside the lungs, lung-focused crops) used by the audit, the guard and
the Prediction page.

Public API: `segment_film`, `segment_files`, `load_lung_model`, `shipped_mask`, and from `geometry`
`bounding_box`, `outline`, `draw_outline`, `dice`, `share_inside`, `area_share`, `resize_mask`, `crop_to_lungs`,
`weaken_outside`. TensorFlow is imported only when a model is loaded.
"""

from core.lungs.geometry import (
    area_share,
    bounding_box,
    crop_to_lungs,
    dice,
    draw_outline,
    outline,
    resize_mask,
    share_inside,
    weaken_outside,
)

__all__ = [
    "area_share",
    "bounding_box",
    "crop_to_lungs",
    "dice",
    "draw_outline",
    "outline",
    "resize_mask",
    "share_inside",
    "weaken_outside",
]
