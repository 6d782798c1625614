"""A local Orthanc archive (Debian `orthanc` + `orthanc-dicomweb`, GPL-3.0, run as a separate server, never linked).

Started on a free loopback port with its own temporary storage and configuration, for the tests, `make pacs-demo`
and the bench: ``with LocalOrthanc() as archive: archive.dicomweb_url``.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ORTHANC_BINARY = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
INSTALL_HINT = "install the Debian packages: apt-get install orthanc orthanc-dicomweb (make pacs-tools does it)"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalOrthanc:
    """One Orthanc process on 127.0.0.1: `start()` waits until its REST API answers, `stop()` ends it and removes its storage.

    ``users`` (name -> password) turns HTTP basic authentication on; ``storage`` keeps the archive in a given folder
    (kept after stop) instead of a temporary one.
    """

    def __init__(self, *, port: int | None = None, users: dict[str, str] | None = None, storage: str | Path | None = None,
                 name: str = "PNEUMONIA-TEST") -> None:
        self.port = port or free_port()
        self.users = dict(users or {})
        self.name = name
        self._own_storage = storage is None
        self.folder = Path(storage) if storage else Path(tempfile.mkdtemp(prefix="orthanc-"))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The REST root, e.g. http://127.0.0.1:8042."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb root (QIDO-RS, WADO-RS, STOW-RS)."""
        return f"{self.url}/dicom-web"

    def configuration(self) -> dict[str, Any]:
        """The Orthanc configuration written for this instance (loopback only, no DICOM port, DICOMweb on)."""
        return {
            "Name": self.name, "StorageDirectory": str(self.folder / "db"), "IndexDirectory": str(self.folder / "db"),
            "HttpPort": self.port, "RemoteAccessAllowed": False, "HttpServerEnabled": True, "DicomServerEnabled": False,
            "Plugins": [DICOMWEB_PLUGIN], "AuthenticationEnabled": bool(self.users), "RegisteredUsers": self.users,
            "OverwriteInstances": True, "StableAge": 1, "ConcurrentJobs": 1, "HttpThreadsCount": 8,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "StudiesMetadata": "Full",
                         "SeriesMetadata": "Full"},
        }

    def start(self, *, timeout: float = 60.0) -> "LocalOrthanc":
        """Start the server and wait until it answers (raises RuntimeError with its log when it does not)."""
        if not Path(ORTHANC_BINARY).exists() or not Path(DICOMWEB_PLUGIN).exists():
            raise RuntimeError(f"Orthanc or its DICOMweb plugin is missing; {INSTALL_HINT}.")
        self.folder.mkdir(parents=True, exist_ok=True)
        config_file = self.folder / "orthanc.json"
        config_file.write_text(json.dumps(self.configuration(), indent=2))
        self._log = (self.folder / "orthanc.log").open("wb")
        self.process = subprocess.Popen([ORTHANC_BINARY, str(config_file)], stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self._answers():
                logger.info("Orthanc answers on %s (storage %s)", self.url, self.folder)
                return self
            time.sleep(0.2)
        log = (self.folder / "orthanc.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"Orthanc did not start on {self.url} within {timeout:.0f} s. Its log ends with:\n{log}")

    def _answers(self) -> bool:
        """Whether the REST API answers /system (any HTTP status counts: 401 means it is up with authentication)."""
        import requests

        try:
            requests.get(f"{self.url}/system", timeout=1)
            return True
        except requests.RequestException:
            return False

    def session(self) -> Any:
        """A requests.Session for Orthanc's own REST API (with the first registered user's credentials)."""
        import requests

        session = requests.Session()
        if self.users:
            session.auth = next(iter(self.users.items()))
        return session

    def upload(self, data: bytes) -> dict:
        """Store one DICOM file through the REST API (/instances); Orthanc's answer (ID, ParentStudy, Status)."""
        answer = self.session().post(f"{self.url}/instances", data=data, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def stop(self) -> None:
        """End the server (SIGTERM, then SIGKILL after 10 s) and remove its temporary storage."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None
        if self._own_storage:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "LocalOrthanc":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
