"""The model audit: sensitivity to acquisition changes and where its Grad-CAM evidence lies."""
from __future__ import annotations

import datetime as _dt
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.audit._films import (
    AUDIT_VERSION,
    BATCH_SIZE,
    PER_CLASS,
    SAMPLE_SEED,
    balanced_sample,
    load_films,
    logger,
    perturbation_effect,
    to_model_input,
)
from core.audit._regions import gradcam_mass
from core.imaging import perturbations


def score_films(scorer: Any, films: np.ndarray, *, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """P(pneumonia) (N,) of uint8 films (N, H, W) with a scorer (`predict_batch` and `channels`, a core.model_scoring.Scorer)."""
    if len(films) == 0:
        return np.zeros((0,), np.float32)
    return np.concatenate([scorer.predict_batch(to_model_input(films[i: i + batch_size], scorer.channels))
                           for i in range(0, len(films), batch_size)])


def perturbation_table(scorer: Any, films: np.ndarray, labels: np.ndarray, threshold: float, *,
                       chosen: Sequence[perturbations.Perturbation] = perturbations.PERTURBATIONS,
                       batch_size: int = BATCH_SIZE, reference: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Score the films (N, H, W) uint8 as given and under each perturbation; one row per perturbation.

    `scorer` has `predict_batch((N, H, W, C) float32 [0, 255]) -> (N,)` and `channels` (a core.model_scoring.Scorer).
    Each row: name, description, goal, the metrics of `perturbation_effect` and `passed` (for goal perturbations:
    |delta sensitivity| and |delta specificity| <= ROBUSTNESS_TOLERANCE). `reference`: the films' scores as given,
    when already computed (`score_films`).
    """
    reference = score_films(scorer, films, batch_size=batch_size) if reference is None else np.asarray(reference)
    rows = []
    for perturbation in chosen:
        moved = np.stack([perturbation.apply(film) for film in films])
        effect = perturbation_effect(labels, reference, score_films(scorer, moved, batch_size=batch_size), threshold)
        passed = None
        if perturbation.goal:
            passed = bool(abs(effect["delta_sensitivity"]) <= perturbations.ROBUSTNESS_TOLERANCE + 1e-12
                          and abs(effect["delta_specificity"]) <= perturbations.ROBUSTNESS_TOLERANCE + 1e-12)
        rows.append({"name": perturbation.name, "description": perturbation.description, "goal": perturbation.goal,
                     **effect, "passed": passed})
        logger.info("  %-15s mean |delta p| %.3f, delta sensitivity %+.3f, delta specificity %+.3f", perturbation.name,
                    effect["mean_abs_delta_p"], effect["delta_sensitivity"], effect["delta_specificity"])
    return rows


def model_gradcam_mass(model: Any, films: np.ndarray, labels: np.ndarray, scores: np.ndarray, threshold: float,
                       *, batch_size: int = 16, lungs: Sequence[np.ndarray] | None = None,
                       lung_sources: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Grad-CAM (target: pneumonia evidence) mass per region for all films, per class and for false positives;
    None when the model has no convolution (no Grad-CAM). `lungs`: one lung mask per film (see `gradcam_mass`)."""
    from core import explain

    if not explain.conv_layers(model) and not explain.members(model):
        return None
    gradcam = explain.gradcam_for(model)
    channels = int(model.inputs[0].shape[-1])
    maps = np.concatenate([gradcam.heatmaps(to_model_input(films[i: i + batch_size], channels))
                           for i in range(0, len(films), batch_size)])
    labels, scores = np.asarray(labels), np.asarray(scores)
    groups = {"all": np.ones(len(films), bool), "normal": labels == 0, "pneumonia": labels == 1,
              "false_positive": (labels == 0) & (scores >= threshold)}
    result = {"layer": getattr(gradcam, "layer_name", ""), "target": "pneumonia evidence"}
    def pick(values: Sequence[Any] | None, mask: np.ndarray) -> list[Any] | None:
        return None if values is None else [v for v, keep in zip(values, mask) if keep]

    result.update({group: gradcam_mass(maps[mask], films[mask], pick(lungs, mask), pick(lung_sources, mask))
                   for group, mask in groups.items() if mask.any()})
    return result


def _lung_masks(films: np.ndarray, relpaths: Sequence[str]) -> tuple[list[np.ndarray] | None, list[str] | None]:
    """Lung masks of the films: the human masks of data/lung_masks, else the lung model's (core.lungs); (None, None)
    (the Otsu heuristic) when neither is available."""
    from core.lungs import masks as evidence

    try:
        return evidence.lung_masks(list(films), relpaths)
    except ValueError as exc:
        logger.warning("Lung masks unavailable (%s); the Otsu heuristic finds the lung fields", exc)
        return None, None


def edge_reliance(table: Sequence[dict[str, Any]], gradcam: dict[str, Any] | None) -> dict[str, Any]:
    """Does the model read the edges of the film? Two signs: blacking out the outer band (`black_frame_6`) moves
    sensitivity or specificity beyond ROBUSTNESS_TOLERANCE, or the Grad-CAM mass in border band + corners is
    >= BORDER_RELIANT_MASS. `reliant` is True when either says so."""
    frame = next((row for row in table if row["name"] == "black_frame_6"), None)
    by_frame = None if frame is None else bool(max(abs(frame["delta_sensitivity"]), abs(frame["delta_specificity"]))
                                                 > perturbations.ROBUSTNESS_TOLERANCE + 1e-12)
    cam = (gradcam or {}).get("all")
    by_gradcam = None if not cam or cam["edge_mass"] is None else bool(cam["border_reliant"])
    return {"by_black_frame": by_frame, "black_frame_mean_abs_delta_p": None if frame is None else frame["mean_abs_delta_p"],
            "by_gradcam": by_gradcam, "gradcam_edge_mass": None if not cam else cam["edge_mass"],
            "reliant": bool(by_frame or by_gradcam)}


def model_audit(model_dir: str | os.PathLike, data_root: str | os.PathLike | None = None, *, splits: Sequence[str] = ("val",),
                per_class: int = PER_CLASS, seed: int = SAMPLE_SEED, gradcam: bool = True) -> dict[str, Any]:
    """Audit models/<name>/: perturbation table, robustness pass/fail (validation) and Grad-CAM mass per split.

    Films: `balanced_sample` of each split in `splits` from the dataset at `data_root` (default config.data_root()).
    """
    from core import data
    from core.models import scorer as model_scoring

    started = time.perf_counter()
    scorer = model_scoring.load_scorer(model_dir)
    threshold = float(scorer.threshold)
    index = data.load_index(data_root)
    result: dict[str, Any] = {
        "version": AUDIT_VERSION,
        "computed": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "threshold": threshold,
        "tolerance": perturbations.ROBUSTNESS_TOLERANCE,
        "goal": "sensitivity and specificity at the card threshold move by at most "
                f"{perturbations.ROBUSTNESS_TOLERANCE:.2f} under each goal perturbation, on validation films",
        "perturbations": {p.name: p.description for p in perturbations.PERTURBATIONS},
        "splits": {},
    }
    for split in splits:
        sample = balanced_sample(index, split, per_class=per_class, seed=seed)
        films = load_films(sample["path"].tolist(), scorer.height, scorer.width)
        labels = sample["label"].to_numpy()
        reference = score_films(scorer, films)
        table = perturbation_table(scorer, films, labels, threshold, reference=reference)
        entry: dict[str, Any] = {"n": int(len(sample)), "per_class": int(len(sample) // 2), "seed": int(seed), "table": table}
        goal_rows = [row for row in table if row["goal"]]
        entry["robust"] = bool(all(row["passed"] for row in goal_rows))
        entry["failing"] = [row["name"] for row in goal_rows if not row["passed"]]
        if gradcam:
            lungs, sources = _lung_masks(films, sample["relpath"].tolist())
            entry["gradcam"] = model_gradcam_mass(scorer.model, films, labels, reference, threshold, lungs=lungs,
                                                  lung_sources=sources)
        entry["edges"] = edge_reliance(table, entry.get("gradcam"))
        result["splits"][split] = entry
        logger.info("%s on %s: %d films, robust=%s", scorer.name, split, len(sample), entry["robust"])
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result
