"""Decode and validate chest X-rays from bytes, paths or uploads into float32 grey images in [0, 1].

One entry point, `decode_xray`, handles raster formats through Pillow (PNG, JPEG, BMP, TIFF, GIF, WebP,
JPEG 2000) and DICOM through pydicom (modality LUT / rescale, VOI LUT or window, MONOCHROME1 inversion,
every compressed transfer syntax pydicom supports through the decoders pinned in requirements.txt, see
`DICOM_DECODERS`). Every unreadable input raises `InvalidImageError` with a message a clinician can act on;
what was done to a readable one that a reader should know (bit depth rescaled, DICOM encoding inferred,
first frame of several) is in `DecodedXray.notes`, plain sentences the page and the CLI show.

Decisions worth knowing:
- Colour images become grey with the ITU-R BT.601 luma weights (the weights Pillow's "L" mode uses),
  computed in float so nothing is rounded twice.
- Transparent pixels (RGBA, LA, palette with transparency) are composited onto black: black is "no signal"
  on a radiograph, the same as the background outside the body.
- 16-bit greyscale (PNG, TIFF) is never cut to 8 bits. It is divided by the largest value its real bit depth
  allows: the PNG sBIT chunk (when the values were not scaled up to 16 bits as the PNG standard asks) or TIFF
  MaxSampleValue where present, else the range actually used (12-bit detector values saved as 16-bit, what
  `cv2.imwrite(ds.pixel_array)` writes, are divided by 4095, not 65535, which would make the film almost black).
- DICOM without file meta or without Transfer Syntax UID: pydicom infers implicit/explicit VR and endianness
  from the header while parsing; the pixel encoding is taken from that, or for encapsulated (compressed) pixel
  data from the codestream itself (JPEG SOF marker, JPEG-LS, JPEG 2000, RLE header).
- HEIC/HEIF and AVIF photos (iPhone, Android) are recognised by their ISO-BMFF `ftyp` brand, whatever their
  file name, and refused with how to get a JPEG: the only HEIF decoder wheel on PyPI (pillow-heif) is GPL-2.0
  as a binary, see THIRD_PARTY_NOTICES.md.
- Only the Pillow plugins in `PILLOW_FORMATS` may open a file (never EPS, which would start Ghostscript).
- Multi-frame files (animated GIF, multi-page TIFF, multi-frame DICOM): the first frame is used and
  `metadata["n_frames"]` says how many there were.
- DICOM patient and institution tags are never read into the result: metadata is built from an allow-list
  of technical tags, and pydicom's own error texts are never forwarded (they could quote tag values).
"""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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


# --------------------------------------------------------------------------------------------------
# Public API


def decode_xray(source: Source, *, name: str | None = None) -> DecodedXray:
    """Decode an X-ray (bytes, path or file-like) into float32 grey (H, W) in [0, 1] plus safe metadata.

    Raises InvalidImageError, with a message for the user, for anything that is not a usable X-ray.
    """
    data, display = _read_source(source, name)
    label = _label(display)
    if not data:
        raise InvalidImageError(f"{label} is empty (0 bytes). The upload or export did not finish; export it again.")
    kind = sniff_format(data)
    if kind in _NON_IMAGE_NAMES:
        raise InvalidImageError(
            f"{label} is {_NON_IMAGE_NAMES[kind]}, not an image. Upload the X-ray itself as {_SUPPORTED}."
        )
    if kind in _PHOTO_FORMATS:
        raise InvalidImageError(
            f"{label} is {_PHOTO_FORMATS[kind]}, whatever its file name says; this tool does not read {kind} files. "
            "Save it as JPEG and upload that: on an iPhone, Settings > Camera > Formats > Most Compatible makes the "
            "camera save JPEG, and the Photos app (Mac, Windows) or Preview can export an existing photo as JPEG. "
            "Better still, export the X-ray itself from the viewer or PACS as DICOM or PNG: a photo of a screen or "
            "light box loses detail."
        )
    if kind == "DICOM" or (kind == "UNKNOWN" and (display or "").lower().endswith((".dcm", ".dicom"))):
        pixels, metadata = _decode_dicom(data, label)
    else:
        # Raster formats, and unknown bytes: Pillow (restricted to PILLOW_FORMATS) opens them or we refuse them.
        pixels, metadata = _decode_raster(data, label)
    _check_min_size(pixels.shape[1], pixels.shape[0], label)
    pixels = np.ascontiguousarray(np.clip(pixels, 0.0, 1.0), dtype=np.float32)
    logger.debug("decoded %s: %s %dx%d", display or "<bytes>", metadata.get("format"), pixels.shape[1], pixels.shape[0])
    return DecodedXray(pixels=pixels, metadata=metadata, name=display)


def to_uint8(image: DecodedXray | np.ndarray, *, rgb: bool = False) -> np.ndarray:
    """Display copy of a decoded X-ray: uint8 (H, W) grey, or (H, W, 3) when `rgb`."""
    pixels = image.pixels if isinstance(image, DecodedXray) else np.asarray(image, dtype=np.float32)
    if pixels.ndim != 2:
        raise ValueError(f"Expected a grey image of shape (H, W), got shape {pixels.shape}.")
    out = np.rint(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.repeat(out[:, :, None], 3, axis=2) if rgb else out


def resize_for_display(pixels: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink (H, W) or (H, W, C) so the longer side is at most `max_side` px (area averaging); never enlarges."""
    import cv2

    if max_side < 1:
        raise ValueError(f"max_side must be a positive number of pixels, got {max_side}.")
    height, width = pixels.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return pixels
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


def thumbnail(source: Source, *, max_side: int = 256, name: str | None = None) -> np.ndarray:
    """uint8 grey (h, w) preview of an X-ray, longer side at most `max_side` px (raises InvalidImageError)."""
    return to_uint8(resize_for_display(decode_xray(source, name=name).pixels, max_side))


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file read from its header only (Pillow, or pydicom for DICOM)."""
    path = Path(path)
    if path.suffix.lower() in (".dcm", ".dicom"):
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Rows", "Columns"])
        return int(ds.Columns), int(ds.Rows)
    with Image.open(path, formats=PILLOW_FORMATS) as image:
        width, height = image.size
        # Only files that carry EXIF can be rotated; parsing EXIF for the others would double the cost.
        if "exif" in image.info and _exif_orientation(image) in (5, 6, 7, 8):
            width, height = height, width
    return int(width), int(height)


# --------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------
# Raster formats (Pillow)


def _exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1..8), 1 when absent or unreadable."""
    try:
        return int(image.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make a good image unreadable
        return 1


def _decode_raster(data: bytes, label: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a Pillow-readable image into float32 grey and its metadata."""
    with warnings.catch_warnings():
        # config.MAX_IMAGE_SIDE / MAX_IMAGE_PIXELS are the limits, checked below before any pixel is decoded;
        # Pillow's warning (above 89 Mpx) is superseded by them, and its error (above 179 Mpx) is reported as ours.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=PILLOW_FORMATS)
        except Image.DecompressionBombError as exc:
            found = re.search(r"\((\d+) pixels\)", str(exc))
            declared = f"{int(found.group(1)):,} pixels in total" if found else "an enormous size"
            raise InvalidImageError(_too_large_message(label, declared)) from None
        except UnidentifiedImageError:
            raise InvalidImageError(
                f"{label} is not an image format this tool can read, or its header is damaged. "
                f"Upload a {_SUPPORTED} file. {_FIX_FILE}"
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise InvalidImageError(f"{label} is damaged and cannot be opened ({exc}). {_FIX_FILE}") from exc
        width, height = image.size
        _check_max_size(width, height, label)
        _check_min_size(width, height, label)
        n_frames = int(getattr(image, "n_frames", 1) or 1)
        metadata: dict[str, Any] = {
            "format": image.format or "UNKNOWN",
            "mode": image.mode,
            "n_frames": n_frames,
        }
        try:
            image.load()
            if image.format == "PNG":
                _verify_png(data)
            declared_bits = _declared_significant_bits(image, data)
            orientation = _exif_orientation(image)
            if orientation != 1:
                image = ImageOps.exif_transpose(image)
        except Image.DecompressionBombError:
            raise InvalidImageError(_too_large_message(label, f"{width}x{height} pixels ({width * height:,} in total)")) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InvalidImageError(
                f"{label} is truncated or corrupt: the pixel data cannot be decoded ({exc}). {_FIX_FILE}"
            ) from exc
    pixels, bit_depth, photometric, has_alpha = _pil_to_grey(image, label)
    if bit_depth == 16:
        pixels = _rescale_to_real_bit_depth(pixels, declared_bits, metadata)
    metadata.update(
        width=int(pixels.shape[1]),
        height=int(pixels.shape[0]),
        original_width=int(width),
        original_height=int(height),
        bit_depth=bit_depth,
        photometric=photometric,
        exif_orientation=orientation,
        exif_rotated=orientation != 1,
        has_alpha=has_alpha,
    )
    if has_alpha:
        metadata["alpha_composited_on"] = "black"
    if n_frames > 1:
        metadata.setdefault("notes", []).append(
            f"The file holds {n_frames} frames or pages; the first one is shown and scored.")
    return pixels, metadata


def _declared_significant_bits(image: Image.Image, data: bytes) -> tuple[int, str] | None:
    """(bits, where it is said) for a 16-bit grey image: the PNG sBIT chunk or TIFF MaxSampleValue, else None."""
    if image.format == "PNG":
        bits = _png_sbit_grey(data)
        return (bits, f"the file's sBIT chunk declares {bits} bits") if bits else None
    if image.format == "TIFF":
        try:
            value = image.tag_v2.get(281)  # MaxSampleValue
        except AttributeError:
            return None
        if isinstance(value, (tuple, list)):
            value = value[0] if value else None
        if isinstance(value, int) and 0 < value < 65535:
            return int(value).bit_length(), f"the file's MaxSampleValue tag is {value:,}"
    return None


def _png_sbit_grey(data: bytes) -> int | None:
    """Significant bits of the grey channel from a PNG's sBIT chunk (before the first IDAT), or None."""
    offset = 8
    while offset + 8 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        if kind in (b"IDAT", b"IEND"):
            return None
        if kind == b"sBIT" and length >= 1:
            colour_type = data[25] if len(data) > 25 else -1  # IHDR is the first chunk: colour type at byte 25
            return int(data[offset + 8]) if colour_type in (0, 4) else None
        offset += 12 + length
    return None


def _rescale_to_real_bit_depth(pixels: np.ndarray, declared: tuple[int, str] | None, metadata: dict[str, Any]) -> np.ndarray:
    """Divide 16-bit grey values by the largest value of their real bit depth instead of 65535; note it when done.

    `pixels` are the values / 65535 in [0, 1]. The depth is the declared one (PNG sBIT, TIFF MaxSampleValue) when
    every value fits in it (a PNG whose values were scaled up to 16 bits, as its standard asks, keeps 65535),
    else the number of bits the largest value needs (at least 8).
    """
    values = np.rint(pixels.astype(np.float64) * 65535.0)
    largest = int(values.max()) if values.size else 0
    if declared and largest <= 2 ** declared[0] - 1:
        bits, source = declared
    elif declared:  # the values were scaled up to the full 16 bits, as the PNG standard asks: 65535 is right
        bits, source = 16, declared[1]
    else:
        bits, source = max(8, largest.bit_length()), "no bit depth is declared, so the range the values use"
    metadata["significant_bits"] = bits
    if bits >= 16:
        return pixels
    scale = 2**bits - 1
    metadata["value_scale"] = scale
    metadata.setdefault("notes", []).append(
        f"16-bit {metadata.get('format', 'image')} holding {bits}-bit values (largest value {largest:,}; {source}): "
        f"divided by {scale:,} instead of 65,535, as a {bits}-bit detector image saved as 16-bit, so that it is not "
        "decoded almost black."
    )
    return np.clip(values / float(scale), 0.0, 1.0).astype(np.float32)


def _verify_png(data: bytes) -> None:
    """Check every PNG chunk checksum (Pillow skips IDAT CRCs while decoding)."""
    with Image.open(io.BytesIO(data), formats=["PNG"]) as check:
        check.verify()


def _pil_to_grey(image: Image.Image, label: str) -> tuple[np.ndarray, int, str, bool]:
    """(float32 grey (H, W) in [0, 1], bit depth, photometric, had alpha) for any Pillow mode."""
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=np.float32), 1, "MONOCHROME2", False
    if mode == "L":
        return np.asarray(image, dtype=np.float32) / 255.0, 8, "MONOCHROME2", False
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image).astype(np.float32) / 65535.0, 16, "MONOCHROME2", False
    if mode == "I":
        values = np.asarray(image, dtype=np.int64)
        if values.min() >= 0 and values.max() <= 65535:
            return (values / 65535.0).astype(np.float32), 16, "MONOCHROME2", False
        return _min_max(values.astype(np.float64)), 32, "MONOCHROME2", False
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise InvalidImageError(f"{label} contains NaN or infinite pixel values. {_FIX_FILE}")
        if values.min() >= 0.0 and values.max() <= 1.0:
            return values.astype(np.float32), 32, "MONOCHROME2", False
        return _min_max(values), 32, "MONOCHROME2", False
    if mode == "LA":
        grey_alpha = np.asarray(image, dtype=np.float32) / 255.0
        return grey_alpha[..., 0] * grey_alpha[..., 1], 8, "MONOCHROME2", True
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        rgb = image.convert("RGBA" if has_alpha else "RGB")
        grey, _, _, _ = _pil_to_grey(rgb, label)
        return grey, 8, "PALETTE COLOR", has_alpha
    if mode in ("RGBA", "RGBa"):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        return (rgba[..., :3] @ LUMA_WEIGHTS) * rgba[..., 3], 8, "RGB", True
    if mode == "RGB":
        return (np.asarray(image, dtype=np.float32) @ LUMA_WEIGHTS) / 255.0, 8, "RGB", False
    if mode == "CMYK":
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
        return (rgb @ LUMA_WEIGHTS) / 255.0, 8, "CMYK", False
    # YCbCr, LAB, HSV and other rare modes: let Pillow convert to RGB.
    try:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    except (ValueError, OSError) as exc:
        raise InvalidImageError(f"{label} uses the colour mode {mode!r}, which cannot be converted to grey. {_FIX_FILE}") from exc
    return (rgb @ LUMA_WEIGHTS) / 255.0, 8, mode, False


def _min_max(values: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1] by the actual minimum and maximum (a constant image becomes all zeros)."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# DICOM (pydicom)


def _decode_dicom(data: bytes, label: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a DICOM file: modality LUT, VOI LUT / window, MONOCHROME1 inversion; first frame only."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from core.imaging import dicom_decoders

    dicom_decoders.register()
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        logger.info("DICOM header unreadable (%s)", type(exc).__name__)
        raise InvalidImageError(f"{label} looks like DICOM but its header is damaged or truncated. {_FIX_FILE}") from None
    pixel_keyword = next((kw for kw in ("PixelData", "FloatPixelData", "DoubleFloatPixelData") if kw in ds), None)
    if pixel_keyword is None:
        raise InvalidImageError(
            f"{label} is a DICOM file without an image (no Pixel Data), e.g. a report, a DICOMDIR or a "
            "presentation state. Export the radiograph itself from the PACS."
        )
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError):
        raise InvalidImageError(f"{label} is a DICOM file whose image size (Rows/Columns) is missing. {_FIX_FILE}") from None
    _check_max_size(columns, rows, label)
    _check_min_size(columns, rows, label)

    notes: list[str] = []
    transfer_syntax, inferred_from = _dicom_transfer_syntax(ds, pixel_keyword, label)
    ts_name = transfer_syntax.name
    if inferred_from:
        notes.append(
            f"The file does not say how it is encoded (no Transfer Syntax UID{inferred_from[0]}); it was read as "
            f"{ts_name}, inferred from {inferred_from[1]}."
        )
    compressed = bool(transfer_syntax.is_compressed)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    raw = _dicom_first_frame(ds, transfer_syntax, n_frames, label)
    if n_frames > 1:
        notes.append(f"The file holds {n_frames} frames; the first one is shown and scored.")

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    metadata: dict[str, Any] = {
        "format": "DICOM",
        "mode": str(raw.dtype),
        "transfer_syntax": ts_name,
        "transfer_syntax_inferred": bool(inferred_from),
        "compressed": compressed,
        "photometric": photometric,
        "bit_depth": int(ds.get("BitsStored", raw.dtype.itemsize * 8) or raw.dtype.itemsize * 8),
        "n_frames": n_frames,
        "original_width": columns,
        "original_height": rows,
        "exif_rotated": False,
        "has_alpha": False,
    }
    for keyword, key in DICOM_METADATA_TAGS.items():
        value = ds.get(keyword)
        if value not in (None, ""):
            metadata[key] = value if isinstance(value, (int, float)) else str(value)

    if raw.ndim == 3 and raw.shape[-1] in (3, 4):
        # Colour DICOM (pydicom returns RGB, converting YBR for us).
        pixels = (raw[..., :3].astype(np.float32) @ LUMA_WEIGHTS) / float(2 ** metadata["bit_depth"] - 1)
        metadata["voi"] = "none (colour)"
    elif raw.ndim == 2:
        pixels, voi = _dicom_grey_to_unit(raw, ds)
        metadata["voi"] = voi
        if photometric == "MONOCHROME1":
            pixels = 1.0 - pixels
            metadata["inverted"] = True
        else:
            metadata["inverted"] = False
    else:
        raise InvalidImageError(f"{label} holds DICOM pixel data of shape {raw.shape}, not a 2-D radiograph. {_FIX_FILE}")
    metadata["width"], metadata["height"] = int(pixels.shape[1]), int(pixels.shape[0])
    if notes:
        metadata["notes"] = notes
    return pixels.astype(np.float32), metadata


def _dicom_transfer_syntax(ds: Any, pixel_keyword: str, label: str) -> tuple[Any, tuple[str, str] | None]:
    """The dataset's Transfer Syntax UID, inferred and set in its file meta when missing.

    Returns (UID, None) when the file states it, else (UID, (what was missing, what it was inferred from)).
    Native pixel data: implicit/explicit VR and endianness as pydicom detected them while parsing
    (`ds.original_encoding`). Encapsulated pixel data: the compression, from the first fragment's codestream.
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    stated = meta.get("TransferSyntaxUID") if meta is not None else None
    if stated:
        return UID(str(stated)), None
    missing = "" if meta is not None and len(meta) else " nor file meta header"
    element = ds[pixel_keyword]
    value = element.value if isinstance(element.value, (bytes, bytearray)) else b""
    if element.is_undefined_length or value[:4] == b"\xfe\xff\x00\xe0":
        inferred = _compression_from_codestream(_first_fragment(value))
        if inferred is None:
            raise InvalidImageError(
                f"{label} is a DICOM file with compressed pixel data, but it does not say how it is compressed (no "
                "Transfer Syntax UID) and the data is not JPEG, JPEG-LS, JPEG 2000 or RLE. Export it again from the "
                "PACS, as uncompressed DICOM if you can."
            )
        uid, source = UID(inferred), "the header of the compressed pixel data"
    else:
        implicit, little = getattr(ds, "original_encoding", (True, True))
        if implicit:
            uid = ImplicitVRLittleEndian
        else:
            uid = ExplicitVRLittleEndian if little in (True, None) else ExplicitVRBigEndian
        source = "how its header is written (as pydicom does when reading it)"
    if meta is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid
    logger.info("DICOM without Transfer Syntax UID: inferred %s", uid.name)
    return uid, (missing, source)


def _first_fragment(value: bytes) -> bytes:
    """The first fragment of encapsulated pixel data (after the Basic Offset Table), or b'' if unreadable."""
    from pydicom.encaps import generate_fragments

    try:
        for index, fragment in enumerate(generate_fragments(value)):
            if index == 1:
                return bytes(fragment)
    except (ValueError, EOFError, TypeError):
        return b""
    return b""


def _compression_from_codestream(fragment: bytes) -> str | None:
    """Transfer Syntax UID of a compressed frame judged from its codestream (JPEG family, JPEG 2000, RLE), or None."""
    if fragment[:2] == b"\xff\xd8":
        return _jpeg_transfer_syntax(fragment)
    if fragment[:4] == b"\xff\x4f\xff\x51" or fragment[4:8] == b"jP  ":
        main_header = fragment[: fragment.find(b"\xff\x90")] if b"\xff\x90" in fragment else fragment[:4096]
        if b"\xff\x50" in main_header:  # CAP marker: High-Throughput JPEG 2000 (Part 15)
            return "1.2.840.10008.1.2.4.203"
        return "1.2.840.10008.1.2.4.91"  # JPEG 2000 (its decoders read lossless and lossy codestreams alike)
    if len(fragment) >= 64:
        segments = int.from_bytes(fragment[:4], "little")
        offsets = [int.from_bytes(fragment[4 + 4 * i : 8 + 4 * i], "little") for i in range(15)]
        used = offsets[:segments]
        if 1 <= segments <= 15 and used[0] == 64 and used == sorted(used) and used[-1] < len(fragment) \
                and not any(offsets[segments:]):
            return "1.2.840.10008.1.2.5"  # RLE Lossless: 64-byte header of segment offsets
    return None


def _jpeg_transfer_syntax(stream: bytes) -> str | None:
    """JPEG family Transfer Syntax UID from the frame marker (SOF) and, for lossless, the scan's predictor/NEAR."""
    offset, frame_marker = 2, None
    while offset + 4 <= len(stream):
        if stream[offset] != 0xFF:
            return None
        marker = stream[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        length = int.from_bytes(stream[offset + 2 : offset + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xF7):
            frame_marker = marker
            if marker == 0xC0:
                return "1.2.840.10008.1.2.4.50"  # Baseline (8-bit)
            if marker in (0xC1, 0xC2):
                return "1.2.840.10008.1.2.4.51"  # Extended / progressive (8 or 12-bit)
        elif marker == 0xDA and frame_marker is not None:  # start of scan: Ns, Ns x 2 bytes, then Ss (predictor / NEAR)
            components = stream[offset + 4] if offset + 4 < len(stream) else 0
            position = offset + 5 + 2 * components
            selection = stream[position] if position < len(stream) else 0
            if frame_marker == 0xF7:
                return "1.2.840.10008.1.2.4.80" if selection == 0 else "1.2.840.10008.1.2.4.81"
            return "1.2.840.10008.1.2.4.70" if selection == 1 else "1.2.840.10008.1.2.4.57"
        offset += 2 + length
    return None


def _dicom_first_frame(ds: Any, transfer_syntax: Any, n_frames: int, label: str) -> np.ndarray:
    """The first frame's stored values as pydicom decodes them; InvalidImageError naming the real cause otherwise."""
    from pydicom.pixels import pixel_array
    from pydicom.pixels.decoders.base import get_decoder

    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        raise InvalidImageError(
            f"{label} uses the DICOM transfer syntax {transfer_syntax.name!r}, which pydicom cannot decode. "
            "Export it from the PACS as uncompressed DICOM, JPEG Lossless, JPEG 2000, PNG or JPEG."
        ) from None
    if not decoder.is_available:
        raise InvalidImageError(
            f"{label} is compressed as {transfer_syntax.name}, and no decoder for it is installed here. Install the "
            "project's requirements (make install, or pip install -r requirements.txt), or export the image as "
            "uncompressed DICOM, PNG or JPEG."
        )
    from core.imaging.dicom_decoders import preferred_plugin

    try:
        bits_stored = int(ds.get("BitsStored", 0) or 0)
    except (TypeError, ValueError):
        bits_stored = 0
    try:
        return pixel_array(ds, index=0 if n_frames > 1 else None,
                           decoding_plugin=preferred_plugin(transfer_syntax, bits_stored))
    except (NotImplementedError, RuntimeError) as exc:
        logger.info("DICOM pixel decode failed (%s)", type(exc).__name__)
        if transfer_syntax.is_compressed:
            plugins = ", ".join(decoder.available_plugins) or "none"
            raise InvalidImageError(
                f"{label} is compressed as {transfer_syntax.name}, but none of the installed decoders ({plugins}) "
                "could decode it: the compressed data is damaged, or uses a variant they do not support. "
                "Export it again from the PACS, as uncompressed DICOM if you can."
            ) from None
        raise InvalidImageError(f"{label} is a DICOM file whose pixel data cannot be decoded. {_FIX_FILE}") from None
    except (ValueError, EOFError, OSError, KeyError, AttributeError, TypeError) as exc:
        logger.info("DICOM pixel decode failed (%s)", type(exc).__name__)
        raise InvalidImageError(_dicom_pixel_error(ds, transfer_syntax, label)) from None


def _dicom_pixel_error(ds: Any, transfer_syntax: Any, label: str) -> str:
    """Why native or compressed pixel data failed, judged from the header (never from pydicom's text)."""
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        allocated = int(ds.get("BitsAllocated", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return f"{label} is a DICOM file whose image description (rows, columns, bits) is invalid. {_FIX_FILE}"
    if allocated not in (1, 8, 16, 32, 64):
        return (f"{label} is a DICOM file with Bits Allocated = {allocated}, which the DICOM standard does not allow "
                f"for pixel data. {_FIX_FILE}")
    if not transfer_syntax.is_compressed and "PixelData" in ds:
        expected = (rows * columns * samples * frames * allocated + 7) // 8
        stored = len(ds.PixelData or b"")
        if stored < expected:
            return (f"{label} is a DICOM file whose pixel data is truncated: {stored:,} bytes stored, {expected:,} needed "
                    f"for {columns}x{rows} pixels. The export or copy did not finish. {_FIX_FILE}")
    return f"{label} is a DICOM file whose pixel data is truncated or corrupt. {_FIX_FILE}"


def _dicom_grey_to_unit(raw: np.ndarray, ds: Any) -> tuple[np.ndarray, str]:
    """Modality LUT then VOI (LUT sequence, else first window, else min-max) -> float (H, W) in [0, 1]."""
    from pydicom.pixels import apply_modality_lut, apply_voi

    modality = apply_modality_lut(raw, ds)
    values = modality.astype(np.float64)
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        item = ds.VOILUTSequence[0]
        # A LUT is indexed by integer values; rescaling can return floats that hold whole numbers.
        lut_input = modality if modality.dtype.kind in "iu" else np.rint(modality).astype(np.int64)
        out = apply_voi(lut_input, ds, index=0).astype(np.float64)
        bits = int(item.LUTDescriptor[2]) if "LUTDescriptor" in item else 16
        return np.clip(out / float(2**bits - 1), 0.0, 1.0), "VOI LUT sequence"
    center, width = _first_window(ds)
    if center is not None and width is not None and width > 0:
        function = str(ds.get("VOILUTFunction", "LINEAR")).strip().upper()
        return _window(values, center, width, function), f"window C={center:g} W={width:g} ({function})"
    return _min_max(values).astype(np.float64), "min-max (no window in file)"


def _first_window(ds: Any) -> tuple[float | None, float | None]:
    """First Window Center / Window Width pair of a DICOM dataset, or (None, None)."""
    def first(value: Any) -> float | None:
        if value is None:
            return None
        if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            if not len(value):
                return None
            value = value[0]
        try:
            return float(value)
        except (TypeError, ValueError):
            return None

    return first(ds.get("WindowCenter")), first(ds.get("WindowWidth"))


def _window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 window (LINEAR, LINEAR_EXACT, SIGMOID) mapped to [0, 1]."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - (center - width / 2.0)) / width, 0.0, 1.0)
    if width <= 1.0:
        return (values >= center - 0.5).astype(np.float64)
    return np.clip(((values - (center - 0.5)) / (width - 1.0)) + 0.5, 0.0, 1.0)

