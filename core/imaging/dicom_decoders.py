"""Extra pydicom pixel-data decoder: JPEG Extended 12-bit through imagecodecs (BSD-3-Clause).

pydicom 3 ships decoder plugins for every compressed transfer syntax it supports, but for JPEG Extended
(Process 2 & 4, 1.2.840.10008.1.2.4.51) with 12-bit samples only `pylibjpeg-libjpeg` (GPL-3.0) works: GDCM
refuses 12-bit precision and Pillow reads 8-bit JPEG only. imagecodecs' `jpeg8_decode` (libjpeg-turbo 3,
BSD-style licences) decodes 12-bit DCT JPEG, so this module adds it as one more plugin of pydicom's
`JPEGExtended12BitDecoder`. It follows pydicom's plugin contract (`is_available`, `DECODER_DEPENDENCIES`,
`_decode_frame`); `register()` adds it once. Lossy JPEG decoders may differ by one grey level (IDCT rounding).
"""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

from pydicom import uid

PLUGIN_LABEL = "imagecodecs"

DECODER_DEPENDENCIES = {uid.JPEGExtended12Bit: ("numpy", "imagecodecs")}

_lock = threading.Lock()
_registered = False


def is_available(transfer_syntax: str) -> bool:
    """True when imagecodecs is installed and `transfer_syntax` is JPEG Extended (imported only when decoding)."""
    return transfer_syntax in DECODER_DEPENDENCIES and importlib.util.find_spec("imagecodecs") is not None


def _decode_frame(src: bytes, runner: Any) -> bytes:
    """One JPEG Extended frame (`src`, a JPEG codestream) as raw little-endian samples, as pydicom expects."""
    import imagecodecs

    if not imagecodecs.JPEG8.available:
        raise NotImplementedError("this imagecodecs build has no libjpeg-turbo JPEG decoder")
    if runner.samples_per_pixel != 1:
        # Colour JPEG Extended is decoded by GDCM / Pillow (8-bit); a radiograph is grey.
        raise NotImplementedError("the imagecodecs plugin decodes greyscale JPEG Extended only")
    frame = imagecodecs.jpeg8_decode(src)
    if frame.ndim != 2:
        raise ValueError(f"expected a greyscale JPEG frame, got shape {frame.shape}")
    if frame.dtype.itemsize * 8 != runner.bits_allocated:
        runner.set_option("bits_allocated", frame.dtype.itemsize * 8)
    return frame.astype(frame.dtype.newbyteorder("<"), copy=False).tobytes()


def preferred_plugin(transfer_syntax: str, bits_stored: int) -> str:
    """The plugin pydicom should use directly ('' = its own order): 12-bit JPEG Extended goes to imagecodecs.

    pydicom logs every plugin that fails before one succeeds at ERROR level with a traceback, so a valid
    12-bit file would otherwise print GDCM's and Pillow's refusals.
    """
    if transfer_syntax == uid.JPEGExtended12Bit and bits_stored > 8 and is_available(transfer_syntax):
        return PLUGIN_LABEL
    return ""


def register() -> None:
    """Add the imagecodecs plugin to pydicom's JPEG Extended decoder (idempotent and thread-safe)."""
    global _registered
    with _lock:
        if _registered:
            return
        from pydicom.pixels.decoders import JPEGExtended12BitDecoder

        try:
            # Added even without imagecodecs: pydicom then names the missing package in its error.
            JPEGExtended12BitDecoder.add_plugin(PLUGIN_LABEL, (__name__, "_decode_frame"))
        except ValueError:  # already added (e.g. by another copy of this module)
            pass
        _registered = True
