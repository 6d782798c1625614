"""Your site page through AppTest: ZIP uploads (good, mixed, empty, not a ZIP, one class) with the tiny real-data CNN."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from streamlit.testing.v1 import AppTest

from core import config
from core.evaluation import metrics
from core import site as site_check
from tests.app.harness import open_page

PAGE = "pages/7_Your_site.py"
PER_CLASS = 45  # enough for the site operating point: each patient-grouped half keeps >= 20 films of each class


@pytest.fixture()
def models_root(tiny_cnn_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A models folder holding a copy of the tiny CNN whose card records a machine-readable threshold rule."""
    folder = tmp_path / "models" / "tiny_cnn"
    shutil.copytree(tiny_cnn_dir, folder)
    card = json.loads((folder / "card.json").read_text())
    card["threshold"].update(rule_id="youden", target=None, rule="highest validation Youden J")
    (folder / "card.json").write_text(json.dumps(card))
    monkeypatch.setenv("PNEUMONIA_MODELS", str(folder.parent))
    return folder.parent


def _films(data_root: Path, label: str, count: int) -> list[Path]:
    return sorted((data_root / "test" / label).glob("*.jpeg"))[:count]


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries:
            archive.writestr(name, content)
    return buffer.getvalue()


def _kaggle_zip(data_root: Path, per_class: int = PER_CLASS, classes=config.CLASS_NAMES) -> tuple[bytes, list[tuple[str, bytes]]]:
    entries = [(f"site/{label}/{path.name}", path.read_bytes()) for label in classes for path in _films(data_root, label, per_class)]
    return _zip(entries), entries


def _upload(at: AppTest, name: str, content: bytes) -> AppTest:
    at.file_uploader(key="site_upload").set_value([(name, content, "application/zip")])
    at.toggle(key="site_guard").set_value(False)
    at.run()
    assert not at.exception, at.exception
    return at


def test_good_zip_gives_metrics_that_match_scikit_learn_and_a_site_operating_point(models_root, data_root):
    content, entries = _kaggle_zip(data_root)
    at = _upload(open_page(PAGE), "site.zip", content)
    assert not at.error
    assert any(f"{2 * PER_CLASS} films of 'site' scored" in s.value for s in at.success)
    # The numbers on the page equal scikit-learn's on the model's own scores of these films.
    from core import predict
    from core.models import registry
    from core.imaging import decode_xray

    scorer = predict.load_scorer(models_root / "tiny_cnn")
    labels = np.array([config.CLASS_NAMES.index(name.split("/")[1]) for name, _ in entries])
    scores = scorer.probabilities([decode_xray(data, name=name) for name, data in entries])
    auc = next(m for m in at.metric if m.label == "ROC AUC (site)").value
    assert auc == f"{roc_auc_score(labels, scores):.3f}"
    at_threshold = metrics.metrics_at_threshold(labels, scores, registry.get_model("tiny_cnn", models_root).threshold)
    assert next(m for m in at.metric if m.label == "Sensitivity (site)").value == f"{at_threshold['recall']:.3f}"
    assert next(m for m in at.metric if m.label == "Specificity (site)").value == f"{at_threshold['specificity']:.3f}"
    assert any("95% CI" in c.value and "width" in c.value for c in at.caption)
    # The site operating point: chosen on one half, reported on the other, offered to the Prediction page.
    assert any("evaluation half" in m.label for m in at.metric)
    assert "operating_point" not in at.session_state  # nothing reaches the Prediction page before the button
    at.button(key="site_use_point").click().run()
    point = at.session_state["operating_point"]
    assert point["model"] == "tiny_cnn" and point["page"] == "Your site" and "calibration half" in point["source"]
    assert 0.0 <= point["threshold"] <= 1.0
    # The Prediction page offers it, and says where it came from.
    at.switch_page("pages/5_Prediction.py").run()
    assert not at.exception, at.exception
    assert any(f"Decision threshold **{point['threshold']:.3f}**: chosen on the Your site page (site operating point" in i.value
               for i in at.info)


def test_mixed_zip_scores_every_good_film_and_lists_every_bad_one(models_root, data_root):
    _, entries = _kaggle_zip(data_root, per_class=25)
    bad = [("site/NORMAL/notes.txt", b"not an image"), ("site/PNEUMONIA/broken.jpeg", entries[-1][1][:200]),
           ("loose.jpeg", entries[0][1])]
    at = _upload(open_page(PAGE), "mixed.zip", _zip(entries + bad))
    assert not at.error
    assert any("50 films of 'mixed' scored" in s.value for s in at.success)
    problems = at.dataframe[0].value
    assert sorted(problems["file"]) == sorted(name for name, _ in bad)
    assert all(problems["why"].str.len() > 10)


def test_empty_zip_and_not_a_zip_show_a_readable_error_and_the_page_keeps_working(models_root, data_root):
    at = _upload(open_page(PAGE), "empty.zip", _zip([]))
    assert any("holds no files" in e.value for e in at.error)
    at = _upload(at, "photo.png", (data_root / "test" / "NORMAL" / _films(data_root, "NORMAL", 1)[0].name).read_bytes())
    assert any("not a ZIP archive" in e.value for e in at.error)
    content, _ = _kaggle_zip(data_root, per_class=25)
    at = _upload(at, "good.zip", content)
    assert not at.error
    assert any("50 films of 'good' scored" in s.value for s in at.success)


def test_one_class_only_refuses_the_metrics_and_says_why(models_root, data_root):
    content, _ = _kaggle_zip(data_root, per_class=30, classes=("PNEUMONIA",))
    at = _upload(open_page(PAGE), "pneumonia-only.zip", content)
    assert not at.error
    assert any("Not reported" in w.value and "0 NORMAL" in w.value for w in at.warning)
    assert not [m for m in at.metric if m.label == "ROC AUC (site)"]
    assert "not reported" in at.dataframe[0].value.iloc[0].to_string()


def test_an_adapted_model_is_listed_like_any_other_and_says_it_was_adapted(models_root, data_root):
    films = [(f"u/{p.name}", p.read_bytes()) for label in config.CLASS_NAMES for p in _films(data_root, label, 10)]
    unlabelled = site_check.read_site(_zip(films), labelled=False)
    path = site_check.adapt_model(models_root / "tiny_cnn", unlabelled, methods=["prior"], site_name="ward 7",
                                  models_dir=models_root, data_root=data_root, n_resamples=100, guard=False)
    assert path.name == "tiny_cnn-adapted-ward-7"
    at = open_page("pages/3_Model_comparison.py")
    assert any("adapted on 'ward 7'" in str(name) for name in at.dataframe[0].value["Model"])
    assert any("AFTER adapting on 20 unlabelled films of 'ward 7'" in w.value for w in at.warning)
    at = open_page("pages/5_Prediction.py")
    assert any("adapted on 'ward 7'" in option for option in at.selectbox(key="prediction_model").options)


def test_adapting_from_the_page_writes_a_new_model_and_leaves_the_source_alone(models_root, data_root):
    source_card = (models_root / "tiny_cnn" / "card.json").read_bytes()
    films = [(f"u/{p.name}", p.read_bytes()) for label in config.CLASS_NAMES for p in _films(data_root, label, 8)]
    at = open_page(PAGE)
    at.file_uploader(key="adapt_upload").set_value([("ward.zip", _zip(films), "application/zip")])
    at.multiselect(key="adapt_methods").set_value(["adabn"])
    at.text_input(key="adapt_site_name").set_value("ward 9")
    at.run()
    at.button(key="adapt_run").click().run()
    assert any("no BatchNorm layer" in e.value for e in at.error)  # the tiny CNN has none: a readable refusal
    at.multiselect(key="adapt_methods").set_value(["prior"]).run()
    at.button(key="adapt_run").click().run()
    assert not at.exception, at.exception
    assert any("tiny_cnn-adapted-ward-9" in s.value and "AFTER adapting on 16 unlabelled films" in s.value for s in at.success)
    card = json.loads((models_root / "tiny_cnn-adapted-ward-9" / "card.json").read_text())
    assert card["adapted"] and card["adaptation"]["methods"] == ["prior"] and card["adaptation"]["films"] == 16
    assert (models_root / "tiny_cnn" / "card.json").read_bytes() == source_card
    assert sorted(p.name for p in models_root.iterdir()) == ["tiny_cnn", "tiny_cnn-adapted-ward-9"]
