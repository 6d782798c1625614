"""Real films as DICOM for a local archive: PNG/JPEG X-rays wrapped as DX objects with a made-up patient.

The demo (`make pacs-demo`), the tests and the bench load the archive with these. A baseline JPEG is wrapped as it
is (encapsulated, JPEG Baseline transfer syntax: no recompression); anything else is decoded and stored as 8-bit
uncompressed pixels. The patient is invented (ID, name, birth date in the requested age band); nothing real is copied.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"


_REGIONS = {"CHEST": ("43799004", "Chest"), "ABDOMEN": ("818983003", "Abdomen"), "SKULL": ("89546000", "Skull")}


def _is_baseline_jpeg(data: bytes) -> bool:
    """True for a greyscale 8-bit baseline (SOF0) JPEG, which DICOM can carry unchanged."""
    if data[:2] != b"\xff\xd8":
        return False
    index = 2
    while index + 4 <= len(data):
        if data[index] != 0xFF:
            return False
        marker, length = data[index + 1], int.from_bytes(data[index + 2:index + 4], "big")
        if marker == 0xC0:
            return data[index + 4] == 8 and data[index + 9] == 1  # 8-bit precision, one component
        if 0xC1 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return False
        index += 2 + length
    return False


def wrap_film(film: str | Path | bytes, *, patient_id: str, age_years: int, study_uid: str | None = None,
              accession: str = "", study_date: dt.date | None = None, view: str = "AP", body_part: str = "CHEST",
              modality: str = "DX", series_number: int = 1, instance_number: int = 1, frames: int = 1,
              with_age: bool = True) -> "pydicom.Dataset":  # noqa: F821
    """A DX image (pydicom Dataset) of one PNG/JPEG film with an invented patient `age_years` old.

    ``with_age=False`` leaves PatientAge and PatientBirthDate out (as anonymised exports do); ``frames`` > 1 repeats
    the film as a multi-frame object (a fault case).
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import generate_uid

    data = film if isinstance(film, bytes) else Path(film).read_bytes()
    study_date = study_date or dt.date.today()
    ds = pydicom.Dataset()
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientID = patient_id
    ds.PatientName = f"Demo^{patient_id}"
    ds.PatientSex = "O"
    if with_age:
        ds.PatientBirthDate = (study_date - dt.timedelta(days=int(365.25 * age_years) + 30)).strftime("%Y%m%d")
        ds.PatientAge = f"{age_years:03d}Y"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = accession
    ds.StudyID = accession[:16] or "1"
    ds.ReferringPhysicianName = ""
    ds.Manufacturer = "pneumonia-dashboard demo (film wrapped as DICOM)"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.ViewPosition = view
    ds.BodyPartExamined = body_part
    ds.PatientOrientation = ["R", "F"] if view == "PA" else ["L", "F"]
    ds.ImageLaterality = "U"
    ds.PresentationLUTShape = "IDENTITY"
    ds.PositionerType = ""
    ds.AcquisitionContextSequence = []
    region = pydicom.Dataset()
    region.CodeValue, region.CodingSchemeDesignator = _REGIONS.get(body_part, ("", "SCT"))[0], "SCT"
    region.CodeMeaning = _REGIONS.get(body_part, ("", body_part.title()))[1]
    ds.AnatomicRegionSequence = [region] if region.CodeValue else []
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BurnedInAnnotation = "NO"
    ds.DetectorType = "SCINTILLATOR"
    ds.KVP = ""
    ds.ExposureTime = ""
    ds.XRayTubeCurrent = ""
    ds.ImagerPixelSpacing = [0.2, 0.2]
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.WindowCenter, ds.WindowWidth = 128, 256
    ds.LossyImageCompression = "00"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if frames == 1 and _is_baseline_jpeg(data):
        from PIL import Image
        import io

        with Image.open(io.BytesIO(data)) as image:
            ds.Columns, ds.Rows = image.size
        ds.PixelData = encapsulate([data])
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = f"{ds.Rows * ds.Columns / len(data):.2f}"[:16]
        ds.LossyImageCompressionMethod = "ISO_10918_1"
        meta.TransferSyntaxUID = JPEG_BASELINE
    else:
        from core.imaging import decode_xray

        pixels = np.round(decode_xray(data).pixels * 255).astype(np.uint8)
        ds.Rows, ds.Columns = pixels.shape
        if frames > 1:
            ds.NumberOfFrames = frames
            pixels = np.repeat(pixels[None], frames, axis=0)
        ds.PixelData = pixels.tobytes()
        meta.TransferSyntaxUID = EXPLICIT_LITTLE
    ds.file_meta = meta
    ds.ensure_file_meta() if hasattr(ds, "ensure_file_meta") else None
    return ds


def to_bytes(ds: "pydicom.Dataset") -> bytes:  # noqa: F821
    """A Dataset as DICOM Part 10 bytes (preamble, file meta)."""
    import io

    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
