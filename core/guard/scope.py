"""Is a film within what the models were built for? When the guard says it is not a paediatric chest film, no verdict.

The guard (core.guard) gives reason codes; this module turns them into plain words for a manager or a clinician,
and decides when the decision must be withheld: a film that does not look like a child's frontal chest X-ray, or a
colour picture, gets a reason instead of NORMAL/PNEUMONIA, and its raw score is meaningless. The numbers behind each
reason (distances, thresholds) stay in the guard's details, for an expander.
"""

from __future__ import annotations

from typing import Any

WITHHELD = "WITHHELD"
"""The decision text of a film outside the models' scope (page, CSV, JSON)."""

NOT_A_CHEST_FILM = "out of distribution: not like the paediatric chest films"
COLOUR_IMAGE = "colour image"
INVERTED = "inverted (negative film)"
OUT_OF_SCOPE_REASONS = (NOT_A_CHEST_FILM, COLOUR_IMAGE)
"""Guard reason codes that put a film outside the scope of every model: the decision is withheld."""

PLAIN_REASONS = {
    NOT_A_CHEST_FILM: "It does not look like a child's frontal chest X-ray: it could be an adult's film, another body "
                      "part or view, or not an X-ray at all.",
    COLOUR_IMAGE: "It is a colour picture, and X-rays are grey: it may be a photograph or a screenshot.",
    INVERTED: "It looks inverted (white lungs, dark bones), like a negative film; the model has only "
                                "seen films the right way up.",
    "smaller than the model input": "It is smaller than the images the model reads, so it had to be enlarged and fine "
                                    "detail is missing.",
    "out of distribution: brightness and contrast": "Its brightness and contrast are unlike the X-rays the model was "
                                                   "checked on.",
    "out of distribution: the model's features": "What the model sees in it is unlike what it saw in the X-rays it was "
                                                 "checked on.",
}
"""Plain words for each reason code a guard warning can carry (core.guard.assess)."""


def out_of_scope(verdict: Any) -> bool:
    """True when the guard's verdict (a GuardVerdict, or None) says the film is not a paediatric chest film."""
    return verdict is not None and any(reason in OUT_OF_SCOPE_REASONS for reason in getattr(verdict, "reasons", ()))


def plain_reasons(verdict: Any) -> list[str]:
    """The guard's warnings in plain words, without numbers, most serious first ([] when nothing was flagged)."""
    if verdict is None or not getattr(verdict, "flagged", False):
        return []
    codes = list(getattr(verdict, "reasons", ()))
    first = [c for c in (INVERTED, *OUT_OF_SCOPE_REASONS) if c in codes]  # an inverted chest film is unlike one, too
    ordered = first + [c for c in codes if c not in first]
    return [PLAIN_REASONS[code] for code in ordered if code in PLAIN_REASONS]


def withheld_message(verdict: Any) -> str:
    """The sentence shown instead of a decision for an out-of-scope film ('' when the film is in scope)."""
    if not out_of_scope(verdict):
        return ""
    reasons = " ".join(plain_reasons(verdict)[:1])
    fix = (" Score it the right way up to get a decision." if INVERTED in getattr(verdict, "reasons", ()) else "")
    return (f"No decision: this image is outside what the model was built for. {reasons} The model was trained on "
            f"frontal chest X-rays of children aged one to five, so its score for this image means nothing.{fix}")
