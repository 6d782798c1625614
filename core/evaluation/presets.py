"""Threshold presets and prevalence tables for the Threshold explorer: what each number means and where it comes from.

A preset is a threshold chosen by one rule on one split (validation, never test); it is reported with what it gives
on the split it was chosen on and on the split shown, and presets that land on the same threshold are one preset.
A prevalence table re-weights every prevalence-dependent number (PPV, NPV, accuracy, F1, counts per 1,000) to a
chosen prevalence with Bayes' rule, and says which numbers do not depend on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from core.evaluation import metrics

OWN_LABEL = "Model's own"
"""Label of the preset that is the model card's operating point."""
THRESHOLD_DIGITS = 6
"""Thresholds equal to this many decimals are one preset (the page shows three)."""


@dataclass(frozen=True)
class Preset:
    """One operating point: the rules that chose it, its threshold, and what it gives on two splits.

    `chosen` and `shown` are ThresholdSweep.at() dicts (recall, specificity, ...) on the split the rules were
    applied to (`chosen_on`, e.g. "VALIDATION") and on the split the page shows (`shown_on`, e.g. "TEST").
    """

    labels: tuple[str, ...]
    threshold: float
    chosen_on: str
    shown_on: str
    chosen: dict
    shown: dict

    @property
    def title(self) -> str:
        """Button text: the rules (joined when several coincide) and the threshold."""
        return f"{' = '.join(self.labels)} · {self.threshold:.3f}"

    @property
    def is_own(self) -> bool:
        """True when the model card's own operating point is among the rules."""
        return OWN_LABEL in self.labels

    def gives(self) -> str:
        """One sentence: what the threshold gives on the split it was chosen on and on the split shown."""
        chosen = (f"on {self.chosen_on} (where it was chosen): sensitivity {self.chosen['recall']:.3f}, "
                  f"specificity {self.chosen['specificity']:.3f}")
        if self.shown_on == self.chosen_on:
            return chosen[0].upper() + chosen[1:] + "."
        return (f"{chosen[0].upper() + chosen[1:]}; on {self.shown_on}: sensitivity {self.shown['recall']:.3f}, "
                f"specificity {self.shown['specificity']:.3f}.")


def merge_presets(candidates: Sequence[tuple[str, float]]) -> list[tuple[tuple[str, ...], float]]:
    """(label, threshold) pairs -> (labels, threshold) with coinciding thresholds merged, first appearance order."""
    merged: dict[float, list[str]] = {}
    exact: dict[float, float] = {}
    for label, threshold in candidates:
        key = round(float(threshold), THRESHOLD_DIGITS)
        merged.setdefault(key, []).append(label)
        exact.setdefault(key, float(threshold))
    return [(tuple(labels), exact[key]) for key, labels in merged.items()]


def threshold_presets(chosen_sweep: metrics.ThresholdSweep, shown_sweep: metrics.ThresholdSweep, *,
                      candidates: Sequence[tuple[str, float]], chosen_on: str, shown_on: str) -> list[Preset]:
    """Presets for the page: `candidates` (label, threshold) merged where they coincide, each with its numbers.

    `chosen_sweep` is the split the rules were applied to (validation), `shown_sweep` the split the page shows.
    """
    return [Preset(labels, threshold, chosen_on, shown_on, chosen_sweep.at(threshold), shown_sweep.at(threshold))
            for labels, threshold in merge_presets(candidates)]


def rule_presets(labels: Sequence[int], scores: Sequence[float], *, own_threshold: float,
                 sensitivity_target: float = 0.95, specificity_target: float = 0.90) -> list[tuple[str, float]]:
    """(label, threshold) candidates: the model's own first, then the standard rules applied to (labels, scores)."""
    rules = metrics.operating_points(labels, scores, sensitivity_target=sensitivity_target,
                                     specificity_target=specificity_target)
    return [(OWN_LABEL, float(own_threshold)), *rules.items()]


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def at_prevalence(sensitivity: float, specificity: float, prevalence: float) -> dict[str, float]:
    """Every prevalence-dependent metric of a test with this sensitivity and specificity at `prevalence` in (0, 1).

    PPV and NPV by Bayes' rule; accuracy = sensitivity * p + specificity * (1 - p); F1 = harmonic mean of PPV and
    sensitivity.
    """
    if not 0.0 < float(prevalence) < 1.0:
        raise ValueError(f"prevalence must be strictly between 0 and 1 (e.g. 0.01 for 1%); got {prevalence}.")
    p = float(prevalence)
    ppv = _ratio(sensitivity * p, sensitivity * p + (1.0 - specificity) * (1.0 - p))
    npv = _ratio(specificity * (1.0 - p), specificity * (1.0 - p) + (1.0 - sensitivity) * p)
    return {"precision": ppv, "npv": npv, "accuracy": sensitivity * p + specificity * (1.0 - p),
            "f1": _ratio(2.0 * ppv * sensitivity, ppv + sensitivity)}


def prevalence_table(sweep: metrics.ThresholdSweep, threshold: float, prevalence: float, *, split_name: str,
                     population: int = 1000) -> pd.DataFrame:
    """Every number at `threshold`: on the split as measured, and re-weighted to `prevalence` (text, ready to show).

    Columns: Measure, `split_name` (the split's own mix), "At <p> prevalence", "Depends on prevalence?". Ratios have
    three decimals, counts none; the split's counts are its films, the re-weighted ones expected per `population`.
    """
    at = sweep.at(threshold)
    weighted = at_prevalence(at["recall"], at["specificity"], prevalence)
    freq = metrics.per_population(at["recall"], at["specificity"], prevalence, population=population)
    own = f"{sweep.prevalence:.1%}" if sweep.n else "n/a"
    weighted_name = f"At {prevalence:.1%} prevalence"
    rows = [
        ("Sensitivity (recall)", f"{at['recall']:.3f}", f"{at['recall']:.3f}", "no: measured on the split"),
        ("Specificity", f"{at['specificity']:.3f}", f"{at['specificity']:.3f}", "no: measured on the split"),
        ("PPV (precision)", f"{at['precision']:.3f}", f"{weighted['precision']:.3f}", "yes"),
        ("NPV", f"{at['npv']:.3f}", f"{weighted['npv']:.3f}", "yes"),
        ("Accuracy", f"{at['accuracy']:.3f}", f"{weighted['accuracy']:.3f}", "yes"),
        ("F1", f"{at['f1']:.3f}", f"{weighted['f1']:.3f}", "yes"),
        ("Prevalence (share with pneumonia)", own, f"{prevalence:.1%}", "it is the prevalence"),
        ("Pneumonia caught (true positives)", f"{at['tp']:d}", f"{freq['caught']:.0f} per {population:,}", "yes"),
        ("Pneumonia missed (false negatives)", f"{at['fn']:d}", f"{freq['missed']:.0f} per {population:,}", "yes"),
        ("False alarms (false positives)", f"{at['fp']:d}", f"{freq['false_alarms']:.0f} per {population:,}", "yes"),
        ("Correctly cleared (true negatives)", f"{at['tn']:d}", f"{freq['correctly_cleared']:.0f} per {population:,}",
         "yes"),
    ]
    return pd.DataFrame(rows, columns=["Measure", f"{split_name} ({sweep.n} films)", weighted_name,
                                       "Depends on prevalence?"])
