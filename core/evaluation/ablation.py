"""Ablation table: what each training recipe changed against a baseline, and what it bought on validation and test.

Built from model cards only (card.json of models/<name>/ or of experiment folders elsewhere): the recipe is
`training.config`, the numbers are the card's `metrics.val` / `metrics.test` (value and 95% CI at the model's
validation-chosen threshold), the cost is `training.seconds`. Nothing is recomputed here, and nothing is chosen:
the table reports; thresholds and recipes are chosen on validation elsewhere.

Command line (prints the README table, optionally writes the JSON the Model comparison page shows):

    python -m core.evaluation.ablation models/ experiments/ --baseline cnn-deep-128 --markdown --json docs/ablation.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from core import config

logger = logging.getLogger(__name__)

CARD_FILE = "card.json"

ABLATION_METRICS = ("roc_auc", "accuracy", "recall", "specificity")
"""Card metrics in the table, per split (recall = sensitivity)."""

SPLITS = ("val", "test")

METRIC_LABELS = {"roc_auc": "ROC AUC", "accuracy": "accuracy", "recall": "sensitivity", "specificity": "specificity"}
SPLIT_LABELS = {"val": "val", "test": "test"}

IGNORED_OPTIONS = ("name", "data", "models_dir", "cache_dir", "bootstrap", "progress", "overwrite", "resume")
"""training.config keys that are not part of a recipe (where it was written, how many CI resamples)."""

DEFAULT_JSON = config.PROJECT_ROOT / "docs" / "ablation.json"
ABLATION_ENV = "PNEUMONIA_ABLATION"
JSON_VERSION = 1


def ablation_path() -> Path:
    """Where the page looks for the table: $PNEUMONIA_ABLATION if set, else docs/ablation.json."""
    return Path(os.environ.get(ABLATION_ENV, DEFAULT_JSON)).expanduser()


# --------------------------------------------------------------------------------------------------
# Reading cards
# --------------------------------------------------------------------------------------------------
def find_cards(paths: Iterable[Path | str]) -> list[Path]:
    """card.json files from paths that are card files, model folders, or folders of model folders (one level).

    Folders whose name starts with '.' (temporary or backup folders) are skipped. Raises ValueError for a path
    that does not exist or holds no card.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(path)
        elif (path / CARD_FILE).is_file():
            found.append(path / CARD_FILE)
        elif path.is_dir():
            cards = sorted(p for p in path.glob(f"*/{CARD_FILE}") if not p.parent.name.startswith("."))
            if not cards:
                raise ValueError(f"{path} holds no {CARD_FILE} (nor do its sub-folders); pass model folders or card files.")
            found.extend(cards)
        else:
            raise ValueError(f"{path} does not exist; pass model folders (models/<name>), folders of them, or card.json files.")
    return found


def load_cards(paths: Iterable[Path | str]) -> list[dict]:
    """The parsed cards found by `find_cards`, in order; ValueError naming the file when one cannot be read."""
    cards = []
    for path in find_cards(paths):
        try:
            card = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} cannot be read as JSON ({exc}); regenerate it with train.py.") from exc
        if not isinstance(card, dict):
            raise ValueError(f"{path} must hold a JSON object.")
        card.setdefault("name", Path(path).parent.name)
        cards.append(card)
    return cards


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------
def _recipe(card: dict, ignore: Sequence[str], defaults: Mapping[str, object] | None) -> dict:
    """The card's training.config (options it lacks taken from `defaults`) without the ignored keys.

    ValueError when the card has no training.config.
    """
    config_ = (card.get("training") or {}).get("config")
    if not isinstance(config_, dict):
        raise ValueError(f"Card {card.get('name')!r} has no training.config; it was not written by train.py.")
    return {k: v for k, v in {**dict(defaults or {}), **config_}.items() if k not in ignore}


def _is_ensemble(card: dict) -> bool:
    """Whether the card is an ensemble's (train.py --ensemble: training.config lists its members)."""
    return isinstance(((card.get("training") or {}).get("config") or {}).get("members"), list)


def training_defaults() -> dict:
    """Default value of every train.py option (core.training.TrainConfig), or {} when it cannot be read.

    Cards written before an option existed lack it; comparing with its default keeps such cards from showing
    every newer option as a change.
    """
    try:
        from dataclasses import asdict

        from core.training import TrainConfig

        return asdict(TrainConfig())
    except Exception as exc:  # the training module is being reorganised; the table still works without defaults
        logger.warning("Training defaults unavailable (%s); options a card lacks count as unset.", exc)
        return {}


def recipe_changes(
    card: dict, baseline: dict, *, ignore: Sequence[str] = IGNORED_OPTIONS, defaults: Mapping[str, object] | None = None
) -> dict[str, dict]:
    """{option: {"value": card's, "baseline": baseline's}} for every recipe option that differs (None = unset).

    Options come from training.config (minus `ignore`; an option a card lacks takes its value in `defaults`, else
    None); a different dataset fingerprint counts as the option "dataset". Values compare as JSON (1 == 1.0). An
    ensemble (train.py --ensemble) against a single model shows its "members" first and only the options both
    cards record; defaults never fill an ensemble's recipe.
    """
    ensemble, base_ensemble = _is_ensemble(card), _is_ensemble(baseline)
    ours = _recipe(card, ignore, None if ensemble else defaults)
    theirs = _recipe(baseline, ignore, None if base_ensemble else defaults)
    keys = set(ours) | set(theirs)
    if ensemble != base_ensemble:  # an ensemble against one model: its members, and the options both record
        keys = (set(ours) & set(theirs)) | {"members"}
    changes = {}
    for key in sorted(keys, key=lambda k: (k != "members", k)):
        a, b = ours.get(key), theirs.get(key)
        if not _same(a, b):
            changes[key] = {"value": a, "baseline": b}
    ours_data, base_data = card.get("dataset") or {}, baseline.get("dataset") or {}
    if ours_data.get("fingerprint") and base_data.get("fingerprint") and ours_data["fingerprint"] != base_data["fingerprint"]:
        changes["dataset"] = {"value": _dataset(ours_data), "baseline": _dataset(base_data)}
    return changes


def _dataset(dataset: dict) -> str:
    """'Kaggle chest X-ray (fingerprint 1a2b3c4d)'."""
    return f"{dataset.get('name') or 'dataset'} (fingerprint {str(dataset['fingerprint'])[:8]})"


def _same(a: object, b: object) -> bool:
    """Equality as JSON values (numbers by value, containers element-wise)."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def describe_changes(changes: dict[str, dict]) -> str:
    """'augment=acquisition, label_smoothing=0.1' ('baseline' when nothing differs; unset options shown as 'unset')."""
    if not changes:
        return "baseline"
    return ", ".join(f"{key}={_show(change['value'])}" for key, change in changes.items())


def _show(value: object) -> str:
    """A recipe value as written on a command line."""
    if value is None:
        return "unset"
    if isinstance(value, (list, tuple)):
        return "+".join(_show(v) for v in value)
    return str(value)


def ablation_table(
    cards: Sequence[dict],
    *,
    baseline: str | None = None,
    ignore: Sequence[str] = IGNORED_OPTIONS,
    defaults: Mapping[str, object] | None = None,
) -> pd.DataFrame:
    """One row per card, the baseline first: what the recipe changed and its numbers at its validation threshold.

    cards: parsed card.json dicts (see docs/ARCHITECTURE.md). baseline: the name of the baseline card (default: the
    first). defaults: option values for cards that lack them (see `training_defaults`). Columns: recipe,
    display_name, is_baseline, changes (text), changed_options (dict), threshold, threshold_rule,
    threshold_chosen_on, training_seconds, epochs_run, and for split in val/test and metric in ABLATION_METRICS the
    columns f"{split}_{metric}", f"{split}_{metric}_ci_low", f"{split}_{metric}_ci_high" (NaN when the card
    lacks them). Raises ValueError for no cards, two cards with one name, an unknown baseline or a card without
    training.config.
    """
    if not cards:
        raise ValueError("No model cards given; pass model folders such as models/<name> or folders of them.")
    names = [str(card.get("name")) for card in cards]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"Several cards are named {', '.join(duplicated)}; pass each recipe once.")
    baseline_name = names[0] if baseline is None else baseline
    if baseline_name not in names:
        raise ValueError(f"The baseline {baseline_name!r} is not among the cards ({', '.join(names)}); pick one of them.")
    base = cards[names.index(baseline_name)]
    ordered = [base] + [card for card in cards if card is not base]
    rows = []
    for card in ordered:
        changes = recipe_changes(card, base, ignore=ignore, defaults=defaults)
        threshold = card.get("threshold") or {}
        training = card.get("training") or {}
        row = {
            "recipe": str(card.get("name")),
            "display_name": str(card.get("display_name") or card.get("name")),
            "is_baseline": card is base,
            "changes": describe_changes(changes),
            "changed_options": changes,
            "threshold": _number(threshold.get("value")),
            "threshold_rule": str(threshold.get("rule") or "not recorded"),
            "threshold_chosen_on": str(threshold.get("chosen_on") or "not recorded"),
            "training_seconds": _number(training.get("seconds")),
            "epochs_run": training.get("epochs_run"),
        }
        for split in SPLITS:
            split_metrics = (card.get("metrics") or {}).get(split) or {}
            for metric in ABLATION_METRICS:
                entry = split_metrics.get(metric) or {}
                row[f"{split}_{metric}"] = _number(entry.get("value"))
                row[f"{split}_{metric}_ci_low"] = _number(entry.get("ci_low"))
                row[f"{split}_{metric}_ci_high"] = _number(entry.get("ci_high"))
        rows.append(row)
    return pd.DataFrame(rows)


def _number(value: object) -> float:
    """A float, NaN when missing or not a number."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


# --------------------------------------------------------------------------------------------------
# Output: Markdown for the README, JSON for the page
# --------------------------------------------------------------------------------------------------
def format_ci(value: float, low: float, high: float, *, digits: int = 3) -> str:
    """'0.958 (0.942–0.974)'; the value alone without a CI; '—' when missing."""
    if value is None or math.isnan(value):
        return "—"
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


def format_duration(seconds: float | None) -> str:
    """'27 min 17 s', '1 h 05 min' or 'not recorded'."""
    if seconds is None or math.isnan(seconds):
        return "not recorded"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def display_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The table as text columns, one per shown quantity (for Markdown and the page)."""
    shown = pd.DataFrame({
        "Recipe": table["recipe"],
        "Changes vs baseline": table["changes"],
    })
    for split in SPLITS:
        for metric in ABLATION_METRICS:
            column = f"{split}_{metric}"
            shown[f"{SPLIT_LABELS[split]} {METRIC_LABELS[metric]}"] = [
                format_ci(v, lo, hi)
                for v, lo, hi in zip(table[column], table[f"{column}_ci_low"], table[f"{column}_ci_high"])
            ]
    shown["Threshold (chosen on)"] = [
        "—" if math.isnan(t) else f"{t:.3f} ({on})" for t, on in zip(table["threshold"], table["threshold_chosen_on"])
    ]
    shown["Training time"] = [format_duration(s) for s in table["training_seconds"]]
    return shown


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table of `display_frame(table)` (pipes in cells escaped)."""
    shown = display_frame(table)
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "| " + " | ".join("---" for _ in shown.columns) + " |"
    lines = [header, rule]
    for _, row in shown.iterrows():
        cells = [str(v).replace("|", "\\|") for v in row]
        cells[0] = f"`{cells[0]}`"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_json(table: pd.DataFrame) -> dict:
    """A JSON-ready dict: version, generated (UTC ISO time), baseline, metrics, splits, rows (NaN -> null)."""
    rows = []
    for record in table.to_dict(orient="records"):
        rows.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()})
    baseline = next((r["recipe"] for r in rows if r["is_baseline"]), None)
    return {
        "version": JSON_VERSION,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "baseline": baseline,
        "metrics": list(ABLATION_METRICS),
        "splits": list(SPLITS),
        "rows": rows,
    }


def write_json(table: pd.DataFrame, path: Path | str) -> Path:
    """Write `to_json(table)` to `path` atomically (temporary file in the same folder, then os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(to_json(table), stream, indent=1, default=str)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_json(path: Path | str) -> pd.DataFrame:
    """The table written by `write_json` (same columns as `ablation_table`); ValueError when it is not one."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable ablation table ({exc}); rewrite it with python -m core.evaluation.ablation.") from exc
    rows = payload.get("rows") if isinstance(payload, dict) else None
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path} holds no ablation rows; rewrite it with python -m core.evaluation.ablation ... --json {path}.")
    table = pd.DataFrame(rows)
    needed = ["recipe", "is_baseline", "changes", "threshold", "threshold_chosen_on", "training_seconds"] + [
        f"{split}_{metric}{suffix}" for split in SPLITS for metric in ABLATION_METRICS for suffix in ("", "_ci_low", "_ci_high")
    ]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {', '.join(missing[:5])}; rewrite it with python -m core.evaluation.ablation.")
    numeric = [c for c in needed if c not in ("recipe", "is_baseline", "changes", "threshold_chosen_on")]
    table[numeric] = table[numeric].apply(pd.to_numeric, errors="coerce")
    return table


def baseline_recipe(table: pd.DataFrame) -> str:
    """The name of the table's baseline recipe (its first row when none is marked)."""
    marked = table.loc[table["is_baseline"].astype(bool), "recipe"] if "is_baseline" in table else pd.Series(dtype=str)
    return str(marked.iloc[0] if len(marked) else table["recipe"].iloc[0])


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """python -m core.evaluation.ablation CARD_OR_FOLDER... [--baseline NAME] [--markdown] [--json PATH]."""
    parser = argparse.ArgumentParser(
        prog="python -m core.evaluation.ablation",
        description="Ablation table of training recipes from model cards: options that differ from the baseline, "
        "validation and test metrics with 95%% CIs at each model's validation-chosen threshold, training time.",
    )
    parser.add_argument("paths", nargs="+", metavar="CARD_OR_FOLDER",
                        help="card.json files, model folders (models/<name>) or folders of model folders")
    parser.add_argument("--baseline", help="name of the baseline recipe (default: the first card)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (the default output)")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help=f"also write the table as JSON for the Model comparison page (it reads {DEFAULT_JSON.relative_to(config.PROJECT_ROOT)})")
    parser.add_argument("--ignore", nargs="*", default=list(IGNORED_OPTIONS), metavar="OPTION",
                        help="training.config keys that are not recipe options (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        table = ablation_table(load_cards(args.paths), baseline=args.baseline, ignore=args.ignore,
                               defaults=training_defaults())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        write_json(table, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.markdown or not args.json:
        print(to_markdown(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
