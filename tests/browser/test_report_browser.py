"""The HTML report opened in headless Debian chromium: no network request at all, and the plotly charts render."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import report
from tests.report.test_report import write_report_models


@pytest.fixture(scope="module")
def report_file(tmp_path_factory, data_root) -> Path:
    folder = tmp_path_factory.mktemp("report")
    models_dir = write_report_models(folder / "models", data_root)
    return report.write_report(folder / "report.html", models_dir, data_root, heatmaps=False, n_resamples=100)


def test_report_opens_offline_and_renders_its_charts(chromium_browser, report_file, artifacts_dir):
    page = chromium_browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(report_file.as_uri(), wait_until="load")
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
        charts = page.locator(".js-plotly-plot")
        assert charts.count() == 4  # dataset, ROC, PR, calibration
        for i in range(charts.count()):
            assert charts.nth(i).locator(".main-svg").count() >= 1
        # Curves are drawn as SVG paths with real geometry (not empty plots).
        assert page.locator("#roc-chart .scatterlayer path.js-line").count() >= 2
        assert page.locator("img[src^='data:image/png;base64,']").count() == 3
        assert page.evaluate("() => Array.from(document.images).every(img => img.complete && img.naturalWidth > 0)")
        page.screenshot(path=str(artifacts_dir / "report.png"), full_page=True)
    finally:
        page.close()
    assert not errors, f"JavaScript errors in the report: {errors}"
    outside = [url for url in requests if not url.startswith(("file://", "data:"))]
    assert not outside, f"The report made network requests: {outside}"
    assert requests and requests[0] == report_file.as_uri()
    assert (artifacts_dir / "report.png").stat().st_size > 10_000
