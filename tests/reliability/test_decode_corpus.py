"""Every corpus file through core.imaging.decode_xray: a readable refusal or the right pixels, never another exception."""

from __future__ import annotations

import numpy as np
import pytest

from core import config
from core.imaging import InvalidImageError, decode_xray
from tests.reliability.corpus import HUGE_SIDE

CASE_NAMES = [
    "empty.png", "truncated.jpeg", "broken_crc.png", "notes.png", "scan.png", "xrays.zip", "bomb.png", "huge.jpeg",
    "icon.png", "grey16.png", "rgba.png", "cmyk.jpeg", "palette.gif", "rotated.jpeg", "report.dcm", "RG1_UNCI.dcm",
    "RG1_J2KI.dcm", "holiday.jpeg",
]


def huge_fits_the_limits() -> bool:
    """True when a HUGE_SIDE x HUGE_SIDE image is inside the decoding limits of core.config."""
    return HUGE_SIDE <= config.MAX_IMAGE_SIDE and HUGE_SIDE * HUGE_SIDE <= config.MAX_IMAGE_PIXELS


def check_refusal_message(case, message: str) -> None:
    """A refusal names the file, says what is wrong in the case's words, and is not a stack trace."""
    assert case.filename in message, message
    assert any(word.lower() in message.lower() for word in case.words), f"{case.what}: {message}"
    assert "Traceback" not in message and len(message) < 600


def test_corpus_lists_every_case(corpus) -> None:
    assert sorted(corpus) == sorted(CASE_NAMES)
    assert len(corpus["bomb.png"].data) < 200_000  # a few hundred KB that would decode to 900 Mpx


@pytest.mark.parametrize("name", CASE_NAMES)
def test_decode_xray_refuses_clearly_or_decodes_correctly(corpus, name: str) -> None:
    case = corpus[name]
    if case.expect == "refuse":
        with pytest.raises(InvalidImageError) as error:
            decode_xray(case.data, name=case.filename)
        check_refusal_message(case, str(error.value))
        return
    if case.expect == "huge":
        if huge_fits_the_limits():
            decoded = decode_xray(case.data, name=case.filename)
            assert decoded.shape == (HUGE_SIDE, HUGE_SIDE)
        else:
            with pytest.raises(InvalidImageError) as error:
                decode_xray(case.data, name=case.filename)
            message = str(error.value)
            assert case.filename in message and f"{HUGE_SIDE * HUGE_SIDE:,}" in message.replace(" ", ""), message
        return
    decoded = decode_xray(case.data, name=case.filename)
    reference = case.reference()
    assert decoded.pixels.dtype == np.float32 and decoded.pixels.ndim == 2
    assert decoded.shape == (case.shape or reference.shape)
    error = np.abs(decoded.pixels - reference)
    assert (error.mean() if case.mean_error else error.max()) <= case.atol, f"{case.what}: error {error.max():.4g}"


def test_decode_accepts_a_path_as_well_as_bytes(corpus_dir, corpus) -> None:
    for name in ("rotated.jpeg", "RG1_UNCI.dcm"):
        np.testing.assert_array_equal(decode_xray(corpus_dir / name).pixels, decode_xray(corpus[name].data, name=name).pixels)
    with pytest.raises(InvalidImageError, match="notes.png"):
        decode_xray(corpus_dir / "notes.png")


def test_an_image_inside_the_configured_limits_is_decoded(data_root) -> None:
    """core.config allows MAX_IMAGE_PIXELS pixels: a real X-ray upscaled to 9500x9500 (90 Mpx) is inside that limit."""
    import cv2

    side = 9500
    assert side <= config.MAX_IMAGE_SIDE and side * side <= config.MAX_IMAGE_PIXELS
    grey = cv2.imread(str(data_root / "test/PNEUMONIA/person100_bacteria_475.jpeg"), cv2.IMREAD_GRAYSCALE)
    data = cv2.imencode(".jpg", cv2.resize(grey, (side, side)), [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
    decoded = decode_xray(data, name="big.jpeg")
    assert decoded.shape == (side, side)
