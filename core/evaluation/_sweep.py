"""The vectorised threshold sweep (every metric at every distinct threshold) and metrics at one threshold."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from core.evaluation._counts import _as_arrays, _check_prevalence, _metrics_from_counts


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
