"""Fixtures shared by every test: the project root and the shipped real dataset."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Films scored by the tests go to a throwaway audit trail with a test secret, never the developer's .cache/ ones.
os.environ.setdefault("PNEUMONIA_AUDIT_DB", os.path.join(tempfile.mkdtemp(prefix="trail-"), "audit-trail.sqlite"))
os.environ.setdefault("PNEUMONIA_SITE_SECRET", "tests-only-site-secret")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = PROJECT_ROOT / "data" / "chest_xray"
SAMPLES_DIR = PROJECT_ROOT / "data" / "samples"
FIELD_CASES_DIR = Path(__file__).resolve().parent / "fixtures" / "field_cases"  # real-world inputs, see its README


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def data_root() -> Path:
    return DATA_ROOT


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES_DIR


@pytest.fixture(scope="session")
def tiny_cnn_dir(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """A tiny flat CNN (64 px grey, raw [0, 255] input) trained briefly on real images, saved as a models/<name>/ folder.

    Written in the artifact format of docs/ARCHITECTURE.md (model.keras, card.json, predictions.csv with val and
    test rows) inside a temporary models folder; used by the prediction, explanation and OOD tests.
    """
    import csv
    import json

    import keras
    import numpy as np

    from core.imaging import decode_xray
    from core.predict import prepare_input

    def load(split: str, label: str, start: int, count: int) -> tuple[list[Path], np.ndarray]:
        files = sorted((data_root / split / label).glob("*.jpeg"))[start: start + count]
        return files, np.stack([prepare_input(decode_xray(f), 64, 64, 1) for f in files])

    keras.utils.set_random_seed(0)
    train_n, train_p = load("train", "NORMAL", 0, 160)[1], load("train", "PNEUMONIA", 0, 160)[1]
    inputs = keras.Input((64, 64, 1), name="pixels")
    x = keras.layers.Rescaling(1 / 255.0, name="preprocess_rescale")(inputs)
    for block, filters in enumerate((8, 16, 32), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{block}")(x)
        if block < 3:
            x = keras.layers.MaxPooling2D(name=f"pool{block}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="output")(x), name="tiny_cnn")
    model.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
    model.fit(np.concatenate([train_n, train_p]), np.r_[np.zeros(160), np.ones(160)], epochs=15, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("models") / "tiny_cnn"
    folder.mkdir()
    model.save(folder / "model.keras")
    (folder / "card.json").write_text(json.dumps({
        "name": "tiny_cnn", "display_name": "Tiny test CNN", "architecture": "tiny_cnn",
        "input": {"height": 64, "width": 64, "channels": 1, "preprocessing": "rescale 1/255"},
        "threshold": {"value": 0.5, "rule": "fixed 0.5 (test fixture)", "chosen_on": "val"}}))
    with (folder / "predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "split", "label", "score"])
        for split, start, count in (("val", 400, 60), ("test", 0, 10)):
            for label_index, label in enumerate(("NORMAL", "PNEUMONIA")):
                files, images = load("train" if split == "val" else "test", label, start, count)
                for path, score in zip(files, model.predict(images, verbose=0).reshape(-1)):
                    writer.writerow([path.relative_to(data_root).as_posix(), split, label_index, f"{score:.6f}"])
    return folder


def early_batch_views(views):
    """The views of films whose patient number is in the lowest third of its file-name series (rule 3), re-derived."""
    import re
    from pathlib import Path

    numbers = {}
    for path in views["path"]:
        name = Path(path).name
        for series, pattern in (("N2", r"^NORMAL2-IM-(\d+)-"), ("IM", r"^IM-(\d+)-"), ("P", r"^person(\d+)_")):
            match = re.match(pattern, name)
            if match:
                numbers[path] = (series, int(match.group(1)))
                break
    cuts = {}
    for series in {s for s, _ in numbers.values()}:
        unique = sorted({n for s, n in numbers.values() if s == series})
        cuts[series] = unique[int((len(unique) - 1) / 3)]  # numpy's 'lower' quantile at 1/3
    keep = [p in numbers and numbers[p][1] <= cuts[numbers[p][0]] for p in views["path"]]
    return views[keep]
