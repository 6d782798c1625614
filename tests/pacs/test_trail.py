"""The audit trail on SQLite and on a real PostgreSQL: keys, claim/complete, one row per film, readings."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from core import trail as audit


def test_key_is_the_hmac_of_the_uid_with_the_site_secret(site_secret) -> None:
    uid = "1.2.826.0.1.3680043.8.498.1"
    assert audit.pseudonymous_key(uid) == hmac.new(site_secret, uid.encode(), hashlib.sha256).hexdigest()
    assert audit.pseudonymous_key(uid, b"another site") != audit.pseudonymous_key(uid)
    data = b"\x89PNG not really"
    assert audit.pseudonymous_key(data) == hmac.new(site_secret, hashlib.sha256(data).digest(), hashlib.sha256).hexdigest()


def test_upload_key_is_that_of_the_dicom_sop_instance_uid_else_of_the_bytes(site_secret) -> None:
    from pathlib import Path

    import pydicom

    dicom = Path(__file__).resolve().parents[2] / "data" / "samples" / "RG1_UNCI.dcm"
    uid = pydicom.dcmread(dicom, stop_before_pixels=True).SOPInstanceUID
    assert audit.film_key("x.dcm", dicom.read_bytes()) == audit.pseudonymous_key(str(uid))
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
    assert audit.film_key("x.png", png) == audit.pseudonymous_key(png)


def test_secret_file_is_created_once_and_private(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(audit.ENV_SECRET, raising=False)
    monkeypatch.setenv(audit.ENV_SECRET_FILE, str(tmp_path / "secret"))
    first = audit.site_secret()
    assert len(first) == 64 and audit.site_secret() == first
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600


def test_location_from_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(audit.ENV_DB, str(tmp_path / "x.sqlite"))
    assert audit.database_url() == f"sqlite:///{tmp_path / 'x.sqlite'}"
    monkeypatch.setenv(audit.ENV_DB, "postgresql+pg8000://u:p@db/trail")
    assert audit.database_url() == "postgresql+pg8000://u:p@db/trail"


def exercise(trail: audit.Trail) -> None:
    """Claim, resume, complete, record once, readings: the behaviour every backend must have."""
    key = "a" * 64
    row = trail.claim("pacs", key, "m", "fp1")
    assert trail.claim("pacs", key, "m", "fp1") == row  # an unfinished film is resumed, not duplicated
    assert trail.frame().empty and len(trail.frame(include_pending=True)) == 1
    trail.complete(row, audit.Record("pacs", key, "m", "fp1", threshold=0.79, threshold_source="own", score=0.91,
                                     decision="PNEUMONIA", guard_status="passed", sent=True, sent_to="archive"))
    assert trail.claim("pacs", key, "m", "fp1") is None  # done: never again
    assert trail.claim("pacs", key, "m", "fp2") is not None  # another model version is another row
    assert trail.record(audit.Record("upload", key, "m", "fp1", score=0.5)) is not None
    assert trail.record(audit.Record("upload", key, "m", "fp1", score=0.5)) is None  # a page rerun writes nothing
    trail.record_reading(row, agree=False, final_label="NORMAL")
    with pytest.raises(ValueError, match="final label"):
        trail.record_reading(row, final_label="maybe")
    frame = trail.frame()
    done = frame[frame["id"] == row].iloc[0]
    assert (done["score"], done["decision"], bool(done["sent"]), done["reading"], done["final_label"]) == (
        0.91, "PNEUMONIA", True, "disagree", "NORMAL")
    assert trail.find("pacs", key, "fp1") == row and trail.find("pacs", "b" * 64, "fp1") is None


def test_trail_on_sqlite(tmp_path) -> None:
    exercise(audit.Trail(tmp_path / "trail.sqlite"))


def test_trail_on_postgresql() -> None:
    from tests.trail_pg import LocalPostgres

    server = LocalPostgres().start()
    try:
        trail = audit.Trail(server.url)
        exercise(trail)
        trail.dispose()
    finally:
        server.stop()
