"""decode_xray, the one entry point, and the helpers that turn its result into display or model pixels."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from core.imaging._dicom import _decode_dicom
from core.imaging._raster import _decode_raster, _exif_orientation
from core.imaging._source import (
    _NON_IMAGE_NAMES,
    _PHOTO_FORMATS,
    _SUPPORTED,
    PILLOW_FORMATS,
    DecodedXray,
    InvalidImageError,
    Source,
    _check_min_size,
    _label,
    _read_source,
    logger,
    sniff_format,
)

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
