"""core.imaging.dicom_decoders: the imagecodecs plugin for 12-bit JPEG Extended, and a decoder for every syntax pydicom knows."""

from __future__ import annotations

from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom import uid
from pydicom.encaps import generate_frames
from pydicom.pixels import pixel_array
from pydicom.pixels.decoders import JPEGExtended12BitDecoder
from pydicom.pixels.decoders.base import get_decoder

from core.imaging import dicom_decoders
from tests.conftest import FIELD_CASES_DIR

FIELD_CASES = FIELD_CASES_DIR  # noqa

# Every compressed transfer syntax pydicom 3 can decode (its plugin table), plus the deflated one.
COMPRESSED = [uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLossless, uid.JPEGLosslessSV1, uid.JPEGLSLossless,
              uid.JPEGLSNearLossless, uid.JPEG2000Lossless, uid.JPEG2000, uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL,
              uid.HTJ2K, uid.RLELossless, uid.DeflatedExplicitVRLittleEndian]


@pytest.mark.parametrize("syntax", COMPRESSED, ids=lambda s: s.name)
def test_every_compressed_transfer_syntax_has_an_installed_decoder(syntax):
    dicom_decoders.register()
    decoder = get_decoder(syntax)
    assert decoder.is_available, f"no decoder installed for {syntax.name}: check requirements.txt"


def test_requirements_pin_every_decoder_and_no_gpl_one(project_root):
    lines = [line.split("#")[0].strip() for line in (project_root / "requirements.txt").read_text().splitlines()]
    pinned = dict(line.split("==") for line in lines if "==" in line)
    for package in ("pydicom", "pylibjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle", "python-gdcm", "pyjpegls", "imagecodecs"):
        assert package in pinned, f"{package} is not pinned in requirements.txt"
    # GPL-3.0 (pylibjpeg-libjpeg) and GPL-2.0 binary wheels (pillow-heif) stay out of the runtime: THIRD_PARTY_NOTICES.md.
    assert not {"pylibjpeg-libjpeg", "pillow-heif"} & {line.split("==")[0] for line in lines if line}


def test_register_is_idempotent_and_adds_the_imagecodecs_plugin():
    dicom_decoders.register()
    dicom_decoders.register()
    assert list(JPEGExtended12BitDecoder.available_plugins).count(dicom_decoders.PLUGIN_LABEL) == 1


def test_preferred_plugin_only_for_12_bit_jpeg_extended():
    assert dicom_decoders.preferred_plugin(uid.JPEGExtended12Bit, 12) == "imagecodecs"
    assert dicom_decoders.preferred_plugin(uid.JPEGExtended12Bit, 8) == ""  # GDCM / Pillow read 8-bit
    assert dicom_decoders.preferred_plugin(uid.JPEGLosslessSV1, 16) == ""
    assert not dicom_decoders.is_available(uid.JPEGLosslessSV1)


def test_plugin_decodes_the_12_bit_field_case_like_libjpeg_turbo():
    dicom_decoders.register()
    ds = pydicom.dcmread(FIELD_CASES / "dicom_jpeg_extended_12bit.dcm")
    decoded = pixel_array(ds, decoding_plugin=dicom_decoders.PLUGIN_LABEL)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    assert decoded.dtype == np.uint16 and decoded.shape == (1024, 256)
    np.testing.assert_array_equal(decoded, imagecodecs.jpeg8_decode(frame))
    assert (int(decoded.min()), int(decoded.max())) == (0, 264)
