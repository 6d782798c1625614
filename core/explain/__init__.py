"""Explanations of a model's decision: Grad-CAM (fast, default) and tf-keras-vis methods, overlays, a deletion
curve to judge a heatmap's faithfulness, feature maps of any layer and filter visualisations.

Models follow the artifact contract (docs/ARCHITECTURE.md): a flat functional Keras model taking raw pixels in
[0, 255] of shape (N, H, W, C) and returning P(pneumonia) of shape (N, 1). Heatmaps are float32 in [0, 1].
Everything built from a model (sub-models, traced functions, tf-keras-vis objects) is built once per
(model, layer) and cached here, so callers may ask again cheaply from several threads.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
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


# --------------------------------------------------------------------------------------------- Grad-CAM


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


# --------------------------------------------------------------------------------------------- overlays


def overlay(pixels: np.ndarray, heatmap: np.ndarray, *, opacity: float = 0.45, colormap: int | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) of grey pixels (H, W) in [0, 1] blended with a heatmap (h, w) in [0, 1] resized to (H, W)."""
    import cv2

    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1, got {opacity}.")
    pixels = np.asarray(pixels, np.float32)
    height, width = pixels.shape[:2]
    heat = cv2.resize(np.asarray(heatmap, np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    heat_u8 = np.clip(heat * 255.0 + 0.5, 0, 255).astype(np.uint8)
    coloured = cv2.cvtColor(cv2.applyColorMap(heat_u8, cv2.COLORMAP_JET if colormap is None else colormap), cv2.COLOR_BGR2RGB)
    grey = cv2.cvtColor(np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(coloured, float(opacity), grey, 1.0 - float(opacity), 0.0)


def colourise(feature_map: np.ndarray, *, min_side: int = 96) -> np.ndarray:
    """RGB uint8 (max(h, min_side)-ish, w, 3) viridis rendering of one map (h, w), scaled to its own range."""
    import cv2

    scaled = _normalise(np.asarray(feature_map, np.float32)[None])[0]
    rgb = cv2.cvtColor(cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
    factor = max(1, int(np.ceil(min_side / max(1, min(rgb.shape[:2])))))
    return cv2.resize(rgb, (rgb.shape[1] * factor, rgb.shape[0] * factor), interpolation=cv2.INTER_NEAREST) if factor > 1 else rgb


def to_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 image (H, W, 3) or grey (H, W)."""
    import cv2

    image = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("Could not encode the image as PNG.")
    return encoded.tobytes()


# --------------------------------------------------------------------------------------------- faithfulness


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


# --------------------------------------------------------------------------------------------- activation maps


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
