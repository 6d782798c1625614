"""core.guard: calibration on validation images, flags for photos and documents, few flags for real test X-rays."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from core import guard as ood, predict
from core.imaging import decode_xray
from tests.conftest import FIELD_CASES_DIR


@pytest.fixture(scope="module")
def calibrated(tiny_cnn_dir: Path, data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[predict.Scorer, Path]:
    """A copy of the tiny model folder with ood.npz written by the command line."""
    import shutil

    folder = tmp_path_factory.mktemp("ood") / "tiny_cnn"
    shutil.copytree(tiny_cnn_dir, folder)
    assert ood.load_calibration(folder) is None
    assert ood.main([str(folder), "--data-root", str(data_root)]) == 0
    return predict.load_scorer(folder), folder


def _colour_photo() -> bytes:
    image = np.zeros((240, 320, 3), np.uint8)
    image[..., 0] = np.linspace(0, 255, 320)[None]
    image[..., 1] = 90
    image[..., 2] = np.linspace(255, 0, 240)[:, None]
    return cv2.imencode(".jpg", image)[1].tobytes()


def _document() -> bytes:
    page = np.full((800, 600), 245, np.uint8)
    for line in range(28):
        cv2.putText(page, "Discharge summary: patient stable, follow-up in two weeks.", (30, 40 + 26 * line),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, 20, 1)
    return cv2.imencode(".png", page)[1].tobytes()


def test_calibration_uses_the_validation_rows_and_flags_few_of_them(calibrated: tuple[predict.Scorer, Path]) -> None:
    _, folder = calibrated
    calibration = ood.load_calibration(folder)
    assert calibration.n_images == len(ood.validation_files(folder)) == 120
    assert calibration.info["split"] == "val" and calibration.quantile == 0.99
    assert calibration.validation_flag_rate <= 0.05


def test_saved_calibration_round_trips(calibrated: tuple[predict.Scorer, Path], data_root: Path) -> None:
    scorer, folder = calibrated
    calibration = ood.load_calibration(folder)
    again = ood.OodCalibration.load(calibration.save(folder / "copy.npz"))
    image = decode_xray(data_root / "test" / "NORMAL" / "IM-0003-0001.jpeg")
    first, second = ood.check(scorer, calibration, image), ood.check(scorer, again, image)
    assert first.feature_distance == pytest.approx(second.feature_distance)
    assert first.appearance_distance == pytest.approx(second.appearance_distance)


def test_photo_and_document_are_flagged_with_reasons(calibrated: tuple[predict.Scorer, Path]) -> None:
    scorer, folder = calibrated
    calibration = ood.load_calibration(folder)
    photo = _colour_photo()
    result = ood.check(scorer, calibration, decode_xray(photo, name="holiday.jpg"), raw_bytes=photo)
    assert result.flagged and any("colour" in reason for reason in result.reasons)
    document = _document()
    result = ood.check(scorer, calibration, decode_xray(document, name="letter.png"), raw_bytes=document)
    assert result.flagged and result.appearance_distance > result.appearance_threshold
    assert "does not look like the chest X-rays" in result.message()


def test_real_test_xrays_are_rarely_flagged(calibrated: tuple[predict.Scorer, Path], data_root: Path) -> None:
    scorer, folder = calibrated
    calibration = ood.load_calibration(folder)
    # every 8th test image of each class: a systematic sample of a different acquisition than train/val
    files = [f for label in ("NORMAL", "PNEUMONIA") for f in sorted((data_root / "test" / label).glob("*.jpeg"))[::8]]
    flagged = [ood.check(scorer, calibration, decode_xray(f), raw_bytes=f.read_bytes()) for f in files]
    assert len(files) == 79 and np.mean([r.flagged for r in flagged]) <= 0.10
    assert all(r.saturation is not None and r.saturation < calibration.saturation_limit for r in flagged)
    assert all(r.message() == "" for r in flagged if not r.flagged)


def test_colour_saturation_and_statistics_on_known_pixels() -> None:
    grey = np.full((10, 10, 3), 128, np.uint8)
    assert ood.colour_saturation(cv2.imencode(".png", grey)[1].tobytes()) == 0.0
    red = np.zeros((10, 10, 3), np.uint8)
    red[..., 2] = 255
    assert ood.colour_saturation(cv2.imencode(".png", red)[1].tobytes()) == pytest.approx(1.0)
    assert ood.colour_saturation(b"") is None
    stats = dict(zip(ood.STATISTIC_NAMES, ood.image_statistics(np.zeros((64, 64), np.float32))))
    assert stats["mean"] == 0.0 and stats["dark_fraction"] == 1.0 and stats["edge_density"] == 0.0


def test_calibration_of_another_model_version_is_not_used(calibrated: tuple[predict.Scorer, Path], tmp_path: Path) -> None:
    import shutil

    _, folder = calibrated
    copy = tmp_path / "tiny_cnn"
    shutil.copytree(folder, copy)
    assert ood.load_calibration(copy) is not None
    with (copy / "model.keras").open("ab") as handle:  # any change of the model file invalidates the calibration
        handle.write(b"\0")
    assert ood.load_calibration(copy) is None


def test_missing_validation_images_give_an_actionable_error(tiny_cnn_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--data-root"):
        ood.validation_files(tiny_cnn_dir, tmp_path)


# --------------------------------------------------------------------------------------------- the whole guard

FIELD_CASES = FIELD_CASES_DIR  # noqa


def test_chest_film_check_on_known_inputs_and_committed_asset(data_root: Path) -> None:
    flat = np.full((64, 64), 0.5, np.float32)
    assert np.all(ood.orientation_histograms(flat) == 0.0)  # no gradient, no orientation
    stripes = np.zeros((64, 64), np.float32)
    stripes[:, ::4] = 1.0  # vertical edges only: horizontal gradients, orientation bin 0
    histograms = ood.orientation_histograms(stripes).reshape(8, 8, 9)
    assert np.all(histograms[2:6, 2:6, 0] > 0.9) and np.all(histograms[2:6, 2:6, 1:] < 1e-6)
    assert ood.chest_film_features(flat).shape == (832,)
    model = ood.load_chest_film()
    assert model.info["trained_on"].startswith("train split") and model.info["quantile"] == ood.CHEST_FILM_QUANTILE
    # a test film (never fitted on) is a typical chest film; the same film turned a quarter turn is not
    film = decode_xray(data_root / "test" / "NORMAL" / "IM-0001-0001.jpeg").pixels
    assert model.distance(ood.chest_film_features(film))[0] <= model.threshold
    assert model.distance(ood.chest_film_features(np.rot90(film)))[0] > model.threshold


def test_chest_film_fit_round_trips_and_refuses_too_few_films(data_root: Path, tmp_path: Path) -> None:
    files = sorted((data_root / "train" / "NORMAL").glob("*.jpeg"))[:90]
    features = np.stack([ood.chest_film_features(decode_xray(f)) for f in files])
    model = ood.fit_chest_film(features)
    assert model.info["n_films"] == 90 and model.scale.shape == (4,) and model.threshold > 0
    again = ood.ChestFilmModel.load(model.save(tmp_path / "chest_film.npz"))
    np.testing.assert_allclose(again.distance(features[:3]), model.distance(features[:3]))
    assert np.mean(model.distance(features) <= model.threshold) >= 0.9  # the films it was fitted on look like themselves
    with pytest.raises(ValueError, match="training films"):
        ood.fit_chest_film(features[:20])


def test_guard_flags_the_field_cases_with_reasons(tiny_cnn_dir: Path) -> None:
    scorer = predict.load_scorer(tiny_cnn_dir)  # no ood.npz: the model-independent checks only
    negative = ood.assess(scorer, None, decode_xray(FIELD_CASES / "negative_film_normal_IM-0015.png"))
    assert negative.flagged and negative.inverted and negative.reasons[0] == "inverted (negative film)"
    assert "looks inverted (white lungs, dark bones)" in negative.message()
    for name in ("adult_pa_nih_00027426_000.png", "dicom_extremity_not_chest.dcm"):
        verdict = ood.assess(scorer, None, decode_xray(FIELD_CASES / name))
        assert verdict.flagged and "out of distribution: not like the paediatric chest films" in verdict.reasons, name
        assert verdict.chest_film_distance > verdict.chest_film_threshold
        assert "does not look like the chest X-rays" in verdict.message() and not verdict.every_check_passed
    assert not ood.assess(scorer, None, decode_xray(FIELD_CASES / "dicom_extremity_not_chest.dcm")).inverted
    photo = _colour_photo()
    verdict = ood.assess(scorer, None, decode_xray(photo, name="holiday.jpg"), raw_bytes=photo)
    assert "colour image" in verdict.reasons
    small = ood.assess(scorer, None, np.full((40, 40), 0.5, np.float32))
    assert "smaller than the model input" in small.reasons  # 40 px < the 64-px input


def test_guard_status_needs_every_check_to_reassure(calibrated: tuple[predict.Scorer, Path], data_root: Path) -> None:
    scorer, folder = calibrated
    calibration = ood.load_calibration(folder)
    film = decode_xray(data_root / "test" / "NORMAL" / "IM-0001-0001.jpeg")
    without = ood.assess(scorer, None, film)
    assert without.status == ood.VERDICT_PARTIAL and not without.every_check_passed and not without.flagged
    assert "no model-specific check (no ood.npz)" in without.reasons
    with_check = ood.assess(scorer, calibration, film)
    assert with_check.model_check is not None
    assert with_check.every_check_passed == (not with_check.model_check.flagged)  # whatever this tiny model learned
    noted = dataclasses.replace(film, metadata={**film.metadata, "notes": ["16-bit PNG holding 12-bit values (...)"]})
    verdict = ood.assess(scorer, None, noted)
    assert "bit depth rescaled" in verdict.reasons and verdict.row()["guard_details"].endswith("(...)")
    assert ood.note_codes(["The file holds 3 frames; the first one is shown and scored.", "something else"]) == [
        "first frame of several", "decoding note"]
    batch, verdicts = ood.assess_many(scorer, calibration, [film, noted])
    assert [v.model_check.feature_distance for v in verdicts] == pytest.approx([with_check.model_check.feature_distance] * 2)


def test_evaluate_writes_the_guard_into_the_card(calibrated: tuple[predict.Scorer, Path], data_root: Path, tmp_path: Path) -> None:
    import json
    import shutil

    _, folder = calibrated
    copy = tmp_path / "tiny_cnn"
    shutil.copytree(folder, copy)
    (copy / "card.md").write_text("# Tiny test CNN\n")
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copy(FIELD_CASES / "adult_pa_nih_00027426_000.png", extra)
    assert ood.main(["evaluate", str(copy), "--data-root", str(data_root), "--extra", f"site adults={extra}"]) == 0
    guard = json.loads((copy / "card.json").read_text())["guard"]
    rows = {row["set"]: row for row in guard["sets"]}
    assert rows["site adults"]["n"] == 1 and rows["site adults"]["flagged"] == 1
    assert rows["validation films"]["n"] == 120 and not rows["validation films"]["should_flag"]
    assert rows["validation films inverted"]["derived"] and rows["adult films rotated 90 degrees"]["derived"]
    assert guard["false_alarm_rate_validation"] == rows["validation films"]["rate"]
    real = [r for r in guard["sets"] if r["should_flag"] and not r["derived"]]
    assert guard["detection_rate_real_out_of_distribution"] == pytest.approx(sum(r["flagged"] for r in real) / sum(r["n"] for r in real), abs=1e-4)
    markdown = (copy / "card.md").read_text()
    assert markdown.startswith("# Tiny test CNN") and markdown.count(ood.GUARD_MD_START) == 1
    ood.write_guard_card(copy, guard)  # a second run replaces the section
    assert (copy / "card.md").read_text().count("## Out-of-distribution guard") == 1
