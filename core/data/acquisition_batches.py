"""Acquisition batches from the file-name series: which validation films were taken nearest to the official test films.

The Kermany films are named in series, numbered in the order patients came: healthy children as ``IM-<n>-…`` and
``NORMAL2-IM-<n>-…``, children with pneumonia as ``person<n>_bacteria_…`` / ``person<n>_virus_…``. The official
test set is not a random slice: it holds the *lowest* numbers of each series (``IM-`` 1–111 against 115–766 in
``train``; ``NORMAL2-IM-`` 7–381 against 383–1423; ``person`` median 118 against 726). A random patient-grouped
validation slice of ``train`` therefore looks less like the test films than the validation films with the lowest
numbers of their series, which were acquired next to them.

:func:`series_of` and :func:`series_number` read a film's series and patient number from its file name;
:func:`with_acquisition_batches` labels every film ``early`` (the lowest ``EARLY_FRACTION`` of its series' numbers
in the pool it is given) or ``late``; :func:`early_validation` is the selection split of rule 3 in
``docs/PREREGISTRATION.md``. The cut is a property of a film's number, so a patient (one number) is never on both
sides, and it is deterministic.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

EARLY_FRACTION = 1 / 3
SERIES = ("IM", "NORMAL2-IM", "person")
EARLY = "early"
LATE = "late"

_PATTERNS = (
    ("NORMAL2-IM", re.compile(r"^NORMAL2-IM-(\d+)-")),
    ("IM", re.compile(r"^IM-(\d+)-")),
    ("person", re.compile(r"^person(\d+)_")),
)


def series_of(relpath: str) -> str | None:
    """The file-name series of a film ('IM', 'NORMAL2-IM' or 'person'), or None for a name outside them."""
    name = PurePosixPath(str(relpath)).name
    for series, pattern in _PATTERNS:
        if pattern.match(name):
            return series
    return None


def series_number(relpath: str) -> int | None:
    """The patient number in the film's series (``IM-0117-0001.jpeg`` -> 117), or None outside the series."""
    name = PurePosixPath(str(relpath)).name
    for _, pattern in _PATTERNS:
        match = pattern.match(name)
        if match:
            return int(match.group(1))
    return None


def with_acquisition_batches(frame: pd.DataFrame, *, early_fraction: float = EARLY_FRACTION, path_column: str = "relpath") -> pd.DataFrame:
    """``frame`` with columns ``series``, ``series_number`` and ``batch`` ('early' / 'late' / None outside the series).

    A film is 'early' when its number is at most the ``early_fraction`` quantile of the numbers of its series in
    ``frame`` (lower interpolation, so the cut is an existing number). Returns a new DataFrame.
    """
    if not 0 < early_fraction < 1:
        raise ValueError(f"early_fraction must be between 0 and 1, got {early_fraction}.")
    out = frame.copy()
    out["series"] = [series_of(p) for p in out[path_column]]
    out["series_number"] = pd.array([series_number(p) for p in out[path_column]], dtype="Int64")
    batch = pd.Series([None] * len(out), index=out.index, dtype=object)
    for series in SERIES:
        rows = out["series"] == series
        if not rows.any():
            continue
        numbers = out.loc[rows, "series_number"].astype(int).to_numpy()
        cut = np.quantile(np.unique(numbers), early_fraction, method="lower")
        batch[rows] = np.where(numbers <= cut, EARLY, LATE)
    out["batch"] = batch
    return out


def early_validation(predictions: pd.DataFrame, *, path_column: str = "path") -> pd.DataFrame:
    """The rows of a predictions frame (split, label, score, path) that are validation films of the early batch."""
    val = predictions[predictions["split"] == "val"] if "split" in predictions else predictions
    labelled = with_acquisition_batches(val, path_column=path_column)
    return labelled[labelled["batch"] == EARLY].drop(columns=["series", "series_number", "batch"])
