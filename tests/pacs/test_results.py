"""The DICOM objects written back: films wrapped as DICOM, the Comprehensive SR and the Secondary Capture.

Validated with dicom3tools' dciodvfy (no Error line), values read back and compared with the result, pixels checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from core.imaging import decode_xray
from core.pacs import films, results, scoring
from tests.pacs.conftest import dciodvfy_errors

DATA = Path(__file__).resolve().parents[2] / "data"
FILM = sorted((DATA / "chest_xray" / "test" / "PNEUMONIA").glob("*.jpeg"))[0]


def test_wrapped_film_keeps_the_pixels_and_is_valid_dicom(tmp_path: Path) -> None:
    ds = films.wrap_film(FILM, patient_id="T1", age_years=3)
    path = tmp_path / "film.dcm"
    path.write_bytes(films.to_bytes(ds))
    assert dciodvfy_errors(path) == []
    expected = np.round(decode_xray(FILM).pixels * 255).astype(np.uint8)
    assert np.array_equal(pydicom.dcmread(path).pixel_array, expected)
    assert ds.PatientAge == "003Y" and ds.Modality == "DX"


def test_baseline_jpeg_is_carried_unchanged(tmp_path: Path) -> None:
    from PIL import Image

    jpeg = tmp_path / "grey.jpg"
    Image.open(FILM).convert("L").save(jpeg, quality=95)  # a real film as a grey baseline JPEG
    ds = films.wrap_film(jpeg, patient_id="T2", age_years=2)
    assert ds.file_meta.TransferSyntaxUID == films.JPEG_BASELINE
    assert pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1).__next__() == jpeg.read_bytes()
    path = tmp_path / "jpeg.dcm"
    path.write_bytes(films.to_bytes(ds))
    assert dciodvfy_errors(path) == []


@pytest.fixture(scope="module")
def scored(recommended_model):
    source = films.wrap_film(FILM, patient_id="T3", age_years=4)
    return source, scoring.assess_dataset(source, recommended_model)


def test_structured_report_holds_the_result_and_references_the_source(scored, tmp_path: Path) -> None:
    source, result = scored
    assert result.scored
    report = results.structured_report(result, source)
    path = tmp_path / "sr.dcm"
    report.save_as(path)
    assert dciodvfy_errors(path) == []
    back = pydicom.dcmread(path)
    assert back.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert back.StudyInstanceUID == source.StudyInstanceUID and back.SeriesInstanceUID != source.SeriesInstanceUID
    values = results.read_report(back)
    assert values["Probability of pneumonia"] == pytest.approx(result.probability, abs=1e-6)
    assert values["Decision threshold"] == pytest.approx(result.threshold, abs=1e-6)
    assert values["Finding"] == ("Pneumonia" if result.probability >= result.threshold else "No pneumonia flagged")
    assert values["Algorithm Name"] == result.model and values["Algorithm Version"] == result.fingerprint
    assert values["Threshold source"] == result.threshold_source and values["Guard verdict"] == result.guard_status
    assert values["Source of Measurement"] == source.SOPInstanceUID
    assert values["Disclaimer"] == results.DISCLAIMER
    assert results.result_uid(result, "sr") == back.SOPInstanceUID  # the same result twice: the same object


def test_secondary_capture_burns_in_the_decision_and_the_disclaimer(scored, tmp_path: Path) -> None:
    source, result = scored
    capture = results.secondary_capture(result, source)
    path = tmp_path / "sc.dcm"
    capture.save_as(path)
    assert dciodvfy_errors(path) == []
    back = pydicom.dcmread(path)
    assert back.BurnedInAnnotation == "YES" and back.SeriesDescription == results.DISCLAIMER
    assert back.StudyInstanceUID == source.StudyInstanceUID
    pixels = back.pixel_array
    assert pixels.shape == results.burned_image(result).shape and pixels.shape[2] == 3
    bar = (pixels.shape[0] - results.SC_MIN_SIDE) // 2  # the 224-px film is enlarged to 640 px between two text bars
    assert pixels[:bar].max() == 255 and pixels[:bar].mean() < 60  # white text on black
    assert pixels[-bar:, :, 2].max() < 80 and pixels[-bar:, :, 0].max() > 200  # yellow disclaimer: red+green, no blue
    film = pixels[bar:-bar]
    assert film.std() > 20  # the film itself, with its heatmap colours
    assert not np.array_equal(film[:, :, 0], film[:, :, 2])


def test_film_out_of_scope_gets_a_report_with_the_reason_and_no_score(recommended_model, tmp_path: Path) -> None:
    source = films.wrap_film(FILM, patient_id="T4", age_years=40)
    result = scoring.assess_dataset(source, recommended_model)
    assert not result.scored and result.decided_by == "DICOM header"
    objects = results.result_objects(result, source)
    assert len(objects) == 1  # no secondary capture without a score
    objects[0].save_as(tmp_path / "sr.dcm")
    assert dciodvfy_errors(tmp_path / "sr.dcm") == []
    values = results.read_report(pydicom.dcmread(tmp_path / "sr.dcm"))
    assert "Probability of pneumonia" not in values and values["Finding"] == "Not scored"
    assert "adult" in values["Reason not scored"][0]
