"""Model-independent check: is this a paediatric chest film at all (orientation histograms and a thumbnail, one-class model)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from core import config
from core.guard._features import FOLDS, _Gaussian

CHEST_FILM_ASSET = config.ASSETS_DIR / "chest_film.npz"
CHEST_FILM_SIDE = 64  # orientation histograms are computed on a 64x64 thumbnail
CHEST_FILM_CELL = 8  # in 8x8 cells (8x8 of them)
CHEST_FILM_BINS = 9  # unsigned gradient orientations per cell
CHEST_FILM_COMPONENTS = (64, 16)  # PCA components of the histograms and of the 16x16 standardised thumbnail
CHEST_FILM_QUANTILE = 0.99


def orientation_histograms(pixels: Any) -> np.ndarray:
    """Gradient-orientation histograms (576,) of grey pixels (H, W) in [0, 1]: 8x8 cells of a 64x64 thumbnail, 9 bins
    each, magnitude-weighted, L2-normalised per cell and square-rooted (HOG-like; local shape of edges, not brightness)."""
    import cv2

    grey = np.asarray(getattr(pixels, "pixels", pixels), np.float32)
    small = cv2.resize(grey, (CHEST_FILM_SIDE, CHEST_FILM_SIDE), interpolation=cv2.INTER_AREA)
    gx = cv2.Sobel(small, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(small, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = np.hypot(gx, gy)
    bins = np.minimum(((np.arctan2(gy, gx) % np.pi) / np.pi * CHEST_FILM_BINS).astype(int), CHEST_FILM_BINS - 1)
    cells = CHEST_FILM_SIDE // CHEST_FILM_CELL
    histograms = np.zeros((cells, cells, CHEST_FILM_BINS))
    rows, cols = np.indices(small.shape) // CHEST_FILM_CELL
    np.add.at(histograms, (rows, cols, bins), magnitude)
    histograms /= np.linalg.norm(histograms, axis=2, keepdims=True) + 1e-3
    return np.sqrt(histograms).reshape(-1)


def chest_film_features(pixels: Any) -> np.ndarray:
    """Features (832,) of the chest-film check: orientation histograms (576,) then the standardised 16x16 thumbnail (256,)."""
    from core.imaging import inversion

    return np.concatenate([orientation_histograms(pixels), inversion.thumbnail_features(pixels)])


_PARTS = (slice(0, 576), slice(576, 832))


@dataclass
class ChestFilmModel:
    """One-class model of the training films: two PCA + Ledoit-Wolf Gaussians, one combined distance, one threshold.

    The combined distance is the mean of the four distances (Mahalanobis and residual of each part) each divided
    by its median on out-of-fold training films; `threshold` is its `quantile` on those same out-of-fold films.
    """

    parts: tuple[_Gaussian, _Gaussian]
    scale: np.ndarray  # (4,)
    threshold: float
    info: dict = field(default_factory=dict)

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Combined distances (n,) of chest_film_features rows (n, 832) (1 = a typical training film)."""
        features = np.atleast_2d(np.asarray(features, np.float64))
        columns = [d for gaussian, part in zip(self.parts, _PARTS) for d in gaussian.distances(features[:, part])]
        return (np.column_stack(columns) / self.scale).mean(axis=1)

    def save(self, path: Path) -> Path:
        """Write as .npz (plain arrays plus a JSON string; loadable without pickle), atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"part{i}_{k}": v for i, g in enumerate(self.parts) for k, v in vars(g).items()}
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez_compressed(tmp, scale=self.scale, threshold=np.float64(self.threshold), meta=np.array(json.dumps(self.info)), **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> "ChestFilmModel":
        """Read a file written by save()."""
        with np.load(path, allow_pickle=False) as data:
            parts = tuple(_Gaussian(*(data[f"part{i}_{k}"] for k in ("mean", "components", "location", "precision"))) for i in range(2))
            return cls(parts, np.asarray(data["scale"]), float(data["threshold"]), json.loads(str(data["meta"])))


def fit_chest_film(features: np.ndarray, *, quantile: float = CHEST_FILM_QUANTILE) -> ChestFilmModel:
    """Fit the chest-film check on chest_film_features rows (n, 832) of training films (threshold cross-fitted)."""
    from sklearn.model_selection import KFold

    features = np.asarray(features, np.float64)
    if len(features) < 5 * FOLDS or len(features) <= max(CHEST_FILM_COMPONENTS):
        raise ValueError(f"The chest-film check needs more than {max(5 * FOLDS, max(CHEST_FILM_COMPONENTS))} training films, got {len(features)}.")

    def fit_parts(rows: np.ndarray) -> tuple[_Gaussian, _Gaussian]:
        return tuple(_Gaussian.fit(rows[:, part], k) for part, k in zip(_PARTS, CHEST_FILM_COMPONENTS))  # type: ignore[return-value]

    out_of_fold = np.zeros((len(features), 4))
    for fit_index, held_index in KFold(FOLDS, shuffle=True, random_state=config.SPLIT_SEED).split(features):
        parts = fit_parts(features[fit_index])
        out_of_fold[held_index] = np.column_stack([d for g, part in zip(parts, _PARTS) for d in g.distances(features[held_index][:, part])])
    scale = np.median(out_of_fold, axis=0)
    threshold = float(np.quantile((out_of_fold / scale).mean(axis=1), quantile))
    return ChestFilmModel(fit_parts(features), scale, threshold, {"n_films": len(features), "quantile": quantile})


@lru_cache(maxsize=4)
def load_chest_film(path: str | Path = CHEST_FILM_ASSET) -> ChestFilmModel:
    """The committed chest-film check (read once per path)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"The chest-film check {path} is missing; rebuild it with python -m core.guard fit-chest-film.")
    return ChestFilmModel.load(path)


def fit_chest_film_asset(data_root: str | Path | None = None, *, out: Path = CHEST_FILM_ASSET) -> Path:
    """Fit the chest-film check on every TRAINING film of the dataset (patient-grouped split) and write it."""
    from core import data
    from core.imaging import decode_xray

    root = Path(data_root) if data_root else config.data_root()
    index = data.load_index(root)
    train = index.loc[index["split"] == "train", "path"]
    if train.empty:
        raise ValueError(f"The dataset at {root} has no training images; pass --data-root with the Kaggle layout.")
    model = fit_chest_film(np.stack([chest_film_features(decode_xray(p)) for p in train]))
    model.info |= {"trained_on": f"train split of {root.name} ({len(train)} films)", "fingerprint": data.dataset_fingerprint(root)}
    return model.save(out)
