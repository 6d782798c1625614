"""The dataset audit: thumbnail baselines, the validation-vs-test domain classifier, statistic profiles (cached JSON)."""
from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import config
from core.audit._films import (
    AUDIT_VERSION,
    DOMAIN_FOLDS,
    SAMPLE_SEED,
    THUMBNAIL_SIZES,
    THUMBNAIL_VARIANTS,
    TOP_FEATURES,
    logger,
)
from core.audit._regions import film_statistics, statistic_words


def thumbnail_variant(grey: np.ndarray, variant: str) -> np.ndarray:
    """A grey uint8 film (H, W) prepared for a THUMBNAIL_VARIANTS baseline (same dtype; 'centre' is smaller)."""
    import cv2

    height, width = grey.shape
    top, left = height // 4, width // 4
    if variant == "film":
        return grey
    if variant == "equalised":
        return cv2.equalizeHist(grey)
    if variant == "centre":
        return grey[top: height - top, left: width - left]
    if variant == "edges":
        out = grey.copy()
        out[top: height - top, left: width - left] = 0
        return out
    raise ValueError(f"Unknown thumbnail variant {variant!r}; choose from {THUMBNAIL_VARIANTS}.")


def thumbnail_baselines(thumbnails: dict[int, np.ndarray], labels: np.ndarray, splits: np.ndarray, *,
                        variant: str = "film") -> list[dict[str, Any]]:
    """Logistic regression (standardised pixels, L2, C=1) on each thumbnail size, fitted on 'train', ROC AUC on 'val' and 'test'.

    `thumbnails[size]` is float (N, size, size) in [0, 1]; `labels` (N,) 0/1; `splits` (N,) of 'train'/'val'/'test'.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels, splits = np.asarray(labels), np.asarray(splits)
    if not (splits == "train").any():
        raise ValueError("The baselines need films in the 'train' split to fit on.")
    rows = []
    for size, pixels in sorted(thumbnails.items()):
        features = np.asarray(pixels, np.float64).reshape(len(pixels), -1)
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
        model.fit(features[splits == "train"], labels[splits == "train"])
        row: dict[str, Any] = {"variant": variant, "size": int(size), "features": int(features.shape[1])}
        for split in ("val", "test"):
            chosen = splits == split
            if chosen.any() and len(set(labels[chosen])) == 2:
                row[f"{split}_roc_auc"] = float(roc_auc_score(labels[chosen], model.predict_proba(features[chosen])[:, 1]))
                row[f"{split}_n"] = int(chosen.sum())
        rows.append(row)
    return rows


def domain_classifier(features: pd.DataFrame, is_test: np.ndarray, groups: np.ndarray, *, folds: int = DOMAIN_FOLDS,
                      seed: int = SAMPLE_SEED, repeats: int = 5) -> dict[str, Any]:
    """How well simple statistics tell test films (is_test = 1) from validation films (0).

    Gradient boosting (scikit-learn HistGradientBoostingClassifier), `folds`-fold cross-validation stratified and
    grouped by `groups` (a patient never in two folds). Returns the out-of-fold ROC AUC and permutation importance
    (drop in held-out ROC AUC when one statistic is shuffled, mean over folds x `repeats`), highest first.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold
    from threadpoolctl import threadpool_limits

    X = features.to_numpy(np.float64)
    y = np.asarray(is_test).astype(int)
    out_of_fold = np.zeros(len(y))
    importance = np.zeros(X.shape[1])
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    # One OpenMP thread: on a busy machine the boosting's thread pool otherwise spins and runs 100x slower.
    with threadpool_limits(limits=1, user_api="openmp"):
        for fit_rows, held_rows in splitter.split(X, y, groups):
            model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed)
            model.fit(X[fit_rows], y[fit_rows])
            out_of_fold[held_rows] = model.predict_proba(X[held_rows])[:, 1]
            result = permutation_importance(model, X[held_rows], y[held_rows], scoring="roc_auc", n_repeats=repeats, random_state=seed)
            importance += result.importances_mean / folds
    order = np.argsort(-importance)
    return {
        "model": "HistGradientBoostingClassifier(max_iter=200)",
        "folds": int(folds), "n_validation": int((y == 0).sum()), "n_test": int((y == 1).sum()),
        "roc_auc": float(roc_auc_score(y, out_of_fold)),
        "importance": [{"statistic": str(features.columns[i]), "auc_drop": float(importance[i])} for i in order],
    }


def _auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """ROC AUC of a single statistic, positives vs negatives (0.5 = no separation, > 0.5 = positives higher)."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(negatives)), np.ones(len(positives))]
    return float(roc_auc_score(y, np.r_[negatives, positives]))


def statistic_profile(features: pd.DataFrame, labels: np.ndarray, splits: np.ndarray, names: Sequence[str]) -> list[dict[str, Any]]:
    """For each statistic: medians per split x class, AUC of val NORMAL vs val PNEUMONIA (what pneumonia looks like in
    validation), AUC of val NORMAL vs test NORMAL (how the test normals moved), and whether they moved towards pneumonia."""
    labels, splits = np.asarray(labels), np.asarray(splits)
    groups = {f"{split}_{cls.lower()}": (splits == split) & (labels == label)
              for split in ("val", "test") for label, cls in enumerate(config.CLASS_NAMES)}
    rows = []
    for name in names:
        values = features[name].to_numpy(np.float64)
        row: dict[str, Any] = {"statistic": name, "words": statistic_words(name)}
        row.update({f"median_{key}": float(np.median(values[mask])) for key, mask in groups.items() if mask.any()})
        if groups["val_normal"].any() and groups["val_pneumonia"].any():
            row["auc_pneumonia_vs_normal_val"] = _auc(values[groups["val_normal"]], values[groups["val_pneumonia"]])
        if groups["val_normal"].any() and groups["test_normal"].any():
            row["auc_test_normal_vs_val_normal"] = _auc(values[groups["val_normal"]], values[groups["test_normal"]])
        if "auc_pneumonia_vs_normal_val" in row and "auc_test_normal_vs_val_normal" in row:
            row["test_normals_move_towards_pneumonia"] = bool(
                (row["auc_pneumonia_vs_normal_val"] - 0.5) * (row["auc_test_normal_vs_val_normal"] - 0.5) > 0)
        rows.append(row)
    return rows


def score_correlations(features: pd.DataFrame, index: pd.DataFrame, names: Sequence[str],
                       models_dir: str | os.PathLike | None = None) -> dict[str, dict[str, float]]:
    """Spearman correlation, on the test NORMAL films, between each statistic and each model's stored score
    (predictions.csv; no model is run): a positive value means films higher on the statistic score more 'pneumonia'."""
    from scipy.stats import spearmanr

    from core.models import registry

    normals = (index["split"] == "test").to_numpy() & (index["label"] == 0).to_numpy()
    relpaths = index["relpath"].to_numpy()
    out: dict[str, dict[str, float]] = {}
    for entry in registry.list_models(models_dir):
        if not entry.available:
            continue
        try:
            scores = registry.load_predictions(entry, split="test").set_index("path")["score"]
        except (OSError, ValueError, KeyError) as error:
            logger.warning("No stored test scores for %s (%s)", entry.name, error)
            continue
        matched = pd.Series(relpaths[normals]).map(scores)
        if matched.notna().sum() < 10:
            continue
        keep = matched.notna().to_numpy()
        out[entry.name] = {name: float(spearmanr(features[name].to_numpy()[normals][keep], matched.to_numpy()[keep]).statistic)
                           for name in names}
    return out


def audit_path(fingerprint: str) -> Path:
    """Where the dataset audit of the dataset with this fingerprint is cached (config.AUDIT_DIR)."""
    return Path(config.AUDIT_DIR) / f"dataset-{fingerprint}.json"


def write_json_atomic(path: Path, payload: dict) -> Path:
    """Write JSON to a temporary file in the same folder, then os.replace it over `path` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(payload, file, indent=2, allow_nan=False)
            file.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def compute_dataset_audit(index: pd.DataFrame, *, models_dir: str | os.PathLike | None = None, seed: int = SAMPLE_SEED,
                          folds: int = DOMAIN_FOLDS, repeats: int = 5) -> dict[str, Any]:
    """The dataset audit (baselines, domain classifiers, statistic profiles) of an index with its validation split;
    `folds` and `repeats` are the domain classifier's (see `domain_classifier`)."""
    import cv2

    from core.imaging import decode_xray

    started = time.perf_counter()
    index = index.reset_index(drop=True)
    thumbs = {variant: {size: np.zeros((len(index), size, size), np.float32) for size in THUMBNAIL_SIZES}
              for variant in THUMBNAIL_VARIANTS}
    rows = []
    for i, path in enumerate(index["path"]):
        grey = np.round(np.clip(decode_xray(path).pixels, 0.0, 1.0) * 255).astype(np.uint8)
        for variant in THUMBNAIL_VARIANTS:
            prepared = thumbnail_variant(grey, variant).astype(np.float32) / 255.0
            for size in THUMBNAIL_SIZES:
                thumbs[variant][size][i] = cv2.resize(prepared, (size, size), interpolation=cv2.INTER_AREA)
        rows.append(film_statistics(grey))
        if (i + 1) % 1000 == 0:
            logger.info("Read %d / %d films", i + 1, len(index))
    features = pd.DataFrame(rows)
    labels, splits = index["label"].to_numpy(), index["split"].to_numpy()
    result: dict[str, Any] = {
        "version": AUDIT_VERSION,
        "computed": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "images_per_split": {str(k): int(v) for k, v in index["split"].value_counts().items()},
        "baselines": [row for variant in THUMBNAIL_VARIANTS
                      for row in thumbnail_baselines(thumbs[variant], labels, splits, variant=variant)],
        "domain": {},
    }
    held = np.isin(splits, ["val", "test"])
    groups = (index["split"] + "/" + index["patient"].astype(str)).to_numpy()
    for subset, mask in (("all", held), ("normal", held & (labels == 0))):
        if len(set(splits[mask])) < 2:
            continue
        found = domain_classifier(features[mask].reset_index(drop=True), splits[mask] == "test", groups[mask], seed=seed, folds=folds, repeats=repeats)
        top = [row["statistic"] for row in found["importance"][:TOP_FEATURES]]
        found["profile"] = statistic_profile(features, labels, splits, top)
        found["importance"] = found["importance"][:TOP_FEATURES]
        result["domain"][subset] = found
    names = sorted({row["statistic"] for found in result["domain"].values() for row in found["profile"]})
    result["score_correlations"] = score_correlations(features, index, names, models_dir) if names else {}
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def dataset_audit(root: str | os.PathLike | None = None, *, force: bool = False, models_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The dataset audit of `root` (default config.data_root()), read from its cached JSON unless missing or `force`."""
    from core import data

    root_path = Path(root if root is not None else config.data_root()).expanduser()
    fingerprint = data.dataset_fingerprint(root_path)
    path = audit_path(fingerprint)
    if not force:
        cached = load_dataset_audit(root_path)
        if cached is not None:
            return cached
    result = compute_dataset_audit(data.load_index(root_path), models_dir=models_dir)
    result["fingerprint"] = fingerprint
    write_json_atomic(path, result)
    logger.info("Dataset audit written to %s (%.0f s)", path, result["seconds"])
    return result


def load_dataset_audit(root: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The cached dataset audit of `root` (default config.data_root()), or None when it was never computed
    (or the folder cannot be read)."""
    from core import data

    root_path = Path(root if root is not None else config.data_root()).expanduser()
    try:
        path = audit_path(data.dataset_fingerprint(root_path))
    except (OSError, ValueError) as error:
        logger.info("No dataset audit for %s (%s)", root_path, error)
        return None
    if not path.is_file():
        return None
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        logger.warning("Ignoring an unreadable dataset audit %s (%s)", path, error)
        return None
    return found if found.get("version") == AUDIT_VERSION else None
