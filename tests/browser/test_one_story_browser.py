"""One story on every page, in headless Debian chromium against a real `streamlit run` server (real models and films):
visiting the Threshold explorer changes nothing on Prediction until "Use this operating point" is pressed, and one click
goes back; every page's first model picker shows the recommended model; a film that is not a paediatric chest film
gets no decision."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import config, report
from tests.browser.helpers import exceptions, metric_value, open_page, upload, wait_until_idle
from tests.browser.threshold_widget import SLIDER, wait_for_widget
from tests.conftest import FIELD_CASES_DIR

SELECTBOX = '[data-testid="stSelectbox"]'


@pytest.fixture()
def page(chromium_browser, dashboard):
    context = chromium_browser.new_context(viewport={"width": 1440, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(180_000)
    yield tab
    context.close()


def _chosen(selectbox) -> str:
    """The option a select box shows (its combobox input's value)."""
    return selectbox.locator('input[role="combobox"]').input_value()


def _decision(page) -> tuple[str, str]:
    """(label, value) of the Prediction page's decision metric, e.g. ('Decision at threshold 0.789', 'NORMAL')."""
    metric = page.locator('[data-testid="stMetric"]', has=page.locator('[data-testid="stMetricLabel"]',
                                                                       has_text="Decision at threshold")).first
    metric.wait_for(state="visible", timeout=240_000)
    return (metric.locator('[data-testid="stMetricLabel"]').inner_text().strip(),
            metric.locator('[data-testid="stMetricValue"]').inner_text().strip())


def _score_first_sample(page) -> tuple[str, str]:
    """On Prediction: score the first shipped sample (Kaggle test NORMAL IM-0001-0001) and read the decision."""
    page.get_by_test_id("stRadioGroup").get_by_text("Real samples", exact=True).click()
    wait_until_idle(page, timeout_ms=240_000)
    return _decision(page)


def _go(page, title: str) -> None:
    """Follow the sidebar link to another page (the session, and what it adopted, stay)."""
    page.get_by_role("link", name=title).click()
    page.locator("h1", has_text=title).first.wait_for(state="visible", timeout=180_000)
    wait_until_idle(page, timeout_ms=240_000)


def test_visiting_the_threshold_explorer_changes_nothing_until_its_button_is_pressed(page, dashboard) -> None:
    recommended = report.recommend_model(config.models_dir())
    open_page(page, dashboard.url, "Prediction")
    before = _score_first_sample(page)
    assert before[0] == f"Decision at threshold {recommended.threshold:.3f}"

    _go(page, "Threshold explorer")
    wait_for_widget(page)
    page.locator(SLIDER).focus()
    page.locator(SLIDER).press("Home")  # drag the threshold to 0: everything would be PNEUMONIA
    wait_until_idle(page)
    _go(page, "Prediction")
    assert _score_first_sample(page) == before  # the visit changed nothing
    assert page.get_by_role("button", name="Back to the model's own").count() == 0

    _go(page, "Threshold explorer")
    wait_for_widget(page)
    page.locator(SLIDER).focus()
    page.locator(SLIDER).press("Home")
    wait_until_idle(page)
    page.get_by_role("button", name="Use this operating point").click()  # the deliberate act
    wait_until_idle(page)
    _go(page, "Prediction")
    assert _score_first_sample(page) == ("Decision at threshold 0.000", "PNEUMONIA")
    page.get_by_text("chosen on the Threshold explorer page").first.wait_for(state="visible")
    page.get_by_role("button", name="Back to the model's own").click()
    wait_until_idle(page, timeout_ms=240_000)
    assert _decision(page) == before
    assert not exceptions(page), exceptions(page)


@pytest.mark.parametrize("path", ["Model_comparison", "Threshold_explorer", "Prediction", "Activation_maps"])
def test_each_pages_first_model_picker_shows_the_recommended_model(page, dashboard, path: str) -> None:
    recommended = report.recommend_model(config.models_dir())
    open_page(page, dashboard.url, path)
    first = page.locator(SELECTBOX).first
    first.wait_for(state="visible")
    shown = _chosen(first)
    assert recommended.display_name in shown and "★ recommended" in shown, f"/{path}: {shown!r}"
    assert not exceptions(page), exceptions(page)


def test_your_sites_model_picker_shows_the_recommended_model(page, dashboard) -> None:
    recommended = report.recommend_model(config.models_dir())
    open_page(page, dashboard.url, "Your_site")
    page.get_by_role("tab", name="Adapt to unlabelled films").click()
    picker = page.locator(SELECTBOX).filter(has_text="Model").first
    picker.wait_for(state="visible")
    assert _chosen(picker) == f"★ recommended · {recommended.display_name}"


def test_the_extremity_film_gets_no_decision(page, dashboard) -> None:
    open_page(page, dashboard.url, "Prediction")
    upload(page, FIELD_CASES_DIR / "dicom_extremity_not_chest.dcm")
    assert metric_value(page, "Decision", timeout_ms=240_000) == "Withheld"
    wait_until_idle(page, timeout_ms=240_000)
    alert = page.locator('[data-testid="stAlert"]', has_text="No decision").first
    assert "a child's frontal chest X-ray" in alert.inner_text()
    body = page.inner_text('[data-testid="stMain"]')
    assert "PNEUMONIA" not in body.split("What the guard measured")[0]  # no verdict anywhere before the details
    assert page.locator('[data-testid="stMetricLabel"]', has_text="Pneumonia score").count() == 0
    assert page.locator('[data-testid="stImage"]').count() == 0  # no Grad-CAM of a meaningless score
    page.get_by_text("Show the raw score anyway (meaningless for this image)").click()
    page.get_by_text("Raw model output").first.wait_for(state="visible")
    assert not exceptions(page), exceptions(page)
