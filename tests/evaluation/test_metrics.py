"""core.evaluation.metrics against scikit-learn on random and tied scores, plus the edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from core.evaluation import metrics


def _sample(n: int, *, seed: int, tied: bool = False, prevalence: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Labels and overlapping scores in [0, 1]; `tied` rounds scores so many share a value."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0.0, 1.0)
    if tied:
        s = np.round(s, 1)
    return y, s


def _sk_at(y: np.ndarray, s: np.ndarray, t: float) -> dict:
    """Reference metrics from scikit-learn at threshold t (positive when score >= t)."""
    pred = (s >= t).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    p, r, f, _ = skm.precision_recall_fscore_support(y, pred, labels=[1], zero_division=0.0)
    npv, spec, _, _ = skm.precision_recall_fscore_support(y, pred, labels=[0], zero_division=0.0)
    return {
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "accuracy": skm.accuracy_score(y, pred) if len(y) else 0.0,
        "precision": p[0], "recall": r[0], "f1": f[0], "npv": npv[0], "specificity": spec[0],
    }


CASES = [
    pytest.param(dict(n=800, seed=1), id="random"),
    pytest.param(dict(n=800, seed=2, tied=True), id="tied"),
    pytest.param(dict(n=300, seed=3, prevalence=0.1), id="rare-positives"),
]


@pytest.mark.parametrize("kwargs", CASES)
def test_sweep_and_metrics_at_threshold_match_sklearn(kwargs: dict) -> None:
    y, s = _sample(**kwargs)
    sweep = metrics.ThresholdSweep.from_scores(y, s)
    # Thresholds inside, exactly on tied values, below the minimum and above the maximum.
    thresholds = [0.0, 0.1, 0.2, 0.35, 0.5, 0.5000001, 0.73, 0.9, s.min(), s.max(), s.min() - 1, s.max() + 1]
    for t in thresholds:
        expected = _sk_at(y, s, t)
        for got in (sweep.at(t), metrics.metrics_at_threshold(y, s, t)):
            for key, value in expected.items():
                assert got[key] == pytest.approx(value, abs=1e-12), (t, key)


@pytest.mark.parametrize("kwargs", CASES)
def test_sweep_table_matches_sklearn_roc_and_pr(kwargs: dict) -> None:
    y, s = _sample(**kwargs)
    table = metrics.ThresholdSweep.from_scores(y, s).table()
    fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=False)
    # scikit-learn's first row is "nothing positive" at +inf; ours is just above the top score.
    assert table["threshold"].iloc[0] > s.max() and math.isinf(thr[0])
    np.testing.assert_allclose(table["threshold"].to_numpy()[1:], thr[1:])
    np.testing.assert_allclose(table["fpr"].to_numpy(), fpr)
    np.testing.assert_allclose(table["recall"].to_numpy(), tpr)
    precision, recall, pr_thr = skm.precision_recall_curve(y, s, drop_intermediate=False)
    # precision_recall_curve is ascending in threshold and omits thresholds above the last positive's score.
    rows = table.iloc[1:].set_index("threshold")
    np.testing.assert_allclose(rows.loc[pr_thr, "precision"].to_numpy(), precision[:-1])
    np.testing.assert_allclose(rows.loc[pr_thr, "recall"].to_numpy(), recall[:-1])
    # Every row's F1 is scikit-learn's F1 at that threshold.
    for _, row in table.sample(min(25, len(table)), random_state=0).iterrows():
        assert row["f1"] == pytest.approx(skm.f1_score(y, s >= row["threshold"], zero_division=0.0))


def test_vectorised_counts_equal_scalar_lookups() -> None:
    y, s = _sample(500, seed=4, tied=True)
    sweep = metrics.ThresholdSweep.from_scores(y, s)
    grid = np.linspace(-0.1, 1.1, 37)
    tp, fp, tn, fn = sweep.counts(grid)
    for i, t in enumerate(grid):
        at = sweep.at(t)
        assert (tp[i], fp[i], tn[i], fn[i]) == (at["tp"], at["fp"], at["tn"], at["fn"])


def test_prevalence_reweighting() -> None:
    y, s = _sample(1000, seed=5)
    sweep = metrics.ThresholdSweep.from_scores(y, s)
    plain = sweep.at(0.5)
    # At the sample's own prevalence, Bayes' rule gives back the sample PPV/NPV.
    same = sweep.at(0.5, prevalence=sweep.prevalence)
    assert same["precision"] == pytest.approx(plain["precision"])
    assert same["npv"] == pytest.approx(plain["npv"])
    # At 1% prevalence: PPV = sens p / (sens p + (1 - spec)(1 - p)); recall/specificity unchanged.
    rare = sweep.at(0.5, prevalence=0.01)
    sens, spec = plain["recall"], plain["specificity"]
    assert rare["precision"] == pytest.approx(sens * 0.01 / (sens * 0.01 + (1 - spec) * 0.99))
    assert rare["npv"] == pytest.approx(spec * 0.99 / (spec * 0.99 + (1 - sens) * 0.01))
    assert rare["precision"] < plain["precision"] and rare["npv"] > plain["npv"]
    assert (rare["recall"], rare["specificity"]) == (sens, spec)
    table = sweep.table(prevalence=0.01)
    row = table.loc[table["threshold"] == sweep.thresholds[sweep.thresholds >= 0.5][-1]].iloc[0]
    assert row["precision"] == pytest.approx(rare["precision"])
    assert metrics.metrics_at_threshold(y, s, 0.5, prevalence=0.01)["precision"] == pytest.approx(rare["precision"])
    with pytest.raises(ValueError, match="prevalence"):
        sweep.at(0.5, prevalence=1.5)


def _brute_force_rule(y: np.ndarray, s: np.ndarray, rule: str, target: float | None) -> float:
    """Evaluate every candidate threshold with scikit-learn and apply the rule literally."""
    candidates = sorted(set(s.tolist()) | {np.nextafter(s.max(), np.inf)}, reverse=True)
    rows = [_sk_at(y, s, t) | {"t": t} for t in candidates]
    if rule == "f1":
        key = lambda r: r["f1"]  # noqa: E731
    elif rule == "youden":
        key = lambda r: r["recall"] + r["specificity"] - 1  # noqa: E731
    elif rule == "sensitivity":
        return max(r["t"] for r in rows if r["recall"] >= target)
    else:
        ok = [r for r in rows if r["specificity"] >= target]
        best = max(r["recall"] for r in ok)
        return max(r["t"] for r in ok if r["recall"] == best)
    best = max(key(r) for r in rows)
    return max(r["t"] for r in rows if key(r) == pytest.approx(best, abs=1e-12))


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize(
    ("rule", "target"), [("f1", None), ("youden", None), ("sensitivity", 0.95), ("specificity", 0.9)]
)
def test_choose_threshold_matches_brute_force(rule: str, target: float | None, tied: bool) -> None:
    y, s = _sample(150, seed=6, tied=tied)
    chosen = metrics.choose_threshold(y, s, rule, target=target)
    assert chosen == _brute_force_rule(y, s, rule, target)
    at = _sk_at(y, s, chosen)
    if rule == "sensitivity":
        assert at["recall"] >= 0.95
    if rule == "specificity":
        assert at["specificity"] >= 0.9


def test_choose_threshold_errors() -> None:
    y, s = _sample(100, seed=7)
    with pytest.raises(ValueError, match="Unknown threshold rule"):
        metrics.choose_threshold(y, s, "accuracy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target"):
        metrics.choose_threshold(y, s, "sensitivity")
    with pytest.raises(ValueError, match="both classes"):
        metrics.choose_threshold(np.ones(10, int), s[:10], "f1")


def test_operating_points_are_the_rules() -> None:
    y, s = _sample(400, seed=8)
    points = metrics.operating_points(y, s)
    assert list(points.values()) == [
        metrics.choose_threshold(y, s, "f1"),
        metrics.choose_threshold(y, s, "youden"),
        metrics.choose_threshold(y, s, "sensitivity", target=0.95),
        metrics.choose_threshold(y, s, "specificity", target=0.90),
    ]


@pytest.mark.parametrize("tied", [False, True])
def test_summarize_with_ci_values_match_sklearn(tied: bool) -> None:
    y, s = _sample(600, seed=9, tied=tied)
    t = 0.5
    summary = metrics.summarize_with_ci(y, s, t, n_resamples=300, seed=1)
    assert tuple(summary) == metrics.METRIC_KEYS
    ref = _sk_at(y, s, t) | {
        "roc_auc": skm.roc_auc_score(y, s),
        "pr_auc": skm.average_precision_score(y, s),
        "brier": skm.brier_score_loss(y, s),
    }
    for key, entry in summary.items():
        assert entry["value"] == pytest.approx(ref[key], abs=1e-12), key
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], key
        assert entry["ci_high"] - entry["ci_low"] < 0.2, key
    # Same seed, same intervals; another seed, (slightly) different ones.
    assert metrics.summarize_with_ci(y, s, t, n_resamples=300, seed=1) == summary
    assert metrics.summarize_with_ci(y, s, t, n_resamples=300, seed=2)["roc_auc"] != summary["roc_auc"]


def test_batched_bootstrap_statistics_equal_sklearn_per_resample() -> None:
    """The vectorised AUC / AP / Brier inside the bootstrap equal scikit-learn on each resample (ties included)."""
    y, s = _sample(200, seed=10, tied=True)
    neg, pos = s[y == 0], s[y == 1]
    rng = np.random.default_rng(0)
    neg_r = neg[rng.integers(0, len(neg), (5, len(neg)))]
    pos_r = pos[rng.integers(0, len(pos), (5, len(pos)))]
    stats = metrics._batched_statistics(neg_r, pos_r, 0.5)
    assert stats.shape == (len(metrics.METRIC_KEYS), 5)
    for b in range(5):
        yb = np.r_[np.zeros(len(neg)), np.ones(len(pos))].astype(int)
        sb = np.r_[neg_r[b], pos_r[b]]
        ref = _sk_at(yb, sb, 0.5) | {
            "roc_auc": skm.roc_auc_score(yb, sb),
            "pr_auc": skm.average_precision_score(yb, sb),
            "brier": skm.brier_score_loss(yb, sb),
        }
        for i, key in enumerate(metrics.METRIC_KEYS):
            assert stats[i, b] == pytest.approx(ref[key], abs=1e-12), key


def test_curves_and_scalar_scores_match_sklearn() -> None:
    y, s = _sample(500, seed=11, tied=True)
    roc = metrics.roc_curve_frame(y, s)
    fpr, tpr, thr = skm.roc_curve(y, s)
    np.testing.assert_array_equal(roc["fpr"], fpr)
    np.testing.assert_array_equal(roc["tpr"], tpr)
    np.testing.assert_array_equal(roc["threshold"], thr)
    pr = metrics.pr_curve_frame(y, s)
    precision, recall, _ = skm.precision_recall_curve(y, s)
    np.testing.assert_array_equal(pr["precision"], precision)
    np.testing.assert_array_equal(pr["recall"], recall)
    assert metrics.roc_auc(y, s) == skm.roc_auc_score(y, s)
    assert metrics.pr_auc(y, s) == skm.average_precision_score(y, s)
    assert metrics.brier_score(y, s) == skm.brier_score_loss(y, s)


def test_confusion_matrix_and_report_match_sklearn() -> None:
    y, s = _sample(300, seed=12)
    cm = metrics.confusion_matrix_frame(y, s, 0.42)
    np.testing.assert_array_equal(cm.to_numpy(), skm.confusion_matrix(y, s >= 0.42, labels=[0, 1]))
    assert list(cm.index) == ["actual NORMAL", "actual PNEUMONIA"]
    report = metrics.classification_report_frame(y, s, 0.42)
    ref = skm.classification_report(y, s >= 0.42, output_dict=True, target_names=["NORMAL", "PNEUMONIA"])
    assert report.loc["PNEUMONIA", "recall"] == pytest.approx(ref["PNEUMONIA"]["recall"])
    assert report.loc["NORMAL", "precision"] == pytest.approx(ref["NORMAL"]["precision"])
    assert report.loc["PNEUMONIA", "support"] == (y == 1).sum()


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_calibration_frame_matches_sklearn(strategy: str) -> None:
    y, s = _sample(700, seed=13)
    frame = metrics.calibration_frame(y, s, n_bins=8, strategy=strategy)
    fraction, mean_pred = calibration_curve(y, s, n_bins=8, strategy=strategy)
    np.testing.assert_allclose(frame["fraction_positive"], fraction)
    np.testing.assert_allclose(frame["mean_predicted"], mean_pred)
    assert frame["count"].sum() == len(y) and (frame["count"] > 0).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.calibration_frame(y, s + 2)


def test_decision_curve_net_benefit() -> None:
    y, s = _sample(400, seed=14)
    frame = metrics.decision_curve(y, s, thresholds=np.array([0.1, 0.3, 0.5, 0.8]))
    n, prev = len(y), y.mean()
    for _, row in frame.iterrows():
        pt = row["threshold"]
        tn, fp, fn, tp = skm.confusion_matrix(y, s >= pt, labels=[0, 1]).ravel()
        assert row["model"] == pytest.approx(tp / n - fp / n * pt / (1 - pt))
        assert row["treat_all"] == pytest.approx(prev - (1 - prev) * pt / (1 - pt))
        assert row["treat_none"] == 0.0
    assert len(metrics.decision_curve(y, s)) == 99


def test_per_population_natural_frequencies() -> None:
    freq = metrics.per_population(0.9, 0.8, 0.05, population=1000)
    assert freq["cases"] == pytest.approx(50) and freq["healthy"] == pytest.approx(950)
    assert freq["caught"] == pytest.approx(45) and freq["missed"] == pytest.approx(5)
    assert freq["false_alarms"] == pytest.approx(190) and freq["correctly_cleared"] == pytest.approx(760)
    assert freq["flagged"] == pytest.approx(235)
    with pytest.raises(ValueError, match="prevalence"):
        metrics.per_population(0.9, 0.8, 0.0)


def test_edge_cases_all_one_class_and_empty() -> None:
    ones = np.ones(20, int)
    s = np.linspace(0, 1, 20)
    sweep = metrics.ThresholdSweep.from_scores(ones, s)
    at = sweep.at(0.5)
    ref = _sk_at(ones, s, 0.5)
    for key in ("tp", "fp", "tn", "fn", "precision", "recall", "f1", "accuracy"):
        assert at[key] == pytest.approx(ref[key])
    assert at["specificity"] == 0.0 and at["npv"] == 0.0  # no negatives: zero_division
    assert math.isnan(metrics.ThresholdSweep.from_scores([], []).prevalence)
    empty = metrics.ThresholdSweep.from_scores([], []).at(0.5)
    assert (empty["tp"], empty["fp"], empty["tn"], empty["fn"], empty["accuracy"]) == (0, 0, 0, 0, 0.0)
    assert len(metrics.ThresholdSweep.from_scores([], []).table()) == 1
    assert metrics.metrics_at_threshold([], [], 0.5)["f1"] == 0.0
    for func in (metrics.roc_auc, metrics.pr_auc, metrics.roc_curve_frame):
        with pytest.raises(ValueError, match="both"):
            func(ones, s)
    with pytest.raises(ValueError, match="both"):
        metrics.summarize_with_ci(ones, s, 0.5, n_resamples=10)
    with pytest.raises(ValueError, match="at least one"):
        metrics.brier_score([], [])


def test_input_validation_messages() -> None:
    with pytest.raises(ValueError, match="one score per label"):
        metrics.metrics_at_threshold([0, 1], [0.2], 0.5)
    with pytest.raises(ValueError, match="only 0"):
        metrics.metrics_at_threshold([0, 2], [0.2, 0.3], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        metrics.ThresholdSweep.from_scores([0, 1], [0.2, float("nan")])
    with pytest.raises(ValueError, match="1-D"):
        metrics.ThresholdSweep.from_scores([[0, 1]], [[0.2, 0.3]])


def test_format_ci() -> None:
    assert metrics.format_ci({"value": 0.9312, "ci_low": 0.912, "ci_high": 0.95}) == "0.931 (0.912–0.950)"
    assert metrics.format_ci({"value": 0.5, "ci_low": float("nan"), "ci_high": 0.6}, digits=2) == "0.50"
    assert metrics.format_ci({}) == "—"


@pytest.mark.parametrize("kwargs", CASES)
def test_compact_sweep_answers_like_sklearn_at_every_threshold(kwargs: dict) -> None:
    """The compact sweep the browser gets: a lower bound in its distinct scores gives sklearn's confusion counts."""
    import bisect
    import json

    y, s = _sample(**kwargs)
    compact = json.loads(json.dumps(metrics.ThresholdSweep.from_scores(y, s).compact()))  # what the browser parses
    assert compact["scores"] == sorted(set(s.tolist()))
    assert len(compact["neg_below"]) == len(compact["pos_below"]) == len(compact["scores"]) + 1
    for t in [0.0, 0.2, 0.5, 0.5000001, 0.999, s.min(), s.max(), s.max() + 1, *s[:20]]:
        i = bisect.bisect_left(compact["scores"], float(t))  # the widget's lowerBound
        fn, tn = compact["pos_below"][i], compact["neg_below"][i]
        expected = _sk_at(y, s, t)
        assert (compact["n_pos"] - fn, compact["n_neg"] - tn, tn, fn) == tuple(
            expected[k] for k in ("tp", "fp", "tn", "fn")), t


def test_operating_point_summary_is_sklearn_formatted() -> None:
    y, s = _sample(500, seed=7)
    sweep = metrics.ThresholdSweep.from_scores(y, s)
    for t, prevalence in ((0.4, None), (0.61, 0.01), (0.0625, 0.05)):
        got = metrics.operating_point_summary(sweep, t, prevalence=prevalence)
        expected = _sk_at(y, s, t)
        assert got["threshold"] == f"{t:.4f}"
        for key in ("recall", "specificity", "precision", "npv", "f1", "accuracy"):
            assert got[key] == f"{expected[key]:.3f}", key
        assert [got[k] for k in ("tn", "fp", "fn", "tp")] == [str(expected[k]) for k in ("tn", "fp", "fn", "tp")]
        p = y.mean() if prevalence is None else prevalence
        sens, spec = expected["recall"], expected["specificity"]
        assert float(got["ppv_at_prevalence"]) == pytest.approx(sens * p / (sens * p + (1 - spec) * (1 - p)), abs=5e-4)
        assert float(got["caught"]) == pytest.approx(1000 * p * sens, abs=0.5)
        assert float(got["false_alarms"]) == pytest.approx(1000 * (1 - p) * (1 - spec), abs=0.5)
