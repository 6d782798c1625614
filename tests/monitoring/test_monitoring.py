"""Monitoring numbers checked against scipy and hand counts on known rows."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from core import monitoring


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (17, 20), (50, 50), (412, 1000)])
def test_wilson_interval_matches_scipy(k: int, n: int) -> None:
    expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert monitoring.wilson_interval(k, n) == pytest.approx((expected.low, expected.high), abs=1e-9)


def test_ks_distance_is_the_largest_gap_between_the_empirical_cdfs() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random(40), rng.random(70) ** 2
    grid = np.sort(np.r_[a, b])
    gap = np.max(np.abs(np.searchsorted(np.sort(a), grid, "right") / len(a) - np.searchsorted(np.sort(b), grid, "right") / len(b)))
    assert monitoring.ks_distance(a, b) == pytest.approx(gap)


def rows(day: str, scores, decisions, guard, readings=None, labels=None) -> pd.DataFrame:
    n = len(scores)
    return pd.DataFrame({"created": [dt.datetime.fromisoformat(day + "T10:00:00+00:00")] * n, "score": scores,
                         "decision": decisions, "guard_status": guard, "threshold": [0.5] * n,
                         "reading": readings or [None] * n, "final_label": labels or [None] * n,
                         "film_key": [f"{day}-{i}" for i in range(n)], "model": ["m"] * n})


def test_daily_counts_flags_and_alerts() -> None:
    reference = np.linspace(0, 1, 101)
    calm = rows("2026-01-01", list(np.linspace(0.01, 0.99, 25)), ["NORMAL"] * 25, ["passed"] * 25)
    drift = rows("2026-01-02", [0.99] * 18 + [None] * 4, ["PNEUMONIA"] * 18 + ["NOT SCORED"] * 4, ["passed"] * 18 + ["warning"] * 4)
    days = monitoring.daily(pd.concat([calm, drift], ignore_index=True), reference)
    assert days["films"].tolist() == [25, 22] and days["scored"].tolist() == [25, 18] and days["not_scored"].tolist() == [0, 4]
    assert days["flagged"].tolist() == [0, 4] and days["flag_rate"].iloc[1] == pytest.approx(4 / 22)
    assert days["ks_distance"].iloc[1] == pytest.approx(monitoring.ks_distance(np.full(18, 0.99), reference))
    lines = monitoring.alerts(days, monitoring.agreement(pd.concat([calm, drift])))
    assert len(lines) == 2 and all(line.startswith("2026-01-02") for line in lines)
    assert "drifted" in lines[0] and "flagged 18%" in lines[1]
    assert monitoring.alerts(days, monitoring.agreement(calm), monitoring.Limits(min_films=23)) == []  # small days not judged


def test_agreement_and_metrics_against_final_labels() -> None:
    frame = rows("2026-01-01", [0.9, 0.8, 0.2, 0.1, 0.7], ["PNEUMONIA", "PNEUMONIA", "NORMAL", "NORMAL", "PNEUMONIA"],
                 ["passed"] * 5, readings=["agree", "disagree", "agree", "agree", None],
                 labels=["PNEUMONIA", "NORMAL", "NORMAL", "PNEUMONIA", None])
    agreed = monitoring.agreement(frame)
    assert agreed["readings"] == 4 and agreed["agreement"] == 0.75
    assert agreed["agreement_ci"] == monitoring.wilson_interval(3, 4)
    assert (agreed["positives"], agreed["sensitivity"]) == (2, 0.5) and (agreed["negatives"], agreed["specificity"]) == (2, 0.5)
    labelled = monitoring.labelled_scores(frame)
    assert labelled["label"].tolist() == [1, 0, 0, 1]
