"""The performance goal set for the recommended model, and where a model stands against it on the official test films.

The goal, set by the team before the transfer models were built: test ROC AUC >= 0.975, accuracy >= 0.93, sensitivity >= 0.95 and specificity
>= 0.88, each at the model's own validation-chosen threshold. Each metric is read with its 95% bootstrap CI from
the card (the numbers the card and the dashboard show) and judged in three words: *met* (the value reaches the goal),
*within reach* (the value misses it but the CI includes it: these films cannot tell) or *not met* (the whole CI lies
below the goal). Nothing here chooses a model; the choice is made on validation.

    python -m core.evaluation.goals models/*/ --markdown --recommended ensemble-acq-norm-frame
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from core.evaluation._intervals import format_ci

PERFORMANCE_GOALS: dict[str, float] = {"roc_auc": 0.975, "accuracy": 0.93, "recall": 0.95, "specificity": 0.88}
"""Test-split goal per metric (metrics.METRIC_KEYS names; recall is sensitivity)."""

GOAL_LABELS = {"roc_auc": "ROC AUC", "accuracy": "accuracy", "recall": "sensitivity", "specificity": "specificity"}


@dataclass(frozen=True)
class GoalCheck:
    """One metric of one model against its goal."""

    metric: str
    goal: float
    value: float
    ci_low: float
    ci_high: float

    @property
    def interval(self) -> str:
        """'0.960 (0.944–0.975)': the value with its CI, as every table of the project writes it."""
        return format_ci({"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high})

    @property
    def verdict(self) -> str:
        """'met', 'within reach' (missed, but the CI includes the goal) or 'not met' (the whole CI below it)."""
        if self.value >= self.goal:
            return "met"
        if not math.isnan(self.ci_high) and self.ci_high >= self.goal:
            return "within reach"
        return "not met"


def has_goal_metrics(card: dict, split: str = "test") -> bool:
    """Whether the card holds every goal metric for ``split`` (a card written by an older or another tool may not)."""
    metrics = (card.get("metrics") or {}).get(split) or {}
    return all(isinstance(metrics.get(key), dict) and "value" in metrics[key] for key in PERFORMANCE_GOALS)


def goal_checks(card: dict, split: str = "test") -> list[GoalCheck]:
    """Each goal metric of a card's ``split`` metrics against its goal, in PERFORMANCE_GOALS order ([] without them)."""
    if not has_goal_metrics(card, split):
        return []
    metrics = card["metrics"][split]
    return [
        GoalCheck(key, goal, float(metrics[key]["value"]), float(metrics[key].get("ci_low", math.nan)),
                  float(metrics[key].get("ci_high", math.nan)))
        for key, goal in PERFORMANCE_GOALS.items()
    ]


def goals_met(card: dict, split: str = "test") -> int:
    """How many of the goals the card's ``split`` metrics meet."""
    return sum(check.verdict == "met" for check in goal_checks(card, split))


def card_goal_section(card: dict) -> str:
    """The card.md section: each goal, the test value with its CI, and the verdict."""
    lines = [
        "## Against the goal set for the recommended model (official test films)",
        "",
        "| metric | goal | test (95% CI) | verdict |",
        "| --- | --- | --- | --- |",
    ]
    for check in goal_checks(card):
        lines.append(f"| {GOAL_LABELS[check.metric]} | >= {check.goal:g} | {check.interval} | {check.verdict} |")
    lines += ["", f"{goals_met(card)} of {len(PERFORMANCE_GOALS)} goals met, at the validation-chosen threshold "
              f"({card['threshold']['value']:.4f}). *Within reach*: missed, but the 95% CI includes the goal.", ""]
    return "\n".join(lines)


def goals_table(cards: Sequence[dict], recommended: str | None = None) -> str:
    """A markdown table, one row per model: each goal metric with its CI and verdict; the recommended model in bold.

    Cards without the test metrics are left out.
    """
    header = "| model | " + " | ".join(f"{GOAL_LABELS[k]} >= {g:g}" for k, g in PERFORMANCE_GOALS.items()) + " | met |"
    lines = [header, "| --- |" + " --- |" * (len(PERFORMANCE_GOALS) + 1)]
    for card in (c for c in cards if has_goal_metrics(c)):
        cells = [f"{check.interval}, {check.verdict}" for check in goal_checks(card)]
        name = f"**`{card['name']}`**" if card["name"] == recommended else f"`{card['name']}`"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {goals_met(card)} of {len(PERFORMANCE_GOALS)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print every model folder's test metrics against the goal (the README table)."""
    parser = argparse.ArgumentParser(prog="python -m core.evaluation.goals", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model folders (models/NAME)")
    parser.add_argument("--markdown", action="store_true", help="print the markdown table (default: one line each)")
    parser.add_argument("--recommended", default=None, help="the recommended model's name, set in bold")
    args = parser.parse_args(argv)
    cards = [json.loads((Path(f) / "card.json").read_text()) for f in args.models if (Path(f) / "card.json").is_file()]
    if args.markdown:
        print(goals_table(cards, args.recommended))
        return 0
    for card in cards:
        verdicts = ", ".join(f"{GOAL_LABELS[c.metric]} {c.value:.3f} {c.verdict}" for c in goal_checks(card))
        print(f"{card['name']}: {goals_met(card)} of {len(PERFORMANCE_GOALS)} goals met ({verdicts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
