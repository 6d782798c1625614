"""Model comparison page through AppTest, on fixture model folders (synthetic scores: test fixtures only)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn import metrics as skm
from streamlit.testing.v1 import AppTest

from tests.app.harness import open_page as open_app_page, tensorflow_imported_by

from tests.test_registry import write_model_folder

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAGE = "pages/3_Model_comparison.py"


@pytest.fixture()
def models_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "models"
    write_model_folder(root, "alpha", seed=21, separation=0.45)
    write_model_folder(root, "beta", seed=22, separation=0.25, threshold_rule="f1")
    write_model_folder(root, "bad-card", seed=23)
    (root / "bad-card" / "card.json").write_text("{ not json")
    write_model_folder(root, "truncated", seed=24)
    (root / "truncated" / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    monkeypatch.setenv("PNEUMONIA_MODELS", str(root))
    return root


def _open_page() -> AppTest:
    return open_app_page(PAGE, timeout=120)


def _expected(root: Path, model: str, split: str) -> dict[str, float]:
    frame = pd.read_csv(root / model / "predictions.csv")
    frame = frame[frame["split"] == split]
    t = json.loads((root / model / "card.json").read_text())["threshold"]["value"]
    y, s = frame["label"], frame["score"]
    pred = s >= t
    return {
        "Accuracy": skm.accuracy_score(y, pred),
        "Precision (PPV)": skm.precision_score(y, pred),
        "Recall (sensitivity)": skm.recall_score(y, pred),
        "Specificity": skm.recall_score(y, pred, pos_label=0),
        "F1": skm.f1_score(y, pred),
        "ROC AUC": skm.roc_auc_score(y, s),
        "Brier (lower is better)": skm.brier_score_loss(y, s),
    }


@pytest.mark.parametrize("split", ["test", "val"])
def test_table_values_match_sklearn_at_each_models_validation_threshold(models_root: Path, split: str) -> None:
    at = _open_page()
    if split == "val":
        at.toggle(key="comparison_show_val").set_value(True).run()
    name = "TEST" if split == "test" else "VALIDATION"
    assert f"Metrics on the {name} split" in at.subheader[0].value
    table = at.dataframe[0].value
    assert list(table["Model"]) == ["Fixture alpha", "Fixture beta"]
    for model in ("alpha", "beta"):
        row = table[table["Model"] == f"Fixture {model}"].iloc[0]
        for column, value in _expected(models_root, model, split).items():
            shown = row[column]
            assert shown.startswith(f"{value:.3f} ("), (model, column, shown)
            low, high = (float(x) for x in shown[len(f"{value:.3f} (") : -1].split("–"))
            assert low <= round(value, 3) + 5e-4 and round(value, 3) - 5e-4 <= high


def test_best_per_column_is_named(models_root: Path) -> None:
    at = _open_page()
    alpha, beta = _expected(models_root, "alpha", "test"), _expected(models_root, "beta", "test")
    caption = next(c.value for c in at.caption if c.value.startswith("Best per column"))
    best_auc = "Fixture alpha" if alpha["ROC AUC"] > beta["ROC AUC"] else "Fixture beta"
    best_brier = "Fixture alpha" if alpha["Brier (lower is better)"] < beta["Brier (lower is better)"] else "Fixture beta"
    assert f"ROC AUC — {best_auc}" in caption
    assert f"Brier (lower is better) — {best_brier}" in caption
    assert "Split: TEST" in caption


def test_broken_folders_are_listed_with_reasons_and_the_rest_works(models_root: Path) -> None:
    at = _open_page()
    text = " ".join(m.value for m in at.markdown)
    assert "bad-card" in text and "not valid JSON" in text
    assert "truncated" in text and "damaged or truncated" in text
    assert len(at.get("plotly_chart")) >= 4  # ROC, PR, calibration, decision curve (+ training history)
    assert at.get("download_button"), "CSV download is offered"
    at.selectbox(key="comparison_detail").set_value("beta").run()
    assert not at.exception
    assert any(m.value.startswith("# Fixture beta") for m in at.markdown)


def test_no_models_shows_how_to_train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMONIA_MODELS", str(tmp_path / "nothing-here"))
    at = _open_page()
    assert any("make models" in i.value for i in at.info)


def test_page_does_not_import_tensorflow(models_root: Path) -> None:
    assert not tensorflow_imported_by(PAGE, ["assert len(at.dataframe) >= 1"], timeout=120)
