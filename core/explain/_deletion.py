"""Faithfulness: the deletion curve (remove the most-highlighted pixels first, against a random order)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.explain._layers import DELETION_STEPS, Target, _sign, cached, logit_head

LOGIT_CLIP = 1e-12  # probabilities are clipped to [LOGIT_CLIP, 1 - LOGIT_CLIP] when log-odds must come from them
STRONG_GAP = 0.2  # "faithful" when the heatmap curve lies below the random one by this fraction of the total change


def logit_function(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Cached: model inputs (N, H, W, C) in [0, 255] -> pre-sigmoid log-odds of PNEUMONIA (N,) float64.

    Read before the sigmoid (core.explain.logit_head), so it stays informative where the probability is 1.0 in float32.
    """
    import keras
    import tensorflow as tf

    def build() -> Any:
        head_input, to_logit = logit_head(model)
        sub_model = keras.Model(model.inputs, head_input)
        shape = tuple(int(s) for s in model.inputs[0].shape[1:])
        return tf.function(lambda batch: tf.reshape(to_logit(sub_model(batch, training=False)), (-1,)),
                           input_signature=[tf.TensorSpec((None, *shape), tf.float32)])

    function = cached(model, ("logit",), build)
    return lambda batch: function(np.asarray(batch, np.float32)).numpy().astype(np.float64)


@dataclass(frozen=True)
class DeletionCurve:
    """Log-odds of the explained class as the most-highlighted pixels are replaced by a blurred copy of the image.

    fractions (S+1,) of pixels removed; scores (S+1,) log-odds of the explained class under the heatmap's order;
    random_scores under a random order (the reference); probabilities / random_probabilities the same curves as
    probabilities of the explained class. Log-odds, not probabilities: a confident film (p = 1.0) changes its
    log-odds when evidence is removed long before its probability moves. area / random_area are the mean change of
    the log-odds from the start along each curve (0 = nothing changed, lower = the removed pixels mattered more).
    """

    fractions: np.ndarray
    scores: np.ndarray
    random_scores: np.ndarray
    area: float
    random_area: float
    baseline: str
    probabilities: np.ndarray | None = None
    random_probabilities: np.ndarray | None = None
    scale: str = "log-odds"

    @property
    def gap(self) -> float:
        """How far (mean log-odds) the heatmap-order curve lies below the random-order curve (> 0: heatmap first falls faster)."""
        return float(self.random_area - self.area)

    @property
    def faithful(self) -> bool:
        """True when removing the highlighted pixels first lowers the log-odds faster than removing random ones."""
        return self.area < self.random_area

    def verdict(self) -> str:
        """A sentence telling a user how far to trust the heatmap."""
        start = self.probabilities[0] if self.probabilities is not None else 1.0 / (1.0 + np.exp(-self.scores[0]))
        if start < 0.05:
            return "The model gives this class almost no score, so there is little evidence for the heatmap to show."
        numbers = (f"mean change of the log-odds {self.area:+.2f} vs {self.random_area:+.2f} for random pixels, lower is better")
        total_change = abs(float(self.scores[-1] - self.scores[0]))  # blurring everything: the same for both orders
        if self.faithful and self.gap >= STRONG_GAP * total_change:
            return (f"Faithful: blurring the highlighted pixels first lowers the model's log-odds for this class much faster "
                    f"than blurring random pixels ({numbers}).")
        if self.faithful:
            return (f"Weakly faithful: blurring the highlighted pixels first lowers the log-odds only a little faster than "
                    f"random ({numbers}); read the heatmap with caution.")
        return (f"Not faithful: blurring the highlighted pixels first lowers the log-odds no faster than random pixels "
                f"({numbers}); do not trust this heatmap.")


def _deletion_order(heatmap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat pixel indices from most to least highlighted (ties broken at random)."""
    flat = heatmap.reshape(-1).astype(np.float64)
    return np.lexsort((rng.random(flat.size), -flat))


def deletion_curve(predict_batch: Callable[[np.ndarray], np.ndarray], model_input: np.ndarray, heatmap: np.ndarray, *,
                   target: Target = "pneumonia", steps: int = DELETION_STEPS, seed: int = 0,
                   logit_batch: Callable[[np.ndarray], np.ndarray] | None = None) -> DeletionCurve:
    """Deletion curve of a heatmap (H, W) for a model input (H, W, C) in [0, 255].

    `predict_batch` maps (N, H, W, C) -> P(pneumonia) (N,); `logit_batch` (e.g. logit_function(model)), when given,
    maps the same batch to pre-sigmoid log-odds, which stay exact at saturation; without it the log-odds are computed
    from the probabilities (clipped to [1e-12, 1 - 1e-12], so a float32 probability of exactly 1.0 loses information).
    """
    import cv2
    from sklearn.metrics import auc

    x = np.asarray(model_input, np.float32)
    height, width = x.shape[:2]
    sign = _sign(target)
    if heatmap.shape != (height, width):
        raise ValueError(f"The heatmap {heatmap.shape} must match the model input {(height, width)}; use resize_maps first.")
    if not 1 <= steps <= 100:
        raise ValueError(f"steps must be between 1 and 100, got {steps}.")
    sigma = max(height, width) / 8.0  # removes detail but keeps the image's overall brightness (stays in-domain)
    blurred = cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, sigmaY=sigma).reshape(height, width, -1)
    rng = np.random.default_rng(seed)
    orders = [_deletion_order(heatmap, rng), rng.permutation(height * width)]
    fractions = np.linspace(0.0, 1.0, steps + 1)
    batch = np.empty((2 * (steps + 1), height, width, x.shape[2]), np.float32)
    for o, order in enumerate(orders):
        for s, fraction in enumerate(fractions):
            mask = np.zeros(height * width, bool)
            mask[order[: int(round(fraction * height * width))]] = True
            batch[o * (steps + 1) + s] = np.where(mask.reshape(height, width, 1), blurred, x)
    probabilities = np.asarray(predict_batch(batch), np.float64).reshape(-1)
    if logit_batch is not None:
        logits = np.asarray(logit_batch(batch), np.float64).reshape(-1)
    else:
        clipped = np.clip(probabilities, LOGIT_CLIP, 1.0 - LOGIT_CLIP)
        logits = np.log(clipped) - np.log1p(-clipped)
    scores = sign * logits
    target_probabilities = probabilities if target == "pneumonia" else 1.0 - probabilities
    ordered, random_scores = scores[: steps + 1], scores[steps + 1:]
    return DeletionCurve(fractions=fractions, scores=ordered, random_scores=random_scores,
                         area=float(auc(fractions, ordered - ordered[0])), random_area=float(auc(fractions, random_scores - ordered[0])),
                         baseline="Gaussian blur of the image (sigma = 1/8 of its side)",
                         probabilities=target_probabilities[: steps + 1], random_probabilities=target_probabilities[steps + 1:])
