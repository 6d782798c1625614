"""The guard says "no lungs found" when the lung model finds none, and not on real paediatric chest films."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from core import guard
from core.imaging import decode_xray
from core.lungs.segment import lungs_check

FIELD_CASES = Path(__file__).resolve().parents[1] / "data" / "field_cases"
SCORER = SimpleNamespace(height=64, width=64)  # the model-independent checks only need the input size


def test_no_lungs_on_a_blank_film_or_noise() -> None:
    blank = np.full((256, 256), 0.5, np.float32)
    noise = np.random.default_rng(0).uniform(0, 1, (256, 256)).astype(np.float32)
    for pixels in (blank, noise):
        verdict = guard.assess(SCORER, None, pixels)
        assert "no lungs found" in verdict.reasons and verdict.flagged
        assert "No lungs were found" in verdict.message()


def test_lungs_found_on_real_paediatric_films(data_root: Path) -> None:
    films = sorted((data_root / "test" / "PNEUMONIA").glob("*.jpeg"))[:10] + sorted((data_root / "test" / "NORMAL").glob("*.jpeg"))[:10]
    for film in films:
        found = lungs_check(decode_xray(film).pixels)
        assert found is not None and found.lungs_found, film.name
        assert 0.15 < found.area_share < 0.6, (film.name, found.area_share)
    verdict = guard.assess(SCORER, None, decode_xray(films[0]))
    assert "no lungs found" not in verdict.reasons
