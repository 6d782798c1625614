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


def _set_card(threshold: float, specificity: float, *, audit: dict | None = None, seconds: float = 600.0) -> dict:
    card = _card({"roc_auc": (0.95, 0.93, 0.97), "accuracy": (0.9, 0.88, 0.92), "recall": (0.95, 0.93, 0.97),
                  "specificity": (specificity, specificity - 0.05, specificity + 0.05)})
    card.update(threshold={"value": threshold}, training={"seconds": seconds})
    if audit is not None:
        card["audit"] = {"splits": {"val": audit}}
    return card


def test_a_whole_rerun_is_compared_model_by_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    shipped, rerun = tmp_path / "models", tmp_path / "rerun"
    for root, cards in ((shipped, {"a": _set_card(0.5, 0.80), "b": _set_card(0.7, 0.80), "only-shipped": _set_card(0.5, 0.8)}),
                        (rerun, {"a": _set_card(0.6, 0.84, audit={"robust": True, "failing": []}),
                                 "b": _set_card(0.7, 0.70, audit={"robust": False, "failing": ["zoom_in_15", "gamma_0.7"]},
                                                seconds=90)})):
        for name, card in cards.items():
            (root / name).mkdir(parents=True)
            (root / name / "card.json").write_text(json.dumps(card))
    table = reproduction.compare_sets(shipped, rerun)
    assert table["model"].tolist() == ["a", "b"]  # a model missing from the rerun is left out
    a, b = table.set_index("model").loc["a"], table.set_index("model").loc["b"]
    assert (a["threshold_rerun"], a["specificity"], a["specificity_within"], a["within"], a["of"]) == (0.6, 0.84, True, 4, 4)
    assert (b["specificity_within"], b["within"], b["audit"], b["minutes"]) == (False, 3, "fails: zoom_in_15, gamma_0.7", 1.5)
    assert a["audit"] == "passes"
    assert reproduction.main(["--set", str(shipped), str(rerun), "--recommended", "a"]) == 1  # b is outside on one metric
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "| **`a`** | 0.500 -> 0.600 | 0.950 | 0.900 | 0.950 | 0.840 | 4/4 | passes | 10.0 min |"
    assert out[3].startswith("| `b` | 0.700 -> 0.700 | 0.950 | 0.900 | 0.950 | 0.700 * | 3/4 | fails: zoom_in_15")
