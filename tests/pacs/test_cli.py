"""python -m core.pacs in a fresh process against a real Orthanc: query lists the CR/DX studies without patient tags,
score scores one study and stores its results; watch keeps going when the archive is down."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from core import trail as audit
from core.pacs import films, watch
from core.pacs.client import Archive
from core.pacs.orthanc import free_port

ROOT = Path(__file__).resolve().parents[2]
FILM = sorted((ROOT / "data" / "chest_xray" / "test" / "NORMAL").glob("*.jpeg"))[5]


def run(*arguments: str, database: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PNEUMONIA_SITE_SECRET": "cli-test", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "core.pacs", *arguments[:2], "--audit-db", str(database), *arguments[2:]],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_query_then_score_a_study(orthanc, tmp_path) -> None:
    source = films.wrap_film(FILM, patient_id="CLI-PATIENT-7", age_years=2, accession="CLI0007")
    orthanc.upload(films.to_bytes(source))
    database = tmp_path / "trail.sqlite"
    listed = run("--url", orthanc.dicomweb_url, "query", database=database)
    assert listed.returncode == 0, listed.stderr[-2000:]
    [header, line] = listed.stdout.strip().splitlines()
    assert header.startswith("date\taccession") and "CLI0007" in line and source.StudyInstanceUID in line
    model = ROOT / "models" / "mlp-64"  # --model: another model than the recommended one (and a quick one to load)
    scored = run("--url", orthanc.dicomweb_url, "--model", str(model), "score", source.StudyInstanceUID, database=database)
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert ("PNEUMONIA p=" in scored.stdout or "NORMAL p=" in scored.stdout or "not scored" in scored.stdout)
    assert "results stored in" in scored.stdout
    for text in (listed.stdout + listed.stderr, scored.stdout + scored.stderr):
        assert "CLI-PATIENT-7" not in text and "Demo^" not in text  # no patient tag on screen or in the log
    modalities = sorted(i.modality for i in Archive(orthanc.dicomweb_url).instances(source.StudyInstanceUID))
    assert modalities.count("SR") == 1
    rows = audit.Trail(database).frame()
    assert len(rows) == 1 and rows["model"].iloc[0] == "mlp-64"


def test_watch_keeps_going_when_the_archive_is_down(tmp_path, caplog) -> None:
    archive = Archive(f"http://127.0.0.1:{free_port()}/dicom-web", timeout=2)
    with caplog.at_level(logging.ERROR):
        watch.watch(archive, model=None, trail=audit.Trail(tmp_path / "t.sqlite"), interval_s=0.01, passes=2)
    failures = [r.getMessage() for r in caplog.records if "failed, retrying" in r.getMessage()]
    assert len(failures) == 2 and "Cannot reach the archive" in failures[0]


def test_bad_url_is_a_usage_error(tmp_path) -> None:
    bad = run("--url", "ftp://archive", "query", database=tmp_path / "t.sqlite")
    assert bad.returncode == 2 and "not a DICOMweb URL" in bad.stderr


def test_rolling_window_of_study_dates() -> None:
    import datetime as dt

    assert watch.rolling_since(2, dt.date(2026, 3, 1)) == "20260228"
    assert watch.rolling_since(1, dt.date(2026, 3, 1)) == "20260301"
