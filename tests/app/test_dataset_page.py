"""Dataset exploration page through AppTest, on the shipped real dataset and on bad folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.harness import open_page as open_app_page, tensorflow_imported_by

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAGE = "pages/2_Dataset.py"


def open_page(data_root: str | None = None) -> AppTest:
    return open_app_page(PAGE, timeout=180, session_state=None if data_root is None else {"data_root": data_root})


@pytest.fixture(scope="module")
def page() -> AppTest:
    return open_page()


def all_text(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info])


def test_folder_counts_are_shown(page):
    text = all_text(page)
    assert "**train** 1,341 NORMAL + 3,875 PNEUMONIA" in text
    assert "**test** 234 NORMAL + 390 PNEUMONIA" in text
    folder_table = page.dataframe[0].value
    assert folder_table.loc["train", "NORMAL"] == 1341 and folder_table.loc["train", "PNEUMONIA"] == 3875
    assert folder_table.loc["test", "NORMAL"] == 234 and folder_table.loc["test", "PNEUMONIA"] == 390


def test_split_counts_and_headline(page):
    metrics = {m.label: m.value for m in page.metric}
    assert metrics["Images"] == "5,840"
    split_table = page.dataframe[1].value
    assert split_table["total"].sum() == 5840
    assert split_table.loc["train", "total"] + split_table.loc["val", "total"] == 5216
    assert metrics["Validation images"] == f"{split_table.loc['val', 'total']:,}"
    assert metrics["Patients in train and validation"] == "0"
    assert metrics["Groups of identical images"] == "30"
    assert metrics["…of which span two splits"] == "0"


def test_sections_and_provenance(page):
    headers = [h.value for h in page.header]
    for title in ("Images per split and class", "Leakage and duplicates", "Sample images", "Intensity statistics",
                  "Image sizes", "Provenance and licence"):
        assert title in headers
    text = all_text(page)
    assert "CC BY 4.0" in text and "10.17632/rscbjbr9sj.2" in text and "Kermany" in text
    assert "All 5,840 images are 224×224 pixels." in text
    assert len(page.get("plotly_chart")) >= 5
    captions = [c for image in page.image for c in image.captions]
    assert "Mean NORMAL image" in captions and "Mean PNEUMONIA image" in captions


def _grid_captions(at: AppTest) -> list[str]:
    return [c for image in at.image for c in image.captions if c.count(" · ") == 3]


def test_sample_grid_filters_and_reseeds():
    at = open_page()
    class_select = next(w for w in at.multiselect if w.label == "Class")
    class_select.set_value(["NORMAL"]).run()
    assert not at.exception
    captions = _grid_captions(at)
    assert len(captions) == 12 and all(c.startswith("NORMAL · normal") for c in captions)
    split_select = next(w for w in at.multiselect if w.label == "Split")
    split_select.set_value(["test"]).run()
    captions = _grid_captions(at)
    assert all(c.split(" · ")[2] == "test" for c in captions)
    next(b for b in at.button if "Reseed" in b.label).click().run()
    reseeded = _grid_captions(at)
    assert len(reseeded) == 12 and reseeded != captions and all(" · test · " in c for c in reseeded)


def test_missing_folder_gets_a_clear_message(tmp_path):
    at = open_page(str(tmp_path / "does-not-exist"))
    assert any("does not exist" in e.value for e in at.error)
    assert not at.metric


def test_empty_folder_gets_a_clear_message(tmp_path):
    at = open_page(str(tmp_path))
    assert any("is empty" in w.value for w in at.warning)


def test_folder_of_the_wrong_shape_gets_a_clear_message(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpeg").write_bytes(b"\xff\xd8\xff")
    at = open_page(str(tmp_path))
    assert any("neither a Kaggle-layout folder" in e.value for e in at.error)


def test_page_does_not_import_tensorflow():
    assert not tensorflow_imported_by(PAGE, ["assert len(at.metric) >= 5"], timeout=180)


def test_nih_folder_renders(samples_dir, tmp_path, monkeypatch):
    from core import config
    from tests.data.test_data import make_nih

    monkeypatch.setattr(config, "CACHE_DIR", tmp_path / "cache")
    root = make_nih(samples_dir, tmp_path / "nih", lists=True)
    at = open_page(str(root))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "4" and metrics["Patients"] == "4"
    assert "**train** 1 NORMAL + 1 PNEUMONIA; **test** 1 NORMAL + 1 PNEUMONIA" in all_text(at)
    assert "All 4 images are 128×128 pixels." in all_text(at)


def test_audit_section_shows_the_committed_dataset_audit(page):
    import json

    from core import audit, data

    assert "What a model could rely on" in [h.value for h in page.header]
    stored = json.loads(audit.audit_path(data.dataset_fingerprint(PROJECT_ROOT / "data" / "chest_xray")).read_text())
    baselines = next(d.value for d in page.dataframe if "ROC AUC (VALIDATION)" in d.value.columns)
    assert baselines["thumbnail (px per side)"].tolist() == [row["size"] for row in stored["baselines"]]
    assert baselines["ROC AUC (VALIDATION)"].tolist() == pytest.approx([row["val_roc_auc"] for row in stored["baselines"]])
    metrics = {m.label: m.value for m in page.metric}
    assert metrics["Validation vs test, NORMAL films only: ROC AUC"] == f"{stored['domain']['normal']['roc_auc']:.3f}"
