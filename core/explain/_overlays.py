"""Heatmaps drawn on films, feature maps coloured, PNG encoding."""
from __future__ import annotations

import numpy as np

from core.explain._layers import _normalise


def overlay(pixels: np.ndarray, heatmap: np.ndarray, *, opacity: float = 0.45, colormap: int | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) of grey pixels (H, W) in [0, 1] blended with a heatmap (h, w) in [0, 1] resized to (H, W)."""
    import cv2

    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1, got {opacity}.")
    pixels = np.asarray(pixels, np.float32)
    height, width = pixels.shape[:2]
    heat = cv2.resize(np.asarray(heatmap, np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    heat_u8 = np.clip(heat * 255.0 + 0.5, 0, 255).astype(np.uint8)
    coloured = cv2.cvtColor(cv2.applyColorMap(heat_u8, cv2.COLORMAP_JET if colormap is None else colormap), cv2.COLOR_BGR2RGB)
    grey = cv2.cvtColor(np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(coloured, float(opacity), grey, 1.0 - float(opacity), 0.0)


def colourise(feature_map: np.ndarray, *, min_side: int = 96) -> np.ndarray:
    """RGB uint8 (max(h, min_side)-ish, w, 3) viridis rendering of one map (h, w), scaled to its own range."""
    import cv2

    scaled = _normalise(np.asarray(feature_map, np.float32)[None])[0]
    rgb = cv2.cvtColor(cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
    factor = max(1, int(np.ceil(min_side / max(1, min(rgb.shape[:2])))))
    return cv2.resize(rgb, (rgb.shape[1] * factor, rgb.shape[0] * factor), interpolation=cv2.INTER_NEAREST) if factor > 1 else rgb


def to_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 image (H, W, 3) or grey (H, W)."""
    import cv2

    image = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("Could not encode the image as PNG.")
    return encoded.tobytes()
