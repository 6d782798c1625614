"""The model's layers as the explanations see them: which to explain, ensemble members, how the model frames a film."""
from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

logger = logging.getLogger(__name__)

METHODS: dict[str, str] = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "scorecam": "Score-CAM",
    "smoothgrad": "SmoothGrad (saliency)",
}
Target = Literal["pneumonia", "normal"]
SCORECAM_MAX_CHANNELS = 32
SMOOTHGRAD_SAMPLES = 16
SMOOTHGRAD_NOISE = 0.15
DELETION_STEPS = 10
FILTER_VIS_MAX_STEPS = 100
FILTER_VIS_NOISE = 40.0  # std of the grey-level noise the ascent starts from (0-255 scale)
_CONV_KINDS = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D", "Conv2DTranspose")
_ACTIVATION_KINDS = ("Activation", "ReLU", "LeakyReLU", "ELU", "PReLU")
_NOT_FEATURES = ("InputLayer", "Rescaling", "Normalization")
PREPROCESS_PREFIX = "preprocess_"  # core.models.zoo names its fixed preprocessing layers so

_cache_lock = threading.RLock()
_cache: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def cached(model: Any, key: tuple, build: Callable[[], Any]) -> Any:
    """The object `build()` made for (model, key), built once and kept as long as the model lives."""
    with _cache_lock:
        per_model = _cache.setdefault(model, {})
        if key not in per_model:
            per_model[key] = build()
        return per_model[key]


# --------------------------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class LayerInfo:
    """A layer with a spatial (4-D) output: name, Keras class, output shape (h, w, c) and the block it belongs to."""

    name: str
    kind: str
    output_shape: tuple[int, int, int]
    block: str

    @property
    def label(self) -> str:
        """'name (Kind, h×w×c)' for a select box."""
        h, w, c = self.output_shape
        return f"{self.name} ({self.kind}, {h}×{w}×{c})"


def _check_flat(model: Any) -> None:
    """Raise a clear error for models that nest another model (tf-keras-vis and sub-models need a flat graph)."""
    import keras

    nested = [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
    if nested:
        raise ValueError(f"The model nests the sub-model(s) {nested}; explanations need a flat functional model "
                         "(build the head on base.output). Re-export it flat with train.py.")


def members(model: Any) -> list[Any]:
    """The nested member models of an ensemble (core.models.zoo.build_ensemble: an Average of models), in order; [] otherwise."""
    import keras

    if not isinstance(model.layers[-1], keras.layers.Average):
        return []
    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


def member_adapter(model: Any, member: Any) -> Any:
    """Cached traced function: ensemble inputs (N, H, W, C) -> the member's own input (its resize/grey adapter)."""
    import keras
    import tensorflow as tf

    def build() -> Any:
        adapter = keras.Model(model.inputs, member._inbound_nodes[0].input_tensors[0])
        shape = tuple(int(s) for s in model.inputs[0].shape[1:])
        return tf.function(lambda batch: adapter(batch, training=False), input_signature=[tf.TensorSpec((None, *shape), tf.float32)])

    return cached(model, ("adapter", member.name), build)


def _layer_output_model(model: Any, layer_name: str) -> Any:
    """keras.Model from the model's inputs to one layer's output ('member/layer' inside an ensemble member)."""
    import keras

    if "/" not in layer_name:
        _check_flat(model)
        return keras.Model(model.inputs, model.get_layer(layer_name).output)
    member_name, inner = layer_name.split("/", 1)
    member = model.get_layer(member_name)
    adapter = keras.Model(model.inputs, member._inbound_nodes[0].input_tensors[0])
    inner_model = keras.Model(member.inputs, member.get_layer(inner).output)
    inputs = keras.Input(tuple(model.inputs[0].shape[1:]), name="pixels")
    return keras.Model(inputs, inner_model(adapter(inputs)))


def feature_layers(model: Any) -> list[LayerInfo]:
    """Every learned layer with an (N, h, w, c) output, in graph order, grouped into blocks ('block3' or 'stage 2 · 32×32').

    For an ensemble, the layers of each member, named 'member/layer' and grouped by member and block.
    """
    if members(model):
        return [LayerInfo(f"{member.name}/{info.name}", info.kind, info.output_shape, f"{member.name} · {info.block}")
                for member in members(model) for info in feature_layers(member)]
    infos: list[LayerInfo] = []
    stage, last_size = 0, None
    for layer in model.layers:
        shape = tuple(layer.output.shape) if hasattr(layer, "output") else ()
        if len(shape) != 4 or type(layer).__name__ in _NOT_FEATURES or layer.name.startswith(PREPROCESS_PREFIX):
            continue  # inputs and fixed preprocessing (rescaling, normalisation) learn nothing
        h, w, c = (int(s) for s in shape[1:])
        kind = type(layer).__name__
        if (h, w) != last_size and "Pooling" not in kind:  # a pooling layer closes the stage it shrinks
            stage, last_size = stage + 1, (h, w)
        match = re.match(r"^(block\d+|conv\d+|stage\d+)_", layer.name)
        block = match.group(1) if match else f"stage {stage} · {last_size[0]}×{last_size[1]}"
        infos.append(LayerInfo(layer.name, kind, (h, w, c), block))
    return infos


def default_layer_index(layers: Sequence[LayerInfo]) -> int:
    """Index of the layer to show first in a list: the last convolution/activation, else the last layer."""
    picks = [i for i, info in enumerate(layers) if info.kind in _CONV_KINDS + _ACTIVATION_KINDS]
    return picks[-1] if picks else len(layers) - 1


def conv_layers(model: Any) -> list[LayerInfo]:
    """The feature layers that are convolutions or activations of convolutions (candidate Grad-CAM targets)."""
    return [info for info in feature_layers(model) if info.kind in _CONV_KINDS + _ACTIVATION_KINDS]


def default_target_layer(model: Any) -> str:
    """The last convolution/activation layer with a spatial output (Grad-CAM's usual target)."""
    candidates = conv_layers(model)
    if not candidates:
        raise ValueError("This model has no convolutional layer, so Grad-CAM, Grad-CAM++ and Score-CAM cannot "
                         "be computed; use SmoothGrad instead.")
    return candidates[-1].name


def logit_head(model: Any) -> tuple[Any, Callable[[Any], Any]]:
    """(tensor feeding the head, function from it to the pre-sigmoid logit) so gradients never saturate."""
    import keras
    import tensorflow as tf

    head = model.layers[-1]
    activation = getattr(head, "activation", None)
    if isinstance(head, keras.layers.Dense) and activation is keras.activations.sigmoid:
        return head.input, lambda features: tf.matmul(features, head.kernel) + head.bias
    if isinstance(head, keras.layers.Activation) and activation is keras.activations.sigmoid:
        return head.input, lambda logit: logit
    logger.warning("Model output layer %s is not a sigmoid Dense/Activation; explaining log-odds of its output.", head.name)
    return model.output, lambda p: tf.math.log(tf.clip_by_value(p, 1e-7, 1.0)) - tf.math.log(tf.clip_by_value(1.0 - p, 1e-7, 1.0))


def crops_to_content(model: Any) -> bool:
    """True when the model starts by cropping each film to its content box (core.models.layers.CropToContent)."""
    return any(type(layer).__name__ == "CropToContent" for layer in model.layers)


def as_the_model_frames_it(model: Any, pixels: np.ndarray) -> np.ndarray:
    """Grey pixels (H, W) in [0, 1] as the model frames them: cropped to the content box (core.imaging.framing) for a model
    that crops to content, unchanged otherwise. Feature maps of such a model are in this frame."""
    if not crops_to_content(model):
        return pixels
    from core.imaging import framing

    return framing.crop_to_content(np.asarray(pixels, np.float32) * 255.0) / 255.0


def to_input_frame(model: Any, maps: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """Maps (N, H, W) of the model's convolutional frame in the input frame: for a model that crops to content, each
    map goes back into its film's content box (0 outside, core.imaging.framing.uncrop_maps); otherwise unchanged."""
    if not crops_to_content(model):
        return maps
    from core.imaging import framing

    return framing.uncrop_maps(maps, np.asarray(batch, np.float32))


def _sign(target: Target) -> float:
    """+1 to explain PNEUMONIA evidence, -1 to explain NORMAL evidence."""
    if target not in ("pneumonia", "normal"):
        raise ValueError(f"target must be 'pneumonia' or 'normal', got {target!r}.")
    return 1.0 if target == "pneumonia" else -1.0


def _normalise(maps: np.ndarray) -> np.ndarray:
    """Scale each map of (N, h, w) to [0, 1] (flat maps become zeros)."""
    maps = np.asarray(maps, dtype=np.float32)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)


def resize_maps(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of maps (N, h, w) to (N, height, width)."""
    import cv2

    return np.stack([cv2.resize(np.asarray(m, np.float32), (width, height), interpolation=cv2.INTER_LINEAR) for m in maps])
