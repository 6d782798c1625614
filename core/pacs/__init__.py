"""The hospital's image archive (PACS) through DICOMweb: search, retrieve, score, write results back.

    python -m core.pacs --url http://127.0.0.1:8042/dicom-web query|score STUDY_UID|watch [--once]

Modules: `client` (QIDO-RS / WADO-RS / STOW-RS through dicomweb-client), `scope` (age, view and body part from the
DICOM header, used and never kept), `scoring` (a study's frontal image scored exactly as an upload), `results`
(Comprehensive SR + Secondary Capture through highdicom), `watch` (score each new CR/DX image once, resumable),
`films` (real PNG/JPEG films wrapped as DICOM for a demo or test archive), `orthanc` (a local Orthanc server).
"""

from core.pacs.client import Archive, ArchiveError, InstanceSummary, StudySummary

__all__ = ["Archive", "ArchiveError", "InstanceSummary", "StudySummary"]
