"""Is a film within what the model was built for? Decided from the DICOM header, used and never kept.

The shipped models learnt from frontal chest films of children aged 1-5. The header's patient age (PatientAge, or
birth date and study date), view (ViewPosition) and body part (BodyPartExamined) decide when they are present; when
the age is absent the image checks of core.guard decide instead (core.pacs.scoring says which one did).
Only the verdict and plain reasons leave this module: never the age's source values, a date or an identifier.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

MAX_AGE_YEARS = 17  # an 18-year-old is an adult: out of scope
TRAINING_AGES = (1, 5)  # the Kaggle paediatric films: children aged 1-5 (Kermany et al. 2018)
FRONTAL_VIEWS = {"PA", "AP", "AP SUPINE", "PA ERECT", "AP ERECT"}
LATERAL_VIEWS = {"LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "LPO", "RPO", "LAO", "RAO"}
CHEST_PARTS = {"CHEST", "THORAX", "LUNG", "PORT CHEST", "CHEST_LAT"}
MODALITIES = ("CR", "DX")


@dataclass(frozen=True)
class Scope:
    """The header's verdict: in_scope, the reasons it is not (plain sentences), and what the header said in coarse terms."""

    in_scope: bool
    reasons: tuple[str, ...] = ()
    age_band: str = "unknown"  # "child", "adult" or "unknown": never the age itself
    view: str = "unknown"  # "frontal", "lateral" or "unknown"
    body_part: str = "unknown"  # "chest", "other" or "unknown"
    notes: tuple[str, ...] = field(default=())

    @property
    def age_known(self) -> bool:
        """Whether the header gave an age (else the image checks must catch an adult film)."""
        return self.age_band != "unknown"


def age_in_years(ds: Any) -> float | None:
    """The patient's age in years from PatientAge ('006Y', '018M', '010W', '020D'), else birth date and study date; None if absent."""
    text = str(getattr(ds, "PatientAge", "") or "").strip().upper()
    match = re.fullmatch(r"(\d{1,3})([DWMY])", text)
    if match:
        value, unit = int(match.group(1)), match.group(2)
        return value / {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}[unit]
    birth, study = _date(getattr(ds, "PatientBirthDate", "")), _date(getattr(ds, "StudyDate", "") or getattr(ds, "ContentDate", ""))
    if birth and study and study >= birth:
        return (study - birth).days / 365.25
    return None


def _date(value: Any) -> dt.date | None:
    """A DICOM DA value as a date, None when empty or malformed."""
    try:
        return dt.datetime.strptime(str(value or "").strip()[:8], "%Y%m%d").date()
    except ValueError:
        return None


def scope_from_header(ds: Any) -> Scope:
    """The scope verdict of one image's header (a pydicom Dataset or any object with DICOM attribute names)."""
    reasons: list[str] = []
    notes: list[str] = []
    age = age_in_years(ds)
    if age is None:
        age_band = "unknown"
        notes.append("The header gives no patient age: the image checks decide whether this is a child's film.")
    elif age > MAX_AGE_YEARS:
        age_band = "adult"
        reasons.append(f"The header says the patient is an adult (over {MAX_AGE_YEARS}); the model was built on children "
                       f"aged {TRAINING_AGES[0]}-{TRAINING_AGES[1]}.")
    else:
        age_band = "child"
        if not TRAINING_AGES[0] <= age < TRAINING_AGES[1] + 1:
            notes.append(f"The child is outside the training ages ({TRAINING_AGES[0]}-{TRAINING_AGES[1]} years): read the score with care.")
    view_text = str(getattr(ds, "ViewPosition", "") or "").strip().upper()
    if view_text in LATERAL_VIEWS:
        view = "lateral"
        reasons.append(f"The header says this is a lateral or oblique view ({view_text}); the model reads frontal (AP/PA) films only.")
    elif view_text in FRONTAL_VIEWS:
        view = "frontal"
    else:
        view = "unknown"
        if view_text:
            notes.append(f"The header's view ({view_text}) is not one this program knows; the image checks decide.")
    part_text = str(getattr(ds, "BodyPartExamined", "") or "").strip().upper()
    if part_text in CHEST_PARTS:
        body_part = "chest"
    elif part_text:
        body_part = "other"
        reasons.append(f"The header says the body part is {part_text.lower()}, not the chest.")
    else:
        body_part = "unknown"
    modality = str(getattr(ds, "Modality", "") or "").strip().upper()
    if modality and modality not in MODALITIES:
        reasons.append(f"It is a {modality} image, not a radiograph (CR or DX).")
    return Scope(not reasons, tuple(reasons), age_band, view, body_part, tuple(notes))
