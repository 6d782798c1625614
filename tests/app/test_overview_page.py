"""Overview page through AppTest, in normal and presentation mode.

The page shows the shipped models when models/ holds a usable one, and fixture folders (real test file names,
synthetic scores: test fixtures only) otherwise. Either way the numbers on screen are checked against the
recommended model's predictions.csv recomputed with scikit-learn and core.evaluation.metrics.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import recall_score, roc_auc_score
from streamlit.testing.v1 import AppTest

from core import config, data, report
from core.report import examples
from core.evaluation import metrics
from core.models import registry
from tests.app.harness import tensorflow_imported_by
from tests.conftest import early_batch_views
from tests.report.test_report import write_report_models

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAGE = "pages/1_Overview.py"


@pytest.fixture(scope="module")
def models_root(tmp_path_factory, data_root) -> Path:
    shipped = config.PROJECT_ROOT / "models"
    if any(entry.available for entry in registry.list_models(shipped)):
        return shipped
    return write_report_models(tmp_path_factory.mktemp("models"), data_root)


def _linked_copy(models_root: Path, root: Path) -> Path:
    """The model folders' files linked (not copied) into ``root``; sub-folders such as stored examples are left out."""
    for folder in sorted(p for p in models_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        (root / folder.name).mkdir()
        for file in folder.iterdir():
            if file.is_file():
                (root / folder.name / file.name).symlink_to(file.resolve())
    return root


@pytest.fixture(scope="module")
def models_without_examples(models_root, tmp_path_factory) -> Path:
    """The same models without any stored example X-rays."""
    return _linked_copy(models_root, tmp_path_factory.mktemp("models-without-examples"))


@pytest.fixture(scope="module")
def models_with_examples(models_root, tmp_path_factory, data_root) -> Path:
    """The same models (files linked, not copied) with the recommended model's examples stored next to it.

    Written by core.report.examples without heatmaps (no TensorFlow in this test process; tests/test_examples.py covers the
    Grad-CAM ones); the shipped models/ folder is never written to.
    """
    root = _linked_copy(models_root, tmp_path_factory.mktemp("models-with-examples"))
    examples.write_examples(root / _expected(models_root)["name"], data_root, heatmaps=False)
    return root


@pytest.fixture()
def page(models_with_examples, monkeypatch) -> AppTest:
    monkeypatch.setenv("PNEUMONIA_MODELS", str(models_with_examples))
    at = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app.py"), default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, at.exception
    return at


def _expected(models_root: Path) -> dict:
    """The recommended model and its TEST-split natural frequencies, recomputed independently of core.report."""
    aucs, view_aucs, early_aucs, sizes, robust = {}, {}, {}, {}, set()
    for folder in sorted(p for p in models_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        entry = registry.inspect_model(folder)
        if entry.available and not entry.card.get("adapted"):
            val = pd.read_csv(folder / "predictions.csv").query("split == 'val'")
            aucs[entry.name] = roc_auc_score(val["label"], val["score"])
            sizes[entry.name] = entry.card["parameters"]["total"]
            if (folder / "threshold_views.csv").is_file():
                views = pd.read_csv(folder / "threshold_views.csv")
                view_aucs[entry.name] = roc_auc_score(views["label"], views["score"])
                early = early_batch_views(views)
                if early["label"].nunique() == 2:
                    early_aucs[entry.name] = roc_auc_score(early["label"], early["score"])
            if ((entry.card.get("audit") or {}).get("splits", {}).get("val") or {}).get("robust"):
                robust.add(entry.name)
    if view_aucs:  # docs/PREREGISTRATION.md: best on perturbed validation views, ties (0.002) to the smaller model
        keys = early_aucs if set(early_aucs) == set(view_aucs) else view_aucs  # rule 3: the early batch's views
        if robust & set(keys):  # among the models that pass the validation robustness audit
            keys = {n: a for n, a in keys.items() if n in robust}
        best = max(keys.values())
        name = min((n for n, a in keys.items() if a >= best - 0.002), key=lambda n: (sizes[n], n))
        reason = (f"ROC AUC **{keys[name]:.4f}** on them" if keys is not view_aucs and name in robust
                  else f"ROC AUC **{view_aucs[name]:.3f}** on those perturbed validation films")
    else:
        name = max(sorted(aucs), key=aucs.get)
        reason = f"ROC AUC **{aucs[name]:.3f}** (validation split)"
    entry = registry.inspect_model(models_root / name)
    test = pd.read_csv(models_root / name / "predictions.csv").query("split == 'test'")
    called = (test["score"] >= entry.threshold).astype(int)
    point = metrics.metrics_at_threshold(test["label"], test["score"], entry.threshold)
    assert point["recall"] == pytest.approx(recall_score(test["label"], called))
    return {"name": name, "display_name": entry.display_name, "val_auc": aucs[name], "reason": reason,
            "caught": f"{100 * point['recall']:.0f}", "false_alarms": f"{100 * (1 - point['specificity']):.0f}"}


def _text(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [h.value for h in at.header] + [c.value for c in at.caption])


@pytest.mark.parametrize("presentation", [False, True], ids=["normal", "presentation"])
def test_overview_shows_the_recommended_model_and_its_natural_frequencies(page, models_root, data_root, presentation):
    if presentation:
        page.toggle(key="overview_presentation").set_value(True).run()
        assert not page.exception, page.exception
    expected = _expected(models_root)
    text = _text(page)
    assert f"### {expected['display_name']}" in text
    assert expected["reason"] in text
    values = {m.label: m.value for m in page.metric}
    assert values["Of 100 X-rays WITH pneumonia, it flags"] == expected["caught"]
    assert values["Of 100 X-rays WITHOUT pneumonia, it wrongly flags"] == expected["false_alarms"]
    assert f"Of 100 X-rays showing pneumonia, it flags {expected['caught']} " in text
    assert "TEST split" in text and "95% CI" in text
    index = data.load_index(data_root)
    assert f"**{len(index):,} X-rays** of **{index['patient'].nunique():,} children**" in text
    # Three example X-rays from the test split, one per outcome; glossary, provenance, card and report button.
    assert len(page.get("image")) == 3
    for word in ("Correct detection", "Miss", "False alarm", "Sensitivity", "Grad-CAM", "CC BY 4.0", "10.17632/rscbjbr9sj.2"):
        assert word in text
    assert any(e.label.startswith("Model card:") for e in page.expander)
    assert [b for b in page.get("download_button") if "Download report" in b.proto.label]
    styles = [e for e in page.get("html") if "stSidebar" in e.proto.body]
    assert len(styles) == (1 if presentation else 0)


def test_overview_says_what_changed_with_the_last_recommendation(page, models_root):
    """The recorded previous recommendation against today's, per 100 healthy children, from scikit-learn."""
    expected = _expected(models_root)["name"]
    shipped = [i["model"] for i in report.recommendation_history() if (models_root / i["model"]).is_dir()]
    previous = [name for name in shipped if name != expected]
    text = _text(page)
    if not previous:  # the stand-in models are not in the recorded history: nothing to compare
        assert "What changed with the last recommendation" not in text
        return
    assert "What changed with the last recommendation" in text
    for name, verb in ((previous[-1], "wrongly flagged"), (expected, "wrongly flags")):
        test = pd.read_csv(models_root / name / "predictions.csv").query("split == 'test'")
        called = (test["score"] >= registry.inspect_model(models_root / name).threshold).astype(int)
        false_alarms = 100 * (1 - recall_score(test["label"], called, pos_label=0))
        assert f"{verb} {false_alarms:.0f} (95% CI" in text


def test_overview_numbers_equal_the_comparison_page(page, models_root):
    """Same function, same bootstrap: the recall CI on the overview is the comparison page's, per 100 children."""
    expected = _expected(models_root)
    row = registry.model_summary(registry.get_model(expected["name"], models_root), "test")
    text = _text(page)
    assert f"95% CI {100 * row['recall_ci_low']:.0f}–{100 * row['recall_ci_high']:.0f} (TEST split" in text
    assert f"95% CI {100 * (1 - row['specificity_ci_high']):.0f}–{100 * (1 - row['specificity_ci_low']):.0f} (TEST split" in text


def test_overview_without_models_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("PNEUMONIA_MODELS", str(tmp_path))
    at = AppTest.from_file(str(PROJECT_ROOT / PAGE), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert any("make models" in info.value for info in at.info)
    assert not at.metric


def test_overview_with_an_unreadable_dataset_folder_explains_and_keeps_the_model_numbers(models_root, models_without_examples,
                                                                                         tmp_path, monkeypatch):
    monkeypatch.setenv("PNEUMONIA_MODELS", str(models_without_examples))
    at = AppTest.from_file(str(PROJECT_ROOT / PAGE), default_timeout=180)
    at.session_state["data_root"] = str(tmp_path / "no-such-folder")
    at.run()
    assert not at.exception, at.exception
    assert any("cannot be read" in w.value for w in at.warning)
    expected = _expected(models_root)
    assert {m.label: m.value for m in at.metric}["Of 100 X-rays WITH pneumonia, it flags"] == expected["caught"]
    assert not at.get("image")
    assert [b for b in at.get("download_button") if b.proto.disabled]


def test_overview_shows_the_stored_examples_and_says_so_plainly_when_there_are_none(models_with_examples, models_root,
                                                                                      models_without_examples, monkeypatch):
    monkeypatch.setenv("PNEUMONIA_MODELS", str(models_with_examples))
    assert not tensorflow_imported_by(PAGE, ["assert len(at.get('image')) == 3"], timeout=180)
    name = _expected(models_root)["name"]
    stored = examples.load_examples(models_with_examples / name)
    at = AppTest.from_file(str(PROJECT_ROOT / PAGE), default_timeout=180)
    at.run()
    captions = [c.value for c in at.caption]
    assert [e.path for e in stored] == [c for c in captions if c in {e.path for e in stored}]
    monkeypatch.setenv("PNEUMONIA_MODELS", str(models_without_examples))  # the same models without stored examples
    at = AppTest.from_file(str(PROJECT_ROOT / PAGE), default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    assert not at.get("image")
    assert any("No example X-rays" in i.value and "python -m core.report.examples" in i.value for i in at.info)
