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
  of technical tags, and pydicom's own error texts are never forwarded (they could quote tag values)."""
# The work lives in the private modules below; these are the names to import from here.
from core.imaging._source import (  # noqa: F401
    Source,
    LUMA_WEIGHTS,
    DICOM_METADATA_TAGS,
    PILLOW_FORMATS,
    DICOM_DECODERS,
    InvalidImageError,
    DecodedXray,
    sniff_format,
)
from core.imaging._decode import (  # noqa: F401
    decode_xray,
    to_uint8,
    resize_for_display,
    thumbnail,
    read_image_size,
)
from core.imaging._raster import (  # noqa: F401
    _min_max,
)
