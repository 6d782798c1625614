"""A corpus of awkward and broken files, generated from the shipped real X-rays (never downloaded).

Each `Case` says what the file is, whether a careful decoder should refuse it (with which words in the
message) or decode it, and for decodes the grey pixels it must produce, computed independently of
core.imaging (Pillow / OpenCV / pydicom directly).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

LUMA = np.array([0.299, 0.587, 0.114])
GOOD_NORMAL = "test/NORMAL/IM-0001-0001.jpeg"
GOOD_PNEUMONIA = "test/PNEUMONIA/person100_bacteria_475.jpeg"
HUGE_SIDE = 12000
BOMB_SIDE = 30000


@dataclass(frozen=True)
class Case:
    """One corpus file: `expect` is 'refuse' (message contains one of `words`) or 'decode' (matches `reference`)."""

    filename: str
    what: str
    data: bytes = field(repr=False)
    expect: str
    words: tuple[str, ...] = ()
    reference: Callable[[], np.ndarray] | None = field(default=None, repr=False)
    atol: float = 1e-6
    shape: tuple[int, int] | None = None
    mean_error: bool = False  # compare the mean absolute error (lossy codecs) instead of the maximum


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    """The image encoded in memory by Pillow."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(side: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit black PNG of side x side pixels (about 100 KB on disk, side**2 pixels once decoded)."""
    row = b"\x00" * (1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def broken_crc_png(grey: np.ndarray) -> bytes:
    """A real X-ray as PNG whose first IDAT chunk has a wrong CRC (one flipped bit)."""
    data = bytearray(_encode(Image.fromarray(grey), "PNG"))
    start = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[start:start + 4])[0]
    crc_at = start + 8 + length
    data[crc_at] ^= 0x01
    return bytes(data)


def minimal_pdf() -> bytes:
    """A tiny but well-formed one-page PDF."""
    return (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
            b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


def colour_photo(height: int = 240, width: int = 320, seed: int = 7) -> np.ndarray:
    """A synthetic natural-looking colour scene (sky, sun, green hills, red flowers), uint8 (H, W, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.zeros((height, width, 3))
    sky = yy / height
    image[...] = np.stack([90 + 80 * sky, 150 + 60 * sky, 235 - 20 * sky], axis=-1)
    sun = (yy - 50) ** 2 + (xx - 250) ** 2 < 28 ** 2
    image[sun] = (255, 220, 60)
    horizon = 150 + 18 * np.sin(xx / 37.0) + 9 * np.sin(xx / 11.0)
    hill = yy > horizon
    shade = (yy - horizon) / height
    image[hill] = np.stack([40 + 60 * shade, 140 - 50 * shade, 40 + 10 * shade], axis=-1)[hill]
    for _ in range(40):
        cy, cx = rng.integers(175, height - 5), rng.integers(5, width - 5)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < rng.integers(4, 16)] = (220, 30, 40)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _dicom(ds_bytes: bytes, edit: Callable) -> bytes:
    """A copy of a DICOM file changed by `edit(dataset)`."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(ds_bytes))
    edit(ds)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _without_pixels(ds) -> None:
    """Drop the pixel data (what a DICOM SR, KO or presentation state looks like)."""
    del ds.PixelData


def _grey_of_file(data: bytes) -> np.ndarray:
    """Independent reference: Pillow's decode of an 8-bit file as float luma in [0, 1] (EXIF not applied)."""
    with Image.open(io.BytesIO(data)) as image:
        return (np.asarray(image.convert("RGB"), dtype=np.float64) @ LUMA) / 255.0


def build_corpus(data_root: Path, samples_dir: Path) -> list[Case]:
    """Every case of the corpus, generated in memory from the real shipped images."""
    import cv2
    import pydicom

    good = (data_root / GOOD_PNEUMONIA).read_bytes()
    grey = np.asarray(Image.open(io.BytesIO(good)).convert("L"))
    portrait = grey[:, 32:192]  # 224 x 160: not square, so a rotation is visible in the shape

    grey16 = (grey.astype(np.uint16) * 257 + (np.arange(grey.size).reshape(grey.shape) % 251).astype(np.uint16))
    png16 = _encode(Image.fromarray(grey16), "PNG")

    alpha = np.tile(np.linspace(0, 255, grey.shape[1]).astype(np.uint8), (grey.shape[0], 1))
    rgba = np.dstack([grey, grey, grey, alpha])
    rgba_png = _encode(Image.fromarray(rgba, "RGBA"), "PNG")

    cmyk_jpeg = _encode(Image.fromarray(grey).convert("CMYK"), "JPEG", quality=95)
    palette_gif = _encode(Image.fromarray(grey).quantize(64), "GIF")

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    exif_jpeg = _encode(Image.fromarray(portrait), "JPEG", quality=95, exif=exif.tobytes())

    huge = cv2.resize(grey, (HUGE_SIDE, HUGE_SIDE), interpolation=cv2.INTER_LINEAR)
    huge_jpeg = cv2.imencode(".jpg", huge, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
    del huge

    tiny = _encode(Image.fromarray(grey[100:108, 100:108]), "PNG")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("person100_bacteria_475.jpeg", good)
    photo_jpeg = _encode(Image.fromarray(colour_photo()), "JPEG", quality=92)

    unci = (samples_dir / "RG1_UNCI.dcm").read_bytes()
    j2ki = (samples_dir / "RG1_J2KI.dcm").read_bytes()
    mono1 = pydicom.dcmread(io.BytesIO(unci))

    def mono1_reference() -> np.ndarray:
        from pydicom.pixels import apply_voi_lut

        # pydicom's own window maps onto [0, 2**BitsStored - 1]; MONOCHROME1 means high values are dark.
        return 1.0 - apply_voi_lut(mono1.pixel_array, mono1) / (2 ** mono1.BitsStored - 1)

    return [
        Case("empty.png", "empty file", b"", "refuse", ("empty",)),
        Case("truncated.jpeg", "real X-ray cut to a third", good[: len(good) // 3], "refuse", ("truncated", "corrupt")),
        Case("broken_crc.png", "PNG with a wrong IDAT CRC", broken_crc_png(grey), "refuse", ("corrupt", "damaged", "crc")),
        Case("notes.png", "text file renamed .png", b"Chest X-ray report: no consolidation.\n" * 30, "refuse", ("text file",)),
        Case("scan.png", "PDF renamed .png", minimal_pdf(), "refuse", ("pdf",)),
        Case("xrays.zip", "ZIP holding an X-ray", zipped.getvalue(), "refuse", ("zip",)),
        Case("bomb.png", f"{BOMB_SIDE}x{BOMB_SIDE} PNG bomb", png_bomb(), "refuse", ("decompression bomb", "too large", "larger")),
        Case("huge.jpeg", f"real X-ray upscaled to {HUGE_SIDE}x{HUGE_SIDE}", huge_jpeg, "huge", ()),
        Case("icon.png", "8x8 image", tiny, "refuse", ("8x8",)),
        Case("grey16.png", "16-bit greyscale PNG", png16, "decode", reference=lambda: grey16 / 65535.0),
        Case("rgba.png", "RGBA PNG (alpha ramp)", rgba_png, "decode",
             reference=lambda: grey / 255.0 * (alpha / 255.0), atol=1e-5),
        Case("cmyk.jpeg", "CMYK JPEG", cmyk_jpeg, "decode", reference=lambda: _grey_of_file(cmyk_jpeg), atol=1e-5),
        Case("palette.gif", "palette GIF (64 colours)", palette_gif, "decode", reference=lambda: _grey_of_file(palette_gif),
             atol=1e-5),
        Case("rotated.jpeg", "JPEG with EXIF orientation 6", exif_jpeg, "decode",
             reference=lambda: np.rot90(_grey_of_file(exif_jpeg), k=-1), atol=1e-5, shape=(160, 224)),
        Case("report.dcm", "DICOM without pixel data", _dicom(unci, _without_pixels), "refuse", ("no pixel data", "without an image")),
        Case("RG1_UNCI.dcm", "real DICOM MONOCHROME1", unci, "decode", reference=mono1_reference, atol=1e-3),
        Case("RG1_J2KI.dcm", "real DICOM, JPEG 2000 transfer syntax", j2ki, "decode", reference=mono1_reference, atol=0.01,
             mean_error=True),
        Case("holiday.jpeg", "colour photograph, not an X-ray", photo_jpeg, "decode", reference=lambda: _grey_of_file(photo_jpeg),
             atol=1e-5),
    ]


def write_corpus(cases: list[Case], folder: Path) -> dict[str, Path]:
    """Write every case to `folder`; {filename: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for case in cases:
        paths[case.filename] = folder / case.filename
        paths[case.filename].write_bytes(case.data)
    return paths
