"""The patient-grouped validation split carved from train (duplicates kept on one side)."""
from __future__ import annotations

import os
from collections import defaultdict

import numpy as np
import pandas as pd

from core import config
from core.data._index import (
    _existing_root,
    _grouped_holdout,
    _index_and_key,
    _layout_and_key,
    _read_cached_index,
    _write_cached_index,
    index_dataset,
    logger,
)

# Patient-grouped splits



def _merge_groups(patients: np.ndarray, relpaths: np.ndarray, duplicates: pd.DataFrame | None) -> np.ndarray:
    """Patient ids, with patients that share an identical image merged into one group (union-find)."""
    if duplicates is None or duplicates.empty:
        return patients
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    group_of = dict(zip(duplicates["relpath"], duplicates["group"]))
    members: dict[int, list[str]] = defaultdict(list)
    for patient, relpath in zip(patients, relpaths):
        if relpath in group_of:
            members[group_of[relpath]].append(patient)
    for group_patients in members.values():
        for other in group_patients[1:]:
            parent[find(other)] = find(group_patients[0])
    return np.array([find(p) for p in patients], dtype=object)


def with_validation_split(
    index: pd.DataFrame,
    *,
    fraction: float = config.VALIDATION_FRACTION,
    seed: int = config.SPLIT_SEED,
    duplicates: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Carve a patient-grouped, label-stratified validation split (`fraction` of the patients) out of train.

    The pool is every row whose split is "train" or "val" (so Kaggle's official val/ folder is folded in);
    "test" rows are untouched. With `duplicates` (from `find_duplicates`), patients sharing an identical image
    are kept together. Deterministic for a given index, fraction and seed. Returns a new DataFrame.
    """
    result = index.copy()
    pool = result["split"].isin(["train", "val"]).to_numpy()
    if not pool.any():
        logger.warning("No training images to carve a validation split from; the index is returned unchanged")
        return result
    groups = _merge_groups(
        result.loc[pool, "patient"].astype(str).to_numpy(), result.loc[pool, "relpath"].to_numpy(), duplicates
    )
    held = _grouped_holdout(result.loc[pool, "label"].to_numpy(), groups, fraction, seed)
    result.loc[pool, "split"] = np.where(held, "val", "train")
    return result


def load_index(
    root: str | os.PathLike | None = None,
    *,
    fraction: float = config.VALIDATION_FRACTION,
    seed: int = config.SPLIT_SEED,
    use_cache: bool = True,
) -> pd.DataFrame:
    """`index_dataset(root)` then `with_validation_split`; `root` defaults to config.data_root().

    The split index is cached too (keyed by the files, `fraction` and `seed`), so a warm call needs no scikit-learn.
    """
    root = _existing_root(root if root is not None else config.data_root())
    if not use_cache:
        return with_validation_split(index_dataset(root, use_cache=False), fraction=fraction, seed=seed)
    _, key = _layout_and_key(root, "auto")
    cache_file = config.CACHE_DIR / "index" / f"{key}-val{fraction:g}-seed{seed}.csv"
    cached = _read_cached_index(cache_file, root)
    if cached is not None:
        return cached
    index, _ = _index_and_key(root, "auto", use_cache=True, key=key)
    result = with_validation_split(index, fraction=fraction, seed=seed)
    _write_cached_index(cache_file, result)
    return result
