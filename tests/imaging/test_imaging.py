"""core.imaging: real X-rays decode to known pixels; every bad input raises InvalidImageError with a useful message."""

from __future__ import annotations

import io
import logging
import struct
import zipfile
import zlib

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from core import config
from core.imaging import (
    DecodedXray,
    InvalidImageError,
    decode_xray,
    read_image_size,
    resize_for_display,
    sniff_format,
    thumbnail,
    to_uint8,
)

REAL_JPEG = "train/NORMAL/IM-0115-0001.jpeg"
PATIENT_VALUES = ("Doe^Jane", "SECRET-ID-4711", "19800101", "St Elsewhere Hospital")


# ------------------------------------------------------------------------------ helpers
def png_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def make_dicom(
    pixels: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 16,
    patient_tags: bool = False,
    **tags,
) -> bytes:
    """An uncompressed single-frame DICOM file in memory."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    if patient_tags:
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.InstitutionName = PATIENT_VALUES
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 16
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = 0
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def ramp16(height: int = 64, width: int = 64, top: int = 65535) -> np.ndarray:
    return np.linspace(0, top, height * width).round().astype(np.uint16).reshape(height, width)


# ------------------------------------------------------------------------------ real images
def test_real_jpeg_matches_pillow_grey(data_root):
    path = data_root / REAL_JPEG
    decoded = decode_xray(path)
    reference = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0
    assert decoded.pixels.dtype == np.float32 and decoded.pixels.shape == (224, 224)
    assert np.abs(decoded.pixels - reference).max() <= 1.0 / 255.0 + 1e-6
    assert decoded.metadata["format"] == "JPEG" and decoded.metadata["width"] == 224 and decoded.metadata["bit_depth"] == 8
    assert decoded.name == "IM-0115-0001.jpeg"


def test_bytes_path_and_file_like_agree(data_root):
    path = data_root / REAL_JPEG
    raw = path.read_bytes()
    from_path = decode_xray(path).pixels
    from_bytes = decode_xray(raw).pixels
    handle = io.BytesIO(raw)
    handle.read(10)  # a partly read upload must still decode from the start
    from_file = decode_xray(handle, name="upload.jpeg")
    np.testing.assert_array_equal(from_path, from_bytes)
    np.testing.assert_array_equal(from_path, from_file.pixels)
    assert from_file.name == "upload.jpeg"


def test_real_nih_png_matches_pillow_grey(samples_dir):
    path = samples_dir / "00000001_000.png"
    decoded = decode_xray(path)
    reference = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0
    assert decoded.shape == (128, 128)
    assert np.abs(decoded.pixels - reference).max() <= 1.0 / 255.0 + 1e-6


def test_real_monochrome1_dicom_matches_pydicom_window_and_is_inverted(samples_dir):
    path = samples_dir / "RG1_UNCI.dcm"
    decoded = decode_xray(path)
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    # pydicom's own VOI (window) maps onto [0, 2**BitsStored - 1]; MONOCHROME1 means high = black.
    reference = 1.0 - pydicom.pixels.apply_voi_lut(ds.pixel_array, ds) / (2**ds.BitsStored - 1)
    assert decoded.shape == (1955, 1841)
    assert np.abs(decoded.pixels - reference).max() < 1e-3
    meta = decoded.metadata
    assert meta["photometric"] == "MONOCHROME1" and meta["inverted"] is True and meta["bit_depth"] == 15
    assert meta["voi"].startswith("window")
    # Anatomy: after inversion the mediastinum (centre) is brighter than both lung fields.
    h, w = decoded.shape
    mediastinum = decoded.pixels[h // 3 : h // 2, w // 2 - 60 : w // 2 + 60].mean()
    left_lung = decoded.pixels[h // 3 : h // 2, w // 4 - 100 : w // 4 + 100].mean()
    right_lung = decoded.pixels[h // 3 : h // 2, 3 * w // 4 - 100 : 3 * w // 4 + 100].mean()
    assert mediastinum > left_lung + 0.15 and mediastinum > right_lung + 0.15


def test_real_jpeg2000_dicom_decodes_like_the_uncompressed_one(samples_dir):
    compressed = decode_xray(samples_dir / "RG1_J2KI.dcm")
    plain = decode_xray(samples_dir / "RG1_UNCI.dcm")
    assert compressed.metadata["compressed"] is True and "2000" in compressed.metadata["transfer_syntax"]
    assert compressed.shape == plain.shape
    assert np.abs(compressed.pixels - plain.pixels).mean() < 0.01


def test_real_dicom_patient_tags_never_leave(samples_dir, caplog):
    path = samples_dir / "RG1_UNCI.dcm"
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    secrets = [str(ds.PatientName), str(ds.PatientID)]
    with caplog.at_level(logging.DEBUG):
        decoded = decode_xray(path)
    text = repr(decoded.metadata) + caplog.text
    for secret in secrets:
        assert secret not in text
    assert not any(key.lower().startswith(("patient", "institution")) for key in decoded.metadata)


# ------------------------------------------------------------------------------ formats and modes
def test_sixteen_bit_png_keeps_its_range():
    values = ramp16()
    decoded = decode_xray(png_bytes(Image.fromarray(values)))
    assert decoded.metadata["bit_depth"] == 16
    np.testing.assert_allclose(decoded.pixels, values / 65535.0, atol=1e-6)
    assert len(np.unique(decoded.pixels)) > 1000  # an 8-bit cut would leave at most 256 levels


def test_rgba_is_composited_on_black():
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[:, :32] = (255, 255, 255, 0)       # white but fully transparent -> black
    rgba[:, 32:48] = (255, 255, 255, 255)   # opaque white
    rgba[:, 48:] = (100, 100, 100, 128)     # half transparent grey
    decoded = decode_xray(png_bytes(Image.fromarray(rgba, "RGBA")))
    assert decoded.pixels[:, :32].max() == 0.0
    np.testing.assert_allclose(decoded.pixels[:, 32:48], 1.0, atol=1e-6)
    np.testing.assert_allclose(decoded.pixels[:, 48:], (100 / 255) * (128 / 255), atol=1e-5)
    assert decoded.metadata["has_alpha"] is True and decoded.metadata["alpha_composited_on"] == "black"


def test_cmyk_jpeg_becomes_grey():
    image = Image.new("CMYK", (64, 64), (0, 0, 0, 0))  # no ink: white
    image.paste((0, 0, 0, 255), (0, 0, 32, 64))       # full black ink on the left half
    decoded = decode_xray(encoded(image, "JPEG", quality=95))
    assert decoded.metadata["mode"] == "CMYK"
    assert decoded.pixels[:, :28].mean() < 0.05
    assert decoded.pixels[:, 36:].mean() > 0.95


def test_palette_gif_uses_palette_colours():
    image = Image.new("P", (64, 64), 0)
    image.putpalette([0, 0, 0, 200, 200, 200] + [0] * 762)
    image.paste(1, (0, 0, 64, 32))
    decoded = decode_xray(encoded(image, "GIF"))
    assert decoded.metadata["format"] == "GIF" and decoded.metadata["photometric"] == "PALETTE COLOR"
    np.testing.assert_allclose(decoded.pixels[:32], 200 / 255, atol=1e-6)
    np.testing.assert_allclose(decoded.pixels[32:], 0.0, atol=1e-6)


def test_exif_orientation_is_applied():
    stored = np.zeros((128, 64), dtype=np.uint8)
    stored[:64] = 255  # top half white as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise: stored top -> displayed right
    decoded = decode_xray(encoded(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes()))
    assert decoded.shape == (64, 128)
    assert decoded.metadata["exif_rotated"] is True and decoded.metadata["exif_orientation"] == 6
    assert decoded.pixels[:, -48:].mean() > 0.95 and decoded.pixels[:, :48].mean() < 0.05


def test_header_size_matches_the_decoded_size(tmp_path, data_root, samples_dir):
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = tmp_path / "rotated.jpeg"
    Image.new("L", (64, 128)).save(rotated, exif=exif.tobytes())
    for path in (rotated, data_root / REAL_JPEG, samples_dir / "00000001_000.png", samples_dir / "RG1_UNCI.dcm"):
        height, width = decode_xray(path).shape
        assert read_image_size(path) == (width, height)
    assert read_image_size(rotated) == (128, 64)


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "PNG"])
def test_lossless_grey_round_trip(fmt):
    values = (np.arange(80 * 70) % 256).astype(np.uint8).reshape(80, 70)
    decoded = decode_xray(encoded(Image.fromarray(values), fmt))
    assert decoded.metadata["format"] == fmt
    np.testing.assert_allclose(decoded.pixels, values / 255.0, atol=1e-6)


def test_sixteen_bit_tiff_keeps_its_range():
    values = ramp16(70, 80)
    decoded = decode_xray(encoded(Image.fromarray(values), "TIFF"))
    np.testing.assert_allclose(decoded.pixels, values / 65535.0, atol=1e-6)


# ------------------------------------------------------------------------------ DICOM
def test_dicom_monochrome1_without_window_is_min_max_then_inverted():
    values = ramp16(64, 64, top=3995) + 100  # 100..4095 fits in 12 bits
    decoded = decode_xray(make_dicom(values, photometric="MONOCHROME1", bits_stored=12))
    assert decoded.pixels[0, 0] == pytest.approx(1.0)  # lowest stored value is white in MONOCHROME1
    assert decoded.pixels[-1, -1] == pytest.approx(0.0)
    assert decoded.metadata["voi"].startswith("min-max") and decoded.metadata["bit_depth"] == 12
    assert len(np.unique(decoded.pixels)) > 1000  # 12-bit data keeps more than 256 levels


def test_dicom_rescale_and_window_follow_the_standard():
    raw = np.tile(np.arange(0, 1024, 16, dtype=np.uint16), (64, 1))  # 64 x 64
    decoded = decode_xray(
        make_dicom(raw, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=400)
    )
    hounsfield = raw.astype(np.float64) * 2 - 1024
    expected = np.clip((hounsfield - (40 - 0.5)) / (400 - 1) + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(decoded.pixels, expected, atol=1e-6)
    assert 0.0 < decoded.pixels.mean() < 1.0


def test_dicom_voi_lut_sequence_is_applied():
    raw = np.tile(np.arange(0, 256, 4, dtype=np.uint16), (64, 1))  # 64 x 64, values 0..252
    table = np.rint((np.arange(256) / 255.0) ** 2 * 4095).astype(np.uint16)  # 12-bit output, a gamma-like curve
    item = Dataset()
    item.add_new(0x00283002, "US", [256, 0, 12])  # LUT Descriptor: entries, first mapped value, bits
    item.add_new(0x00283006, "US", table.tolist())  # LUT Data
    decoded = decode_xray(make_dicom(raw, VOILUTSequence=[item], WindowCenter=100, WindowWidth=10))
    assert decoded.metadata["voi"] == "VOI LUT sequence"  # the LUT wins over the window, as in pydicom
    np.testing.assert_allclose(decoded.pixels, table[raw] / 4095.0, atol=1e-6)


def test_dicom_with_several_windows_uses_the_first():
    raw = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (64, 1))
    decoded = decode_xray(make_dicom(raw, WindowCenter=[1000, 3000], WindowWidth=[500, 100]))
    expected = np.clip((raw - (1000 - 0.5)) / (500 - 1) + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(decoded.pixels, expected, atol=1e-6)


def test_dicom_without_pixel_data_is_refused_without_patient_tags():
    with pytest.raises(InvalidImageError, match="without an image") as error:
        decode_xray(make_dicom(None, patient_tags=True), name="report.dcm")
    for secret in PATIENT_VALUES:
        assert secret not in str(error.value)


def test_dicom_patient_tags_never_returned_or_logged(caplog):
    with caplog.at_level(logging.DEBUG):
        decoded = decode_xray(make_dicom(ramp16(), patient_tags=True), name="scan.dcm")
    text = repr(decoded.metadata) + repr(decoded) + caplog.text
    for secret in PATIENT_VALUES:
        assert secret not in text


def test_dicom_with_truncated_pixel_data_is_refused_without_patient_tags():
    data = make_dicom(ramp16(), patient_tags=True)
    with pytest.raises(InvalidImageError) as error:
        decode_xray(data[: len(data) - 4000])
    assert "DICOM" in str(error.value)
    for secret in PATIENT_VALUES:
        assert secret not in str(error.value)
    assert error.value.__cause__ is None  # pydicom's own text (which could quote tags) is not chained


# ------------------------------------------------------------------------------ bad input
def _png_bomb(side: int = 30000) -> bytes:
    """A valid 1-bit PNG of side x side white... black pixels: a few tens of KB that would decode to ~900 Mpx."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding(monkeypatch):
    bomb = _png_bomb()
    assert len(bomb) < 200_000
    from PIL import ImageFile

    def never(*args, **kwargs):
        raise AssertionError("pixels of a decompression bomb were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", never)
    with pytest.raises(InvalidImageError, match="decompression bomb"):
        decode_xray(bomb, name="bomb.png")


def test_side_above_config_limit_is_refused():
    image = Image.new("L", (config.MAX_IMAGE_SIDE + 1, 64))
    with pytest.raises(InvalidImageError, match="pixels per side"):
        decode_xray(png_bytes(image))


def test_empty_file():
    with pytest.raises(InvalidImageError, match="empty"):
        decode_xray(b"", name="scan.png")


def test_truncated_jpeg(data_root):
    raw = (data_root / REAL_JPEG).read_bytes()
    with pytest.raises(InvalidImageError, match="truncated or corrupt"):
        decode_xray(raw[: len(raw) // 2])


def test_png_with_broken_crc():
    data = bytearray(png_bytes(Image.fromarray((np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64))))
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    data[idat + 4 + length] ^= 0xFF  # first byte of the IDAT checksum
    with pytest.raises(InvalidImageError, match="truncated or corrupt"):
        decode_xray(bytes(data))


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"Patient notes: chest looks clear.\nFollow up in two weeks.\n", "text file"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "PDF"),
    ],
)
def test_non_images_renamed_png_are_named(payload, expected):
    with pytest.raises(InvalidImageError, match=expected) as error:
        decode_xray(payload, name="xray.png")
    assert "xray.png" in str(error.value) and "PNG, JPEG" in str(error.value)


def test_zip_archive_is_named():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("scan.jpeg", b"not really")
    with pytest.raises(InvalidImageError, match="ZIP archive"):
        decode_xray(buffer.getvalue(), name="scans.zip")


def test_too_small_image():
    with pytest.raises(InvalidImageError, match="only 8x8 pixels"):
        decode_xray(png_bytes(Image.new("L", (8, 8))))


def test_too_small_dicom():
    with pytest.raises(InvalidImageError, match="only 16x16 pixels"):
        decode_xray(make_dicom(ramp16(16, 16)))


def test_unknown_binary():
    with pytest.raises(InvalidImageError, match="not an image format"):
        decode_xray(bytes(range(256)) * 8, name="mystery.bin")


def test_formats_outside_the_allow_list_are_refused():
    eps = b"\xc5\xd0\xd3\xc6" + bytes(range(256)) * 4  # binary (DOS) EPS header: Pillow could hand it to Ghostscript
    with pytest.raises(InvalidImageError, match="not an image format"):
        decode_xray(eps, name="scan.eps")


def test_missing_path(tmp_path):
    with pytest.raises(InvalidImageError, match="does not exist"):
        decode_xray(tmp_path / "nope.png")


def test_error_is_a_value_error():
    assert issubclass(InvalidImageError, ValueError)


@pytest.mark.parametrize(
    ("head", "kind"),
    [(b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff\xe0", "JPEG"), (b"GIF89a", "GIF"), (b"BM", "BMP"),
     (b"II*\x00", "TIFF"), (b"%PDF-1.4", "PDF"), (b"PK\x03\x04", "ZIP"), (b"\x00" * 128 + b"DICM", "DICOM"),
     (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIF"),
     (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heix", "HEIF"),
     (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "AVIF"),
     (b"\x00\x00\x00\x18ftypqt  \x00\x00\x02\x00qt  ", "VIDEO"),
     (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41", "VIDEO")],
)
def test_sniff_format(head, kind):
    assert sniff_format(head + b"\x00" * 64) == kind


# ------------------------------------------------------------------------------ display helpers
def test_display_helpers(data_root):
    decoded = decode_xray(data_root / REAL_JPEG)
    grey = to_uint8(decoded)
    rgb = to_uint8(decoded, rgb=True)
    assert grey.dtype == np.uint8 and grey.shape == (224, 224) and rgb.shape == (224, 224, 3)
    np.testing.assert_array_equal(rgb[..., 1], grey)
    np.testing.assert_array_equal(grey, np.rint(decoded.pixels * 255).astype(np.uint8))
    small = resize_for_display(decoded.pixels, 100)
    assert small.shape == (100, 100) and abs(float(small.mean()) - float(decoded.pixels.mean())) < 0.01
    assert resize_for_display(decoded.pixels, 500) is decoded.pixels  # never enlarged
    assert thumbnail(data_root / REAL_JPEG, max_side=64).shape == (64, 64)


def test_decoded_xray_is_a_plain_value():
    decoded = DecodedXray(pixels=np.zeros((64, 64), np.float32), metadata={"format": "PNG"})
    assert decoded.shape == (64, 64) and decoded.name is None


# ------------------------------------------------------------------------------ phone photos (HEIC / AVIF)
def _heic_bytes() -> bytes:
    """A real HEIC photo, encoded by libheif (pillow-heif, a test-only dependency)."""
    import pillow_heif

    photo = Image.fromarray((np.arange(96 * 128) % 251).astype(np.uint8).reshape(96, 128)).convert("RGB")
    buffer = io.BytesIO()
    pillow_heif.from_pillow(photo).save(buffer, format="HEIF", quality=80)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_phone_photo_named_png_is_named_with_how_to_get_a_jpeg(fmt):
    data = _heic_bytes() if fmt == "HEIF" else encoded(Image.new("RGB", (96, 128), (90, 90, 90)), "AVIF")
    assert sniff_format(data) == fmt
    with pytest.raises(InvalidImageError) as error:
        decode_xray(data, name="IMG_0042.png")
    message = str(error.value)
    assert ("HEIC/HEIF photo" if fmt == "HEIF" else "AVIF image") in message and "IMG_0042.png" in message
    assert "Save it as JPEG" in message and "Most Compatible" in message
    assert "damaged" not in message and "corrupt" not in message


def test_video_named_png_is_named():
    with pytest.raises(InvalidImageError, match="a video"):
        decode_xray(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(512), name="clip.png")


# ------------------------------------------------------------------------------ 16-bit images at their real bit depth
def _with_sbit(png: bytes, bits: int) -> bytes:
    """The PNG with an sBIT chunk (grey significant bits) inserted after IHDR."""
    chunk = struct.pack(">I", 1) + b"sBIT" + bytes([bits]) + struct.pack(">I", zlib.crc32(b"sBIT" + bytes([bits])))
    end_of_ihdr = 8 + 12 + 13
    return png[:end_of_ihdr] + chunk + png[end_of_ihdr:]


def test_png_sbit_declares_the_bit_depth_of_unscaled_values():
    values = ramp16(top=4000)  # 12-bit values left unscaled
    decoded = decode_xray(_with_sbit(png_bytes(Image.fromarray(values)), 12))
    np.testing.assert_allclose(decoded.pixels, values / 4095.0, atol=1e-6)
    assert decoded.metadata["significant_bits"] == 12 and decoded.metadata["bit_depth"] == 16
    (note,) = decoded.notes
    assert "sBIT chunk declares 12 bits" in note and "4,095 instead of 65,535" in note


def test_png_sbit_with_values_scaled_up_as_the_standard_asks_keeps_65535():
    twelve = ramp16(top=4095)
    scaled = (twelve << 4) | (twelve >> 8)  # PNG spec: left-bit replication to 16 bits
    decoded = decode_xray(_with_sbit(png_bytes(Image.fromarray(scaled)), 12))
    np.testing.assert_allclose(decoded.pixels, scaled / 65535.0, atol=1e-6)
    assert decoded.notes == () and decoded.metadata["significant_bits"] == 16


@pytest.mark.parametrize(("top", "bits"), [(1000, 10), (255, 8), (16000, 14), (40000, 16)])
def test_sixteen_bit_png_without_declaration_uses_the_range_of_its_values(top, bits):
    values = ramp16(top=top)
    decoded = decode_xray(png_bytes(Image.fromarray(values)), name="export.png")
    np.testing.assert_allclose(decoded.pixels, values / float(2**bits - 1), atol=1e-6)
    assert decoded.metadata["significant_bits"] == bits
    assert (decoded.notes == ()) == (bits == 16)
    if bits < 16:
        assert f"holding {bits}-bit values" in decoded.notes[0] and "no bit depth is declared" in decoded.notes[0]


def test_sixteen_bit_tiff_max_sample_value_declares_the_bit_depth():
    values = ramp16(70, 80, top=900)
    decoded = decode_xray(encoded(Image.fromarray(values), "TIFF", tiffinfo={281: 1023}))
    np.testing.assert_allclose(decoded.pixels, values / 1023.0, atol=1e-6)
    assert "MaxSampleValue tag is 1,023" in decoded.notes[0]


# ------------------------------------------------------------------------------ DICOM without file meta / preamble
@pytest.mark.parametrize(("implicit", "little", "name"), [(True, True, "Implicit VR Little Endian"),
                                                          (False, True, "Explicit VR Little Endian"),
                                                          (False, False, "Explicit VR Big Endian")])
def test_headerless_dicom_encoding_is_inferred(implicit, little, name):
    values = ramp16(64, 80, top=4095)
    ds = Dataset()
    ds.SpecificCharacterSet, ds.ImageType, ds.SOPClassUID = "ISO_IR 100", ["ORIGINAL", "PRIMARY"], SecondaryCaptureImageStorage
    ds.Modality, ds.Rows, ds.Columns = "CR", *values.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelData = values.astype("<u2" if little else ">u2").tobytes()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=implicit, little_endian=little, enforce_file_format=False)
    data = buffer.getvalue()
    assert data[128:132] != b"DICM" and sniff_format(data) == "DICOM"
    decoded = decode_xray(data, name="IM000001")
    np.testing.assert_allclose(decoded.pixels, values / 4095.0, atol=1e-6)  # no window: min-max of 0..4095
    assert decoded.metadata["transfer_syntax"] == name
    assert f"read as {name}" in decoded.notes[0] and "nor file meta header" in decoded.notes[0]


def test_truncated_dicom_says_how_much_is_missing():
    data = make_dicom(ramp16())
    with pytest.raises(InvalidImageError, match=r"truncated: 4,192 bytes stored, 8,192 needed for 64x64 pixels"):
        decode_xray(data[: len(data) - 4000])


def test_decoded_xray_notes_are_empty_when_nothing_was_done():
    assert DecodedXray(pixels=np.zeros((64, 64), np.float32)).notes == ()
    assert decode_xray(png_bytes(Image.fromarray(ramp16()))).notes == ()  # full 16-bit range: nothing to say


def test_multi_frame_files_say_the_first_frame_is_used():
    pages = [Image.fromarray(ramp16(64, 64, top=255).astype(np.uint8)), Image.new("L", (64, 64), 200)]
    buffer = io.BytesIO()
    pages[0].save(buffer, format="TIFF", save_all=True, append_images=pages[1:])
    decoded = decode_xray(buffer.getvalue())
    np.testing.assert_allclose(decoded.pixels, ramp16(64, 64, top=255) / 255.0, atol=1e-6)
    assert decoded.metadata["n_frames"] == 2 and decoded.notes == ("The file holds 2 frames or pages; the first one is shown and scored.",)
    frames = np.stack([ramp16(64, 64, top=4095), np.full((64, 64), 7, np.uint16)])
    dicom = pydicom.dcmread(io.BytesIO(make_dicom(frames[0], bits_stored=12)))
    dicom.NumberOfFrames, dicom.PixelData = 2, frames.tobytes()
    out = io.BytesIO()
    dicom.save_as(out, enforce_file_format=True)
    decoded = decode_xray(out.getvalue())
    np.testing.assert_allclose(decoded.pixels, frames[0] / 4095.0, atol=1e-6)
    assert decoded.notes == ("The file holds 2 frames; the first one is shown and scored.",)
