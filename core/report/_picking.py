"""Which example X-rays a model is shown with (one typical case per outcome) and how they are drawn (Grad-CAM overlay)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.models import registry

logger = logging.getLogger(__name__)

EXAMPLE_KINDS: tuple[tuple[str, str, str], ...] = (
    ("correct detection", "tp", "Pneumonia, and the tool flagged it."),
    ("miss", "fn", "Pneumonia, but the tool did not flag it."),
    ("false alarm", "fp", "No pneumonia, but the tool flagged it."),
)
EXAMPLE_IMAGE_SIDE = 320


def pick_examples(predictions: pd.DataFrame, threshold: float, *, split: str = "test") -> pd.DataFrame:
    """One typical case per outcome (correct detection, miss, false alarm) of `split` at `threshold`.

    predictions: columns path, split, label, score (registry.load_predictions). Returns columns kind, outcome,
    caption, path, label, score; an outcome with no case (e.g. no miss at all) is left out.
    """
    rows = predictions[predictions["split"] == split]
    flagged = rows["score"].to_numpy() >= threshold
    positive = rows["label"].to_numpy() == 1
    masks = {"tp": flagged & positive, "fn": ~flagged & positive, "fp": flagged & ~positive}
    chosen = []
    for kind, outcome, caption in EXAMPLE_KINDS:
        group = rows[masks[outcome]]
        if group.empty:
            continue
        distance = (group["score"] - group["score"].median()).abs()
        best = group.assign(_distance=distance).sort_values(["_distance", "path"], kind="mergesort").iloc[0]
        chosen.append({"kind": kind, "outcome": outcome, "caption": caption, "path": str(best["path"]),
                       "label": int(best["label"]), "score": float(best["score"])})
    return pd.DataFrame(chosen, columns=["kind", "outcome", "caption", "path", "label", "score"])


@dataclass(frozen=True)
class ExampleImage:
    """One example X-ray for display: its case, and an RGB uint8 (H, W, 3) image (Grad-CAM overlay when available)."""

    kind: str
    caption: str
    path: str
    label: int
    score: float
    image: np.ndarray
    heatmap: bool
    note: str = ""

    @property
    def png(self) -> bytes:
        """The image as PNG bytes."""
        from core.explain import to_png

        return to_png(self.image)


def example_images(entry: registry.ModelEntry | Path, examples: pd.DataFrame, data_root: str | Path, *, heatmaps: bool = True) -> list[ExampleImage]:
    """Decode the `examples` (pick_examples) from `data_root` and, if `heatmaps`, overlay the model's Grad-CAM.

    `entry` is a registry.ModelEntry (or its folder). Loading the model needs TensorFlow; when the model has no
    convolution layer (e.g. an MLP) or cannot be loaded, the plain X-ray is returned with a note saying why.
    """
    from core.imaging import (
        InvalidImageError,
        decode_xray,
        resize_for_display,
        to_uint8,
    )

    root = Path(data_root)
    decoded_rows = []
    for row in examples.itertuples(index=False):
        try:
            decoded_rows.append((row, decode_xray(root / row.path)))
        except (InvalidImageError, OSError) as exc:
            logger.warning("Example %s cannot be shown: %s", row.path, exc)
    gradcam, scorer, why_not = None, None, "" if heatmaps else "heatmaps switched off"
    if heatmaps and decoded_rows:  # load the model (TensorFlow) only when there is something to explain
        try:
            from core import explain
            from core.models import scorer as model_scoring

            scorer = model_scoring.load_scorer(getattr(entry, "path", entry))
            gradcam = explain.gradcam_for(scorer.model)
        except ValueError as exc:  # registry.ModelUnavailableError and "no convolution layer" are ValueErrors
            why_not = f"no Grad-CAM for this model: {exc}"
            logger.warning("Example heatmaps unavailable: %s", exc)
    images = []
    for row, decoded in decoded_rows:
        pixels = resize_for_display(decoded.pixels, EXAMPLE_IMAGE_SIDE)
        if gradcam is not None:
            from core import explain

            cam = gradcam.heatmaps(scorer.prepare(decoded)[None])[0]
            rgb, has_heatmap, note = explain.overlay(pixels, cam, opacity=0.4), True, ""
        else:
            rgb, has_heatmap, note = to_uint8(pixels, rgb=True), False, why_not
        images.append(ExampleImage(row.kind, row.caption, row.path, int(row.label), float(row.score), rgb, has_heatmap, note))
    return images
