"""Scope from the DICOM header: age, view, body part and modality (header-only fixtures, no pixels)."""

from __future__ import annotations

import pydicom
import pytest

from core.pacs.scope import age_in_years, scope_from_header


def header(**values: str) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize("age, years", [("006Y", 6.0), ("018M", 1.5), ("052W", 52 / 52.18), ("365D", 365 / 365.25), ("045Y", 45.0)])
def test_patient_age_units(age: str, years: float) -> None:
    assert age_in_years(header(PatientAge=age)) == pytest.approx(years)


def test_age_from_birth_and_study_date_when_patient_age_is_absent() -> None:
    assert age_in_years(header(PatientBirthDate="19400305", StudyDate="20040826")) == pytest.approx(64.47, abs=0.01)
    assert age_in_years(header(PatientBirthDate="", StudyDate="20040826")) is None
    assert age_in_years(header(PatientAge="garbage")) is None


def test_adult_lateral_and_non_chest_are_out_of_scope_with_their_reasons() -> None:
    adult = scope_from_header(header(PatientAge="030Y", ViewPosition="PA", BodyPartExamined="CHEST", Modality="CR"))
    assert not adult.in_scope and adult.age_band == "adult" and "adult" in adult.reasons[0]
    lateral = scope_from_header(header(PatientAge="003Y", ViewPosition="LL", BodyPartExamined="CHEST", Modality="DX"))
    assert not lateral.in_scope and lateral.view == "lateral" and "lateral" in lateral.reasons[0]
    knee = scope_from_header(header(PatientAge="003Y", ViewPosition="AP", BodyPartExamined="KNEE", Modality="DX"))
    assert not knee.in_scope and knee.body_part == "other" and "knee" in knee.reasons[0]
    ct = scope_from_header(header(PatientAge="003Y", Modality="CT"))
    assert not ct.in_scope and "CT" in ct.reasons[0]


def test_child_frontal_chest_is_in_scope_and_no_age_leaves_it_to_the_image_checks() -> None:
    child = scope_from_header(header(PatientAge="003Y", ViewPosition="AP", BodyPartExamined="CHEST", Modality="DX"))
    assert child.in_scope and child.age_band == "child" and child.view == "frontal" and child.age_known
    unknown = scope_from_header(header(ViewPosition="PA", Modality="CR"))
    assert unknown.in_scope and not unknown.age_known and "image checks" in unknown.notes[0]
    teenager = scope_from_header(header(PatientAge="015Y", Modality="DX"))
    assert teenager.in_scope and "outside the training ages" in teenager.notes[0]
