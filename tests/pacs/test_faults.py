"""Bad input and faults, each with a clear message and nothing half-written: the archive down, slow or refusing the
credentials; studies with no radiograph, several frontals, a multi-frame, compressed films, non-image objects; a
STOW-RS refused; the watcher killed mid-study; the trail locked or read-only."""

from __future__ import annotations

import io
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from core import trail as audit
from core.pacs import films
from core.pacs.client import Archive, ArchiveError
from core.pacs.orthanc import LocalOrthanc, free_port
from core.pacs.watch import process_study, watch_once

ROOT = Path(__file__).resolve().parents[2]
FILMS = sorted((ROOT / "data" / "chest_xray" / "test" / "NORMAL").glob("*.jpeg"))
FIELD = ROOT / "tests" / "fixtures" / "field_cases"


def test_archive_down_is_a_clear_message() -> None:
    archive = Archive(f"http://127.0.0.1:{free_port()}/dicom-web", timeout=5)
    with pytest.raises(ArchiveError, match="Cannot reach the archive .* check the address"):
        archive.find_studies()


def test_slow_archive_times_out_with_a_clear_message() -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        archive = Archive(f"http://127.0.0.1:{silent.getsockname()[1]}/dicom-web", timeout=0.5)
        with pytest.raises(ArchiveError, match=r"did not answer within 0.5 s"):
            archive.find_studies()


def test_wrong_credentials_are_refused_and_the_right_ones_work() -> None:
    with LocalOrthanc(users={"ward7": "correct horse"}) as server:
        with pytest.raises(ArchiveError, match=r"refused the credentials \(HTTP 401\)"):
            Archive(server.dicomweb_url, username="ward7", password="wrong").find_studies()
        with pytest.raises(ArchiveError, match="refused the credentials"):
            Archive(server.dicomweb_url).find_studies()
        server.upload(films.to_bytes(films.wrap_film(FILMS[0], patient_id="C1", age_years=3)))
        assert len(Archive(server.dicomweb_url, username="ward7", password="correct horse").find_studies()) == 1


def pdf_document(study_uid: str) -> pydicom.Dataset:
    """An Encapsulated PDF in a study (a tiny real PDF)."""
    from pydicom.dataset import FileMetaDataset

    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.104.1", generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.Modality, ds.PatientID, ds.PatientName, ds.SeriesNumber, ds.InstanceNumber = "DOC", "C2", "Demo^C2", 5, 1
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.DocumentTitle, ds.BurnedInAnnotation = "Request form", "YES"
    body = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    ds.EncapsulatedDocument = body + b"\0" * (len(body) % 2)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    return ds


def test_several_frontals_and_a_pdf_the_first_frontal_is_scored_and_the_rest_listed(orthanc, recommended_model, site_secret) -> None:
    study = generate_uid()
    first = films.wrap_film(FILMS[0], patient_id="C2", age_years=3, study_uid=study, series_number=1)
    second = films.wrap_film(FILMS[1], patient_id="C2", age_years=3, study_uid=study, series_number=2)
    for ds in (second, first, pdf_document(study)):
        orthanc.upload(films.to_bytes(ds))
    outcome = process_study(Archive(orthanc.dicomweb_url), study, recommended_model, None, send=False)
    assert outcome.result.sop_uid == first.SOPInstanceUID and outcome.result.scored
    assert any("2 frontal images; the first (series 1" in note for note in outcome.notes)
    assert any("encapsulated document (PDF), not a radiograph: left out" in note for note in outcome.notes)


def test_study_without_a_radiograph_has_nothing_to_score(orthanc, recommended_model, site_secret) -> None:
    study = generate_uid()
    orthanc.upload(films.to_bytes(pdf_document(study)))
    outcome = process_study(Archive(orthanc.dicomweb_url), study, recommended_model, None)
    assert outcome.result is None and not outcome.error
    assert "no radiograph" in outcome.line()


def test_multi_frame_object_is_refused_with_its_reason(orthanc, recommended_model, site_secret, tmp_path) -> None:
    ds = films.wrap_film(FILMS[0], patient_id="C3", age_years=3, frames=2)
    orthanc.upload(films.to_bytes(ds))
    trail = audit.Trail(tmp_path / "t.sqlite")
    outcome = process_study(Archive(orthanc.dicomweb_url), ds.StudyInstanceUID, recommended_model, trail)
    assert not outcome.result.scored and "2 frames" in outcome.result.reasons[0]
    assert trail.frame()["decision"].tolist() == ["NOT SCORED"]


@pytest.mark.parametrize("name, syntax", [("RG1_J2KI.dcm", "1.2.840.10008.1.2.4.91"),
                                          ("dicom_jpeg_lossless_sv1.dcm", "1.2.840.10008.1.2.4.70")])
def test_compressed_films_are_retrieved_as_stored_and_decoded(orthanc, recommended_model, site_secret, name, syntax) -> None:
    path = ROOT / "data" / "samples" / name if name.startswith("RG1") else FIELD / name
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality, ds.PatientAge, ds.BodyPartExamined = "CR", "004Y", "CHEST"  # a header that lets it through, so that its pixels are decoded and checked
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    orthanc.upload(buffer.getvalue())
    archive = Archive(orthanc.dicomweb_url)
    [item] = archive.instances(ds.StudyInstanceUID)
    assert archive.retrieve(item).file_meta.TransferSyntaxUID == syntax
    outcome = process_study(archive, ds.StudyInstanceUID, recommended_model, None, send=False)
    assert outcome.result.guard_status  # decoded: the image checks ran on its pixels
    assert outcome.result.decided_by != "decoder"


class RefusingOrthanc(LocalOrthanc):
    """An Orthanc whose Lua filter drops every SR and secondary capture while answering the STOW-RS with success."""

    def configuration(self) -> dict:
        script = self.folder / "refuse.lua"
        script.write_text('function ReceivedInstanceFilter(dicom, origin, info)\n'
                          '  return not (dicom.Modality == "SR" or dicom.Modality == "OT")\nend\n')
        return {**super().configuration(), "LuaScripts": [str(script)]}


def test_results_refused_by_the_archive_are_not_recorded_as_sent(recommended_model, site_secret, tmp_path) -> None:
    with RefusingOrthanc() as server:
        ds = films.wrap_film(FILMS[0], patient_id="C4", age_years=3)
        server.upload(films.to_bytes(ds))
        trail = audit.Trail(tmp_path / "t.sqlite")
        archive = Archive(server.dicomweb_url)
        outcome = process_study(archive, ds.StudyInstanceUID, recommended_model, trail)
        assert "are not in it" in outcome.error and "nothing was recorded as sent" in outcome.error
        assert trail.frame().empty  # no finished row
        assert trail.frame(include_pending=True)["state"].tolist() == ["pending"]  # retried by the next pass
        assert [i.modality for i in archive.instances(ds.StudyInstanceUID)] == ["DX"]


KILLER = """
import os, signal, sys
from core.pacs import client
stored = []
original = client.Archive.store
def store_then_die(self, datasets):
    original(self, datasets)
    stored.append(1)
    if len(stored) == 2:  # killed after the archive took the second study's results, before the trail finished it
        os.kill(os.getpid(), signal.SIGKILL)
client.Archive.store = store_then_die
from core.pacs.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_watcher_killed_mid_study_restarts_without_scoring_twice_or_losing_a_film(orthanc, site_secret, tmp_path) -> None:
    from core.pacs import demo as demo_archive

    demo = demo_archive.demo_films(per_class=1)
    demo_archive.load(orthanc, demo)
    database = tmp_path / "trail.sqlite"
    env = {**os.environ, "PNEUMONIA_SITE_SECRET": site_secret.decode(), "PYTHONPATH": str(ROOT)}
    arguments = ["--url", orthanc.dicomweb_url, "--audit-db", str(database), "watch", "--once"]
    killed = subprocess.run([sys.executable, "-c", KILLER, *arguments], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    trail = audit.Trail(database)
    rows = trail.frame(include_pending=True)
    assert (rows["state"] == "done").sum() == 1 and (rows["state"] == "pending").sum() == 1

    again = subprocess.run([sys.executable, "-m", "core.pacs", *arguments], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "1 already done earlier, 0 failed" in again.stderr
    rows = trail.frame(include_pending=True)
    assert len(rows) == len(demo) and set(rows["state"]) == {"done"} and rows["film_key"].is_unique
    archive = Archive(orthanc.dicomweb_url)
    for film in demo:  # one SR per film, the interrupted one included (its result objects have fixed UIDs)
        modalities = [i.modality for i in archive.instances(film.dataset.StudyInstanceUID)]
        assert modalities.count("SR") == 1, film.label


def test_locked_trail_is_a_clear_message_and_nothing_is_sent(orthanc, recommended_model, site_secret, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(audit, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    database = tmp_path / "trail.sqlite"
    trail = audit.Trail(database)
    ds = films.wrap_film(FILMS[0], patient_id="C5", age_years=3)
    orthanc.upload(films.to_bytes(ds))
    holder = sqlite3.connect(database)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        outcome = process_study(Archive(orthanc.dicomweb_url), ds.StudyInstanceUID, recommended_model, trail)
    finally:
        holder.rollback()
        holder.close()
    assert "locked by another program" in outcome.error and "nothing was written" in outcome.error
    assert [i.modality for i in Archive(orthanc.dicomweb_url).instances(ds.StudyInstanceUID)] == ["DX"]
    assert audit.Trail(database).frame(include_pending=True).empty


def test_read_only_trail_is_a_clear_message(tmp_path) -> None:
    database = tmp_path / "trail.sqlite"
    audit.Trail(database).dispose()
    read_only = audit.Trail(f"sqlite:///file:{database}?mode=ro&uri=true")
    with pytest.raises(audit.TrailError, match="read-only .* nothing was written"):
        read_only.record(audit.Record("cli", "k" * 64, "m", "f"))
    assert audit.Trail(database).frame().empty
