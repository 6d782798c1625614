"""Grad-CAM (our own, ensembles included) and the tf-keras-vis methods (Grad-CAM++, Score-CAM, SmoothGrad), one call: explain()."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from core.explain._layers import (
    METHODS,
    SCORECAM_MAX_CHANNELS,
    SMOOTHGRAD_NOISE,
    SMOOTHGRAD_SAMPLES,
    Target,
    _check_flat,
    _normalise,
    _sign,
    cached,
    conv_layers,
    default_target_layer,
    logit_head,
    member_adapter,
    members,
    resize_maps,
    to_input_frame,
)


class GradCam:
    """Fast Grad-CAM: one sub-model (inputs -> [target layer, logit]) and one traced tf.function, built once."""

    def __init__(self, model: Any, layer_name: str | None = None) -> None:
        import keras
        import tensorflow as tf

        _check_flat(model)
        self.model = model
        self.layer_name = layer_name or default_target_layer(model)
        try:
            target = model.get_layer(self.layer_name)
        except ValueError as error:
            raise ValueError(f"No layer named {self.layer_name!r} in the model; choose one of "
                             f"{[i.name for i in conv_layers(model)]}.") from error
        if len(target.output.shape) != 4:
            raise ValueError(f"Layer {self.layer_name!r} has output shape {tuple(target.output.shape)}; Grad-CAM needs a (N, h, w, c) layer.")
        head_input, to_logit = logit_head(model)
        self._sub_model = keras.Model(model.inputs, [target.output, head_input])
        height, width, channels = (int(s) for s in model.inputs[0].shape[1:])
        self.input_shape = (height, width, channels)
        sub_model = self._sub_model

        @tf.function(input_signature=[tf.TensorSpec((None, height, width, channels), tf.float32), tf.TensorSpec((), tf.float32)],
                     reduce_retracing=True)
        def run(batch: tf.Tensor, sign: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                features, head = sub_model(batch, training=False)
                tape.watch(features)
                logit = tf.reshape(to_logit(head), (-1,))
                score = tf.reduce_sum(sign * logit)  # samples are independent: one backward pass for the batch
            grads = tape.gradient(score, features)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(features * weights, axis=-1))
            return cam, tf.sigmoid(logit)

        self._run = run

    def __call__(self, batch: np.ndarray, *, target: Target = "pneumonia") -> tuple[np.ndarray, np.ndarray]:
        """(CAMs (N, h, w) in [0, 1] at the layer's resolution, P(pneumonia) (N,)) for inputs (N, H, W, C) in [0, 255]."""
        cam, probability = self._run(np.asarray(batch, np.float32), np.float32(_sign(target)))
        return _normalise(cam.numpy()), probability.numpy()

    def heatmaps(self, batch: np.ndarray, *, target: Target = "pneumonia") -> np.ndarray:
        """CAMs (N, H, W) in [0, 1] at the model input resolution (placed back into each film's content box when
        the model crops to content first)."""
        cams, _ = self(batch, target=target)
        return _normalise(to_input_frame(self.model, resize_maps(cams, self.input_shape[0], self.input_shape[1]), batch))


class EnsembleGradCam:
    """Grad-CAM of an ensemble: the mean of its convolutional members' Grad-CAMs, each computed on the member's own
    input (through its adapter) and resized to the ensemble input; members without convolutions are left out."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.input_shape = tuple(int(s) for s in model.inputs[0].shape[1:])
        self.parts = [(member_adapter(model, member), gradcam_for(member)) for member in members(model) if conv_layers(member)]
        if not self.parts:
            raise ValueError("No member of this ensemble has a convolutional layer, so it has no Grad-CAM.")
        self.layer_name = ", ".join(f"{m.name}/{gc.layer_name}" for m, (_, gc) in zip(
            [m for m in members(model) if conv_layers(m)], self.parts))

    def heatmaps(self, batch: np.ndarray, *, target: Target = "pneumonia") -> np.ndarray:
        """Mean of the members' CAMs (N, H, W) in [0, 1] at the ensemble input resolution."""
        height, width = self.input_shape[:2]
        maps = [resize_maps(gradcam.heatmaps(adapter(np.asarray(batch, np.float32)).numpy(), target=target), height, width)
                for adapter, gradcam in self.parts]
        return _normalise(np.mean(maps, axis=0))


def gradcam_for(model: Any, layer_name: str | None = None) -> GradCam | EnsembleGradCam:
    """The cached GradCam of (model, layer) (default layer: the last convolution); for an ensemble, EnsembleGradCam."""
    if members(model):
        if layer_name:
            raise ValueError("An ensemble's Grad-CAM averages its members' last convolutions; it takes no layer name.")
        return cached(model, ("gradcam-ensemble",), lambda: EnsembleGradCam(model))
    layer_name = layer_name or default_target_layer(model)
    return cached(model, ("gradcam", layer_name), lambda: GradCam(model, layer_name))


def available_methods(model: Any) -> list[str]:
    """The explanation methods that apply to a model (no CAM without convolutions; ensembles: Grad-CAM only)."""
    if members(model):
        return ["gradcam"] if any(conv_layers(m) for m in members(model)) else []
    return list(METHODS) if conv_layers(model) else ["smoothgrad"]


def _tf_keras_vis(model: Any, method: str) -> Any:
    """The cached tf-keras-vis object for a method (a clone with a linear head, so the shared model is untouched)."""
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

    def build() -> Any:
        _check_flat(model)
        if method == "scorecam":  # Score-CAM weights channels by output scores: keep the sigmoid probability
            return Scorecam(model, clone=True)
        if method == "gradcam++":
            return GradcamPlusPlus(model, model_modifier=ReplaceToLinear(), clone=True)
        if method == "smoothgrad":
            return Saliency(model, model_modifier=ReplaceToLinear(), clone=True)
        raise ValueError(f"Unknown method {method!r}; choose one of {list(METHODS)}.")

    return cached(model, ("tf-keras-vis", method), build)


def explain(model: Any, model_input: np.ndarray, *, method: str = "gradcam", layer_name: str | None = None,
            target: Target = "pneumonia", scorecam_max_channels: int = SCORECAM_MAX_CHANNELS,
            smoothgrad_samples: int = SMOOTHGRAD_SAMPLES) -> np.ndarray:
    """Heatmap (H, W) in [0, 1] at the model input resolution for one model input (H, W, C) in [0, 255]."""
    from tf_keras_vis.utils.scores import BinaryScore

    batch = np.asarray(model_input, np.float32)[None]
    if method == "gradcam":
        return gradcam_for(model, layer_name).heatmaps(batch, target=target)[0]
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {list(METHODS)}.")
    if members(model):
        raise ValueError(f"{METHODS[method]} is not available for an ensemble; use Grad-CAM (the mean of its members').")
    visualiser = _tf_keras_vis(model, method)
    score = BinaryScore(target == "pneumonia")
    with warnings.catch_warnings():
        # tf-keras-vis passes the input as a list; Keras 3 warns about the structure but computes the same thing.
        warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match", category=UserWarning)
        if method == "smoothgrad":
            maps = visualiser(score, batch, smooth_samples=smoothgrad_samples, smooth_noise=SMOOTHGRAD_NOISE)
        else:
            layer_name = layer_name or default_target_layer(model)
            if method == "scorecam":
                maps = visualiser(score, batch, penultimate_layer=layer_name, max_N=scorecam_max_channels, batch_size=16)
            else:
                maps = visualiser(score, batch, penultimate_layer=layer_name)
    maps = np.asarray(maps, np.float32).reshape(1, *batch.shape[1:3])
    if method != "smoothgrad":  # class-activation maps live in the cropped frame; saliency is already on the pixels
        maps = to_input_frame(model, maps, batch)
    return _normalise(maps)[0]
