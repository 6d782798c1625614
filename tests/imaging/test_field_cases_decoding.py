"""Real-world inputs of issue 13 (tests/fixtures/field_cases/, see its README) decode to the right pixels, with notes.

Each file is checked against an independent reference: the same film stored another way (with and without a
Transfer Syntax UID, lossless and lossy JPEG of one image, the Kaggle JPEG a 16-bit PNG was made from), or a
second decoder (imagecodecs) reading the same codestream. Every compressed transfer syntax pydicom supports is
also round-tripped from a real film through the installed encoders. The batch CLI scores the CD export folder.
"""

from __future__ import annotations

import csv
import io
import logging
import subprocess
import sys
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    JPEG2000Lossless,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from core import predict
from core.imaging import decode_xray
from core.guard import scope
from tests.conftest import FIELD_CASES_DIR

FIELD_CASES = FIELD_CASES_DIR  # noqa
CD_EXPORT = FIELD_CASES / "cd_export_folder"
CD_DICOM = CD_EXPORT / "DICOM" / "PT000000" / "ST000000" / "SE000000" / "IM000000"
CD_JPEG = CD_DICOM.with_name("SCAN0001.JPG")
KAGGLE_IM_0001 = "test/NORMAL/IM-0001-0001.jpeg"
KAGGLE_IM_0015 = "test/NORMAL/IM-0015-0001.jpeg"


def _stored_values(path: Path) -> np.ndarray:
    """The stored pixel values of a DICOM file, decoded by imagecodecs (not by the plugins decode_xray uses)."""
    ds = pydicom.dcmread(path)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    syntax = ds.file_meta.TransferSyntaxUID
    values = (imagecodecs.jpegls_decode(frame) if syntax == JPEGLSLossless else imagecodecs.jpeg8_decode(frame)).astype(np.int64)
    if ds.PixelRepresentation == 1:  # two's complement in BitsStored bits
        bits = int(ds.BitsStored)
        values = np.where(values >= 2 ** (bits - 1), values - 2**bits, values)
    return values


def _min_max(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    return (values - values.min()) / (values.max() - values.min())


def _without_transfer_syntax(path: Path) -> bytes:
    ds = pydicom.dcmread(path)
    del ds.file_meta.TransferSyntaxUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    return buffer.getvalue()


# ------------------------------------------------------------------------------ DICOM without Transfer Syntax UID
def test_dicom_without_transfer_syntax_uid_decodes_like_the_same_film_with_one():
    missing = decode_xray(FIELD_CASES / "dicom_no_transfer_syntax_uid.dcm")
    stated = decode_xray(CD_DICOM)  # the same resized RG1_UNCI film, its Transfer Syntax UID intact
    assert "TransferSyntaxUID" not in pydicom.dcmread(FIELD_CASES / "dicom_no_transfer_syntax_uid.dcm").file_meta
    np.testing.assert_array_equal(missing.pixels, stated.pixels)
    assert missing.shape == (651, 613) and missing.metadata["inverted"] is True  # MONOCHROME1: bones white
    assert 0.11 < float(missing.pixels.min()) < 0.13 and 0.96 < float(missing.pixels.max()) < 0.98
    assert missing.metadata["transfer_syntax"] == "Explicit VR Little Endian"
    assert missing.metadata["transfer_syntax_inferred"] is True and stated.metadata["transfer_syntax_inferred"] is False
    (note,) = missing.notes
    assert "no Transfer Syntax UID" in note and "Explicit VR Little Endian" in note and "corrupt" not in note
    assert stated.notes == ()


@pytest.mark.parametrize("name", ["dicom_jpeg_lossless_sv1.dcm", "dicom_jpeg_ls_signed_15bit.dcm",
                                  "dicom_jpeg_extended_12bit.dcm", "dicom_extremity_not_chest.dcm"])
def test_compressed_dicom_without_transfer_syntax_uid_is_read_from_its_codestream(name):
    stated = decode_xray(FIELD_CASES / name)
    missing = decode_xray(_without_transfer_syntax(FIELD_CASES / name), name=name)
    np.testing.assert_array_equal(missing.pixels, stated.pixels)
    assert missing.metadata["transfer_syntax"] == stated.metadata["transfer_syntax"]
    assert "compressed pixel data" in missing.notes[0] and stated.metadata["transfer_syntax"] in missing.notes[0]


# ------------------------------------------------------------------------------ compressed transfer syntaxes
def test_jpeg_lossless_sv1_matches_a_second_decoder():
    decoded = decode_xray(FIELD_CASES / "dicom_jpeg_lossless_sv1.dcm")
    assert decoded.metadata["transfer_syntax"].startswith("JPEG Lossless, Non-Hierarchical, First-Order")
    values = _stored_values(FIELD_CASES / "dicom_jpeg_lossless_sv1.dcm")
    assert (values.min(), values.max()) == (0, 278)
    np.testing.assert_allclose(decoded.pixels, _min_max(values), atol=1e-6)  # no window in the file: min-max


def test_jpeg_ls_signed_15_bit_matches_a_second_decoder():
    decoded = decode_xray(FIELD_CASES / "dicom_jpeg_ls_signed_15bit.dcm")
    assert decoded.metadata["transfer_syntax"] == "JPEG-LS Lossless Image Compression"
    assert decoded.metadata["pixel_representation"] == 1 and decoded.metadata["bit_depth"] == 15
    values = _stored_values(FIELD_CASES / "dicom_jpeg_ls_signed_15bit.dcm")
    assert (values.min(), values.max()) == (-16384, 16383)  # the whole signed 15-bit range
    np.testing.assert_allclose(decoded.pixels, _min_max(values), atol=1e-6)


def test_jpeg_extended_12_bit_is_the_lossy_copy_of_the_lossless_film():
    lossy = decode_xray(FIELD_CASES / "dicom_jpeg_extended_12bit.dcm")
    assert lossy.metadata["transfer_syntax"] == "JPEG Extended (Process 2 and 4)" and lossy.metadata["bit_depth"] == 12
    lossless = _stored_values(FIELD_CASES / "dicom_jpeg_lossless_sv1.dcm")
    # pydicom's test files JPGExtended.dcm and JPEG-LL.dcm hold one image: 12-bit lossy and 16-bit lossless.
    lossy_values = np.rint(lossy.pixels * 264).astype(np.int64)  # min-max of stored values 0..264
    assert np.corrcoef(lossy_values.ravel(), lossless.ravel())[0, 1] > 0.98
    assert np.abs(lossy_values - lossless).mean() < 4  # grey levels out of 4095


def _real_12_bit_film(data_root: Path) -> np.ndarray:
    """A real Kaggle film as 12-bit detector values (uint16 0..4095, 96 x 112)."""
    import cv2

    film = decode_xray(data_root / KAGGLE_IM_0001).pixels
    return np.rint(cv2.resize(film, (112, 96), interpolation=cv2.INTER_AREA) * 4095).astype(np.uint16)


def _dicom_of(values: np.ndarray, syntax: UID) -> bytes:
    """A CR DICOM of 12-bit `values` compressed as `syntax` with the installed encoders."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Modality, ds.Rows, ds.Columns = "CR", *values.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelData = values.tobytes()
    if syntax in (RLELossless, JPEGLSLossless, JPEG2000Lossless):
        ds.compress(syntax)  # pydicom's own encoders (pydicom / pyjpegls / pylibjpeg-openjpeg)
    elif syntax != ExplicitVRLittleEndian and syntax != DeflatedExplicitVRLittleEndian:
        encode = {JPEGLosslessSV1: lambda v: imagecodecs.jpeg8_encode(v, lossless=True, predictor=1, bitspersample=12),
                  JPEGLossless: lambda v: imagecodecs.jpeg8_encode(v, lossless=True, predictor=6, bitspersample=12),
                  JPEGExtended12Bit: lambda v: imagecodecs.jpeg8_encode(v, level=95, bitspersample=12),
                  HTJ2KLossless: lambda v: imagecodecs.htj2k_encode(v, level=0)}[syntax]
        ds.PixelData = encapsulate([encode(values)])
        ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
        ds.file_meta.TransferSyntaxUID = syntax
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless, JPEGLSLossless,
                                    JPEG2000Lossless, HTJ2KLossless, JPEGLosslessSV1, JPEGLossless])
def test_every_lossless_transfer_syntax_decodes_a_real_film_exactly(data_root, syntax):
    values = _real_12_bit_film(data_root)
    decoded = decode_xray(_dicom_of(values, syntax), name="film.dcm")
    assert decoded.metadata["transfer_syntax"] == syntax.name
    np.testing.assert_allclose(decoded.pixels, _min_max(values), atol=1e-6)


def test_lossy_12_bit_jpeg_decodes_a_real_film_closely(data_root):
    values = _real_12_bit_film(data_root)
    decoded = decode_xray(_dicom_of(values, JPEGExtended12Bit), name="film.dcm")
    assert decoded.metadata["transfer_syntax"] == JPEGExtended12Bit.name
    assert np.abs(decoded.pixels - _min_max(values)).mean() < 0.005


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless, HTJ2KLossless, JPEGLosslessSV1,
                                    JPEGLossless, JPEGExtended12Bit])
def test_headerless_compressed_dicom_is_recognised_by_its_codestream(data_root, syntax):
    values = _real_12_bit_film(data_root)
    ds = pydicom.dcmread(io.BytesIO(_dicom_of(values, syntax)))
    ds.file_meta = FileMetaDataset()  # no preamble, no file meta: as some research exports write them
    ds.preamble = None
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False, implicit_vr=False, little_endian=True)
    decoded = decode_xray(buffer.getvalue(), name="IM000001")
    reference = decode_xray(_dicom_of(values, syntax))
    np.testing.assert_allclose(decoded.pixels, reference.pixels, atol=1e-6)
    inferred = decoded.metadata["transfer_syntax"]
    # A JPEG 2000 codestream does not say whether the export called it lossless: the generic UID is inferred.
    expected = {JPEG2000Lossless: "JPEG 2000 Image Compression", HTJ2KLossless: "High-Throughput JPEG 2000 Image Compression"}
    assert inferred == expected.get(syntax, syntax.name)
    assert "no Transfer Syntax UID nor file meta header" in decoded.notes[0]


def test_unsupported_compression_is_named_not_called_corrupt(data_root):
    values = _real_12_bit_film(data_root)
    ds = pydicom.dcmread(io.BytesIO(_dicom_of(values, JPEGLosslessSV1)))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video: pydicom has no decoder for it
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(ValueError, match="MPEG2") as error:
        decode_xray(buffer.getvalue(), name="clip.dcm")
    assert "corrupt" not in str(error.value) and "cannot decode" in str(error.value)


# ------------------------------------------------------------------------------ 16-bit PNG holding 12-bit values
def test_sixteen_bit_png_with_12_bit_values_looks_like_the_original_film(data_root):
    decoded = decode_xray(FIELD_CASES / "png16_with_12bit_values_normal_IM-0001.png")
    original = decode_xray(data_root / KAGGLE_IM_0001)
    assert decoded.shape == original.shape == (224, 224)
    assert np.abs(decoded.pixels - original.pixels).mean() < 0.001  # 65535 would give a mean 16x too dark
    assert decoded.metadata["significant_bits"] == 12 and decoded.metadata["value_scale"] == 4095
    (note,) = decoded.notes
    assert "12-bit" in note and "4,095 instead of 65,535" in note and "no bit depth is declared" in note


# ------------------------------------------------------------------------------ the other field cases decode as stored
def test_negative_film_decodes_as_stored_the_inverse_of_the_kaggle_film(data_root):
    negative = decode_xray(FIELD_CASES / "negative_film_normal_IM-0015.png")
    original = decode_xray(data_root / KAGGLE_IM_0015)
    np.testing.assert_allclose(negative.pixels, 1.0 - original.pixels, atol=1e-6)  # decoding keeps what is stored
    assert negative.notes == ()


def test_adult_png_and_extremity_dicom_decode():
    adult = decode_xray(FIELD_CASES / "adult_pa_nih_00027426_000.png")
    assert adult.shape == (512, 512) and adult.metadata["mode"] == "L" and adult.notes == ()
    extremity = decode_xray(FIELD_CASES / "dicom_extremity_not_chest.dcm")
    assert extremity.shape == (1760, 1760) and extremity.metadata["compressed"] is True
    assert extremity.metadata["inverted"] is True and extremity.metadata["transfer_syntax"] == "JPEG 2000 Image Compression"


# ------------------------------------------------------------------------------ the batch CLI on the field cases
def _rows(path: Path) -> dict[str, dict]:
    with path.open() as handle:
        return {Path(row["file"]).name: row for row in csv.DictReader(handle)}


def test_cli_scores_both_files_of_the_cd_export(tiny_cnn_dir: Path, tmp_path: Path, caplog):
    out = tmp_path / "cd.csv"
    with caplog.at_level(logging.WARNING, logger="core.predict"):
        assert predict.main(["--model", str(tiny_cnn_dir), str(CD_EXPORT), "--out", str(out)]) == 0
    rows = _rows(out)
    assert set(rows) == {"IM000000", "SCAN0001.JPG"}
    scorer = predict.load_scorer(tiny_cnn_dir)
    for name, fmt in (("IM000000", "DICOM"), ("SCAN0001.JPG", "JPEG")):
        assert rows[name]["status"] == "ok" and rows[name]["format"] == fmt
    # The JPEG is a child's film (test film IM-0001-0001): scored. The DICOM is an adult's PA chest CR (pydicom-data
    # RG1_UNCI): outside the models' scope, so no score and the decision WITHHELD, with the guard's reason.
    assert float(rows["SCAN0001.JPG"]["probability"]) == pytest.approx(scorer.probability(decode_xray(CD_JPEG)), abs=1e-5)
    assert rows["SCAN0001.JPG"]["decision"] in {"NORMAL", "PNEUMONIA"}
    assert rows["IM000000"]["probability"] == "" and rows["IM000000"]["decision"] == scope.WITHHELD
    assert scope.NOT_A_CHEST_FILM in rows["IM000000"]["guard_reasons"]
    assert (rows["IM000000"]["width"], rows["IM000000"]["height"]) == ("613", "651")
    assert "Skipped" not in caplog.text  # nothing in this folder is left out
    # Asked for explicitly, the raw score of the withheld film is written too, and it is the scorer's own.
    raw = tmp_path / "cd-raw.csv"
    assert predict.main(["--model", str(tiny_cnn_dir), str(CD_EXPORT), "--out", str(raw), "--raw-scores"]) == 0
    raw_rows = _rows(raw)
    for name, path in (("IM000000", CD_DICOM), ("SCAN0001.JPG", CD_JPEG)):
        assert float(raw_rows[name]["probability"]) == pytest.approx(scorer.probability(decode_xray(path)), abs=1e-5)
    assert raw_rows["IM000000"]["decision"] == scope.WITHHELD  # a raw score never turns into a verdict


# The field cases the guard puts outside every model's scope (README of tests/fixtures/field_cases): adult films and
# a non-chest CR. Their decision is withheld and their score left empty; every other case gets a score.
OUT_OF_SCOPE_CASES = {"adult_pa_nih_00027426_000.png", "dicom_extremity_not_chest.dcm", "dicom_no_transfer_syntax_uid.dcm", "IM000000"}


def test_cli_scores_every_field_case_and_reports_what_it_skips(tiny_cnn_dir: Path, tmp_path: Path, caplog):
    out = tmp_path / "field.csv"
    with caplog.at_level(logging.INFO, logger="core.predict"):
        assert predict.main(["--model", str(tiny_cnn_dir), str(FIELD_CASES), "--out", str(out)]) == 0
    rows = _rows(out)
    images = {p.name for p in FIELD_CASES.rglob("*") if p.is_file() and p.name != "README.md"}
    assert set(rows) == images and len(images) == 10
    assert all(row["status"] == "ok" for row in rows.values()), rows
    withheld = {name for name, row in rows.items() if row["decision"] == scope.WITHHELD}
    assert OUT_OF_SCOPE_CASES <= withheld, withheld
    for name, row in rows.items():
        if name in withheld:
            assert row["probability"] == "" and row["guard_reasons"], row
        else:
            assert 0.0 <= float(row["probability"]) <= 1.0 and row["decision"] in {"NORMAL", "PNEUMONIA"}, row
    assert f"Skipped {FIELD_CASES / 'README.md'}: not an X-ray image: a text file" in caplog.text
    assert "Scored 10 file(s), 0 could not be read, 1 skipped" in caplog.text
    # No decoder's failure is logged for a valid file (pydicom logs each plugin that fails before one succeeds).
    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def test_folder_walk_sniffs_files_without_suffix_and_reports_every_skipped_one(tmp_path: Path, caplog):
    export = tmp_path / "CD"
    series = export / "DICOM" / "PT000000" / "ST000000" / "SE000000"
    series.mkdir(parents=True)
    (series / "IM000000").write_bytes(CD_DICOM.read_bytes())  # 'DICM' at offset 128
    ds = pydicom.dcmread(CD_DICOM)
    ds.file_meta, ds.preamble = FileMetaDataset(), None
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False, implicit_vr=True, little_endian=True)
    (series / "IM000001").write_bytes(buffer.getvalue())  # no preamble, no file meta: implicit VR little endian
    (series / "SCAN0001.JPG").write_bytes(CD_JPEG.read_bytes())
    (series / "SCAN0002").write_bytes(CD_JPEG.read_bytes())  # a JPEG without a suffix
    index = Dataset()
    index.file_meta = FileMetaDataset()
    index.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    index.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    index.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    index.FileSetID = "EXPORT"
    index.save_as(export / "INDEX", enforce_file_format=True)  # a DICOMDIR under another name
    (export / "DICOMDIR").write_bytes((export / "INDEX").read_bytes())
    (export / "README.TXT").write_text("Viewer: double-click VIEWER.EXE\n")
    (export / "AUTORUN.INF").write_text("[autorun]\nopen=VIEWER.EXE\n")
    (export / "EMPTY").write_bytes(b"")
    (export / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    (export / ".thumbs").mkdir()
    (export / ".thumbs" / "t.jpg").write_bytes(CD_JPEG.read_bytes())
    skipped: list[tuple[Path, str]] = []
    with caplog.at_level(logging.WARNING, logger="core.predict"):
        found = list(predict.iter_image_files([export], skipped=skipped))
    assert [p.name for p in found] == ["IM000000", "IM000001", "SCAN0001.JPG", "SCAN0002"]
    reasons = {path.name: reason for path, reason in skipped}
    assert set(reasons) == {"INDEX", "DICOMDIR", "README.TXT", "AUTORUN.INF", "EMPTY", ".DS_Store", ".thumbs"}
    assert "DICOMDIR index" in reasons["INDEX"] and "DICOMDIR index" in reasons["DICOMDIR"]
    assert "a text file" in reasons["README.TXT"] and "a text file" in reasons["AUTORUN.INF"]
    assert "empty file" in reasons["EMPTY"] and "hidden file" in reasons[".DS_Store"] and "hidden folder" in reasons[".thumbs"]
    for path, reason in skipped:
        assert f"Skipped {path}: {reason}" in caplog.text
    decoded = [decode_xray(path) for path in found]  # every file found decodes
    np.testing.assert_array_equal(decoded[0].pixels, decoded[1].pixels)


def test_cli_help_names_a_shipped_model_folder(project_root: Path):
    result = subprocess.run([sys.executable, "-m", "core.predict", "--help"], cwd=project_root, capture_output=True,
                            text=True, check=True)
    assert predict.EXAMPLE_MODEL in " ".join(result.stdout.split()).replace("- ", "-")
    assert (project_root / predict.EXAMPLE_MODEL / "model.keras").is_file()
