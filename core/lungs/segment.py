"""Find the lungs on any film with the shipped U-Net (`core/assets/lungs-unet/`), or read the human mask of a shipped film.

The lung model lives beside the guard's other model-independent assets, not in models/: every folder of models/ is a
pneumonia classifier to the registry, the pages and the Makefile's per-model loops.

`segment_film(pixels)` returns a boolean mask of the film's own size. The network's probability map is cut at
`THRESHOLD`, then only the two largest connected regions are kept (the two lungs), each at least `MIN_REGION_SHARE`
of the film; a film where nothing that large is found gets an empty mask (`lungs_found` is False).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from core import config
from core.lungs import geometry
from core.lungs.unet import predict_probabilities, prepare_film

logger = logging.getLogger(__name__)

MODEL_NAME = "lungs-unet"
MODEL_FILE = "model.keras"
CARD_FILE = "card.json"
THRESHOLD = 0.5
MIN_REGION_SHARE = 0.01
MASKS_DIR = config.PROJECT_ROOT / "data" / "lung_masks"


def model_dir() -> Path:
    """The shipped lung model's folder (core/assets/lungs-unet)."""
    return Path(__file__).resolve().parent.parent / "assets" / MODEL_NAME


@functools.lru_cache(maxsize=2)
def load_lung_model(path: str | os.PathLike | None = None) -> Any:
    """The lung U-Net (Keras), loaded once per path; ValueError when it is not there."""
    config.quiet_tensorflow()
    folder = Path(path) if path is not None else model_dir()
    file = folder / MODEL_FILE
    if not file.is_file():
        raise ValueError(f"No lung model at {file}. Rebuild it with `python -m core.lungs.pairing` (see data/README.md) or restore core/assets/.")
    import keras

    return keras.saving.load_model(file, compile=False, safe_mode=True)


def clean_mask(probabilities: np.ndarray, *, threshold: float = THRESHOLD, min_share: float = MIN_REGION_SHARE) -> np.ndarray:
    """Boolean mask from a probability map: the two largest regions above `threshold`, each >= `min_share`."""
    from scipy.ndimage import label

    above = np.asarray(probabilities) > threshold
    labels, count = label(above)
    if count == 0:
        return above
    sizes = np.bincount(labels.ravel())[1:]
    keep = [k + 1 for k in np.argsort(sizes)[::-1][:2] if sizes[k] >= min_share * above.size]
    return np.isin(labels, keep)


@dataclass(frozen=True)
class LungSegmentation:
    """A film's lung mask at the film's size, the lungs' share of the film, and whether any lungs were found."""

    mask: np.ndarray
    probabilities: np.ndarray

    @property
    def lungs_found(self) -> bool:
        """True when at least one lung-sized region was found."""
        return bool(self.mask.any())

    @property
    def area_share(self) -> float:
        """Fraction of the film inside the lungs."""
        return geometry.area_share(self.mask)


def segment_films(films: Sequence[np.ndarray], *, model: Any | None = None) -> list[LungSegmentation]:
    """Lung masks for grey or RGB films of any sizes; each mask has its film's (height, width)."""
    model = model if model is not None else load_lung_model()
    size = int(model.input_shape[1])
    if not len(films):
        return []
    probs = predict_probabilities(model, np.stack([prepare_film(f, size) for f in films]))
    results = []
    for film, prob in zip(films, probs):
        height, width = np.asarray(film).shape[:2]
        small = clean_mask(prob)
        results.append(LungSegmentation(mask=geometry.resize_mask(small, (width, height)), probabilities=prob))
    return results


def segment_film(film: np.ndarray, *, model: Any | None = None) -> LungSegmentation:
    """The lung mask of one grey or RGB film (see `segment_films`)."""
    return segment_films([film], model=model)[0]


def shipped_mask(relpath: str | os.PathLike, *, masks_dir: str | os.PathLike | None = None) -> np.ndarray | None:
    """The human lung mask (224 x 224 bool) of a shipped film given as `split/LABEL/name.jpeg`, or None.

    Films of the validation split live under train/ on disk; pass the path relative to the dataset folder.
    """
    relpath = Path(relpath)
    root = Path(masks_dir) if masks_dir is not None else MASKS_DIR
    path = root / relpath.parent / (relpath.stem + ".png")
    if not path.is_file():
        return None
    return np.asarray(Image.open(path).convert("L")) > 0


def card(path: str | os.PathLike | None = None) -> dict:
    """The lung model's card (card.json), or {} when there is none."""
    folder = Path(path) if path is not None else model_dir()
    try:
        return json.loads((folder / CARD_FILE).read_text())
    except (OSError, ValueError):
        return {}

