"""Model comparison page through AppTest, on fixture model folders (synthetic scores: test fixtures only)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from streamlit.testing.v1 import AppTest

from tests.app.harness import open_page as open_app_page, tensorflow_imported_by

from core.evaluation import ablation, compare, operating_points, references
from tests.models.test_registry import write_model_folder

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
        "PPV (precision)": skm.precision_score(y, pred),
        "Sensitivity": skm.recall_score(y, pred),
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
    table = table[~table["Model"].str.contains(references.PUBLISHED_MARK, regex=False)]  # published rows: see below
    assert list(table["Model"]) == ["★ recommended · Fixture alpha", "Fixture beta"]  # the recommended model, marked
    table = table.assign(Model=table["Model"].str.replace("★ recommended · ", "", regex=False))
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


# --------------------------------------------------------------------------------------------------
# Published reference rows
# --------------------------------------------------------------------------------------------------
def test_published_rows_follow_ours_on_test_marked_and_never_ranked(models_root: Path) -> None:
    at = _open_page()
    table = at.dataframe[0].value
    published = table[table["Model"].str.contains(references.PUBLISHED_MARK, regex=False)]
    ours = table[~table.index.isin(published.index)]
    assert list(ours["Model"]) == ["★ recommended · Fixture alpha", "Fixture beta"]
    assert published.index.min() > ours.index.max(), "published rows come after ours"
    assert len(published) == len(references.PUBLISHED_RESULTS)
    kermany = published.iloc[0]
    assert kermany["Model"].startswith("Kermany et al. 2018")
    assert (kermany["Accuracy"], kermany["Sensitivity"], kermany["Specificity"], kermany["ROC AUC"]) == (
        "0.928", "0.932", "0.901", "0.968")
    assert kermany["PPV (precision)"] == "—" and "same films as here" in kermany["Evaluated on"]
    assert "another dataset" in published.iloc[-1]["Evaluated on"]
    # Kermany's AUC beats both fixtures, yet the best-per-column caption only ever names our models.
    assert float(kermany["ROC AUC"]) > max(_expected(models_root, m, "test")["ROC AUC"] for m in ("alpha", "beta"))
    best = next(c.value for c in at.caption if c.value.startswith("Best per column"))
    assert "Kermany" not in best and "Reference project" not in best
    notes = next(c.value for c in at.caption if c.value.startswith("Grey rows"))
    assert references.PUBLISHED_MARK in notes
    sources = " ".join(m.value for m in at.markdown)
    assert "doi:10.1016/j.cell.2018.02.010" in sources and "reports no test numbers" in sources


def test_published_rows_are_not_shown_on_validation(models_root: Path) -> None:
    at = _open_page()
    at.toggle(key="comparison_show_val").set_value(True).run()
    table = at.dataframe[0].value
    assert not table["Model"].str.contains(references.PUBLISHED_MARK, regex=False).any()
    assert any("shown beside ours on the TEST split" in c.value for c in at.caption)


# --------------------------------------------------------------------------------------------------
# Paired test of two models on the same films
# --------------------------------------------------------------------------------------------------
@pytest.fixture()
def paired_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """alpha and a weaker beta scored on the same films (beta = alpha's scores blurred with noise)."""
    root = tmp_path / "models"
    alpha = write_model_folder(root, "alpha", seed=31, separation=0.5, n_val=300, n_test=400)
    beta = root / "beta"
    shutil.copytree(alpha, beta)
    predictions = pd.read_csv(beta / "predictions.csv")
    noise = np.random.default_rng(0).random(len(predictions))
    predictions["score"] = (0.4 * predictions["score"] + 0.6 * noise).round(4)
    predictions.to_csv(beta / "predictions.csv", index=False)
    card = json.loads((beta / "card.json").read_text())
    card.update(name="beta", display_name="Fixture beta")
    card["threshold"]["value"] = 0.5
    (beta / "card.json").write_text(json.dumps(card))
    monkeypatch.setenv("PNEUMONIA_MODELS", str(root))
    monkeypatch.setenv(ablation.ABLATION_ENV, str(tmp_path / "no-ablation.json"))
    monkeypatch.setenv(operating_points.STUDY_ENV, str(tmp_path / "no-study.json"))
    return root


def _paired_table(at: AppTest) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if "Difference A − B (95% CI)" in d.value.columns)


def _films(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = pd.read_csv(root / "alpha" / "predictions.csv")
    b = pd.read_csv(root / "beta" / "predictions.csv")
    a, b = a[a["split"] == split], b[b["split"] == split]
    joined = a.merge(b, on="path", suffixes=("_a", "_b"))
    return joined["label_a"].to_numpy(), joined["score_a"].to_numpy(), joined["score_b"].to_numpy()


@pytest.mark.parametrize("split", ["test", "val"])
def test_paired_test_on_the_split_shown(paired_root: Path, split: str) -> None:
    at = _open_page()
    if split == "val":
        at.toggle(key="comparison_show_val").set_value(True).run()
    name = "TEST" if split == "test" else "VALIDATION"
    assert any(h.value.startswith("Is the difference significant?") and name in h.value for h in at.subheader)
    y, a, b = _films(paired_root, split)
    table = _paired_table(at).set_index("Metric")
    assert list(table.index) == ["ROC AUC", "Accuracy", "Sensitivity", "Specificity"]
    auc_a, auc_b = skm.roc_auc_score(y, a), skm.roc_auc_score(y, b)
    assert table.loc["ROC AUC", "A"] == f"{auc_a:.3f}" and table.loc["ROC AUC", "B"] == f"{auc_b:.3f}"
    assert table.loc["ROC AUC", "Difference A − B (95% CI)"].startswith(f"{auc_a - auc_b:+.3f} (")
    delong = compare.delong_test(y, a, b)
    assert table.loc["ROC AUC", "Test"] == "DeLong"
    assert table.loc["ROC AUC", "p-value"] == compare.format_p(delong.p_value).removeprefix("p = ").removeprefix("p ")
    threshold_a = json.loads((paired_root / "alpha" / "card.json").read_text())["threshold"]["value"]
    assert table.loc["Sensitivity", "A"] == f"{skm.recall_score(y, a >= threshold_a):.3f}"
    assert table.loc["Specificity", "B"] == f"{skm.recall_score(y, b >= 0.5, pos_label=0):.3f}"
    assert table.loc["Accuracy", "Test"].startswith("paired bootstrap")
    # beta is alpha blurred with noise: a large, significant AUC gap, read out in plain words.
    assert delong.p_value < 0.001
    assert any(m.value == "**Fixture alpha's ROC AUC is significantly higher than Fixture beta's (p < 0.001).**"
               for m in at.markdown)
    caption = next(c.value for c in at.caption if "joined on the film path" in c.value)
    assert caption.startswith(f"{len(y)} {name} films")
    readings = next(m.value for m in at.markdown if m.value.startswith("- ") and "specificity" in m.value)
    assert len(readings.splitlines()) == 3 and "sensitivity" in readings and "accuracy" in readings


def test_swapping_the_models_flips_the_difference(paired_root: Path) -> None:
    at = _open_page()
    before = _paired_table(at).set_index("Metric")
    at.selectbox(key="comparison_pair_a").set_value("beta").run()
    at.selectbox(key="comparison_pair_b").set_value("alpha").run()
    after = _paired_table(at).set_index("Metric")
    for metric in before.index:
        assert before.loc[metric, "A"] == after.loc[metric, "B"]
        assert before.loc[metric, "p-value"] == after.loc[metric, "p-value"]
        d_before = float(before.loc[metric, "Difference A − B (95% CI)"].split(" ")[0])
        d_after = float(after.loc[metric, "Difference A − B (95% CI)"].split(" ")[0])
        assert d_before == pytest.approx(-d_after, abs=1e-3)
    assert any("Fixture beta's ROC AUC is significantly lower than Fixture alpha's" in m.value for m in at.markdown)


def test_the_same_model_twice_asks_for_two(paired_root: Path) -> None:
    at = _open_page()
    at.selectbox(key="comparison_pair_b").set_value("alpha").run()
    assert not at.exception
    assert any("Pick two different models" in i.value for i in at.info)


@pytest.mark.parametrize("change, message", [
    ("paths", "evaluated on different films"),
    ("labels", "different labels"),
])
def test_models_scored_on_different_films_are_refused_clearly(paired_root: Path, change: str, message: str) -> None:
    predictions = pd.read_csv(paired_root / "beta" / "predictions.csv")
    if change == "paths":
        predictions["path"] = "elsewhere/" + predictions["path"]
    else:
        predictions["label"] = 1 - predictions["label"]
    predictions.to_csv(paired_root / "beta" / "predictions.csv", index=False)
    at = _open_page()
    errors = [e.value for e in at.error]
    assert any("cannot be compared on the TEST split" in e and message in e for e in errors), errors
    assert not any("Difference A − B (95% CI)" in d.value.columns for d in at.dataframe)
    assert len(at.get("plotly_chart")) >= 4, "the rest of the page still works"


def test_films_only_one_model_scored_are_left_out_with_a_warning(paired_root: Path) -> None:
    predictions = pd.read_csv(paired_root / "beta" / "predictions.csv")
    test_rows = predictions.index[predictions["split"] == "test"]
    predictions.drop(test_rows[:25]).to_csv(paired_root / "beta" / "predictions.csv", index=False)
    at = _open_page()
    warning = next(w.value for w in at.warning if "left out" in w.value)
    assert "375 TEST films both models were scored on" in warning and "25 film(s) only A scored" in warning
    assert next(c.value for c in at.caption if "joined on the film path" in c.value).startswith("375 TEST films")


# --------------------------------------------------------------------------------------------------
# Ablation table (only when its JSON exists)
# --------------------------------------------------------------------------------------------------
def _recipe_card(name: str, **options: object) -> dict:
    base = {"model": "cnn_deep", "name": name, "epochs": 15, "augment": False}
    entry = {"value": 0.9, "ci_low": 0.88, "ci_high": 0.92}
    return {"name": name, "training": {"config": {**base, **options}, "seconds": 90.0},
            "threshold": {"value": 0.4, "chosen_on": "val"},
            "metrics": {s: {m: entry for m in ablation.ABLATION_METRICS} for s in ("val", "test")}}


def test_ablation_table_is_hidden_without_its_file(paired_root: Path) -> None:
    at = _open_page()
    assert not any(h.value.startswith("Ablation") for h in at.subheader)


def test_ablation_table_is_shown_from_its_json(paired_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ablation.json"
    table = ablation.ablation_table([_recipe_card("deep"), _recipe_card("deep-acq", augment="acquisition")])
    ablation.write_json(table, path)
    monkeypatch.setenv(ablation.ABLATION_ENV, str(path))
    at = _open_page()
    assert any(h.value.startswith("Ablation: what each training recipe bought") for h in at.subheader)
    shown = next(d.value for d in at.dataframe if "Changes vs baseline" in d.value.columns)
    assert list(shown["Recipe"]) == ["deep", "deep-acq"]
    assert list(shown["Changes vs baseline"]) == ["baseline", "augment=acquisition"]
    assert shown["test specificity"].iloc[1] == "0.900 (0.880–0.920)"
    assert shown["Training time"].iloc[0] == "1 min 30 s"
    assert any("differ from `deep`" in c.value for c in at.caption)


def test_a_broken_ablation_file_is_a_warning_not_a_crash(paired_root: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ablation.json"
    path.write_text("{ half written")
    monkeypatch.setenv(ablation.ABLATION_ENV, str(path))
    at = _open_page()
    assert any("ablation table cannot be shown" in w.value for w in at.warning)
    assert _paired_table(at) is not None


# --------------------------------------------------------------------------------------------------
# Operating-point study (only when its JSON exists)
# --------------------------------------------------------------------------------------------------
def test_operating_point_study_is_shown_from_its_json(paired_root: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open_page()
    assert not any(e.label.startswith("Operating-point rules") for e in at.expander)
    path = tmp_path / "points.json"
    assert operating_points.main([str(paired_root / "alpha"), "--json", str(path), "--resamples", "50"]) == 0
    monkeypatch.setenv(operating_points.STUDY_ENV, str(path))
    at = _open_page()
    assert any(e.label.startswith("Operating-point rules compared") for e in at.expander)
    shown = next(d.value for d in at.dataframe if "rule (fixed on validation)" in d.value.columns)
    study = operating_points.read_json(path)
    assert list(shown["model"]) == [f"Fixture {name}" for name in study["model"]] and len(shown) >= 1  # display names
    first = study.iloc[0]
    assert shown["TEST specificity (95% CI)"].iloc[0] == (
        f"{first['test_specificity']:.3f} ({first['test_specificity_low']:.3f}–{first['test_specificity_high']:.3f})")
    path.write_text("{ half written")
    at = _open_page()
    assert any("operating-point study cannot be shown" in w.value for w in at.warning)


def test_the_goal_table_shows_each_model_against_the_goal_on_test(models_root: Path) -> None:
    at = _open_page()
    assert any(e.label.startswith("Against the goal set for the recommended model") for e in at.expander)
    table = next(m.value for m in at.markdown if m.value.startswith("| model | ROC AUC >= 0.975"))
    rows = {line.split(" | ")[0].strip("| *`"): line for line in table.splitlines()[2:]}
    assert set(rows) == {"alpha", "beta"}  # the unreadable folders are left out
    assert rows["alpha"].startswith("| **`alpha`** |")  # the recommended model, in bold
    for name, row in rows.items():
        expected = _expected(models_root, name, "test")
        assert f"| {expected['ROC AUC']:.3f} (" in row and f"| {expected['Specificity']:.3f} (" in row
    at.toggle(key="comparison_show_val").set_value(True).run()
    assert not any(e.label.startswith("Against the goal") for e in at.expander)
