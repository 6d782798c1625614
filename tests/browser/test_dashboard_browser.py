"""The dashboard in headless Debian chromium against a real `streamlit run` server: every page opens without an
error, an uploaded X-ray gets the model's own probability and a
heatmap, an oversized upload is refused with the limit, and the Overview report downloads as HTML.
Screenshots of every flow go to tests/artifacts/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core import config
from core.models import registry
from tests.browser.helpers import PAGES, exceptions, metric_value, open_page, upload, wait_for_images, wait_until_idle

PNEUMONIA_FILE = "test/PNEUMONIA/person100_bacteria_475.jpeg"


@pytest.fixture()
def page(chromium_browser, dashboard):
    context = chromium_browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(120_000)
    yield tab
    context.close()


@pytest.mark.parametrize("path", list(PAGES))
def test_every_page_opens_without_an_error(page, dashboard, artifacts_dir: Path, path: str) -> None:
    open_page(page, dashboard.url, path)
    page.screenshot(path=str(artifacts_dir / f"page_{path or 'Overview'}.png"), full_page=True)
    assert not exceptions(page), f"/{path}: {exceptions(page)}"
    assert "Traceback" not in page.inner_text("body")


# The threshold slider (the live widget) is tested in tests/browser/test_threshold_browser.py.


def _default_model() -> registry.ModelEntry:
    """The model the Prediction page picks first: the recommended one (core.report's validation-only rule)."""
    from core import config, report

    return report.recommend_model(config.models_dir())


def test_upload_shows_the_models_probability_and_a_heatmap(page, dashboard, data_root: Path, artifacts_dir: Path) -> None:
    from core.imaging import decode_xray
    from core.predict import load_scorer

    path = data_root / PNEUMONIA_FILE
    expected = load_scorer(_default_model().path).probability(decode_xray(path))
    open_page(page, dashboard.url, "Prediction")
    upload(page, path)
    shown = metric_value(page, "Pneumonia score")
    page.get_by_text("red = most influential").first.wait_for(timeout=180_000)
    wait_until_idle(page, timeout_ms=180_000)
    assert wait_for_images(page, 2) >= 2, "the original and its heatmap overlay should both be shown"
    page.screenshot(path=str(artifacts_dir / "prediction_upload.png"), full_page=True)
    assert shown == f"{expected:.3f}"
    assert not exceptions(page)


def test_oversized_upload_is_refused_with_the_limit(page, dashboard, tmp_path: Path, artifacts_dir: Path) -> None:
    open_page(page, dashboard.url, "Prediction")
    dropzone = page.locator('[data-testid="stFileUploaderDropzone"]').first
    assert f"{config.MAX_UPLOAD_MB}MB per file" in dropzone.inner_text()
    big = tmp_path / "too_big.png"
    big.write_bytes(b"\0" * ((config.MAX_UPLOAD_MB + 1) * 1024 * 1024))
    upload(page, big)
    message = page.get_by_text(re.compile(r"File must be .* or smaller")).first
    message.wait_for(timeout=60_000)
    assert str(config.MAX_UPLOAD_MB) in message.inner_text()
    page.screenshot(path=str(artifacts_dir / "upload_too_large.png"), full_page=True)
    assert not exceptions(page)


def test_overview_report_downloads_as_html(page, dashboard, artifacts_dir: Path) -> None:
    open_page(page, dashboard.url, "")
    button = page.get_by_role("button", name=re.compile("Download report"))
    button.wait_for(timeout=120_000)
    with page.expect_download(timeout=300_000) as download_info:
        button.click()
    target = artifacts_dir / "downloaded_report.html"
    download_info.value.save_as(target)
    page.screenshot(path=str(artifacts_dir / "overview_download.png"), full_page=True)
    html = target.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith(("<!doctype html", "<html")) and "</html>" in html.lower()
    assert download_info.value.suggested_filename.endswith(".html")
    assert len(html) > 10_000
