"""Every corpus file uploaded to the Prediction page (AppTest): a readable message or a correct result, never an
exception, and the page still answers the next good upload. Also: the upload size limit is configured."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import config, predict
from core.imaging import InvalidImageError, decode_xray
from tests.reliability.corpus import GOOD_NORMAL
from tests.reliability.test_decode_corpus import CASE_NAMES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAGE = "pages/5_Prediction.py"


@pytest.fixture()
def page(guarded_models_root: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("PNEUMONIA_MODELS", str(guarded_models_root))
    at = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app.py"), default_timeout=120)
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, at.exception
    return at


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    """Upload one file (in memory) and rerun; the page must not raise."""
    at.file_uploader(key="prediction_upload").set_value([(name, data, "application/octet-stream")])
    at.run()
    assert not at.exception, f"{name}: {at.exception}"
    return at


def shown_probability(at: AppTest) -> str | None:
    """The probability metric's text, or None when the page shows none."""
    return next((m.value for m in at.metric if m.label == "Pneumonia score"), None)


def test_every_corpus_file_then_a_good_upload(page: AppTest, corpus, guarded_models_root: Path, data_root: Path) -> None:
    scorer = predict.load_scorer(guarded_models_root / "tiny_cnn")
    good = (data_root / GOOD_NORMAL).read_bytes()
    good_probability = f"{scorer.probability(decode_xray(good)):.3f}"
    for name in CASE_NAMES:
        case = corpus[name]
        upload(page, name, case.data)
        try:
            expected = scorer.probability(decode_xray(case.data, name=name))
        except InvalidImageError as refusal:
            errors = [e.value for e in page.error]
            assert len(errors) == 1 and name in errors[0] and str(refusal) in errors[0], f"{name}: {errors}"
            assert "Traceback" not in errors[0]
            assert shown_probability(page) is None and not page.image
        else:
            guard_text = " ".join(t.value for t in (*page.warning, *page.markdown))
            if any(m.label == "Decision" and m.value == "Withheld" for m in page.metric):  # outside the models' scope
                assert [e.value[:11] for e in page.error] == ["No decision"], name
                assert shown_probability(page) is None and not page.image, name
            else:
                assert not page.error, f"{name}: {[e.value for e in page.error]}"
                assert shown_probability(page) == f"{expected:.3f}", name
                assert len(page.image) >= 2, f"{name}: original and heatmap overlay expected"
            if name == "holiday.jpeg":
                assert "colour image" in guard_text, f"the colour photograph was not flagged: {guard_text!r}"
        upload(page, "good.jpeg", good)
        assert not page.error and shown_probability(page) == good_probability, f"after {name}"


def test_all_corpus_files_at_once_give_one_row_each(page: AppTest, corpus) -> None:
    files = [(name, corpus[name].data, "application/octet-stream") for name in CASE_NAMES if name != "huge.jpeg"]
    page.file_uploader(key="prediction_upload").set_value(files)
    page.run()
    assert not page.exception, page.exception
    table = page.dataframe[0].value
    assert list(table["file"]) == [name for name, _, _ in files]
    refused = {corpus[n].filename for n in CASE_NAMES if corpus[n].expect == "refuse"}
    assert set(table.loc[table["status"] == "error", "file"]) == refused
    assert table.loc[table["status"] == "error", "error"].str.len().gt(20).all()
    scored = table[(table["status"] == "ok") & (table["decision"] != "WITHHELD")]
    assert scored["score"].between(0, 1).all() and table.loc[table["decision"] == "WITHHELD", "score"].isna().all()
    assert len(page.error) == len(refused)


def test_upload_size_limit_is_configured_and_matches_core_config() -> None:
    settings = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert settings["server"]["maxUploadSize"] == config.MAX_UPLOAD_MB
    assert 10 <= config.MAX_UPLOAD_MB <= 200  # a full-resolution DICOM (~10-30 MB) fits, a video does not
