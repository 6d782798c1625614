"""core.evaluation.reproduction: a rerun's metrics against the shipped card's confidence intervals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.evaluation import reproduction


def _card(values: dict[str, tuple[float, float, float]], split: str = "test") -> dict:
    return {"metrics": {split: {name: {"value": v, "ci_low": lo, "ci_high": hi} for name, (v, lo, hi) in values.items()}}}


def test_a_rerun_inside_every_interval_reproduces_and_one_outside_does_not(tmp_path: Path) -> None:
    shipped = _card({"roc_auc": (0.95, 0.93, 0.97), "specificity": (0.75, 0.70, 0.80)})
    inside = _card({"roc_auc": (0.93, 0, 1), "specificity": (0.80, 0, 1)})  # the bounds themselves count as inside
    outside = _card({"roc_auc": (0.96, 0, 1), "specificity": (0.69, 0, 1)})
    table = reproduction.compare_cards(shipped, inside)
    assert table["metric"].tolist() == ["roc_auc", "specificity"] and table["within_ci"].all()
    assert reproduction.compare_cards(shipped, outside)["within_ci"].tolist() == [True, False]
    for name, card in (("shipped", shipped), ("rerun", outside)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "card.json").write_text(json.dumps(card))
    assert reproduction.main([str(tmp_path / "shipped"), str(tmp_path / "rerun")]) == 1
    assert "**no**" in reproduction.markdown(reproduction.compare_cards(shipped, outside))


def test_a_card_without_the_split_is_refused() -> None:
    with pytest.raises(ValueError, match="no metrics for the 'test' split"):
        reproduction.compare_cards(_card({}, split="val"), _card({}))
