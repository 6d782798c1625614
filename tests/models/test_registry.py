"""core.models.registry on good and broken model folders built in tmp_path.

`write_model_folder` is also used by the page tests (tests/app/): it writes a folder with the files of
docs/ARCHITECTURE.md. Its scores are synthetic and exist only as test fixtures, never as results.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.evaluation import metrics
from core.models import registry


def write_model_folder(
    root: Path,
    name: str,
    *,
    seed: int = 0,
    n_val: int = 300,
    n_test: int = 400,
    separation: float = 0.35,
    threshold_rule: str = "specificity",
    prevalence: float = 0.7,
) -> Path:
    """Write models/<name>/ with a placeholder model.keras, card.json/md, history.csv and predictions.csv."""
    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir(parents=True)
    rows = []
    for split, n in (("val", n_val), ("test", n_test)):
        y = (rng.random(n) < prevalence).astype(int)
        s = np.clip(rng.normal(0.5 - separation / 2 + separation * y, 0.18), 0.0, 1.0).round(4)
        rows += [
            {"path": f"{split}/{'PNEUMONIA' if yi else 'NORMAL'}/img{i}.jpeg", "split": split, "label": yi, "score": si}
            for i, (yi, si) in enumerate(zip(y, s))
        ]
    predictions = pd.DataFrame(rows)
    predictions.to_csv(folder / registry.PREDICTIONS_FILE, index=False)
    val = predictions[predictions["split"] == "val"]
    target = 0.85 if threshold_rule == "specificity" else None
    threshold = metrics.choose_threshold(val["label"], val["score"], threshold_rule, target=target)
    card = {
        "name": name,
        "display_name": f"Fixture {name}",
        "architecture": "cnn_reference",
        "input": {"height": 64, "width": 64, "channels": 1, "preprocessing": "rescale 1/255"},
        "weights_source": "none (random initialisation)",
        "parameters": {"total": 1000 + seed, "trainable": 900 + seed},
        "dataset": {"name": "fixture", "split_seed": 42, "validation_fraction": 0.15},
        "training": {"config": {"epochs": 3}, "seconds": 12.5 + seed, "epochs_run": 3, "finished": "2025-01-01T00:00:00"},
        "threshold": {"value": threshold, "rule": f"{threshold_rule} rule (fixture)", "chosen_on": "val"},
        "metrics": {
            split: metrics.summarize_with_ci(part["label"], part["score"], threshold, n_resamples=50)
            for split, part in predictions.groupby("split")
        },
        "intended_use": "tests only",
        "limitations": ["synthetic fixture scores"],
    }
    (folder / registry.CARD_FILE).write_text(json.dumps(card))
    (folder / registry.CARD_MD_FILE).write_text(f"# Fixture {name}\n\nSynthetic test fixture.\n")
    history = pd.DataFrame(
        {
            "epoch": [0, 1, 2, 0, 1],
            "loss": [0.7, 0.5, 0.4, 0.35, 0.3],
            "val_loss": [0.72, 0.55, 0.5, 0.45, 0.44],
            "auc": [0.7, 0.8, 0.85, 0.9, 0.92],
            "val_auc": [0.68, 0.78, 0.82, 0.86, 0.87],
            "stage": ["head", "head", "head", "finetune", "finetune"],
        }
    )
    history.to_csv(folder / registry.HISTORY_FILE, index=False)
    with zipfile.ZipFile(folder / registry.MODEL_FILE, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("metadata.json", "{}")
    return folder


@pytest.fixture()
def models_root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_model_folder(root, "good", seed=1)
    write_model_folder(root, "also-good", seed=2, threshold_rule="f1")
    write_model_folder(root, "no-predictions", seed=3)
    (root / "no-predictions" / registry.PREDICTIONS_FILE).unlink()
    write_model_folder(root, "bad-json", seed=4)
    (root / "bad-json" / registry.CARD_FILE).write_text('{"name": "bad-json", "threshold": ')
    write_model_folder(root, "truncated", seed=5)
    blob = (root / "truncated" / registry.MODEL_FILE).read_bytes()
    (root / "truncated" / registry.MODEL_FILE).write_bytes(blob[: len(blob) // 2])
    write_model_folder(root, "bad-scores", seed=6)
    (root / "bad-scores" / registry.PREDICTIONS_FILE).write_text("path,split,label,score\na.jpeg,val,1,oops\n")
    write_model_folder(root, "wrong-columns", seed=7)
    (root / "wrong-columns" / registry.PREDICTIONS_FILE).write_text("file,prob\na.jpeg,0.3\n")
    write_model_folder(root, "one-class-val", seed=9)
    frame = pd.read_csv(root / "one-class-val" / registry.PREDICTIONS_FILE)
    frame[(frame["split"] != "val") | (frame["label"] == 1)].to_csv(root / "one-class-val" / registry.PREDICTIONS_FILE, index=False)
    write_model_folder(root, ".tmp-half-written", seed=8)
    (root / "README.txt").write_text("not a model")
    return root


def test_list_models_marks_broken_folders_and_keeps_the_rest(models_root: Path) -> None:
    entries = {e.name: e for e in registry.list_models(models_root)}
    assert sorted(entries) == [
        "also-good", "bad-json", "bad-scores", "good", "no-predictions", "one-class-val", "truncated", "wrong-columns"
    ]
    assert entries["good"].available and entries["also-good"].available
    assert entries["good"].display_name == "Fixture good"
    assert entries["good"].threshold == json.loads((models_root / "good" / "card.json").read_text())["threshold"]["value"]
    assert entries["good"].threshold_split == "val"
    expected_reason = {
        "no-predictions": "missing predictions.csv",
        "bad-json": "not valid JSON",
        "truncated": "damaged or truncated",
        "bad-scores": "probability in [0, 1]",
        "wrong-columns": "lacks column(s) path, split, label, score",
        "one-class-val": "the val split holds one class only",
    }
    for name, words in expected_reason.items():
        assert not entries[name].available, name
        assert words in entries[name].reason, (name, entries[name].reason)


def test_models_dir_defaults_to_the_environment_variable(models_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMONIA_MODELS", str(models_root))
    assert [e.name for e in registry.list_models()] == [e.name for e in registry.list_models(models_root)]
    assert registry.get_model("good").available
    with pytest.raises(registry.ModelUnavailableError, match="no model named"):
        registry.get_model("missing")
    monkeypatch.setenv("PNEUMONIA_MODELS", str(models_root / "nowhere"))
    assert registry.list_models() == []


def test_load_predictions_card_and_history(models_root: Path) -> None:
    entry = registry.get_model("good", models_root)
    raw = pd.read_csv(models_root / "good" / "predictions.csv")
    frame = registry.load_predictions(entry)
    assert list(frame.columns) == ["path", "split", "label", "score"]
    np.testing.assert_array_equal(frame["score"], raw["score"])
    test = registry.load_predictions(entry, split="test")
    assert set(test["split"]) == {"test"} and len(test) == (raw["split"] == "test").sum()
    with pytest.raises(ValueError, match="split must be one of"):
        registry.load_predictions(entry, split="validation")
    card = registry.load_card(entry)
    assert set(card["metrics"]) == {"val", "test"} and card["threshold"]["chosen_on"] == "val"
    assert registry.load_card_markdown(entry).startswith("# Fixture good")
    history = registry.load_history(entry)
    assert list(history["stage"].unique()) == ["head", "finetune"]
    (models_root / "good" / "history.csv").unlink()
    assert registry.load_history(entry) is None
    assert "no training history (history.csv)" in registry.inspect_model(models_root / "good").notes


def test_card_without_threshold_is_unavailable(models_root: Path) -> None:
    (models_root / "good" / "card.json").write_text(json.dumps({"name": "good"}))
    entry = registry.inspect_model(models_root / "good")
    assert not entry.available and "threshold.value" in entry.reason


def test_load_keras_model_round_trip_and_damaged_files(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    folder = tmp_path / "tiny"
    folder.mkdir()
    model.save(folder / "model.keras")
    loaded = registry.load_keras_model(folder)
    x = np.random.default_rng(0).random((2, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)

    blob = (folder / "model.keras").read_bytes()
    (folder / "model.keras").write_bytes(blob[: len(blob) // 3])
    with pytest.raises(registry.ModelUnavailableError, match="damaged or truncated"):
        registry.load_keras_model(folder)
    # A well-formed zip whose Keras config is garbage: Keras's own error, wrapped in a readable one.
    with zipfile.ZipFile(folder / "model.keras", "w") as archive:
        archive.writestr("config.json", "{not json")
    with pytest.raises(registry.ModelUnavailableError, match="cannot be loaded"):
        registry.load_keras_model(folder)
    (folder / "model.keras").unlink()
    with pytest.raises(registry.ModelUnavailableError, match="missing"):
        registry.load_keras_model(folder)


def test_models_signature_changes_when_a_file_changes(models_root: Path) -> None:
    before = registry.models_signature(models_root)
    assert before == registry.models_signature(models_root)
    assert not any(path.startswith(".tmp") for path, _, _ in before)
    (models_root / "good" / "card.md").write_text("# Fixture good, edited\n")
    assert registry.models_signature(models_root) != before
    assert registry.models_signature(models_root / "nowhere") == ()
