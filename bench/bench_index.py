"""Dataset indexing and dataset-page speed on the shipped set (5,840 images).

1. `core.data.index_dataset`: cold (empty cache folder: walk, header sizes, write the cache) against warm
   (cache hit: walk + stat for the cache key, read the CSV), side by side in one run. Targets: < 2 s cold,
   < 0.2 s warm. "Cold" means no index cache; the operating system's file cache is not dropped.
2. `core.data.load_index` (index + patient-grouped validation split) cold against warm.
3. `core.data.summary.summarize` (pixel-hash duplicates, intensity statistics) cold against warm.
4. First render of the dataset page: a fresh `streamlit run` process until the folder counts are visible in
   Chromium (Playwright), with the disk caches warm; skipped when /usr/bin/chromium is absent.

Run: .venv/bin/python -m bench index
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.results_io import write_results
from core import config, data
from core.data import summary as dataset_summary

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")


def _timed(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def _cold_and_warm(func, *, cold_repeats: int, warm_repeats: int) -> tuple[float, float]:
    """Median seconds of `func()` with an empty cache folder each time, then with the cache in place."""
    colds, warms = [], []
    for _ in range(cold_repeats):
        config.CACHE_DIR = Path(tempfile.mkdtemp(prefix="bench-index-"))
        colds.append(_timed(func))
    for _ in range(warm_repeats):
        warms.append(_timed(func))
    return statistics.median(colds), statistics.median(warms)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def first_render_seconds() -> float | None:
    """Seconds from launching `streamlit run` to the dataset page's folder counts showing in Chromium."""
    if not CHROMIUM.exists():
        return None
    from playwright.sync_api import sync_playwright

    data.load_index(config.data_root())  # the project's own disk caches, as a user's second start has them
    dataset_summary.summarize(config.data_root())
    port = _free_port()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page()
        start = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
             "--browser.gatherUsageStats", "false"],
            cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            while True:
                try:
                    urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                    break
                except OSError:
                    if time.perf_counter() - start > 60:
                        raise RuntimeError("streamlit did not start within 60 s") from None
                    time.sleep(0.05)
            page.goto(f"{url}/Dataset")
            page.wait_for_selector("text=On disk:", timeout=60_000)
            return time.perf_counter() - start
        finally:
            server.terminate()
            server.wait(timeout=20)
            browser.close()


def main() -> None:
    root = config.data_root()
    original_cache = config.CACHE_DIR
    made: list[Path] = []
    try:
        index_cold, index_warm = _cold_and_warm(lambda: data.index_dataset(root), cold_repeats=3, warm_repeats=5)
        made.append(config.CACHE_DIR)
        load_cold, load_warm = _cold_and_warm(lambda: data.load_index(root), cold_repeats=3, warm_repeats=5)
        made.append(config.CACHE_DIR)
        summary_cold, summary_warm = _cold_and_warm(lambda: dataset_summary.summarize(root), cold_repeats=1, warm_repeats=3)
        made.append(config.CACHE_DIR)
    finally:
        config.CACHE_DIR = original_cache
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)
    render = first_render_seconds()
    n_images = len(data.index_dataset(root))
    print(f"images indexed: {n_images:,} in {root}")
    print(f"index_dataset   cold {index_cold:6.3f} s   warm {index_warm:6.3f} s   cold/warm {index_cold / index_warm:5.1f}x   (targets < 2 s / < 0.2 s)")
    print(f"load_index      cold {load_cold:6.3f} s   warm {load_warm:6.3f} s   cold/warm {load_cold / load_warm:5.1f}x")
    print(f"summarize       cold {summary_cold:6.3f} s   warm {summary_warm:6.3f} s   cold/warm {summary_cold / summary_warm:5.1f}x")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if render is not None:
        print(f"dataset page first render from server start (warm disk caches): {render:5.2f} s")
    write_results(
        "index",
        {
            "n_images": n_images,
            "cpus": os.cpu_count(),
            "load_average_1min_at_end": os.getloadavg()[0],
            "index_dataset_cold_s": index_cold,
            "index_dataset_warm_s": index_warm,
            "index_dataset_cold_over_warm": index_cold / index_warm,
            "load_index_cold_s": load_cold,
            "load_index_warm_s": load_warm,
            "load_index_cold_over_warm": load_cold / load_warm,
            "summary_cold_s": summary_cold,
            "summary_warm_s": summary_warm,
            "summary_cold_over_warm": summary_cold / summary_warm,
            "page_first_render_s": render,
        },
    )


if __name__ == "__main__":
    main()
