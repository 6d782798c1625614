"""The canonical-framing rule of :mod:`core.imaging.framing` as a Keras layer, so a model applies it identically at
training and prediction time and ``keras.saving.load_model(..., safe_mode=True)`` loads it (registered class,
no Lambda). Importing this module registers the layer."""

from __future__ import annotations

from typing import Any

import keras

from core.imaging import framing


@keras.saving.register_keras_serializable(package="pneumonia")
class CropToContent(keras.layers.Layer):
    """Crops each film (N, H, W, C) in grey levels to its content box and resizes it back to (H, W) (bilinear).

    The box follows :func:`core.imaging.framing.content_box`; gradients flow to the pixels (not through the box).
    """

    def __init__(self, threshold: float = framing.THRESHOLD, max_crop: float = framing.MAX_CROP, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold = float(threshold)
        self.max_crop = float(max_crop)

    def _bounds(self, profile: Any, n: int) -> tuple[Any, Any]:
        import tensorflow as tf

        inside = tf.cast(profile >= framing.MIN_SHARE, tf.int32)
        limit = int(self.max_crop * n)
        any_inside = tf.reduce_any(inside > 0, axis=1)
        first = tf.argmax(inside, axis=1, output_type=tf.int32)
        last = n - 1 - tf.argmax(tf.reverse(inside, [1]), axis=1, output_type=tf.int32)
        first = tf.where(any_inside, tf.minimum(first, limit), 0)
        last = tf.where(any_inside, tf.maximum(last, n - 1 - limit), n - 1)
        return tf.cast(first, tf.float32) / float(n - 1), tf.cast(last, tf.float32) / float(n - 1)

    def call(self, inputs: Any) -> Any:
        import tensorflow as tf

        height, width = int(inputs.shape[1]), int(inputs.shape[2])
        bright = tf.cast(tf.stop_gradient(tf.reduce_mean(inputs, axis=-1)) > self.threshold, tf.float32)
        top, bottom = self._bounds(tf.reduce_mean(bright, axis=2), height)
        left, right = self._bounds(tf.reduce_mean(bright, axis=1), width)
        boxes = tf.stack([top, left, bottom, right], axis=1)
        indices = tf.range(tf.shape(inputs)[0])
        return tf.image.crop_and_resize(inputs, boxes, indices, (height, width), method="bilinear")

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "threshold": self.threshold, "max_crop": self.max_crop}
