"""Does a retrained model reproduce the shipped one? Every metric of the rerun's card against the shipped card's 95 %
confidence interval, on the same split (``python -m core.evaluation.reproduction models/NAME RERUN/NAME``).

The shipped model's CI (bootstrap over the test films, :mod:`core.evaluation.metrics`) is the yardstick: a rerun on the same
data with the same options but other random draws (CPU non-determinism, augmentation draws) should land inside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

REPRODUCED_METRICS = ("roc_auc", "accuracy", "recall", "specificity", "precision", "npv", "f1")


def compare_cards(shipped: dict, rerun: dict, *, split: str = "test", metrics: tuple[str, ...] = REPRODUCED_METRICS) -> pd.DataFrame:
    """One row per metric: shipped value and 95 % CI, rerun value, and whether the rerun lies within the CI.

    ``shipped`` and ``rerun`` are card dicts (``card.json``) holding ``metrics[split][name] = {value, ci_low, ci_high}``.
    Raises ValueError when a card has no metrics for ``split``.
    """
    rows = []
    for name, card in (("shipped", shipped), ("rerun", rerun)):
        if split not in card.get("metrics", {}):
            raise ValueError(f"The {name} card has no metrics for the '{split}' split.")
    for metric in metrics:
        reference = shipped["metrics"][split].get(metric)
        value = rerun["metrics"][split].get(metric)
        if not isinstance(reference, dict) or not isinstance(value, dict):
            continue
        low, high = float(reference["ci_low"]), float(reference["ci_high"])
        rows.append({
            "metric": metric, "shipped": float(reference["value"]), "ci_low": low, "ci_high": high,
            "rerun": float(value["value"]), "within_ci": bool(low <= float(value["value"]) <= high),
        })
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame, *, split: str = "test") -> str:
    """The comparison as a Markdown table."""
    lines = [f"| metric ({split}) | shipped (95% CI) | rerun | within the CI |", "| --- | --- | --- | --- |"]
    for row in table.itertuples():
        lines.append(f"| {row.metric} | {row.shipped:.3f} ({row.ci_low:.3f}-{row.ci_high:.3f}) | {row.rerun:.3f} | "
                     f"{'yes' if row.within_ci else '**no**'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: print the comparison; exit status 1 when a metric falls outside the shipped CI."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shipped", type=Path, help="the shipped model folder (holds card.json)")
    parser.add_argument("rerun", type=Path, help="the retrained model folder (e.g. train.py --models-dir /tmp/rerun)")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    args = parser.parse_args(argv)
    cards = [json.loads((folder / "card.json").read_text()) for folder in (args.shipped, args.rerun)]
    table = compare_cards(*cards, split=args.split)
    print(markdown(table, split=args.split))
    seconds = cards[1].get("training", {}).get("seconds")
    if seconds:
        print(f"\nrerun training time: {seconds / 60:.1f} min")
    return 0 if bool(table["within_ci"].all()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
