"""Where things lie on a film (lung fields, edges, corners), Grad-CAM mass per region, and film statistics."""
from __future__ import annotations

from collections.abc import Sequence

from typing import Any

import numpy as np

from core.audit._films import (
    BORDER,
    BORDER_RELIANT_MASS,
    CORNER,
    LOWER,
    REGIONS,
    STATISTICS_SIDE,
)


def _lung_boxes(height: int, width: int) -> np.ndarray:
    """Fixed anatomical boxes for the two lung fields (fallback): x 15-46 % and 54-85 %, y 12-70 %."""
    mask = np.zeros((height, width), bool)
    top, bottom = int(0.12 * height), int(0.70 * height)
    for left, right in ((0.15, 0.46), (0.54, 0.85)):
        mask[top:bottom, int(left * width): int(right * width)] = True
    return mask


def lung_fields(grey: np.ndarray, *, allowed: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """(bool mask (H, W) of the lung fields, how they were found) for a grey uint8 film (H, W).

    Heuristic, per half of the film (left lung, right lung): blur (sigma 1 % of the side); Otsu threshold of the
    pixels in `allowed` (default all); dark pixels are air. A morphological opening (radius 2 % of the side) cuts thin
    dark bridges; dark components that still reach the outer 2 % ring of the film are the air outside the body and
    are dropped. In each half the largest remaining component inside `allowed` covering >= 1.5 % of the film is
    the lung, replaced by its convex hull so that a dense (consolidated) patch inside it stays inside; a hull smaller
    than half the half's fixed box (a fragment of a dense lung) is joined with that box. A half where none is found
    gets the fixed box (`_lung_boxes`). Returns 'heuristic', 'mixed' (one half from a box) or
    'boxes'. Limits: a lung whose air joins the air outside the body (loose framing, a rotated child) or a
    whited-out lung falls back to the box; it is a coarse map for counting heatmap mass, not a segmentation.
    """
    import cv2
    from scipy import ndimage

    grey = np.asarray(grey, np.uint8)
    height, width = grey.shape
    allowed = np.ones_like(grey, bool) if allowed is None else np.asarray(allowed, bool)
    boxes = _lung_boxes(height, width)
    sigma = max(0.5, 0.01 * width)
    smooth = cv2.GaussianBlur(grey, (0, 0), sigmaX=sigma, sigmaY=sigma)
    values = smooth[allowed].reshape(-1, 1)
    if values.size == 0 or values.min() == values.max():
        return boxes & allowed, "boxes"
    level, _ = cv2.threshold(values, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    radius = max(1, int(round(0.02 * width)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    dark = cv2.morphologyEx((smooth < level).astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
    labels, count = ndimage.label(dark)
    edge = max(1, int(round(0.02 * min(height, width))))
    ring = np.zeros_like(dark)
    ring[:edge], ring[-edge:], ring[:, :edge], ring[:, -edge:] = True, True, True, True
    outside = set(np.unique(labels[ring & dark]).tolist())
    mask = np.zeros((height, width), np.uint8)
    found = 0
    for columns in (slice(0, width // 2), slice(width // 2, width)):
        half = np.zeros_like(dark)
        half[:, columns] = True
        best, best_area = None, 0.015 * height * width
        for label in set(np.unique(labels[half & allowed & dark]).tolist()) - outside - {0}:
            part = (labels == label) & half & allowed
            area = int(part.sum())
            if area >= best_area:
                best, best_area = part, area
        if best is None:
            mask[boxes & half] = 1
            continue
        found += 1
        hull = np.zeros_like(mask)
        cv2.fillConvexPoly(hull, cv2.convexHull(cv2.findNonZero(best.astype(np.uint8))), 1)
        if hull.sum() < 0.5 * (boxes & half).sum():  # a fragment (dense lung): keep the box around it too
            hull[boxes & half] = 1
        mask |= hull
    method = {2: "heuristic", 1: "mixed", 0: "boxes"}[found]
    return mask.astype(bool) & allowed, method


def image_regions(grey: np.ndarray, *, lungs: np.ndarray | None = None, lungs_source: str = "lung mask") -> tuple[dict[str, np.ndarray], str]:
    """A partition of a grey uint8 film (H, W) into REGIONS (bool masks that do not overlap and cover the film).

    Fixed geometry (fractions of the side): `corners` = the four CORNER x CORNER squares (where text markers sit);
    `border` = the rest of the outer BORDER band; `lower` = the bottom LOWER of the rows inside the band (abdomen,
    below the diaphragm in a typical framing); `other` = everything else (mediastinum, heart, shoulders, soft tissue).
    `lungs`: the given lung mask (any size, resized to the film; a human mask or the lung model's, see core.lungs),
    which takes its pixels from every other region; without one, `lung_fields` of what the fixed regions leave.
    Returns (masks, how the lungs were found: `lungs_source`, or 'heuristic', 'mixed' or 'boxes').
    """
    grey = np.asarray(grey, np.uint8)
    height, width = grey.shape
    cy, cx = max(1, int(round(CORNER * height))), max(1, int(round(CORNER * width)))
    by, bx = max(1, int(round(BORDER * height))), max(1, int(round(BORDER * width)))
    corners = np.zeros((height, width), bool)
    corners[:cy, :cx] = corners[:cy, -cx:] = corners[-cy:, :cx] = corners[-cy:, -cx:] = True
    band = np.zeros((height, width), bool)
    band[:by], band[-by:], band[:, :bx], band[:, -bx:] = True, True, True, True
    border = band & ~corners
    lower = np.zeros((height, width), bool)
    lower[int(round((1 - LOWER) * height)):] = True
    lower &= ~band & ~corners
    rest = ~(corners | border | lower)
    if lungs is not None:
        from core.lungs.geometry import resize_mask

        lungs, method = resize_mask(lungs, (width, height)), lungs_source
        corners, border, lower = corners & ~lungs, border & ~lungs, lower & ~lungs
    else:
        lungs, method = lung_fields(grey, allowed=rest)
    other = rest & ~lungs
    return {"lungs": lungs, "other": other, "lower": lower, "border": border, "corners": corners}, method


def region_mass(heatmap: np.ndarray, regions: dict[str, np.ndarray]) -> dict[str, float] | None:
    """Share of a non-negative heatmap's total (H, W) in each region (sums to 1), or None when the map is all zero."""
    heatmap = np.clip(np.asarray(heatmap, np.float64), 0, None)
    total = heatmap.sum()
    if total <= 0:
        return None
    return {name: float(heatmap[mask].sum() / total) for name, mask in regions.items()}


def gradcam_mass(heatmaps: np.ndarray, films: np.ndarray, lungs: Sequence[np.ndarray] | None = None,
                 lung_sources: Sequence[str] | None = None) -> dict[str, Any]:
    """Mean Grad-CAM mass per region over films (N, H, W) with their heatmaps (N, H, W), and each region's mean area.

    `lungs` (one mask per film, `lung_sources` naming where each came from) replaces the Otsu heuristic.

    Films whose heatmap is all zero (no evidence for the target) are counted in `empty` and left out of the means.
    `border_reliant` is True when the mean mass in border band + corners is >= BORDER_RELIANT_MASS.
    """
    masses, areas, methods, empty = [], [], [], 0
    lungs = [None] * len(films) if lungs is None else list(lungs)
    sources = ["lung mask"] * len(films) if lung_sources is None else list(lung_sources)
    for heatmap, film, lung, source in zip(heatmaps, films, lungs, sources):
        regions, method = image_regions(film, lungs=lung, lungs_source=source)
        methods.append(method)
        areas.append({name: float(mask.mean()) for name, mask in regions.items()})
        mass = region_mass(heatmap, regions)
        if mass is None:
            empty += 1
        else:
            masses.append(mass)
    mean_mass = {name: float(np.mean([m[name] for m in masses])) if masses else None for name in REGIONS}
    edges = (mean_mass["border"] or 0.0) + (mean_mass["corners"] or 0.0) if masses else None
    return {
        "n": int(len(films)),
        "empty": int(empty),
        "mass": mean_mass,
        "area": {name: float(np.mean([a[name] for a in areas])) for name in REGIONS} if areas else {},
        "lungs_found": {kind: float(np.mean([m == kind for m in methods])) for kind in sorted(set(methods))} if methods else {},
        "edge_mass": edges,
        "border_reliant": bool(edges is not None and edges >= BORDER_RELIANT_MASS),
    }


# --------------------------------------------------------------------------------------------- film statistics


def _body_box(grey: np.ndarray) -> tuple[float, float, float, float, float]:
    """(body area share, box top, box bottom, box left, box right) as fractions of the side, from an Otsu body mask."""
    import cv2
    from scipy import ndimage

    level, bright = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    body = ndimage.binary_fill_holes(ndimage.binary_opening(bright.astype(bool), iterations=2))
    labels, count = ndimage.label(body)
    if count == 0:
        return 0.0, 0.0, 1.0, 0.0, 1.0
    sizes = ndimage.sum(body, labels, range(1, count + 1))
    largest = labels == (int(np.argmax(sizes)) + 1)
    rows, cols = np.nonzero(largest)
    height, width = grey.shape
    return (float(largest.mean()), rows.min() / height, (rows.max() + 1) / height, cols.min() / width, (cols.max() + 1) / width)


STATISTIC_WORDS = {
    "mean": "mean grey level", "std": "grey-level spread (std)", "entropy": "grey-level entropy",
    "dark_share": "share of near-black pixels", "bright_share": "share of near-white pixels",
    "border_mean": "brightness of the border band", "centre_mean": "brightness of the centre",
    "border_to_centre": "border / centre brightness", "top_mean": "brightness of the top band",
    "bottom_mean": "brightness of the bottom band (abdomen)", "body_share": "body area share",
    "box_top": "top of the body's bounding box", "box_bottom": "bottom of the body's bounding box",
    "box_left": "left of the body's bounding box", "box_right": "right of the body's bounding box",
    "box_area": "framing (body bounding-box area share)", "edge_density": "edge density",
    "sharpness": "sharpness (Laplacian variance)",
}


def film_statistics(grey: np.ndarray) -> dict[str, float]:
    """Simple statistics of one grey uint8 film (H, W), computed at STATISTICS_SIDE px; grey levels as fractions of 255.

    Intensity (mean, std, percentiles p01-p99, entropy in bits, near-black/near-white shares), layout (brightness of
    the border band, centre, top and bottom bands), framing (body mask = Otsu threshold + opening + hole filling,
    largest component: its area share and bounding box), sharpness (edge density = share of Sobel magnitude > 0.25,
    variance of the Laplacian) and the 4x4 thumbnail pixels (`thumb_r{row}c{col}`).
    """
    import cv2

    grey = cv2.resize(np.asarray(grey, np.uint8), (STATISTICS_SIDE, STATISTICS_SIDE), interpolation=cv2.INTER_AREA)
    x = grey.astype(np.float32) / 255.0
    side = STATISTICS_SIDE
    band = int(round(BORDER * side))
    inner = np.zeros_like(x, bool)
    inner[band:-band, band:-band] = True
    quarter = side // 4
    histogram = np.bincount(grey.ravel(), minlength=256) / grey.size
    nonzero = histogram[histogram > 0]
    gx, gy = cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3)
    body_share, top, bottom, left, right = _body_box(grey)
    stats = {
        "mean": float(x.mean()), "std": float(x.std()),
        **{f"p{q:02d}": float(v) for q, v in zip((1, 5, 25, 50, 75, 95, 99), np.percentile(x, (1, 5, 25, 50, 75, 95, 99)))},
        "entropy": float(-(nonzero * np.log2(nonzero)).sum()),
        "dark_share": float((x < 0.05).mean()), "bright_share": float((x > 0.95).mean()),
        "border_mean": float(x[~inner].mean()), "centre_mean": float(x[quarter:-quarter, quarter:-quarter].mean()),
        "top_mean": float(x[:band].mean()), "bottom_mean": float(x[-2 * band:].mean()),
        "body_share": body_share, "box_top": top, "box_bottom": bottom, "box_left": left, "box_right": right,
        "box_area": float((bottom - top) * (right - left)),
        "edge_density": float((np.hypot(gx, gy) > 0.25).mean()),
        "sharpness": float(cv2.Laplacian(x, cv2.CV_32F).var()),
    }
    stats["border_to_centre"] = stats["border_mean"] / max(stats["centre_mean"], 1e-6)
    thumb = cv2.resize(x, (4, 4), interpolation=cv2.INTER_AREA)
    stats.update({f"thumb_r{r}c{c}": float(thumb[r, c]) for r in range(4) for c in range(4)})
    return stats


def statistic_words(name: str) -> str:
    """Plain words for a `film_statistics` key."""
    if name.startswith("thumb_r"):
        row, col = int(name[7]), int(name[9])
        rows, cols = ("top", "upper-middle", "lower-middle", "bottom"), ("left", "centre-left", "centre-right", "right")
        return f"brightness of the {rows[row]} {cols[col]} sixteenth of the film (4x4 grid, as displayed)"
    if len(name) == 3 and name.startswith("p") and name[1:].isdigit():
        return f"{int(name[1:])}th grey-level percentile"
    return STATISTIC_WORDS.get(name, name)
