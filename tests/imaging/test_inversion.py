"""core.imaging.inversion: negative (inverted) film detector, its committed coefficients and the field-case negative film."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.imaging import inversion
from core.imaging import decode_xray
from tests.conftest import FIELD_CASES_DIR

FIELD_CASES = FIELD_CASES_DIR  # noqa


def test_thumbnail_features_on_known_pixels() -> None:
    assert np.all(inversion.thumbnail_features(np.full((64, 64), 0.3, np.float32)) == 0.0)  # flat: nothing to say
    left_bright = np.zeros((64, 64), np.float32)
    left_bright[:, :32] = 1.0
    features = inversion.thumbnail_features(left_bright).reshape(16, 16)
    np.testing.assert_allclose(features[:, :8], 1.0)
    np.testing.assert_allclose(features[:, 8:], -1.0)
    np.testing.assert_allclose(inversion.thumbnail_features(1.0 - left_bright), -features.reshape(-1))
    with pytest.raises(ValueError, match="grey pixels"):
        inversion.thumbnail_features(np.zeros((8, 8, 3)))


def test_detector_is_antisymmetric_under_inversion(data_root: Path) -> None:
    detector = inversion.load_detector()
    film = decode_xray(data_root / "test" / "NORMAL" / "IM-0001-0001.jpeg").pixels
    assert detector.probability(film) + detector.probability(1.0 - film) == pytest.approx(1.0, abs=1e-9)


def test_committed_detector_on_real_films_and_their_inversions(data_root: Path, samples_dir: Path) -> None:
    detector = inversion.load_detector()
    assert detector.coefficients.shape == (inversion.THUMBNAIL_SIDE ** 2,)
    assert detector.info["trained_on"].startswith("train split")
    # test-split films (never seen in training): upright, and their inversions inverted
    films = [decode_xray(f).pixels for label in ("NORMAL", "PNEUMONIA") for f in sorted((data_root / "test" / label).glob("*.jpeg"))[::40]]
    assert inversion.accuracy_on(detector, films, upright=True) == 1.0
    assert inversion.accuracy_on(detector, [1.0 - f for f in films], upright=False) == 1.0
    # an adult MONOCHROME1 DICOM decoded correctly (inverted by the decoder) is upright
    assert not detector.is_inverted(decode_xray(samples_dir / "RG1_UNCI.dcm"))


def test_field_case_negative_film_is_detected_and_can_be_turned_the_right_way_up() -> None:
    detector = inversion.load_detector()
    negative = decode_xray(FIELD_CASES / "negative_film_normal_IM-0015.png")
    assert detector.is_inverted(negative)
    upright = inversion.invert(negative)
    np.testing.assert_allclose(upright.pixels, 1.0 - negative.pixels)
    assert not detector.is_inverted(upright)
    assert upright.metadata["inverted_by_guard"] is True and inversion.INVERTED_NOTE in upright.metadata["notes"]
    assert negative.metadata.get("inverted_by_guard") is None  # the original is untouched
    np.testing.assert_allclose(inversion.invert(np.zeros((4, 4), np.float32)), 1.0)


def test_fit_learns_from_a_few_real_films_and_round_trips(data_root: Path, tmp_path: Path) -> None:
    train = [decode_xray(f).pixels for label in ("NORMAL", "PNEUMONIA") for f in sorted((data_root / "train" / label).glob("*.jpeg"))[:20]]
    held = [decode_xray(f).pixels for f in sorted((data_root / "test" / "NORMAL").glob("*.jpeg"))[:10]]
    detector = inversion.fit(train)
    assert detector.info["n_films"] == 40
    assert inversion.accuracy_on(detector, held) >= 0.9 and inversion.accuracy_on(detector, [1 - f for f in held], upright=False) >= 0.9
    again = inversion.InversionDetector.load(detector.save(tmp_path / "inversion.npz"))
    np.testing.assert_array_equal(again.coefficients, detector.coefficients)
    with pytest.raises(ValueError, match="at least 20"):
        inversion.fit(train[:5])
    with pytest.raises(ValueError, match="python -m core.imaging.inversion fit"):
        inversion.load_detector(tmp_path / "missing.npz")
