"""Paired comparison of two models scored on the same films: is one *significantly* better than the other?

- ROC AUC: DeLong's test (DeLong, DeLong & Clarke-Pearson 1988, Biometrics 44:837-845) for the difference of two
  correlated AUCs, computed with the fast midrank algorithm of Sun & Xu 2014 (IEEE Signal Processing Letters
  21:1389-1393): O(n log n) instead of the O(n_pos * n_neg) pairwise kernel.
- Threshold metrics (accuracy, sensitivity, specificity, each model at its own validation-chosen threshold):
  a paired bootstrap over films (scipy.stats.bootstrap with paired=True: one resample of film indices is applied
  to both models), percentile 95% CI of the difference, and the two-sided p-value that inverts that interval
  (the smallest alpha at which the percentile interval excludes 0).

A difference is always A minus B. Labels are 0 (NORMAL) / 1 (PNEUMONIA); scores are probabilities of PNEUMONIA.
Nothing here plots or reads files: `pair_predictions` joins two predictions frames (core.models.registry) on film path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core import config
from core.evaluation.metrics import _as_arrays, _require_both_classes

THRESHOLD_METRICS = ("accuracy", "recall", "specificity")
"""Threshold metrics the paired bootstrap compares (recall = sensitivity)."""

BOOTSTRAP_METRICS = ("accuracy", "recall", "specificity", "roc_auc")
"""Every statistic `paired_bootstrap` can compute (roc_auc for checking DeLong)."""

METRIC_NAMES = {
    "roc_auc": "ROC AUC",
    "accuracy": "accuracy",
    "recall": "sensitivity",
    "specificity": "specificity",
}
"""Plain names used in readings ("A's sensitivity is ...")."""

DEFAULT_ALPHA = 0.05


@dataclass(frozen=True)
class PairedDifference:
    """One metric of two models on the same films: values, difference A - B with CI, two-sided p-value."""

    metric: str
    value_a: float
    value_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    method: str
    n_films: int

    def significant(self, alpha: float = DEFAULT_ALPHA) -> bool:
        """Whether the two-sided p-value is below `alpha`."""
        return bool(self.p_value < alpha)


@dataclass(frozen=True)
class PairedFilms:
    """Two models' scores on the films both were evaluated on (joined on path)."""

    frame: pd.DataFrame  # columns path, label, score_a, score_b; one row per common film, sorted by path
    only_a: int  # films scored by A only (left out of the comparison)
    only_b: int  # films scored by B only

    @property
    def n_films(self) -> int:
        """Number of films compared."""
        return len(self.frame)


@dataclass(frozen=True)
class ModelComparison:
    """Every paired difference of two models on one split, DeLong's ROC AUC first."""

    films: PairedFilms
    threshold_a: float
    threshold_b: float
    differences: tuple[PairedDifference, ...]

    def readings(self, name_a: str, name_b: str, *, alpha: float = DEFAULT_ALPHA) -> list[str]:
        """One plain sentence per metric (`plain_reading`), DeLong's ROC AUC first."""
        return [plain_reading(d, name_a, name_b, alpha=alpha) for d in self.differences]

    def table(self) -> pd.DataFrame:
        """One row per metric: metric, value_a, value_b, difference, ci_low, ci_high, p_value, method, n_films."""
        return pd.DataFrame([d.__dict__ for d in self.differences])


# --------------------------------------------------------------------------------------------------
# Joining two models' predictions
# --------------------------------------------------------------------------------------------------
def pair_predictions(frame_a: pd.DataFrame, frame_b: pd.DataFrame) -> PairedFilms:
    """Join two predictions frames (columns path, label, score; one split) on `path`, keeping the common films.

    Raises ValueError, saying what to do, when the models share no film, when a path appears twice in one frame,
    or when the same film carries different labels (the models were evaluated on different data).
    """
    for name, frame in (("A", frame_a), ("B", frame_b)):
        missing = [c for c in ("path", "label", "score") if c not in frame.columns]
        if missing:
            raise ValueError(f"Model {name}'s predictions lack column(s) {', '.join(missing)}; expected path, label, score.")
        duplicated = frame["path"].duplicated()
        if duplicated.any():
            raise ValueError(
                f"Model {name}'s predictions list the film {frame['path'][duplicated].iloc[0]!r} more than once; "
                "regenerate predictions.csv with train.py."
            )
    a = frame_a[["path", "label", "score"]].rename(columns={"label": "label_a", "score": "score_a"})
    b = frame_b[["path", "label", "score"]].rename(columns={"label": "label_b", "score": "score_b"})
    joined = a.merge(b, on="path", how="inner", validate="one_to_one").sort_values("path", kind="mergesort")
    if joined.empty:
        raise ValueError(
            f"These two models were evaluated on different films (A: {len(frame_a)}, B: {len(frame_b)}, none in "
            "common), so they cannot be compared film by film. Evaluate both on the same dataset and split."
        )
    conflicts = joined["label_a"].to_numpy() != joined["label_b"].to_numpy()
    if conflicts.any():
        raise ValueError(
            f"{int(conflicts.sum())} film(s) carry different labels in the two models' predictions (for example "
            f"{joined['path'][conflicts].iloc[0]!r}): they were evaluated on different data. Re-evaluate both on "
            "the same dataset."
        )
    frame = pd.DataFrame({
        "path": joined["path"].to_numpy(),
        "label": joined["label_a"].to_numpy().astype(np.int8),
        "score_a": joined["score_a"].to_numpy(dtype=np.float64),
        "score_b": joined["score_b"].to_numpy(dtype=np.float64),
    })
    return PairedFilms(frame, only_a=len(frame_a) - len(frame), only_b=len(frame_b) - len(frame))


# --------------------------------------------------------------------------------------------------
# DeLong (fast algorithm of Sun & Xu 2014)
# --------------------------------------------------------------------------------------------------
def delong_covariance(y_true: object, scores: object) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUCs of k models on the same films and DeLong's covariance matrix of those AUCs.

    y_true: (n,) of 0/1; scores: (k, n) (or (n,) for one model). Returns (aucs (k,), covariance (k, k)).
    Ties count one half, as in the Mann-Whitney statistic and scikit-learn's roc_auc_score. Uses midranks
    (scipy.stats.rankdata, method "average"): for m positives X and n negatives Y of one model, with T_z the
    midranks in the pooled sample and T_x, T_y those within each class, the structural components are
    V10 = (T_z[X] - T_x) / n and V01 = 1 - (T_z[Y] - T_y) / m, the AUC is mean(V10), and the covariance is
    S10 / m + S01 / n with S10, S01 the sample covariances (ddof 1) of the components across models.
    """
    from scipy.stats import rankdata

    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if s.ndim != 2:
        raise ValueError(f"scores must have shape (k, n) or (n,); got {s.shape}.")
    y, _ = _as_arrays(y_true, s[0])
    for row in s[1:]:
        _as_arrays(y, row)
    _require_both_classes(y, "DeLong's test")
    positive = y == 1
    x, z_neg = s[:, positive], s[:, ~positive]
    m, n = x.shape[1], z_neg.shape[1]
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's variance needs at least 2 films of each class; got {m} PNEUMONIA and {n} NORMAL.")
    tx = rankdata(x, axis=1)
    ty = rankdata(z_neg, axis=1)
    tz = rankdata(np.concatenate([x, z_neg], axis=1), axis=1)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    aucs = v10.mean(axis=1)
    s10 = np.atleast_2d(np.cov(v10, ddof=1))
    s01 = np.atleast_2d(np.cov(v01, ddof=1))
    return aucs, s10 / m + s01 / n


def delong_test(
    y_true: object, scores_a: object, scores_b: object, *, confidence: float = config.CONFIDENCE_LEVEL
) -> PairedDifference:
    """DeLong's paired test of ROC AUC(A) - AUC(B) on the same films: y_true, scores_a, scores_b all (n,).

    Returns the difference with a Wald CI (difference +- z * SE) and the two-sided p-value of z = difference / SE.
    When the variance of the difference is zero (e.g. identical scores), p is 1 for a zero difference and 0 otherwise.
    """
    from scipy.stats import norm

    _check_confidence(confidence)
    aucs, cov = delong_covariance(y_true, np.vstack([np.asarray(scores_a, float), np.asarray(scores_b, float)]))
    difference = float(aucs[0] - aucs[1])
    variance = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = math.sqrt(max(variance, 0.0))
    if se <= 1e-15:
        p_value = 1.0 if abs(difference) <= 1e-15 else 0.0
        half = 0.0
    else:
        p_value = float(2.0 * norm.sf(abs(difference) / se))
        half = float(norm.ppf(0.5 + confidence / 2.0)) * se
    return PairedDifference(
        metric="roc_auc", value_a=float(aucs[0]), value_b=float(aucs[1]), difference=difference,
        ci_low=difference - half, ci_high=difference + half, p_value=min(1.0, p_value),
        method="DeLong", n_films=int(np.asarray(scores_a).size),
    )


# --------------------------------------------------------------------------------------------------
# Paired bootstrap
# --------------------------------------------------------------------------------------------------
def _statistics(
    y: np.ndarray, a: np.ndarray, b: np.ndarray, threshold_a: float, threshold_b: float, metrics: tuple[str, ...]
) -> np.ndarray:
    """Metric differences A - B for a batch of resamples: y, a, b (..., n) -> (len(metrics), ...)."""
    positive = y == 1
    n_pos = positive.sum(axis=-1)
    n_neg = y.shape[-1] - n_pos
    out = []
    for metric in metrics:
        if metric == "roc_auc":
            out.append(_batched_auc(positive, a, n_pos, n_neg) - _batched_auc(positive, b, n_pos, n_neg))
            continue
        called_a, called_b = a >= threshold_a, b >= threshold_b
        if metric == "accuracy":
            out.append(((called_a == positive).sum(axis=-1) - (called_b == positive).sum(axis=-1)) / y.shape[-1])
        elif metric == "recall":
            out.append(((called_a & positive).sum(axis=-1) - (called_b & positive).sum(axis=-1)) / np.maximum(n_pos, 1))
        elif metric == "specificity":
            out.append(((~called_a & ~positive).sum(axis=-1) - (~called_b & ~positive).sum(axis=-1)) / np.maximum(n_neg, 1))
        else:
            raise ValueError(f"Unknown metric {metric!r}; use some of {', '.join(BOOTSTRAP_METRICS)}.")
    return np.stack(out)


def _batched_auc(positive: np.ndarray, scores: np.ndarray, n_pos: np.ndarray, n_neg: np.ndarray) -> np.ndarray:
    """Mann-Whitney ROC AUC along the last axis (ties one half); nan where a resample lacks a class."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=-1)
    rank_sum = np.where(positive, ranks, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def paired_bootstrap(
    y_true: object,
    scores_a: object,
    scores_b: object,
    threshold_a: float,
    threshold_b: float,
    *,
    metrics: tuple[str, ...] = THRESHOLD_METRICS,
    n_resamples: int = 2000,
    confidence: float = config.CONFIDENCE_LEVEL,
    seed: int = 0,
) -> list[PairedDifference]:
    """Paired bootstrap of metric(A) - metric(B) on the same films, each model at its own threshold.

    y_true, scores_a, scores_b: (n,). A film is called PNEUMONIA when its score >= the model's threshold.
    `metrics` from BOOTSTRAP_METRICS (accuracy, recall = sensitivity, specificity, roc_auc). Each resample draws n
    film indices with replacement and applies them to both models (scipy.stats.bootstrap, paired=True), so the
    correlation between the two models on the same films is kept. The CI is the percentile interval; the p-value
    is two-sided, 2 * min(share of resampled differences <= 0, share >= 0), capped at 1: below alpha exactly when
    the (1 - alpha) percentile interval excludes 0. Its resolution is 1 / n_resamples. Films, not patients, are
    resampled (as in DeLong's test), so intervals are slightly optimistic where a patient has several films.
    """
    from scipy.stats import bootstrap

    _check_confidence(confidence)
    y, a = _as_arrays(y_true, scores_a)
    _, b = _as_arrays(y, scores_b)
    _require_both_classes(y, "A paired bootstrap")
    unknown = [m for m in metrics if m not in BOOTSTRAP_METRICS]
    if unknown or not metrics:
        raise ValueError(f"Unknown metric(s) {unknown}; use some of {', '.join(BOOTSTRAP_METRICS)}.")
    metrics = tuple(metrics)
    y = y.astype(np.int8)

    def statistic(yy: np.ndarray, aa: np.ndarray, bb: np.ndarray, axis: int = -1) -> np.ndarray:
        return _statistics(yy, aa, bb, threshold_a, threshold_b, metrics)

    observed = statistic(y, a, b)
    batch = max(1, min(n_resamples, 4_000_000 // max(1, y.size * len(metrics))))
    with np.errstate(invalid="ignore", divide="ignore"):
        result = bootstrap(
            (y, a, b), statistic, paired=True, vectorized=True, n_resamples=n_resamples, batch=batch,
            confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed),
        )
    distribution = np.atleast_2d(result.bootstrap_distribution)
    low = np.atleast_1d(result.confidence_interval.low)
    high = np.atleast_1d(result.confidence_interval.high)
    values_a = _values(y, a, threshold_a, metrics)
    values_b = _values(y, b, threshold_b, metrics)
    differences = []
    for i, metric in enumerate(metrics):
        d = distribution[i][np.isfinite(distribution[i])]
        p_value = min(1.0, 2.0 * min(np.mean(d <= 0.0), np.mean(d >= 0.0))) if d.size else math.nan
        differences.append(PairedDifference(
            metric=metric, value_a=values_a[i], value_b=values_b[i], difference=float(observed[i]),
            ci_low=float(low[i]), ci_high=float(high[i]), p_value=float(p_value),
            method=f"paired bootstrap ({n_resamples} resamples)", n_films=int(y.size),
        ))
    return differences


def _values(y: np.ndarray, scores: np.ndarray, threshold: float, metrics: tuple[str, ...]) -> list[float]:
    """Each metric of one model on the full sample (the difference against a model scoring 0 everywhere)."""
    from core.evaluation import metrics as card_metrics

    point = card_metrics.metrics_at_threshold(y, scores, threshold)
    return [card_metrics.roc_auc(y, scores) if m == "roc_auc" else float(point[m]) for m in metrics]


# --------------------------------------------------------------------------------------------------
# Everything at once, and plain words
# --------------------------------------------------------------------------------------------------
def compare_models(
    predictions_a: pd.DataFrame,
    predictions_b: pd.DataFrame,
    threshold_a: float,
    threshold_b: float,
    *,
    n_resamples: int = 2000,
    confidence: float = config.CONFIDENCE_LEVEL,
    seed: int = 0,
) -> ModelComparison:
    """DeLong for ROC AUC and the paired bootstrap for accuracy, sensitivity and specificity, on the common films.

    predictions_a/b: one split of each model's predictions.csv (columns path, label, score); thresholds: each
    model's own validation-chosen threshold. Raises ValueError when the models cannot be paired (see
    `pair_predictions`) or the common films lack a class.
    """
    films = pair_predictions(predictions_a, predictions_b)
    y, a, b = films.frame["label"], films.frame["score_a"], films.frame["score_b"]
    differences = [delong_test(y, a, b, confidence=confidence)]
    differences += paired_bootstrap(
        y, a, b, threshold_a, threshold_b, n_resamples=n_resamples, confidence=confidence, seed=seed
    )
    return ModelComparison(films, float(threshold_a), float(threshold_b), tuple(differences))


def format_p(p_value: float) -> str:
    """'p = 0.003', 'p < 0.001' or 'p = 1' for display."""
    if p_value is None or math.isnan(p_value):
        return "p not defined"
    if p_value < 0.001:
        return "p < 0.001"
    if p_value >= 0.9995:
        return "p = 1"
    return f"p = {p_value:.3f}"


def plain_reading(difference: PairedDifference, name_a: str, name_b: str, *, alpha: float = DEFAULT_ALPHA) -> str:
    """One sentence: "A's ROC AUC is significantly higher than B's (p = 0.003)" or "No significant difference ..."."""
    metric = METRIC_NAMES.get(difference.metric, difference.metric)
    p_text = format_p(difference.p_value)
    if difference.significant(alpha):
        direction = "higher" if difference.difference > 0 else "lower"
        return f"{name_a}'s {metric} is significantly {direction} than {name_b}'s ({p_text})."
    return f"No significant difference in {metric} between {name_a} and {name_b} ({p_text})."


def comparison_frame(comparison: ModelComparison) -> pd.DataFrame:
    """The comparison as text for a page, one row per metric: Metric, A, B (the two values), 'Difference A − B
    (95% CI)', p-value, Test (see `ModelComparison.readings` for the same in plain words)."""
    rows = []
    for d in comparison.differences:
        metric = METRIC_NAMES.get(d.metric, d.metric)
        rows.append({
            "Metric": metric[0].upper() + metric[1:],
            "A": f"{d.value_a:.3f}",
            "B": f"{d.value_b:.3f}",
            "Difference A − B (95% CI)": f"{d.difference:+.3f} ({d.ci_low:+.3f} to {d.ci_high:+.3f})",
            "p-value": format_p(d.p_value).removeprefix("p = ").removeprefix("p "),
            "Test": d.method,
        })
    return pd.DataFrame(rows)


def _check_confidence(confidence: float) -> None:
    """Raise unless 0 < confidence < 1."""
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence}.")
