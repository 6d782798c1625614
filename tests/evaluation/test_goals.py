"""core.evaluation.goals: each metric against the goal set for the recommended model, with its CI and verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, recall_score, roc_auc_score

from core.evaluation import goals
from core.models import cards

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _card(name: str = "m", **test: tuple[float, float, float]) -> dict:
    metrics = {k: {"value": v, "ci_low": lo, "ci_high": hi} for k, (v, lo, hi) in test.items()}
    return {"name": name, "metrics": {"test": metrics}, "threshold": {"value": 0.5}}


def test_verdicts_at_the_boundaries():
    card = _card(roc_auc=(0.975, 0.96, 0.99), accuracy=(0.92, 0.90, 0.93), recall=(0.94, 0.92, 0.949),
                 specificity=(0.5, 0.4, float("nan")))
    verdicts = {c.metric: c.verdict for c in goals.goal_checks(card)}
    # Equal to the goal is met; a CI that reaches it is within reach; a CI wholly below it (or none) is not met.
    assert verdicts == {"roc_auc": "met", "accuracy": "within reach", "recall": "not met", "specificity": "not met"}
    assert goals.goals_met(card) == 1
    section = goals.card_goal_section(card)
    assert "| ROC AUC | >= 0.975 | 0.975 (0.960–0.990) | met |" in section
    assert "| accuracy | >= 0.93 | 0.920 (0.900–0.930) | within reach |" in section
    assert "1 of 4 goals met" in section


def test_the_table_marks_the_recommended_model():
    a = _card("a", roc_auc=(0.98, 0.97, 0.99), accuracy=(0.95, 0.94, 0.96), recall=(0.96, 0.95, 0.97),
              specificity=(0.9, 0.88, 0.92))
    b = _card("b", roc_auc=(0.9, 0.8, 0.95), accuracy=(0.9, 0.8, 0.95), recall=(0.9, 0.8, 0.95),
              specificity=(0.9, 0.8, 0.95))
    no_metrics = {"name": "c", "threshold": {"value": 0.5}}  # a card written by another tool: left out
    assert not goals.has_goal_metrics(no_metrics) and goals.goal_checks(no_metrics) == []
    lines = goals.goals_table([a, no_metrics, b], recommended="b").splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| `a` |") and lines[2].endswith("| 4 of 4 |")
    assert lines[3].startswith("| **`b`** |") and lines[3].endswith("| 1 of 4 |")


def test_the_shipped_cards_state_the_goal_with_the_numbers_scikit_learn_gives():
    for folder in sorted(p for p in (PROJECT_ROOT / "models").iterdir() if (p / "card.json").is_file()):
        card = json.loads((folder / "card.json").read_text())
        test = pd.read_csv(folder / "predictions.csv").query("split == 'test'")
        called = (test["score"] >= card["threshold"]["value"]).astype(int)
        expected = {"roc_auc": roc_auc_score(test["label"], test["score"]),
                    "accuracy": accuracy_score(test["label"], called),
                    "recall": recall_score(test["label"], called),
                    "specificity": recall_score(test["label"], called, pos_label=0)}
        for check in goals.goal_checks(card):
            assert check.value == pytest.approx(expected[check.metric]), (folder.name, check.metric)
            assert check.ci_low <= check.value <= check.ci_high
        # The card people read says it, in the words of the rendering.
        assert goals.card_goal_section(card) in (folder / "card.md").read_text(), folder.name


def test_a_rewritten_card_keeps_its_lung_evidence_section(tmp_path):
    card = json.loads((PROJECT_ROOT / "models" / "ensemble-acq-norm-frame" / "card.json").read_text())
    assert card.get("lung_evidence")
    cards.write_card(tmp_path, card)
    text = (tmp_path / "card.md").read_text()
    assert "## Against the goal set for the recommended model" in text
    assert "of the Grad-CAM pneumonia evidence lies inside the lungs" in text


def test_the_command_prints_the_table(capsys):
    folders = [str(p) for p in sorted((PROJECT_ROOT / "models").iterdir()) if (p / "card.json").is_file()]
    assert goals.main([*folders, "--markdown", "--recommended", "ensemble-acq-norm-frame"]) == 0
    out = capsys.readouterr().out
    assert "| **`ensemble-acq-norm-frame`** |" in out and out.count("\n") == len(folders) + 2
