"""What a file is: the result and error types, reading a source, sniffing its format, size limits."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Union

import numpy as np

from core import config

logger = logging.getLogger(__name__)

Source = Union[bytes, bytearray, memoryview, str, os.PathLike, IO[bytes]]

# ITU-R BT.601 luma weights (the ones Pillow uses for RGB -> L).
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# Technical, non-identifying DICOM tags copied into metadata (keyword -> metadata key).
DICOM_METADATA_TAGS = {
    "Modality": "modality",
    "BodyPartExamined": "body_part",
    "ViewPosition": "view_position",
    "SamplesPerPixel": "samples_per_pixel",
    "BitsAllocated": "bits_allocated",
    "PixelRepresentation": "pixel_representation",
}

# Pillow plugins allowed to open uploads (JPEG covers multi-picture MPO; no EPS: it would run Ghostscript).
PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP", "JPEG2000", "PPM")

# Which installed package decodes which compressed DICOM transfer syntax (licence in brackets); pydicom tries
# the available plugins in its own order. Documented in README.md and THIRD_PARTY_NOTICES.md.
DICOM_DECODERS = {
    "JPEG Baseline 8-bit (1.2.840.10008.1.2.4.50)": "python-gdcm (Apache-2.0 / GDCM BSD-3), pillow (MIT-CMU)",
    "JPEG Extended 12-bit (1.2.840.10008.1.2.4.51)": "imagecodecs (BSD-3, libjpeg-turbo) via core.imaging.dicom_decoders; "
                                                     "8-bit also python-gdcm, pillow",
    "JPEG Lossless P14 (1.2.840.10008.1.2.4.57)": "python-gdcm (Apache-2.0 / GDCM BSD-3)",
    "JPEG Lossless SV1 (1.2.840.10008.1.2.4.70)": "python-gdcm (Apache-2.0 / GDCM BSD-3)",
    "JPEG-LS Lossless / Near-lossless (1.2.840.10008.1.2.4.80/.81)": "pyjpegls (MIT, CharLS BSD-3), python-gdcm",
    "JPEG 2000 (1.2.840.10008.1.2.4.90/.91)": "pylibjpeg-openjpeg (MIT, OpenJPEG BSD-2), python-gdcm, pillow",
    "HTJ2K (1.2.840.10008.1.2.4.201/.202/.203)": "pylibjpeg-openjpeg (MIT, OpenJPEG BSD-2)",
    "RLE Lossless (1.2.840.10008.1.2.5)": "pylibjpeg-rle (MIT), pydicom's own numpy decoder",
    "Deflated Explicit VR Little Endian (1.2.840.10008.1.2.1.99)": "pydicom (MIT, zlib)",
}

_FIX_FILE = "Export the X-ray again from the viewer or PACS as PNG, JPEG or DICOM and upload that file."
_SUPPORTED = "PNG, JPEG, BMP, TIFF, GIF or DICOM"


class InvalidImageError(ValueError):
    """The input is not a usable X-ray; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class DecodedXray:
    """A decoded X-ray: `pixels` float32 (H, W) in [0, 1] (0 = black), original resolution."""

    pixels: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    name: str | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return self.pixels.shape  # type: ignore[return-value]

    @property
    def notes(self) -> tuple[str, ...]:
        """Plain sentences on what decoding did that a reader should know (also `metadata["notes"]`); () if nothing."""
        return tuple(self.metadata.get("notes", ()))


# --------------------------------------------------------------------------------------------------
# Reading and sniffing


def _read_source(source: Source, name: str | None) -> tuple[bytes, str | None]:
    """Return the raw bytes of `source` and a display name (the file name when there is one)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        display = name or path.name
        try:
            return path.read_bytes(), display
        except FileNotFoundError:
            raise InvalidImageError(f"The file {display!r} does not exist. Check the path or upload the file.") from None
        except IsADirectoryError:
            raise InvalidImageError(f"{display!r} is a folder, not an image file. Choose one X-ray file.") from None
        except PermissionError:
            raise InvalidImageError(f"The file {display!r} cannot be read (permission denied).") from None
    if hasattr(source, "getvalue"):
        data = source.getvalue()
    elif hasattr(source, "read"):
        if hasattr(source, "seek") and getattr(source, "seekable", lambda: False)():
            source.seek(0)
        data = source.read()
    else:
        raise TypeError(f"decode_xray expects bytes, a path or a file-like object, got {type(source).__name__}")
    if isinstance(data, str):
        data = data.encode("utf-8")
    return bytes(data), name or _basename(getattr(source, "name", None))


def _basename(value: object) -> str | None:
    """The last path component of a file-like's name, if it has a usable one."""
    return Path(value).name if isinstance(value, str) and value else None


def _label(name: str | None) -> str:
    """How the file is called in messages."""
    return f"The file {name!r}" if name else "The file"


def sniff_format(data: bytes) -> str:
    """Identify the container from its magic bytes: 'DICOM', 'PNG', 'JPEG', ..., 'PDF', 'ZIP', 'TEXT' or 'UNKNOWN'."""
    head = data[:32]
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "DICOM"
    signatures = (
        (b"\x89PNG\r\n\x1a\n", "PNG"),
        (b"\xff\xd8\xff", "JPEG"),
        (b"GIF87a", "GIF"),
        (b"GIF89a", "GIF"),
        (b"BM", "BMP"),
        (b"II*\x00", "TIFF"),
        (b"MM\x00*", "TIFF"),
        (b"II+\x00", "TIFF"),
        (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"),
        (b"\xff\x4f\xff\x51", "JPEG2000"),
        (b"%PDF", "PDF"),
        (b"PK\x03\x04", "ZIP"),
        (b"PK\x05\x06", "ZIP"),
        (b"\x1f\x8b", "GZIP"),
        (b"7z\xbc\xaf\x27\x1c", "7Z"),
        (b"Rar!", "RAR"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE"),
    )
    for magic, kind in signatures:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    iso_media = _iso_media_kind(data)
    if iso_media:
        return iso_media
    if _looks_like_text(data[:4096]):
        return "TEXT"
    if _looks_like_headerless_dicom(data):
        return "DICOM"
    return "UNKNOWN"


def _looks_like_text(chunk: bytes) -> bool:
    """True when the chunk decodes as UTF-8 and is almost entirely printable."""
    if not chunk or b"\x00" in chunk:
        return False
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        # A chunk boundary can split a multi-byte character; retry without the last 3 bytes.
        try:
            text = chunk[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * max(len(text), 1)


# ISO base media file format (HEIF, AVIF, MP4, QuickTime): the `ftyp` box's major and compatible brands.
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"mif2", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_VIDEO_BRANDS = {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"qt  ", b"M4V ", b"avc1", b"3gp4",
                 b"3gp5", b"3gp6", b"3g2a", b"dash", b"MSNV"}


def _iso_media_kind(data: bytes) -> str | None:
    """'HEIF', 'AVIF' or 'VIDEO' for an ISO-BMFF file (an `ftyp` box first), else None."""
    if len(data) < 16 or data[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(data[:4], "big")
    end = min(max(box_size, 16), len(data), 512)
    brands = [data[8:12]] + [data[offset : offset + 4] for offset in range(16, end - 3, 4)]
    for brand in brands:  # the major brand first, then the compatible ones in order
        if brand in _AVIF_BRANDS:
            return "AVIF"
        if brand in _HEIF_BRANDS:
            return "HEIF"
    return "VIDEO" if any(brand in _VIDEO_BRANDS for brand in brands) else None


# DICOM value representations (PS3.5 6.2); those in _LONG_VRS have a 2-byte reserved field and a 4-byte length.
_DICOM_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB", b"OD", b"OF",
              b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI", b"UL", b"UN",
              b"UR", b"US", b"UT", b"UV"}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}


def _looks_like_headerless_dicom(data: bytes) -> bool:
    """True for DICOM written without the 128-byte preamble and 'DICM' (older CR, research exports).

    The data must start with a file meta (0002) or identifying (0008) group element and parse as at least three
    well-formed elements with increasing tags in one of the encodings pydicom infers (implicit VR little endian,
    explicit VR little or big endian).
    """
    return any(_count_dicom_elements(data, explicit, endian) >= 3
               for explicit, endian in ((True, "little"), (False, "little"), (True, "big")))


def _count_dicom_elements(data: bytes, explicit: bool, endian: str, wanted: int = 3) -> int:
    """How many consecutive well-formed data elements (up to `wanted`) start at offset 0 in this encoding."""
    offset, count, last_tag = 0, 0, -1
    while count < wanted and offset + 8 <= len(data):
        group = int.from_bytes(data[offset : offset + 2], endian)
        element = int.from_bytes(data[offset + 2 : offset + 4], endian)
        tag = (group << 16) | element
        if tag <= last_tag or (count == 0 and group not in (0x0002, 0x0008)):
            break
        if explicit:
            vr = data[offset + 4 : offset + 6]
            if vr not in _DICOM_VRS:
                break
            if vr in _LONG_VRS:
                if data[offset + 6 : offset + 8] != b"\x00\x00" or offset + 12 > len(data):
                    break
                length, header = int.from_bytes(data[offset + 8 : offset + 12], endian), 12
            else:
                length, header = int.from_bytes(data[offset + 6 : offset + 8], endian), 8
        else:
            length, header = int.from_bytes(data[offset + 4 : offset + 8], endian), 8
        count += 1
        if length == 0xFFFFFFFF:  # a sequence or encapsulated data of undefined length: stop walking here
            return wanted if count >= 2 else 0
        if length % 2:  # DICOM value lengths are even
            return count - 1
        if offset + header + length > len(data):  # a well-formed header whose value runs past the data we have
            return count  # (a prefix of the file, as the CLI's sniffing reads, or a truncated file: still DICOM)
        offset, last_tag = offset + header + length, tag
    return count


_NON_IMAGE_NAMES = {
    "PDF": "a PDF document",
    "ZIP": "a ZIP archive (or an Office document, which is a ZIP archive)",
    "GZIP": "a GZIP-compressed archive",
    "7Z": "a 7-Zip archive",
    "RAR": "a RAR archive",
    "OLE": "an old-style Microsoft Office document",
    "TEXT": "a text file",
    "VIDEO": "a video (MP4 or QuickTime), not a still image",
}

_PHOTO_FORMATS = {
    "HEIF": "a HEIC/HEIF photo (the format iPhones and many Android phones save by default)",
    "AVIF": "an AVIF image (a format phones and web browsers save)",
}


# Size limits


def _check_min_size(width: int, height: int, label: str) -> None:
    """Refuse images whose shorter side is below config.MIN_IMAGE_SIDE."""
    if min(width, height) < config.MIN_IMAGE_SIDE:
        raise InvalidImageError(
            f"{label} is only {width}x{height} pixels; at least {config.MIN_IMAGE_SIDE}x{config.MIN_IMAGE_SIDE} "
            "is needed to read a chest X-ray. Upload the full-resolution image, not a thumbnail or icon."
        )


def _check_max_size(width: int, height: int, label: str) -> None:
    """Refuse declared sizes above config limits before any pixel is decoded (decompression bombs)."""
    if max(width, height) > config.MAX_IMAGE_SIDE or width * height > config.MAX_IMAGE_PIXELS:
        raise InvalidImageError(_too_large_message(label, f"{width}x{height} pixels ({width * height:,} in total)"))


def _too_large_message(label: str, declared: str) -> str:
    """Message for an image too large to decode safely."""
    return (
        f"{label} declares {declared}, more than this tool accepts ({config.MAX_IMAGE_SIDE:,} pixels per side, "
        f"{config.MAX_IMAGE_PIXELS:,} in total) and far more than any chest X-ray. It may be corrupt or a "
        "decompression bomb and was not decoded. Export the X-ray again at its normal size."
    )
