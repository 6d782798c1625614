"""Bootstrap confidence intervals, by film or grouped by patient, and their formatting."""
from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np
import pandas as pd

from core import config
from core.evaluation._counts import (
    METRIC_KEYS,
    _as_arrays,
    _metrics_from_counts,
    _ratio,
)
from core.evaluation._curves import _require_both_classes


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
