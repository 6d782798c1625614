"""Threshold explorer page through AppTest, on fixture model folders (synthetic scores: test fixtures only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from streamlit.testing.v1 import AppTest

from tests.app.harness import open_page as open_app_page, tensorflow_imported_by

from tests.models.test_registry import write_model_folder

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAGE = "pages/4_Threshold_explorer.py"


@pytest.fixture()
def models_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "models"
    write_model_folder(root, "alpha", seed=11)
    write_model_folder(root, "beta", seed=12, threshold_rule="f1")
    write_model_folder(root, "broken", seed=13)
    (root / "broken" / "predictions.csv").unlink()
    monkeypatch.setenv("PNEUMONIA_MODELS", str(root))
    return root


def _open_page() -> AppTest:
    return open_app_page(PAGE, timeout=60)


SERVER_LABELS = {"sensitivity": "recall", "specificity": "specificity", "PPV": "precision", "NPV": "npv", "F1": "f1",
                 "accuracy": "accuracy"}


def _set_threshold(at: AppTest, value: float) -> AppTest:
    """What a release of the live widget does on the server (its callback stores the value), then a rerun."""
    at.session_state["threshold"] = value
    return at.run()


def _threshold(at: AppTest) -> float:
    return at.session_state["threshold"]


def _server_numbers(at: AppTest) -> dict[str, str]:
    """The numbers the server prints under the widget: {"recall": "0.992", ...} (core.evaluation.metrics keys)."""
    caption = next(c.value for c in at.caption if c.value.startswith("Threshold "))
    listed = caption.split("Server numbers", 1)[1].split(":", 1)[1].strip().rstrip(".")
    pairs = (item.strip().rsplit(" ", 1) for item in listed.split("·"))
    return {SERVER_LABELS[label]: value for label, value in pairs}


def _widget_data(at: AppTest) -> dict:
    """The data the live widget receives (sweep, figures, the server's numbers), as the browser gets it."""
    return json.loads(at.get("bidi_component")[0].proto.json)


def _metric(at: AppTest, label: str) -> str:
    """A metric as the server shows it (caption under the widget), by the label the widget gives it."""
    key = {"Recall (sensitivity)": "recall", "Specificity": "specificity", "Precision (PPV)": "precision",
           "NPV": "npv", "F1": "f1", "Accuracy": "accuracy"}[label]
    return _server_numbers(at)[key]


COUNT_ROWS = ("Correctly cleared (true negatives)", "False alarms (false positives)", "Pneumonia missed (false negatives)",
              "Pneumonia caught (true positives)")


def _all_numbers(at: AppTest) -> pd.DataFrame:
    """The 'All numbers' table: one row per measure, the split's column then the re-weighted one (text as shown)."""
    return at.table[0].value


def _split(root: Path, model: str, split: str) -> pd.DataFrame:
    frame = pd.read_csv(root / model / "predictions.csv")
    return frame[frame["split"] == split]


def test_slider_moves_recall_and_precision_to_sklearn_values(models_root: Path) -> None:
    at = _open_page()
    test = _split(models_root, "alpha", "test")
    shown = []
    for threshold in (0.2, 0.8):
        _set_threshold(at, threshold)
        assert not at.exception, at.exception
        pred = (test["score"] >= threshold).astype(int)
        recall = skm.recall_score(test["label"], pred)
        precision = skm.precision_score(test["label"], pred, zero_division=0.0)
        assert _metric(at, "Recall (sensitivity)") == f"{recall:.3f}"
        assert _metric(at, "Precision (PPV)") == f"{precision:.3f}"
        exact = _all_numbers(at).iloc[:, 0]
        assert exact["Sensitivity (recall)"] == f"{recall:.3f}" and exact["PPV (precision)"] == f"{precision:.3f}"
        tn, fp, fn, tp = skm.confusion_matrix(test["label"], pred, labels=[0, 1]).ravel()
        assert [exact[k] for k in COUNT_ROWS] == [str(tn), str(fp), str(fn), str(tp)]
        # The browser gets the server's numbers for this very threshold, to check its own against them.
        server = _widget_data(at)["server"]
        assert server["value"] == threshold and server["numbers"]["tp"] == str(tp)
        assert "operating_point" not in at.session_state  # moving the slider hands nothing to the Prediction page
        assert any("by hand" in c.value for c in at.caption if c.value.startswith("Threshold "))
        shown.append((_metric(at, "Recall (sensitivity)"), _metric(at, "Precision (PPV)")))
    assert shown[0] != shown[1]


def _rule_by_brute_force(y: np.ndarray, s: np.ndarray, rule: str, target: float | None) -> float:
    """Apply a preset rule literally: count at every candidate threshold (plain NumPy), pick per the rule."""
    candidates = np.array(sorted(set(s.tolist()) | {np.nextafter(s.max(), np.inf)}, reverse=True))
    called = s[None, :] >= candidates[:, None]
    tp = (called & (y == 1)).sum(1)
    fp = (called & (y == 0)).sum(1)
    sens, spec = tp / (y == 1).sum(), 1 - fp / (y == 0).sum()
    f1 = 2 * tp / (2 * tp + fp + ((y == 1).sum() - tp))
    if rule == "f1":
        return float(candidates[np.flatnonzero(np.isclose(f1, f1.max(), rtol=0, atol=1e-12))[0]])
    if rule == "youden":
        j = sens + spec - 1
        return float(candidates[np.flatnonzero(np.isclose(j, j.max(), rtol=0, atol=1e-12))[0]])
    if rule == "sensitivity":
        return float(candidates[sens >= target].max())
    ok = spec >= target
    return float(candidates[ok & (sens == sens[ok].max())].max())


def test_presets_land_on_the_validation_rule(models_root: Path) -> None:
    at = _open_page()
    val = _split(models_root, "alpha", "val")
    test = _split(models_root, "alpha", "test")
    presets = [("F1-best", "f1", None), ("Youden J", "youden", None), ("Sensitivity ≥ 95%", "sensitivity", 0.95),
               ("Specificity ≥ 90%", "specificity", 0.90)]
    for button, rule, target in presets:
        expected = _rule_by_brute_force(val["label"].to_numpy(), val["score"].to_numpy(), rule, target)
        revision = _widget_data(at)["revision"]
        next(b for b in at.button if button in b.label.split(" · ")[0].split(" = ")).click().run()
        assert _threshold(at) == expected, button
        # A new revision tells the widget to move its handle there (a release's echo keeps the revision).
        assert _widget_data(at)["revision"] == revision + 1 and _widget_data(at)["threshold"] == expected
        next(b for b in at.button if b.label.startswith("Use this operating point")).click().run()
        point = at.session_state["operating_point"]
        assert point["model"] == "alpha" and point["threshold"] == expected
        assert "validation" in point["source"] and point["page"] == "Threshold explorer"
        # The numbers shown are the TEST split's at that validation threshold.
        specificity = skm.recall_score(test["label"], test["score"] >= expected, pos_label=0)
        assert _metric(at, "Specificity") == f"{specificity:.3f}", button
    own = json.loads((models_root / "alpha" / "card.json").read_text())["threshold"]["value"]
    next(b for b in at.button if b.label.startswith("Model's own")).click().run()
    assert _threshold(at) == own


def test_starts_at_the_model_card_threshold_and_names_the_splits(models_root: Path) -> None:
    at = _open_page()
    card = json.loads((models_root / "alpha" / "card.json").read_text())
    assert _threshold(at) == card["threshold"]["value"]
    text = " ".join(m.value for m in at.markdown)
    assert "chosen on the **VALIDATION** split" in text and "applied to the **TEST** split" in text
    at.radio(key="explorer_split").set_value("val").run()
    assert "applied to the **VALIDATION** split" in " ".join(m.value for m in at.markdown)
    val = _split(models_root, "alpha", "val")
    t = card["threshold"]["value"]
    assert _metric(at, "F1") == f"{skm.f1_score(val['label'], val['score'] >= t):.3f}"
    # Switching model resets the slider to that model's own operating point.
    at.selectbox(key="explorer_model").set_value("beta").run()
    beta = json.loads((models_root / "beta" / "card.json").read_text())
    assert _threshold(at) == beta["threshold"]["value"]


def test_prevalence_reweights_ppv_and_natural_frequencies(models_root: Path) -> None:
    at = _open_page()
    _set_threshold(at, 0.5)
    at.radio(key="explorer_prevalence").set_value("1%").run()
    test = _split(models_root, "alpha", "test")
    sens = skm.recall_score(test["label"], test["score"] >= 0.5)
    spec = skm.recall_score(test["label"], test["score"] >= 0.5, pos_label=0)
    # By hand, 1,000 people of whom 10 have pneumonia: sens * 10 caught, (1 - spec) * 990 false alarms.
    caught, false_alarms = 10 * sens, 990 * (1 - spec)
    ppv = caught / (caught + false_alarms)
    npv = 990 * spec / (990 * spec + 10 * (1 - sens))
    accuracy = (caught + 990 * spec) / 1000
    f1 = 2 * ppv * sens / (ppv + sens)
    weighted = _all_numbers(at)["At 1.0% prevalence"]
    assert weighted["PPV (precision)"] == f"{ppv:.3f}" and weighted["NPV"] == f"{npv:.3f}"
    assert weighted["Accuracy"] == f"{accuracy:.3f}" and weighted["F1"] == f"{f1:.3f}"
    assert weighted["Sensitivity (recall)"] == f"{sens:.3f}" and weighted["Specificity"] == f"{spec:.3f}"
    assert weighted["False alarms (false positives)"] == f"{false_alarms:.0f} per 1,000"
    assert weighted["Prevalence (share with pneumonia)"] == "1.0%"
    split_column = _all_numbers(at).iloc[:, 0]
    assert split_column["Accuracy"] == f"{skm.accuracy_score(test['label'], test['score'] >= 0.5):.3f}"
    data = _widget_data(at)
    assert data["prevalence"] == 0.01 and data["texts"]["prevalence_text"] == "1.0%"
    numbers = data["server"]["numbers"]  # what the widget must show, and checks that it does
    assert numbers["ppv_at_prevalence"] == f"{ppv:.3f}"
    assert numbers["caught"] == f"{10 * sens:.0f}" and numbers["false_alarms"] == f"{990 * (1 - spec):.0f}"


def test_broken_and_missing_models_do_not_break_the_page(models_root: Path, tmp_path: Path, monkeypatch) -> None:
    at = _open_page()
    assert any("broken" in c.value and "missing predictions.csv" in c.value for c in at.caption)
    assert at.selectbox(key="explorer_model").options == ["★ recommended · Fixture alpha", "Fixture beta"]
    monkeypatch.setenv("PNEUMONIA_MODELS", str(tmp_path / "empty"))
    at = _open_page()
    assert any("No usable trained model" in i.value for i in at.info)


def test_page_does_not_import_tensorflow(models_root: Path) -> None:
    assert not tensorflow_imported_by(PAGE, ["at.session_state['threshold'] = 0.3", "at.run()",
                                             "assert at.get('bidi_component')"], timeout=60)


def test_saturated_scores_preset_above_one_and_single_class_validation(models_root: Path) -> None:
    """A rule that lands just above a score of 1.0 works; a one-class validation split makes the model unavailable."""
    path = models_root / "alpha" / "predictions.csv"
    frame = pd.read_csv(path)
    val_normal = frame.index[(frame["split"] == "val") & (frame["label"] == 0)]
    frame.loc[val_normal[: len(val_normal) // 5], "score"] = 1.0  # 20% of normals saturate: spec >= 90% is unreachable
    frame.to_csv(path, index=False)
    at = _open_page()
    at.selectbox(key="explorer_model").set_value("alpha").run()  # no longer the recommended model
    button = next(b for b in at.button if "Specificity ≥ 90%" in b.label)
    button.click().run()
    assert not at.exception, at.exception
    assert _threshold(at) > 1.0
    assert _widget_data(at)["max"] >= _threshold(at)  # the handle can reach it
    assert _metric(at, "Recall (sensitivity)") == "0.000"  # nothing is called positive above every score

    frame = frame[(frame["split"] != "val") | (frame["label"] == 1)]
    frame.to_csv(path, index=False)
    at = _open_page()
    assert not at.exception, at.exception
    assert any("alpha" in c.value and "one class only" in c.value for c in at.caption)
    assert at.selectbox(key="explorer_model").options == ["★ recommended · Fixture beta"]


def test_threshold_survives_a_visit_to_another_page_without_changing_the_operating_point(models_root: Path) -> None:
    at = _open_page()
    _set_threshold(at, 0.42)
    at.switch_page("pages/3_Model_comparison.py").run()
    assert "operating_point" not in at.session_state
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert _threshold(at) == 0.42 and _widget_data(at)["threshold"] == 0.42


def test_presets_that_coincide_are_one_button_and_each_says_what_it_gives(models_root: Path) -> None:
    at = _open_page()
    table = next(d.value for d in at.dataframe if "Preset" in d.value.columns)
    assert table["Threshold"].is_unique  # coinciding rules are merged into one preset
    val, test = _split(models_root, "alpha", "val"), _split(models_root, "alpha", "test")
    for _, row in table.iterrows():
        button = next(b for b in at.button if b.label == f"{row['Preset']} · {row['Threshold']}")
        assert "On VALIDATION (where it was chosen)" in button.help and "on TEST" in button.help
        button.click().run()
        threshold = _threshold(at)
        for split, frame in (("VALIDATION", val), ("TEST", test)):
            called = frame["score"] >= threshold
            assert row[f"Sensitivity ({split})"] == f"{skm.recall_score(frame['label'], called):.3f}"
            assert row[f"Specificity ({split})"] == f"{skm.recall_score(frame['label'], called, pos_label=0):.3f}"


def test_nih_scale_predictions_at_low_prevalence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NIH ChestX-ray14's official test list: 25,596 films at ~1.3% pneumonia. PPV and NPV on screen are the
    split's own (scikit-learn), and the prevalence the page reports is the split's."""
    root = tmp_path / "models"
    write_model_folder(root, "nih-like", seed=5, n_val=8000, n_test=25_596, prevalence=0.013, separation=0.3)
    monkeypatch.setenv("PNEUMONIA_MODELS", str(root))
    at = _open_page()
    test = _split(root, "nih-like", "test")
    assert len(test) == 25_596 and 0.01 < test["label"].mean() < 0.016
    _set_threshold(at, 0.6)
    assert not at.exception, at.exception
    pred = (test["score"] >= 0.6).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(test["label"], pred, labels=[0, 1]).ravel()
    assert _metric(at, "Precision (PPV)") == f"{skm.precision_score(test['label'], pred, zero_division=0.0):.3f}"
    assert _metric(at, "NPV") == f"{tn / (tn + fn):.3f}"
    assert f"{test['label'].mean():.1%}" in " ".join(str(r.options) for r in at.radio)
