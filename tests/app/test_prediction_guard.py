"""Prediction page through AppTest: the guard's verdict for the field cases (negative film, adult film, extremity)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.imaging import inversion
from core import predict
from core.imaging import decode_xray
from tests.app.harness import open_page
from tests.conftest import FIELD_CASES_DIR

PAGE = "pages/5_Prediction.py"
FIELD_CASES = FIELD_CASES_DIR  # noqa
NEGATIVE = "negative_film_normal_IM-0015.png"
ADULT = "adult_pa_nih_00027426_000.png"
EXTREMITY = "dicom_extremity_not_chest.dcm"
REASSURANCE = "looks like the validation X-rays"


@pytest.fixture()
def models_root(tiny_cnn_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PNEUMONIA_MODELS", str(tiny_cnn_dir.parent))
    return tiny_cnn_dir.parent


def _upload(at: AppTest, *names: str, extra: tuple[tuple[str, bytes], ...] = ()) -> AppTest:
    files = [(name, (FIELD_CASES / name).read_bytes(), "application/octet-stream") for name in names]
    at.file_uploader(key="prediction_upload").set_value(files + [(n, d, "application/octet-stream") for n, d in extra])
    at.run()
    assert not at.exception, at.exception
    return at


def _texts(at: AppTest) -> list[str]:
    return [e.value for e in (*at.warning, *at.info, *at.caption, *at.success)]


def test_negative_film_is_called_inverted_and_can_be_scored_the_right_way_up(models_root: Path) -> None:
    scorer = predict.load_scorer(models_root / "tiny_cnn")
    at = _upload(open_page(PAGE, timeout=60), NEGATIVE)
    # Inverted, it is unlike any chest film the model knows: no decision, the inversion named first, a way to fix it.
    assert at.error[0].value.startswith("No decision") and "looks inverted (white lungs, dark bones)" in at.error[0].value
    assert not any(REASSURANCE in t for t in _texts(at))
    assert next(m.value for m in at.metric if m.label == "Decision") == "Withheld"
    at.checkbox(key="prediction_fix_inverted").check().run()
    assert not at.exception, at.exception
    upright = inversion.invert(decode_xray(FIELD_CASES / NEGATIVE))
    assert next(m.value for m in at.metric if m.label.startswith("Pneumonia score")) == f"{scorer.probability(upright):.3f}"
    assert any(inversion.INVERTED_NOTE in i.value for i in at.info)
    assert not any("looks inverted" in w.value for w in at.warning)


def test_results_table_has_the_guard_columns_and_flags_adult_and_extremity(models_root: Path, data_root: Path) -> None:
    normal = (data_root / "test" / "NORMAL" / "IM-0001-0001.jpeg").read_bytes()
    at = _upload(open_page(PAGE, timeout=60), ADULT, EXTREMITY, NEGATIVE, extra=(("normal.jpeg", normal),))
    table = at.dataframe[0].value.set_index("file")
    assert {"guard", "guard_reasons", "guard_details"} <= set(table.columns)
    for name in (ADULT, EXTREMITY):
        assert table.loc[name, "guard"] == "warning"
        assert "out of distribution: not like the paediatric chest films" in table.loc[name, "guard_reasons"]
    assert "inverted (negative film)" in table.loc[NEGATIVE, "guard_reasons"]
    assert "inverted" not in table.loc[EXTREMITY, "guard_reasons"]  # a bright background alone is not a negative chest film
    # the tiny fixture model has no ood.npz: a film passing the model-independent checks is never called in-distribution
    assert table.loc["normal.jpeg", "guard"] == "passed the checks that ran"
    # Outside the models' scope: the decision column says so and the score column is empty (raw score on request only).
    for name in (ADULT, EXTREMITY, NEGATIVE):
        assert table.loc[name, "decision"] == "WITHHELD" and pd.isna(table.loc[name, "score"]), name
    assert table.loc["normal.jpeg", "decision"] in ("NORMAL", "PNEUMONIA") and 0 <= table.loc["normal.jpeg", "score"] <= 1
    for name in (ADULT, EXTREMITY, "normal.jpeg"):
        at.selectbox(key="prediction_detail").set_value(name).run()
        assert not at.exception, at.exception
        assert not any(REASSURANCE in t for t in _texts(at)), name
    assert any("no out-of-distribution calibration" in i.value for i in at.info)
