"""Duplicates by content hash, patients on both sides of a split, and split counts."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from core import config
from core.data._index import SPLITS, _map_chunked, logger

# Duplicates and leakage


def _content_hash(path: str, method: str) -> str:
    """BLAKE2b-128 of the file bytes ('bytes') or of the decoded grey pixels at 8 bits plus shape ('pixels')."""
    if method == "bytes":
        with open(path, "rb") as handle:
            return hashlib.blake2b(handle.read(), digest_size=16).hexdigest()
    from core.imaging import decode_xray, to_uint8

    pixels = to_uint8(decode_xray(path))
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(np.array(pixels.shape, dtype=np.int64).tobytes())
    hasher.update(pixels.tobytes())
    return hasher.hexdigest()


def content_hashes(index: pd.DataFrame, *, method: Literal["pixels", "bytes"] = "pixels", workers: int | None = None) -> pd.Series:
    """Content hash per row (str, index aligned with `index`); unreadable files get an empty string."""
    if method not in ("pixels", "bytes"):
        raise ValueError(f"method must be 'pixels' or 'bytes', got {method!r}.")

    def one(path: str) -> str:
        try:
            return _content_hash(path, method)
        except (OSError, ValueError) as exc:
            logger.warning("Cannot hash %s (%s); it is left out of duplicate detection", path, type(exc).__name__)
            return ""

    hashes = _map_chunked(one, index["path"].tolist(), workers=workers, min_chunk=256)
    return pd.Series(hashes, index=index.index, name="hash", dtype=object)


def find_duplicates(
    index: pd.DataFrame,
    *,
    method: Literal["pixels", "bytes"] = "pixels",
    hashes: pd.Series | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """Groups of images with identical content: one row per image in a group of two or more.

    Columns: group (int, 0..), hash, relpath, split, label, patient, group_size. 'pixels' hashes the decoded
    grey pixels rounded to 8 bits, so a lossless re-save in another format, or an RGB copy saved as grey,
    still matches; 'bytes' hashes the file bytes.
    """
    hashes = content_hashes(index, method=method, workers=workers) if hashes is None else hashes
    frame = index[["relpath", "split", "label", "patient"]].assign(hash=hashes.to_numpy())
    frame = frame[frame["hash"] != ""]
    sizes = frame.groupby("hash")["relpath"].transform("size")
    dups = frame[sizes > 1].copy()
    dups["group_size"] = sizes[sizes > 1].astype("int64")
    order = dups.groupby("hash")["relpath"].transform("min")
    dups = dups.assign(_first=order).sort_values(["_first", "relpath"]).drop(columns="_first")
    dups.insert(0, "group", pd.factorize(dups["hash"])[0].astype("int64"))
    return dups.reset_index(drop=True)[["group", "hash", "relpath", "split", "label", "patient", "group_size"]]


def patient_leakage(index: pd.DataFrame) -> pd.DataFrame:
    """Patients whose images are in more than one split: patient, splits ('train+test'), n_images, one count column per split."""
    counts = pd.crosstab(index["patient"], index["split"])
    counts = counts[[s for s in SPLITS if s in counts.columns]]
    crossing = counts[(counts > 0).sum(axis=1) > 1]
    result = pd.DataFrame(
        {
            "patient": crossing.index.astype(str),
            "splits": ["+".join(s for s in crossing.columns if row[s] > 0) for _, row in crossing.iterrows()],
            "n_images": crossing.sum(axis=1).to_numpy().astype("int64"),
        }
    )
    for split in crossing.columns:
        result[f"n_{split}"] = crossing[split].to_numpy().astype("int64")
    return result.reset_index(drop=True)


@dataclass(frozen=True)
class LeakageReport:
    """What could leak between splits: patients and identical images found in more than one split."""

    crossing_patients: pd.DataFrame
    duplicates: pd.DataFrame
    crossing_duplicate_groups: pd.DataFrame
    conflicting_label_groups: pd.DataFrame

    @property
    def n_duplicate_groups(self) -> int:
        """Number of groups of identical images."""
        return int(self.duplicates["group"].nunique()) if not self.duplicates.empty else 0

    def crossing_pairs(self) -> dict[str, int]:
        """Number of crossing patients per pair of splits, e.g. {'train+test': 170}."""
        return {k: int(v) for k, v in self.crossing_patients["splits"].value_counts().sort_index().items()}

    def summary(self) -> dict[str, int]:
        """Counts for display: duplicate groups/images, groups crossing splits, crossing patients."""
        return {
            "duplicate_groups": self.n_duplicate_groups,
            "duplicate_images": int(len(self.duplicates)),
            "duplicate_groups_crossing_splits": int(self.crossing_duplicate_groups["group"].nunique()) if not self.crossing_duplicate_groups.empty else 0,
            "duplicate_groups_with_conflicting_labels": int(self.conflicting_label_groups["group"].nunique()) if not self.conflicting_label_groups.empty else 0,
            "patients_crossing_splits": int(len(self.crossing_patients)),
            "patients_crossing_train_val": int(sum("train" in s and "val" in s for s in self.crossing_patients["splits"])),
        }


def leakage_report(index: pd.DataFrame, duplicates: pd.DataFrame | None = None) -> LeakageReport:
    """Patients in more than one split, and duplicate groups (from `find_duplicates`) spanning splits or labels."""
    duplicates = find_duplicates(index) if duplicates is None else duplicates
    # The duplicates frame may predate the validation split: take splits from the current index.
    current = dict(zip(index["relpath"], index["split"]))
    duplicates = duplicates.assign(split=duplicates["relpath"].map(current)).dropna(subset=["split"])
    n_splits = duplicates.groupby("group")["split"].transform("nunique")
    n_labels = duplicates.groupby("group")["label"].transform("nunique")
    return LeakageReport(
        crossing_patients=patient_leakage(index),
        duplicates=duplicates.reset_index(drop=True),
        crossing_duplicate_groups=duplicates[n_splits > 1].reset_index(drop=True),
        conflicting_label_groups=duplicates[n_labels > 1].reset_index(drop=True),
    )


def split_counts(index: pd.DataFrame, *, by: str = "split") -> pd.DataFrame:
    """Images per `by` (split or folder_split) and class: rows in SPLITS order, columns CLASS_NAMES plus total."""
    table = pd.crosstab(index[by], index["label_name"]).reindex(columns=list(config.CLASS_NAMES), fill_value=0)
    table = table.reindex([s for s in SPLITS if s in table.index])
    table["total"] = table.sum(axis=1)
    table.index.name = by
    table.columns.name = None
    return table.astype("int64")
