"""The whole guard on one film: every check, one verdict with its reasons in plain words."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.guard._chest_film import (
    CHEST_FILM_QUANTILE,
    ChestFilmModel,
    chest_film_features,
    load_chest_film,
)
from core.guard._features import (
    SATURATION_LIMIT,
    OodCalibration,
    OodResult,
    check,
    check_many,
    colour_saturation,
)

VERDICT_PASSED = "passed"
VERDICT_NOTES = "passed with notes"
VERDICT_PARTIAL = "passed the checks that ran"
VERDICT_WARNING = "warning"
INVERTED_SENTENCE = ("This film looks inverted (white lungs, dark bones), like a negative or a MONOCHROME1 image exported "
                     "without inversion; the model has only seen films the right way up, so its score means little as it is.")
_NOTE_CODES = (("-bit values", "bit depth rescaled"), ("does not say how it is encoded", "DICOM encoding inferred"),
               ("frames", "first frame of several"), ("inverted before scoring", "scored the right way up (inverted)"))


def note_codes(notes: Iterable[str]) -> list[str]:
    """Short codes (e.g. 'bit depth rescaled') for the decoder's notes (DecodedXray.notes); 'decoding note' otherwise."""
    codes = []
    for note in notes:
        code = next((c for key, c in _NOTE_CODES if key in note), "decoding note")
        if code not in codes:
            codes.append(code)
    return codes


@dataclass(frozen=True)
class GuardVerdict:
    """Everything the guard says about one film: a status, short reason codes and sentences a user can read.

    status: 'warning' (some check flagged the film), 'passed' (every check ran and passed, no decoding notes),
    'passed with notes' (every check passed, but decoding did something worth knowing), 'passed the checks that
    ran' (the model has no ood.npz, so its own check did not run).
    """

    status: str
    reasons: tuple[str, ...]
    details: tuple[str, ...]
    inverted: bool
    inversion_probability: float
    chest_film_distance: float
    chest_film_threshold: float
    model_check: OodResult | None = None

    @property
    def flagged(self) -> bool:
        """True when any check flagged the film."""
        return self.status == VERDICT_WARNING

    @property
    def every_check_passed(self) -> bool:
        """True only when every check ran (the model's own included) and none flagged the film."""
        return self.status in (VERDICT_PASSED, VERDICT_NOTES)

    def message(self) -> str:
        """One paragraph for a warning ('' when nothing was flagged)."""
        if not self.flagged:
            return ""
        opening = ("This image does not look like the chest X-rays the model was trained and validated on "
                   "(children aged 1-5, anterior-posterior, the right way up), so its score may be meaningless. ")
        return opening + " ".join(self.details)

    def row(self) -> dict[str, str]:
        """CSV / table columns: guard (the status), guard_reasons (codes, '; '), guard_details (sentences)."""
        return {"guard": self.status, "guard_reasons": "; ".join(self.reasons), "guard_details": " ".join(self.details)}


GUARD_COLUMNS = ("guard", "guard_reasons", "guard_details")


def looks_inverted(pixels: Any, *, inversion_detector: Any = None, chest_film: ChestFilmModel | None = None) -> tuple[bool, float]:
    """(inverted, P(inverted)) of grey pixels (H, W) in [0, 1]: a chest film with its grey scale reversed.

    True only when the detector says inverted AND the film turned the right way up looks like a training chest film,
    so that an extremity or a CT slice with a bright background is not called a negative chest film.
    """
    from core.imaging import inversion

    detector = inversion_detector or inversion.load_detector()
    chest_film = chest_film or load_chest_film()
    grey = np.asarray(getattr(pixels, "pixels", pixels), np.float32)
    probability = detector.probability(grey)
    if probability <= inversion.DECISION_PROBABILITY:
        return False, probability
    return bool(chest_film.distance(chest_film_features(1.0 - grey))[0] <= chest_film.threshold), probability


def assess(scorer: Any, calibration: OodCalibration | None, decoded: Any, *, raw_bytes: bytes | None = None,
           inversion_detector: Any = None, chest_film: ChestFilmModel | None = None,
           model_check: OodResult | None = None) -> GuardVerdict:
    """Run every check on one decoded X-ray (a DecodedXray, or grey (H, W) in [0, 1]) for one model's Scorer.

    Model-independent: inverted film, colour image (needs raw_bytes), not like a paediatric chest film, smaller than
    the model input, decoding notes. Per model (when `calibration` is given): appearance and feature distances
    (`model_check`, when given, is that check already computed, e.g. by check_many for a batch).
    """
    from core.imaging import inversion

    detector = inversion_detector or inversion.load_detector()
    chest_film = chest_film or load_chest_film()
    pixels = np.asarray(getattr(decoded, "pixels", decoded), np.float32)
    metadata = dict(getattr(decoded, "metadata", {}) or {})
    reasons: list[str] = []
    details: list[str] = []

    inverted, p_inverted = looks_inverted(pixels, inversion_detector=detector, chest_film=chest_film)
    if inverted:
        reasons.append("inverted (negative film)")
        details.append(INVERTED_SENTENCE + f" (P(inverted) = {p_inverted:.2f}.) Score it the right way up instead.")
    saturation = colour_saturation(raw_bytes)
    limit = calibration.saturation_limit if calibration is not None else SATURATION_LIMIT
    if saturation is not None and saturation > limit:
        reasons.append("colour image")
        details.append(f"It is a colour image (mean saturation {saturation:.2f}); X-rays are grey: is this a photograph?")
    distance = float(chest_film.distance(chest_film_features(pixels))[0])
    if distance > chest_film.threshold:
        reasons.append("out of distribution: not like the paediatric chest films")
        details.append(f"It does not look like the paediatric chest films the models were trained on (it could be an adult "
                       f"film, another view or body part, or not an X-ray; chest-film distance {distance:.2f}, "
                       f"{chest_film.info.get('quantile', CHEST_FILM_QUANTILE):.0%} of training films are below "
                       f"{chest_film.threshold:.2f}).")
    height, width = pixels.shape
    if min(height, width) < min(scorer.height, scorer.width):
        reasons.append("smaller than the model input")
        details.append(f"It is only {width}x{height} pixels, smaller than the model's {scorer.width}x{scorer.height} input: "
                       "it was enlarged, and detail the model relies on is missing.")
    if calibration is None:
        model_check = None
    else:
        model_check = model_check or check(scorer, calibration, pixels)
        if model_check.appearance_distance > model_check.appearance_threshold:
            reasons.append("out of distribution: brightness and contrast")
        if model_check.feature_distance > model_check.feature_threshold or any("off the range" in r for r in model_check.reasons):
            reasons.append("out of distribution: the model's features")
        details.extend(r for r in model_check.reasons if "colour image" not in r)  # colour is checked above
    flagged = bool(reasons)
    notes = [str(n) for n in metadata.get("notes", ())]
    codes = note_codes(notes)
    reasons.extend(codes)
    details.extend(notes)
    if flagged:
        status = VERDICT_WARNING
    elif calibration is None:
        status = VERDICT_PARTIAL
        reasons.append("no model-specific check (no ood.npz)")
    else:
        status = VERDICT_NOTES if codes else VERDICT_PASSED
    chest_threshold = float(chest_film.threshold)
    return GuardVerdict(status, tuple(reasons), tuple(details), inverted, p_inverted, distance, chest_threshold, model_check)


def assess_many(scorer: Any, calibration: OodCalibration | None, decoded_images: Sequence[Any], *,
                raw_bytes: Sequence[bytes | None] | None = None, fix_inverted: bool = False) -> tuple[list[Any], list[GuardVerdict]]:
    """(images to score, verdicts) for several decoded X-rays, with one model pass for the model-specific check.

    With fix_inverted, a film that looks inverted is turned the right way up first (core.imaging.inversion.invert, which
    adds a note), and its verdict is that of the corrected film; otherwise images are returned unchanged.
    """
    from core.imaging import inversion

    detector = inversion.load_detector()
    images = [inversion.invert(d) if fix_inverted and looks_inverted(d, inversion_detector=detector)[0] else d for d in decoded_images]
    raws = list(raw_bytes) if raw_bytes is not None else [None] * len(images)
    checks = check_many(scorer, calibration, images) if calibration is not None else [None] * len(images)
    return images, [assess(scorer, calibration, image, raw_bytes=raw, model_check=model_check, inversion_detector=detector)
                    for image, raw, model_check in zip(images, raws, checks)]
