"""DICOMweb archive access (QIDO-RS search, WADO-RS retrieve, STOW-RS store) through `dicomweb-client` (MIT).

Any DICOMweb archive works the same way: a URL, optional basic authentication or a bearer token, TLS through https
(with the system's certificates, or `verify` = a CA bundle path). Every network failure becomes an ArchiveError
(a ValueError) whose message says what went wrong and what to do; nothing patient-identifying is logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from core.pacs.scope import MODALITIES

logger = logging.getLogger(__name__)
for _chatty in ("dicomweb_client", "highdicom"):  # they log every UID at INFO: keep identifiers out of the logs
    logging.getLogger(_chatty).setLevel(logging.WARNING)

DEFAULT_TIMEOUT_S = 30.0
HTTP_ATTEMPTS = 2  # per request: one quick retry (after ~0.5 s) of a failed or 429/503/504 answer
RETRIEVE_AS_STORED = (("application/dicom", "*"),)  # ask for the stored transfer syntax (no transcoding on the server)


class ArchiveError(ValueError):
    """The archive could not be reached, refused us, or answered with an error (the message says what to do)."""


@dataclass(frozen=True)
class StudySummary:
    """One study as listed by a search: what a clinician needs to pick it (no patient tags)."""

    study_uid: str
    date: str
    accession: str
    description: str
    modalities: tuple[str, ...]
    images: int | None


@dataclass(frozen=True)
class InstanceSummary:
    """One object of a study as listed by a search (series-level modality included)."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str
    series_number: int
    instance_number: int
    view: str
    frames: int


class _TimeoutSession:
    """Factory for a requests.Session that applies a default timeout to every request (dicomweb-client sets none)."""

    @staticmethod
    def create(timeout: float, verify: bool | str) -> Any:
        import requests

        class Session(requests.Session):
            def request(self, method, url, **kwargs):  # type: ignore[override]
                kwargs.setdefault("timeout", timeout)
                return super().request(method, url, **kwargs)

        session = Session()
        session.verify = verify
        return session


def _value(item: dict, tag: str, default: Any = "") -> Any:
    """The first value of a DICOM JSON attribute (tag as 8 hex digits)."""
    values = (item.get(tag) or {}).get("Value") or []
    return values[0] if values else default


class Archive:
    """A DICOMweb archive: `find_studies`, `instances`, `retrieve`, `store`.

    Credentials: `username`/`password` (HTTP basic) or `token` (bearer). `timeout` is per HTTP request, in seconds.
    """

    def __init__(self, url: str, *, username: str | None = None, password: str | None = None, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S, verify: bool | str = True) -> None:
        from dicomweb_client.api import DICOMwebClient

        if not url or not url.startswith(("http://", "https://")):
            raise ArchiveError(f"The archive address {url!r} is not a DICOMweb URL; give one like http://host:8042/dicom-web.")
        self.url = url.rstrip("/")
        self.timeout = float(timeout)
        session = _TimeoutSession.create(self.timeout, verify)
        if username:
            session.auth = (username, password or "")
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._client = DICOMwebClient(url=self.url, session=session, headers=headers)
        # dicomweb-client's default is 5 attempts with exponential waits (30 s before a refused connection is reported);
        # one quick second attempt is enough here: the watcher retries whole passes, the page lets the user try again.
        self._client.set_http_retry_params(retry=True, max_attempts=HTTP_ATTEMPTS, wait_exponential_multiplier=250)

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one dicomweb-client call, turning network and HTTP failures into ArchiveError."""
        import requests

        try:
            return function(*args, **kwargs)
        except requests.Timeout as error:
            raise ArchiveError(f"The archive at {self.url} did not answer within {self.timeout:g} s while {what}; it may be "
                               "busy: try again, or raise the timeout.") from error
        except requests.ConnectionError as error:
            raise ArchiveError(f"Cannot reach the archive at {self.url} while {what}: check the address and that the archive "
                               "is running and reachable from this machine.") from error
        except requests.HTTPError as error:
            status = error.response.status_code if error.response is not None else None
            if status in (401, 403):
                raise ArchiveError(f"The archive at {self.url} refused the credentials (HTTP {status}) while {what}: check the "
                                   "user name and password, or the token.") from error
            raise ArchiveError(f"The archive at {self.url} answered HTTP {status} while {what}"
                               f"{': ' + error.response.reason if error.response is not None and error.response.reason else ''}.") from error

    def find_studies(self, *, patient_id: str = "", accession: str = "", date_from: str = "", date_to: str = "",
                     limit: int = 100) -> list[StudySummary]:
        """CR/DX studies matching the filters (dates as YYYYMMDD; empty filters match everything), newest first."""
        filters: dict[str, str] = {}
        if patient_id:
            filters["PatientID"] = patient_id
        if accession:
            filters["AccessionNumber"] = accession
        if date_from or date_to:
            filters["StudyDate"] = f"{date_from}-{date_to}"
        found: dict[str, StudySummary] = {}
        for modality in MODALITIES:  # one query per modality: list matching of ModalitiesInStudy varies between archives
            items = self._call("searching for studies", self._client.search_for_studies, limit=limit,
                               search_filters={**filters, "ModalitiesInStudy": modality},
                               fields=["StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedInstances"])
            for item in items:
                modalities = tuple((item.get("00080061") or {}).get("Value") or [])
                if modalities and not set(modalities) & set(MODALITIES):
                    continue
                uid = str(_value(item, "0020000D"))
                found[uid] = StudySummary(uid, str(_value(item, "00080020")), str(_value(item, "00080050")),
                                          str(_value(item, "00081030")), modalities,
                                          int(_value(item, "00201208", 0)) or None)
        return sorted(found.values(), key=lambda study: (study.date, study.study_uid), reverse=True)[:limit]

    def instances(self, study_uid: str) -> list[InstanceSummary]:
        """Every object of a study (images, SRs, PDFs...), in series then instance order."""
        items = self._call("listing the study's images", self._client.search_for_instances, study_instance_uid=study_uid,
                           fields=["Modality", "SeriesNumber", "InstanceNumber", "ViewPosition", "NumberOfFrames"])
        found = [InstanceSummary(study_uid, str(_value(item, "0020000E")), str(_value(item, "00080018")),
                                 str(_value(item, "00080016")), str(_value(item, "00080060")),
                                 int(_value(item, "00200011", 0) or 0), int(_value(item, "00200013", 0) or 0),
                                 str(_value(item, "00185101")).strip().upper(), int(_value(item, "00280008", 1) or 1))
                 for item in items]
        return sorted(found, key=lambda i: (i.series_number, i.series_uid, i.instance_number, i.sop_uid))

    def retrieve(self, instance: InstanceSummary) -> Any:
        """The full object (pydicom Dataset, pixels as stored), held in memory only."""
        return self._call("retrieving an image", self._client.retrieve_instance, study_instance_uid=instance.study_uid,
                          series_instance_uid=instance.series_uid, sop_instance_uid=instance.sop_uid,
                          media_types=RETRIEVE_AS_STORED)

    def store(self, datasets: list[Any]) -> None:
        """Store objects (STOW-RS), then check that the archive kept each one (QIDO-RS): ArchiveError when it did not.

        The check matters: an archive can answer a STOW-RS with success and drop the object (Orthanc does when a
        filter rejects it), and a result recorded as sent must be in the archive.
        """
        if not datasets:
            return
        answer = self._call("storing the results", self._client.store_instances, datasets=list(datasets))
        failed = getattr(answer, "FailedSOPSequence", None)
        if failed:
            reasons = sorted({str(getattr(item, "FailureReason", "?")) for item in failed})
            raise ArchiveError(f"The archive at {self.url} refused {len(failed)} of {len(datasets)} result object(s) "
                               f"(failure reason {', '.join(reasons)}); nothing was recorded as sent.")
        missing = [ds for ds in datasets if not self._call(
            "checking the stored results", self._client.search_for_instances, study_instance_uid=str(ds.StudyInstanceUID),
            search_filters={"SOPInstanceUID": str(ds.SOPInstanceUID)})]
        if missing:
            raise ArchiveError(f"The archive at {self.url} answered that it stored the results, but {len(missing)} of "
                               f"{len(datasets)} object(s) are not in it (a filter or a storage rule of the archive refused "
                               "them); nothing was recorded as sent. Ask the archive's administrator to accept SR and "
                               "secondary capture objects from this program.")
