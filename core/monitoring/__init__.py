"""Monitoring from the audit trail: films per day, score drift against the model's validation films, the guard's flag
rate, agreement with the clinicians' readings (Wilson 95 % CIs), and alert lines when any passes its stated limit.

Pure functions over `core.trail.Trail.frame()` (a pandas DataFrame); no Streamlit, no patient data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.trail import NOT_SCORED

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Limits:
    """Alert limits, stated on the page: drift (KS distance), guard flag rate, agreement (its CI's upper bound)."""

    ks_distance: float = 0.25
    flag_rate: float = 0.10
    agreement: float = 0.80
    min_films: int = 20  # fewer films in a day: the day's KS distance and rates are not judged


def wilson_interval(successes: int, trials: int, *, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (low, high) of a proportion; (nan, nan) for no trials."""
    if trials <= 0:
        return (math.nan, math.nan)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def ks_distance(sample: np.ndarray, reference: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov distance: the largest gap between the two empirical CDFs (scipy.stats.ks_2samp)."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(np.asarray(sample, float), np.asarray(reference, float)).statistic)


def validation_scores(model_dir: str | Path) -> np.ndarray:
    """The model's scores of its validation films (predictions.csv, split 'val')."""
    predictions = pd.read_csv(Path(model_dir) / "predictions.csv")
    return predictions.loc[predictions["split"] == "val", "score"].to_numpy(float)


def _days(frame: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(frame["created"], utc=True).dt.strftime("%Y-%m-%d")


def flagged(frame: pd.DataFrame) -> pd.Series:
    """Rows the guard flagged (its warning, whether or not the film was then refused)."""
    return frame["guard_status"].fillna("").eq("warning")


def daily(frame: pd.DataFrame, reference: np.ndarray | None = None) -> pd.DataFrame:
    """One row per day: films, scored, not scored, guard flags with the rate's Wilson CI, KS distance of the day's
    scores to `reference` (the model's validation scores)."""
    columns = ["day", "films", "scored", "not_scored", "flagged", "flag_rate", "flag_low", "flag_high", "ks_distance"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for day, group in frame.groupby(_days(frame), sort=True):
        scores = group["score"].dropna().to_numpy(float)
        flags = int(flagged(group).sum())
        low, high = wilson_interval(flags, len(group))
        ks = ks_distance(scores, reference) if reference is not None and len(scores) and len(reference) else math.nan
        rows.append([day, len(group), len(scores), int(group["decision"].eq(NOT_SCORED).sum()), flags, flags / len(group),
                     low, high, ks])
    return pd.DataFrame(rows, columns=columns)


def agreement(frame: pd.DataFrame) -> dict:
    """Clinicians' readings: agreement with the decision (n, rate, Wilson CI) and, against their final labels,
    sensitivity and specificity at the recorded threshold (n, value, CI)."""
    read = frame[frame["reading"].isin(["agree", "disagree"])]
    agreed = int(read["reading"].eq("agree").sum())
    result = {"readings": len(read), "agreement": agreed / len(read) if len(read) else math.nan,
              "agreement_ci": wilson_interval(agreed, len(read))}
    labelled = frame[frame["final_label"].isin(["NORMAL", "PNEUMONIA"]) & frame["score"].notna()]
    positive = labelled[labelled["final_label"] == "PNEUMONIA"]
    negative = labelled[labelled["final_label"] == "NORMAL"]
    caught = int((positive["decision"] == "PNEUMONIA").sum())
    cleared = int((negative["decision"] == "NORMAL").sum())
    result.update(labelled=len(labelled),
                  sensitivity=caught / len(positive) if len(positive) else math.nan,
                  sensitivity_ci=wilson_interval(caught, len(positive)), positives=len(positive),
                  specificity=cleared / len(negative) if len(negative) else math.nan,
                  specificity_ci=wilson_interval(cleared, len(negative)), negatives=len(negative))
    return result


def labelled_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """Films with a clinician's final label: film_key, model, score, threshold, label (0/1), for the site validation
    of scores (the trail keeps no film, so the films themselves are not in it)."""
    labelled = frame[frame["final_label"].isin(["NORMAL", "PNEUMONIA"]) & frame["score"].notna()]
    return pd.DataFrame({"film_key": labelled["film_key"], "model": labelled["model"], "score": labelled["score"],
                         "threshold": labelled["threshold"], "label": labelled["final_label"].eq("PNEUMONIA").astype(int)})


def alerts(days: pd.DataFrame, agreed: dict, limits: Limits = Limits()) -> list[str]:
    """Plain alert lines: a day's drift or flag rate past its limit (days with at least `min_films`), agreement whose
    whole CI lies below its limit."""
    lines = []
    judged = days[days["films"] >= limits.min_films] if not days.empty else days
    for _, day in judged.iterrows():
        if not math.isnan(day["ks_distance"]) and day["ks_distance"] > limits.ks_distance:
            lines.append(f"{day['day']}: the scores drifted from the model's validation films (KS distance "
                         f"{day['ks_distance']:.2f} > {limits.ks_distance:.2f}, {int(day['scored'])} films).")
        if day["flag_rate"] > limits.flag_rate:
            lines.append(f"{day['day']}: the guard flagged {day['flag_rate']:.0%} of films (limit {limits.flag_rate:.0%}; "
                         f"95% CI {day['flag_low']:.0%}-{day['flag_high']:.0%}).")
    high = agreed["agreement_ci"][1]
    if agreed["readings"] and not math.isnan(high) and high < limits.agreement:
        lines.append(f"Clinicians agreed with {agreed['agreement']:.0%} of {agreed['readings']} decisions (95% CI up to "
                     f"{high:.0%}, below the {limits.agreement:.0%} limit).")
    return lines
