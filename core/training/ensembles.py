"""Ensembles: the mean of trained models' probabilities as one model.keras, members chosen on validation only."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from core.models import cards
from core import config, training
from core.evaluation import evaluate as evaluation

log = logging.getLogger(__name__)

ENSEMBLE_RULE_TEXT = (
    "greedy forward selection (Caruana et al. 2004) of the candidates, each added while it lowers the "
    "validation Brier score of the mean probability"
)


GIVEN_MEMBERS_TEXT = "given: every candidate named, fixed before the ensemble was built (train.py --ensemble-members given)"


def select_ensemble_members(candidates: Sequence[str], models_dir: Path | str) -> list[str]:
    """Members chosen on validation only: start from the lowest-Brier model, add the one that lowers the mean's Brier most.

    Reads each candidate's stored validation scores (predictions.csv); stops when no candidate improves.
    """
    from core.models import registry

    val_scores = {}
    labels = None
    for name in candidates:
        rows = registry.load_predictions(Path(models_dir) / name, "val").sort_values("path")
        if labels is None:
            labels, paths = rows["label"].to_numpy(), rows["path"].to_numpy()
        elif not np.array_equal(rows["path"].to_numpy(), paths):
            raise ValueError(f"{name} was validated on other images than {candidates[0]}; retrain it on the same data.")
        val_scores[name] = rows["score"].to_numpy()

    def brier(names: list[str]) -> float:
        mean = np.mean([val_scores[n] for n in names], axis=0)
        return float(np.mean((mean - labels) ** 2))

    chosen = [min(val_scores, key=lambda n: brier([n]))]
    while True:
        remaining = [n for n in val_scores if n not in chosen]
        if not remaining:
            break
        best = min(remaining, key=lambda n: brier(chosen + [n]))
        if brier(chosen + [best]) >= brier(chosen):
            break
        chosen.append(best)
    log.info("Ensemble members chosen on validation: %s (val Brier %.4f)", chosen, brier(chosen))
    return chosen


def ensemble_display_name(members: Sequence[str], img_size: int) -> str:
    """The name shown for an ensemble: its members, e.g. 'Ensemble (mean of a + b), 128 px'."""
    return f"Ensemble (mean of {' + '.join(members)}), {img_size} px"


def train_ensemble(
    candidates: Sequence[str],
    *,
    name: str = "ensemble",
    data: str | Path | None = None,
    models_dir: str | Path | None = None,
    img_size: int | None = None,
    select: bool = True,
    bootstrap: int = config.BOOTSTRAP_RESAMPLES,
    seed: int = 42,
    progress: bool = True,
    limit: int | None = None,
    threshold_views: int = 0,
    display_name: str | None = None,
) -> training.RunResult:
    """Average shipped models into one model.keras (members chosen on validation), evaluate and publish it atomically.

    The ensemble takes RGB ``img_size`` pixels (default: the largest member input). With ``threshold_views`` its
    threshold is chosen on the validation films plus that many acquisition-perturbed views of each, as for a
    single model (core.evaluation.perturbed_view_scores). ``display_name`` is the name shown (default: the members).
    """
    import time

    from core.models import registry, zoo

    start = time.time()
    models_dir = Path(models_dir or config.models_dir())
    data = str(data or config.data_root())
    members = select_ensemble_members(candidates, models_dir) if select else list(candidates)
    if len(members) < 2:
        raise ValueError(
            f"Validation selection kept only {members}: no other candidate improves it, so no ensemble is written."
        )
    member_cards = {m: registry.load_card(models_dir / m) for m in members}
    img_size = int(img_size or max(int(c["input"]["height"]) for c in member_cards.values()))
    model = zoo.build_ensemble(
        [registry.load_keras_model(models_dir / m) for m in members], img_size=img_size, name="ensemble"
    )
    index = training.load_training_index(data, limit=limit, seed=seed)
    evaluated = index[index["split"].isin(["val", "test"])].reset_index(drop=True)
    scores = evaluation.score_frame(model, evaluated, img_size=img_size, channels=3, progress=progress)
    predictions = evaluation.predictions_frame(evaluated, scores)
    cfg = training.TrainConfig(
        model="xception", name=name, data=data, img_size=img_size, bootstrap=bootstrap, seed=seed, limit=limit,
        threshold_views=threshold_views,
    )
    views = None
    if threshold_views > 0:
        views = evaluation.perturbed_view_scores(
            model, evaluated[evaluated["split"] == "val"], n_views=threshold_views, img_size=img_size, channels=3,
            seed=seed,
        )
    threshold, results = evaluation.evaluate_predictions(
        predictions, rule=cfg.threshold_rule, target=cfg.threshold_target, n_resamples=bootstrap, seed=seed,
        threshold_rows=views,
    )
    card = cards.build_card(
        cfg=cfg,
        model=model,
        weights_source="; ".join(f"{m}: {c['weights_source']}" for m, c in member_cards.items()),
        dataset=cards.dataset_summary(index, data),
        threshold=threshold,
        results=results,
        seconds=time.time() - start,
        epochs_run=0,
    )
    card.update(
        {
            "display_name": display_name or ensemble_display_name(members, img_size),
            "architecture": "ensemble",
            "input": {
                "height": img_size,
                "width": img_size,
                "channels": 3,
                "preprocessing": "RGB raw [0, 255]; each member's own resize / grey conversion / preprocessing as layers",
            },
            "members": members,
            "member_selection": {
                "candidates": list(candidates),
                "rule": ENSEMBLE_RULE_TEXT if select else GIVEN_MEMBERS_TEXT,
                "chosen_on": "val",
            },
        }
    )
    card["training"]["config"] = {
        "members": members,
        "candidates": list(candidates),
        "img_size": img_size,
        "seed": seed,
        "bootstrap": bootstrap,
        "limit": limit,
        "threshold_views": threshold_views,
    }
    with cards.staged_folder(models_dir / name) as tmp:
        history = pd.DataFrame({"epoch": [], "loss": [], "val_loss": []})
        cards.write_artifacts(tmp, model=model, card=card, history=history, predictions=predictions)
        (tmp / "history.csv").unlink()  # nothing was trained: no history
        if views is not None:
            views.to_csv(tmp / evaluation.THRESHOLD_VIEWS_FILE, index=False)
    return training.RunResult(models_dir / name, card)
