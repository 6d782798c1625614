"""Raster files through Pillow: orientation, bit depth, transparency, colour to grey."""
from __future__ import annotations

import io
import re
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.imaging._source import (
    _FIX_FILE,
    _SUPPORTED,
    LUMA_WEIGHTS,
    PILLOW_FORMATS,
    InvalidImageError,
    _check_max_size,
    _check_min_size,
    _too_large_message,
)

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
