"""Binary-classification metrics over stored scores: threshold sweep, operating points, curves, CIs.

Conventions (the same as scikit-learn's ``roc_curve``):
- ``y_true`` holds 0 (NORMAL) / 1 (PNEUMONIA, the positive class); ``scores`` are probabilities of class 1.
- A case is called positive when ``score >= threshold``.
- A ratio whose denominator is zero (e.g. precision when nothing is called positive) is ``zero_division``
  (0.0 by default, as scikit-learn's default behaviour), never an exception.

Everything here is a pure function (or a small immutable object) over NumPy arrays; nothing plots.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd

from core import config

logger = logging.getLogger(__name__)

METRIC_KEYS = ("accuracy", "precision", "recall", "specificity", "f1", "npv", "roc_auc", "pr_auc", "brier")
"""Keys of the metrics a model card stores per split (see docs/ARCHITECTURE.md)."""

THRESHOLD_RULES = ("f1", "youden", "sensitivity", "specificity")
"""Operating-point rules understood by `choose_threshold`."""

Rule = Literal["f1", "youden", "sensitivity", "specificity"]


# --------------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------
# Vectorised threshold sweep
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ThresholdSweep:
    """Confusion counts at every threshold of one (y_true, scores) pair, built once in O(n log n).

    `at(threshold)` answers in O(log n) (binary search in the sorted scores + cumulative counts);
    `thresholds`/`tp`/`fp` give the counts at every distinct score (descending), like scikit-learn's
    ``_binary_clf_curve``, and `table()` every metric at every distinct threshold in one pass.
    """

    sorted_scores: np.ndarray = field(repr=False)  # (n,) ascending
    neg_below: np.ndarray = field(repr=False)  # (n + 1,) negatives among the k lowest scores
    pos_below: np.ndarray = field(repr=False)  # (n + 1,) positives among the k lowest scores
    n_pos: int
    n_neg: int

    @classmethod
    def from_scores(cls, y_true: object, scores: object) -> ThresholdSweep:
        """Sort once; y_true (n,) of 0/1 and scores (n,) of floats."""
        y, s = _as_arrays(y_true, scores)
        order = np.argsort(s, kind="mergesort")
        ys = y[order]
        pos_below = np.concatenate(([0], np.cumsum(ys, dtype=np.int64)))
        neg_below = np.arange(len(ys) + 1, dtype=np.int64) - pos_below
        return cls(s[order], neg_below, pos_below, int(pos_below[-1]), int(neg_below[-1]))

    # -- sizes -------------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of scored cases."""
        return self.n_pos + self.n_neg

    @property
    def prevalence(self) -> float:
        """Share of positives in this sample (nan when empty)."""
        return self.n_pos / self.n if self.n else math.nan

    # -- counts ------------------------------------------------------------------------------------
    def counts(self, thresholds: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(tp, fp, tn, fn) at each threshold (any shape), calling positive when score >= threshold."""
        below = np.searchsorted(self.sorted_scores, thresholds, side="left")
        fn = self.pos_below[below]
        tn = self.neg_below[below]
        return self.n_pos - fn, self.n_neg - tn, tn, fn

    def at(self, threshold: float, *, prevalence: float | None = None, zero_division: float = 0.0) -> dict:
        """All metrics at one threshold (same keys as `metrics_at_threshold`), in microseconds."""
        _check_prevalence(prevalence)
        below = int(np.searchsorted(self.sorted_scores, threshold, side="left"))
        fn = int(self.pos_below[below])
        tn = int(self.neg_below[below])
        tp, fp = self.n_pos - fn, self.n_neg - tn
        return _scalar_metrics(tp, fp, tn, fn, threshold, prevalence, zero_division)

    # -- every distinct threshold --------------------------------------------------------------------
    @property
    def thresholds(self) -> np.ndarray:
        """Distinct scores, descending (n_distinct,); calling positive at >= each."""
        return self._distinct[0]

    @property
    def tp(self) -> np.ndarray:
        """True positives at each of `thresholds` (n_distinct,)."""
        return self._distinct[1]

    @property
    def fp(self) -> np.ndarray:
        """False positives at each of `thresholds` (n_distinct,)."""
        return self._distinct[2]

    @cached_property
    def _distinct(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distinct thresholds (descending) with tp/fp there."""
        s = self.sorted_scores
        if s.size == 0:
            empty = np.empty(0)
            return empty, empty.astype(np.int64), empty.astype(np.int64)
        # First index of each distinct value in ascending order = number of scores strictly below it.
        starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
        thresholds = s[starts][::-1]
        below = starts[::-1]
        return thresholds, self.n_pos - self.pos_below[below], self.n_neg - self.neg_below[below]

    def table(self, *, prevalence: float | None = None, zero_division: float = 0.0) -> pd.DataFrame:
        """Every metric at every distinct threshold (descending), one row each, plus the all-negative row.

        Columns: threshold, tp, fp, tn, fn, accuracy, precision, recall, specificity, f1, npv, fpr, youden_j.
        The first row's threshold is just above the highest score (nothing called positive).
        """
        _check_prevalence(prevalence)
        thresholds, tp, fp = self._distinct
        top = np.nextafter(thresholds[0], np.inf) if thresholds.size else 0.5
        thresholds = np.concatenate(([top], thresholds))
        tp = np.concatenate(([0], tp)).astype(np.int64)
        fp = np.concatenate(([0], fp)).astype(np.int64)
        tn = self.n_neg - fp
        fn = self.n_pos - tp
        metrics = _metrics_from_counts(tp, fp, tn, fn, prevalence=prevalence, zero_division=zero_division)
        frame = pd.DataFrame({"threshold": thresholds, "tp": tp, "fp": fp, "tn": tn, "fn": fn, **metrics})
        frame["fpr"] = 1.0 - frame["specificity"] if self.n_neg else 0.0
        frame["youden_j"] = frame["recall"] + frame["specificity"] - 1.0
        return frame

    def compact(self) -> dict:
        """The sweep as plain lists, for a client that answers `at()` itself (e.g. a browser while dragging).

        Returns ``{"scores": [...], "neg_below": [...], "pos_below": [...], "n_pos": int, "n_neg": int}``:
        `scores` are the distinct scores ascending (k,), ``neg_below[i]`` / ``pos_below[i]`` the negatives /
        positives scoring strictly below ``scores[i]`` ((k + 1,), the last entry being all of them). At a
        threshold t, with i the number of distinct scores < t, fn = pos_below[i] and tn = neg_below[i], exactly
        as `at(t)`. Floats are the stored float64 values, so JSON (shortest round-trip repr) carries them exactly.
        """
        s = self.sorted_scores
        starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1]))) if s.size else np.empty(0, dtype=np.int64)
        below = np.append(starts, s.size)
        return {
            "scores": s[starts].tolist(),
            "neg_below": self.neg_below[below].tolist(),
            "pos_below": self.pos_below[below].tolist(),
            "n_pos": self.n_pos,
            "n_neg": self.n_neg,
        }


def _scalar_metrics(
    tp: int, fp: int, tn: int, fn: int, threshold: float, prevalence: float | None, zero_division: float
) -> dict:
    """Metrics dict of plain Python numbers from one confusion matrix (fast path, no NumPy)."""

    def ratio(a: float, b: float) -> float:
        return a / b if b else float(zero_division)

    recall = ratio(tp, tp + fn)
    specificity = ratio(tn, tn + fp)
    if prevalence is None:
        precision = ratio(tp, tp + fp)
        npv = ratio(tn, tn + fn)
    else:
        p = float(prevalence)
        precision = ratio(recall * p, recall * p + (1.0 - specificity) * (1.0 - p))
        npv = ratio(specificity * (1.0 - p), specificity * (1.0 - p) + (1.0 - recall) * p)
    n = tp + fp + tn + fn
    return {
        "threshold": float(threshold),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "accuracy": ratio(tp + tn, n),
        "precision": precision,
        "recall": recall,
        "specificity": specificity,
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "npv": npv,
        "prevalence": float(prevalence) if prevalence is not None else ratio(tp + fn, n),
    }


def metrics_at_threshold(
    y_true: object,
    scores: object,
    threshold: float,
    *,
    prevalence: float | None = None,
    zero_division: float = 0.0,
) -> dict:
    """Confusion counts and metrics at `threshold` for y_true (n,) and scores (n,).

    Returns tp, fp, tn, fn (ints) and accuracy, precision (PPV), recall (sensitivity), specificity, f1,
    npv (floats), plus the threshold and the prevalence used. With `prevalence` in (0, 1), precision and
    npv are re-weighted to that prevalence (Bayes' rule); the other metrics stay those of the sample.
    """
    _check_prevalence(prevalence)
    y, s = _as_arrays(y_true, scores)
    called = s >= threshold
    tp = int(np.count_nonzero(called & (y == 1)))
    fp = int(np.count_nonzero(called & (y == 0)))
    fn = int(np.count_nonzero(~called & (y == 1)))
    tn = int(np.count_nonzero(~called & (y == 0)))
    return _scalar_metrics(tp, fp, tn, fn, threshold, prevalence, zero_division)


# --------------------------------------------------------------------------------------------------
# Operating-point rules
# --------------------------------------------------------------------------------------------------
def choose_threshold(y_true: object, scores: object, rule: Rule, *, target: float | None = None) -> float:
    """Threshold chosen by `rule` on y_true (n,) / scores (n,) (use validation data, never test).

    Rules (candidates are the distinct scores, plus one just above the highest score):
    - ``"f1"``: maximal F1;
    - ``"youden"``: maximal Youden J = sensitivity + specificity - 1;
    - ``"sensitivity"``: the highest threshold whose sensitivity is >= `target`;
    - ``"specificity"``: the highest sensitivity whose specificity is >= `target`.
    Ties go to the highest threshold (fewest false alarms). Returns a score value: call positive at >= it.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"Unknown threshold rule {rule!r}; use one of {', '.join(THRESHOLD_RULES)}.")
    needs_target = rule in ("sensitivity", "specificity")
    if needs_target and (target is None or not 0.0 <= float(target) <= 1.0):
        raise ValueError(f"Rule {rule!r} needs target= a number in [0, 1] (e.g. 0.95); got {target!r}.")
    sweep = ThresholdSweep.from_scores(y_true, scores)
    if sweep.n_pos == 0 or sweep.n_neg == 0:
        raise ValueError(
            f"Choosing a threshold needs both classes; this sample has {sweep.n_pos} positive and "
            f"{sweep.n_neg} negative cases. Use the validation split, which holds both."
        )
    table = sweep.table()
    if rule == "f1":
        best = int(np.argmax(table["f1"].to_numpy()))
    elif rule == "youden":
        best = int(np.argmax(table["youden_j"].to_numpy()))
    elif rule == "sensitivity":
        # Rows go from the highest threshold down, so recall only grows: the first row reaching target.
        best = int(np.argmax(table["recall"].to_numpy() >= float(target) - 1e-12))
    else:
        ok = table["specificity"].to_numpy() >= float(target) - 1e-12
        recall = np.where(ok, table["recall"].to_numpy(), -1.0)
        best = int(np.argmax(recall))
    threshold = float(table["threshold"].iat[best])
    logger.debug("choose_threshold(%s, target=%s) -> %.6g", rule, target, threshold)
    return threshold


def operating_points(
    y_true: object, scores: object, *, sensitivity_target: float = 0.95, specificity_target: float = 0.90
) -> dict[str, float]:
    """The standard presets on one sample: {label: threshold} for F1-best, Youden, sensitivity and specificity targets."""
    return {
        "F1-best": choose_threshold(y_true, scores, "f1"),
        "Youden J": choose_threshold(y_true, scores, "youden"),
        f"Sensitivity ≥ {sensitivity_target:.0%}": choose_threshold(
            y_true, scores, "sensitivity", target=sensitivity_target
        ),
        f"Specificity ≥ {specificity_target:.0%}": choose_threshold(
            y_true, scores, "specificity", target=specificity_target
        ),
    }


# --------------------------------------------------------------------------------------------------
# Curves and tables (scikit-learn)
# --------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------
# Bootstrap confidence intervals (scipy.stats.bootstrap, vectorised)
# --------------------------------------------------------------------------------------------------
def _batched_statistics(neg: np.ndarray, pos: np.ndarray, threshold: float) -> np.ndarray:
    """All METRIC_KEYS for a batch of resamples: neg (..., N) and pos (..., P) scores -> (9, ...)."""
    n_neg, n_pos = neg.shape[-1], pos.shape[-1]
    tp = np.count_nonzero(pos >= threshold, axis=-1).astype(np.float64)
    fp = np.count_nonzero(neg >= threshold, axis=-1).astype(np.float64)
    fn = n_pos - tp
    tn = n_neg - fp
    m = _metrics_from_counts(tp, fp, tn, fn, prevalence=None, zero_division=0.0)

    # One sort per resample gives both AUCs. Scores descending; tie groups handled exactly as scikit-learn does.
    both = np.concatenate([neg, pos], axis=-1)
    n = both.shape[-1]
    order = np.argsort(-both, axis=-1)  # order inside a tie group does not matter below
    s_desc = np.take_along_axis(both, order, axis=-1)
    is_pos = order >= n_neg
    is_neg = ~is_pos
    cum_tp = np.cumsum(is_pos, axis=-1)
    cum_fp = np.cumsum(is_neg, axis=-1)
    idx = np.arange(n)
    boundary = s_desc[..., 1:] != s_desc[..., :-1]
    is_end = np.ones(s_desc.shape, dtype=bool)
    is_end[..., :-1] = boundary
    is_start = np.ones(s_desc.shape, dtype=bool)
    is_start[..., 1:] = boundary
    # Last / first index of the tie group of every position.
    end_idx = np.flip(np.minimum.accumulate(np.flip(np.where(is_end, idx, n - 1), axis=-1), axis=-1), axis=-1)
    start_idx = np.maximum.accumulate(np.where(is_start, idx, 0), axis=-1)

    # ROC AUC (Mann-Whitney): each positive scores the negatives below it, ties counted half.
    neg_at_or_above = np.take_along_axis(cum_fp, end_idx, axis=-1)
    neg_above = np.take_along_axis(cum_fp - is_neg, start_idx, axis=-1)
    auc = (is_pos * (n_neg - 0.5 * (neg_at_or_above + neg_above))).sum(axis=-1) / (n_pos * n_neg)

    # Average precision: each positive contributes the precision at the end of its tie group.
    precision_at_end = np.take_along_axis(cum_tp, end_idx, axis=-1) / (end_idx + 1.0)
    ap = (is_pos * precision_at_end).sum(axis=-1) / n_pos

    brier = ((neg**2).sum(axis=-1) + ((1.0 - pos) ** 2).sum(axis=-1)) / n
    return np.stack(
        [m["accuracy"], m["precision"], m["recall"], m["specificity"], m["f1"], m["npv"], auc, ap, brier]
    )


def summarize_with_ci(
    y_true: object,
    scores: object,
    threshold: float,
    *,
    n_resamples: int = config.BOOTSTRAP_RESAMPLES,
    confidence: float = config.CONFIDENCE_LEVEL,
    seed: int = 0,
    method: Literal["percentile", "basic", "BCa"] = "percentile",
) -> dict[str, dict[str, float]]:
    """Every card metric at `threshold` with a bootstrap CI: {metric: {"value", "ci_low", "ci_high"}}.

    Metrics: accuracy, precision, recall, specificity, f1, npv, roc_auc, pr_auc, brier (METRIC_KEYS).
    `value` is computed on the full sample. The CI is a stratified percentile bootstrap
    (scipy.stats.bootstrap over the NORMAL and PNEUMONIA scores as two independent samples, so every
    resample keeps the class counts and both AUCs stay defined), `n_resamples` resamples, seeded.
    Images are resampled, not patients, so the intervals are slightly optimistic where one patient
    contributes several images.
    """
    from scipy.stats import bootstrap

    y, s = _as_arrays(y_true, scores)
    _require_both_classes(y, "Bootstrap confidence intervals")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence}.")
    neg, pos = s[y == 0], s[y == 1]
    values = _batched_statistics(neg, pos, threshold)
    # Keep each batch of resamples at ~4M elements so memory stays small on large splits.
    batch = max(1, min(n_resamples, 4_000_000 // max(1, s.size)))
    with np.errstate(invalid="ignore", divide="ignore"):
        result = bootstrap(
            (neg, pos),
            lambda a, b, axis=-1: _batched_statistics(a, b, threshold),
            n_resamples=n_resamples,
            confidence_level=confidence,
            method=method,
            vectorized=True,
            paired=False,
            batch=batch,
            rng=np.random.default_rng(seed),
        )
    low = np.atleast_1d(result.confidence_interval.low)
    high = np.atleast_1d(result.confidence_interval.high)
    return {
        key: {"value": float(values[i]), "ci_low": float(low[i]), "ci_high": float(high[i])}
        for i, key in enumerate(METRIC_KEYS)
    }


def format_ci(entry: dict[str, float], *, digits: int = 3) -> str:
    """'0.930 (0.910–0.950)' from a {"value", "ci_low", "ci_high"} entry (nan-safe)."""
    value, low, high = (entry.get(k, math.nan) for k in ("value", "ci_low", "ci_high"))
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if low is None or high is None or math.isnan(float(low)) or math.isnan(float(high)):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


# --------------------------------------------------------------------------------------------------
# Bootstrap over patients (cluster bootstrap): films of one patient are resampled together
# --------------------------------------------------------------------------------------------------
def _weighted_statistics(y_desc: np.ndarray, s_desc: np.ndarray, starts: np.ndarray, weights: np.ndarray,
                         threshold: float) -> np.ndarray:
    """METRIC_KEYS (9, R) for R weightings (R, n) of films sorted by descending score (ties as scikit-learn)."""
    w_pos = weights * y_desc
    w_neg = weights * (1 - y_desc)
    n_pos, n_neg = w_pos.sum(axis=1), w_neg.sum(axis=1)
    called = s_desc >= threshold
    tp, fp = w_pos[:, called].sum(axis=1), w_neg[:, called].sum(axis=1)
    m = _metrics_from_counts(tp, fp, n_neg - fp, n_pos - tp, prevalence=None, zero_division=0.0)
    # Sums per tie group of equal scores, in descending score order.
    g_pos = np.add.reduceat(w_pos, starts, axis=1)
    g_neg = np.add.reduceat(w_neg, starts, axis=1)
    cum_tp, cum_fp = np.cumsum(g_pos, axis=1), np.cumsum(g_neg, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # Mann-Whitney: each positive beats the negatives strictly below its score, ties count half.
        auc = (g_pos * (n_neg[:, None] - cum_fp + 0.5 * g_neg)).sum(axis=1) / (n_pos * n_neg)
        precision_at = _ratio(cum_tp, cum_tp + cum_fp, 0.0)
        ap = (g_pos * precision_at).sum(axis=1) / n_pos
        brier = (weights * (s_desc - y_desc) ** 2).sum(axis=1) / weights.sum(axis=1)
    undefined = (n_pos == 0) | (n_neg == 0)  # a resample with one class only: no AUC, no sensitivity/specificity
    auc[undefined] = np.nan
    ap[undefined] = np.nan
    out = np.stack([m["accuracy"], m["precision"], m["recall"], m["specificity"], m["f1"], m["npv"], auc, ap, brier])
    out[1:6, undefined] = np.nan
    return out


def summarize_with_group_ci(
    y_true: object,
    scores: object,
    threshold: float,
    groups: object | None = None,
    *,
    n_resamples: int = config.BOOTSTRAP_RESAMPLES,
    confidence: float = config.CONFIDENCE_LEVEL,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Every card metric at `threshold` with a percentile bootstrap CI that resamples patients, not films.

    y_true (n,) of 0/1, scores (n,), groups (n,) of patient ids (any hashable; None = every film its own
    patient). Each resample draws as many patients as there are, with replacement, and keeps all films of
    each drawn patient (a cluster bootstrap), so films of one patient never count as independent evidence.
    Returns {metric: {"value", "ci_low", "ci_high", "ci_width"}} for METRIC_KEYS; `value` is on the full
    sample and equals scikit-learn's. Resamples that hold one class only are left out of the intervals of
    the metrics they cannot define.
    """
    y, s = _as_arrays(y_true, scores)
    _require_both_classes(y, "Bootstrap confidence intervals")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence}.")
    if groups is None:
        codes = np.arange(y.size)
    else:
        group_array = np.asarray(groups)
        if group_array.shape != y.shape:
            raise ValueError(f"groups must hold one patient id per film ({y.size}); got shape {group_array.shape}.")
        codes = pd.factorize(pd.Series(group_array, dtype=object))[0]
    order = np.argsort(-s, kind="mergesort")
    y_desc, s_desc, codes = y[order].astype(np.float64), s[order], codes[order]
    starts = np.flatnonzero(np.concatenate(([True], s_desc[1:] != s_desc[:-1])))
    values = _weighted_statistics(y_desc, s_desc, starts, np.ones((1, y.size)), threshold)[:, 0]
    n_groups = int(codes.max()) + 1
    rng = np.random.default_rng(seed)
    batch = max(1, min(n_resamples, 4_000_000 // max(1, y.size)))
    resampled = []
    for done in range(0, n_resamples, batch):
        size = min(batch, n_resamples - done)
        counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=size).astype(np.float64)
        resampled.append(_weighted_statistics(y_desc, s_desc, starts, counts[:, codes], threshold))
    stats = np.concatenate(resampled, axis=1)
    alpha = (1.0 - confidence) / 2.0
    with warnings.catch_warnings():  # an all-NaN column (a metric no resample defines) gives NaN bounds, on purpose
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(stats, [100 * alpha, 100 * (1 - alpha)], axis=1)
    return {
        key: {"value": float(values[i]), "ci_low": float(low[i]), "ci_high": float(high[i]),
              "ci_width": float(high[i] - low[i])}
        for i, key in enumerate(METRIC_KEYS)
    }
