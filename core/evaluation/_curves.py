"""Curves and frames for plotting elsewhere: ROC, PR, calibration, decision curve, histograms, per population."""
from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from core import config
from core.evaluation._counts import _as_arrays, _check_prevalence
from core.evaluation._sweep import ThresholdSweep, metrics_at_threshold


def roc_curve_frame(y_true: object, scores: object, *, drop_intermediate: bool = True) -> pd.DataFrame:
    """ROC curve as a frame with columns fpr, tpr, threshold (sklearn.metrics.roc_curve)."""
    from sklearn.metrics import roc_curve

    y, s = _as_arrays(y_true, scores)
    _require_both_classes(y, "a ROC curve")
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=drop_intermediate)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thresholds})


def pr_curve_frame(y_true: object, scores: object) -> pd.DataFrame:
    """Precision-recall curve as a frame with columns recall, precision, threshold (sklearn)."""
    from sklearn.metrics import precision_recall_curve

    y, s = _as_arrays(y_true, scores)
    _require_both_classes(y, "a precision-recall curve")
    precision, recall, thresholds = precision_recall_curve(y, s)
    # The last point (recall 0, precision 1) has no threshold in scikit-learn; mark it as +inf.
    return pd.DataFrame({"recall": recall, "precision": precision, "threshold": np.append(thresholds, np.inf)})


def roc_auc(y_true: object, scores: object) -> float:
    """Area under the ROC curve (sklearn.metrics.roc_auc_score)."""
    from sklearn.metrics import roc_auc_score

    y, s = _as_arrays(y_true, scores)
    _require_both_classes(y, "ROC AUC")
    return float(roc_auc_score(y, s))


def pr_auc(y_true: object, scores: object) -> float:
    """Average precision, the step-wise area under the PR curve (sklearn.metrics.average_precision_score)."""
    from sklearn.metrics import average_precision_score

    y, s = _as_arrays(y_true, scores)
    _require_both_classes(y, "PR AUC")
    return float(average_precision_score(y, s))


def brier_score(y_true: object, scores: object) -> float:
    """Mean squared error of the probabilities (sklearn.metrics.brier_score_loss); lower is better."""
    from sklearn.metrics import brier_score_loss

    y, s = _as_arrays(y_true, scores)
    if y.size == 0:
        raise ValueError("The Brier score needs at least one scored case.")
    return float(brier_score_loss(y, s, labels=[0, 1]))


def confusion_matrix_frame(y_true: object, scores: object, threshold: float) -> pd.DataFrame:
    """2x2 confusion matrix at `threshold`: rows = actual, columns = predicted, labelled with class names."""
    return confusion_frame_from_counts(metrics_at_threshold(y_true, scores, threshold))


def confusion_frame_from_counts(counts: dict) -> pd.DataFrame:
    """2x2 labelled confusion matrix from a dict with tp, fp, tn, fn (e.g. `ThresholdSweep.at(...)`)."""
    names = config.CLASS_NAMES
    return pd.DataFrame(
        [[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]],
        index=pd.Index([f"actual {names[0]}", f"actual {names[1]}"]),
        columns=pd.Index([f"predicted {names[0]}", f"predicted {names[1]}"]),
    )


def score_histogram(y_true: object, scores: object, *, bins: int = 50) -> pd.DataFrame:
    """Scores per class on `bins` equal bins over [0, 1]: columns bin_left, bin_right, and one count column per class."""
    y, s = _as_arrays(y_true, scores)
    edges = np.linspace(0.0, 1.0, bins + 1)
    frame = pd.DataFrame({"bin_left": edges[:-1], "bin_right": edges[1:]})
    for label, name in enumerate(config.CLASS_NAMES):
        frame[name] = np.histogram(np.clip(s[y == label], 0.0, 1.0), bins=edges)[0]
    return frame


def classification_report_frame(y_true: object, scores: object, threshold: float) -> pd.DataFrame:
    """Per-class precision/recall/F1/support at `threshold` (sklearn.metrics.classification_report)."""
    from sklearn.metrics import classification_report

    y, s = _as_arrays(y_true, scores)
    report = classification_report(
        y,
        (s >= threshold).astype(np.int8),
        labels=[0, 1],
        target_names=list(config.CLASS_NAMES),
        output_dict=True,
        zero_division=0.0,
    )
    return pd.DataFrame(report).T


def calibration_frame(
    y_true: object, scores: object, *, n_bins: int = 10, strategy: Literal["uniform", "quantile"] = "uniform"
) -> pd.DataFrame:
    """Reliability curve: per non-empty bin, mean predicted probability, observed fraction positive, count.

    Uses sklearn.calibration.calibration_curve (scores must lie in [0, 1]); the count column uses the
    same binning so a page can size the markers.
    """
    from sklearn.calibration import calibration_curve

    y, s = _as_arrays(y_true, scores)
    if y.size == 0:
        raise ValueError("A calibration curve needs at least one scored case.")
    if s.min() < 0.0 or s.max() > 1.0:
        raise ValueError("Calibration needs probabilities in [0, 1]; these scores are outside that range.")
    fraction, mean_pred = calibration_curve(y, s, n_bins=n_bins, strategy=strategy)
    if strategy == "quantile":
        bins = np.percentile(s, np.linspace(0, 100, n_bins + 1))
    else:
        bins = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.bincount(np.searchsorted(bins[1:-1], s), minlength=len(bins))
    counts = counts[counts != 0]
    return pd.DataFrame({"mean_predicted": mean_pred, "fraction_positive": fraction, "count": counts})


def decision_curve(
    y_true: object, scores: object, *, thresholds: np.ndarray | None = None
) -> pd.DataFrame:
    """Decision-curve analysis (Vickers & Elkin 2006): net benefit of the model, treat-all and treat-none.

    net benefit(pt) = TP/n - FP/n * pt / (1 - pt) at threshold probability pt (default 0.01..0.99).
    Columns: threshold, model, treat_all, treat_none.
    """
    sweep = ThresholdSweep.from_scores(y_true, scores)
    if sweep.n == 0:
        raise ValueError("A decision curve needs at least one scored case.")
    pt = np.linspace(0.01, 0.99, 99) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    if pt.size and (pt.min() <= 0.0 or pt.max() >= 1.0):
        raise ValueError("Decision-curve threshold probabilities must lie strictly between 0 and 1.")
    tp, fp, _, _ = sweep.counts(pt)
    odds = pt / (1.0 - pt)
    n = sweep.n
    prevalence = sweep.prevalence
    return pd.DataFrame(
        {
            "threshold": pt,
            "model": tp / n - fp / n * odds,
            "treat_all": prevalence - (1.0 - prevalence) * odds,
            "treat_none": np.zeros_like(pt),
        }
    )


def per_population(
    sensitivity: float, specificity: float, prevalence: float, *, population: int = 1000
) -> dict[str, float]:
    """Natural frequencies: per `population` screened at `prevalence`, expected cases caught, missed, false alarms.

    Returns population, cases, caught, missed, healthy, false_alarms, correctly_cleared, flagged (floats;
    round for display).
    """
    _check_prevalence(prevalence)
    cases = population * float(prevalence)
    healthy = population - cases
    caught = cases * float(sensitivity)
    false_alarms = healthy * (1.0 - float(specificity))
    return {
        "population": float(population),
        "cases": cases,
        "caught": caught,
        "missed": cases - caught,
        "healthy": healthy,
        "false_alarms": false_alarms,
        "correctly_cleared": healthy - false_alarms,
        "flagged": caught + false_alarms,
    }


LIVE_DIGITS = 3
"""Decimals of the ratios an operating-point summary shows (sensitivity, PPV, ...); counts per 1,000 show none."""


def operating_point_summary(
    sweep: ThresholdSweep, threshold: float, *, prevalence: float | None = None, population: int = 1000
) -> dict[str, str]:
    """What the threshold explorer shows at `threshold`, formatted: {name: text}, the server's side of the live widget.

    Keys: threshold (4 decimals); recall, specificity, precision, npv, f1, accuracy (the sample's own, LIVE_DIGITS
    decimals); tn, fp, fn, tp; ppv_at_prevalence, npv_at_prevalence (Bayes' rule at `prevalence`, default the
    sample's); caught, missed, false_alarms, flagged per `population` (no decimals). The browser computes the same
    numbers from `ThresholdSweep.compact()` with the same float64 operations in the same order, and formats them
    like Python's format() (round half to even on the exact binary value), so both sides show identical text.
    """
    at = sweep.at(threshold)
    p = sweep.prevalence if prevalence is None else float(prevalence)
    out = {"threshold": f"{float(threshold):.4f}"}
    out.update({k: f"{at[k]:.{LIVE_DIGITS}f}" for k in ("recall", "specificity", "precision", "npv", "f1", "accuracy")})
    out.update({k: str(at[k]) for k in ("tn", "fp", "fn", "tp")})
    if 0.0 < p < 1.0:
        weighted = sweep.at(threshold, prevalence=p)
        freq = per_population(at["recall"], at["specificity"], p, population=population)
        out["ppv_at_prevalence"] = f"{weighted['precision']:.{LIVE_DIGITS}f}"
        out["npv_at_prevalence"] = f"{weighted['npv']:.{LIVE_DIGITS}f}"
        out.update({k: f"{freq[k]:.0f}" for k in ("caught", "missed", "false_alarms", "flagged")})
    return out


def _require_both_classes(y: np.ndarray, what: str) -> None:
    """Raise a readable error unless y holds both 0 and 1."""
    n_pos = int(np.count_nonzero(y == 1))
    if n_pos == 0 or n_pos == y.size:
        raise ValueError(
            f"{what} needs both NORMAL and PNEUMONIA cases; this sample has {n_pos} positive of {y.size}."
        )
