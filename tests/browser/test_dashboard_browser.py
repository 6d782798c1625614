"""The dashboard in headless Debian chromium against a real `streamlit run` server: every page opens without an
error, the threshold slider moves with the keyboard, an uploaded X-ray gets the model's own probability and a
heatmap, an oversized upload is refused with the limit, and the Overview report downloads as HTML.
Screenshots of every flow go to tests/artifacts/."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from core import config, registry
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


CAPTION = re.compile(r"^Threshold \d\.\d{4}:")


def _threshold_caption(page) -> float:
    """The threshold the page says it uses (the caption under the slider)."""
    return float(page.get_by_text(CAPTION).first.inner_text().split()[1].rstrip(":"))


def _press_and_wait(page, thumb, key: str, times: int, before: float) -> float:
    """Press `key` on the focused slider, wait until the page shows the slider's final threshold, return it.

    Key presses can reach the server as several reruns, so wait for the caption to agree with the slider itself
    rather than for the first change.
    """
    for _ in range(times):
        thumb.press(key)
    deadline = time.monotonic() + 60
    while True:
        wait_until_idle(page)
        shown, target = _threshold_caption(page), float(thumb.get_attribute("aria-valuetext"))
        if shown != before and abs(shown - target) < 1e-3:
            return shown
        if time.monotonic() > deadline:
            raise AssertionError(f"after {times} x {key} the page shows threshold {shown}, the slider {target}")
        page.wait_for_timeout(200)


def _sklearn_recall_specificity(threshold: float) -> tuple[float, float]:
    """Recall and specificity of the page's default model (first available) on the test split, by scikit-learn."""
    from sklearn.metrics import recall_score

    entry = next(e for e in registry.list_models() if e.available)
    frame = registry.load_predictions(entry, split="test")
    decided = (frame["score"].to_numpy() >= threshold).astype(int)
    labels = frame["label"].to_numpy()
    return recall_score(labels, decided, pos_label=1, zero_division=0), recall_score(labels, decided, pos_label=0, zero_division=0)


def _metrics_once_settled(page, wanted: dict[str, str], *, timeout_s: float = 30) -> dict[str, str]:
    """The shown values of the metrics named in `wanted`, read again until they equal it or `timeout_s` passes.

    The metrics are drawn after the threshold caption in the same fragment rerun, so they can lag it briefly.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        shown = {label: metric_value(page, label) for label in wanted}
        if shown == wanted or time.monotonic() > deadline:
            return shown
        page.wait_for_timeout(200)


def test_threshold_slider_moves_with_the_keyboard_and_the_numbers_follow(page, dashboard, artifacts_dir: Path) -> None:
    open_page(page, dashboard.url, "Threshold_explorer")
    start = _threshold_caption(page)
    thumb = page.locator('[data-testid="stSlider"] input[type="range"]').first
    thumb.focus()
    moved = _press_and_wait(page, thumb, "ArrowRight", 10, start)
    assert start < moved <= start + 0.0105, (start, moved)
    assert float(thumb.get_attribute("aria-valuetext")) == pytest.approx(moved, abs=1e-3)
    page.screenshot(path=str(artifacts_dir / "threshold_slider_moved.png"), full_page=True)
    top = _press_and_wait(page, thumb, "End", 1, moved)
    expected = _sklearn_recall_specificity(top)  # a saturated sigmoid can score exactly 1.0, so not always 0 / 1
    wanted = {"Recall (sensitivity)": f"{expected[0]:.3f}", "Specificity": f"{expected[1]:.3f}"}
    assert _metrics_once_settled(page, wanted) == wanted
    assert _press_and_wait(page, thumb, "Home", 1, top) == 0.0
    wanted = {"Recall (sensitivity)": "1.000", "Specificity": "0.000"}  # everything is called pneumonia at 0
    assert _metrics_once_settled(page, wanted) == wanted
    page.screenshot(path=str(artifacts_dir / "threshold_slider.png"), full_page=True)
    assert not exceptions(page)


def _default_model() -> registry.ModelEntry:
    """The model the Prediction page picks first (the first available one, by folder name)."""
    return next(entry for entry in registry.list_models() if entry.available)


def test_upload_shows_the_models_probability_and_a_heatmap(page, dashboard, data_root: Path, artifacts_dir: Path) -> None:
    from core.imaging import decode_xray
    from core.predict import load_scorer

    path = data_root / PNEUMONIA_FILE
    expected = load_scorer(_default_model().path).probability(decode_xray(path))
    open_page(page, dashboard.url, "Prediction")
    upload(page, path)
    shown = metric_value(page, "Probability of pneumonia")
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
