"""Audit of what a model relies on (issue 14, item 1), and why the official test films look different.

Two levels, each a command line:

    python -m core.audit data  [--data-root DIR] [--force]             # dataset: trivial baselines + domain classifier
    python -m core.audit model models/NAME [--write-card] [--splits val test]   # one model: perturbations + Grad-CAM mass

**Dataset level** (`dataset_audit`, cached as JSON in `config.AUDIT_DIR`, keyed by the dataset fingerprint):
- *Trivial baselines*: a logistic regression on the film shrunk to 4x4, 8x8 and 16x16 grey pixels (area averaging),
  fitted on the train split, ROC AUC on validation and on test; also after histogram equalisation, on the central
  half only and on the edges only (`THUMBNAIL_VARIANTS`). A high validation AUC from 16 numbers says the
  task inside the training distribution can be solved by coarse layout and brightness alone.
- *Domain classifier*: gradient boosting on simple per-film statistics (`film_statistics`) trained to tell
  validation films from test films (all films, and NORMAL films only), its cross-validated ROC AUC (folds grouped
  by patient) and its top statistics by permutation importance, each with its medians per split and class and
  whether the test normals move towards what pneumonia looks like in validation.

**Model level** (`model_audit`): a balanced, seeded sample of validation films (optionally test films, labelled as
such) at the model's input size as grey uint8; every perturbation of `core.imaging.perturbations.PERTURBATIONS` is applied
and the films rescored: mean |change in P(pneumonia)|, ROC AUC, sensitivity and specificity at the card threshold,
and a pass/fail of the robustness goal (sensitivity and specificity move by <= 0.05 on validation). Grad-CAM
(`core.explain.gradcam_for`) mass is split over image regions found by `image_regions` (documented there).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import config
from core.imaging import perturbations

logger = logging.getLogger(__name__)

AUDIT_VERSION = 2
THUMBNAIL_SIZES = (4, 8, 16)
# What the thumbnails are made of: the whole film, the film after histogram equalisation (removes global brightness
# and contrast), the central half of each side (mostly lungs and mediastinum, no edges), the film with the central
# half blacked out (edges only).
THUMBNAIL_VARIANTS = ("film", "equalised", "centre", "edges")
STATISTICS_SIDE = 128          # films are resized to this side before `film_statistics`
PER_CLASS = 200                # films per class in a model audit sample (capped by the smaller class)
SAMPLE_SEED = 0
BATCH_SIZE = 32
DOMAIN_FOLDS = 5
TOP_FEATURES = 8
# Image regions (fractions of the side), see image_regions.
CORNER = 0.15
BORDER = 0.08
LOWER = 0.25
BORDER_RELIANT_MASS = 0.5      # Grad-CAM mass in border band + corners at or above this: the model reads the edges
REGIONS = ("lungs", "other", "lower", "border", "corners")
REGION_WORDS = {
    "lungs": "lung fields",
    "other": "rest of the chest (mediastinum, heart, shoulders)",
    "lower": "lower band (abdomen)",
    "border": "border band",
    "corners": "corners (text markers)",
}


# --------------------------------------------------------------------------------------------- films


def to_grey_uint8(decoded: Any, height: int, width: int) -> np.ndarray:
    """A decoded X-ray (or grey (H0, W0) in [0, 1]) resized like the model input (`core.predict.prepare_input`), as uint8 (height, width)."""
    from core.predict import prepare_input

    return np.round(prepare_input(decoded, height, width, 1)[:, :, 0]).astype(np.uint8)


def to_model_input(grey: np.ndarray, channels: int) -> np.ndarray:
    """uint8 films (N, H, W) as a model batch float32 (N, H, W, channels) in [0, 255] (grey repeated for RGB models)."""
    grey = np.asarray(grey)
    if grey.ndim != 3:
        raise ValueError(f"Expected films of shape (N, H, W), got {grey.shape}.")
    return np.repeat(grey.astype(np.float32)[..., None], channels, axis=3)


def load_films(paths: Sequence[str | os.PathLike], height: int, width: int) -> np.ndarray:
    """Decode X-ray files into uint8 films (N, height, width); an unreadable file raises InvalidImageError naming it."""
    from core.imaging import decode_xray

    out = np.zeros((len(paths), height, width), np.uint8)
    for i, path in enumerate(paths):
        out[i] = to_grey_uint8(decode_xray(path), height, width)
    return out


def balanced_sample(index: pd.DataFrame, split: str, *, per_class: int = PER_CLASS, seed: int = SAMPLE_SEED) -> pd.DataFrame:
    """`per_class` films of each class from `split` (capped by the smaller class, so balanced), seeded, sorted by relpath."""
    rows = index[index["split"] == split]
    if rows.empty:
        raise ValueError(f"The dataset has no {split!r} films; audit on one of {sorted(set(index['split']))}.")
    counts = rows["label"].value_counts()
    if len(counts) < 2:
        raise ValueError(f"The {split!r} split has films of one class only; the audit needs both NORMAL and PNEUMONIA.")
    n = int(min(per_class, counts.min()))
    rng = np.random.default_rng(seed)
    parts = []
    for label in (0, 1):
        group = rows[rows["label"] == label].sort_values("relpath")
        parts.append(group.iloc[np.sort(rng.choice(len(group), size=n, replace=False))])
    return pd.concat(parts).sort_values("relpath").reset_index(drop=True)


# --------------------------------------------------------------------------------------------- metrics


def threshold_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """ROC AUC, sensitivity and specificity at `threshold` (score >= threshold is PNEUMONIA) for labels/scores (N,)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    called = s >= threshold
    return {
        "roc_auc": float(roc_auc_score(y, s)),
        "sensitivity": float(called[y == 1].mean()),
        "specificity": float((~called[y == 0]).mean()),
    }


def perturbation_effect(y_true: np.ndarray, reference: np.ndarray, perturbed: np.ndarray, threshold: float) -> dict[str, float]:
    """How a perturbation moved the scores of the same films: mean |delta p|, flipped decisions, metrics and their changes.

    `reference` and `perturbed` are P(pneumonia) (N,) of the same films before and after; delta = after - before.
    """
    reference = np.asarray(reference, np.float64)
    perturbed = np.asarray(perturbed, np.float64)
    if reference.shape != perturbed.shape:
        raise ValueError(f"reference {reference.shape} and perturbed {perturbed.shape} scores must be of the same films.")
    before = threshold_metrics(y_true, reference, threshold)
    after = threshold_metrics(y_true, perturbed, threshold)
    return {
        "mean_abs_delta_p": float(np.mean(np.abs(perturbed - reference))),
        "mean_delta_p": float(np.mean(perturbed - reference)),
        "flipped": float(np.mean((perturbed >= threshold) != (reference >= threshold))),
        **after,
        "delta_roc_auc": after["roc_auc"] - before["roc_auc"],
        "delta_sensitivity": after["sensitivity"] - before["sensitivity"],
        "delta_specificity": after["specificity"] - before["specificity"],
    }


# --------------------------------------------------------------------------------------------- regions


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


def image_regions(grey: np.ndarray) -> tuple[dict[str, np.ndarray], str]:
    """A partition of a grey uint8 film (H, W) into REGIONS (bool masks that do not overlap and cover the film).

    Fixed geometry (fractions of the side): `corners` = the four CORNER x CORNER squares (where text markers sit);
    `border` = the rest of the outer BORDER band; `lower` = the bottom LOWER of the rows inside the band (abdomen,
    below the diaphragm in a typical framing); `lungs` = `lung_fields` of what is left; `other` = everything else
    (mediastinum, heart, shoulders, soft tissue). Returns (masks, how the lungs were found: 'heuristic' or 'boxes').
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


def gradcam_mass(heatmaps: np.ndarray, films: np.ndarray) -> dict[str, Any]:
    """Mean Grad-CAM mass per region over films (N, H, W) with their heatmaps (N, H, W), and each region's mean area.

    Films whose heatmap is all zero (no evidence for the target) are counted in `empty` and left out of the means.
    `border_reliant` is True when the mean mass in border band + corners is >= BORDER_RELIANT_MASS.
    """
    masses, areas, methods, empty = [], [], [], 0
    for heatmap, film in zip(heatmaps, films):
        regions, method = image_regions(film)
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
        "lungs_found": {kind: float(np.mean([m == kind for m in methods])) for kind in ("heuristic", "mixed", "boxes")} if methods else {},
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


# --------------------------------------------------------------------------------------------- dataset audit


def thumbnail_variant(grey: np.ndarray, variant: str) -> np.ndarray:
    """A grey uint8 film (H, W) prepared for a THUMBNAIL_VARIANTS baseline (same dtype; 'centre' is smaller)."""
    import cv2

    height, width = grey.shape
    top, left = height // 4, width // 4
    if variant == "film":
        return grey
    if variant == "equalised":
        return cv2.equalizeHist(grey)
    if variant == "centre":
        return grey[top: height - top, left: width - left]
    if variant == "edges":
        out = grey.copy()
        out[top: height - top, left: width - left] = 0
        return out
    raise ValueError(f"Unknown thumbnail variant {variant!r}; choose from {THUMBNAIL_VARIANTS}.")


def thumbnail_baselines(thumbnails: dict[int, np.ndarray], labels: np.ndarray, splits: np.ndarray, *,
                        variant: str = "film") -> list[dict[str, Any]]:
    """Logistic regression (standardised pixels, L2, C=1) on each thumbnail size, fitted on 'train', ROC AUC on 'val' and 'test'.

    `thumbnails[size]` is float (N, size, size) in [0, 1]; `labels` (N,) 0/1; `splits` (N,) of 'train'/'val'/'test'.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels, splits = np.asarray(labels), np.asarray(splits)
    if not (splits == "train").any():
        raise ValueError("The baselines need films in the 'train' split to fit on.")
    rows = []
    for size, pixels in sorted(thumbnails.items()):
        features = np.asarray(pixels, np.float64).reshape(len(pixels), -1)
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
        model.fit(features[splits == "train"], labels[splits == "train"])
        row: dict[str, Any] = {"variant": variant, "size": int(size), "features": int(features.shape[1])}
        for split in ("val", "test"):
            chosen = splits == split
            if chosen.any() and len(set(labels[chosen])) == 2:
                row[f"{split}_roc_auc"] = float(roc_auc_score(labels[chosen], model.predict_proba(features[chosen])[:, 1]))
                row[f"{split}_n"] = int(chosen.sum())
        rows.append(row)
    return rows


def domain_classifier(features: pd.DataFrame, is_test: np.ndarray, groups: np.ndarray, *, folds: int = DOMAIN_FOLDS,
                      seed: int = SAMPLE_SEED, repeats: int = 5) -> dict[str, Any]:
    """How well simple statistics tell test films (is_test = 1) from validation films (0).

    Gradient boosting (scikit-learn HistGradientBoostingClassifier), `folds`-fold cross-validation stratified and
    grouped by `groups` (a patient never in two folds). Returns the out-of-fold ROC AUC and permutation importance
    (drop in held-out ROC AUC when one statistic is shuffled, mean over folds x `repeats`), highest first.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    from threadpoolctl import threadpool_limits

    X = features.to_numpy(np.float64)
    y = np.asarray(is_test).astype(int)
    out_of_fold = np.zeros(len(y))
    importance = np.zeros(X.shape[1])
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    # One OpenMP thread: on a busy machine the boosting's thread pool otherwise spins and runs 100x slower.
    with threadpool_limits(limits=1, user_api="openmp"):
        for fit_rows, held_rows in splitter.split(X, y, groups):
            model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed)
            model.fit(X[fit_rows], y[fit_rows])
            out_of_fold[held_rows] = model.predict_proba(X[held_rows])[:, 1]
            result = permutation_importance(model, X[held_rows], y[held_rows], scoring="roc_auc", n_repeats=repeats, random_state=seed)
            importance += result.importances_mean / folds
    order = np.argsort(-importance)
    return {
        "model": "HistGradientBoostingClassifier(max_iter=200)",
        "folds": int(folds), "n_validation": int((y == 0).sum()), "n_test": int((y == 1).sum()),
        "roc_auc": float(roc_auc_score(y, out_of_fold)),
        "importance": [{"statistic": str(features.columns[i]), "auc_drop": float(importance[i])} for i in order],
    }


def _auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """ROC AUC of a single statistic, positives vs negatives (0.5 = no separation, > 0.5 = positives higher)."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(negatives)), np.ones(len(positives))]
    return float(roc_auc_score(y, np.r_[negatives, positives]))


def statistic_profile(features: pd.DataFrame, labels: np.ndarray, splits: np.ndarray, names: Sequence[str]) -> list[dict[str, Any]]:
    """For each statistic: medians per split x class, AUC of val NORMAL vs val PNEUMONIA (what pneumonia looks like in
    validation), AUC of val NORMAL vs test NORMAL (how the test normals moved), and whether they moved towards pneumonia."""
    labels, splits = np.asarray(labels), np.asarray(splits)
    groups = {f"{split}_{cls.lower()}": (splits == split) & (labels == label)
              for split in ("val", "test") for label, cls in enumerate(config.CLASS_NAMES)}
    rows = []
    for name in names:
        values = features[name].to_numpy(np.float64)
        row: dict[str, Any] = {"statistic": name, "words": statistic_words(name)}
        row.update({f"median_{key}": float(np.median(values[mask])) for key, mask in groups.items() if mask.any()})
        if groups["val_normal"].any() and groups["val_pneumonia"].any():
            row["auc_pneumonia_vs_normal_val"] = _auc(values[groups["val_normal"]], values[groups["val_pneumonia"]])
        if groups["val_normal"].any() and groups["test_normal"].any():
            row["auc_test_normal_vs_val_normal"] = _auc(values[groups["val_normal"]], values[groups["test_normal"]])
        if "auc_pneumonia_vs_normal_val" in row and "auc_test_normal_vs_val_normal" in row:
            row["test_normals_move_towards_pneumonia"] = bool(
                (row["auc_pneumonia_vs_normal_val"] - 0.5) * (row["auc_test_normal_vs_val_normal"] - 0.5) > 0)
        rows.append(row)
    return rows


def score_correlations(features: pd.DataFrame, index: pd.DataFrame, names: Sequence[str],
                       models_dir: str | os.PathLike | None = None) -> dict[str, dict[str, float]]:
    """Spearman correlation, on the test NORMAL films, between each statistic and each model's stored score
    (predictions.csv; no model is run): a positive value means films higher on the statistic score more 'pneumonia'."""
    from scipy.stats import spearmanr

    from core.models import registry

    normals = (index["split"] == "test").to_numpy() & (index["label"] == 0).to_numpy()
    relpaths = index["relpath"].to_numpy()
    out: dict[str, dict[str, float]] = {}
    for entry in registry.list_models(models_dir):
        if not entry.available:
            continue
        try:
            scores = registry.load_predictions(entry, split="test").set_index("path")["score"]
        except (OSError, ValueError, KeyError) as error:
            logger.warning("No stored test scores for %s (%s)", entry.name, error)
            continue
        matched = pd.Series(relpaths[normals]).map(scores)
        if matched.notna().sum() < 10:
            continue
        keep = matched.notna().to_numpy()
        out[entry.name] = {name: float(spearmanr(features[name].to_numpy()[normals][keep], matched.to_numpy()[keep]).statistic)
                           for name in names}
    return out


def audit_path(fingerprint: str) -> Path:
    """Where the dataset audit of the dataset with this fingerprint is cached (config.AUDIT_DIR)."""
    return Path(config.AUDIT_DIR) / f"dataset-{fingerprint}.json"


def write_json_atomic(path: Path, payload: dict) -> Path:
    """Write JSON to a temporary file in the same folder, then os.replace it over `path` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(payload, file, indent=2, allow_nan=False)
            file.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def compute_dataset_audit(index: pd.DataFrame, *, models_dir: str | os.PathLike | None = None, seed: int = SAMPLE_SEED,
                          folds: int = DOMAIN_FOLDS, repeats: int = 5) -> dict[str, Any]:
    """The dataset audit (baselines, domain classifiers, statistic profiles) of an index with its validation split;
    `folds` and `repeats` are the domain classifier's (see `domain_classifier`)."""
    import cv2

    from core.imaging import decode_xray

    started = time.perf_counter()
    index = index.reset_index(drop=True)
    thumbs = {variant: {size: np.zeros((len(index), size, size), np.float32) for size in THUMBNAIL_SIZES}
              for variant in THUMBNAIL_VARIANTS}
    rows = []
    for i, path in enumerate(index["path"]):
        grey = np.round(np.clip(decode_xray(path).pixels, 0.0, 1.0) * 255).astype(np.uint8)
        for variant in THUMBNAIL_VARIANTS:
            prepared = thumbnail_variant(grey, variant).astype(np.float32) / 255.0
            for size in THUMBNAIL_SIZES:
                thumbs[variant][size][i] = cv2.resize(prepared, (size, size), interpolation=cv2.INTER_AREA)
        rows.append(film_statistics(grey))
        if (i + 1) % 1000 == 0:
            logger.info("Read %d / %d films", i + 1, len(index))
    features = pd.DataFrame(rows)
    labels, splits = index["label"].to_numpy(), index["split"].to_numpy()
    result: dict[str, Any] = {
        "version": AUDIT_VERSION,
        "computed": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "images_per_split": {str(k): int(v) for k, v in index["split"].value_counts().items()},
        "baselines": [row for variant in THUMBNAIL_VARIANTS
                      for row in thumbnail_baselines(thumbs[variant], labels, splits, variant=variant)],
        "domain": {},
    }
    held = np.isin(splits, ["val", "test"])
    groups = (index["split"] + "/" + index["patient"].astype(str)).to_numpy()
    for subset, mask in (("all", held), ("normal", held & (labels == 0))):
        if len(set(splits[mask])) < 2:
            continue
        found = domain_classifier(features[mask].reset_index(drop=True), splits[mask] == "test", groups[mask], seed=seed, folds=folds, repeats=repeats)
        top = [row["statistic"] for row in found["importance"][:TOP_FEATURES]]
        found["profile"] = statistic_profile(features, labels, splits, top)
        found["importance"] = found["importance"][:TOP_FEATURES]
        result["domain"][subset] = found
    names = sorted({row["statistic"] for found in result["domain"].values() for row in found["profile"]})
    result["score_correlations"] = score_correlations(features, index, names, models_dir) if names else {}
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def dataset_audit(root: str | os.PathLike | None = None, *, force: bool = False, models_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The dataset audit of `root` (default config.data_root()), read from its cached JSON unless missing or `force`."""
    from core import data

    root_path = Path(root if root is not None else config.data_root()).expanduser()
    fingerprint = data.dataset_fingerprint(root_path)
    path = audit_path(fingerprint)
    if not force:
        cached = load_dataset_audit(root_path)
        if cached is not None:
            return cached
    result = compute_dataset_audit(data.load_index(root_path), models_dir=models_dir)
    result["fingerprint"] = fingerprint
    write_json_atomic(path, result)
    logger.info("Dataset audit written to %s (%.0f s)", path, result["seconds"])
    return result


def load_dataset_audit(root: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The cached dataset audit of `root` (default config.data_root()), or None when it was never computed
    (or the folder cannot be read)."""
    from core import data

    root_path = Path(root if root is not None else config.data_root()).expanduser()
    try:
        path = audit_path(data.dataset_fingerprint(root_path))
    except (OSError, ValueError) as error:
        logger.info("No dataset audit for %s (%s)", root_path, error)
        return None
    if not path.is_file():
        return None
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        logger.warning("Ignoring an unreadable dataset audit %s (%s)", path, error)
        return None
    return found if found.get("version") == AUDIT_VERSION else None


# --------------------------------------------------------------------------------------------- model audit


def score_films(scorer: Any, films: np.ndarray, *, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """P(pneumonia) (N,) of uint8 films (N, H, W) with a scorer (`predict_batch` and `channels`, a core.predict.Scorer)."""
    if len(films) == 0:
        return np.zeros((0,), np.float32)
    return np.concatenate([scorer.predict_batch(to_model_input(films[i: i + batch_size], scorer.channels))
                           for i in range(0, len(films), batch_size)])


def perturbation_table(scorer: Any, films: np.ndarray, labels: np.ndarray, threshold: float, *,
                       chosen: Sequence[perturbations.Perturbation] = perturbations.PERTURBATIONS,
                       batch_size: int = BATCH_SIZE, reference: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Score the films (N, H, W) uint8 as given and under each perturbation; one row per perturbation.

    `scorer` has `predict_batch((N, H, W, C) float32 [0, 255]) -> (N,)` and `channels` (a core.predict.Scorer).
    Each row: name, description, goal, the metrics of `perturbation_effect` and `passed` (for goal perturbations:
    |delta sensitivity| and |delta specificity| <= ROBUSTNESS_TOLERANCE). `reference`: the films' scores as given,
    when already computed (`score_films`).
    """
    reference = score_films(scorer, films, batch_size=batch_size) if reference is None else np.asarray(reference)
    rows = []
    for perturbation in chosen:
        moved = np.stack([perturbation.apply(film) for film in films])
        effect = perturbation_effect(labels, reference, score_films(scorer, moved, batch_size=batch_size), threshold)
        passed = None
        if perturbation.goal:
            passed = bool(abs(effect["delta_sensitivity"]) <= perturbations.ROBUSTNESS_TOLERANCE + 1e-12
                          and abs(effect["delta_specificity"]) <= perturbations.ROBUSTNESS_TOLERANCE + 1e-12)
        rows.append({"name": perturbation.name, "description": perturbation.description, "goal": perturbation.goal,
                     **effect, "passed": passed})
        logger.info("  %-15s mean |delta p| %.3f, delta sensitivity %+.3f, delta specificity %+.3f", perturbation.name,
                    effect["mean_abs_delta_p"], effect["delta_sensitivity"], effect["delta_specificity"])
    return rows


def model_gradcam_mass(model: Any, films: np.ndarray, labels: np.ndarray, scores: np.ndarray, threshold: float,
                       *, batch_size: int = 16) -> dict[str, Any] | None:
    """Grad-CAM (target: pneumonia evidence) mass per region for all films, per class and for false positives;
    None when the model has no convolution (no Grad-CAM)."""
    from core import explain

    if not explain.conv_layers(model) and not explain.members(model):
        return None
    gradcam = explain.gradcam_for(model)
    channels = int(model.inputs[0].shape[-1])
    maps = np.concatenate([gradcam.heatmaps(to_model_input(films[i: i + batch_size], channels))
                           for i in range(0, len(films), batch_size)])
    labels, scores = np.asarray(labels), np.asarray(scores)
    groups = {"all": np.ones(len(films), bool), "normal": labels == 0, "pneumonia": labels == 1,
              "false_positive": (labels == 0) & (scores >= threshold)}
    result = {"layer": getattr(gradcam, "layer_name", ""), "target": "pneumonia evidence"}
    result.update({group: gradcam_mass(maps[mask], films[mask]) for group, mask in groups.items() if mask.any()})
    return result


def edge_reliance(table: Sequence[dict[str, Any]], gradcam: dict[str, Any] | None) -> dict[str, Any]:
    """Does the model read the edges of the film? Two signs: blacking out the outer band (`black_frame_6`) moves
    sensitivity or specificity beyond ROBUSTNESS_TOLERANCE, or the Grad-CAM mass in border band + corners is
    >= BORDER_RELIANT_MASS. `reliant` is True when either says so."""
    frame = next((row for row in table if row["name"] == "black_frame_6"), None)
    by_frame = None if frame is None else bool(max(abs(frame["delta_sensitivity"]), abs(frame["delta_specificity"]))
                                                 > perturbations.ROBUSTNESS_TOLERANCE + 1e-12)
    cam = (gradcam or {}).get("all")
    by_gradcam = None if not cam or cam["edge_mass"] is None else bool(cam["border_reliant"])
    return {"by_black_frame": by_frame, "black_frame_mean_abs_delta_p": None if frame is None else frame["mean_abs_delta_p"],
            "by_gradcam": by_gradcam, "gradcam_edge_mass": None if not cam else cam["edge_mass"],
            "reliant": bool(by_frame or by_gradcam)}


def model_audit(model_dir: str | os.PathLike, data_root: str | os.PathLike | None = None, *, splits: Sequence[str] = ("val",),
                per_class: int = PER_CLASS, seed: int = SAMPLE_SEED, gradcam: bool = True) -> dict[str, Any]:
    """Audit models/<name>/: perturbation table, robustness pass/fail (validation) and Grad-CAM mass per split.

    Films: `balanced_sample` of each split in `splits` from the dataset at `data_root` (default config.data_root()).
    """
    from core import data, predict

    started = time.perf_counter()
    scorer = predict.load_scorer(model_dir)
    threshold = float(scorer.threshold)
    index = data.load_index(data_root)
    result: dict[str, Any] = {
        "version": AUDIT_VERSION,
        "computed": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "threshold": threshold,
        "tolerance": perturbations.ROBUSTNESS_TOLERANCE,
        "goal": "sensitivity and specificity at the card threshold move by at most "
                f"{perturbations.ROBUSTNESS_TOLERANCE:.2f} under each goal perturbation, on validation films",
        "perturbations": {p.name: p.description for p in perturbations.PERTURBATIONS},
        "splits": {},
    }
    for split in splits:
        sample = balanced_sample(index, split, per_class=per_class, seed=seed)
        films = load_films(sample["path"].tolist(), scorer.height, scorer.width)
        labels = sample["label"].to_numpy()
        reference = score_films(scorer, films)
        table = perturbation_table(scorer, films, labels, threshold, reference=reference)
        entry: dict[str, Any] = {"n": int(len(sample)), "per_class": int(len(sample) // 2), "seed": int(seed), "table": table}
        goal_rows = [row for row in table if row["goal"]]
        entry["robust"] = bool(all(row["passed"] for row in goal_rows))
        entry["failing"] = [row["name"] for row in goal_rows if not row["passed"]]
        if gradcam:
            entry["gradcam"] = model_gradcam_mass(scorer.model, films, labels, reference, threshold)
        entry["edges"] = edge_reliance(table, entry.get("gradcam"))
        result["splits"][split] = entry
        logger.info("%s on %s: %d films, robust=%s", scorer.name, split, len(sample), entry["robust"])
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


# --------------------------------------------------------------------------------------------- cards


AUDIT_HEADING = "## Audit: what the model relies on"


def audit_markdown(audit: dict[str, Any]) -> str:
    """The card.md section for a model audit (heading AUDIT_HEADING, sub-sections '###')."""
    lines = [AUDIT_HEADING, "",
             f"Computed {audit.get('computed', '')} with `python -m core.audit model`. Each film is scored as given and after "
             f"each acquisition change; the threshold is the card's ({audit['threshold']:.4f}). Goal: {audit['goal']}.", ""]
    for split, entry in audit["splits"].items():
        name = "validation" if split == "val" else "test (official; for information, nothing is chosen on it)" if split == "test" else split
        verdict = "**passes**" if entry["robust"] else f"**fails** ({', '.join(entry['failing'])})"
        lines += [f"### Acquisition changes on {entry['n']} {name} films ({entry['per_class']} per class, seed {entry['seed']})", "",
                  f"Robustness goal {verdict} on this split." if split == "val" else
                  f"Under the same rule this split would {'pass' if entry['robust'] else 'fail'} ({', '.join(entry['failing']) or 'none'}).", "",
                  "| change | mean abs change in P | decisions flipped | ROC AUC | sensitivity (change) | specificity (change) | goal |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for row in entry["table"]:
            goal = "" if row["passed"] is None else ("pass" if row["passed"] else "FAIL")
            lines.append(f"| {row['name']} | {row['mean_abs_delta_p']:.3f} | {row['flipped']:.1%} | {row['roc_auc']:.3f} | "
                         f"{row['sensitivity']:.3f} ({row['delta_sensitivity']:+.3f}) | {row['specificity']:.3f} "
                         f"({row['delta_specificity']:+.3f}) | {goal} |")
        edges = entry.get("edges")
        if edges:
            signs = [f"blacking out the outer 6 % band {'moves' if edges['by_black_frame'] else 'does not move'} its decisions "
                     "beyond the tolerance"] if edges["by_black_frame"] is not None else []
            if edges["by_gradcam"] is not None:
                signs.append(f"{edges['gradcam_edge_mass']:.0%} of its Grad-CAM mass is on the border band and corners "
                             f"(flagged at {BORDER_RELIANT_MASS:.0%})")
            lines += ["", f"**Reads the edges of the film: {'yes' if edges['reliant'] else 'no'}** ({'; '.join(signs)})."]
        cam = entry.get("gradcam")
        if cam:
            lines += ["", f"Grad-CAM (layer `{cam['layer']}`, {cam['target']}): share of the heatmap mass per region "
                          "(area = share of the film).", "",
                      "| films | " + " | ".join(REGION_WORDS[r] for r in REGIONS) + " | edges reliant |",
                      "| --- | " + " | ".join("---" for _ in REGIONS) + " | --- |"]
            for group in ("all", "normal", "pneumonia", "false_positive"):
                part = cam.get(group)
                if not part or part["mass"]["lungs"] is None:
                    continue
                cells = " | ".join(f"{part['mass'][r]:.2f}" for r in REGIONS)
                lines.append(f"| {group.replace('_', ' ')} ({part['n'] - part['empty']}) | {cells} | {'yes' if part['border_reliant'] else 'no'} |")
            area = cam["all"]["area"]
            lines.append("| area | " + " | ".join(f"{area[r]:.2f}" for r in REGIONS) + " | |")
            found = cam["all"]["lungs_found"]
            lines += ["", f"Lung fields: Otsu heuristic per half (`core.audit.lung_fields`) found both lungs on "
                          f"{found['heuristic']:.0%} of films, one on {found['mixed']:.0%}; fixed boxes stand in for a lung it missed."]
        elif "gradcam" in entry:
            lines += ["", "Grad-CAM: not applicable (the model has no convolution)."]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _replace_section(markdown: str, section: str) -> str:
    """`markdown` with its AUDIT_HEADING section (up to the next '## ' heading) replaced by `section`, or appended."""
    lines = markdown.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == AUDIT_HEADING), None)
    if start is None:
        return markdown.rstrip() + "\n\n" + section
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    rest = "\n".join(lines[end:])
    head = "\n".join(lines[:start]).rstrip()
    return head + "\n\n" + section + ("\n" + rest.rstrip() + "\n" if rest.strip() else "")


def write_card_audit(model_dir: str | os.PathLike, audit: dict[str, Any]) -> None:
    """Add (or replace) the `audit` key of card.json and the audit section of card.md, each written atomically."""
    model_dir = Path(model_dir)
    card_path = model_dir / "card.json"
    if not card_path.is_file():
        raise ValueError(f"No card.json in {model_dir}; audit a folder written by train.py.")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["audit"] = audit
    write_json_atomic(card_path, card)
    md_path = model_dir / "card.md"
    markdown = md_path.read_text(encoding="utf-8") if md_path.is_file() else f"# {card.get('name', model_dir.name)}\n"
    handle, tmp = tempfile.mkstemp(prefix=".tmp-card.md-", dir=model_dir)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(_replace_section(markdown, audit_markdown(audit)))
        os.replace(tmp, md_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def robustness_summary(models_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per model in `models_dir` (default config.models_dir()) whose card has an audit: robustness goal on
    validation (pass/fail, failing changes), largest |change| of sensitivity and of specificity under a goal change,
    whether it reads the film's edges, and the Grad-CAM share on the lung fields. Empty when none is audited."""
    from core.models import registry

    rows = []
    for entry in registry.list_models(models_dir):
        found = (entry.card or {}).get("audit") if entry.available else None
        val = (found or {}).get("splits", {}).get("val")
        if not val:
            continue
        goal = [row for row in val["table"] if row["goal"]]
        cam = (val.get("gradcam") or {}).get("all") or {}
        rows.append({
            "model": entry.name,
            "robust (VALIDATION)": "pass" if val["robust"] else "fail",
            "failing changes": ", ".join(val["failing"]),
            "max |change| sensitivity": max((abs(r["delta_sensitivity"]) for r in goal), default=float("nan")),
            "max |change| specificity": max((abs(r["delta_specificity"]) for r in goal), default=float("nan")),
            "reads the edges": None if "edges" not in val else ("yes" if val["edges"]["reliant"] else "no"),
            "Grad-CAM on lung fields": (cam.get("mass") or {}).get("lungs"),
            "films": val["n"],
            "audited": found.get("computed", ""),
        })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------- plain words


def plain_findings(dataset: dict[str, Any] | None, model_name: str | None = None, model: dict[str, Any] | None = None) -> list[str]:
    """Short sentences for people who never saw a ROC curve: the dataset audit, then one model's audit (either may be None)."""
    out = []
    if dataset:
        small = min((row for row in dataset.get("baselines", []) if row.get("variant", "film") == "film"),
                    key=lambda row: row["size"], default=None)
        if small and "val_roc_auc" in small:
            out.append(
                f"A trivial program that sees each X-ray shrunk to just {small['size']}×{small['size']} grey squares "
                f"({small['features']} numbers) already separates pneumonia from normal well on the validation images "
                f"(ROC AUC {small['val_roc_auc']:.2f}; 1.0 is perfect, 0.5 is guessing) but less well on the test images "
                f"({small.get('test_roc_auc', float('nan')):.2f}). Much of the validation task can be solved from the overall "
                "brightness and layout of the film, without looking at the lungs.")
        edges = max((row for row in dataset.get("baselines", []) if row.get("variant") == "edges" and "val_roc_auc" in row),
                    key=lambda row: row["val_roc_auc"], default=None)
        if edges:
            out.append(
                f"Even with the middle of every X-ray blacked out, leaving only its edges and no lungs, the same kind of "
                f"program ({edges['size']}×{edges['size']} squares) reaches ROC AUC {edges['val_roc_auc']:.2f} on the "
                "validation images: the edges of the film (how it was framed and exposed) carry the label too.")
        normal = dataset.get("domain", {}).get("normal")
        if normal:
            moving = [row for row in normal["profile"] if row.get("test_normals_move_towards_pneumonia")]
            words = "; ".join(dict.fromkeys(statistic_words(row["statistic"]) if "statistic" in row else row["words"]
                                            for row in (moving or normal["profile"])[:3]))
            out.append(
                f"The healthy children's test X-rays look measurably different from the healthy validation X-rays: "
                f"a simple classifier tells them apart with ROC AUC {normal['roc_auc']:.2f}. The clearest differences: {words}"
                + (" — and on these the test normals look more like the pneumonia films the models learned from." if moving else "."))
    if model:
        val = model.get("splits", {}).get("val")
        if val:
            rows = {row["name"]: row for row in val["table"]}
            worst = max((row for row in val["table"] if row["goal"]), key=lambda row: abs(row["delta_specificity"]), default=None)
            if worst is not None:
                change = worst["delta_specificity"]
                out.append(
                    f"Changing only how an X-ray is taken moves {model_name or 'the model'}'s decisions: after '{worst['description']}', "
                    f"it {'wrongly flags' if change < 0 else 'flags'} {abs(change) * 100:.0f} {'more' if change < 0 else 'fewer'} of "
                    f"every 100 healthy children (validation images). "
                    + ("Every such change stays within the goal of 5 in 100." if val["robust"] else
                       f"{len(val['failing'])} of {sum(1 for r in rows.values() if r['goal'])} such changes exceed the goal of 5 in 100."))
            changes = [row for row in val["table"] if row["name"] != "identity"]
            worse = sum(row["delta_specificity"] < -0.02 for row in changes)
            better = sum(row["delta_specificity"] > 0.02 for row in changes)
            if changes and worse > len(changes) / 2:
                keeps = min(row["delta_sensitivity"] for row in changes) >= -perturbations.ROBUSTNESS_TOLERANCE
                out.append(f"Of the {len(changes)} changes tried, {worse} make it call more healthy children sick and "
                           f"{better} fewer{', while it keeps finding the sick ones' if keeps else ''}: anything unfamiliar "
                           "about a film pushes it towards 'pneumonia', as happens with the test X-rays.")
            largest = max(val["table"], key=lambda row: abs(row["delta_specificity"]), default=None)
            if largest is not None and worst is not None and largest["name"] != worst["name"] and abs(largest["delta_specificity"]) > 0.05:
                change = largest["delta_specificity"]
                out.append(f"The largest effect of all comes from '{largest['description']}': it "
                           f"{'wrongly flags' if change < 0 else 'flags'} {abs(change) * 100:.0f} {'more' if change < 0 else 'fewer'} "
                           "of every 100 healthy children (validation images).")
            cam = (val.get("gradcam") or {}).get("all")
            if cam and cam["mass"]["lungs"] is not None:
                out.append(
                    f"Where it looks (Grad-CAM): {cam['mass']['lungs']:.0%} of the heatmap falls on the lung fields, "
                    f"{cam['edge_mass']:.0%} on the edges and corners of the film, {cam['mass']['lower']:.0%} on the abdomen.")
    return out


# --------------------------------------------------------------------------------------------- command line


def _print_model(audit: dict[str, Any]) -> None:
    print(audit_markdown(audit))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `data` (dataset audit) or `model MODEL_DIR` (one model's audit)."""
    parser = argparse.ArgumentParser(prog="python -m core.audit", description=__doc__.split("**Dataset level**")[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    data_cmd = commands.add_parser("data", help="trivial thumbnail baselines + domain classifier (validation vs test films)")
    data_cmd.add_argument("--data-root", default=None, help="dataset folder (default: $PNEUMONIA_DATA or data/chest_xray)")
    data_cmd.add_argument("--models-dir", default=None, help="models whose stored test scores are correlated with the statistics (default models/)")
    data_cmd.add_argument("--force", action="store_true", help="recompute even if the cached JSON exists")
    model_cmd = commands.add_parser("model", help="one model: perturbation table, robustness pass/fail, Grad-CAM mass")
    model_cmd.add_argument("model_dir", help="a model folder written by train.py, e.g. models/cnn-deep-128")
    model_cmd.add_argument("--data-root", default=None, help="dataset folder (default: $PNEUMONIA_DATA or data/chest_xray)")
    model_cmd.add_argument("--splits", nargs="+", default=["val"], choices=["val", "test"],
                           help="films to audit on (default: val; test is for information only)")
    model_cmd.add_argument("--per-class", type=int, default=PER_CLASS, help=f"films per class (default {PER_CLASS}, capped by the smaller class)")
    model_cmd.add_argument("--seed", type=int, default=SAMPLE_SEED, help=f"sampling seed (default {SAMPLE_SEED})")
    model_cmd.add_argument("--no-gradcam", action="store_true", help="skip the Grad-CAM mass")
    model_cmd.add_argument("--write-card", action="store_true", help="add the audit to the folder's card.json and card.md (atomic)")
    model_cmd.add_argument("--out", default=None, help="also write the audit as JSON to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config.quiet_tensorflow()
    try:
        if args.command == "data":
            result = dataset_audit(args.data_root, force=args.force, models_dir=args.models_dir)
            print(json.dumps({k: result[k] for k in ("baselines",)}, indent=2))
            for subset, found in result["domain"].items():
                print(f"domain classifier ({subset} films): ROC AUC {found['roc_auc']:.3f}; top: "
                      + ", ".join(f"{r['statistic']} ({r['auc_drop']:.3f})" for r in found["importance"][:5]))
            return 0
        audit = model_audit(args.model_dir, args.data_root, splits=args.splits, per_class=args.per_class, seed=args.seed,
                            gradcam=not args.no_gradcam)
        _print_model(audit)
        if args.out:
            write_json_atomic(Path(args.out), audit)
        if args.write_card:
            write_card_audit(args.model_dir, audit)
            logger.info("Wrote the audit into %s/card.json and card.md", args.model_dir)
        return 0
    except ValueError as error:
        logger.error("%s", error)
        return 1

