"""Does a retrained model reproduce the shipped one? Every metric of the rerun's card against the shipped card's 95 %
confidence interval, on the same split (``python -m core.evaluation.reproduction models/NAME RERUN/NAME``; a whole
rerun of ``make models``: ``python -m core.evaluation.reproduction --set models/ RERUN/models/``).

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


SET_METRICS = ("roc_auc", "accuracy", "recall", "specificity")


def compare_sets(shipped_dir: Path, rerun_dir: Path, *, split: str = "test") -> pd.DataFrame:
    """One row per model found in both folders (a whole ``make models`` rerun against the shipped set).

    Columns: model, threshold_shipped, threshold_rerun, each of SET_METRICS (the rerun's value) with ``<metric>_within``
    (inside the shipped 95 % CI), within (how many of REPRODUCED_METRICS are), of (how many were compared),
    audit (the rerun's validation robustness audit: 'passes', 'fails: <changes>' or '' when it has none) and
    minutes (the rerun's training time).
    """
    rows = []
    for folder in sorted(p for p in Path(shipped_dir).iterdir() if (p / "card.json").is_file()):
        rerun_card_file = Path(rerun_dir) / folder.name / "card.json"
        if not rerun_card_file.is_file():
            continue
        shipped, rerun = json.loads((folder / "card.json").read_text()), json.loads(rerun_card_file.read_text())
        table = compare_cards(shipped, rerun, split=split).set_index("metric")
        audit = ((rerun.get("audit") or {}).get("splits") or {}).get("val") or {}
        verdict = "" if not audit else "passes" if audit.get("robust") else "fails: " + ", ".join(audit.get("failing", []))
        row = {"model": folder.name, "threshold_shipped": shipped["threshold"]["value"],
               "threshold_rerun": rerun["threshold"]["value"]}
        for metric in SET_METRICS:
            row[metric], row[f"{metric}_within"] = table.at[metric, "rerun"], bool(table.at[metric, "within_ci"])
        row.update(within=int(table["within_ci"].sum()), of=len(table), audit=verdict,
                   minutes=float(rerun.get("training", {}).get("seconds", float("nan"))) / 60)
        rows.append(row)
    return pd.DataFrame(rows)


def set_markdown(table: pd.DataFrame, *, recommended: str | None = None) -> str:
    """The set comparison as the README's Markdown table (``*`` = outside the shipped CI; the recommended model bold)."""
    lines = ["| model | threshold shipped -> rerun | test ROC AUC | accuracy | sensitivity | specificity | "
             "metrics within the CI | robustness audit of the rerun (validation) | rerun training time |",
             "| --- |" + " --- |" * 8]
    for row in table.to_dict("records"):
        name = f"**`{row['model']}`**" if row["model"] == recommended else f"`{row['model']}`"
        cells = [f"{row[m]:.3f}{'' if row[f'{m}_within'] else ' *'}" for m in SET_METRICS]
        lines.append(f"| {name} | {row['threshold_shipped']:.3f} -> {row['threshold_rerun']:.3f} | " + " | ".join(cells)
                     + f" | {row['within']}/{row['of']} | {row['audit']} | {row['minutes']:.1f} min |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: print the comparison; exit status 1 when a metric falls outside the shipped CI."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shipped", type=Path, help="the shipped model folder (holds card.json), or with --set the models folder")
    parser.add_argument("rerun", type=Path, help="the retrained model folder (e.g. train.py --models-dir /tmp/rerun)")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--set", action="store_true",
                        help="compare every model of two models folders (a whole `make models` rerun), one row each")
    parser.add_argument("--recommended", default=None, help="with --set: the recommended model, set in bold")
    args = parser.parse_args(argv)
    if args.set:
        table = compare_sets(args.shipped, args.rerun, split=args.split)
        print(set_markdown(table, recommended=args.recommended))
        return 0 if bool((table["within"] == table["of"]).all()) else 1
    cards = [json.loads((folder / "card.json").read_text()) for folder in (args.shipped, args.rerun)]
    table = compare_cards(*cards, split=args.split)
    print(markdown(table, split=args.split))
    seconds = cards[1].get("training", {}).get("seconds")
    if seconds:
        print(f"\nrerun training time: {seconds / 60:.1f} min")
    return 0 if bool(table["within_ci"].all()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
