"""Decode and validate chest X-rays from bytes, paths or uploads into float32 grey images in [0, 1].

One entry point, `decode_xray`, handles raster formats through Pillow (PNG, JPEG, BMP, TIFF, GIF, WebP,
JPEG 2000) and DICOM through pydicom (modality LUT / rescale, VOI LUT or window, MONOCHROME1 inversion,
compressed transfer syntaxes through the installed pylibjpeg decoders). Every unreadable input raises
`InvalidImageError` with a message a clinician can act on.

Decisions worth knowing:
- Colour images become grey with the ITU-R BT.601 luma weights (the weights Pillow's "L" mode uses),
  computed in float so nothing is rounded twice.
- Transparent pixels (RGBA, LA, palette with transparency) are composited onto black: black is "no signal"
  on a radiograph, the same as the background outside the body.
- 16-bit greyscale (PNG, TIFF) keeps its full range: values are divided by 65535, never cut to 8 bits.
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


def _looks_like_headerless_dicom(data: bytes) -> bool:
    """True for DICOM written without the 128-byte preamble (starts with a group 0x0008 element)."""
    return len(data) > 8 and data[:2] in (b"\x08\x00", b"\x02\x00") and data[2:4] in (b"\x05\x00", b"\x08\x00", b"\x00\x00", b"\x01\x00", b"\x16\x00")


_NON_IMAGE_NAMES = {
    "PDF": "a PDF document",
    "ZIP": "a ZIP archive (or an Office document, which is a ZIP archive)",
    "GZIP": "a GZIP-compressed archive",
    "7Z": "a 7-Zip archive",
    "RAR": "a RAR archive",
    "OLE": "an old-style Microsoft Office document",
    "TEXT": "a text file",
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
    return pixels, metadata


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

    transfer_syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    ts_name = getattr(transfer_syntax, "name", str(transfer_syntax) if transfer_syntax else "unknown")
    compressed = bool(getattr(transfer_syntax, "is_compressed", False))
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        from pydicom.pixels import pixel_array

        raw = pixel_array(ds, index=0 if n_frames > 1 else None)
    except (NotImplementedError, RuntimeError) as exc:
        logger.info("DICOM pixel decode failed (%s)", type(exc).__name__)
        if compressed:
            raise InvalidImageError(
                f"{label} is compressed as {ts_name}, which this installation cannot decode. "
                "Export it as uncompressed DICOM, PNG or JPEG."
            ) from None
        raise InvalidImageError(f"{label} is a DICOM file whose pixel data cannot be decoded. {_FIX_FILE}") from None
    except (ValueError, EOFError, OSError, KeyError, AttributeError, TypeError) as exc:
        logger.info("DICOM pixel decode failed (%s)", type(exc).__name__)
        raise InvalidImageError(
            f"{label} is a DICOM file whose pixel data is truncated or corrupt. {_FIX_FILE}"
        ) from None

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    metadata: dict[str, Any] = {
        "format": "DICOM",
        "mode": str(raw.dtype),
        "transfer_syntax": ts_name,
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
    return pixels.astype(np.float32), metadata


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

