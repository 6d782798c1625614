"""Activation maps of any layer and filter visualisations by gradient ascent."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from core.explain._layers import (
    FILTER_VIS_MAX_STEPS,
    FILTER_VIS_NOISE,
    _layer_output_model,
    cached,
    feature_layers,
)


def layer_activations(model: Any, layer_name: str, model_input: np.ndarray) -> np.ndarray:
    """Output (h, w, c) of one layer for one model input (H, W, C) in [0, 255]."""
    import tensorflow as tf

    def build() -> Any:
        sub_model = _layer_output_model(model, layer_name)
        shape = tuple(int(s) for s in model.inputs[0].shape[1:])
        return tf.function(lambda batch: sub_model(batch, training=False),
                           input_signature=[tf.TensorSpec((None, *shape), tf.float32)])

    function = cached(model, ("activations", layer_name), build)
    return function(np.asarray(model_input, np.float32)[None])[0].numpy()


def channel_order(activations: np.ndarray, *, by: Literal["mean", "max", "index"] = "mean") -> np.ndarray:
    """Channel indices of activations (h, w, c) sorted by descending mean or max activation, or in index order."""
    if by == "index":
        return np.arange(activations.shape[-1])
    values = activations.mean(axis=(0, 1)) if by == "mean" else activations.max(axis=(0, 1))
    return np.argsort(-values, kind="stable")


def filter_visualisations(model: Any, layer_name: str, filters: Sequence[int], *, steps: int = 30,
                          step_size: float = 8.0, seed: int = 0) -> np.ndarray:
    """Activation maximisation: inputs (k, H, W) in [0, 1] that most excite each filter, by `steps` of gradient ascent."""
    import tensorflow as tf

    if not 1 <= steps <= FILTER_VIS_MAX_STEPS:
        raise ValueError(f"steps must be between 1 and {FILTER_VIS_MAX_STEPS}, got {steps}.")
    if "/" in layer_name:  # an ensemble member's layer: ascend at the member's own input (area resizing has no gradient)
        member_name, inner = layer_name.split("/", 1)
        return filter_visualisations(model.get_layer(member_name), inner, filters, steps=steps, step_size=step_size, seed=seed)
    shape = tuple(int(s) for s in model.inputs[0].shape[1:])

    def build() -> Any:
        sub_model = _layer_output_model(model, layer_name)

        @tf.function(input_signature=[tf.TensorSpec((None, *shape), tf.float32), tf.TensorSpec((None,), tf.int32),
                                      tf.TensorSpec((), tf.float32)])
        def ascend(images: tf.Tensor, channels: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                tape.watch(images)
                activations = sub_model(images, training=False)
                border = tf.shape(activations)[1] // 8  # ignore borders, where padding artefacts dominate
                inner = activations[:, border: tf.shape(activations)[1] - border, border: tf.shape(activations)[2] - border, :]
                chosen = tf.gather(inner, channels, axis=3, batch_dims=1)
                loss = tf.reduce_sum(tf.reduce_mean(chosen, axis=(1, 2)))
            grads = tape.gradient(loss, images)
            grads /= tf.sqrt(tf.reduce_mean(tf.square(grads), axis=(1, 2, 3), keepdims=True)) + 1e-8
            return tf.clip_by_value(images + size * grads, 0.0, 255.0)

        return ascend

    ascend = cached(model, ("filters", layer_name), build)
    info = {i.name: i for i in feature_layers(model)}.get(layer_name)
    if info is None:
        raise ValueError(f"No feature layer named {layer_name!r}; choose one listed by core.explain.feature_layers.")
    n_channels = info.output_shape[-1]
    filters = [int(f) for f in filters]
    if any(not 0 <= f < n_channels for f in filters):
        raise ValueError(f"Filter indices must be between 0 and {n_channels - 1} for layer {layer_name!r}.")
    rng = np.random.default_rng(seed)
    images = np.clip(128.0 + rng.normal(0.0, FILTER_VIS_NOISE, (len(filters), *shape)), 0.0, 255.0).astype(np.float32)
    channels = np.asarray(filters, np.int32)[:, None]
    for _ in range(steps):
        images = ascend(images, channels[:, 0], np.float32(step_size)).numpy()
    grey = images.mean(axis=-1)
    low = np.percentile(grey, 1, axis=(1, 2), keepdims=True)
    high = np.percentile(grey, 99, axis=(1, 2), keepdims=True)
    return np.clip((grey - low) / np.maximum(high - low, 1e-6), 0.0, 1.0).astype(np.float32)
