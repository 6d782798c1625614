"""The threshold widget's own arithmetic and formatting (widgets/threshold_explorer.js) in headless chromium, against
core.evaluation.metrics on the same sweep: identical text at every threshold and prevalence, exact ties rounded like Python."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.evaluation import metrics
from tests.conftest import PROJECT_ROOT

WIDGET_JS = PROJECT_ROOT / "widgets" / "threshold_explorer.js"


@pytest.fixture(scope="module")
def widget_page(chromium_browser):
    """A blank page with the widget's module loaded and its exports on window.tx."""
    page = chromium_browser.new_page()
    page.set_content("<html><body></body></html>")
    source = WIDGET_JS.read_text(encoding="utf-8")
    page.evaluate("""async (source) => {
        const url = URL.createObjectURL(new Blob([source], {type: 'text/javascript'}));
        window.tx = await import(url);
    }""", source)
    yield page
    page.close()


def test_python_style_rounding_of_exact_ties_and_ordinary_values(widget_page) -> None:
    values = [0.0625, 0.125, 0.375, 2.5, 3.5, 0.5, 1.5, 0.0005, 0.9995, 1 / 3, 2 / 3, 0.1 + 0.2, 123.4565, 0.0, 1.0]
    rng = np.random.default_rng(0)
    values += rng.random(300).tolist() + (rng.random(100) * 1000).tolist()
    for digits in (0, 1, 2, 3, 4):
        shown = widget_page.evaluate("([v, d]) => v.map(x => window.tx.pyFixed(x, d))", [values, digits])
        assert shown == [f"{v:.{digits}f}" for v in values], digits


@pytest.mark.parametrize("seed,prevalence", [(1, None), (2, 0.01), (3, 0.3), (4, None)])
def test_numbers_at_every_threshold_equal_core_metrics(widget_page, seed: int, prevalence: float | None) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(700) < 0.6).astype(int)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0.0, 1.0)
    if seed == 4:
        s = np.round(s, 2)  # many tied scores
    sweep = metrics.ThresholdSweep.from_scores(y, s)
    p = sweep.prevalence if prevalence is None else prevalence
    thresholds = sorted({*np.round(np.linspace(0, 1, 1001), 3).tolist(), *s[:50].tolist(), 1.0000001})
    compact = json.loads(json.dumps(sweep.compact()))
    shown = widget_page.evaluate(
        "([sweep, ts, p]) => ts.map(t => window.tx.formatted(window.tx.numbersAt(sweep, t, p)))",
        [compact, thresholds, p])
    for t, got in zip(thresholds, shown):
        assert got == metrics.operating_point_summary(sweep, t, prevalence=p), t
