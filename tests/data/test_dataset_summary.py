"""core.data.summary: counts match the index, intensity statistics match a direct computation, cache follows the folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from core import config, data
from core.data import summary as dataset_summary
from core.imaging import decode_xray


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setattr(config, "CACHE_DIR", tmp_path_factory.mktemp("cache"))


@pytest.fixture()
def small_root(data_root, tmp_path) -> Path:
    """A Kaggle-layout folder of 44 real images, with one duplicated image."""
    root = tmp_path / "kaggle"
    for split, per_class in (("train", 16), ("test", 6)):
        for class_name in config.CLASS_NAMES:
            target = root / split / class_name
            target.mkdir(parents=True)
            for file in sorted((data_root / split / class_name).iterdir())[:per_class]:
                shutil.copy2(file, target / file.name)
    first = sorted((root / "train" / "NORMAL").iterdir())[0]
    shutil.copy2(first, root / "test" / "NORMAL" / "IM-9000-0001.jpeg")  # leaks into test
    return root


def test_summary_counts_match_the_index(small_root):
    summary = dataset_summary.summarize(small_root, sample_per_class=5)
    index = data.load_index(small_root)
    assert summary.n_images == len(index) == 45
    assert summary.folder_counts.loc["train", "NORMAL"] == 16 and summary.folder_counts.loc["test", "NORMAL"] == 7
    expected = pd.crosstab(index["split"], index["label_name"])
    for split in expected.index:
        for class_name in expected.columns:
            assert summary.split_counts.loc[split, class_name] == expected.loc[split, class_name]
    assert summary.patient_counts.loc["test", "total"] == index.loc[index["split"] == "test", "patient"].nunique()
    assert summary.subtype_counts.to_numpy().sum() == len(index)
    assert summary.size_counts.to_dict("records") == [{"width": 224, "height": 224, "count": 45}]
    assert summary.fingerprint == data.dataset_fingerprint(small_root)


def test_summary_reports_the_planted_duplicate(small_root):
    summary = dataset_summary.summarize(small_root, sample_per_class=3)
    assert summary.leakage["duplicate_groups"] == 1
    assert summary.leakage["duplicate_groups_crossing_splits"] == 1
    assert "test/NORMAL/IM-9000-0001.jpeg" in set(summary.crossing_duplicates["relpath"])


def test_intensity_statistics_match_a_direct_computation(small_root):
    index = data.load_index(small_root)
    stats, histograms, means = dataset_summary.intensity_statistics(index, sample_per_class=4, seed=3, image_side=32, bins=16)
    for class_name in config.CLASS_NAMES:
        rows = stats[stats["label_name"] == class_name]
        assert len(rows) == 4
        images = [decode_xray(small_root / r).pixels for r in rows["relpath"]]
        expected_mean = np.mean([cv2.resize(im, (32, 32), interpolation=cv2.INTER_AREA) for im in images], axis=0)
        np.testing.assert_allclose(means[class_name], expected_mean, atol=1e-5)
        counts = sum(np.histogram(im, bins=16, range=(0.0, 1.0))[0] for im in images)
        np.testing.assert_allclose(histograms[class_name], counts / counts.sum(), atol=1e-12)
        np.testing.assert_allclose(rows["mean"], [im.mean() for im in images], atol=1e-6)
    assert histograms["bin_left"].iloc[0] == 0.0 and histograms["bin_right"].iloc[-1] == 1.0


def test_summary_is_cached_by_fingerprint_and_recomputed_on_change(small_root, monkeypatch):
    first = dataset_summary.summarize(small_root, sample_per_class=3)
    assert not first.from_cache
    calls = []
    original = dataset_summary.compute_summary
    monkeypatch.setattr(dataset_summary, "compute_summary", lambda *a, **k: calls.append(1) or original(*a, **k))
    second = dataset_summary.summarize(small_root, sample_per_class=3)
    assert second.from_cache and not calls
    for name in ("folder_counts", "split_counts", "patient_counts", "subtype_counts", "size_counts", "image_stats", "histograms", "duplicates"):
        pd.testing.assert_frame_equal(getattr(second, name), getattr(first, name), check_dtype=False, check_index_type=False)
    for class_name, image in first.mean_images.items():
        np.testing.assert_array_equal(second.mean_images[class_name], image)
    assert second.leakage == first.leakage
    extra = sorted((small_root / "train" / "PNEUMONIA").iterdir())[0]
    shutil.copy2(extra, small_root / "train" / "PNEUMONIA" / "person9999_virus_1.jpeg")
    third = dataset_summary.summarize(small_root, sample_per_class=3)
    assert calls and not third.from_cache and third.n_images == first.n_images + 1


def test_sample_rows_filters_and_is_seeded(data_root):
    index = data.load_index(data_root)
    rows = dataset_summary.sample_rows(index, n=10, seed=1, splits=["val"], classes=["PNEUMONIA"], subtypes=["virus"])
    assert len(rows) == 10
    assert (rows["split"] == "val").all() and (rows["label_name"] == "PNEUMONIA").all() and (rows["subtype"] == "virus").all()
    pd.testing.assert_frame_equal(rows, dataset_summary.sample_rows(index, n=10, seed=1, splits=["val"], classes=["PNEUMONIA"], subtypes=["virus"]))
    assert set(rows["relpath"]) != set(dataset_summary.sample_rows(index, n=10, seed=2, splits=["val"], classes=["PNEUMONIA"], subtypes=["virus"])["relpath"])
    assert dataset_summary.sample_rows(index, n=10, seed=1, classes=["NORMAL"], subtypes=["virus"]).empty


def test_patient_and_subtype_counts_on_the_shipped_set(data_root):
    index = data.load_index(data_root)
    patients = dataset_summary.patient_counts(index)
    subtypes = dataset_summary.subtype_counts(index)
    for split in ("train", "val", "test"):
        part = index[index["split"] == split]
        assert patients.loc[split, "NORMAL"] == part.loc[part["label"] == 0, "patient"].nunique()
        assert patients.loc[split, "total"] == part["patient"].nunique()
        assert subtypes.loc[split].sum() == len(part)
        assert subtypes.loc[split, "virus"] == part["relpath"].str.contains("_virus_").sum()
    assert list(subtypes.columns) == ["normal", "bacteria", "virus"]
