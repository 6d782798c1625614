"""Evaluation of a trained model: scores for the validation and test films, the operating threshold chosen on
validation by one rule, metrics with bootstrap CIs, and re-evaluation of a model folder from its stored scores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.models import cards
from core import config
from core.progress import progress_bar


def score_frame(
    model: Any, frame: pd.DataFrame, *, img_size: int, channels: int, batch_size: int = 32, progress: bool = False
) -> np.ndarray:
    """The model's PNEUMONIA probabilities for the rows' images, float64 ``(N,)``, in row order."""
    from core.data import pipeline

    dataset = pipeline.make_dataset(
        frame, img_size=img_size, channels=channels, batch_size=batch_size, cache=False, with_labels=False
    )
    bar = progress_bar(total=len(frame), desc="scoring", unit="img", enabled=progress)
    scores = []
    for batch in dataset:
        scores.append(np.asarray(model(batch, training=False)).reshape(-1))
        bar.update(int(batch.shape[0]))
    bar.close()
    return np.concatenate(scores).astype("float64")


def predictions_frame(index: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    """predictions.csv rows: path (dataset relpath), split, label, score, for the given index rows."""
    return pd.DataFrame(
        {
            "path": index["relpath"].astype(str).to_numpy(),
            "split": index["split"].astype(str).to_numpy(),
            "label": index["label"].astype(int).to_numpy(),
            "score": np.clip(scores, 0.0, 1.0),
        }
    )


THRESHOLD_VIEWS_FILE = "threshold_views.csv"
"""Validation films scored under acquisition perturbations (path, view, label, score), when the rule used them."""


def perturbed_view_scores(
    model: Any, frame: pd.DataFrame, *, n_views: int, img_size: int, channels: int, seed: int = 0, batch_size: int = 32
) -> pd.DataFrame:
    """Scores of ``frame``'s films (validation) as given (view 0) and under ``n_views`` random acquisition perturbations.

    The perturbations are :data:`core.data.pipeline.ACQUISITION_AUGMENT` (framing, exposure, blur, noise), seeded, so
    a threshold chosen on these rows is one that still holds when the films are acquired a little differently.
    Returns a frame ``path, view, label, score`` with ``(n_views + 1) * len(frame)`` rows.
    """
    import tensorflow as tf

    from core.data import pipeline

    tf.random.set_seed(seed)
    images = pipeline.load_arrays(frame, img_size=img_size, channels=channels)
    augment = pipeline.augment_batch_fn(pipeline.ACQUISITION_AUGMENT, seed=seed)
    parts = []
    for view in range(n_views + 1):
        scores = []
        for start in range(0, len(images), batch_size):
            batch = tf.constant(images[start : start + batch_size])
            if view > 0:
                batch = augment(batch)
            scores.append(np.asarray(model(batch, training=False)).reshape(-1))
        parts.append(
            pd.DataFrame(
                {
                    "path": frame["relpath"].astype(str).to_numpy(),
                    "view": view,
                    "label": frame["label"].astype(int).to_numpy(),
                    "score": np.concatenate(scores).astype("float64"),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def evaluate_predictions(
    predictions: pd.DataFrame,
    *,
    rule: str,
    target: float | None,
    n_resamples: int,
    seed: int = 0,
    threshold_rows: pd.DataFrame | None = None,
) -> tuple[float, dict[str, dict[str, dict[str, float]]]]:
    """Threshold chosen on the val rows by ``rule``; metrics with bootstrap CIs for val and test at it.

    ``threshold_rows`` (``label, score``; e.g. :func:`perturbed_view_scores`) replaces the val rows for choosing
    the threshold only; they must come from validation films.
    """
    from core.evaluation import metrics

    val = predictions[predictions["split"] == "val"] if threshold_rows is None else threshold_rows
    threshold = metrics.choose_threshold(val["label"].to_numpy(), val["score"].to_numpy(), rule, target=target)
    results = {}
    for split in ("val", "test"):
        rows = predictions[predictions["split"] == split]
        results[split] = metrics.summarize_with_ci(
            rows["label"].to_numpy(), rows["score"].to_numpy(), threshold, n_resamples=n_resamples, seed=seed
        )
    return float(threshold), results


def reevaluate(folder: Path | str, *, n_resamples: int | None = None) -> dict:
    """Recompute a model folder's threshold and metrics from its predictions.csv with the card's rule; rewrite the card.

    Useful after a change of metric code; never looks at anything but the stored scores.
    """
    folder = Path(folder)
    card = json.loads((folder / "card.json").read_text())
    predictions = pd.read_csv(folder / "predictions.csv", dtype={"path": str, "split": str})
    rule = card["threshold"].get("rule_id", cards.THRESHOLD_RULE)
    target = card["threshold"].get("target", cards.THRESHOLD_TARGET)
    resamples = n_resamples or int(card["training"]["config"].get("bootstrap", config.BOOTSTRAP_RESAMPLES))
    seed = int(card["training"]["config"].get("seed", 0))
    views_file = folder / THRESHOLD_VIEWS_FILE
    views = pd.read_csv(views_file) if views_file.is_file() else None
    threshold, results = evaluate_predictions(
        predictions, rule=rule, target=target, n_resamples=resamples, seed=seed, threshold_rows=views
    )
    card["threshold"]["value"] = threshold
    card["metrics"] = results
    cards.write_card(folder, card)
    return card


def add_threshold_views(
    folder: Path | str, *, n_views: int = 4, data_root: str | Path | None = None, seed: int | None = None
) -> dict:
    """Score a trained model's validation films under ``n_views`` acquisition perturbations, then re-choose its
    threshold on them (the card's rule) and rewrite the card; returns the new card.

    Writes ``threshold_views.csv`` next to ``predictions.csv`` (atomically) and records the rule's new text. Only
    validation films are scored; the test rows of ``predictions.csv`` are unchanged (their metrics are recomputed at
    the new threshold). Raises ValueError when the model folder has no validation rows.
    """
    import os

    from core.models import registry

    folder = Path(folder)
    card = registry.load_card(folder)
    val = registry.load_predictions(folder, "val")
    if val.empty:
        raise ValueError(f"{folder} has no validation rows in predictions.csv; retrain it.")
    root = Path(data_root or config.data_root())
    frame = pd.DataFrame({"relpath": val["path"], "path": [str(root / p) for p in val["path"]], "label": val["label"]})
    model = registry.load_keras_model(folder)
    run_seed = int(card["training"]["config"].get("seed", 42)) if seed is None else seed
    views = perturbed_view_scores(
        model, frame, n_views=n_views, img_size=int(card["input"]["height"]), channels=int(card["input"]["channels"]),
        seed=run_seed,
    )
    tmp = folder / f".{THRESHOLD_VIEWS_FILE}.tmp"
    views.to_csv(tmp, index=False)
    os.replace(tmp, folder / THRESHOLD_VIEWS_FILE)
    base_rule = card["threshold"]["rule"].split(", on the validation films as given")[0]
    card["threshold"]["rule"] = (
        f"{base_rule}, on the validation films as given plus {n_views} acquisition-perturbed views of each "
        "(zoom, shift, exposure, gamma, blur, noise)"
    )
    cards.write_card(folder, card)
    return reevaluate(folder)


def main(argv: list[str] | None = None) -> int:
    """``python -m core.evaluation``: re-evaluate model folders, optionally adding perturbed validation views."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m core.evaluation",
        description="Recompute a model's threshold (chosen on validation only) and metrics from its stored scores.",
    )
    parser.add_argument("folders", nargs="+", help="model folders, e.g. models/cnn-deep-128")
    parser.add_argument("--views", type=int, default=0,
                        help="first score the validation films under this many acquisition-perturbed views and choose "
                             "the threshold on them (writes threshold_views.csv)")
    parser.add_argument("--data", default=None, help="dataset folder the stored paths are relative to (default: data/chest_xray)")
    args = parser.parse_args(argv)
    config.quiet_tensorflow()
    for folder in args.folders:
        try:
            card = add_threshold_views(folder, n_views=args.views, data_root=args.data) if args.views else reevaluate(folder)
        except (ValueError, OSError) as error:
            print(f"{folder}: {error}")
            return 2
        print(f"{folder}: threshold {card['threshold']['value']:.4f} ({card['threshold']['rule']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
