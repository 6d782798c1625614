"""Test-time augmentation (TTA): score each film under a few fixed reframings and average the probabilities.

    python -m core.evaluation.tta models/<name>/ [--out docs/experiments] [--threshold-views 4]

A study of issue 14 (docs/PREREGISTRATION.md, addendum 7), not a shipped model: the dashboard scores one model
file, and TTA is a way of calling it. :class:`TestTimeAugmented` wraps a loaded Keras model so that the project's
scoring functions (``core.evaluation.score_frame`` / ``perturbed_view_scores``) call it like a model.
:func:`evaluate_tta` re-chooses the threshold by the card's rule on the TTA scores of the validation films (plus
their perturbed views when the card's threshold used them) and writes ``<out>/<name>-tta/`` (card.json, card.md,
predictions.csv, threshold_views.csv) for the ablation table (``core.evaluation.ablation``).

The views (``TTA_VIEWS``) are boxes for ``tf.image.crop_and_resize`` in normalised (y1, x1, y2, x2) image
coordinates: a box inside [0, 1] crops and enlarges (zoom in), a box reaching outside fills with black (zoom out,
shift), as the audit's perturbations do (``core.imaging.perturbations``). No horizontal flip: a chest film is not symmetric.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.models import cards
from core import config
from core.evaluation import evaluate as evaluation

logger = logging.getLogger(__name__)

TTA_VIEWS: dict[str, tuple[float, float, float, float]] = {
    "as given": (0.0, 0.0, 1.0, 1.0),
    "zoom in 10 %": (0.05, 0.05, 0.95, 0.95),
    "zoom out 10 %": (-0.05, -0.05, 1.05, 1.05),
    "shift left 5 %": (0.0, 0.05, 1.0, 1.05),
    "shift right 5 %": (0.0, -0.05, 1.0, 0.95),
}
"""Name -> crop box (y1, x1, y2, x2), normalised; fixed before any TTA score was computed (addendum 7)."""


class TestTimeAugmented:
    """``model`` called on every view of ``views`` (default :data:`TTA_VIEWS`); returns the mean probability.

    Call it like a Keras model: ``wrapped(batch, training=False)`` with ``batch`` float ``(N, H, W, C)`` in [0, 255]
    returns ``(N, 1)`` float32 probabilities. Views keep the input size (bilinear resampling, black fill).
    """

    def __init__(self, model: Any, views: dict[str, tuple[float, float, float, float]] | None = None) -> None:
        if views is not None and not views:
            raise ValueError("Test-time augmentation needs at least one view.")
        self.model = model
        self.views = dict(views or TTA_VIEWS)
        self.input_shape = tuple(int(s) for s in model.inputs[0].shape[1:])

    def view_batches(self, batch: Any) -> list[Any]:
        """The batch under each view, in ``views`` order: tensors of the batch's shape."""
        import tensorflow as tf

        images = tf.convert_to_tensor(batch, dtype=tf.float32)
        count = tf.shape(images)[0]
        size = self.input_shape[:2]
        out = []
        for box in self.views.values():
            boxes = tf.tile(tf.constant([box], tf.float32), [count, 1])
            out.append(tf.image.crop_and_resize(images, boxes, tf.range(count), size, extrapolation_value=0.0))
        return out

    def __call__(self, batch: Any, training: bool = False) -> Any:
        import tensorflow as tf

        scores = [tf.reshape(self.model(view, training=training), (-1, 1)) for view in self.view_batches(batch)]
        return tf.reduce_mean(tf.stack(scores, axis=0), axis=0)


def evaluate_tta(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    data_root: str | Path | None = None,
    threshold_views: int | None = None,
    bootstrap: int = config.BOOTSTRAP_RESAMPLES,
    limit: int | None = None,
) -> Path:
    """Score models/<name>/'s validation and test films with TTA, re-choose its threshold on validation, and write
    ``out_dir/<name>-tta/`` atomically (a temporary folder renamed when complete). Returns that folder.

    ``threshold_views`` defaults to the card's (``training.config.threshold_views``; 0 = validation films as given).
    The rule, its target and the seed of the perturbed views are the card's. ``limit`` keeps at most that many films
    per split and class (tests). Raises FileNotFoundError / ValueError as ``core.models.registry`` does for a broken folder.
    """
    from core.models import registry
    from core import training

    started = time.time()
    folder = Path(model_dir)
    card = registry.load_card(folder)
    run_config = card["training"]["config"]
    n_views = int(run_config.get("threshold_views", 0) if threshold_views is None else threshold_views)
    seed = int(run_config.get("seed", 42))
    size, channels = int(card["input"]["height"]), int(card["input"]["channels"])
    wrapped = TestTimeAugmented(registry.load_keras_model(folder))
    index = training.load_training_index(str(data_root or config.data_root()), limit=limit, seed=42)
    evaluated = index[index["split"].isin(["val", "test"])].reset_index(drop=True)
    scores = evaluation.score_frame(wrapped, evaluated, img_size=size, channels=channels)
    predictions = evaluation.predictions_frame(evaluated, scores)
    views = None
    if n_views > 0:
        views = evaluation.perturbed_view_scores(
            wrapped, evaluated[evaluated["split"] == "val"], n_views=n_views, img_size=size, channels=channels, seed=seed
        )
    rule = card["threshold"].get("rule_id", cards.THRESHOLD_RULE)
    target = card["threshold"].get("target", cards.THRESHOLD_TARGET)
    threshold, results = evaluation.evaluate_predictions(
        predictions, rule=rule, target=target, n_resamples=bootstrap, seed=seed, threshold_rows=views
    )
    name = f"{card['name']}-tta"
    tta_card = dict(card)
    for section in ("guard", "audit"):  # measured on the model as called without TTA
        tta_card.pop(section, None)
    tta_card.update(
        name=name,
        display_name=f"{card['display_name']} + test-time augmentation ({len(wrapped.views)} views)",
        threshold={**card["threshold"], "value": threshold},
        metrics=results,
        training={
            **card["training"],
            "config": {**run_config, "name": name, "tta": list(wrapped.views), "threshold_views": n_views},
            "tta_seconds": round(time.time() - started, 1),
        },
        tta={"views": {k: list(v) for k, v in wrapped.views.items()}, "of_model": card["name"],
             "study": "docs/PREREGISTRATION.md addendum 7; not a shipped model"},
    )
    final = Path(out_dir) / name
    with cards.staged_folder(final) as tmp:
        cards.write_card(tmp, tta_card)
        predictions.to_csv(tmp / registry.PREDICTIONS_FILE, index=False)
        if views is not None:
            views.to_csv(tmp / evaluation.THRESHOLD_VIEWS_FILE, index=False)
    logger.info("Wrote %s (threshold %.3f, %.0f s)", final, threshold, time.time() - started)
    return final


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: evaluate TTA for each model folder given; print where each study went and its test numbers."""
    config.quiet_tensorflow()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model folders (models/<name>/)")
    parser.add_argument("--out", default="docs/experiments", help="where <name>-tta/ is written")
    parser.add_argument("--data", default=None, help="dataset folder (default: the project's)")
    parser.add_argument("--threshold-views", type=int, default=None, help="perturbed views per validation film "
                        "for the threshold (default: the card's)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many films per split and class (tests)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from core.evaluation import metrics
    from core.models import registry

    for model_dir in args.models:
        try:
            folder = evaluate_tta(model_dir, args.out, data_root=args.data, threshold_views=args.threshold_views,
                                  limit=args.limit)
        except (FileNotFoundError, ValueError) as error:
            print(f"core.evaluation.tta: {model_dir}: {error}", file=sys.stderr)
            return 2
        card = registry.load_card(folder)
        test = card["metrics"]["test"]
        print(f"{folder}: threshold {card['threshold']['value']:.3f}; " + ", ".join(
            f"test {k} {metrics.format_ci(test[k])}" for k in ("roc_auc", "accuracy", "recall", "specificity")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
