"""Paired model comparison (core.evaluation.compare): DeLong against its definition, scikit-learn and a paired bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from core.evaluation import compare


def _films(n: int = 400, *, seed: int = 0, prevalence: float = 0.6, decimals: int | None = 2):
    """Labels and two correlated, informative score vectors (rounded so that ties occur)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    shared = rng.normal(size=n)
    a = 1 / (1 + np.exp(-(1.6 * y + shared + 0.7 * rng.normal(size=n))))
    b = 1 / (1 + np.exp(-(1.1 * y + shared + 0.9 * rng.normal(size=n))))
    if decimals is not None:
        a, b = a.round(decimals), b.round(decimals)
    return y, a, b


def _direct_delong(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. 1988 straight from the definition: the pairwise kernel psi and its structural components."""
    x, z = scores[:, y == 1], scores[:, y == 0]
    m, n = x.shape[1], z.shape[1]
    v10 = np.empty_like(x)
    v01 = np.empty_like(z)
    aucs = np.empty(len(scores))
    for r in range(len(scores)):
        psi = (x[r][:, None] > z[r][None, :]) + 0.5 * (x[r][:, None] == z[r][None, :])
        v10[r] = psi.mean(axis=1)
        v01[r] = psi.mean(axis=0)
        aucs[r] = psi.mean()
    k = len(scores)
    s10 = np.array([[np.sum((v10[i] - aucs[i]) * (v10[j] - aucs[j])) / (m - 1) for j in range(k)] for i in range(k)])
    s01 = np.array([[np.sum((v01[i] - aucs[i]) * (v01[j] - aucs[j])) / (n - 1) for j in range(k)] for i in range(k)])
    return aucs, s10 / m + s01 / n


# --------------------------------------------------------------------------------------------------
# DeLong
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("decimals", [None, 2, 1])
def test_fast_delong_matches_the_direct_structural_components(decimals: int | None) -> None:
    y, a, b = _films(300, seed=1, decimals=decimals)
    c = np.round(np.random.default_rng(5).random(300), 1)  # a weak third model, heavily tied
    scores = np.vstack([a, b, c])
    aucs, cov = compare.delong_covariance(y, scores)
    expected_aucs, expected_cov = _direct_delong(y, scores)
    np.testing.assert_allclose(aucs, expected_aucs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cov, expected_cov, rtol=1e-9, atol=1e-15)
    assert cov.shape == (3, 3) and np.allclose(cov, cov.T)


def test_delong_aucs_match_scikit_learn() -> None:
    y, a, b = _films(500, seed=2)
    result = compare.delong_test(y, a, b)
    assert result.value_a == pytest.approx(skm.roc_auc_score(y, a), abs=1e-12)
    assert result.value_b == pytest.approx(skm.roc_auc_score(y, b), abs=1e-12)
    assert result.difference == pytest.approx(result.value_a - result.value_b, abs=1e-15)
    assert result.method == "DeLong" and result.n_films == 500


def test_delong_p_value_and_interval_follow_from_the_variance() -> None:
    from scipy.stats import norm

    y, a, b = _films(500, seed=3)
    _, cov = _direct_delong(y, np.vstack([a, b]))
    se = np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    result = compare.delong_test(y, a, b)
    z = result.difference / se
    assert result.p_value == pytest.approx(2 * norm.sf(abs(z)), rel=1e-9)
    assert result.ci_high - result.difference == pytest.approx(norm.ppf(0.975) * se, rel=1e-9)
    assert result.difference - result.ci_low == pytest.approx(norm.ppf(0.975) * se, rel=1e-9)


def test_delong_is_symmetric() -> None:
    y, a, b = _films(400, seed=4)
    ab, ba = compare.delong_test(y, a, b), compare.delong_test(y, b, a)
    assert ab.difference == pytest.approx(-ba.difference, abs=1e-15)
    assert ab.p_value == pytest.approx(ba.p_value, rel=1e-12)
    assert ab.ci_low == pytest.approx(-ba.ci_high, abs=1e-12)
    assert ab.ci_high == pytest.approx(-ba.ci_low, abs=1e-12)


def test_identical_models_differ_by_zero_with_p_one() -> None:
    y, a, _ = _films(300, seed=5)
    result = compare.delong_test(y, a, a.copy())
    assert result.difference == 0.0 and result.p_value == 1.0
    assert result.ci_low == result.ci_high == 0.0
    for d in compare.paired_bootstrap(y, a, a.copy(), 0.5, 0.5, n_resamples=200):
        assert d.difference == 0.0 and d.p_value == 1.0, d


def test_delong_variance_agrees_with_a_paired_bootstrap() -> None:
    """DeLong's SE of the AUC difference is the asymptotic SD of the paired bootstrap's differences."""
    y, a, b = _films(600, seed=6, decimals=None)
    delong = compare.delong_test(y, a, b)
    se = (delong.ci_high - delong.difference) / 1.959963984540054
    (boot,) = compare.paired_bootstrap(y, a, b, 0.5, 0.5, metrics=("roc_auc",), n_resamples=3000, seed=1)
    assert boot.difference == pytest.approx(delong.difference, abs=1e-12)
    width_ratio = (boot.ci_high - boot.ci_low) / (delong.ci_high - delong.ci_low)
    assert 0.85 < width_ratio < 1.15, width_ratio
    assert boot.ci_low <= boot.difference <= boot.ci_high
    assert se > 0


def test_delong_p_values_are_calibrated_under_the_null() -> None:
    """Two models drawn from the same score distribution: about 5% of the tests reject at alpha 0.05."""
    rng = np.random.default_rng(7)
    p_values = []
    for _ in range(400):
        y = (rng.random(200) < 0.5).astype(int)
        shared = rng.normal(size=200)
        a = y + shared + rng.normal(size=200)
        b = y + shared + rng.normal(size=200)
        p_values.append(compare.delong_test(y, a, b).p_value)
    rejected = np.mean(np.array(p_values) < 0.05)
    assert 0.02 <= rejected <= 0.09, rejected


def test_delong_detects_a_real_difference() -> None:
    rng = np.random.default_rng(8)
    y = (rng.random(400) < 0.5).astype(int)
    informative = y + 0.5 * rng.normal(size=400)
    noise = rng.normal(size=400)
    result = compare.delong_test(y, informative, noise)
    assert result.difference > 0.3 and result.p_value < 1e-6
    assert compare.plain_reading(result, "A", "B").startswith("A's ROC AUC is significantly higher than B's (p < 0.001)")


def test_delong_refuses_one_class() -> None:
    with pytest.raises(ValueError, match="both NORMAL and PNEUMONIA"):
        compare.delong_test(np.ones(10, int), np.random.default_rng(0).random(10), np.random.default_rng(1).random(10))


# --------------------------------------------------------------------------------------------------
# Paired bootstrap for threshold metrics
# --------------------------------------------------------------------------------------------------
def test_paired_bootstrap_values_match_scikit_learn_at_each_models_threshold() -> None:
    y, a, b = _films(500, seed=9)
    ta, tb = 0.55, 0.62
    results = {d.metric: d for d in compare.paired_bootstrap(y, a, b, ta, tb, n_resamples=500)}
    pa, pb = (a >= ta).astype(int), (b >= tb).astype(int)
    expected = {
        "accuracy": (skm.accuracy_score(y, pa), skm.accuracy_score(y, pb)),
        "recall": (skm.recall_score(y, pa), skm.recall_score(y, pb)),
        "specificity": (skm.recall_score(y, pa, pos_label=0), skm.recall_score(y, pb, pos_label=0)),
    }
    assert list(results) == list(compare.THRESHOLD_METRICS)
    for metric, (va, vb) in expected.items():
        d = results[metric]
        assert d.value_a == pytest.approx(va) and d.value_b == pytest.approx(vb)
        assert d.difference == pytest.approx(va - vb, abs=1e-12)
        assert d.ci_low <= d.difference <= d.ci_high, d
        assert d.ci_low < d.ci_high
        assert 0.0 <= d.p_value <= 1.0


def test_paired_bootstrap_is_seeded_and_symmetric() -> None:
    y, a, b = _films(300, seed=10)
    first = compare.paired_bootstrap(y, a, b, 0.5, 0.6, n_resamples=400, seed=3)
    again = compare.paired_bootstrap(y, a, b, 0.5, 0.6, n_resamples=400, seed=3)
    swapped = compare.paired_bootstrap(y, b, a, 0.6, 0.5, n_resamples=400, seed=3)
    assert first == again
    for ab, ba in zip(first, swapped):
        assert ab.difference == pytest.approx(-ba.difference)
        assert ab.ci_low == pytest.approx(-ba.ci_high) and ab.ci_high == pytest.approx(-ba.ci_low)
        assert ab.p_value == pytest.approx(ba.p_value)


def test_paired_bootstrap_p_value_inverts_the_interval() -> None:
    """Significant at 0.05 exactly when the 95% percentile interval leaves out zero."""
    rng = np.random.default_rng(11)
    y = (rng.random(600) < 0.5).astype(int)
    good = np.clip(y * 0.6 + rng.normal(0.2, 0.2, 600), 0, 1)
    weak = np.clip(y * 0.2 + rng.normal(0.4, 0.2, 600), 0, 1)
    twin = np.clip(good + rng.normal(0.0, 0.05, 600), 0, 1)  # nearly the same model
    outcomes = set()
    for other in (weak, twin):
        for d in compare.paired_bootstrap(y, good, other, 0.5, 0.5, n_resamples=2000, seed=0):
            excludes_zero = d.ci_low > 0 or d.ci_high < 0
            assert d.significant() == excludes_zero, d
            outcomes.add(d.significant())
    assert outcomes == {True, False}


def test_paired_bootstrap_keeps_the_pairing() -> None:
    """B is A with one film flipped: every resample differs by at most that film, so the CI hugs the difference."""
    y, a, _ = _films(400, seed=12)
    b = a.copy()
    first_positive = int(np.flatnonzero((y == 1) & (a >= 0.5))[0])
    b[first_positive] = 0.0  # B misses one case A catches
    (accuracy, recall, specificity) = compare.paired_bootstrap(y, a, b, 0.5, 0.5, n_resamples=500)
    assert accuracy.difference == pytest.approx(1 / 400)
    assert 0.0 <= accuracy.ci_low and accuracy.ci_high <= 4 / 400  # an unpaired bootstrap would span +-0.04
    assert specificity.difference == 0.0 and specificity.p_value == 1.0
    assert recall.difference > 0


def test_paired_bootstrap_rejects_unknown_metrics() -> None:
    y, a, b = _films(50, seed=13)
    with pytest.raises(ValueError, match="Unknown metric"):
        compare.paired_bootstrap(y, a, b, 0.5, 0.5, metrics=("f1",))


# --------------------------------------------------------------------------------------------------
# Joining predictions and the whole comparison
# --------------------------------------------------------------------------------------------------
def _frame(paths: list[str], labels: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"path": paths, "split": "test", "label": labels, "score": scores})


def test_pair_predictions_joins_on_path_whatever_the_order() -> None:
    y, a, b = _films(200, seed=14)
    paths = [f"test/img{i:03d}.jpeg" for i in range(200)]
    order = np.random.default_rng(0).permutation(200)
    frame_a = _frame(paths, y, a)
    frame_b = _frame([paths[i] for i in order], y[order], b[order]).iloc[:150]  # B scored 150 of the films
    films = compare.pair_predictions(frame_a, frame_b)
    assert films.n_films == 150 and films.only_a == 50 and films.only_b == 0
    kept = sorted(order[:150])
    np.testing.assert_array_equal(films.frame["score_a"], a[kept])
    np.testing.assert_array_equal(films.frame["score_b"], b[kept])
    np.testing.assert_array_equal(films.frame["label"], y[kept])


def test_pair_predictions_refuses_different_films() -> None:
    y, a, b = _films(50, seed=15)
    frame_a = _frame([f"test/a{i}.jpeg" for i in range(50)], y, a)
    frame_b = _frame([f"test/b{i}.jpeg" for i in range(50)], y, b)
    with pytest.raises(ValueError, match="evaluated on different films"):
        compare.pair_predictions(frame_a, frame_b)


def test_pair_predictions_refuses_conflicting_labels() -> None:
    y, a, b = _films(50, seed=16)
    paths = [f"test/img{i}.jpeg" for i in range(50)]
    with pytest.raises(ValueError, match="different labels"):
        compare.pair_predictions(_frame(paths, y, a), _frame(paths, 1 - y, b))


def test_pair_predictions_refuses_duplicated_films() -> None:
    y, a, b = _films(50, seed=17)
    paths = [f"test/img{i}.jpeg" for i in range(50)]
    paths_b = paths[:-1] + paths[:1]
    with pytest.raises(ValueError, match="more than once"):
        compare.pair_predictions(_frame(paths, y, a), _frame(paths_b, y, b))


def test_compare_models_puts_delong_first_and_the_bootstrap_after() -> None:
    y, a, b = _films(300, seed=18)
    paths = [f"test/img{i}.jpeg" for i in range(300)]
    result = compare.compare_models(_frame(paths, y, a), _frame(paths, y, b), 0.5, 0.55, n_resamples=300)
    table = result.table()
    assert list(table["metric"]) == ["roc_auc", "accuracy", "recall", "specificity"]
    assert table["method"].iloc[0] == "DeLong" and table["method"].iloc[1].startswith("paired bootstrap")
    assert (table["n_films"] == 300).all()
    assert result.threshold_a == 0.5 and result.threshold_b == 0.55
    readings = result.readings("A", "B")
    assert readings == [compare.plain_reading(d, "A", "B") for d in result.differences]
    assert "ROC AUC" in readings[0] and "specificity" in readings[3]
    shown = compare.comparison_frame(result)
    assert list(shown["Metric"]) == ["ROC AUC", "Accuracy", "Sensitivity", "Specificity"]
    d = result.differences[1]
    assert shown["Difference A − B (95% CI)"][1] == f"{d.difference:+.3f} ({d.ci_low:+.3f} to {d.ci_high:+.3f})"


def test_plain_readings() -> None:
    significant = compare.PairedDifference("recall", 0.9, 0.8, -0.1, -0.15, -0.05, 0.003, "x", 100)
    assert compare.plain_reading(significant, "A", "B") == "A's sensitivity is significantly lower than B's (p = 0.003)."
    null = compare.PairedDifference("roc_auc", 0.9, 0.89, 0.01, -0.01, 0.03, 0.41, "DeLong", 100)
    assert compare.plain_reading(null, "A", "B") == "No significant difference in ROC AUC between A and B (p = 0.410)."
    assert compare.format_p(1.0) == "p = 1" and compare.format_p(0.0002) == "p < 0.001"
