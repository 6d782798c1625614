"""core.ood: calibration on validation images, flags for photos and documents, few flags for real test X-rays."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from core import ood, predict
from core.imaging import decode_xray


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
