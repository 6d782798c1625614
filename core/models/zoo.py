"""Model builders: MLP, the reference 64-px CNN, a deeper CNN, and flat ImageNet transfer models.

Every model takes raw pixel values in [0, 255], float32 ``(None, H, W, C)``, and carries its own
preprocessing as ordinary layers (Rescaling, Normalization, a fixed 1x1 convolution for the 'caffe'
channel flip), never a Lambda layer, so ``keras.saving.load_model(path, safe_mode=True)`` loads it.
The output is ``(None, 1)``: the sigmoid probability of PNEUMONIA.

Transfer models are built *flat*: the backbone's layers are built on the preprocessed input tensor
and the head sits on ``base.output``, so Grad-CAM and activation maps can reach every backbone layer
(tf-keras-vis needs a flat functional model).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.models import efficientnet_lite

log = logging.getLogger(__name__)

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class ModelSpec:
    """What the zoo knows about one architecture: input defaults, preprocessing and fine-tuning point."""

    name: str
    display_name: str
    family: str  # "mlp" | "cnn" | "transfer"
    channels: int
    default_size: int
    preprocessing: str
    application: str | None = None  # keras.applications class name
    finetune_from: str | None = None  # first layer of the "top blocks" unfrozen when fine-tuning
    min_size: int = 32
    aliases: tuple[str, ...] = field(default_factory=tuple)


SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("mlp", "MLP on pixels", "mlp", 1, 64, "grey, x/255, flattened"),
        ModelSpec(
            "cnn_reference",
            "Reference CNN (3 x conv 5x5/32, 64 px grey)",
            "cnn",
            1,
            64,
            "grey, x/255",
        ),
        ModelSpec("cnn_deep", "Deeper CNN (5 conv blocks, batch norm, dropout)", "cnn", 1, 128, "grey, x/255"),
        ModelSpec(
            "vgg16", "VGG16 transfer (ImageNet)", "transfer", 3, 224,
            "RGB, 'caffe' (RGB->BGR, minus ImageNet mean) as a fixed 1x1 convolution",
            "VGG16", "block5_conv1", 32,
        ),
        ModelSpec(
            "resnet50", "ResNet50 transfer (ImageNet)", "transfer", 3, 224,
            "RGB, 'caffe' (RGB->BGR, minus ImageNet mean) as a fixed 1x1 convolution",
            "ResNet50", "conv5_block1_1_conv", 32,
        ),
        ModelSpec(
            "densenet121", "DenseNet121 transfer (ImageNet)", "transfer", 3, 224,
            "RGB, 'torch' (x/255, minus ImageNet mean, divided by std) as Rescaling + Normalization",
            "DenseNet121", "conv5_block1_0_bn", 32,
        ),
        ModelSpec(
            "xception", "Xception transfer (ImageNet)", "transfer", 3, 224,
            "RGB, 'tf' (x/127.5 - 1) as a Rescaling layer",
            "Xception", "block13_sepconv1_act", 71,
        ),
        ModelSpec(
            "inceptionv3", "InceptionV3 transfer (ImageNet)", "transfer", 3, 224,
            "RGB, 'tf' (x/127.5 - 1) as a Rescaling layer",
            "InceptionV3", "mixed9", 75,
        ),
        ModelSpec(
            "mobilenetv2", "MobileNetV2 transfer (ImageNet)", "transfer", 3, 224,
            "RGB, 'tf' (x/127.5 - 1) as a Rescaling layer",
            "MobileNetV2", "block_16_expand", 32,
        ),
        ModelSpec(
            "efficientnetb0", "EfficientNetB0 transfer (ImageNet)", "transfer", 3, 224,
            "RGB, raw [0, 255] (EfficientNet rescales and normalises inside its own layers)",
            "EfficientNetB0", "block7a_expand_conv", 32,
        ),
        ModelSpec(
            "efficientnet_lite0", "EfficientNet-Lite0 transfer (ImageNet)", "transfer", 3, 224,
            "RGB, 'tf' (x/127.5 - 1) as a Rescaling layer",
            None, efficientnet_lite.FINETUNE_FROM, 32,
        ),
    )
}

# Preprocessing mode per backbone, as in keras.applications.<module>.preprocess_input.
_PREPROCESS_MODE = {
    "vgg16": "caffe",
    "resnet50": "caffe",
    "densenet121": "torch",
    "xception": "tf",
    "inceptionv3": "tf",
    "mobilenetv2": "tf",
    "efficientnetb0": "raw",
    "efficientnet_lite0": "tf",
}

HEAD_LAYER_PREFIX = "head_"
OUTPUT_LAYER = "prediction"
PREPROCESS_PREFIX = "preprocess_"


def architectures() -> list[str]:
    """Names accepted by :func:`build_model` (and train.py --model)."""
    return list(SPECS)


def get_spec(architecture: str) -> ModelSpec:
    """The :class:`ModelSpec` for a name such as 'xception' or 'cnn-reference' (dashes allowed)."""
    key = architecture.strip().lower().replace("-", "_")
    if key not in SPECS:
        raise ValueError(f"Unknown model '{architecture}'. Choose one of: {', '.join(SPECS)}.")
    return SPECS[key]


def build_model(
    architecture: str,
    *,
    img_size: int | None = None,
    weights: str | Path | None = "none",
    dropout: float = 0.3,
    seed: int = 0,
    normalize: str = "none",
    framing: str = "none",
) -> Any:
    """Build an uncompiled keras.Model taking raw [0, 255] pixels ``(None, S, S, C)`` -> ``(None, 1)`` sigmoid.

    ``weights`` applies to transfer models only: 'imagenet' (offline Xception copy when installed, else
    Keras's download), 'none', or a local weights file; :func:`core.models.weights.resolve_weights` gives the card text.
    ``normalize`` is one of :data:`NORMALIZATIONS`: 'per-image' standardises every film to zero mean and unit
    variance inside the model (so training and prediction apply it identically), removing global exposure and
    contrast differences between acquisitions. ``framing`` is one of :data:`core.imaging.framing.FRAMINGS`:
    'crop-borders' crops every film to its content box first (:class:`core.models.layers.CropToContent`), so black
    borders and padding carry no signal.
    """
    import keras

    spec = get_spec(architecture)
    size = int(img_size or spec.default_size)
    if size < spec.min_size:
        raise ValueError(f"{spec.name} needs an input of at least {spec.min_size} px; got {size}.")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"Unknown normalisation '{normalize}'. Choose one of: {', '.join(NORMALIZATIONS)}.")
    if normalize != "none" and _PREPROCESS_MODE.get(spec.name, "tf") != "tf":
        raise ValueError(f"Per-image normalisation is built for the CNNs, the MLP and 'tf'-preprocessed backbones, not {spec.name}.")
    from core.imaging import framing as framing_module

    if framing not in framing_module.FRAMINGS:
        raise ValueError(f"Unknown framing '{framing}'. Choose one of: {', '.join(framing_module.FRAMINGS)}.")
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(size, size, spec.channels), dtype="float32", name="pixels")
    pixels = inputs
    if framing == "crop-borders":
        from core.models.layers import CropToContent

        pixels = CropToContent(name=PREPROCESS_PREFIX + "crop_to_content")(inputs)
    if spec.family == "mlp":
        return _mlp(inputs, dropout, normalize, pixels)
    if spec.name == "cnn_reference":
        return _cnn_reference(inputs, normalize, pixels)
    if spec.name == "cnn_deep":
        return _cnn_deep(inputs, dropout, normalize, pixels)
    return _transfer(spec, inputs, weights, dropout, normalize, pixels)


NORMALIZATIONS = ("none", "per-image")


def _standardize(x: Any, normalize: str, *, scale: float = 1.0) -> Any:
    """Per-image standardisation (mean 0, std ``scale`` over H, W, C) as a LayerNormalization layer, or ``x`` unchanged."""
    from keras import layers

    if normalize == "none":
        return x
    x = layers.LayerNormalization(
        axis=[1, 2, 3], center=False, scale=False, epsilon=1e-3, name=PREPROCESS_PREFIX + "standardize"
    )(x)
    if scale != 1.0:
        x = layers.Rescaling(scale, name=PREPROCESS_PREFIX + "standardize_scale")(x)
    return x


def _mlp(inputs: Any, dropout: float, normalize: str = "none", pixels: Any = None) -> Any:
    """Pixels -> 256 -> 64 -> 1 dense network."""
    import keras
    from keras import layers

    x = _standardize(layers.Rescaling(1.0 / 255, name=PREPROCESS_PREFIX + "rescale")(inputs if pixels is None else pixels), normalize)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(256, activation="relu", name="dense_1")(x)
    x = layers.Dropout(dropout, name="dropout_1")(x)
    x = layers.Dense(64, activation="relu", name="dense_2")(x)
    outputs = layers.Dense(1, activation="sigmoid", name=OUTPUT_LAYER)(x)
    return keras.Model(inputs, outputs, name="mlp")


def _cnn_reference(inputs: Any, normalize: str = "none", pixels: Any = None) -> Any:
    """The reference projects' CNN: 3 x [conv 5x5/32 relu + max-pool 2], dense 128, sigmoid."""
    import keras
    from keras import layers

    x = _standardize(layers.Rescaling(1.0 / 255, name=PREPROCESS_PREFIX + "rescale")(inputs if pixels is None else pixels), normalize)
    for block in range(1, 4):
        x = layers.Conv2D(32, 5, padding="same", activation="relu", name=f"conv{block}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{block}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    outputs = layers.Dense(1, activation="sigmoid", name=OUTPUT_LAYER)(x)
    return keras.Model(inputs, outputs, name="cnn_reference")


def _cnn_deep(inputs: Any, dropout: float, normalize: str = "none", pixels: Any = None) -> Any:
    """Five [conv 3x3 + batch norm + relu, max-pool, dropout] blocks (16-32-64-128-256), global pooling, dense 128."""
    import keras
    from keras import layers

    x = _standardize(layers.Rescaling(1.0 / 255, name=PREPROCESS_PREFIX + "rescale")(inputs if pixels is None else pixels), normalize)
    for block, filters in enumerate((16, 32, 64, 128, 256), start=1):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{block}_conv")(x)
        x = layers.BatchNormalization(name=f"block{block}_bn")(x)
        x = layers.Activation("relu", name=f"block{block}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
        x = layers.Dropout(min(dropout, 0.05 * block), name=f"block{block}_dropout")(x)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name=OUTPUT_LAYER)(x)
    return keras.Model(inputs, outputs, name="cnn_deep")


def preprocessing_layers(architecture: str) -> list[Any]:
    """The backbone's ``preprocess_input`` as serialisable layers, for raw [0, 255] RGB input."""
    from keras import layers

    mode = _PREPROCESS_MODE[get_spec(architecture).name]
    if mode == "tf":
        return [layers.Rescaling(1.0 / 127.5, offset=-1.0, name=PREPROCESS_PREFIX + "rescale")]
    if mode == "torch":
        return [
            layers.Rescaling(1.0 / 255, name=PREPROCESS_PREFIX + "rescale"),
            layers.Normalization(
                mean=list(IMAGENET_MEAN_RGB),
                variance=[s * s for s in IMAGENET_STD_RGB],
                name=PREPROCESS_PREFIX + "normalize",
            ),
        ]
    if mode == "caffe":
        # RGB -> BGR and minus the BGR mean: one fixed, frozen 1x1 convolution (a permutation matrix).
        kernel = np.zeros((1, 1, 3, 3), dtype="float32")
        for out_channel in range(3):
            kernel[0, 0, 2 - out_channel, out_channel] = 1.0
        bias = -np.asarray(CAFFE_MEAN_BGR, dtype="float32")
        from keras import initializers

        return [
            layers.Conv2D(
                3, 1, name=PREPROCESS_PREFIX + "caffe",
                kernel_initializer=initializers.Constant(kernel),
                bias_initializer=initializers.Constant(bias),
                trainable=False,
            )
        ]
    return []


def _transfer(spec: ModelSpec, inputs: Any, weights: str | Path | None, dropout: float, normalize: str = "none", pixels: Any = None) -> Any:
    """A flat backbone (built on the preprocessed input) + global average pooling + dropout + sigmoid.

    With ``normalize='per-image'`` the 'tf' rescaling is replaced by per-image standardisation scaled to std 0.5
    (the spread of ImageNet images in the backbone's [-1, 1] input range).
    """
    import keras
    from keras import layers

    from core.models import weights as weights_module

    choice = weights_module.resolve_weights(spec.name, weights)
    x = inputs if pixels is None else pixels
    if normalize == "none":
        for layer in preprocessing_layers(spec.name):
            x = layer(x)
    else:
        x = _standardize(x, normalize, scale=0.5)
    if spec.application is None:  # EfficientNet-Lite0: built here, its converted weights copied in below
        features = efficientnet_lite.build_backbone(x)
    else:
        application = getattr(keras.applications, spec.application)
        base = application(include_top=False, weights=choice.keras_weights, input_tensor=x)
        if choice.offline_xception:
            backbone = [layer for layer in base.layers if _is_backbone_layer(layer)]
            weights_module.load_offline_xception_into(backbone)
        features = base.output
    x = layers.GlobalAveragePooling2D(name=HEAD_LAYER_PREFIX + "pool")(features)
    x = layers.Dropout(dropout, name=HEAD_LAYER_PREFIX + "dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name=OUTPUT_LAYER)(x)
    model = keras.Model(inputs, outputs, name=spec.name)
    if choice.converted_lite:
        efficientnet_lite.load_imagenet_weights(model)
    log.info("Built %s (%s weights: %s)", spec.name, spec.application or spec.display_name, choice.source)
    return model


def _is_backbone_layer(layer: Any) -> bool:
    """True for layers that belong to the pretrained backbone (not the input, preprocessing or head)."""
    name = layer.name
    return not (
        name == "pixels"
        or name.startswith(PREPROCESS_PREFIX)
        or name.startswith(HEAD_LAYER_PREFIX)
        or name == OUTPUT_LAYER
        or type(layer).__name__ == "InputLayer"
    )


def backbone_layers(model: Any) -> list[Any]:
    """The pretrained backbone's layers of a flat transfer model, in build order."""
    return [layer for layer in model.layers if _is_backbone_layer(layer)]


def finetune_input_layer(model: Any, architecture: str) -> Any:
    """The layer where the 'top blocks' of a transfer model start (its input is the cached feature map)."""
    spec = get_spec(architecture)
    if spec.finetune_from is None:
        raise ValueError(f"{spec.name} is not a transfer model; it has no top blocks to fine-tune.")
    return model.get_layer(spec.finetune_from)


def head_input_layer(model: Any) -> Any:
    """The head's first layer (global average pooling); its input is the backbone's last feature map."""
    return model.get_layer(HEAD_LAYER_PREFIX + "pool")


def last_conv_layer_name(model: Any) -> str:
    """Name of the last layer with a 4-D output before the head (the usual Grad-CAM target)."""
    for layer in reversed(model.layers):
        if layer.name.startswith(HEAD_LAYER_PREFIX) or layer.name == OUTPUT_LAYER:
            continue
        shape = getattr(layer, "output", None)
        if shape is not None and len(layer.output.shape) == 4 and not layer.name.startswith(PREPROCESS_PREFIX):
            if type(layer).__name__ not in {"MaxPooling2D", "Dropout", "InputLayer"}:
                return layer.name
    raise ValueError(f"Model {model.name} has no convolutional layer (an MLP has none to explain).")


GREY_WEIGHTS_RGB = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, as libjpeg's RGB -> grey


def build_ensemble(members: list[Any], *, img_size: int, name: str = "ensemble") -> Any:
    """One keras.Model averaging the members' probabilities; input raw RGB ``(None, S, S, 3)`` in [0, 255].

    Each member gets its own input adapter made of serialisable layers: ``Resizing`` (area) to its size and,
    for grey members, a fixed 1x1 convolution with the BT.601 luma weights. Members stay nested (one
    sub-model each, renamed ``member_<i>_<name>``); explain them one by one.
    """
    import keras
    from keras import initializers, layers

    if len(members) < 2:
        raise ValueError("An ensemble needs at least two member models.")
    inputs = keras.Input(shape=(img_size, img_size, 3), dtype="float32", name="pixels")
    outputs = []
    for position, member in enumerate(members):
        _, height, width, channels = member.input.shape
        x = inputs
        if (height, width) != (img_size, img_size):
            x = layers.Resizing(height, width, interpolation="area", name=f"adapt_{position}_resize")(x)
        if channels == 1:
            kernel = np.asarray(GREY_WEIGHTS_RGB, dtype="float32").reshape(1, 1, 3, 1)
            x = layers.Conv2D(
                1, 1, use_bias=False, trainable=False, kernel_initializer=initializers.Constant(kernel),
                name=f"adapt_{position}_grey",
            )(x)
        member.name = f"member_{position}_{member.name}"
        member.trainable = False
        outputs.append(member(x))
    averaged = layers.Average(name=OUTPUT_LAYER)(outputs)
    return keras.Model(inputs, averaged, name=name)
