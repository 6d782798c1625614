"""The Your site page in headless Debian chromium against a real server and the shipped models: a labelled ZIP of real
films is uploaded, every model's site metrics appear with CIs, and the site operating point reaches the Prediction page
with its provenance. Screenshot in tests/artifacts/site.png."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from core import config
from tests.browser.helpers import exceptions, metric_value, open_page, upload, wait_until_idle

PER_CLASS = 45  # enough for the site operating point (each half keeps >= 20 films per class)


@pytest.fixture()
def site_zip(tmp_path: Path) -> Path:
    path = tmp_path / "st-browser.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for label in config.CLASS_NAMES:
            for film in sorted((config.data_root() / "test" / label).glob("*.jpeg"))[-PER_CLASS:]:
                archive.write(film, f"films/{label}/{film.name}")
    return path


def test_site_zip_gives_metrics_and_a_site_operating_point_for_the_prediction_page(chromium_browser, dashboard, site_zip,
                                                                                   artifacts_dir: Path) -> None:
    context = chromium_browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(240_000)
    try:
        open_page(page, dashboard.url, "Your_site")
        page.get_by_text("Run the out-of-distribution guard on every film").click()  # off: keeps the test quick
        wait_until_idle(page)
        upload(page, site_zip)
        page.get_by_text(f"{2 * PER_CLASS} films of 'st-browser' scored").wait_for(state="visible", timeout=240_000)
        wait_until_idle(page, timeout_ms=240_000)
        auc = float(metric_value(page, "ROC AUC (site)"))
        assert 0.0 <= auc <= 1.0
        assert page.get_by_text("95% CI").count() >= 8
        charts = page.locator('[data-testid="stPlotlyChart"]')
        charts.nth(1).wait_for(state="attached", timeout=120_000)  # drawn after the metrics (slower on a busy machine)
        assert charts.count() == 2  # the curves and the drift picture
        for i in range(2):  # plotly draws a chart once it is scrolled into view
            charts.nth(i).scroll_into_view_if_needed()
            charts.nth(i).locator(".main-svg").first.wait_for(state="visible", timeout=60_000)
        page.get_by_role("button", name="Use this operating point").click()
        wait_until_idle(page)
        page.screenshot(path=str(artifacts_dir / "site.png"), full_page=True)
        assert not exceptions(page), exceptions(page)

        page.get_by_role("link", name="Prediction").click()
        page.get_by_text("chosen on the Your site page (site operating point").wait_for(state="visible", timeout=120_000)
        page.get_by_role("button", name="Back to the model's own").wait_for(state="visible", timeout=120_000)
        assert not exceptions(page), exceptions(page)
    finally:
        context.close()
