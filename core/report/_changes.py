"""What changed for a stakeholder when the recommended model changed: per 100 children, then against now, with CIs.

``docs/recommendations.json`` records each model the project has recommended, in order, with the date and the rule
that chose it. :func:`recommendation_change` takes the most recent *other* model of that list that still ships, and
compares it with today's recommendation on the same TEST films: how many healthy children of 100 each flags, how
many children with pneumonia of 100 each misses (95% bootstrap CIs), and the paired difference of each
(core.evaluation.compare: one resample of films for both models), so a reader sees whether the change is more than
chance. Nothing here chooses anything: the choice was made on validation (rule 3), this only reports it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from core import config
from core.models import registry
from core.report._frequencies import NaturalFrequencies, natural_frequencies

HISTORY_FILE = config.PROJECT_ROOT / "docs" / "recommendations.json"


@dataclass(frozen=True)
class RecommendationChange:
    """The previous and the current recommendation, in natural frequencies on the same split, with paired differences."""

    previous: str
    previous_display: str
    previous_since: str
    current: str
    current_display: str
    split: str
    before: NaturalFrequencies
    after: NaturalFrequencies
    false_alarms_difference: tuple[float, float, float]  # (after - before, CI low, CI high) per 100 healthy children
    missed_difference: tuple[float, float, float]  # (after - before, CI low, CI high) per 100 children with pneumonia
    n_films: int

    def sentences(self) -> list[str]:
        """Plain sentences: what each model does per 100 children, and whether the difference is more than chance."""
        def missed(freq: NaturalFrequencies) -> str:
            return f"{100 - freq.caught:.0f} (95% CI {100 - freq.caught_high:.0f}–{100 - freq.caught_low:.0f})"

        def alarms(freq: NaturalFrequencies) -> str:
            return f"{freq.false_alarms:.0f} (95% CI {freq.false_alarms_low:.0f}–{freq.false_alarms_high:.0f})"

        def signed(number: float) -> str:
            return "0" if round(number) == 0 else f"{number:+.0f}"  # never "-0" or "+0"

        def change(values: tuple[float, float, float], what: str) -> str:
            value, low, high = values
            if low <= 0 <= high:
                return (f"the difference in {what} ({signed(value)} per 100, 95% CI {signed(low)} to {signed(high)}) "
                        "could be chance on these films")
            word = "fewer" if value < 0 else "more"
            near, far = sorted((abs(low), abs(high)))  # the CI lies on one side of 0 here
            return f"{abs(value):.0f} {word} {what} per 100 (95% CI {near:.0f} to {far:.0f} {word}), more than chance"

        split = self.split.upper()
        return [
            f"Until {self.previous_since} the recommended model was {self.previous_display}: of 100 children without "
            f"pneumonia it wrongly flagged {alarms(self.before)}, and of 100 with pneumonia it missed {missed(self.before)}.",
            f"Now {self.current_display} wrongly flags {alarms(self.after)} and misses {missed(self.after)} "
            f"({split} split, the same {self.n_films} films for both).",
            f"So: {change(self.false_alarms_difference, 'false alarms')}; {change(self.missed_difference, 'missed children')}.",
        ]


def recommendation_history(path: str | Path = HISTORY_FILE) -> list[dict]:
    """The recorded recommendations, oldest first (keys model, since, rule); [] when the file is absent."""
    path = Path(path)
    if not path.is_file():
        return []
    return list(json.loads(path.read_text()).get("recommendations", []))


def recommendation_change(
    models_dir: str | Path, current: str, *, history_file: str | Path = HISTORY_FILE, split: str = "test",
    n_resamples: int = 1000, seed: int = 0,
) -> RecommendationChange | None:
    """The change from the most recent other recorded recommendation that still ships to ``current``; None if none.

    Kept per process for the same files (the history and the model folders, by modification time and size), so a
    server computes the paired bootstrap once, at warm-up, and again only when one of them changes.
    """
    history_file = Path(history_file)
    history_stat = history_file.stat() if history_file.is_file() else None
    history_stamp = (history_stat.st_mtime_ns, history_stat.st_size) if history_stat else ()
    stamp = (history_stamp, registry.models_signature(models_dir))
    return _recommendation_change(str(models_dir), current, str(history_file), split, n_resamples, seed, stamp)


@functools.lru_cache(maxsize=16)
def _recommendation_change(
    models_dir: str, current: str, history_file: str, split: str, n_resamples: int, seed: int, stamp: tuple
) -> RecommendationChange | None:
    """recommendation_change for one state of the files (``stamp``)."""
    from core.evaluation import compare

    history = recommendation_history(history_file)
    for position in range(len(history) - 1, -1, -1):
        item = history[position]
        if item.get("model") == current or not (Path(models_dir) / str(item.get("model"))).is_dir():
            continue
        previous = registry.get_model(item["model"], models_dir)
        if previous.available:
            break
    else:
        return None
    since = str(history[position + 1].get("since", "recently")) if position + 1 < len(history) else "recently"
    now = registry.get_model(current, models_dir)
    frames = {}
    for entry in (previous, now):
        predictions = registry.load_predictions(entry)
        frames[entry.name] = predictions[predictions["split"] == split][["path", "label", "score"]]
    comparison = compare.compare_models(
        frames[now.name], frames[previous.name], now.threshold, previous.threshold, n_resamples=n_resamples, seed=seed
    )
    differences = {d.metric: d for d in comparison.differences}
    films = comparison.films.frame
    n_pneumonia, n_normal = int((films["label"] == 1).sum()), int((films["label"] == 0).sum())

    def frequencies(entry: registry.ModelEntry) -> NaturalFrequencies:
        summary = registry.model_summary(entry, split)
        return natural_frequencies(summary, split=split, n_pneumonia=n_pneumonia, n_normal=n_normal)

    specificity, recall = differences["specificity"], differences["recall"]
    return RecommendationChange(
        previous=previous.name, previous_display=previous.display_name, previous_since=since,
        current=now.name, current_display=now.display_name, split=split,
        before=frequencies(previous), after=frequencies(now),
        # (1 - spec_now) - (1 - spec_before) = -(spec_now - spec_before); the CI flips with the sign.
        false_alarms_difference=(-100 * specificity.difference, -100 * specificity.ci_high, -100 * specificity.ci_low),
        missed_difference=(-100 * recall.difference, -100 * recall.ci_high, -100 * recall.ci_low),
        n_films=comparison.films.n_films,
    )

