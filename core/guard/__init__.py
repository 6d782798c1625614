"""Out-of-distribution guard: does an upload look like the chest X-rays a model was validated on?

Three checks, each calibrated on the model's VALIDATION images (the `val` rows of its predictions.csv):
1. colour: the mean HSV saturation of the raw file (X-rays are grey; a colour photo is not);
2. appearance: Mahalanobis distance of a few intensity statistics (brightness, contrast, dark/bright
   fractions, edge density) to those of the validation images;
3. features: Mahalanobis distance of the model's penultimate-layer embedding (PCA to at most 32 dimensions,
   Ledoit-Wolf covariance) plus the PCA reconstruction residual.
Thresholds of 2 and 3 are the `quantile` (default 99th percentile) of out-of-fold validation distances
(5-fold cross-fitting, so the threshold is not fitted on the same images it is read from); the final
model is then fitted on all validation images. The calibration is stored as models/<name>/ood.npz by

    python -m core.guard models/NAME [--data-root data/chest_xray]

`assess()` is the whole guard a user sees. It adds model-independent checks that run for every model, with or
without ood.npz: a negative (inverted) film (core.imaging.inversion), a "paediatric chest film" one-class check fitted on
the TRAINING films of the shipped dataset (gradient-orientation histograms and a standardised thumbnail, PCA +
Ledoit-Wolf Mahalanobis and residual distances combined into one score; core/assets/chest_film.npz, rebuilt by
`python -m core.guard fit-chest-film`), an image smaller than the model input, and what the decoder had to do
(DecodedXray notes: bit depth rescaled, encoding inferred, ...). Its detection rate on out-of-distribution sets
and its false-alarm rate on validation films are measured per model and written into the model card by

    python -m core.guard evaluate models/NAME [models/OTHER ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from core import config

logger = logging.getLogger(__name__)

OOD_FILE = "ood.npz"
DEFAULT_QUANTILE = 0.99
MAX_COMPONENTS = 32
FOLDS = 5
SATURATION_LIMIT = 0.12  # mean HSV saturation in [0, 1]; grey X-rays saved as RGB JPEG stay below 0.02
STAT_SIZE = 128
STATISTIC_NAMES = ("mean", "std", "p05", "p95", "dark_fraction", "bright_fraction", "edge_density")


def colour_saturation(data: bytes | None) -> float | None:
    """Mean HSV saturation in [0, 1] of a raster file's raw bytes (None for DICOM, grey or undecodable files)."""
    import cv2

    if not data:
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 3 or image.shape[2] < 3:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_BGR2HSV)
    return float(hsv[:, :, 1].mean() / 255.0)


def image_statistics(pixels: np.ndarray) -> np.ndarray:
    """Intensity statistics (7,) of grey pixels (H, W) in [0, 1], computed at 128×128 (see STATISTIC_NAMES)."""
    import cv2

    small = cv2.resize(np.asarray(pixels, np.float32), (STAT_SIZE, STAT_SIZE), interpolation=cv2.INTER_AREA)
    gx = cv2.Sobel(small, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(small, cv2.CV_32F, 0, 1, ksize=3)
    p05, p95 = np.percentile(small, [5, 95])
    return np.array([small.mean(), small.std(), p05, p95, (small < 0.05).mean(), (small > 0.95).mean(),
                     (np.hypot(gx, gy) > 0.5).mean()], dtype=np.float64)


def embedding_function(model: Any) -> Any:
    """Cached traced function: model inputs (N, H, W, C) in [0, 255] -> penultimate embedding (N, d)."""
    import keras
    import tensorflow as tf

    from core import explain

    def build() -> Any:
        shape = tuple(int(s) for s in model.inputs[0].shape[1:])
        if explain.members(model):  # an ensemble: its members' embeddings side by side
            inputs = keras.Input(shape, name="pixels")
            parts = []
            for member in explain.members(model):
                adapter = keras.Model(model.inputs, member._inbound_nodes[0].input_tensors[0])
                head = keras.Model(member.inputs, explain.logit_head(member)[0])
                parts.append(keras.layers.Flatten()(head(adapter(inputs))))
            sub_model = keras.Model(inputs, keras.layers.Concatenate()(parts) if len(parts) > 1 else parts[0])
        else:
            sub_model = keras.Model(model.inputs, explain.logit_head(model)[0])
        return tf.function(lambda batch: tf.reshape(sub_model(batch, training=False), (tf.shape(batch)[0], -1)),
                           input_signature=[tf.TensorSpec((None, *shape), tf.float32)])

    return explain.cached(model, ("embedding",), build)


def embedding_and_probability_function(model: Any) -> Any:
    """Cached function: model inputs (N, H, W, C) in [0, 255] -> (penultimate embedding (N, d), P(pneumonia) (N,)).

    One forward pass gives both for a flat model, so the guard's check and the score share it; an ensemble (whose
    embedding runs each member on its own) gets its probability from a second call.
    """
    import keras
    import tensorflow as tf

    from core import explain

    if explain.members(model):
        embed = embedding_function(model)
        return lambda batch: (embed(batch), tf.reshape(model(batch, training=False), (-1,)))

    def build() -> Any:
        shape = tuple(int(s) for s in model.inputs[0].shape[1:])
        sub_model = keras.Model(model.inputs, [explain.logit_head(model)[0], model.outputs[0]])

        def run(batch: Any) -> tuple[Any, Any]:
            embedding, probability = sub_model(batch, training=False)
            return tf.reshape(embedding, (tf.shape(batch)[0], -1)), tf.reshape(probability, (-1,))

        return tf.function(run, input_signature=[tf.TensorSpec((None, *shape), tf.float32)])

    return explain.cached(model, ("embedding+probability",), build)


@dataclass
class _Gaussian:
    """PCA projection plus a Ledoit-Wolf Gaussian: Mahalanobis distance and reconstruction residual."""

    mean: np.ndarray
    components: np.ndarray
    location: np.ndarray
    precision: np.ndarray

    @classmethod
    def fit(cls, vectors: np.ndarray, max_components: int) -> "_Gaussian":
        """Fit on vectors (n, d)."""
        from sklearn.covariance import LedoitWolf
        from sklearn.decomposition import PCA

        n, d = vectors.shape
        k = int(min(max_components, d, n - 1))
        pca = PCA(n_components=k, random_state=config.SPLIT_SEED).fit(vectors)
        projected = pca.transform(vectors)
        lw = LedoitWolf().fit(projected)
        return cls(pca.mean_, pca.components_, lw.location_, lw.precision_)

    def distances(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Mahalanobis distances (n,), reconstruction residual norms (n,) relative to the mean norm)."""
        centred = np.asarray(vectors, np.float64) - self.mean
        projected = centred @ self.components.T
        diff = projected - self.location
        mahalanobis = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", diff, self.precision, diff), 0.0))
        residual = np.linalg.norm(centred - projected @ self.components, axis=1)
        return mahalanobis, residual


def _cross_fitted_thresholds(vectors: np.ndarray, quantile: float, max_components: int) -> np.ndarray:
    """Quantile of out-of-fold (Mahalanobis, residual) distances of vectors (n, d): thresholds (2,)."""
    from sklearn.model_selection import KFold

    out_of_fold = np.zeros((len(vectors), 2))
    for fit_index, held_index in KFold(FOLDS, shuffle=True, random_state=config.SPLIT_SEED).split(vectors):
        out_of_fold[held_index] = np.column_stack(_Gaussian.fit(vectors[fit_index], max_components).distances(vectors[held_index]))
    return np.quantile(out_of_fold, quantile, axis=0)


@dataclass
class OodCalibration:
    """Everything the guard needs for one model, fitted on its validation images."""

    model_name: str
    features: _Gaussian
    feature_thresholds: np.ndarray  # (Mahalanobis, residual)
    appearance: _Gaussian
    appearance_threshold: float
    quantile: float
    n_images: int
    validation_flag_rate: float = 0.0
    saturation_limit: float = SATURATION_LIMIT
    info: dict = field(default_factory=dict)

    def save(self, path: Path) -> Path:
        """Write as .npz (plain arrays plus a JSON string; loadable without pickle)."""
        meta = {"model_name": self.model_name, "quantile": self.quantile, "n_images": self.n_images,
                "validation_flag_rate": self.validation_flag_rate, "saturation_limit": self.saturation_limit,
                "appearance_threshold": self.appearance_threshold, "statistics": list(STATISTIC_NAMES), **self.info}
        arrays = {f"features_{k}": v for k, v in vars(self.features).items()}
        arrays |= {f"appearance_{k}": v for k, v in vars(self.appearance).items()}
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez_compressed(tmp, feature_thresholds=self.feature_thresholds, meta=np.array(json.dumps(meta)), **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> "OodCalibration":
        """Read a file written by save()."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            part = {name: _Gaussian(*(data[f"{name}_{k}"] for k in ("mean", "components", "location", "precision")))
                    for name in ("features", "appearance")}
            thresholds = data["feature_thresholds"]
        known = {"model_name", "quantile", "n_images", "validation_flag_rate", "saturation_limit", "appearance_threshold", "statistics"}
        return cls(meta["model_name"], part["features"], thresholds, part["appearance"], float(meta["appearance_threshold"]),
                   float(meta["quantile"]), int(meta["n_images"]), float(meta["validation_flag_rate"]),
                   float(meta["saturation_limit"]), {k: v for k, v in meta.items() if k not in known})


@dataclass(frozen=True)
class OodResult:
    """The guard's verdict for one image: flagged or not, and why (sentences a user can read)."""

    flagged: bool
    reasons: tuple[str, ...]
    feature_distance: float
    feature_threshold: float
    appearance_distance: float
    appearance_threshold: float
    saturation: float | None
    probability: float | None = None  # P(pneumonia) from the same model pass (so scoring needs no second one)

    def message(self) -> str:
        """One paragraph for the page, empty when the image looks in-distribution."""
        if not self.flagged:
            return ""
        return ("This image does not look like the chest X-rays the model was validated on, so its score may be "
                "meaningless. " + " ".join(self.reasons))


def _features_and_statistics(scorer: Any, decoded_images: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings (n, d), intensity statistics (n, 7), P(pneumonia) (n,)) of decoded X-rays, from one model pass."""
    inputs = np.stack([scorer.prepare(d) for d in decoded_images])
    embeddings, probabilities = embedding_and_probability_function(scorer.model)(inputs)
    statistics = np.stack([image_statistics(getattr(d, "pixels", d)) for d in decoded_images])
    return np.asarray(embeddings, np.float64), statistics, np.asarray(probabilities, np.float32)


def calibrate(scorer: Any, decoded_images: Iterable[Any], *, quantile: float = DEFAULT_QUANTILE,
              batch_size: int = 32) -> OodCalibration:
    """Fit the guard on validation X-rays (decoded), streaming them through the model in batches."""
    if not 0.5 < quantile < 1.0:
        raise ValueError(f"quantile must be between 0.5 and 1, got {quantile}.")
    embeddings, statistics, batch = [], [], []
    for decoded in decoded_images:
        batch.append(decoded)
        if len(batch) == batch_size:
            e, s, _ = _features_and_statistics(scorer, batch)
            embeddings.append(e), statistics.append(s)
            batch = []
    if batch:
        e, s, _ = _features_and_statistics(scorer, batch)
        embeddings.append(e), statistics.append(s)
    if sum(len(e) for e in embeddings) < 5 * FOLDS:
        raise ValueError(f"The guard needs at least {5 * FOLDS} validation images to calibrate; pass more.")
    vectors, stats = np.concatenate(embeddings), np.concatenate(statistics)
    feature_thresholds = _cross_fitted_thresholds(vectors, quantile, MAX_COMPONENTS)
    if vectors.shape[1] <= MAX_COMPONENTS:  # PCA keeps every dimension: the residual is rounding noise, not a signal
        feature_thresholds[1] = np.inf
    appearance_threshold = float(_cross_fitted_thresholds(stats, quantile, len(STATISTIC_NAMES))[0])
    calibration = OodCalibration(scorer.name, _Gaussian.fit(vectors, MAX_COMPONENTS), feature_thresholds,
                                 _Gaussian.fit(stats, len(STATISTIC_NAMES)), appearance_threshold, quantile, len(vectors))
    distance, residual = calibration.features.distances(vectors)
    appearance, _ = calibration.appearance.distances(stats)
    flagged = (distance > feature_thresholds[0]) | (residual > feature_thresholds[1]) | (appearance > appearance_threshold)
    calibration.validation_flag_rate = float(flagged.mean())
    return calibration


def check(scorer: Any, calibration: OodCalibration, decoded: Any, *, raw_bytes: bytes | None = None) -> OodResult:
    """Run the three checks on one decoded X-ray (raw_bytes, when given, enables the colour check)."""
    return check_many(scorer, calibration, [decoded], raw_bytes=[raw_bytes])[0]


def check_many(scorer: Any, calibration: OodCalibration, decoded_images: Sequence[Any], *,
               raw_bytes: Sequence[bytes | None] | None = None) -> list[OodResult]:
    """check() for several decoded X-rays, with one model pass for all of them (raw_bytes: one per image, or None)."""
    if not decoded_images:
        return []
    embeddings, statistics, probabilities = _features_and_statistics(scorer, list(decoded_images))
    distances, residuals = calibration.features.distances(embeddings)
    appearances = calibration.appearance.distances(statistics)[0]
    feature_threshold, residual_threshold = (float(t) for t in calibration.feature_thresholds)
    results = []
    for i, raw in enumerate(raw_bytes if raw_bytes is not None else [None] * len(decoded_images)):
        distance, residual, appearance = float(distances[i]), float(residuals[i]), float(appearances[i])
        saturation = colour_saturation(raw)
        reasons = []
        if saturation is not None and saturation > calibration.saturation_limit:
            reasons.append(f"It is a colour image (mean saturation {saturation:.2f}); X-rays are grey.")
        if appearance > calibration.appearance_threshold:
            reasons.append(f"Its brightness, contrast and edges are unlike the validation X-rays (distance {appearance:.1f}; "
                           f"{calibration.quantile:.0%} of validation images are below {calibration.appearance_threshold:.1f}).")
        if distance > feature_threshold:
            reasons.append(f"The model's internal features for it are unlike those of the validation X-rays (distance "
                           f"{distance:.1f}; {calibration.quantile:.0%} of validation images are below {feature_threshold:.1f}).")
        elif residual > residual_threshold:
            reasons.append(f"The model's internal features for it lie off the range spanned by the validation X-rays (residual "
                           f"{residual:.2f}; {calibration.quantile:.0%} of validation images are below {residual_threshold:.2f}).")
        results.append(OodResult(bool(reasons), tuple(reasons), distance, feature_threshold, appearance,
                                 calibration.appearance_threshold, saturation, float(probabilities[i])))
    return results


def model_fingerprint(model_dir: str | Path) -> str:
    """SHA-256 of models/<name>/model.keras: a calibration is valid only for the exact model it was fitted with."""
    import hashlib

    digest = hashlib.sha256()
    with (Path(model_dir) / "model.keras").open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def calibration_path(model_dir: str | Path) -> Path:
    """Where a model's calibration lives: models/<name>/ood.npz."""
    return Path(model_dir) / OOD_FILE


def load_calibration(model_dir: str | Path) -> OodCalibration | None:
    """The stored calibration of a model, or None when it has none (or it is unreadable)."""
    path = calibration_path(model_dir)
    if not path.is_file():
        return None
    try:
        calibration = OodCalibration.load(path)
    except (OSError, ValueError, KeyError) as error:
        logger.warning("OOD calibration %s is unreadable (%s); run python -m core.guard %s again.", path, error, path.parent)
        return None
    if calibration.info.get("model_sha256") != model_fingerprint(model_dir):
        logger.warning("OOD calibration %s was fitted for another version of model.keras; run python -m core.guard %s again.",
                       path, path.parent)
        return None
    return calibration


def validation_files(model_dir: str | Path, data_root: str | Path | None = None) -> list[Path]:
    """Absolute paths of the validation images listed in a model's predictions.csv."""
    import pandas as pd

    model_dir = Path(model_dir)
    frame = pd.read_csv(model_dir / "predictions.csv")
    relpaths = frame.loc[frame["split"] == "val", "path"].astype(str)
    root = Path(data_root) if data_root else config.data_root()
    files = [Path(p) if Path(p).is_absolute() else root / p for p in relpaths]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise ValueError(f"{len(missing)} validation image(s) of {model_dir.name} are missing under {root} "
                         f"(first: {missing[0]}); pass --data-root with the dataset the model was trained on.")
    if not files:
        raise ValueError(f"predictions.csv of {model_dir.name} lists no 'val' rows; retrain the model with train.py.")
    return files


def calibrate_model(model_dir: str | Path, data_root: str | Path | None = None, *, quantile: float = DEFAULT_QUANTILE) -> Path:
    """Calibrate the guard of models/<name>/ on its validation images and write ood.npz; return its path."""
    from core import predict
    from core.imaging import decode_xray

    scorer = predict.load_scorer(model_dir)
    files = validation_files(model_dir, data_root)
    calibration = calibrate(scorer, (decode_xray(f) for f in files), quantile=quantile)
    calibration.info = {"split": "val", "data_root": str(data_root or config.data_root()), "model_sha256": model_fingerprint(model_dir)}
    path = calibration.save(calibration_path(model_dir))
    logger.info("OOD guard of %s: %d validation images, %.1f%% flagged; wrote %s", scorer.name, calibration.n_images,
                100 * calibration.validation_flag_rate, path)
    return path


# --------------------------------------------------------------------------------------------- model-independent checks

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


# --------------------------------------------------------------------------------------------- the whole guard

VERDICT_PASSED = "passed"
VERDICT_NOTES = "passed with notes"
VERDICT_PARTIAL = "passed the checks that ran"
VERDICT_WARNING = "warning"
INVERTED_SENTENCE = ("This film looks inverted (white lungs, dark bones), like a negative or a MONOCHROME1 image exported "
                     "without inversion; the model has only seen films the right way up, so its score means little as it is.")
_NOTE_CODES = (("-bit values", "bit depth rescaled"), ("does not say how it is encoded", "DICOM encoding inferred"),
               ("frames", "first frame of several"), ("inverted before scoring", "scored the right way up (inverted)"))


def note_codes(notes: Iterable[str]) -> list[str]:
    """Short codes (e.g. 'bit depth rescaled') for the decoder's notes (DecodedXray.notes); 'decoding note' otherwise."""
    codes = []
    for note in notes:
        code = next((c for key, c in _NOTE_CODES if key in note), "decoding note")
        if code not in codes:
            codes.append(code)
    return codes


@dataclass(frozen=True)
class GuardVerdict:
    """Everything the guard says about one film: a status, short reason codes and sentences a user can read.

    status: 'warning' (some check flagged the film), 'passed' (every check ran and passed, no decoding notes),
    'passed with notes' (every check passed, but decoding did something worth knowing), 'passed the checks that
    ran' (the model has no ood.npz, so its own check did not run).
    """

    status: str
    reasons: tuple[str, ...]
    details: tuple[str, ...]
    inverted: bool
    inversion_probability: float
    chest_film_distance: float
    chest_film_threshold: float
    model_check: OodResult | None = None

    @property
    def flagged(self) -> bool:
        """True when any check flagged the film."""
        return self.status == VERDICT_WARNING

    @property
    def every_check_passed(self) -> bool:
        """True only when every check ran (the model's own included) and none flagged the film."""
        return self.status in (VERDICT_PASSED, VERDICT_NOTES)

    def message(self) -> str:
        """One paragraph for a warning ('' when nothing was flagged)."""
        if not self.flagged:
            return ""
        opening = ("This image does not look like the chest X-rays the model was trained and validated on "
                   "(children aged 1-5, anterior-posterior, the right way up), so its score may be meaningless. ")
        return opening + " ".join(self.details)

    def row(self) -> dict[str, str]:
        """CSV / table columns: guard (the status), guard_reasons (codes, '; '), guard_details (sentences)."""
        return {"guard": self.status, "guard_reasons": "; ".join(self.reasons), "guard_details": " ".join(self.details)}


GUARD_COLUMNS = ("guard", "guard_reasons", "guard_details")


def looks_inverted(pixels: Any, *, inversion_detector: Any = None, chest_film: ChestFilmModel | None = None) -> tuple[bool, float]:
    """(inverted, P(inverted)) of grey pixels (H, W) in [0, 1]: a chest film with its grey scale reversed.

    True only when the detector says inverted AND the film turned the right way up looks like a training chest film,
    so that an extremity or a CT slice with a bright background is not called a negative chest film.
    """
    from core.imaging import inversion

    detector = inversion_detector or inversion.load_detector()
    chest_film = chest_film or load_chest_film()
    grey = np.asarray(getattr(pixels, "pixels", pixels), np.float32)
    probability = detector.probability(grey)
    if probability <= inversion.DECISION_PROBABILITY:
        return False, probability
    return bool(chest_film.distance(chest_film_features(1.0 - grey))[0] <= chest_film.threshold), probability


def assess(scorer: Any, calibration: OodCalibration | None, decoded: Any, *, raw_bytes: bytes | None = None,
           inversion_detector: Any = None, chest_film: ChestFilmModel | None = None,
           model_check: OodResult | None = None) -> GuardVerdict:
    """Run every check on one decoded X-ray (a DecodedXray, or grey (H, W) in [0, 1]) for one model's Scorer.

    Model-independent: inverted film, colour image (needs raw_bytes), not like a paediatric chest film, smaller than
    the model input, decoding notes. Per model (when `calibration` is given): appearance and feature distances
    (`model_check`, when given, is that check already computed, e.g. by check_many for a batch).
    """
    from core.imaging import inversion

    detector = inversion_detector or inversion.load_detector()
    chest_film = chest_film or load_chest_film()
    pixels = np.asarray(getattr(decoded, "pixels", decoded), np.float32)
    metadata = dict(getattr(decoded, "metadata", {}) or {})
    reasons: list[str] = []
    details: list[str] = []

    inverted, p_inverted = looks_inverted(pixels, inversion_detector=detector, chest_film=chest_film)
    if inverted:
        reasons.append("inverted (negative film)")
        details.append(INVERTED_SENTENCE + f" (P(inverted) = {p_inverted:.2f}.) Score it the right way up instead.")
    saturation = colour_saturation(raw_bytes)
    limit = calibration.saturation_limit if calibration is not None else SATURATION_LIMIT
    if saturation is not None and saturation > limit:
        reasons.append("colour image")
        details.append(f"It is a colour image (mean saturation {saturation:.2f}); X-rays are grey: is this a photograph?")
    distance = float(chest_film.distance(chest_film_features(pixels))[0])
    if distance > chest_film.threshold:
        reasons.append("out of distribution: not like the paediatric chest films")
        details.append(f"It does not look like the paediatric chest films the models were trained on (it could be an adult "
                       f"film, another view or body part, or not an X-ray; chest-film distance {distance:.2f}, "
                       f"{chest_film.info.get('quantile', CHEST_FILM_QUANTILE):.0%} of training films are below "
                       f"{chest_film.threshold:.2f}).")
    height, width = pixels.shape
    if min(height, width) < min(scorer.height, scorer.width):
        reasons.append("smaller than the model input")
        details.append(f"It is only {width}x{height} pixels, smaller than the model's {scorer.width}x{scorer.height} input: "
                       "it was enlarged, and detail the model relies on is missing.")
    if calibration is None:
        model_check = None
    else:
        model_check = model_check or check(scorer, calibration, pixels)
        if model_check.appearance_distance > model_check.appearance_threshold:
            reasons.append("out of distribution: brightness and contrast")
        if model_check.feature_distance > model_check.feature_threshold or any("off the range" in r for r in model_check.reasons):
            reasons.append("out of distribution: the model's features")
        details.extend(r for r in model_check.reasons if "colour image" not in r)  # colour is checked above
    flagged = bool(reasons)
    notes = [str(n) for n in metadata.get("notes", ())]
    codes = note_codes(notes)
    reasons.extend(codes)
    details.extend(notes)
    if flagged:
        status = VERDICT_WARNING
    elif calibration is None:
        status = VERDICT_PARTIAL
        reasons.append("no model-specific check (no ood.npz)")
    else:
        status = VERDICT_NOTES if codes else VERDICT_PASSED
    chest_threshold = float(chest_film.threshold)
    return GuardVerdict(status, tuple(reasons), tuple(details), inverted, p_inverted, distance, chest_threshold, model_check)


def assess_many(scorer: Any, calibration: OodCalibration | None, decoded_images: Sequence[Any], *,
                raw_bytes: Sequence[bytes | None] | None = None, fix_inverted: bool = False) -> tuple[list[Any], list[GuardVerdict]]:
    """(images to score, verdicts) for several decoded X-rays, with one model pass for the model-specific check.

    With fix_inverted, a film that looks inverted is turned the right way up first (core.imaging.inversion.invert, which
    adds a note), and its verdict is that of the corrected film; otherwise images are returned unchanged.
    """
    from core.imaging import inversion

    detector = inversion.load_detector()
    images = [inversion.invert(d) if fix_inverted and looks_inverted(d, inversion_detector=detector)[0] else d for d in decoded_images]
    raws = list(raw_bytes) if raw_bytes is not None else [None] * len(images)
    checks = check_many(scorer, calibration, images) if calibration is not None else [None] * len(images)
    return images, [assess(scorer, calibration, image, raw_bytes=raw, model_check=model_check, inversion_detector=detector)
                    for image, raw, model_check in zip(images, raws, checks)]


# --------------------------------------------------------------------------------------------- measuring the guard


@dataclass
class FilmSet:
    """A named set of films for measuring the guard: what it is, and (label, loader) pairs; a loader returns
    (DecodedXray or grey pixels, raw bytes or None)."""

    name: str
    description: str
    expected_flag: bool
    films: list[tuple[str, Any]]
    derived: bool = False  # made from other films (rotated, cropped, inverted), not real films as they come


def _file_loader(path: Path, transform: Any = None) -> Any:
    """A loader decoding `path` (then applying transform to its pixels, if given)."""
    def load() -> tuple[Any, bytes | None]:
        from core.imaging import decode_xray

        data = path.read_bytes()
        decoded = decode_xray(data, name=path.name)
        if transform is None:
            return decoded, data
        return np.ascontiguousarray(transform(decoded.pixels), np.float32), None
    return load


def _existing(paths: Iterable[Path]) -> list[Path]:
    return [p for p in paths if p.is_file()]


def out_of_distribution_sets(extra: dict[str, Path] | None = None) -> list[FilmSet]:
    """The out-of-distribution films shipped with the project (and its dependencies), each set saying what it is.

    `extra` adds folders of films the guard should flag (name -> folder), e.g. a hospital's own adult films.
    """
    import pydicom

    field_cases = config.PROJECT_ROOT / "tests" / "fixtures" / "field_cases"
    pydicom_files = Path(pydicom.__file__).parent / "data" / "test_files"
    adult = _existing([*sorted(config.SAMPLES_DIR.glob("*.png")), config.SAMPLES_DIR / "RG1_UNCI.dcm", config.SAMPLES_DIR / "RG1_J2KI.dcm",
                       field_cases / "adult_pa_nih_00027426_000.png", field_cases / "dicom_no_transfer_syntax_uid.dcm"])
    non_chest = _existing([field_cases / "dicom_extremity_not_chest.dcm", field_cases / "dicom_jpeg_lossless_sv1.dcm",
                           *(pydicom_files / n for n in ("CT_small.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm", "MR_small.dcm",
                                                         "examples_overlay.dcm", "examples_rgb_color.dcm", "examples_jpeg2k.dcm",
                                                         "examples_palette.dcm"))])
    photos = _existing(sorted((Path(__import__("sklearn").__file__).parent / "datasets" / "images").glob("*.jpg")))
    sets = [
        FilmSet("adult chest films", "real adult PA chest films: NIH ChestX-ray14 (4 shipped 128-px samples + the field-case "
                "00027426_000) and one pydicom CR (RG1) in up to three encodings (uncompressed, JPEG 2000, resized without "
                "Transfer Syntax UID)", True, [(p.name, _file_loader(p)) for p in adult]),
        FilmSet("non-chest medical images", "real DICOMs that are not chest films: CR of a tibia (field case), a whole-body "
                "bone scan (NM), CT slices, MR slices and ultrasound frames (pydicom's bundled test files, MIT)", True,
                [(p.name, _file_loader(p)) for p in non_chest]),
        FilmSet("photographs", "real colour photographs (scikit-learn's bundled china.jpg and flower.jpg)", True,
                [(p.name, _file_loader(p)) for p in photos]),
        FilmSet("adult films rotated 90 degrees", "the adult chest films above turned a quarter turn (derived: a sideways "
                "film, NOT a real lateral view)", True, [(f"{p.name} rot90", _file_loader(p, np.rot90)) for p in adult], derived=True),
        FilmSet("adult films, right half", "the right half of each adult chest film (derived crop: one lung; NOT a real "
                "lateral view)", True, [(f"{p.name} right half", _file_loader(p, lambda x: x[:, x.shape[1] // 2:])) for p in adult], derived=True),
    ]
    for name, folder in (extra or {}).items():
        from core.predict import iter_image_files

        files = list(iter_image_files([folder]))
        sets.append(FilmSet(name, f"films in {folder} (given with --extra)", True, [(str(p), _file_loader(p)) for p in files]))
    return [s for s in sets if s.films]


def validation_sets(model_dir: str | Path, data_root: str | Path | None = None, *, test_every: int = 4,
                    inverted_every: int = 5) -> list[FilmSet]:
    """In-distribution films for the false-alarm rate: the model's validation films, every `test_every`-th test film
    of its predictions.csv (held out from everything, another acquisition), and every `inverted_every`-th validation
    film inverted (derived negatives: the guard should flag these)."""
    import pandas as pd

    files = validation_files(model_dir, data_root)
    frame = pd.read_csv(Path(model_dir) / "predictions.csv")
    root = Path(data_root) if data_root else config.data_root()
    test = [root / p for p in frame.loc[frame["split"] == "test", "path"].astype(str)][::test_every]
    sets = [FilmSet("validation films", "the model's validation films (patient-grouped split of train); the per-model check "
                    "is calibrated on them (99th percentile of out-of-fold distances), the other checks never saw them", False,
                    [(p.name, _file_loader(p)) for p in files])]
    if test:
        sets.append(FilmSet("test films", f"every {test_every}th film of the official test split (another acquisition; no check "
                            "was fitted on them)", False, [(p.name, _file_loader(p)) for p in test if p.is_file()]))
    sets.append(FilmSet("validation films inverted", f"every {inverted_every}th validation film with its grey scale inverted "
                        "(derived negatives)", True, [(f"{p.name} inverted", _file_loader(p, lambda x: 1.0 - x)) for p in files[::inverted_every]], derived=True))
    return sets


def measure(scorer: Any, calibration: OodCalibration | None, film_set: FilmSet, *, batch_size: int = 32) -> dict:
    """Flag rate of the whole guard (and of each kind of reason) on one set; films that do not decode are counted apart."""
    verdicts: list[tuple[str, GuardVerdict]] = []
    unreadable: list[str] = []
    for start in range(0, len(film_set.films), batch_size):
        batch = []
        for label, load in film_set.films[start:start + batch_size]:
            try:
                image, raw = load()
            except ValueError as error:
                unreadable.append(f"{label}: {str(error).splitlines()[0][:120]}")
                continue
            batch.append((label, image, raw))
        model_checks = (check_many(scorer, calibration, [b[1] for b in batch]) if calibration is not None and batch
                        else [None] * len(batch))
        for (label, image, raw), model_check in zip(batch, model_checks):
            verdicts.append((label, assess(scorer, calibration, image, raw_bytes=raw, model_check=model_check)))
    n = len(verdicts)
    flagged = [label for label, v in verdicts if v.flagged]
    by_reason: dict[str, int] = {}
    for _, verdict in verdicts:
        for reason in verdict.reasons:
            by_reason[reason] = by_reason.get(reason, 0) + 1
    return {"set": film_set.name, "description": film_set.description, "should_flag": film_set.expected_flag,
            "derived": film_set.derived, "n": n,
            "flagged": len(flagged), "rate": round(len(flagged) / n, 4) if n else None, "by_reason": by_reason,
            "missed" if film_set.expected_flag else "false_alarms":
                [label for label, v in verdicts if v.flagged != film_set.expected_flag][:50],
            "unreadable": unreadable}


def evaluate_guard(model_dir: str | Path, data_root: str | Path | None = None, *, extra: dict[str, Path] | None = None) -> dict:
    """The guard of one model measured: detection rate per out-of-distribution set, false-alarm rate on validation."""
    import datetime

    from core import predict

    scorer = predict.load_scorer(model_dir)
    calibration = load_calibration(model_dir)
    sets = [*out_of_distribution_sets(extra), *validation_sets(model_dir, data_root)]
    rows = [measure(scorer, calibration, s) for s in sets]
    detected = [r for r in rows if r["should_flag"] and not r["derived"] and r["n"]]
    return {"model": scorer.name, "model_check": "ood.npz" if calibration is not None else "none (no ood.npz: run python -m core.guard on it)",
            "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": f"python -m core.guard evaluate {model_dir}",
            "detection_rate_real_out_of_distribution": round(sum(r["flagged"] for r in detected) / max(1, sum(r["n"] for r in detected)), 4),
            "false_alarm_rate_validation": next((r["rate"] for r in rows if r["set"] == "validation films"), None),
            "sets": rows}


GUARD_MD_START, GUARD_MD_END = "<!-- guard:start -->", "<!-- guard:end -->"


def guard_markdown(guard: dict) -> str:
    """The `guard` card section as Markdown: one row per set."""
    lines = [GUARD_MD_START, "## Out-of-distribution guard (measured)", "",
             f"Measured {guard['measured']} with `{guard['command']}`; model-specific check: {guard['model_check']}.", "",
             "| set | what it is | films | flagged | rate |", "| --- | --- | --- | --- | --- |"]
    for row in guard["sets"]:
        kind = "detection" if row["should_flag"] else "false alarms"
        rate = "n/a" if row["rate"] is None else f"{row['rate']:.1%}"
        lines.append(f"| {row['set']} | {row['description']} | {row['n']} | {row['flagged']} | {kind} {rate} |")
    lines += ["", f"Detection rate: **{guard['detection_rate_real_out_of_distribution']:.1%}** of the real "
              "out-of-distribution films (derived sets not counted); "
              f"false alarms on validation films: **{(guard['false_alarm_rate_validation'] or 0):.1%}**.", GUARD_MD_END]
    return "\n".join(lines) + "\n"


def write_guard_card(model_dir: str | Path, guard: dict) -> None:
    """Put `guard` into card.json and its section into card.md (replacing an earlier one), each written atomically."""
    import os
    import re

    model_dir = Path(model_dir)
    card_path = model_dir / "card.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    card["guard"] = guard
    tmp = card_path.with_name(f".{card_path.name}.tmp")
    tmp.write_text(json.dumps(card, indent=2, default=str))
    os.replace(tmp, card_path)
    md_path = model_dir / "card.md"
    text = md_path.read_text() if md_path.is_file() else f"# {guard['model']}\n"
    pattern = re.compile(re.escape(GUARD_MD_START) + ".*?" + re.escape(GUARD_MD_END) + "\n?", re.S)
    text = pattern.sub("", text).rstrip("\n") + "\n\n" + guard_markdown(guard)
    tmp = md_path.with_name(f".{md_path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, md_path)


def guard_table(guards: Sequence[dict]) -> str:
    """A Markdown table, one row per model: detection rate per out-of-distribution set and false alarms."""
    names = [r["set"] for r in guards[0]["sets"]] if guards else []
    lines = ["| model | " + " | ".join(names) + " | real out-of-distribution films |", "| --- |" + " --- |" * (len(names) + 1)]
    for guard in guards:
        cells = []
        for name in names:
            row = next((r for r in guard["sets"] if r["set"] == name), None)
            cells.append("n/a" if not row or row["rate"] is None else f"{row['flagged']}/{row['n']} ({row['rate']:.0%})")
        lines.append(f"| `{guard['model']}` | " + " | ".join(cells) + f" | {guard['detection_rate_real_out_of_distribution']:.1%} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: calibrate model folders; `evaluate` measures their guards; `fit-chest-film` rebuilds the shared check."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config.quiet_tensorflow()
    if argv[:1] == ["fit-chest-film"]:
        parser = argparse.ArgumentParser(prog="python -m core.guard fit-chest-film",
                                         description="Rebuild core/assets/chest_film.npz from the training films.")
        parser.add_argument("--data-root", default=None)
        parser.add_argument("--out", default=str(CHEST_FILM_ASSET))
        args = parser.parse_args(argv[1:])
        logger.info("Wrote %s", fit_chest_film_asset(args.data_root, out=Path(args.out)))
        return 0
    if argv[:1] == ["evaluate"]:
        parser = argparse.ArgumentParser(prog="python -m core.guard evaluate", description=(
            "Measure each model's guard: detection rate on out-of-distribution films, false alarms on validation films; "
            "write them into card.json (guard) and card.md, and print a table."))
        parser.add_argument("models", nargs="+", help="model folders, e.g. models/*/")
        parser.add_argument("--data-root", default=None, help="dataset folder of the model's predictions.csv paths")
        parser.add_argument("--extra", action="append", default=[], metavar="NAME=FOLDER",
                            help="another folder of films the guard should flag, e.g. 'site adults=/data/adults'")
        parser.add_argument("--no-write", action="store_true", help="print only; leave the model cards untouched")
        parser.add_argument("--json", default=None, metavar="PATH", help="also write every model's guard section to this JSON file")
        args = parser.parse_args(argv[1:])
        extra = {}
        for item in args.extra:
            name, sep, folder = item.partition("=")
            if not sep or not Path(folder).is_dir():
                parser.error(f"--extra takes NAME=FOLDER with an existing folder, got {item!r}")
            extra[name] = Path(folder)
        guards, failed = [], 0
        for model_dir in args.models:
            try:
                guard = evaluate_guard(model_dir, args.data_root, extra=extra)
            except ValueError as error:
                logger.error("%s: %s", model_dir, error)
                failed += 1
                continue
            guards.append(guard)
            if not args.no_write:
                write_guard_card(model_dir, guard)
                logger.info("Wrote the guard section of %s/card.json and card.md", model_dir)
            for row in guard["sets"]:
                missed = row.get("missed") or row.get("false_alarms")
                logger.info("%s · %s: %s/%s flagged%s", guard["model"], row["set"], row["flagged"], row["n"],
                            f"; {'missed' if row['should_flag'] else 'false alarms'}: {', '.join(missed[:10])}" if missed else "")
        if guards:
            print(guard_table(guards))
        if args.json:
            Path(args.json).write_text(json.dumps(guards, indent=2, default=str))
        return 1 if failed else 0
    parser = argparse.ArgumentParser(prog="python -m core.guard", description=(
        "Calibrate the out-of-distribution guard on validation images. Also: 'python -m core.guard evaluate MODEL...' "
        "(measure the guard, write it into the card) and 'python -m core.guard fit-chest-film' (rebuild the shared check)."))
    parser.add_argument("models", nargs="+", help="model folders, e.g. models/xception-224")
    parser.add_argument("--data-root", default=None, help="dataset folder of the model's predictions.csv paths")
    parser.add_argument("--quantile", type=float, default=DEFAULT_QUANTILE)
    args = parser.parse_args(argv)
    failed = 0
    for model_dir in args.models:
        try:
            calibrate_model(model_dir, args.data_root, quantile=args.quantile)
        except ValueError as error:  # one bad folder does not stop the others
            logger.error("%s: %s", model_dir, error)
            failed += 1
    return 1 if failed else 0

