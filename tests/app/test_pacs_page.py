"""Prediction page "From PACS" and the Monitoring page through AppTest, against a real Orthanc and a real trail.

The model is the tiny real-data CNN of tests/conftest.py (the only one in the models folder), so the page's default
model, its threshold and the SR's values are known; the archive holds real Kaggle films wrapped as DICOM.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import trail as audit
from core.pacs import demo as demo_archive
from core.pacs import films, results
from core.pacs.client import Archive
from core.pacs.orthanc import LocalOrthanc
from tests.app.harness import open_page

ROOT = Path(__file__).resolve().parents[2]
FILMS = sorted((ROOT / "data" / "chest_xray" / "test" / "PNEUMONIA").glob("*.jpeg"))[:2]


@pytest.fixture()
def setting(tiny_cnn_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PNEUMONIA_MODELS", str(tiny_cnn_dir.parent))
    monkeypatch.setenv(audit.ENV_DB, str(tmp_path / "trail.sqlite"))
    monkeypatch.setenv(audit.ENV_SECRET, "app-test-secret")
    with LocalOrthanc() as server:
        monkeypatch.setenv("PNEUMONIA_PACS_URL", server.dicomweb_url)
        yield server, tmp_path / "trail.sqlite"


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_from_pacs_search_score_send_and_the_sr_read_back(setting) -> None:
    server, database = setting
    wrapped = [films.wrap_film(f, patient_id=f"APP{i}", age_years=3, accession=f"APP{i:04d}") for i, f in enumerate(FILMS)]
    for ds in wrapped:
        server.upload(films.to_bytes(ds))
    at = open_page("pages/5_Prediction.py")
    at.radio(key="prediction_source").set_value("From PACS").run()
    assert not at.exception and at.text_input(key="pacs_url").value == server.dicomweb_url
    at.text_input(key="pacs_accession").set_value("APP0001")
    _button(at, "Search the archive").click().run()
    assert not at.exception, at.exception
    assert len(at.selectbox(key="pacs_study").options) == 1 and "APP0001" in at.selectbox(key="pacs_study").options[0]
    assert not any("APP1" in str(m.value) for m in at.markdown)  # the patient ID is never shown
    _button(at, "Score this study").click().run()
    assert not at.exception, at.exception
    probability = float(next(m.value for m in at.metric if m.label == "Probability of pneumonia"))
    _button(at, "Send result to PACS").click().run()
    assert not at.exception, at.exception
    assert any("Sent to" in s.value for s in at.success)

    archive = Archive(server.dicomweb_url)
    [report] = [archive.retrieve(i) for i in archive.instances(wrapped[1].StudyInstanceUID) if i.modality == "SR"]
    values = results.read_report(report)
    assert values["Probability of pneumonia"] == pytest.approx(probability, abs=5e-4)
    assert values["Algorithm Name"] == "tiny_cnn" and values["Decision threshold"] == pytest.approx(0.5)
    rows = audit.Trail(database).frame()
    assert len(rows) == 1 and bool(rows["sent"].iloc[0]) and rows["source"].iloc[0] == "pacs"

    at.radio(key="pacs_reading_verdict").set_value("disagree")
    at.selectbox(key="pacs_reading_label").set_value("NORMAL")
    _button(at, "Save my reading").click().run()
    rows = audit.Trail(database).frame()
    assert (rows["reading"].iloc[0], rows["final_label"].iloc[0]) == ("disagree", "NORMAL")


def test_archive_down_is_a_message_and_the_page_keeps_working(setting, monkeypatch) -> None:
    monkeypatch.setenv("PNEUMONIA_PACS_URL", "http://127.0.0.1:9/dicom-web")
    at = open_page("pages/5_Prediction.py")
    at.radio(key="prediction_source").set_value("From PACS").run()
    _button(at, "Search the archive").click().run()
    assert not at.exception, at.exception
    assert any("Cannot reach the archive" in e.value for e in at.error)
    at.radio(key="prediction_source").set_value("Real samples").run()  # the rest of the page still works
    assert not at.exception and at.metric


def test_uploads_are_recorded_once_in_the_trail(setting) -> None:
    _, database = setting
    at = open_page("pages/5_Prediction.py")
    at.radio(key="prediction_source").set_value("Real samples").run()
    assert not at.exception, at.exception
    at.run()  # a rerun must not write a second row
    rows = audit.Trail(database).frame()
    assert len(rows) == 1 and rows["source"].iloc[0] == "upload" and rows["model"].iloc[0] == "tiny_cnn"


def test_monitoring_page_shows_the_rows_of_a_watch_run(setting) -> None:
    from core.pacs.scoring import load_model
    from core.pacs.watch import watch_once

    server, database = setting
    demo = demo_archive.demo_films(per_class=2)
    demo_archive.load(server, demo)
    model = load_model(Path(__import__("os").environ["PNEUMONIA_MODELS"]) / "tiny_cnn")
    watch_once(Archive(server.dicomweb_url), model, audit.Trail(database))
    at = open_page("pages/8_Monitoring.py")
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Films"] == str(len(demo)) and metrics["Results sent to the archive"] == str(len(demo))
    assert metrics["Scored"] == str(sum(1 for o in audit.Trail(database).frame()["score"] if o == o))
    assert at.selectbox(key="monitoring_model").value == "tiny_cnn"


def test_read_only_trail_leaves_the_upload_scored_with_a_note(setting, monkeypatch) -> None:
    _, database = setting
    audit.Trail(database).dispose()  # the file exists, and is opened read-only below
    monkeypatch.setenv(audit.ENV_DB, f"sqlite:///file:{database}?mode=ro&uri=true")
    at = open_page("pages/5_Prediction.py")
    at.radio(key="prediction_source").set_value("Real samples").run()
    assert not at.exception, at.exception
    assert at.metric  # scored as always
    assert any("Not recorded in the audit trail" in c.value and "read-only" in c.value for c in at.caption)
    assert audit.Trail(database).frame().empty
