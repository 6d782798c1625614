"""Prediction page through AppTest on the decoding field cases of issue 13 (tests/fixtures/field_cases/README.md)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core import predict
from core.imaging import decode_xray
from tests.app.harness import open_page
from tests.conftest import FIELD_CASES_DIR

PAGE = "pages/5_Prediction.py"
FIELD_CASES = FIELD_CASES_DIR  # noqa
# file -> words of the decoding note shown on the page ("" = nothing to say)
DECODED = {
    "dicom_no_transfer_syntax_uid.dcm": "no Transfer Syntax UID",
    "dicom_jpeg_lossless_sv1.dcm": "",
    "dicom_jpeg_ls_signed_15bit.dcm": "",
    "dicom_jpeg_extended_12bit.dcm": "",
    "png16_with_12bit_values_normal_IM-0001.png": "divided by 4,095 instead of 65,535",
}


@pytest.fixture()
def models_root(tiny_cnn_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PNEUMONIA_MODELS", str(tiny_cnn_dir.parent))
    return tiny_cnn_dir.parent


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="prediction_upload").set_value([(name, data, "application/octet-stream")])
    at.run()
    assert not at.exception, at.exception
    return at


def test_field_cases_decode_score_and_show_what_decoding_did(models_root: Path) -> None:
    scorer = predict.load_scorer(models_root / "tiny_cnn")
    at = open_page(PAGE, timeout=60)
    for name, note in DECODED.items():
        data = (FIELD_CASES / name).read_bytes()
        _upload(at, name, data)
        expected = scorer.probability(decode_xray(data, name=name))
        if any(m.label == "Decision" and m.value == "Withheld" for m in at.metric):  # adult films: decoded, no verdict
            assert [e.value[:11] for e in at.error] == ["No decision"], name
            at.toggle(key="prediction_raw_score").set_value(True).run()
            assert any(f"Raw model output {expected:.3f}" in c.value for c in at.caption), name
            at.toggle(key="prediction_raw_score").set_value(False).run()
        else:
            assert not at.error, [e.value for e in at.error]
            assert next(m.value for m in at.metric if m.label.startswith("Pneumonia score")) == f"{expected:.3f}"
        infos = [element.value for element in at.info]
        if note:
            assert any(note in text for text in infos), infos
        else:
            assert not any("decoded" in text or "Transfer Syntax" in text for text in infos), infos


def test_heic_photo_named_png_says_what_it_is(models_root: Path) -> None:
    import pillow_heif

    photo = Image.fromarray((np.arange(96 * 128) % 251).astype(np.uint8).reshape(96, 128)).convert("RGB")
    buffer = io.BytesIO()
    pillow_heif.from_pillow(photo).save(buffer, format="HEIF", quality=80)
    at = _upload(open_page(PAGE, timeout=60), "IMG_0042.png", buffer.getvalue())
    assert len(at.error) == 1 and not at.metric
    message = at.error[0].value
    assert "IMG_0042.png" in message and "HEIC/HEIF photo" in message and "Save it as JPEG" in message
    assert "damaged" not in message
