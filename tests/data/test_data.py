"""core.data: indexes of the shipped Kaggle set and of small real-image folders, patient-grouped splits, leakage."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core import config, data


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test caches into its own folder, so no test depends on another's cache."""
    monkeypatch.setattr(config, "CACHE_DIR", tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def shipped_index(data_root) -> pd.DataFrame:
    return data.index_dataset(data_root, use_cache=False)


@pytest.fixture(scope="module")
def shipped_split(shipped_index) -> pd.DataFrame:
    return data.with_validation_split(shipped_index)


def copy_images(data_root: Path, target: Path, layout: dict[str, dict[str, int]]) -> Path:
    """A small Kaggle-layout folder of real images: layout = {split: {class: n_images}} (first n by name)."""
    for split, classes in layout.items():
        for class_name, n in classes.items():
            source = sorted((data_root / "train" / class_name).iterdir())[:n]
            (target / split / class_name).mkdir(parents=True)
            for file in source:
                shutil.copy2(file, target / split / class_name / file.name)
    return target


# ------------------------------------------------------------------------------ file names
@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("person1661_virus_2872.jpeg", "person1661"),
        ("person1_bacteria_1.jpeg", "person1"),
        ("person447_virus_921_1.jpeg", "person447"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("IM-0011-0001-0002.jpeg", "IM-0011"),
        ("NORMAL2-IM-0173-0001.jpeg", "NORMAL2-IM-0173"),
        ("NORMAL2-IM-0173-0001-0002.jpeg", "NORMAL2-IM-0173"),
        ("scan_42.png", "scan_42"),
    ],
)
def test_patient_from_filename(name, patient):
    assert data.patient_from_filename(name) == patient


def test_subtype_from_filename():
    assert data.subtype_from_filename("person1_bacteria_1.jpeg", 1) == "bacteria"
    assert data.subtype_from_filename("person1661_virus_2872.jpeg", 1) == "virus"
    assert data.subtype_from_filename("IM-0115-0001.jpeg", 0) == "normal"
    assert data.subtype_from_filename("scan.png", 1) == "unknown"


# ------------------------------------------------------------------------------ shipped set
def test_shipped_counts_per_folder(shipped_index, data_root):
    counts = data.split_counts(shipped_index, by="folder_split")
    assert counts.loc["train", "NORMAL"] == 1341 and counts.loc["train", "PNEUMONIA"] == 3875
    assert counts.loc["test", "NORMAL"] == 234 and counts.loc["test", "PNEUMONIA"] == 390
    # Independent count straight from the file system.
    for split in ("train", "test"):
        for class_name in config.CLASS_NAMES:
            assert counts.loc[split, class_name] == len(list((data_root / split / class_name).glob("*.jpeg")))


def test_shipped_index_follows_the_contract(shipped_index, data_root):
    index = shipped_index
    assert list(index.columns[:9]) == ["path", "relpath", "label", "label_name", "split", "patient", "subtype", "width", "height"]
    assert index["label"].dtype == np.int64 and index["width"].dtype == np.int64
    assert set(index["label"]) == {0, 1}
    assert (index["label_name"] == np.where(index["label"] == 1, "PNEUMONIA", "NORMAL")).all()
    assert (index["relpath"].str.split("/").str[1] == index["label_name"]).all()
    assert all(Path(p).is_absolute() for p in index["path"].head(20))
    assert (data_root.resolve() / index["relpath"].iloc[0]).samefile(index["path"].iloc[0])
    assert ((index["width"] == 224) & (index["height"] == 224)).all()
    assert set(index["subtype"]) == {"normal", "bacteria", "virus"}
    assert (index.loc[index["label"] == 0, "subtype"] == "normal").all()
    row = index.set_index("relpath").loc["test/PNEUMONIA/person1661_virus_2872.jpeg"]
    assert row["patient"] == "person1661" and row["subtype"] == "virus"


def test_validation_split_is_patient_grouped_stratified_and_sized(shipped_split, shipped_index):
    split = shipped_split
    train_patients = set(split.loc[split["split"] == "train", "patient"])
    val_patients = set(split.loc[split["split"] == "val", "patient"])
    assert train_patients and val_patients and not train_patients & val_patients
    pool_patients = train_patients | val_patients
    assert abs(len(val_patients) / len(pool_patients) - config.VALIDATION_FRACTION) < 0.01
    pool = split[split["split"] != "test"]
    val = split[split["split"] == "val"]
    assert abs(val["label"].mean() - pool["label"].mean()) < 0.03
    pd.testing.assert_frame_equal(split[split["split"] == "test"], shipped_index[shipped_index["split"] == "test"])
    assert len(data.patient_leakage(split).query("splits.str.contains('val') and splits.str.contains('train')", engine="python")) == 0


def test_validation_split_is_reproducible(shipped_index, shipped_split):
    again = data.with_validation_split(shipped_index.sample(frac=1.0, random_state=3).sort_index())
    pd.testing.assert_frame_equal(again, shipped_split)
    other = data.with_validation_split(shipped_index, seed=7)
    assert not (other["split"] == shipped_split["split"]).all()


def test_shipped_duplicates_by_bytes(shipped_index, data_root):
    duplicates = data.find_duplicates(shipped_index, method="bytes")
    assert duplicates["group"].nunique() == 30 and len(duplicates) == 62
    pair = duplicates.set_index("relpath").loc[
        ["test/PNEUMONIA/person1661_virus_2872.jpeg", "test/PNEUMONIA/person1661_virus_2873.jpeg"], "group"
    ]
    assert pair.nunique() == 1
    # Every group really is byte-identical, and different groups hold different content.
    group_contents = [{(data_root / r).read_bytes() for r in group["relpath"]} for _, group in duplicates.groupby("group")]
    assert all(len(contents) == 1 for contents in group_contents)
    assert len({next(iter(contents)) for contents in group_contents}) == 30


def test_shipped_leakage_report(shipped_split):
    duplicates = data.find_duplicates(shipped_split, method="bytes")
    report = data.leakage_report(shipped_split, duplicates)
    summary = report.summary()
    assert summary["duplicate_groups"] == 30
    assert summary["duplicate_groups_crossing_splits"] == 0
    assert summary["patients_crossing_train_val"] == 0
    # Test file names reuse training patient numbers: reported, not hidden.
    crossing = report.crossing_pairs()
    assert set(crossing) <= {"train+test", "val+test"} and sum(crossing.values()) == summary["patients_crossing_splits"] > 0


# ------------------------------------------------------------------------------ small real folders
def test_official_val_folder_is_folded_into_the_pool(data_root, tmp_path):
    root = copy_images(data_root, tmp_path / "kaggle", {"train": {"NORMAL": 30, "PNEUMONIA": 30}, "val": {"NORMAL": 4, "PNEUMONIA": 4}})
    index = data.index_dataset(root)
    assert set(index["split"]) == {"train", "val"}  # no test folder: fine
    assert (index.loc[index["relpath"].str.startswith("val/"), "folder_split"] == "val").all()
    split = data.with_validation_split(index, fraction=0.25)
    assert set(split["split"]) == {"train", "val"}
    assert (split["folder_split"] == index["folder_split"]).all()
    assert not set(split.loc[split["split"] == "train", "patient"]) & set(split.loc[split["split"] == "val", "patient"])
    # Kaggle's own val images now live wherever their patient went, not all in "val".
    assert split.loc[split["folder_split"] == "val", "split"].isin(["train", "val"]).all()


def test_duplicates_merge_patients_in_the_split(data_root, tmp_path):
    root = copy_images(data_root, tmp_path / "kaggle", {"train": {"NORMAL": 40, "PNEUMONIA": 40}})
    normals = sorted((root / "train" / "NORMAL").iterdir())
    # The same image filed under two different patients.
    shutil.copy2(normals[0], root / "train" / "NORMAL" / "IM-9999-0001.jpeg")
    index = data.index_dataset(root)
    duplicates = data.find_duplicates(index, method="pixels")
    patients = set(duplicates["patient"])
    assert patients == {data.patient_from_filename(normals[0].name), "IM-9999"}
    for seed in range(12):
        split = data.with_validation_split(index, fraction=0.3, seed=seed, duplicates=duplicates)
        assert split.loc[split["patient"].isin(patients), "split"].nunique() == 1
        assert data.leakage_report(split, duplicates).summary()["duplicate_groups_crossing_splits"] == 0


def test_pixel_duplicates_catch_re_encoded_copies(data_root, tmp_path):
    root = copy_images(data_root, tmp_path / "kaggle", {"train": {"NORMAL": 5, "PNEUMONIA": 5}})
    first = sorted((root / "train" / "NORMAL").iterdir())[0]
    grey = Image.open(first).convert("L")
    grey.save(root / "train" / "NORMAL" / "IM-8888-0001.png")  # same pixels, different bytes and format
    index = data.index_dataset(root)
    by_pixels = data.find_duplicates(index, method="pixels")
    by_bytes = data.find_duplicates(index, method="bytes")
    assert set(by_pixels["relpath"]) == {f"train/NORMAL/{first.name}", "train/NORMAL/IM-8888-0001.png"}
    assert by_bytes.empty


def test_index_cache_and_fingerprint_follow_the_files(data_root, tmp_path):
    root = copy_images(data_root, tmp_path / "kaggle", {"train": {"NORMAL": 6, "PNEUMONIA": 6}, "test": {"NORMAL": 3, "PNEUMONIA": 3}})
    fresh = data.index_dataset(root, use_cache=False)
    first = data.index_dataset(root)
    cached = data.index_dataset(root)
    pd.testing.assert_frame_equal(first, fresh)
    pd.testing.assert_frame_equal(cached, fresh)
    assert list((config.CACHE_DIR / "index").glob("*.csv"))
    fingerprint = data.dataset_fingerprint(root)
    some_file = next((root / "train" / "NORMAL").iterdir())
    os.utime(some_file, (1_000_000_000, 1_000_000_000))
    assert data.dataset_fingerprint(root) == fingerprint  # a touch or a fresh clone keeps the identity
    shutil.copy2(some_file, root / "test" / "NORMAL" / "IM-7777-0001.jpeg")
    assert data.dataset_fingerprint(root) != fingerprint
    assert len(data.index_dataset(root)) == len(fresh) + 1


def test_load_index_equals_index_then_split(data_root, tmp_path):
    root = copy_images(data_root, tmp_path / "kaggle", {"train": {"NORMAL": 20, "PNEUMONIA": 20}})
    expected = data.with_validation_split(data.index_dataset(root, use_cache=False))
    pd.testing.assert_frame_equal(data.load_index(root), expected)
    pd.testing.assert_frame_equal(data.load_index(root), expected)  # from the split cache


def test_tiny_pool_gives_an_actionable_error(data_root, tmp_path):
    root = copy_images(data_root, tmp_path / "kaggle", {"train": {"NORMAL": 1}})
    with pytest.raises(ValueError, match="at least 2 are needed"):
        data.with_validation_split(data.index_dataset(root))


def test_nested_kaggle_download_gets_a_hint(data_root, tmp_path):
    copy_images(data_root, tmp_path / "download" / "chest_xray", {"train": {"NORMAL": 2}})
    with pytest.raises(ValueError, match="Did you mean .*chest_xray"):
        data.index_dataset(tmp_path / "download")


@pytest.mark.parametrize("case", ["missing", "file", "empty", "other"])
def test_bad_roots_give_actionable_errors(tmp_path, case):
    root = tmp_path / "dataset"
    if case == "file":
        root.write_text("x")
    elif case == "empty":
        root.mkdir()
    elif case == "other":
        (root / "images").mkdir(parents=True)
    expected = {"missing": "does not exist", "file": "is a file", "empty": "neither a Kaggle", "other": "neither a Kaggle"}[case]
    with pytest.raises(ValueError, match=expected):
        data.index_dataset(root)


# ------------------------------------------------------------------------------ NIH layout
NIH_ROWS = [
    ("00000001_000.png", "Cardiomegaly|Pneumonia", "1"),
    ("00000002_000.png", "No Finding", "2"),
    ("00000003_000.png", "Hernia", "3"),
    ("00000005_000.png", "Pneumonia", "5"),
    ("00009999_000.png", "Pneumonia", "9999"),  # listed but not on disk: left out
]


def make_nih(samples_dir: Path, root: Path, *, lists: bool) -> Path:
    images = root / "images_001" / "images"
    images.mkdir(parents=True)
    for name, _, _ in NIH_ROWS[:4]:
        shutil.copy2(samples_dir / name, images / name)
    table = pd.DataFrame(NIH_ROWS, columns=["Image Index", "Finding Labels", "Patient ID"])
    table["Follow-up #"] = 0
    table["Patient Age"] = 60
    table.to_csv(root / data.NIH_LABELS_FILE, index=False)
    if lists:
        (root / data.NIH_TRAIN_LIST).write_text("00000001_000.png\n00000002_000.png\n00009999_000.png\n")
        (root / data.NIH_TEST_LIST).write_text("00000003_000.png\n00000005_000.png\n")
    return root


def test_nih_index_with_official_lists(samples_dir, tmp_path):
    root = make_nih(samples_dir, tmp_path / "nih", lists=True)
    assert data.detect_layout(root) == "nih"
    index = data.index_dataset(root).set_index("relpath")
    assert len(index) == 4
    assert index.loc["images_001/images/00000001_000.png", "label"] == 1
    assert index.loc["images_001/images/00000005_000.png", "label"] == 1
    assert index.loc["images_001/images/00000002_000.png", "subtype"] == "normal"
    assert index.loc["images_001/images/00000003_000.png", "label"] == 0
    assert dict(index["split"]) == {
        "images_001/images/00000001_000.png": "train", "images_001/images/00000002_000.png": "train",
        "images_001/images/00000003_000.png": "test", "images_001/images/00000005_000.png": "test",
    }
    assert (index["width"] == 128).all() and (index["height"] == 128).all()
    assert list(index.reset_index()["patient"]) == ["1", "2", "3", "5"]
    assert data.patient_leakage(index.reset_index()).empty


def test_nih_index_without_lists_is_patient_grouped(samples_dir, tmp_path):
    root = make_nih(samples_dir, tmp_path / "nih", lists=False)
    index = data.index_dataset(root)
    assert len(index) == 4 and set(index["split"]) == {"train", "test"}
    assert data.patient_leakage(index).empty
    again = data.index_dataset(root, use_cache=False)
    pd.testing.assert_frame_equal(index, again)


def test_file_names_without_patient_ids_are_flagged(data_root, tmp_path, caplog):
    root = copy_images(data_root, tmp_path / "kaggle", {"train": {"NORMAL": 3}})
    shutil.copy2(next((root / "train" / "NORMAL").iterdir()), root / "train" / "NORMAL" / "scan_0001.jpeg")
    with caplog.at_level("WARNING", logger="core.data"):
        index = data.index_dataset(root, use_cache=False)
    assert index.set_index("relpath").loc["train/NORMAL/scan_0001.jpeg", "patient"] == "scan_0001"
    assert "1 of 4 file names carry no Kaggle patient id" in caplog.text
