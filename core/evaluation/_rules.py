"""Operating-point rules: the threshold chosen on validation by F1, Youden, a sensitivity or a specificity target."""
from __future__ import annotations

import numpy as np

from core.evaluation._counts import THRESHOLD_RULES, Rule, logger
from core.evaluation._sweep import ThresholdSweep


def choose_threshold(y_true: object, scores: object, rule: Rule, *, target: float | None = None) -> float:
    """Threshold chosen by `rule` on y_true (n,) / scores (n,) (use validation data, never test).

    Rules (candidates are the distinct scores, plus one just above the highest score):
    - ``"f1"``: maximal F1;
    - ``"youden"``: maximal Youden J = sensitivity + specificity - 1;
    - ``"sensitivity"``: the highest threshold whose sensitivity is >= `target`;
    - ``"specificity"``: the highest sensitivity whose specificity is >= `target`.
    Ties go to the highest threshold (fewest false alarms). Returns a score value: call positive at >= it.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"Unknown threshold rule {rule!r}; use one of {', '.join(THRESHOLD_RULES)}.")
    needs_target = rule in ("sensitivity", "specificity")
    if needs_target and (target is None or not 0.0 <= float(target) <= 1.0):
        raise ValueError(f"Rule {rule!r} needs target= a number in [0, 1] (e.g. 0.95); got {target!r}.")
    sweep = ThresholdSweep.from_scores(y_true, scores)
    if sweep.n_pos == 0 or sweep.n_neg == 0:
        raise ValueError(
            f"Choosing a threshold needs both classes; this sample has {sweep.n_pos} positive and "
            f"{sweep.n_neg} negative cases. Use the validation split, which holds both."
        )
    table = sweep.table()
    if rule == "f1":
        best = int(np.argmax(table["f1"].to_numpy()))
    elif rule == "youden":
        best = int(np.argmax(table["youden_j"].to_numpy()))
    elif rule == "sensitivity":
        # Rows go from the highest threshold down, so recall only grows: the first row reaching target.
        best = int(np.argmax(table["recall"].to_numpy() >= float(target) - 1e-12))
    else:
        ok = table["specificity"].to_numpy() >= float(target) - 1e-12
        recall = np.where(ok, table["recall"].to_numpy(), -1.0)
        best = int(np.argmax(recall))
    threshold = float(table["threshold"].iat[best])
    logger.debug("choose_threshold(%s, target=%s) -> %.6g", rule, target, threshold)
    return threshold


def operating_points(
    y_true: object, scores: object, *, sensitivity_target: float = 0.95, specificity_target: float = 0.90
) -> dict[str, float]:
    """The standard presets on one sample: {label: threshold} for F1-best, Youden, sensitivity and specificity targets."""
    return {
        "F1-best": choose_threshold(y_true, scores, "f1"),
        "Youden J": choose_threshold(y_true, scores, "youden"),
        f"Sensitivity ≥ {sensitivity_target:.0%}": choose_threshold(
            y_true, scores, "sensitivity", target=sensitivity_target
        ),
        f"Specificity ≥ {specificity_target:.0%}": choose_threshold(
            y_true, scores, "specificity", target=specificity_target
        ),
    }
