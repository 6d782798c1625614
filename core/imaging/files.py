"""Which files are X-rays: files named directly, and image files found in folders (CD/PACS exports without
suffixes recognised by their first bytes), every skipped file with its reason."""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".jp2")  # what decode_xray reads
SNIFF_BYTES = 8192  # how much of a file without an image suffix is read to recognise it (DICM magic, headers)
_SNIFFED_IMAGE_KINDS = ("DICOM", "PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP", "JPEG2000", "HEIF", "AVIF")
_DICOMDIR_SOP_CLASS = rb"1\.2\.840\.10008\.1\.3\.10(?![0-9.])"  # Media Storage Directory Storage: a DICOMDIR


def iter_image_files(sources: Iterable[str | Path], *, skipped: list[tuple[Path, str]] | None = None) -> Iterator[Path]:
    """Files named directly (whatever their suffix), and X-ray files found recursively in folders, sorted.

    In a folder a file is taken when its suffix is one decode_xray reads, or when its first bytes say it is an
    image: CD/PACS exports name DICOM files IM000000 (no suffix), found by the 'DICM' magic at offset 128 or as
    DICOM written without preamble; a phone photo (HEIC) is taken too, so its row says what to do. Every other
    file, and every hidden folder, is skipped with its reason: logged as a warning and appended to `skipped`.
    """
    for source in sources:
        path = Path(source)
        if not path.is_dir():
            yield path
            continue
        found = []
        for folder, subfolders, names in os.walk(path):
            hidden = sorted(name for name in subfolders if name.startswith("."))
            subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
            for name in hidden:
                _skip(Path(folder) / name, "hidden folder (its name starts with '.'); not searched", skipped)
            for name in sorted(names):
                file = Path(folder) / name
                reason = _skip_reason(file)
                if reason is None:
                    found.append(file)
                else:
                    _skip(file, reason, skipped)
        yield from sorted(found)


def _skip(path: Path, reason: str, skipped: list[tuple[Path, str]] | None) -> None:
    """Report one file or folder the folder walk leaves out."""
    logger.warning("Skipped %s: %s", path, reason)
    if skipped is not None:
        skipped.append((path, reason))


def _skip_reason(path: Path) -> str | None:
    """Why a file found in a folder is not an X-ray to score, or None when it should be decoded."""
    from core.imaging import sniff_format

    if path.name.startswith("."):
        return "hidden file (its name starts with '.')"
    if path.name.upper() == "DICOMDIR":
        return "the DICOMDIR index of a CD/PACS export, not an image (the images are the files it lists)"
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return None
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as error:
        return f"could not be read ({error.strerror or error})"
    if not head:
        return "empty file (0 bytes)"
    kind = sniff_format(head)
    if kind == "DICOM" and re.search(_DICOMDIR_SOP_CLASS, head[:1024]):
        return "a DICOMDIR index of a CD/PACS export, not an image (the images are the files it lists)"
    if kind in _SNIFFED_IMAGE_KINDS:
        return None
    described = {"TEXT": "a text file", "PDF": "a PDF document", "ZIP": "a ZIP archive", "GZIP": "a GZIP archive",
                 "7Z": "a 7-Zip archive", "RAR": "a RAR archive", "OLE": "an old-style Office document",
                 "VIDEO": "a video"}.get(kind, "not a format decode_xray reads")
    return f"not an X-ray image: {described} (suffix {path.suffix or 'none'!r})"
