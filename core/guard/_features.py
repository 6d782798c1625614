"""Per-model check: how far a film's features lie from the model's own validation films (calibrated, ood.npz)."""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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
    from core.models import scorer as model_scoring
    from core.imaging import decode_xray

    scorer = model_scoring.load_scorer(model_dir)
    files = validation_files(model_dir, data_root)
    calibration = calibrate(scorer, (decode_xray(f) for f in files), quantile=quantile)
    calibration.info = {"split": "val", "data_root": str(data_root or config.data_root()), "model_sha256": model_fingerprint(model_dir)}
    path = calibration.save(calibration_path(model_dir))
    logger.info("OOD guard of %s: %d validation images, %.1f%% flagged; wrote %s", scorer.name, calibration.n_images,
                100 * calibration.validation_flag_rate, path)
    return path
