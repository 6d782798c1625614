"""Concurrent browser sessions against one dashboard server: each uploads its own real X-ray on the Prediction page
and waits for its probability and Grad-CAM overlay (one chromium, one context per session, asyncio).

Used by tests/browser/test_concurrency_browser.py (correctness) and bench/bench_load.py (latency).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.browser.helpers import FILE_INPUT
from tests.browser.server import PROJECT_ROOT, DashboardServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


@dataclass
class SessionResult:
    """What one browser session saw: the file it uploaded, the probability and heading shown, timings, any error."""

    file: str
    probability: str | None = None
    heading: str | None = None
    overlay_caption: str | None = None
    images: int = 0
    seconds: float | None = None  # upload start -> result shown, on the page's own clock
    seconds_polled: float | None = None  # the same seen from Playwright's polling waits (up to 0.5 s late)
    error: str | None = None
    exceptions: list[str] = field(default_factory=list)


def conv_model_dir(models_root: Path) -> Path:
    """The first available model (by name) whose card says it is not an MLP, i.e. one Grad-CAM can explain."""
    from core.models import registry

    for entry in registry.list_models(models_root):
        if entry.available and entry.card.get("architecture") not in (None, "mlp"):
            return entry.path
    raise RuntimeError(f"No available convolutional model in {models_root}; train one with `make models`.")


def pick_files(data_root: Path, count: int, *, skip: int = 0) -> list[Path]:
    """`count` real test X-rays alternating NORMAL / PNEUMONIA, spread over the sorted file lists."""
    normal = sorted((data_root / "test" / "NORMAL").glob("*.jpeg"))
    pneumonia = sorted((data_root / "test" / "PNEUMONIA").glob("*.jpeg"))
    files = []
    for i in range(skip, skip + count):
        pool = normal if i % 2 == 0 else pneumonia
        files.append(pool[(i * 37) % len(pool)])
    return files


def conv_model_server(root: Path) -> tuple[DashboardServer, Path]:
    """A started DashboardServer whose only model (symlinked into `root`) is the first convolutional shipped model, so
    the default heatmap is Grad-CAM; its log goes next to `root`. Raises RuntimeError (with the log) if it does not start.
    """
    model = conv_model_dir(PROJECT_ROOT / "models")
    (root / model.name).symlink_to(model, target_is_directory=True)
    server = DashboardServer(log_path=root.parent / f"{root.name}_server.log", env={"PNEUMONIA_MODELS": str(root)})
    return server.start(), model


def files_with_distinct_scores(model: Path, data_root: Path, count: int, *, pool: int) -> dict[Path, str]:
    """`count` of the first `pool` pick_files whose probabilities, as the page shows them (3 decimals), all differ, so
    a session showing another session's result is caught: file -> shown probability (the model's own prediction)."""
    from core.imaging import decode_xray
    from core.predict import load_scorer

    scorer = load_scorer(model)
    chosen: dict[Path, str] = {}
    for candidate in pick_files(data_root, pool):
        shown = f"{scorer.probability(decode_xray(candidate)):.3f}"
        if shown not in chosen.values() and len(chosen) < count:
            chosen[candidate] = shown
    return chosen


def process_cpu_seconds(match: Callable[[int, str], bool]) -> float:
    """User + system CPU seconds of every running process whose (pid, command line) matches, including the children
    they have reaped (so renderer processes that already exited still count). Linux /proc only."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="ignore")
            if not match(int(entry), command):
                continue
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        total += sum(int(value) for value in stat[11:15]) / tick  # utime, stime, cutime, cstime
    return total


def cpu_meter(server_pid: int) -> Callable[[], dict[str, float]]:
    """A function returning the CPU seconds used so far by the dashboard server and by the chromium processes."""
    def read() -> dict[str, float]:
        return {"server": process_cpu_seconds(lambda pid, _: pid == server_pid),
                "browsers": process_cpu_seconds(lambda _, command: CHROMIUM in command or "/chromium/chromium" in command)}
    return read


RESULT_SHOWN_JS = """() => {
  // The page's own clock: when the file input changes (the upload starts) and when the overlay caption is in the page
  // with at least two images fully loaded. Playwright's waits poll with a back-off of up to 0.5 s, so they only tell
  // *that* the result is shown; these stamps tell *when* (what the user sees).
  window.__uploadStart = null; window.__resultShown = null;
  const check = () => {
    if (window.__uploadStart === null || window.__resultShown !== null) return;
    const images = Array.from(document.querySelectorAll('[data-testid="stImage"] img'))
      .filter(img => img.complete && img.naturalWidth > 0);
    if (images.length >= 2 && document.body.innerText.includes('red = most influential'))
      window.__resultShown = performance.now();
  };
  document.addEventListener('change', e => {
    if (e.target && e.target.type === 'file' && window.__uploadStart === null) window.__uploadStart = performance.now();
  }, true);
  document.addEventListener('load', check, true);  // image loads (capturing: load does not bubble)
  new MutationObserver(check).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


async def _session(browser, base_url: str, path: Path, timeout_ms: int, ready: asyncio.Barrier | None = None,
                   marks: dict | None = None, meter: Callable[[], dict[str, float]] | None = None,
                   contexts: list | None = None) -> SessionResult:
    """One user: open the Prediction page, upload `path`, wait for the probability and the Grad-CAM overlay.

    With ``ready``, every session first has its page open and drawn, then all upload at the same moment (eight
    clinicians with the page already open; the browsers' page loads are not part of the measured time).
    """
    result = SessionResult(file=path.name)
    context = await browser.new_context(viewport={"width": 1300, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(timeout_ms)
    try:
        await page.goto(f"{base_url}/Prediction", wait_until="domcontentloaded")
        await page.locator("h1", has_text="Prediction").first.wait_for()
        await page.locator(FILE_INPUT).first.wait_for(state="attached")
        await page.evaluate(RESULT_SHOWN_JS)
        if ready is not None:
            await asyncio.wait_for(ready.wait(), timeout_ms / 1000)
        if marks is not None and meter is not None and "start" not in marks:
            marks["start"] = meter()
        start = time.perf_counter()
        await page.locator(FILE_INPUT).first.set_input_files(str(path))
        caption = page.get_by_text("red = most influential").first
        await caption.wait_for()
        await page.wait_for_function(
            "() => Array.from(document.querySelectorAll('[data-testid=\"stImage\"] img'))"
            ".filter(img => img.complete && img.naturalWidth > 0).length >= 2")
        result.seconds_polled = time.perf_counter() - start
        shown = await page.evaluate("() => [window.__uploadStart, window.__resultShown]")
        result.seconds = (shown[1] - shown[0]) / 1000 if None not in shown else result.seconds_polled
        result.overlay_caption = (await caption.inner_text()).strip()
        metric = page.locator('[data-testid="stMetric"]', has=page.locator('[data-testid="stMetricLabel"]',
                                                                             has_text="Pneumonia score")).first
        result.probability = (await metric.locator('[data-testid="stMetricValue"]').inner_text()).strip()
        result.heading = (await page.locator("h3").first.inner_text()).strip()
        result.images = await page.locator('[data-testid="stImage"] img').count()
        result.exceptions = await page.locator('[data-testid="stException"]').all_inner_texts()
    except Exception as error:  # noqa: BLE001 - every failure of a session is reported, not raised
        result.error = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
        if ready is not None:
            await ready.abort()  # the others must not wait for a session that will never upload
    finally:
        if contexts is None:
            await context.close()
        else:
            contexts.append(context)  # closed by _run once the CPU meter has been read (a closed renderer's CPU is lost)
    return result


async def _run(base_url: str | list[str], files: list[Path], timeout_ms: int, marks: dict,
               meter: Callable[[], dict[str, float]] | None) -> list[SessionResult]:
    """All sessions at once in one chromium; ``marks`` gets the meter's readings when the uploads start and end."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ready = asyncio.Barrier(len(files))
            contexts: list = []
            urls = [base_url] if isinstance(base_url, str) else list(base_url)  # replicas: session i -> urls[i % n]
            results = list(await asyncio.gather(*(_session(browser, urls[i % len(urls)], f, timeout_ms, ready, marks, meter,
                                                           contexts) for i, f in enumerate(files))))
            if meter is not None:
                marks["end"] = meter()
            for context in contexts:
                await context.close()
            return results
        finally:
            await browser.close()


def run_sessions(base_url: str | list[str], files: list[Path], *, timeout_s: float = 300.0,
                 meter: Callable[[], dict[str, float]] | None = None, cpu: dict | None = None) -> list[SessionResult]:
    """Run one concurrent session per file (asyncio in a fresh event loop, bounded by `timeout_s`); one result each.

    With ``meter`` (see :func:`cpu_meter`) and a ``cpu`` dict, ``cpu`` receives the CPU seconds each process group
    used from the moment all pages were open until the last session saw its result.
    """
    import threading

    out: list[list[SessionResult]] = []
    failure: list[BaseException] = []
    marks: dict = {}

    def target() -> None:
        try:
            out.append(asyncio.run(asyncio.wait_for(_run(base_url, files, int(timeout_s * 1000), marks, meter), timeout_s + 60)))
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(error)

    # A separate thread: the sync Playwright API of other fixtures may own this thread's event loop.
    worker = threading.Thread(target=target, name="load-sessions", daemon=True)
    worker.start()
    worker.join(timeout_s + 120)
    if failure:
        raise failure[0]
    if not out:
        raise TimeoutError(f"the {len(files)} browser sessions did not finish within {timeout_s + 120:.0f} s")
    if cpu is not None and "start" in marks and "end" in marks:
        cpu.update({key: marks["end"][key] - marks["start"][key] for key in marks["start"]})
    return out[0]
