"""Ranking the models and the pre-registered rule that recommends one (rule 3 of docs/PREREGISTRATION.md).

Rule 3: among the models that pass every goal change of the validation robustness audit, the best ROC AUC on the
perturbed views of the validation films of the *early acquisition batch* (core.data.acquisition_batches: the films
acquired next to the official test films). Where no view is in that batch (a dataset without the Kermany file-name
series) the key is the ROC AUC on all perturbed views (rule 2b); without views, the ROC AUC on validation.
"""
from __future__ import annotations

import functools
import logging
import math
from pathlib import Path

import pandas as pd

from core.evaluation import metrics
from core.models import registry
from core.report._changes import recommendation_change

logger = logging.getLogger(__name__)

RECOMMENDATION_TIE = 0.002
"""Validation ROC AUCs closer than this count as a tie, won by the model with fewer parameters."""


def rank_models(models_dir: str | Path) -> pd.DataFrame:
    """Every available model ranked on validation: columns model, display_name, val_roc_auc, val_views_roc_auc,
    val_early_views_roc_auc, val_robust, parameters, threshold.

    ``val_views_roc_auc`` is the ROC AUC on the model's perturbed validation views (threshold_views.csv; NaN when
    absent); ``val_early_views_roc_auc`` the same on the views of the early acquisition batch (rule 3; NaN when the
    views hold no such film or only one class). ``val_robust`` is the validation audit's verdict (True when every goal change keeps sensitivity and
    specificity within the tolerance; None when the card has no audit). Models with views come first (those that
    pass the audit before the others), by that AUC, then the others by ``val_roc_auc`` (ties: fewer parameters, then
    name). Unavailable and site-adapted models are left out (the registry logs why).
    """
    return _rank_models(str(models_dir), registry.models_signature(models_dir)).copy()


@functools.lru_cache(maxsize=8)
def _rank_models(models_dir: str, signature: tuple) -> pd.DataFrame:
    """rank_models, kept per process while no file of the model folders changes (`signature`: stat only)."""
    from core.evaluation import evaluate as evaluation

    rows = []
    for entry in registry.list_models(models_dir):
        if not entry.available or entry.card.get("adapted"):  # adapted models (core.site) never give headline numbers
            continue
        val = registry.load_predictions(entry, split="val")
        views_file = Path(entry.path) / evaluation.THRESHOLD_VIEWS_FILE
        views_auc = early_auc = math.nan
        if views_file.is_file():
            views = pd.read_csv(views_file)
            views_auc = metrics.roc_auc(views["label"], views["score"])
            early_auc = early_batch_roc_auc(views)
        rows.append(
            {
                "model": entry.name,
                "display_name": entry.display_name,
                "val_roc_auc": metrics.roc_auc(val["label"], val["score"]),
                "val_views_roc_auc": views_auc,
                "val_early_views_roc_auc": early_auc,
                "val_robust": validation_robustness(entry.card),
                "parameters": (entry.card.get("parameters") or {}).get("total") or math.inf,
                "threshold": entry.threshold,
            }
        )
    columns = ["model", "display_name", "val_roc_auc", "val_views_roc_auc", "val_early_views_roc_auc", "val_robust",
               "parameters", "threshold"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["_no_views"] = frame["val_views_roc_auc"].isna()
    frame["_not_robust"] = frame["val_robust"] != True  # noqa: E712 (None counts as not shown robust)
    frame["_key"] = selection_key(frame).fillna(frame["val_roc_auc"])
    frame = frame.sort_values(
        ["_no_views", "_not_robust", "_key", "parameters", "model"], ascending=[True, True, False, True, True],
        kind="mergesort",
    )
    return frame.drop(columns=["_no_views", "_not_robust", "_key"]).reset_index(drop=True)


def early_batch_roc_auc(views: pd.DataFrame) -> float:
    """ROC AUC of a threshold_views.csv frame (path, label, score) on its films of the early acquisition batch; NaN
    when none is in the batch or they hold one class only."""
    from core.data import acquisition_batches

    early = acquisition_batches.early_validation(views.assign(split="val"))
    if early.empty or early["label"].nunique() < 2:
        return math.nan
    return metrics.roc_auc(early["label"], early["score"])


def selection_key(ranking: pd.DataFrame) -> pd.Series:
    """Rule 3's number per model: the early-batch perturbed-view ROC AUC where every model with views has one, else
    (a dataset without the Kermany file-name series) the ROC AUC on all perturbed views; NaN without views."""
    with_views = ranking["val_views_roc_auc"].notna()
    early = ranking.get("val_early_views_roc_auc", pd.Series(math.nan, index=ranking.index))
    if with_views.any() and early[with_views].notna().all():
        return early.where(with_views)
    return ranking["val_views_roc_auc"]


def validation_robustness(card: dict) -> bool | None:
    """The validation audit's verdict stored in a card: True/False, or None when the card has no validation audit."""
    val = ((card or {}).get("audit") or {}).get("splits", {}).get("val")
    return None if not val else bool(val.get("robust"))


def recommended_name(ranking: pd.DataFrame) -> str:
    """The recommended model's name from a :func:`rank_models` frame (the rule of the module docstring).

    Raises ValueError when the frame is empty.
    """
    if ranking.empty:
        raise ValueError("No usable trained model to recommend.")
    with_views = ranking.assign(_key=selection_key(ranking))
    with_views = with_views[with_views["val_views_roc_auc"].notna()]
    if with_views.empty:
        return str(ranking["model"].iat[0])
    if "val_robust" in with_views and (with_views["val_robust"] == True).any():  # noqa: E712 (None-safe)
        with_views = with_views[with_views["val_robust"] == True]  # noqa: E712
    best = float(with_views["_key"].max())
    tied = with_views[with_views["_key"] >= best - RECOMMENDATION_TIE]
    return str(tied.sort_values(["parameters", "model"], kind="mergesort")["model"].iat[0])


def recommendation_reason(ranking: pd.DataFrame, name: str) -> str:
    """One plain sentence (Markdown bold allowed) saying why ``name`` was recommended, with the validation numbers."""
    row = ranking.set_index("model").loc[name]
    keys = selection_key(ranking)
    key = keys.set_axis(ranking["model"])[name]
    early = pd.notna(row.get("val_early_views_roc_auc")) and key == row.get("val_early_views_roc_auc")
    if pd.notna(row["val_views_roc_auc"]):
        checked = int(ranking["val_views_roc_auc"].notna().sum())
        robust = ranking[ranking["val_views_roc_auc"].notna() & (ranking.get("val_robust") == True)]  # noqa: E712
        if row.get("val_robust") == True and len(robust):  # noqa: E712 (numpy bool or None)
            ranked_on = (
                f"the validation films taken nearest in time to the test films (ROC AUC **{key:.4f}** on them, zoomed, "
                f"shifted or re-exposed; {row['val_views_roc_auc']:.3f} on all perturbed validation films, "
                f"{row['val_roc_auc']:.3f} on the films as given)"
                if early else
                f"cases (ROC AUC **{row['val_views_roc_auc']:.3f}** on those perturbed validation films; "
                f"{row['val_roc_auc']:.3f} on the films as given)"
            )
            best = float(keys[robust.index].max())
            how = (f"ranks best {ranked_on}" if key >= best else
                   f"ranks within {RECOMMENDATION_TIE} of the best ({best:.4f}: a tie, which goes to the smaller model) "
                   f"{ranked_on}")
            return (
                "Chosen on the **validation** images only: its decisions hold when the validation films are zoomed, "
                "shifted, re-exposed or padded with black bars (sensitivity and specificity move by at most 0.05), "
                f"and of the {len(robust)} of {checked} models that hold like this it {how}."
            )
        return (
            "Chosen on the **validation** images only: it ranks cases best when the validation films are also shown "
            "zoomed, shifted, re-exposed, blurred or noisier, as other hospitals' machines would produce them "
            f"(ROC AUC **{row['val_views_roc_auc']:.3f}** on those perturbed validation films; {row['val_roc_auc']:.3f} "
            f"on the films as given), the best of the {checked} models checked this way."
        )
    return (
        f"Chosen because it ranks cases best on the **validation** images: ROC AUC **{row['val_roc_auc']:.3f}** "
        f"(validation split), the highest of the {len(ranking)} trained models."
    )


RECOMMENDED_MARK = "★ recommended"
"""How every model list marks the recommended model, in front so that a narrow column still shows it."""


def recommended_label(display_name: str) -> str:
    """'★ recommended · <display name>': the recommended model as every list names it."""
    return f"{RECOMMENDED_MARK} · {display_name}"


def ranking_display(ranking: pd.DataFrame) -> pd.DataFrame:
    """The ranking as a person reads it: display names (the recommended one marked), numbers as text, and words where
    a number was not measured (no empty or None cells)."""
    recommended = recommended_name(ranking) if not ranking.empty else None

    def number(value: object) -> str:
        return "not measured" if value is None or pd.isna(value) else f"{float(value):.4f}"

    def robust(value: object) -> str:
        return "not audited" if value is None or pd.isna(value) else ("passes" if bool(value) else "fails")

    return pd.DataFrame({
        "Model": [recommended_label(d) if m == recommended else d for m, d in zip(ranking["model"], ranking["display_name"])],
        "ROC AUC (VALIDATION)": [number(v) for v in ranking["val_roc_auc"]],
        "ROC AUC (VALIDATION, perturbed views)": [number(v) for v in ranking["val_views_roc_auc"]],
        "ROC AUC (VALIDATION, early batch, perturbed views)": [
            number(v) for v in ranking.get("val_early_views_roc_auc", pd.Series([None] * len(ranking)))
        ],
        "Robustness audit (VALIDATION)": [robust(v) for v in ranking.get("val_robust", pd.Series([None] * len(ranking)))],
        "Threshold (chosen on VALIDATION)": [f"{float(v):.3f}" for v in ranking["threshold"]],
    })


def recommend_model(models_dir: str | Path) -> registry.ModelEntry:
    """The recommended model, chosen on validation only (see the module docstring); ValueError when there is none."""
    ranking = rank_models(models_dir)
    if ranking.empty:
        raise ValueError(
            f"No usable trained model in {models_dir}; train the shipped models with `make models` "
            "or point PNEUMONIA_MODELS at a folder written by train.py."
        )
    return registry.get_model(recommended_name(ranking), models_dir)


def warm_landing_page(models_dir: str | Path, data_root: str | Path) -> str | None:
    """Compute once, before a server takes its first visitor, what the landing page reads: the dataset index (cached
    on disk), the ranking, the recommended model's test metrics with their bootstrap CIs and what changed with the
    last recommendation (kept in this process).

    Returns the recommended model's name, or None when no model is usable. Errors are left to the page to report.
    """
    from core.report._figures import dataset_counts

    try:
        dataset_counts(data_root)
    except (OSError, ValueError) as exc:
        logger.warning("Landing page warm-up: the dataset index could not be built (%s)", exc)
    ranking = rank_models(models_dir)
    if ranking.empty:
        return None
    entry = registry.get_model(recommended_name(ranking), models_dir)
    for split in ("val", "test"):
        registry.model_summary(entry, split)
    recommendation_change(models_dir, entry.name)
    return entry.name
