"""A deep link opened on a fresh server (no session has run the entry point yet) gets the whole app: the page asked
for, with the navigation sidebar and the wide layout, not Streamlit's bare pages/ folder fallback."""

from __future__ import annotations

from pathlib import Path

from tests.browser.helpers import exceptions, wait_until_idle
from tests.browser.server import DashboardServer


def test_a_deep_link_on_a_fresh_server_gets_the_sidebar_and_stays_on_its_page(chromium_browser, artifacts_dir: Path,
                                                                              tmp_path: Path) -> None:
    with DashboardServer(tmp_path / "server.log") as server:
        context = chromium_browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            page.goto(f"{server.url}/Dataset", wait_until="domcontentloaded")
            page.locator("h1", has_text="Dataset exploration").first.wait_for(state="visible", timeout=120_000)
            wait_until_idle(page)
            page.screenshot(path=str(artifacts_dir / "deep_link_fresh_server.png"))
            assert page.url.endswith("/Dataset")
            sidebar = page.locator('[data-testid="stSidebar"]')
            assert sidebar.count() == 1, "the page ran without the app's entry point (no sidebar)"
            assert sidebar.get_by_text("Threshold explorer").count() == 1
            assert sidebar.locator('input[aria-label="Dataset folder"]').count() == 1
            assert not exceptions(page)
        finally:
            context.close()
