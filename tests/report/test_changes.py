"""core.report recommendation_change: what changed per 100 children when the recommended model changed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import recall_score

from core import report
from tests.report.test_report import _split, _threshold, write_report_models


def _history(path: Path, *models: str) -> Path:
    items = [{"model": m, "since": f"2026-0{i + 1}-01", "rule": "test"} for i, m in enumerate(models)]
    path.write_text(json.dumps({"recommendations": items}))
    return path


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, data_root) -> Path:
    return write_report_models(tmp_path_factory.mktemp("models"), data_root)


def _rates(models_dir: Path, name: str) -> tuple[float, float]:
    """(false alarms per 100 healthy, missed per 100 sick) on TEST, from scikit-learn."""
    test = _split(models_dir, name, "test")
    called = (test["score"] >= _threshold(models_dir, name)).astype(int)
    return 100 * (1 - recall_score(test["label"], called, pos_label=0)), 100 * (1 - recall_score(test["label"], called))


def test_change_compares_the_previous_recommendation_on_the_same_test_films(models_dir, tmp_path):
    history = _history(tmp_path / "h.json", "weak", "strong")
    change = report.recommendation_change(models_dir, "strong", history_file=history, n_resamples=300)
    assert (change.previous, change.current, change.previous_since) == ("weak", "strong", "2026-02-01")
    before, after = _rates(models_dir, "weak"), _rates(models_dir, "strong")
    assert change.before.false_alarms == pytest.approx(before[0]) and 100 - change.before.caught == pytest.approx(before[1])
    assert change.after.false_alarms == pytest.approx(after[0]) and 100 - change.after.caught == pytest.approx(after[1])
    value, low, high = change.false_alarms_difference
    assert value == pytest.approx(after[0] - before[0]) and low <= value <= high
    value, low, high = change.missed_difference
    assert value == pytest.approx(after[1] - before[1]) and low <= value <= high
    assert change.n_films == len(_split(models_dir, "strong", "test"))
    text = " ".join(change.sentences())
    assert f"wrongly flagged {before[0]:.0f} (95% CI" in text and f"wrongly flags {after[0]:.0f} (95% CI" in text
    assert "TEST split" in text


def test_no_change_to_report_without_another_shipped_recommendation(models_dir, tmp_path):
    assert report.recommendation_change(models_dir, "strong", history_file=_history(tmp_path / "a.json", "strong")) is None
    assert report.recommendation_change(models_dir, "strong", history_file=_history(tmp_path / "b.json", "gone", "strong")) is None
    assert report.recommendation_change(models_dir, "strong", history_file=tmp_path / "absent.json") is None
    # The most recent other model that still ships is the one compared with.
    change = report.recommendation_change(models_dir, "strong", history_file=_history(tmp_path / "c.json", "weak", "gone", "strong"))
    assert change.previous == "weak" and change.previous_since == "2026-02-01"


def test_the_shipped_history_names_shipped_models():
    project = Path(__file__).resolve().parents[2]
    for item in report.recommendation_history():
        assert (project / "models" / item["model"] / "card.json").is_file(), item
        assert item["since"] and item["rule"]


def test_the_change_is_computed_once_per_state_of_the_files(models_dir, tmp_path):
    history = _history(tmp_path / "h.json", "weak", "strong")
    first = report.recommendation_change(models_dir, "strong", history_file=history, n_resamples=200)
    assert report.recommendation_change(models_dir, "strong", history_file=history, n_resamples=200) is first
    # An edit of the history is seen at once (no server restart): the only previous model is gone now.
    _history(history, "gone", "strong")
    assert report.recommendation_change(models_dir, "strong", history_file=history, n_resamples=200) is None


def test_the_shipped_history_gives_the_overview_a_change_to_show():
    project = Path(__file__).resolve().parents[2]
    history = report.recommendation_history()
    current = report.recommended_name(report.rank_models(project / "models"))
    assert history[-1]["model"] == current
    change = report.recommendation_change(project / "models", current, n_resamples=200)
    assert change.previous == history[-2]["model"] and change.current == current
    assert change.n_films == 624 and len(change.sentences()) == 3
    assert not any(sign + "0 " in sentence for sentence in change.sentences() for sign in "+-")  # no "-0" / "+0"


def test_the_sentences_say_which_way_and_whether_it_could_be_chance(models_dir, tmp_path):
    import dataclasses

    change = report.recommendation_change(models_dir, "strong", history_file=_history(tmp_path / "h.json", "weak", "strong"),
                                          n_resamples=200)
    worded = dataclasses.replace(change, false_alarms_difference=(-5.2, -7.4, -1.6), missed_difference=(1.0, -0.4, 2.2))
    last = worded.sentences()[-1]
    assert "5 fewer false alarms per 100 (95% CI 2 to 7 fewer), more than chance" in last
    assert "the difference in missed children (+1 per 100, 95% CI 0 to +2) could be chance" in last
    worded = dataclasses.replace(change, false_alarms_difference=(3.0, 0.6, 5.5))
    assert "3 more false alarms per 100 (95% CI 1 to 6 more), more than chance" in worded.sentences()[-1]
