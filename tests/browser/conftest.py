"""Fixtures for the browser tests: headless Debian chromium through Playwright (never a Playwright download)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[object]:
    """A headless chromium (Playwright Browser) launched from /usr/bin/chromium; fails if it is missing."""
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.fail(
            "Debian chromium is missing at /usr/bin/chromium. Install it with `make browser` "
            "(apt-get install -y chromium); never run `playwright install`."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """tests/artifacts/ (gitignored): screenshots written by browser tests."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR


# --- added by the dashboard browser tests (helper F): one server for the whole session ---------------------------
@pytest.fixture(scope="session")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The dashboard served like `make serve` on a free 127.0.0.1 port (real models/ and data); its log is searchable."""
    from tests.browser.server import DashboardServer

    server = DashboardServer(log_path=tmp_path_factory.mktemp("server") / "streamlit.log")
    try:
        server.start()
    except RuntimeError as error:
        pytest.fail(str(error))
    try:
        yield server
    finally:
        server.stop()
