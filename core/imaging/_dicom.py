"""DICOM through pydicom: transfer syntax (inferred when missing), first frame, modality and VOI LUT, MONOCHROME1."""
from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.imaging._raster import _min_max
from core.imaging._source import (
    _FIX_FILE,
    DICOM_METADATA_TAGS,
    LUMA_WEIGHTS,
    InvalidImageError,
    _check_max_size,
    _check_min_size,
    logger,
)

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
    from pydicom.uid import (
        UID,
        ExplicitVRBigEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
    )

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
