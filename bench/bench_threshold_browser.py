"""Threshold explorer in a real browser: pointer move -> new numbers and figure point, release -> server agreeing.

Starts `streamlit run streamlit_app.py` on a free local port, opens the Threshold explorer in headless Debian chromium
(Playwright, never a Playwright browser download) and drags the live widget's handle with the mouse (CDP input
events, as a user's pointer). Instrumentation installed in the page (not in the widget) times, per pointer move:
- `move_to_numbers`: from the event's own timestamp (when the browser received it) to the moment the widget has
  redrawn its threshold, numbers and figure points (a bubble-phase listener that runs right after the widget's
  handler sees the threshold and the histogram line moved; sensitivity and the ROC point move too where the new
  threshold crosses a score, counted in `moves_crossing_a_score`);
- `move_to_frame`: to the next animation frame after that (what the user sees);
and per release, from the pointerup event to the moment the server's caption shows the released threshold with the
same numbers as the widget and the widget says the server agrees (polled on every animation frame).

Measured twice side by side, on the machine as it is ("idle": other jobs may run, see load_average) and under an
added load of two CPU-burning Python processes (one per core). Goal: moves <= 33 ms, release <= 300 ms.
Uses the real models/ folder when it holds a usable model, else a fixture folder (timing only, never a metric).
Run: .venv/bin/python -m bench threshold_browser
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.bench_threshold import _models_for_apptest
from bench.results_io import write_results

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
DRAGS = 10
MOVES_PER_DRAG = 4
GOAL_MOVE_MS = 33.0
GOAL_RELEASE_MS = 300.0

INSTRUMENT_JS = """
() => {
  const host = [...document.querySelectorAll('[data-testid="stBidiComponentIsolated"]')]
      .find(h => h.shadowRoot && h.shadowRoot.querySelector('[data-testid="threshold-explorer"]'));
  const root = host.shadowRoot;
  const q = (id) => root.querySelector(`[data-testid="${id}"]`);
  const snapshot = () => [q('threshold-value').textContent, q('threshold-metric-recall').textContent,
                          q('threshold-roc-point').getAttribute('cx'), q('threshold-histogram-line').getAttribute('x1')];
  const caption = () => {
    const el = [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
        .find(e => /^Threshold \\d+\\.\\d{4}:/.test(e.innerText));
    return el ? el.innerText : '';
  };
  const tx = window.__tx = {moves: [], releases: [], unchanged: 0};
  let pending = null;
  window.addEventListener('pointermove', (e) => { if (e.buttons) pending = {t0: e.timeStamp, before: snapshot()}; }, true);
  window.addEventListener('pointermove', () => {  // bubble phase: after the widget's own handler
    if (!pending) return;
    const move = pending; pending = null;
    const after = snapshot();
    // The threshold and the histogram line move on every step; sensitivity and the ROC point only where a score
    // is crossed (they are rewritten in the same handler either way).
    if (after[0] === move.before[0] || after[3] === move.before[3]) { tx.unchanged += 1; return; }
    move.numbers_changed = after[1] !== move.before[1] || after[2] !== move.before[2];
    move.numbers = performance.now() - move.t0;
    requestAnimationFrame(() => { move.frame = performance.now() - move.t0; tx.moves.push(move); });
  }, false);
  window.addEventListener('pointerup', (e) => {
    const t0 = e.timeStamp;
    const released = q('threshold-value').textContent;
    const release = {t0, released};
    const poll = () => {
      const widget = root.querySelector('[data-testid="threshold-explorer"]').dataset.server;
      const text = caption();
      const recall = q('threshold-metric-recall').textContent;
      if (widget === 'agrees' && text.startsWith(`Threshold ${released}:`) && text.includes(`sensitivity ${recall} `)) {
        release.ms = performance.now() - t0; tx.releases.push(release); return;
      }
      if (widget === 'differs') { release.error = 'server differs'; tx.releases.push(release); return; }
      if (performance.now() - t0 > 30000) { release.error = 'timeout'; tx.releases.push(release); return; }
      requestAnimationFrame(poll);
    };
    requestAnimationFrame(poll);
  }, true);
}
"""


def _start_server(models_dir: str):
    """The dashboard like `make serve`, on a free port (tests/browser/server.py)."""
    sys.path.insert(0, str(PROJECT_ROOT))
    from tests.browser.server import DashboardServer

    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-threshold-browser-{os.getpid()}.log"
    return DashboardServer(log_path=log, env={"PNEUMONIA_MODELS": models_dir}).start()


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _session(browser, url: str) -> dict:
    """One fresh page: DRAGS drags of MOVES_PER_DRAG pointer moves each, then a release; timings in ms."""
    from tests.browser.helpers import open_page
    from tests.browser.threshold_widget import track_point, wait_for_widget

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        open_page(page, url, "Threshold_explorer")
        wait_for_widget(page)
        page.wait_for_timeout(500)
        page.evaluate(INSTRUMENT_JS)
        rng = np.random.default_rng(0)
        for drag in range(DRAGS):
            start = float(rng.uniform(0.1, 0.5))
            page.mouse.move(*track_point(page, start))
            page.mouse.down()
            for move in range(1, MOVES_PER_DRAG + 1):
                page.mouse.move(*track_point(page, start + 0.06 * move))
                page.wait_for_timeout(40)  # a hand moves at ~25 events/s here; the frame must come in between
            page.mouse.up()
            page.wait_for_function(f"() => window.__tx.releases.length >= {drag + 1}", timeout=60_000)
            page.wait_for_timeout(200)
        tx = page.evaluate("() => window.__tx")
    finally:
        context.close()
    moves, releases = tx["moves"], tx["releases"]
    numbers = [m["numbers"] for m in moves]
    frames = [m["frame"] for m in moves]
    release_ms = [r["ms"] for r in releases if "ms" in r]
    return {
        "moves": len(moves),
        "moves_crossing_a_score": sum(bool(m["numbers_changed"]) for m in moves),
        "moves_without_a_change": tx["unchanged"],
        "move_to_numbers_median_ms": statistics.median(numbers),
        "move_to_numbers_p90_ms": _percentile(numbers, 90),
        "move_to_frame_median_ms": statistics.median(frames),
        "move_to_frame_p90_ms": _percentile(frames, 90),
        "releases": len(release_ms),
        "release_errors": [r.get("error") for r in releases if "error" in r],
        "release_to_server_agreeing_median_ms": statistics.median(release_ms) if release_ms else float("nan"),
        "release_to_server_agreeing_p90_ms": _percentile(release_ms, 90),
        "load_average_1min": os.getloadavg()[0],
    }


def _burners(n: int) -> list[subprocess.Popen]:
    """n CPU-burning Python processes (the added load)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def measure(url: str) -> dict:
    """Idle and loaded sessions side by side in one browser."""
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            _session(browser, url)  # warm-up: caches, first render
            out["idle"] = _session(browser, url)
            burners = _burners(os.cpu_count() or 2)
            try:
                time.sleep(2)
                out["load"] = _session(browser, url)
            finally:
                for process in burners:
                    process.kill()
                    process.wait()
        finally:
            browser.close()
    return out


def main() -> None:
    """Serve, measure, print and write bench/results/threshold_browser.json."""
    models_dir, source = _models_for_apptest()
    server = _start_server(models_dir)
    try:
        results = {
            "models": source,
            "load_used": f"{os.cpu_count()} CPU-burning python processes (`while True: pass`, nice 0), on top of "
                         "whatever else the shared machine was running (see load_average_1min)",
            "goal_move_ms": GOAL_MOVE_MS,
            "goal_release_ms": GOAL_RELEASE_MS,
            **measure(server.url),
        }
    finally:
        server.stop()
    for name in ("idle", "load"):
        r = results[name]
        print(f"{name:>4}: pointer move -> numbers + figure point median {r['move_to_numbers_median_ms']:.1f} ms "
              f"(p90 {r['move_to_numbers_p90_ms']:.1f}), -> next frame median {r['move_to_frame_median_ms']:.1f} ms "
              f"(p90 {r['move_to_frame_p90_ms']:.1f}) over {r['moves']} moves; release -> server agreeing median "
              f"{r['release_to_server_agreeing_median_ms']:.0f} ms (p90 {r['release_to_server_agreeing_p90_ms']:.0f}) "
              f"over {r['releases']} releases; load average {r['load_average_1min']:.1f}")
    print(f"wrote {write_results('threshold_browser', results)}")


if __name__ == "__main__":
    main()
