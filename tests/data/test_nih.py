"""train.py --format nih end to end on a small NIH-layout folder (a test fixture, never a metric).

No NIH ChestX-ray14 labels are on this machine, so the fixture is built in tmp_path from **real** Kaggle
images re-encoded as PNG under NIH-style names (00010001_000.png ...), with a Data_Entry_2017.csv in the
official column layout and the official train_val_list.txt / test_list.txt files. Its labels are the Kaggle
folder labels; the numbers a model gets on it mean nothing and are never reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from core import data, training

# The official header, including its split bracket names and trailing comma (an empty 12th column).
NIH_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)
N_PATIENTS = 24
TEST_PATIENTS = range(19, 25)  # patients 19-24 are in test_list.txt, the rest in train_val_list.txt


def make_nih_fixture(data_root: Path, root: Path, *, lists: bool = True, crossing_patient: bool = False) -> Path:
    """An NIH-layout folder: 24 patients x 2 films (real Kaggle images as PNG), 8 patients with pneumonia.

    Patient p has films <p>_000 and <p>_001; patients 1, 4, 7, ... have "Pneumonia" findings (Kaggle
    PNEUMONIA images), the others "No Finding" or "Effusion" (Kaggle NORMAL images). With
    ``crossing_patient`` one film of test patient 19 is listed in train_val_list.txt too.
    """
    normals = sorted((data_root / "train" / "NORMAL").glob("*.jpeg"))
    pneumonias = sorted((data_root / "train" / "PNEUMONIA").glob("*.jpeg"))
    images = root / "images_001" / "images"
    images.mkdir(parents=True)
    lines = [NIH_HEADER]
    train_names, test_names = [], []
    for patient in range(1, N_PATIENTS + 1):
        positive = patient % 3 == 1
        for follow_up in range(2):
            name = f"{10000 + patient:08d}_{follow_up:03d}.png"
            source = (pneumonias if positive else normals)[2 * patient + follow_up]
            with Image.open(source) as image:
                image.convert("L").save(images / name)
            finding = "Pneumonia|Infiltration" if positive else ("Effusion" if patient % 5 == 0 else "No Finding")
            lines.append(f"{name},{finding},{follow_up},{10000 + patient},{30 + patient},{'MF'[patient % 2]},PA,2500,2048,0.143,0.143,")
            (test_names if patient in TEST_PATIENTS else train_names).append(name)
    (root / data.NIH_LABELS_FILE).write_text("\n".join(lines) + "\n")
    if lists:
        if crossing_patient:
            train_names.append(test_names.pop(0))  # film 0 of patient 19 in train, film 1 in test
        (root / data.NIH_TRAIN_LIST).write_text("\n".join(train_names) + "\n")
        (root / data.NIH_TEST_LIST).write_text("\n".join(test_names) + "\n")
    return root


def test_fixture_follows_the_official_csv_layout(data_root: Path, tmp_path: Path) -> None:
    root = make_nih_fixture(data_root, tmp_path / "nih")
    table = pd.read_csv(root / data.NIH_LABELS_FILE)
    assert list(table.columns[:9]) == [
        "Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
        "View Position", "OriginalImage[Width", "Height]",
    ]
    assert len(table) == 2 * N_PATIENTS and table["Finding Labels"].str.contains("Pneumonia").sum() == 16


def test_official_lists_are_the_test_split_and_no_patient_crosses_them(data_root: Path, tmp_path: Path) -> None:
    root = make_nih_fixture(data_root, tmp_path / "nih")
    index = training.load_training_index(root, data_format="nih")
    test_names = set((root / data.NIH_TEST_LIST).read_text().split())
    assert set(index.loc[index["split"] == "test", "relpath"].str.rsplit("/", n=1).str[-1]) == test_names
    assert set(index.loc[index["split"] != "test", "relpath"].str.rsplit("/", n=1).str[-1]) == set(
        (root / data.NIH_TRAIN_LIST).read_text().split()
    )
    assert data.patient_leakage(index).empty  # train/val/test: no patient in two splits
    expected = {name: (int(name[:8]) - 10000) % 3 == 1 for name in test_names}
    test_rows = index[index["split"] == "test"]
    assert dict(zip(test_rows["relpath"].str.rsplit("/", n=1).str[-1], test_rows["label"] == 1)) == expected


def test_wrong_format_is_refused_with_a_clear_message(data_root: Path, tmp_path: Path) -> None:
    root = make_nih_fixture(data_root, tmp_path / "nih")
    with pytest.raises(ValueError, match="--format kaggle was asked.*nih-layout"):
        training.load_training_index(root, data_format="kaggle")


def test_a_patient_in_both_official_lists_is_refused(data_root: Path, tmp_path: Path) -> None:
    """A patient in both official lists would leak: indexing stops with a message naming the patient."""
    root = make_nih_fixture(data_root, tmp_path / "nih", crossing_patient=True)
    with pytest.raises(ValueError, match="10019"):
        data.index_nih(root)


def test_train_cli_on_nih_folder(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """train.py --format nih --strategy mirrored --pipeline streaming: artifacts for exactly the official test films."""
    import train

    root = make_nih_fixture(data_root, tmp_path / "nih")
    models = tmp_path / "models"
    code = train.main([
        "--data", str(root), "--format", "nih", "--model", "mlp", "--img-size", "32", "--epochs", "2",
        "--batch-size", "8", "--balance", "oversample", "--strategy", "mirrored", "--pipeline", "streaming",
        "--name", "nih-mlp", "--models-dir", str(models), "--cache-dir", str(tmp_path / "cache"),
        "--bootstrap", "50", "--no-progress",
    ])
    assert code == 0, capsys.readouterr().err
    assert [p.name for p in models.iterdir()] == ["nih-mlp"]
    card = json.loads((models / "nih-mlp" / "card.json").read_text())
    assert card["dataset"]["name"].startswith("NIH ChestX-ray14") and "Wang et al." in card["dataset"]["provenance"]
    assert any("text-mined" in line for line in card["limitations"]) and "paediatric" not in card["intended_use"]
    replicas = card["distribution"]["replicas"]
    assert card["distribution"] == {"strategy": "mirrored", "replicas": replicas, "workers": 1,
                                    "per_replica_batch_size": 8, "global_batch_size": 8 * replicas}
    assert card["training"]["config"]["data_format"] == "nih" and card["training"]["config"]["pipeline"] == "streaming"
    predictions = pd.read_csv(models / "nih-mlp" / "predictions.csv")
    test_names = sorted((root / data.NIH_TEST_LIST).read_text().split())
    assert sorted(predictions.loc[predictions["split"] == "test", "path"].str.rsplit("/", n=1).str[-1]) == test_names
    assert card["dataset"]["images_per_split"]["test"] == len(test_names) == 12
    assert card["dataset"]["images_per_split"]["train"] + card["dataset"]["images_per_split"]["val"] == 36
    assert predictions["score"].between(0, 1).all() and len(pd.read_csv(models / "nih-mlp" / "history.csv")) == 2
