"""Reading trained models from models/<name>/ (see docs/ARCHITECTURE.md, "Model artifacts").

`list_models` never raises for one bad folder: a folder with a missing or unreadable file is returned
with ``available=False`` and a `reason` a person can act on, and the others are still listed.
Keras is imported only by `load_keras_model`.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import math
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core import config

logger = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
CARD_FILE = "card.json"
CARD_MD_FILE = "card.md"
HISTORY_FILE = "history.csv"
PREDICTIONS_FILE = "predictions.csv"

REQUIRED_FILES = (MODEL_FILE, CARD_FILE, PREDICTIONS_FILE)
"""Files without which a model is listed as unavailable; history.csv and card.md are optional (noted)."""

PREDICTION_COLUMNS = ("path", "split", "label", "score")
KNOWN_SPLITS = ("train", "val", "test")
REQUIRED_SPLITS = ("val", "test")


class ModelUnavailableError(ValueError):
    """A model folder or one of its files cannot be used; the message says which and what to do."""


@dataclass(frozen=True)
class ModelEntry:
    """One folder of models/: its card when readable, or why it cannot be used."""

    name: str
    path: Path
    available: bool
    reason: str = ""
    card: dict = field(default_factory=dict, repr=False, compare=False)
    notes: tuple[str, ...] = ()

    @property
    def display_name(self) -> str:
        """Human name from the card, else the folder name."""
        return str(self.card.get("display_name") or self.card.get("name") or self.name)

    @property
    def threshold(self) -> float | None:
        """The operating threshold chosen on validation (card.json threshold.value), if any."""
        value = (self.card.get("threshold") or {}).get("value")
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    @property
    def threshold_rule(self) -> str:
        """How the card's threshold was chosen, e.g. 'max sensitivity with specificity >= 0.85'."""
        return str((self.card.get("threshold") or {}).get("rule") or "not recorded")

    @property
    def threshold_split(self) -> str:
        """The split the card's threshold was chosen on (should be 'val')."""
        return str((self.card.get("threshold") or {}).get("chosen_on") or "val")

    @property
    def stamp(self) -> float:
        """Latest modification time (s) of card.json and predictions.csv: a cache key that changes on retraining."""
        files = (self.path / CARD_FILE, self.path / PREDICTIONS_FILE)
        return max((f.stat().st_mtime for f in files if f.exists()), default=0.0)

    def file(self, name: str) -> Path:
        """Path of one of the model's files (may not exist)."""
        return self.path / name


# --------------------------------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------------------------------
def list_models(models_dir: Path | str | None = None) -> list[ModelEntry]:
    """Every model folder under `models_dir` (default config.models_dir()), sorted by name, bad ones included."""
    root = Path(models_dir) if models_dir is not None else config.models_dir()
    if not root.is_dir():
        logger.info("Models folder %s does not exist; no models listed.", root)
        return []
    entries = [inspect_model(path) for path in sorted(root.iterdir()) if path.is_dir() and not path.name.startswith(".")]
    for entry in entries:
        if not entry.available:
            logger.warning("Model %s unavailable: %s", entry.name, entry.reason)
    return entries


def models_signature(models_dir: Path | str | None = None) -> tuple[tuple[str, int, int], ...]:
    """(relative path, mtime in ns, size) of every file in the listed model folders: a cheap cache key (stat only)."""
    root = Path(models_dir) if models_dir is not None else config.models_dir()
    if not root.is_dir():
        return ()
    signature = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for file in sorted(folder.iterdir()):
            stat = file.stat()
            signature.append((f"{folder.name}/{file.name}", stat.st_mtime_ns, stat.st_size))
    return tuple(signature)


def get_model(name: str, models_dir: Path | str | None = None) -> ModelEntry:
    """The entry of the model folder `name` (available or not); raise if there is no such folder."""
    root = Path(models_dir) if models_dir is not None else config.models_dir()
    path = root / name
    if name.startswith(".") or not path.is_dir():
        raise ModelUnavailableError(f"There is no model named {name!r} in {root}; train it with train.py --name {name}.")
    return inspect_model(path)


def inspect_model(path: Path | str) -> ModelEntry:
    """Check one model folder's files (model archive, card, predictions) and build its entry.

    The check is kept per process while none of the folder's files changes (stat only), so listing the models again
    costs no parsing; a rewritten, added or removed file is checked afresh."""
    path = Path(path)
    return _inspect_model(path, _files_stamp(path) if path.is_dir() else ())


@functools.lru_cache(maxsize=256)
def _inspect_model(path: Path, stamp: tuple) -> ModelEntry:
    """inspect_model for one state of the folder's files (`stamp`)."""
    name = path.name
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        return ModelEntry(name, path, False, f"missing {', '.join(missing)} — retrain or restore the folder")
    card: dict = {}
    try:
        card = load_card(path)
        _check_keras_archive(path / MODEL_FILE)
        load_predictions(path)
    except ModelUnavailableError as exc:
        return ModelEntry(name, path, False, str(exc), card=card)
    notes = []
    if not (path / HISTORY_FILE).is_file():
        notes.append("no training history (history.csv)")
    if not (path / CARD_MD_FILE).is_file():
        notes.append("no card.md")
    return ModelEntry(name, path, True, "", card=card, notes=tuple(notes))


def _folder(entry: ModelEntry | Path | str) -> Path:
    """The folder of an entry, or a path given directly."""
    return entry.path if isinstance(entry, ModelEntry) else Path(entry)


def _check_keras_archive(path: Path) -> None:
    """Cheap integrity check of a .keras file (a zip with config.json); catches truncated copies."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelUnavailableError(
            f"{MODEL_FILE} is damaged or truncated ({exc}); copy it again or retrain the model."
        ) from exc
    if "config.json" not in names:
        raise ModelUnavailableError(f"{MODEL_FILE} is not a Keras 3 model archive (no config.json); re-save it with Keras 3.")


# --------------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------------
def load_card(entry: ModelEntry | Path | str) -> dict:
    """The parsed card.json (a dict with at least a threshold section); raise ModelUnavailableError if unusable."""
    path = _folder(entry) / CARD_FILE
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelUnavailableError(f"{CARD_FILE} is missing in {path.parent}; retrain or restore it.") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelUnavailableError(f"{CARD_FILE} is not valid JSON ({exc}); fix or regenerate it with train.py.") from exc
    if not isinstance(card, dict):
        raise ModelUnavailableError(f"{CARD_FILE} must hold a JSON object, not {type(card).__name__}.")
    threshold = card.get("threshold")
    if not isinstance(threshold, dict) or not isinstance(threshold.get("value"), (int, float)):
        raise ModelUnavailableError(f"{CARD_FILE} has no numeric threshold.value; regenerate the card with train.py.")
    return card


def load_card_markdown(entry: ModelEntry | Path | str) -> str | None:
    """The human-readable card.md for showing, without its HTML comments (section markers), or None when absent."""
    path = _folder(entry) / CARD_MD_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return re.sub(r"[ \t]*<!--.*?-->[ \t]*\n?", "", text, flags=re.DOTALL)


def load_predictions(entry: ModelEntry | Path | str, split: str | None = None) -> pd.DataFrame:
    """Stored scores: columns path (str), split (str), label (int 0/1), score (float in [0, 1]); one split if given."""
    path = _folder(entry) / PREDICTIONS_FILE
    try:
        frame = pd.read_csv(path, dtype={"path": str, "split": str})
    except FileNotFoundError as exc:
        raise ModelUnavailableError(f"{PREDICTIONS_FILE} is missing in {path.parent}; rerun the evaluation.") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise ModelUnavailableError(f"{PREDICTIONS_FILE} cannot be read ({exc}); regenerate it with train.py.") from exc
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise ModelUnavailableError(
            f"{PREDICTIONS_FILE} lacks column(s) {', '.join(missing)}; expected {','.join(PREDICTION_COLUMNS)}."
        )
    frame = frame[list(PREDICTION_COLUMNS)]
    label = pd.to_numeric(frame["label"], errors="coerce")
    score = pd.to_numeric(frame["score"], errors="coerce")
    if label.isna().any() or not label.isin((0, 1)).all():
        raise ModelUnavailableError(f"{PREDICTIONS_FILE}: label must be 0 (NORMAL) or 1 (PNEUMONIA) on every row.")
    if score.isna().any() or not np.isfinite(score).all() or score.min() < 0.0 or score.max() > 1.0:
        raise ModelUnavailableError(f"{PREDICTIONS_FILE}: score must be a probability in [0, 1] on every row.")
    unknown = sorted(set(frame["split"]) - set(KNOWN_SPLITS))
    if unknown:
        raise ModelUnavailableError(f"{PREDICTIONS_FILE}: unknown split(s) {unknown}; use {', '.join(KNOWN_SPLITS)}.")
    absent = [s for s in REQUIRED_SPLITS if not (frame["split"] == s).any()]
    if absent:
        raise ModelUnavailableError(f"{PREDICTIONS_FILE} has no rows for split(s) {', '.join(absent)}; rerun the evaluation.")
    frame = frame.assign(label=label.astype(np.int8), score=score.astype(np.float64))
    for name in REQUIRED_SPLITS:
        classes = frame.loc[frame["split"] == name, "label"].nunique()
        if classes < 2:
            raise ModelUnavailableError(
                f"{PREDICTIONS_FILE}: the {name} split holds one class only; thresholds, AUC and CIs need both "
                "NORMAL and PNEUMONIA images. Re-run the evaluation on the full split."
            )
    if split is not None:
        if split not in KNOWN_SPLITS:
            raise ValueError(f"split must be one of {', '.join(KNOWN_SPLITS)}; got {split!r}.")
        frame = frame[frame["split"] == split].reset_index(drop=True)
    return frame


def load_history(entry: ModelEntry | Path | str) -> pd.DataFrame | None:
    """Per-epoch training history (Keras CSVLogger columns, plus `stage`), or None when absent or unreadable."""
    path = _folder(entry) / HISTORY_FILE
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        logger.warning("Cannot read %s: %s", path, exc)
        return None
    if "epoch" not in frame.columns:
        frame.insert(0, "epoch", np.arange(len(frame)))
    return frame


def load_keras_model(entry: ModelEntry | Path | str):  # -> keras.Model (lazy import keeps TF out of pages)
    """Load model.keras with safe_mode=True (no arbitrary code); raise ModelUnavailableError if unreadable."""
    folder = _folder(entry)
    path = folder / MODEL_FILE
    if not path.is_file():
        raise ModelUnavailableError(f"{MODEL_FILE} is missing in {folder}; retrain the model or restore the file.")
    _check_keras_archive(path)
    config.quiet_tensorflow()
    # Custom layers of our own builders register themselves on import (keras.saving.register_keras_serializable).
    for module in ("core.models.zoo", "core.models.layers"):
        if importlib.util.find_spec(module) is None:
            continue
        try:
            importlib.import_module(module)
        except Exception as exc:  # a broken builder module must not hide a loadable standard model
            logger.warning("%s could not be imported (%s); loading with Keras's built-in layers only.", module, exc)
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types (ValueError, OSError, TypeError...) for bad archives.
        first_line = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        if len(first_line) > 300:
            first_line = first_line[:300] + "…"
        logger.info("Loading %s failed: %s", path, exc)  # the whole Keras text, for whoever reads the log
        raise ModelUnavailableError(
            f"{MODEL_FILE} in {folder.name} cannot be loaded ({type(exc).__name__}: {first_line}); "
            "retrain it with train.py or restore the file."
        ) from exc


# --------------------------------------------------------------------------------------------------
# Summaries for the comparison page (stored predictions only, no Keras)
# --------------------------------------------------------------------------------------------------
COMPARISON_METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "brier")
"""Metrics of the comparison table, in display order; lower is better only for `brier`."""


def describe_input(card: dict) -> str:
    """'224×224×3' from a card's input section ('?' for missing parts)."""
    spec = card.get("input") or {}
    return "×".join(str(spec.get(k, "?")) for k in ("height", "width", "channels"))


def model_summary(
    entry: ModelEntry, split: str, *, n_resamples: int = config.BOOTSTRAP_RESAMPLES, seed: int = 0
) -> dict:
    """One comparison row: card facts plus every metric (with CI) on `split` at the card's validation threshold.

    The metrics are recomputed from predictions.csv (the source of truth) with metrics.summarize_with_ci, so they
    always agree with the curves drawn from the same file. Keys: model, display_name, architecture, input,
    weights_source, parameters, training_seconds, threshold, threshold_rule, threshold_split, split, images,
    and for each metric m in metrics.METRIC_KEYS: m, m_ci_low, m_ci_high.
    """
    if not entry.available:
        raise ModelUnavailableError(f"Model {entry.name} is unavailable: {entry.reason}")
    return dict(_model_summary(entry, split, n_resamples, seed, _files_stamp(entry.path)))


def _files_stamp(folder: Path | str) -> tuple[tuple[str, int, int], ...]:
    """(name, mtime in ns, size) of every file in a model folder: changes whenever one of them is rewritten."""
    return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in sorted(Path(folder).iterdir()) if f.is_file())


@functools.lru_cache(maxsize=64)
def _model_summary(entry: ModelEntry, split: str, n_resamples: int, seed: int, stamp: tuple) -> dict:
    """model_summary, kept per process for the same files (a server computes each bootstrap once, at warm-up)."""
    from core.evaluation import metrics

    frame = load_predictions(entry, split=split)
    threshold = entry.threshold
    summary = metrics.summarize_with_ci(frame["label"], frame["score"], threshold, n_resamples=n_resamples, seed=seed)
    card = entry.card
    row = {
        "model": entry.name,
        "display_name": entry.display_name,
        "architecture": card.get("architecture", "?"),
        "input": describe_input(card),
        "weights_source": card.get("weights_source", "not recorded"),
        "parameters": (card.get("parameters") or {}).get("total"),
        "training_seconds": (card.get("training") or {}).get("seconds"),
        "threshold": threshold,
        "threshold_rule": entry.threshold_rule,
        "threshold_split": entry.threshold_split,
        "split": split,
        "images": len(frame),
    }
    for key, entry_ci in summary.items():
        row[key] = entry_ci["value"]
        row[f"{key}_ci_low"] = entry_ci["ci_low"]
        row[f"{key}_ci_high"] = entry_ci["ci_high"]
    return row


def best_models(frame: pd.DataFrame, columns: tuple[str, ...] = COMPARISON_METRICS) -> dict[str, list[str]]:
    """{metric: [model names with the best value]} of a comparison frame (lowest for brier, else highest)."""
    best: dict[str, list[str]] = {}
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().any():
            target = values.min() if column == "brier" else values.max()
            best[column] = frame.loc[np.isclose(values, target), "model"].tolist()
    return best
