"""Threshold explorer in a real browser: time from a slider key press (or preset click) to the redrawn fragment.

Starts `streamlit run streamlit_app.py` on a free local port, opens the Threshold explorer page in headless
Debian chromium (Playwright, never a Playwright browser download) and, for each move, measures from the key
press to the moment the fragment shows the new threshold both in its caption and in the score histogram
(drawn after the metrics and curves). Polling runs on animation frames, so times are rounded up to ~16 ms.

Uses the real models/ folder when it holds a usable model, else a fixture folder (timing only, never a metric).
Run: .venv/bin/python -m bench threshold_browser
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.bench_threshold import _models_for_apptest
from bench.results_io import write_results

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
MOVES = 30

# The fragment's threshold caption, e.g. "Threshold 0.6933: ...".
CAPTION_JS = """
() => {
  const el = [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
      .find(e => e.innerText.startsWith('Threshold '));
  return el ? el.innerText : '';
}
"""
# True once the caption differs from `previous` and the histogram (drawn later in the fragment) shows the same value.
REDRAWN_JS = """
(previous) => {
  const el = [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
      .find(e => e.innerText.startsWith('Threshold '));
  if (!el || el.innerText === previous) return false;
  const value = parseFloat(el.innerText.slice('Threshold '.length));
  // The caption has 4 decimals and the annotation 3: compare numbers (rounding twice can differ in the last digit).
  return [...document.querySelectorAll('text.annotation-text')]
      .some(a => a.textContent.startsWith('threshold ')
                 && Math.abs(parseFloat(a.textContent.slice('threshold '.length)) - value) <= 0.00051);
}
"""
SLIDER = '[data-testid="stSlider"] input[type="range"]'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(port: int, models_dir: str) -> subprocess.Popen:
    """Start the dashboard (headless) and wait for its health endpoint."""
    env = dict(os.environ, PNEUMONIA_MODELS=models_dir, TF_CPP_MIN_LOG_LEVEL="2")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    server.terminate()
    raise RuntimeError("The Streamlit server did not start within 90 s.")


CAPTION_CHANGED_JS = """
(previous) => {
  const el = [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
      .find(e => e.innerText.startsWith('Threshold '));
  return !!el && el.innerText !== previous;
}
"""


def _move(page, action) -> tuple[float, float]:
    """Seconds from `action()` to the new threshold's numbers (caption), and to the redrawn figure too."""
    previous = page.evaluate(CAPTION_JS)
    start = time.perf_counter()
    action()
    page.wait_for_function(CAPTION_CHANGED_JS, arg=previous, timeout=30_000, polling="raf")
    numbers = time.perf_counter() - start
    page.wait_for_function(REDRAWN_JS, arg=previous, timeout=30_000, polling="raf")
    return numbers, time.perf_counter() - start


def measure(port: int) -> dict:
    """Median ms from key press / preset click to the redrawn fragment, in headless chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            page.get_by_role("link", name="Threshold explorer").click()
            slider = page.locator(SLIDER).first
            slider.wait_for(state="attached", timeout=120_000)
            page.wait_for_function(REDRAWN_JS, arg="", timeout=60_000, polling="raf")
            page.wait_for_timeout(1000)

            key_times = []
            for i in range(MOVES):
                key = "ArrowRight" if (i // 5) % 2 == 0 else "ArrowLeft"
                slider.focus()
                key_times.append(_move(page, lambda: page.keyboard.press(key)))

            click_times = []
            buttons = page.locator('[data-testid="stButton"] button:visible', has_text="·")
            for i in range(10):
                button = buttons.nth(i % buttons.count())
                target = float(button.inner_text().rsplit("·", 1)[1])
                current = float(page.evaluate(CAPTION_JS).split()[1].rstrip(":"))
                if abs(current - target) <= 0.00051:
                    continue  # already there (the button shows 3 decimals): nothing would change
                click_times.append(_move(page, button.click))
        finally:
            browser.close()
    key_numbers, key_redraw = [t[0] for t in key_times], [t[1] for t in key_times]
    return {
        "browser_key_to_numbers_median_ms": statistics.median(key_numbers) * 1e3,
        "browser_key_to_numbers_p90_ms": sorted(key_numbers)[int(0.9 * (len(key_numbers) - 1))] * 1e3,
        "browser_key_to_redraw_median_ms": statistics.median(key_redraw) * 1e3,
        "browser_key_to_redraw_p90_ms": sorted(key_redraw)[int(0.9 * (len(key_redraw) - 1))] * 1e3,
        "browser_moves": len(key_times),
        "browser_preset_click_to_redraw_median_ms": statistics.median([t[1] for t in click_times]) * 1e3 if click_times else None,
        "browser_preset_clicks": len(click_times),
    }


def main() -> None:
    """Serve, measure, print and write bench/results/threshold_browser.json."""
    models_dir, source = _models_for_apptest()
    port = _free_port()
    server = _start_server(port, models_dir)
    try:
        results = {"models": source, **measure(port)}
        results["load_average_1min_after"] = os.getloadavg()[0]  # the machine is shared: context for the times
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        f"Browser (headless chromium, {source}): slider key -> new numbers median "
        f"{results['browser_key_to_numbers_median_ms']:.0f} ms (p90 {results['browser_key_to_numbers_p90_ms']:.0f} ms); "
        f"-> redrawn fragment with the figure median "
        f"{results['browser_key_to_redraw_median_ms']:.0f} ms (p90 {results['browser_key_to_redraw_p90_ms']:.0f} ms, "
        f"{results['browser_moves']} moves); preset click -> redraw median "
        f"{results['browser_preset_click_to_redraw_median_ms'] or float('nan'):.0f} ms"
    )
    print(f"wrote {write_results('threshold_browser', results)}")


if __name__ == "__main__":
    main()
