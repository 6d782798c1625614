"""Playwright helpers for driving the Streamlit dashboard (shared by tests/browser and bench/bench_load.py)."""

from __future__ import annotations

from pathlib import Path

PAGES = {  # url path -> words of the page's title (st.title)
    "": "Can a computer help spot pneumonia",
    "Dataset": "Dataset exploration",
    "Model_comparison": "Model comparison",
    "Threshold_explorer": "Threshold explorer",
    "Prediction": "Prediction",
    "Activation_maps": "Activation maps",
    "Your_site": "Your site",
    "Monitoring": "Monitoring",
}
FILE_INPUT = '[data-testid="stFileUploaderDropzoneInput"]'


def open_page(page, base_url: str, path: str, *, timeout_ms: int = 120_000) -> None:
    """Go to one page of the app and wait until its title is visible and the first run has finished."""
    page.goto(f"{base_url}/{path}", wait_until="domcontentloaded")
    page.locator("h1", has_text=PAGES[path]).first.wait_for(state="visible", timeout=timeout_ms)
    wait_until_idle(page, timeout_ms=timeout_ms)


def wait_until_idle(page, *, timeout_ms: int = 120_000) -> None:
    """Wait until Streamlit is not running the script (no 'Running…' status widget) for a short settle time."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !/running/i.test(document.querySelector('[data-testid=\"stStatusWidget\"]').innerText)",
        timeout=timeout_ms,
    )


def exceptions(page) -> list[str]:
    """Texts of exception boxes (st.exception / uncaught errors) on the page."""
    return page.locator('[data-testid="stException"]').all_inner_texts()


def metric_value(page, label: str, *, timeout_ms: int = 180_000) -> str:
    """The value text of the st.metric whose label is `label` (waits for it to appear)."""
    metric = page.locator('[data-testid="stMetric"]', has=page.locator('[data-testid="stMetricLabel"]', has_text=label)).first
    metric.wait_for(state="visible", timeout=timeout_ms)
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def upload(page, path: Path | str, *, key_index: int = 0) -> None:
    """Put one file into the page's (first) file uploader, as a user choosing it would."""
    page.locator(FILE_INPUT).nth(key_index).set_input_files(str(path))


def rendered_images(page) -> int:
    """How many st.image pictures are fully loaded (naturalWidth > 0)."""
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('[data-testid=\"stImage\"] img'))"
        ".filter(img => img.complete && img.naturalWidth > 0).length"
    )


def wait_for_images(page, count: int, *, timeout_ms: int = 120_000) -> int:
    """Scroll the images into view and wait until at least `count` st.image pictures are loaded; return how many are."""
    for image in page.locator('[data-testid="stImage"] img').all():
        image.scroll_into_view_if_needed()
    page.wait_for_function(
        "(n) => Array.from(document.querySelectorAll('[data-testid=\"stImage\"] img'))"
        ".filter(img => img.complete && img.naturalWidth > 0).length >= n",
        arg=count, timeout=timeout_ms,
    )
    return rendered_images(page)
