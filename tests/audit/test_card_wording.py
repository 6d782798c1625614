"""The audit's words agree with its numbers: the card's edge headline with its own table, Grad-CAM shares with a verdict."""

from __future__ import annotations

import pytest

from core import audit
from core.models import registry
from tests.conftest import PROJECT_ROOT


def _cam(lungs: float, edges: float) -> dict:
    """A Grad-CAM region summary (unit-test fixture): lungs cover 32 % of the film, border + corners 31 %."""
    rest = 1.0 - lungs - edges
    return {"mass": {"lungs": lungs, "other": rest * 0.7, "lower": rest * 0.3, "border": edges * 0.6, "corners": edges * 0.4},
            "area": {"lungs": 0.32, "other": 0.23, "lower": 0.14, "border": 0.22, "corners": 0.09}, "edge_mass": edges}


@pytest.mark.parametrize(("lungs", "edges", "words"), [
    (0.10, 0.55, "mostly reading the film"),
    (0.23, 0.48, "partly reading the film, not the lungs"),
    (0.60, 0.20, "mostly where the lungs are"),
    (0.20, 0.20, "spread over the film"),
])
def test_gradcam_shares_come_with_a_verdict(lungs: float, edges: float, words: str) -> None:
    verdict = audit.gradcam_verdict(_cam(lungs, edges))
    assert words in verdict
    if edges > 0.31:
        assert f"{edges:.0%} of the evidence" in verdict


def test_shipped_cards_say_what_their_tables_say() -> None:
    audited = [e for e in registry.list_models(PROJECT_ROOT / "models") if e.available and e.card.get("audit")]
    assert audited, "the shipped models carry an audit"
    for entry in audited:
        shown = audit.shown_card_markdown(entry)
        assert "<!--" not in shown
        cam = entry.card["audit"]["splits"]["val"].get("gradcam") or {}
        reliant_groups = [g.replace("_", " ") for g, part in cam.items()
                          if g != "all" and isinstance(part, dict) and part.get("border_reliant")]
        headline = next((line for line in shown.splitlines() if line.startswith("**Reads the edges")), "")
        for group in reliant_groups:  # a table row saying "yes" is named in the headline above it
            assert f"{group}" in headline.split("; **on ", 1)[-1], (entry.name, headline)
        assert "edges reliant" not in shown, entry.name
