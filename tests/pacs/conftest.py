"""Fixtures for the archive tests: a real Orthanc (Debian orthanc + orthanc-dicomweb) per test, the recommended model.

Orthanc is never skipped: `make test` installs it when missing (`make pacs-tools`); a missing server fails the test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.pacs.orthanc import DICOMWEB_PLUGIN, ORTHANC_BINARY, LocalOrthanc


def _require_orthanc() -> None:
    if not Path(ORTHANC_BINARY).exists() or not Path(DICOMWEB_PLUGIN).exists():
        pytest.fail("Orthanc or its DICOMweb plugin is missing: run `make pacs-tools` "
                    "(apt-get install orthanc orthanc-dicomweb dicom3tools).")


@pytest.fixture()
def orthanc() -> Iterator[LocalOrthanc]:
    """A fresh, empty Orthanc on a free loopback port with its own temporary storage; stopped afterwards."""
    _require_orthanc()
    with LocalOrthanc() as server:
        yield server


@pytest.fixture()
def site_secret(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A site secret for the pseudonymous keys (environment), never the developer's own file."""
    monkeypatch.setenv("PNEUMONIA_SITE_SECRET", "test-site-secret")
    return b"test-site-secret"


@pytest.fixture(scope="session")
def recommended_model():
    """The recommended shipped model with its guard and own threshold (core.pacs.scoring.load_model)."""
    from core.pacs.scoring import load_model

    return load_model()


@pytest.fixture(scope="session")
def demo():
    """The demo archive's objects (real films; invented patients)."""
    from core.pacs.demo import demo_films

    return demo_films()


def dciodvfy_errors(path: Path) -> list[str]:
    """The 'Error' lines of dicom3tools' dciodvfy for a DICOM file (fails when dciodvfy is missing)."""
    import shutil
    import subprocess

    if shutil.which("dciodvfy") is None:
        pytest.fail("dciodvfy is missing: run `make pacs-tools` (apt-get install dicom3tools).")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
