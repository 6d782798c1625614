"""Full-page screenshots of every page of the dashboard at 1440 px, as a new user sees it (real models and films).

    python -m bench.screenshots [--out docs/screenshots] [--width 1440]

Serves the app like `make serve` (tests/browser/server.py), drives headless Debian chromium (/usr/bin/chromium) and
writes one PNG per page, plus the Prediction page with a real film scored, with the field-case extremity film, and the
Overview's presentation mode at 1440x900 (one screen per idea). Not a measurement: it is the picture a reviewer
looks at (docs/screenshots/README.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.helpers import PAGES, open_page, upload, wait_for_images, wait_until_idle
from tests.browser.server import PROJECT_ROOT, DashboardServer

FIELD_CASES = PROJECT_ROOT / "tests" / "fixtures" / "field_cases"


SCROLLER = """() => [document.querySelector('[data-testid="stMain"]'), document.querySelector('[data-testid="stAppViewContainer"]'),
  document.scrollingElement].filter(Boolean).sort((a, b) => b.scrollHeight - a.scrollHeight)[0]"""
BUSY = """() => document.querySelectorAll('[data-testid="stSpinner"], [data-testid="stSkeleton"]').length"""


def _settle(page, *, timeout_s: float = 300) -> None:
    """Wait until nothing is computing (no spinner or skeleton) and the page height has not changed for 3 s."""
    deadline = time.monotonic() + timeout_s
    last, stable = -1, 0
    while time.monotonic() < deadline and stable < 3:
        page.wait_for_timeout(1000)
        height = page.evaluate(f"() => ({SCROLLER})().scrollHeight")
        stable = stable + 1 if height == last and not page.evaluate(BUSY) else 0
        last = height


def _scroll_through(page) -> None:
    """Scroll to the bottom and back, so that charts drawn on first view are drawn before the picture is taken."""
    height = page.evaluate(f"() => ({SCROLLER})().scrollHeight")
    for y in range(0, int(height) + 900, 900):
        page.evaluate(f"() => ({SCROLLER})().scrollTo(0, {y})")
        page.wait_for_timeout(300)
    page.evaluate(f"() => ({SCROLLER})().scrollTo(0, 0)")
    _settle(page)


def _full_page(page, path: Path) -> None:
    """A screenshot of the whole page: Streamlit scrolls inside its main block, so the viewport is made as tall first."""
    _settle(page)
    _scroll_through(page)
    height = page.evaluate(f"() => ({SCROLLER})().scrollHeight")
    width = page.viewport_size["width"]
    page.set_viewport_size({"width": width, "height": min(int(height) + 40, 16_000)})
    _settle(page)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": width, "height": 1000})


def take(out: Path, *, width: int = 1440) -> list[Path]:
    """Serve the app, screenshot every page into `out`; return the files written."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as logs, DashboardServer(log_path=Path(logs) / "streamlit.log") as server, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": width, "height": 1000}).new_page()
        page.set_default_timeout(240_000)
        for index, path in enumerate(PAGES, start=1):
            open_page(page, server.url, path, timeout_ms=240_000)
            if path == "Prediction":
                page.get_by_test_id("stRadioGroup").get_by_text("Real samples", exact=True).click()
                wait_until_idle(page, timeout_ms=240_000)
                wait_for_images(page, 2, timeout_ms=240_000)
            target = out / f"{index}_{path or 'Overview'}.png"
            _full_page(page, target)
            written.append(target)
            print(f"wrote {target}", flush=True)

        open_page(page, server.url, "Prediction", timeout_ms=240_000)
        upload(page, FIELD_CASES / "dicom_extremity_not_chest.dcm")
        page.get_by_text("No decision").first.wait_for(state="visible", timeout=240_000)
        page.get_by_text("Show the raw score anyway").click()  # what the user sees on request, labelled meaningless
        target = out / "5_Prediction_extremity_film.png"
        _full_page(page, target)
        written.append(target)

        presentation = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
        presentation.set_default_timeout(240_000)
        open_page(presentation, server.url, "", timeout_ms=240_000)
        presentation.get_by_text("Presentation mode").click()
        wait_until_idle(presentation, timeout_ms=240_000)
        _settle(presentation)
        target = out / "1_Overview_presentation_1440x900.png"
        presentation.screenshot(path=str(target))  # the first screen, as a projector shows it
        written.append(target)
        section = presentation.locator('[class*="st-key-overview_section_frequencies"]').first
        section.scroll_into_view_if_needed()
        presentation.wait_for_timeout(1000)
        target = out / "1_Overview_presentation_1440x900_frequencies.png"
        presentation.screenshot(path=str(target))  # the natural-frequency screen: every metric label whole
        written.append(target)
        browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: write the screenshots, print where."""
    parser = argparse.ArgumentParser(prog="python -m bench.screenshots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(PROJECT_ROOT / "docs" / "screenshots"), help="folder for the PNG files")
    parser.add_argument("--width", type=int, default=1440, help="browser width in CSS pixels")
    args = parser.parse_args(argv)
    take(Path(args.out), width=args.width)
    return 0


if __name__ == "__main__":
    sys.exit(main())
