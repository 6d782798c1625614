"""Threshold presets and prevalence tables (core.evaluation.presets), checked against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from core.evaluation import metrics
from core.evaluation.presets import OWN_LABEL, at_prevalence, merge_presets, prevalence_table, rule_presets, threshold_presets


@pytest.fixture()
def sample() -> tuple[np.ndarray, np.ndarray]:
    """A seeded sample of 300 cases (120 positive) with overlapping scores: a unit-test fixture, not a result."""
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(180, int), np.ones(120, int)]
    scores = np.clip(np.r_[rng.normal(0.35, 0.18, 180), rng.normal(0.7, 0.18, 120)], 0, 1)
    return y, scores


def _weights(y: np.ndarray, prevalence: float) -> np.ndarray:
    """Sample weights that give the positives `prevalence` of the total weight: the split re-weighted."""
    return np.where(y == 1, prevalence / (y == 1).sum(), (1 - prevalence) / (y == 0).sum())


@pytest.mark.parametrize("prevalence", [0.01, 0.05, 0.4])
def test_reweighted_metrics_equal_scikit_learn_with_class_weights(sample, prevalence: float) -> None:
    y, scores = sample
    called = (scores >= 0.5).astype(int)
    sens, spec = recall_score(y, called), recall_score(1 - y, 1 - called)
    weights = _weights(y, prevalence)
    got = at_prevalence(sens, spec, prevalence)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, called, sample_weight=weights))
    assert got["precision"] == pytest.approx(precision_score(y, called, sample_weight=weights))
    assert got["npv"] == pytest.approx(precision_score(1 - y, 1 - called, sample_weight=weights))
    assert got["f1"] == pytest.approx(f1_score(y, called, sample_weight=weights))


def test_at_the_splits_own_prevalence_nothing_changes(sample) -> None:
    y, scores = sample
    sweep = metrics.ThresholdSweep.from_scores(y, scores)
    at = sweep.at(0.5)
    got = at_prevalence(at["recall"], at["specificity"], sweep.prevalence)
    for key in ("precision", "npv", "accuracy", "f1"):
        assert got[key] == pytest.approx(at[key])


def test_prevalence_table_shows_counts_as_whole_numbers_and_reweights_every_dependent_row(sample) -> None:
    y, scores = sample
    sweep = metrics.ThresholdSweep.from_scores(y, scores)
    table = prevalence_table(sweep, 0.5, 0.01, split_name="TEST").set_index("Measure")
    split_column, weighted_column = table.columns[0], table.columns[1]
    called = scores >= 0.5
    assert table.loc["False alarms (false positives)", split_column] == str(int((called & (y == 0)).sum()))
    assert table.loc["Pneumonia caught (true positives)", split_column] == str(int((called & (y == 1)).sum()))
    weights = _weights(y, 0.01)
    assert float(table.loc["Accuracy", weighted_column]) == pytest.approx(
        accuracy_score(y, called, sample_weight=weights), abs=5e-4)
    assert float(table.loc["F1", weighted_column]) == pytest.approx(f1_score(y, called, sample_weight=weights), abs=5e-4)
    assert float(table.loc["Sensitivity (recall)", weighted_column]) == pytest.approx(recall_score(y, called), abs=5e-4)
    for row in table.index:
        for value in table.loc[row, [split_column, weighted_column]]:
            assert not value.endswith(".0000"), (row, value)
    assert set(table.loc[["PPV (precision)", "NPV", "Accuracy", "F1"], "Depends on prevalence?"]) == {"yes"}


def test_coinciding_presets_are_merged_in_order() -> None:
    merged = merge_presets([("A", 0.3), ("B", 0.355), ("C", 0.355), ("D", 0.3550000001), ("E", 0.9)])
    assert merged == [(("A",), 0.3), (("B", "C", "D"), 0.355), (("E",), 0.9)]


def test_each_preset_reports_the_split_it_was_chosen_on_and_the_split_shown(sample) -> None:
    y, scores = sample
    half = len(y) // 2
    order = np.random.default_rng(0).permutation(len(y))
    val, test = order[:half], order[half:]
    candidates = rule_presets(y[val], scores[val], own_threshold=0.5)
    assert candidates[0] == (OWN_LABEL, 0.5)
    presets = threshold_presets(metrics.ThresholdSweep.from_scores(y[val], scores[val]),
                                metrics.ThresholdSweep.from_scores(y[test], scores[test]),
                                candidates=candidates, chosen_on="VALIDATION", shown_on="TEST")
    assert len({round(p.threshold, 6) for p in presets}) == len(presets)
    for preset in presets:
        called = scores[test] >= preset.threshold
        assert preset.shown["specificity"] == pytest.approx(recall_score(1 - y[test], 1 - called))
        called_val = scores[val] >= preset.threshold
        assert preset.chosen["recall"] == pytest.approx(recall_score(y[val], called_val))
        assert "VALIDATION" in preset.gives() and "TEST" in preset.gives()
    spec_rule = next(p for p in presets if any(label.startswith("Specificity") for label in p.labels))
    assert spec_rule.chosen["specificity"] >= 0.90
