"""A trained model loaded for scoring decoded films: input preparation, probability, its own threshold and the decision in words."""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import config

logger = logging.getLogger(__name__)

EXAMPLE_MODEL = "models/cnn-reference-64"  # a shipped model folder, named in error messages



def prepare_input(pixels: Any, height: int, width: int, channels: int) -> np.ndarray:
    """Resize grey [0, 1] pixels (H0, W0) (or a DecodedXray) to the model input: float32 (height, width, channels) in [0, 255]."""
    import cv2

    grey = np.asarray(getattr(pixels, "pixels", pixels), dtype=np.float32)
    if grey.ndim != 2:
        raise ValueError(f"Expected a grey image of shape (H, W), got shape {grey.shape}; decode it with core.imaging.decode_xray first.")
    if channels not in (1, 3):
        raise ValueError(f"Models take 1 or 3 channels, this one asks for {channels}; check card.json input.channels.")
    if grey.shape != (height, width):
        # INTER_AREA averages the source pixels under each target pixel: no aliasing when shrinking.
        grey = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
    scaled = np.clip(grey, 0.0, 1.0) * np.float32(255.0)
    return np.repeat(scaled[:, :, None], channels, axis=2).astype(np.float32, copy=False)


def decision_label(probability: float, threshold: float) -> str:
    """'PNEUMONIA' when probability >= threshold, else 'NORMAL'."""
    return config.CLASS_NAMES[int(probability >= threshold)]


def plain_sentence(probability: float, threshold: float) -> str:
    """One sentence a clinician can read: the decision, the score and the threshold it was compared to."""
    if probability >= threshold:
        return (f"The model scores this X-ray {probability:.3f}, at or above its threshold of {threshold:.3f}: "
                "it flags it as showing signs of pneumonia. A clinician should review the image.")
    return (f"The model scores this X-ray {probability:.3f}, below its threshold of {threshold:.3f}: "
            "it does not flag it for pneumonia. This does not rule pneumonia out.")


def operating_threshold(model_name: str, card: dict, operating_point: dict | None = None) -> tuple[float, str]:
    """(threshold, where it comes from): the threshold-page choice when it is for this model, else the card's."""
    if operating_point and operating_point.get("model") == model_name and operating_point.get("threshold") is not None:
        source = operating_point.get("source") or "the threshold explorer"
        page = operating_point.get("page") or "Threshold explorer"  # e.g. "Your site" for a site operating point
        return float(operating_point["threshold"]), f"chosen on the {page} page ({source})"
    threshold = card.get("threshold") or {}
    if "value" not in threshold:
        return 0.5, "default 0.5 (the model card records no threshold)"
    rule = threshold.get("rule", "rule not recorded")
    return float(threshold["value"]), f"the model's own, chosen on {threshold.get('chosen_on', 'val')} ({rule})"


@dataclass
class Scorer:
    """A model ready to score images, built once per model and shared (thread-safe: one traced tf.function, no mutable state)."""

    model: Any
    name: str
    height: int
    width: int
    channels: int
    threshold: float = 0.5
    card: dict = field(default_factory=dict)
    _function: Any = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of one model input."""
        return (self.height, self.width, self.channels)

    def _predict_function(self) -> Any:
        """The traced inference function (created once, under a lock; tf.function calls are thread-safe)."""
        with self._lock:
            if self._function is None:
                import tensorflow as tf

                model = self.model
                spec = tf.TensorSpec((None, *self.input_shape), tf.float32)

                @tf.function(input_signature=[spec], reduce_retracing=True)
                def predict(batch: tf.Tensor) -> tf.Tensor:
                    return tf.reshape(model(batch, training=False), (-1,))

                self._function = predict
            return self._function

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """P(pneumonia) of shape (N,) for model inputs of shape (N, H, W, C) in [0, 255]."""
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != self.input_shape:
            raise ValueError(f"Expected a batch of shape (N, {self.height}, {self.width}, {self.channels}), got {batch.shape}; "
                             "use core.predict.prepare_input on each image.")
        if len(batch) == 0:
            return np.zeros((0,), dtype=np.float32)
        return self._predict_function()(batch).numpy().astype(np.float32)

    def prepare(self, decoded: Any) -> np.ndarray:
        """One decoded X-ray (or grey (H, W) array in [0, 1]) as a model input (H, W, C) in [0, 255]."""
        return prepare_input(decoded, self.height, self.width, self.channels)

    def probability(self, decoded: Any) -> float:
        """P(pneumonia) of one decoded X-ray."""
        return float(self.predict_batch(self.prepare(decoded)[None])[0])

    def probabilities(self, decoded_images: Sequence[Any]) -> np.ndarray:
        """P(pneumonia) of shape (N,) for several decoded X-rays, scored in one batch."""
        if not decoded_images:
            return np.zeros((0,), dtype=np.float32)
        return self.predict_batch(np.stack([self.prepare(d) for d in decoded_images]))


def scorer_from_model(model: Any, *, name: str = "model", threshold: float = 0.5, card: dict | None = None) -> Scorer:
    """A Scorer for an in-memory Keras model; the input size is read from the model's input shape."""
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or None in shape:
        raise ValueError(f"The model input must be (H, W, C) with fixed sizes, got {shape}.")
    height, width, channels = (int(s) for s in shape)
    return Scorer(model=model, name=name, height=height, width=width, channels=channels, threshold=float(threshold), card=card or {})


def _read_card(model_dir: Path) -> dict:
    """card.json of a model folder (through core.models.registry when available)."""
    try:
        from core.models import registry

        return dict(registry.load_card(model_dir))
    except (ImportError, AttributeError):
        path = model_dir / "card.json"
        return json.loads(path.read_text()) if path.exists() else {}


def _read_keras_model(model_dir: Path) -> Any:
    """model.keras of a model folder, loaded with safe_mode (through core.models.registry when available)."""
    try:
        from core.models import registry

        return registry.load_keras_model(model_dir)
    except (ImportError, AttributeError):
        import keras

        return keras.saving.load_model(model_dir / "model.keras", compile=False, safe_mode=True)


def load_scorer(model_dir: str | Path) -> Scorer:
    """Load models/<name>/ (model.keras + card.json) into a Scorer using the card's input size and threshold."""
    model_dir = Path(model_dir)
    if not (model_dir / "model.keras").exists():
        raise ValueError(f"No model.keras in {model_dir}; pass a folder written by train.py, e.g. {EXAMPLE_MODEL}.")
    config.quiet_tensorflow()
    card = _read_card(model_dir)
    model = _read_keras_model(model_dir)
    threshold = float(card.get("threshold", {}).get("value", 0.5))
    scorer = scorer_from_model(model, name=card.get("name", model_dir.name), threshold=threshold, card=card)
    wanted = card.get("input", {})
    if wanted and (int(wanted.get("height", scorer.height)), int(wanted.get("width", scorer.width))) != (scorer.height, scorer.width):
        raise ValueError(f"card.json says input {wanted.get('height')}x{wanted.get('width')} but model.keras takes "
                         f"{scorer.height}x{scorer.width}; the folder {model_dir} is inconsistent, retrain or restore it.")
    return scorer


def predict_probability(model: Any, decoded: Any, *, height: int | None = None, width: int | None = None,
                        channels: int | None = None) -> float:
    """P(pneumonia) of one decoded X-ray with a Keras model or Scorer (input size from the model unless given)."""
    if isinstance(model, Scorer):
        return model.probability(decoded)
    shape = tuple(model.inputs[0].shape[1:])
    x = prepare_input(decoded, height or int(shape[0]), width or int(shape[1]), channels or int(shape[2]))
    return float(np.asarray(model(x[None], training=False)).reshape(-1)[0])
