"""core.data.acquisition_batches: file-name series, the early batch (rule 3's selection split), its grouping."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.data import acquisition_batches as batches


@pytest.mark.parametrize(("name", "series", "number"), [
    ("train/NORMAL/IM-0117-0001.jpeg", "IM", 117),
    ("train/NORMAL/IM-0117-0001-0002.jpeg", "IM", 117),
    ("train/NORMAL/NORMAL2-IM-0383-0001.jpeg", "NORMAL2-IM", 383),
    ("train/PNEUMONIA/person1945_bacteria_4872.jpeg", "person", 1945),
    ("test/PNEUMONIA/person3_virus_15.jpeg", "person", 3),
    ("nih/00000001_000.png", None, None),
])
def test_series_and_number_from_the_file_name(name, series, number):
    assert batches.series_of(name) == series and batches.series_number(name) == number


def _index(data_root: Path) -> pd.DataFrame:
    rows = [{"relpath": p.relative_to(data_root).as_posix(), "split": p.parts[-3]} for p in sorted(data_root.glob("*/*/*.jpeg"))]
    return pd.DataFrame(rows)


def test_the_official_test_films_hold_the_lowest_numbers_of_the_healthy_series(data_root: Path):
    labelled = batches.with_acquisition_batches(_index(data_root))
    for series in ("IM", "NORMAL2-IM"):
        numbers = labelled[labelled["series"] == series].groupby("split")["series_number"]
        assert numbers.max()["test"] < numbers.min()["train"], series


def test_early_batch_is_the_lowest_third_of_each_series_and_splits_no_patient(data_root: Path):
    frame = _index(data_root)
    frame = frame[frame["split"] == "train"]
    labelled = batches.with_acquisition_batches(frame)
    assert labelled["batch"].notna().all()
    for series, group in labelled.groupby("series"):
        unique = sorted(set(group["series_number"]))
        early = sorted(set(group.loc[group["batch"] == batches.EARLY, "series_number"]))
        assert early == unique[: len(early)]  # the lowest numbers, contiguous
        assert abs(len(early) - len(unique) / 3) <= 1, series
        per_patient = group.groupby("series_number")["batch"].nunique()
        assert (per_patient == 1).all()  # one patient, one side
    assert labelled.equals(batches.with_acquisition_batches(frame))  # deterministic


def test_early_validation_keeps_validation_rows_of_the_early_batch_only():
    predictions = pd.DataFrame({
        "path": ["train/NORMAL/IM-0200-0001.jpeg", "train/NORMAL/IM-0300-0001.jpeg", "train/NORMAL/IM-0400-0001.jpeg",
                 "train/PNEUMONIA/person10_virus_1.jpeg", "train/PNEUMONIA/person20_virus_1.jpeg",
                 "train/PNEUMONIA/person30_virus_1.jpeg", "test/NORMAL/IM-0001-0001.jpeg"],
        "split": ["val"] * 6 + ["test"], "label": [0, 0, 0, 1, 1, 1, 0], "score": [0.1] * 7,
    })
    early = batches.early_validation(predictions)
    assert early["path"].tolist() == ["train/NORMAL/IM-0200-0001.jpeg", "train/PNEUMONIA/person10_virus_1.jpeg"]
    assert list(early.columns) == list(predictions.columns)
    with pytest.raises(ValueError):
        batches.with_acquisition_batches(predictions, early_fraction=1.5, path_column="path")
