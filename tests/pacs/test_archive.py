"""From a real Orthanc and back: query, retrieve, score, SR + Secondary Capture stored, one trail row per film.

The archive holds real films (Kaggle test films wrapped as DICOM for invented children, the shipped adult CR with
and without its age, an extremity, a header-lateral). The assertions are about the workflow, never about what the
model happens to score: a scored film's decision is checked against its own threshold, a refused one by its reason.
"""

from __future__ import annotations

import pydicom
import pytest

from core import trail as audit
from core.pacs import demo as demo_archive
from core.pacs import results
from core.pacs.client import Archive
from core.pacs.watch import watch_once


def reports_in(archive: Archive, study_uid: str) -> list[pydicom.Dataset]:
    """Every SR of a study, retrieved from the archive."""
    found = []
    for item in archive.instances(study_uid):
        if item.modality == "SR":
            found.append(archive.retrieve(item))
    return found


def test_watch_once_scores_every_study_writes_results_back_and_records_each_film_once(orthanc, demo, recommended_model,
                                                                                        site_secret, tmp_path) -> None:
    assert {film.expected for film in demo} == {"scored", "refused: header (adult)", "refused: image checks",
                                                "refused: header (not the chest)", "refused: header (lateral)"}
    demo_archive.load(orthanc, demo)
    archive = Archive(orthanc.dicomweb_url)
    assert len(archive.find_studies()) == len(demo)
    trail = audit.Trail(tmp_path / "trail.sqlite")

    outcomes = watch_once(archive, recommended_model, trail)
    by_study = {o.study_uid: o for o in outcomes}
    assert len(outcomes) == len(demo) and not any(o.error for o in outcomes)
    for film in demo:
        outcome = by_study[str(film.dataset.StudyInstanceUID)]
        result = outcome.result
        assert result.sop_uid == film.dataset.SOPInstanceUID
        [report] = reports_in(archive, film.dataset.StudyInstanceUID)
        values = results.read_report(report)
        assert values["Source of Measurement"] == film.dataset.SOPInstanceUID
        assert values["Algorithm Version"] == recommended_model.fingerprint
        if film.expected == "scored":
            assert result.scored, (film.label, result.reasons)
            assert values["Probability of pneumonia"] == pytest.approx(result.probability, abs=1e-6)
            assert values["Finding"] == ("Pneumonia" if result.probability >= recommended_model.threshold else "No pneumonia flagged")
            captures = [i for i in archive.instances(film.dataset.StudyInstanceUID) if i.modality == "OT"]
            assert len(captures) == 1
        else:
            assert not result.scored and values["Finding"] == "Not scored"
            kind = film.expected.removeprefix("refused: ")
            if kind.startswith("header"):
                assert result.decided_by == "DICOM header"
                word = kind[kind.index("(") + 1:-1].split()[-1]  # adult / chest / lateral
                assert word in values["Reason not scored"][0]
            else:  # the adult film with no age in its header: the image checks must catch it, and say so
                assert result.decided_by.startswith("image checks:") and not result.scope.age_known
                assert "guard flagged" in values["Reason not scored"][0]

    rows = trail.frame()
    assert len(rows) == len(demo) and set(rows["state"]) == {"done"} and rows["sent"].all()
    assert set(rows["film_key"]) == {audit.pseudonymous_key(f.dataset.SOPInstanceUID) for f in demo}
    scored_rows = rows[rows["decision"] != "NOT SCORED"]
    assert len(scored_rows) == sum(f.expected == "scored" for f in demo)
    assert ((scored_rows["score"] >= scored_rows["threshold"]) == (scored_rows["decision"] == "PNEUMONIA")).all()

    again = watch_once(archive, recommended_model, trail)  # restart: nothing is scored twice
    assert all(o.skipped for o in again)
    assert len(trail.frame()) == len(demo)
    assert all(len(reports_in(archive, f.dataset.StudyInstanceUID)) == 1 for f in demo)


def test_the_trail_holds_no_patient_data(orthanc, demo, recommended_model, site_secret, tmp_path) -> None:
    demo_archive.load(orthanc, demo)
    database = tmp_path / "trail.sqlite"
    trail = audit.Trail(database)
    watch_once(Archive(orthanc.dicomweb_url), recommended_model, trail, send=False)
    trail.dispose()
    stored = database.read_bytes()
    for film in demo:
        ds = film.dataset
        identifiers = [ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.get("PatientID", ""),
                       str(ds.get("PatientName", "")), ds.get("PatientBirthDate", ""), ds.get("AccessionNumber", ""),
                       ds.get("PatientAge", "")]
        for value in filter(None, map(str, identifiers)):
            assert value.encode() not in stored, f"{value!r} of {film.label} is in the trail"
    assert len(audit.Trail(database).frame()) == len(demo)
