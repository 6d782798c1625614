"""core.evaluation.operating_points: calibration fits against direct computations, rules against core.evaluation.metrics, test numbers
against scikit-learn."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.metrics import accuracy_score, recall_score

from core.evaluation import metrics, operating_points


def _labels_and_logits(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, n)
    return (rng.random(n) < expit(z)).astype(int), z  # labels drawn from calibrated probabilities sigmoid(z)


def test_temperature_recovers_an_overconfident_model_and_minimises_log_loss() -> None:
    labels, z = _labels_and_logits()
    scores = expit(2.5 * z)  # overconfident by a factor 2.5: the best temperature is about 2.5
    t = operating_points.fit_temperature(labels, scores)
    assert t == pytest.approx(2.5, rel=0.1)

    def log_loss(temperature: float) -> float:
        p = np.clip(expit(operating_points.logit(scores) / temperature), 1e-7, 1 - 1e-7)
        return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))

    grid = np.exp(np.linspace(np.log(0.5), np.log(10.0), 2001))
    assert log_loss(t) <= min(log_loss(g) for g in grid) + 1e-9


def test_platt_recovers_slope_and_intercept_and_its_threshold_is_where_p_crosses_half() -> None:
    labels, z = _labels_and_logits(seed=1)
    scores = expit((z - 0.8) / 0.5)  # calibrated P = sigmoid(0.5 * logit(score) + 0.8)
    a, b = operating_points.fit_platt(labels, scores)
    assert a == pytest.approx(0.5, rel=0.1) and b == pytest.approx(0.8, abs=0.15)
    threshold = operating_points.platt_threshold(a, b)
    assert expit(a * operating_points.logit(np.array([threshold]))[0] + b) == pytest.approx(0.5, abs=1e-9)
    with pytest.raises(ValueError, match="wrong way round"):
        operating_points.platt_threshold(-1.0, 0.0)


def test_fits_need_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        operating_points.fit_temperature(np.ones(5), np.full(5, 0.7))
    with pytest.raises(ValueError, match="both classes"):
        operating_points.fit_platt(np.zeros(5), np.full(5, 0.2))


def _model_folder(root: Path, *, with_views: bool = True) -> Path:
    rng = np.random.default_rng(3)
    folder = root / "m"
    folder.mkdir(parents=True)
    rows = []
    for split, shift in (("val", 0.0), ("test", 0.6)):  # test normals drift towards pneumonia
        labels = rng.integers(0, 2, 300)
        scores = expit(rng.normal(np.where(labels == 1, 2.0, -2.0 + shift), 1.0))
        rows += [{"path": f"{split}/{i}.png", "split": split, "label": int(y), "score": float(s)}
                 for i, (y, s) in enumerate(zip(labels, scores))]
    pd.DataFrame(rows).to_csv(folder / "predictions.csv", index=False)
    if with_views:
        labels = rng.integers(0, 2, 600)
        scores = expit(rng.normal(np.where(labels == 1, 1.5, -1.5), 1.3))
        pd.DataFrame({"path": [f"v{i}" for i in range(600)], "view": 1, "label": labels, "score": scores}).to_csv(
            folder / "threshold_views.csv", index=False)
    return folder


def test_each_rule_fixes_its_threshold_on_validation_and_reports_test_like_scikit_learn(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path)
    table = operating_points.study_model(folder, n_resamples=200).set_index("rule")
    assert list(table.index) == list(operating_points.RULES)
    predictions = pd.read_csv(folder / "predictions.csv")
    val, test = predictions[predictions["split"] == "val"], predictions[predictions["split"] == "test"]
    views = pd.read_csv(folder / "threshold_views.csv")
    assert table.loc["spec95-val", "threshold"] == metrics.choose_threshold(val["label"], val["score"], "specificity", target=0.95)
    assert table.loc["spec95-views", "threshold"] == metrics.choose_threshold(views["label"], views["score"], "specificity", target=0.95)
    assert table.loc["youden-views", "threshold"] == metrics.choose_threshold(views["label"], views["score"], "youden")
    assert table.loc["temperature-views", "threshold"] == 0.5 and table.loc["temperature-views", "temperature"] > 0
    assert math.isnan(table.loc["spec95-val", "temperature"])
    for rule, row in table.iterrows():
        called = (test["score"] >= row["threshold"]).astype(int)
        assert row["test_accuracy"] == pytest.approx(accuracy_score(test["label"], called)), rule
        assert row["test_sensitivity"] == pytest.approx(recall_score(test["label"], called)), rule
        assert row["test_specificity"] == pytest.approx(recall_score(1 - test["label"], 1 - called)), rule
        assert row["test_specificity_low"] <= row["test_specificity"] <= row["test_specificity_high"]
        val_called = (val["score"] >= row["threshold"]).astype(int)
        assert row["val_sensitivity"] == pytest.approx(recall_score(val["label"], val_called)), rule


def test_models_without_views_get_the_validation_rule_only_and_the_cli_writes_json(tmp_path: Path, capsys) -> None:
    folder = _model_folder(tmp_path, with_views=False)
    assert operating_points.study_model(folder, n_resamples=50)["rule"].tolist() == ["spec95-val"]
    out = tmp_path / "points.json"
    assert operating_points.main([str(folder), str(tmp_path / "not-a-model"), "--json", str(out), "--markdown",
                                  "--resamples", "50"]) == 0
    payload = json.loads(out.read_text())
    assert [row["rule"] for row in payload["rows"]] == ["spec95-val"] and set(payload["rules"]) == set(operating_points.RULES)
    assert "| `m` | spec95-val |" in capsys.readouterr().out
    assert operating_points.main([str(tmp_path / "not-a-model")]) == 2
