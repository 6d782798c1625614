"""A small U-Net for lung fields: building, input preprocessing, training and batch prediction.

TensorFlow is imported inside the functions, so `core.lungs` stays importable without it.
Films enter as grey arrays of any size; the network sees them stretched to `size` x `size` (as the Kaggle films
were stretched to 224 x 224), each film standardised on its own (mean 0, standard deviation 1).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

DEFAULT_SIZE = 64
DEFAULT_BASE_FILTERS = 8
DEFAULT_DEPTH = 4


def prepare_film(film: np.ndarray, size: int) -> np.ndarray:
    """A grey or RGB film as float32 (size, size): stretched, then standardised on its own pixels."""
    film = np.asarray(film)
    if film.ndim == 3:
        film = film[..., :3].astype(np.float32).mean(axis=2)
    if film.ndim != 2:
        raise ValueError(f"Expected a grey (H, W) or RGB (H, W, 3) film; got shape {film.shape}.")
    values = film.astype(np.float32)
    low, high = float(values.min()), float(values.max())
    values = (values - low) / (high - low) if high > low else np.zeros_like(values)
    resized = np.asarray(Image.fromarray(values, mode="F").resize((size, size), Image.BILINEAR), dtype=np.float32)
    return (resized - resized.mean()) / max(float(resized.std()), 1e-3)


def build_unet(size: int = DEFAULT_SIZE, *, base_filters: int = DEFAULT_BASE_FILTERS, depth: int = DEFAULT_DEPTH) -> Any:
    """A Keras U-Net: (size, size, 1) standardised film -> (size, size, 1) lung probability."""
    import keras
    from keras import layers

    if size % (2**depth):
        raise ValueError(f"The input size must be divisible by 2**depth = {2**depth}; got {size}.")

    def block(x: Any, filters: int) -> Any:
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        return x

    inputs = keras.Input((size, size, 1), name="film")
    skips, x = [], inputs
    for level in range(depth):
        x = block(x, base_filters * 2**level)
        skips.append(x)
        x = layers.MaxPooling2D()(x)
    x = block(x, base_filters * 2**depth)
    for level in reversed(range(depth)):
        x = layers.UpSampling2D(interpolation="bilinear")(x)
        x = layers.Concatenate()([x, skips[level]])
        x = block(x, base_filters * 2**level)
    outputs = layers.Conv2D(1, 1, activation="sigmoid", name="lungs")(x)
    return keras.Model(inputs, outputs, name="lungs_unet")


def _dice_loss(y_true: Any, y_pred: Any) -> Any:
    """Binary cross-entropy plus (1 - soft Dice), per batch."""
    import keras.ops as ops
    import keras

    bce = keras.losses.binary_crossentropy(y_true, y_pred)
    inter = ops.sum(y_true * y_pred, axis=(1, 2, 3))
    total = ops.sum(y_true, axis=(1, 2, 3)) + ops.sum(y_pred, axis=(1, 2, 3))
    soft_dice = (2.0 * inter + 1.0) / (total + 1.0)
    return ops.mean(bce, axis=(1, 2)) + (1.0 - soft_dice)


@dataclass(frozen=True)
class FitResult:
    """A trained network and its per-epoch history (loss, val_loss)."""

    model: Any
    history: dict[str, list[float]]
    seconds: float


def _augment(films: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Light, label-preserving augmentation: random gamma/contrast on the film and a small shift of both."""
    films = films.copy()
    masks = masks.copy()
    n, size = films.shape[0], films.shape[1]
    max_shift = max(1, size // 16)
    for i in range(n):
        x = films[i, ..., 0]
        x = x * rng.uniform(0.8, 1.2) + rng.uniform(-0.2, 0.2)
        dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
        films[i, ..., 0] = np.roll(x, (dy, dx), axis=(0, 1))
        masks[i, ..., 0] = np.roll(masks[i, ..., 0], (dy, dx), axis=(0, 1))
    return films, masks


def fit_unet(
    films: np.ndarray,
    masks: np.ndarray,
    *,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    epochs: int = 12,
    batch_size: int = 32,
    base_filters: int = DEFAULT_BASE_FILTERS,
    depth: int = DEFAULT_DEPTH,
    seed: int = 42,
    learning_rate: float = 3e-3,
) -> FitResult:
    """Train a U-Net on prepared films (n, size, size) and boolean masks (n, size, size); returns the model."""
    import time

    import keras

    films = np.asarray(films, dtype=np.float32)[..., None]
    masks = np.asarray(masks, dtype=np.float32)[..., None]
    if films.shape != masks.shape or films.ndim != 4 or films.shape[1] != films.shape[2]:
        raise ValueError(f"Films and masks must both be (n, size, size); got {films.shape[:3]} and {masks.shape[:3]}.")
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_unet(films.shape[1], base_filters=base_filters, depth=depth)
    steps = int(np.ceil(len(films) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, epochs * steps))
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=_dice_loss)
    history: dict[str, list[float]] = {"loss": [], "val_loss": []}
    start = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(len(films))
        losses = []
        for step in range(steps):
            batch = order[step * batch_size : (step + 1) * batch_size]
            x, y = _augment(films[batch], masks[batch], rng)
            losses.append(float(model.train_on_batch(x, y)))
        history["loss"].append(float(np.mean(losses)))
        if validation is not None:
            vx = np.asarray(validation[0], dtype=np.float32)[..., None]
            vy = np.asarray(validation[1], dtype=np.float32)[..., None]
            history["val_loss"].append(float(model.evaluate(vx, vy, batch_size=64, verbose=0)))
        logger.info("epoch %d/%d loss %.4f val %s (%.0f s)", epoch + 1, epochs, history["loss"][-1],
                    f"{history['val_loss'][-1]:.4f}" if history["val_loss"] else "-", time.perf_counter() - start)
    return FitResult(model=model, history=history, seconds=time.perf_counter() - start)


def predict_probabilities(model: Any, films: Sequence[np.ndarray] | np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """Lung probability maps (n, size, size) for films already prepared with `prepare_film` at the model's size."""
    x = np.asarray(films, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[0] == 0:
        size = int(model.input_shape[1])
        return np.zeros((0, size, size), dtype=np.float32)
    out = model.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(out[..., 0], dtype=np.float32)
