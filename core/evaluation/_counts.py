"""Metrics from confusion counts: ratios with zero_division, PPV/NPV re-weighted to a prevalence."""
from __future__ import annotations

import logging
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

METRIC_KEYS = ("accuracy", "precision", "recall", "specificity", "f1", "npv", "roc_auc", "pr_auc", "brier")
"""Keys of the metrics a model card stores per split (see docs/ARCHITECTURE.md)."""

THRESHOLD_RULES = ("f1", "youden", "sensitivity", "specificity")
"""Operating-point rules understood by `choose_threshold`."""

Rule = Literal["f1", "youden", "sensitivity", "specificity"]


def _as_arrays(y_true: object, scores: object) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert labels/scores to 1-D int8 / float64 arrays of equal length."""
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(
            f"y_true and scores must be 1-D arrays (got shapes {y.shape} and {s.shape}); "
            "flatten a (n, 1) model output with .ravel()."
        )
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"y_true has {y.shape[0]} labels but scores has {s.shape[0]} values; pass one score per label.")
    if y.size and not np.isin(y, (0, 1)).all():
        bad = sorted(set(np.unique(y).tolist()) - {0, 1})[:5]
        raise ValueError(f"y_true must contain only 0 (NORMAL) and 1 (PNEUMONIA); found {bad}.")
    if s.size and not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values; drop or re-score those images first.")
    return y.astype(np.int8, copy=False), s


def _ratio(num: np.ndarray | float, den: np.ndarray | float, zero_division: float) -> np.ndarray:
    """Element-wise num/den with `zero_division` where den == 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, float(zero_division))
    np.divide(num, den, out=out, where=den != 0)
    return out


def _check_prevalence(prevalence: float | None) -> None:
    """Raise if a prevalence is given outside (0, 1)."""
    if prevalence is not None and not (0.0 < float(prevalence) < 1.0):
        raise ValueError(f"prevalence must be strictly between 0 and 1 (e.g. 0.01 for 1%); got {prevalence}.")


def reweighted_ppv_npv(
    sensitivity: np.ndarray | float,
    specificity: np.ndarray | float,
    prevalence: float,
    *,
    zero_division: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """PPV and NPV (Bayes' rule) of a test with this sensitivity/specificity at another prevalence in (0, 1)."""
    _check_prevalence(prevalence)
    sens = np.asarray(sensitivity, dtype=np.float64)
    spec = np.asarray(specificity, dtype=np.float64)
    p = float(prevalence)
    ppv = _ratio(sens * p, sens * p + (1.0 - spec) * (1.0 - p), zero_division)
    npv = _ratio(spec * (1.0 - p), spec * (1.0 - p) + (1.0 - sens) * p, zero_division)
    return ppv, npv


def _metrics_from_counts(
    tp: np.ndarray, fp: np.ndarray, tn: np.ndarray, fn: np.ndarray, *, prevalence: float | None, zero_division: float
) -> dict[str, np.ndarray]:
    """Every threshold metric from confusion counts (arrays of any common shape)."""
    tp, fp, tn, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, tn, fn))
    n = tp + fp + tn + fn
    recall = _ratio(tp, tp + fn, zero_division)
    specificity = _ratio(tn, tn + fp, zero_division)
    if prevalence is None:
        precision = _ratio(tp, tp + fp, zero_division)
        npv = _ratio(tn, tn + fn, zero_division)
    else:
        precision, npv = reweighted_ppv_npv(recall, specificity, prevalence, zero_division=zero_division)
    return {
        "accuracy": _ratio(tp + tn, n, zero_division),
        "precision": precision,
        "recall": recall,
        "specificity": specificity,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn, zero_division),
        "npv": npv,
    }
