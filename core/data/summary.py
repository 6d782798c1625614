"""Dataset summary for the exploration page: counts, patients, image sizes, intensity statistics, leakage.

`summarize(root)` computes everything once and stores it under config.CACHE_DIR/summary, keyed by the
dataset fingerprint (`core.data.dataset_fingerprint`) and the summary parameters, so it is recomputed only
when files are added, removed or change size. Tables are stored as JSON and arrays as .npz
(`allow_pickle=False`): nothing executable is read back from the cache.

Intensity statistics use a seeded sample of `sample_per_class` images per class taken from every split,
each decoded with `core.imaging.decode_xray` (grey in [0, 1]) and resized to `image_side` px for the mean image.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from core import config, data

logger = logging.getLogger(__name__)

SAMPLE_PER_CLASS = 200
MEAN_IMAGE_SIDE = 128
HISTOGRAM_BINS = 64
_SUMMARY_VERSION = "1"

_FRAMES = (
    "folder_counts", "split_counts", "subtype_counts", "patient_counts", "size_counts", "image_stats",
    "histograms", "duplicates", "crossing_patients", "crossing_duplicates",
)


@dataclass
class DatasetSummary:
    """Everything the dataset page shows, computed from one index of one folder."""

    fingerprint: str
    root: str
    n_images: int
    n_patients: int
    validation_fraction: float
    split_seed: int
    sample_per_class: int
    folder_counts: pd.DataFrame      # images per folder split (train/val/test as on disk) x class, + total
    split_counts: pd.DataFrame       # images per split after the validation split x class, + total
    subtype_counts: pd.DataFrame     # images per split x subtype (normal / bacteria / virus / unknown)
    patient_counts: pd.DataFrame     # patients per split x class, + total
    size_counts: pd.DataFrame        # width, height, count (one row per distinct size)
    image_stats: pd.DataFrame        # sampled images: relpath, label_name, split, mean, std, p05, p95
    histograms: pd.DataFrame         # bin_left, bin_right, then one density column per class (sums to 1)
    mean_images: dict[str, np.ndarray]  # class name -> float32 (side, side) mean of the sampled images
    duplicates: pd.DataFrame         # core.data.find_duplicates on pixels, splits after the validation split
    crossing_patients: pd.DataFrame  # core.data.patient_leakage after the validation split
    crossing_duplicates: pd.DataFrame  # duplicate groups found in more than one split
    leakage: dict[str, int]          # core.data.LeakageReport.summary()
    seconds: float                   # time it took to compute
    from_cache: bool = field(default=False)

    def to_files(self, folder: Path) -> None:
        """Write as summary.json (scalars and tables) plus mean_images.npz into `folder` (created)."""
        folder.mkdir(parents=True, exist_ok=True)
        payload: dict[str, Any] = {
            key: getattr(self, key)
            for key in ("fingerprint", "root", "n_images", "n_patients", "validation_fraction", "split_seed",
                        "sample_per_class", "leakage", "seconds")
        }
        payload["frames"] = {name: _frame_to_json(getattr(self, name)) for name in _FRAMES}
        (folder / "summary.json").write_text(json.dumps(payload, default=_json_default))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **{name: image for name, image in self.mean_images.items()})
        (folder / "mean_images.npz").write_bytes(buffer.getvalue())

    @classmethod
    def from_files(cls, folder: Path) -> "DatasetSummary":
        """Read what `to_files` wrote (raises OSError / ValueError / KeyError when incomplete)."""
        payload = json.loads((folder / "summary.json").read_text())
        frames = {name: _frame_from_json(value) for name, value in payload.pop("frames").items()}
        with np.load(folder / "mean_images.npz", allow_pickle=False) as arrays:
            mean_images = {name: arrays[name].astype(np.float32) for name in arrays.files}
        return cls(**payload, **frames, mean_images=mean_images, from_cache=True)


def _json_default(value: Any) -> Any:
    """JSON encoding for numpy scalars."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Cannot store {type(value).__name__} in the summary cache")


def _frame_to_json(frame: pd.DataFrame) -> dict[str, Any]:
    """A DataFrame as plain JSON (index kept as a column so dtypes survive)."""
    named = frame.reset_index() if frame.index.name is not None else frame.reset_index(drop=True)
    return {
        "index": frame.index.name,
        "columns": [str(c) for c in named.columns],
        "dtypes": [str(t) for t in named.dtypes],
        "data": named.astype(object).where(named.notna(), None).to_numpy().tolist(),
    }


def _frame_from_json(value: dict[str, Any]) -> pd.DataFrame:
    """Inverse of `_frame_to_json`."""
    frame = pd.DataFrame(value["data"], columns=value["columns"])
    for column, dtype in zip(value["columns"], value["dtypes"]):
        if dtype.startswith(("int", "float", "bool")):
            frame[column] = frame[column].astype(dtype)
        else:
            frame[column] = frame[column].astype(str)
    frame.columns.name = None
    return frame.set_index(value["index"]) if value["index"] is not None else frame


# --------------------------------------------------------------------------------------------------
# Pieces (pure functions over an index)


def subtype_counts(index: pd.DataFrame) -> pd.DataFrame:
    """Images per split x subtype (columns in core.data.SUBTYPES order, empty ones dropped)."""
    table = pd.crosstab(index["split"], index["subtype"])
    table = table.reindex(index=[s for s in data.SPLITS if s in table.index], columns=[s for s in data.SUBTYPES if s in table.columns])
    table.index.name = "split"
    table.columns.name = None
    return table.astype("int64")


def patient_counts(index: pd.DataFrame) -> pd.DataFrame:
    """Distinct patients per split x class, plus the total of distinct patients per split."""
    table = index.groupby(["split", "label_name"])["patient"].nunique().unstack(fill_value=0)
    table = table.reindex(index=[s for s in data.SPLITS if s in table.index], columns=list(config.CLASS_NAMES), fill_value=0)
    table["total"] = index.groupby("split")["patient"].nunique().reindex(table.index)
    table.index.name = "split"
    table.columns.name = None
    return table.astype("int64")


def size_counts(index: pd.DataFrame) -> pd.DataFrame:
    """Distinct (width, height) pairs with their image counts, most common first."""
    counts = index.groupby(["width", "height"]).size().rename("count").reset_index()
    return counts.sort_values(["count", "width", "height"], ascending=[False, True, True]).reset_index(drop=True).astype("int64")


def sample_rows(
    index: pd.DataFrame,
    *,
    n: int,
    seed: int,
    splits: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    subtypes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Up to `n` random rows (seeded) among those matching the filters; None means no filter."""
    mask = np.ones(len(index), dtype=bool)
    for column, allowed in (("split", splits), ("label_name", classes), ("subtype", subtypes)):
        if allowed is not None:
            mask &= index[column].isin(list(allowed)).to_numpy()
    chosen = index[mask]
    if len(chosen) <= n:
        return chosen.sample(frac=1.0, random_state=seed) if len(chosen) else chosen
    return chosen.sample(n=n, random_state=seed)


def intensity_statistics(
    index: pd.DataFrame,
    *,
    sample_per_class: int = SAMPLE_PER_CLASS,
    seed: int = config.SPLIT_SEED,
    image_side: int = MEAN_IMAGE_SIDE,
    bins: int = HISTOGRAM_BINS,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """(per-image stats, per-class intensity histograms, per-class mean images) over a seeded sample.

    Per-image stats: relpath, label_name, split, mean, std, p05, p95 of the grey values in [0, 1].
    Histograms: `bins` equal bins over [0, 1], pixel densities summing to 1 per class.
    Mean images: float32 (image_side, image_side), each image resized (area averaging) before averaging.
    """
    import cv2

    from core.imaging import InvalidImageError, decode_xray

    edges = np.linspace(0.0, 1.0, bins + 1)
    stats_rows: list[dict[str, Any]] = []
    histograms: dict[str, np.ndarray] = {}
    mean_images: dict[str, np.ndarray] = {}
    for class_name in config.CLASS_NAMES:
        rows = sample_rows(index, n=sample_per_class, seed=seed, classes=[class_name])
        counts = np.zeros(bins, dtype=np.float64)
        total = np.zeros((image_side, image_side), dtype=np.float64)
        used = 0
        for row in rows.itertuples(index=False):
            try:
                pixels = decode_xray(row.path).pixels
            except InvalidImageError as exc:
                logger.warning("Skipping %s in the intensity statistics: %s", row.relpath, exc)
                continue
            counts += np.histogram(pixels, bins=edges)[0]
            total += cv2.resize(pixels, (image_side, image_side), interpolation=cv2.INTER_AREA)
            p05, p95 = np.percentile(pixels, [5, 95])
            stats_rows.append(
                {"relpath": row.relpath, "label_name": class_name, "split": row.split, "mean": float(pixels.mean()),
                 "std": float(pixels.std()), "p05": float(p05), "p95": float(p95)}
            )
            used += 1
        if used:
            histograms[class_name] = counts / counts.sum()
            mean_images[class_name] = (total / used).astype(np.float32)
    stats = pd.DataFrame(stats_rows, columns=["relpath", "label_name", "split", "mean", "std", "p05", "p95"])
    hist = pd.DataFrame({"bin_left": edges[:-1], "bin_right": edges[1:], **histograms})
    return stats, hist, mean_images


# --------------------------------------------------------------------------------------------------
# The cached summary


def _cache_folder(fingerprint: str, fraction: float, seed: int, sample_per_class: int) -> Path:
    """Where the summary for these parameters lives."""
    return config.CACHE_DIR / "summary" / f"{fingerprint}-v{_SUMMARY_VERSION}-val{fraction:g}-seed{seed}-n{sample_per_class}"


def summarize(
    root: str | os.PathLike | None = None,
    *,
    fraction: float = config.VALIDATION_FRACTION,
    seed: int = config.SPLIT_SEED,
    sample_per_class: int = SAMPLE_PER_CLASS,
    use_cache: bool = True,
) -> DatasetSummary:
    """The summary of the dataset at `root` (default config.data_root()), from the cache when the folder is unchanged."""
    root_path = Path(root if root is not None else config.data_root()).expanduser()
    fingerprint = data.dataset_fingerprint(root_path)
    folder = _cache_folder(fingerprint, fraction, seed, sample_per_class)
    if use_cache and (folder / "summary.json").is_file():
        try:
            summary = DatasetSummary.from_files(folder)
            summary.root = str(root_path.resolve())
            return summary
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("Ignoring an unreadable summary cache in %s (%s)", folder, exc)
    summary = compute_summary(
        data.load_index(root_path, fraction=fraction, seed=seed, use_cache=use_cache),
        fingerprint=fingerprint,
        root=str(root_path.resolve()),
        fraction=fraction,
        seed=seed,
        sample_per_class=sample_per_class,
    )
    if use_cache:
        try:
            tmp = folder.with_name(f".tmp-{folder.name}-{os.getpid()}")
            summary.to_files(tmp)
            _replace_folder(tmp, folder)
        except OSError as exc:
            logger.warning("Could not cache the dataset summary in %s (%s)", folder, exc)
    return summary


def _replace_folder(tmp: Path, folder: Path) -> None:
    """Move a freshly written cache folder into place (replacing a stale one)."""
    import shutil

    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def compute_summary(
    index: pd.DataFrame,
    *,
    fingerprint: str = "",
    root: str = "",
    fraction: float = config.VALIDATION_FRACTION,
    seed: int = config.SPLIT_SEED,
    sample_per_class: int = SAMPLE_PER_CLASS,
) -> DatasetSummary:
    """Compute a DatasetSummary from an index that already has its validation split (no caching)."""
    started = time.perf_counter()
    duplicates = data.find_duplicates(index, method="pixels")
    report = data.leakage_report(index, duplicates)
    stats, hist, mean_images = intensity_statistics(index, sample_per_class=sample_per_class, seed=seed)
    summary = DatasetSummary(
        fingerprint=fingerprint,
        root=root,
        n_images=int(len(index)),
        n_patients=int(index["patient"].nunique()),
        validation_fraction=float(fraction),
        split_seed=int(seed),
        sample_per_class=int(sample_per_class),
        folder_counts=data.split_counts(index, by="folder_split"),
        split_counts=data.split_counts(index),
        subtype_counts=subtype_counts(index),
        patient_counts=patient_counts(index),
        size_counts=size_counts(index),
        image_stats=stats,
        histograms=hist,
        mean_images=mean_images,
        duplicates=report.duplicates,
        crossing_patients=report.crossing_patients,
        crossing_duplicates=report.crossing_duplicate_groups,
        leakage=report.summary(),
        seconds=0.0,
    )
    summary.seconds = round(time.perf_counter() - started, 3)
    logger.info("Summarised %d images in %.1f s", len(index), summary.seconds)
    return summary
