"""Films at the model's input size, balanced samples and the threshold metrics the audits report."""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

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


def to_grey_uint8(decoded: Any, height: int, width: int) -> np.ndarray:
    """A decoded X-ray (or grey (H0, W0) in [0, 1]) resized like the model input (`core.model_scoring.prepare_input`), as uint8 (height, width)."""
    from core.models.scorer import prepare_input

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
