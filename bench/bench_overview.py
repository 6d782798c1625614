"""Overview page and HTML report: first contact in a real browser, what the caches and stored examples buy.

    python -m bench overview

Runs on the shipped models/ and data/chest_xray. The example X-rays (with Grad-CAM) are artifacts written next to a
model by `python -m core.report.examples models/<name>`; when the shipped models do not have them yet, this bench links the
models into a temporary folder and writes them there (never into models/). Prints and stores:
- the landing page in headless Debian chromium on a fresh server started like `make demo` (serve.py): seconds from
  the server answering its health check and from the process start, to the page fully drawn (title, dataset bars,
  the three example images loaded, the report button, no script running);
- the Overview page's first run through AppTest (empty caches: bootstrap CIs, dataset index) against a rerun in the
  same session (everything cached), as seconds and a ratio;
- the report CLI (a fresh process each) with the stored heatmaps against --no-heatmaps, as seconds, a ratio and sizes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_first_contact import first_contact, launch_chromium
from bench.results_io import write_results
from core import config, report

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _page_runs() -> tuple[float, float]:
    """(first run, cached rerun) of the Overview page through AppTest, in seconds."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "1_Overview.py"), default_timeout=600)
    started = time.perf_counter()
    at.run()
    first = time.perf_counter() - started
    if at.exception:
        raise RuntimeError(f"The Overview page failed: {at.exception}")
    started = time.perf_counter()
    at.run()
    return first, time.perf_counter() - started


def _report_cli(heatmaps: bool, out: Path) -> tuple[float, int]:
    """(seconds, bytes) of one cold `python -m core.report` run in a fresh process, as a user runs it."""
    command = [sys.executable, "-m", "core.report", "--models", os.environ["PNEUMONIA_MODELS"], "--data", str(config.data_root()),
               "--out", str(out)] + ([] if heatmaps else ["--no-heatmaps"])
    started = time.perf_counter()
    subprocess.run(command, cwd=PROJECT_ROOT, check=True, capture_output=True)
    return time.perf_counter() - started, out.stat().st_size


def _models_with_examples(folder: Path) -> tuple[Path, str]:
    """models/ when its recommended model has stored examples, else a linked copy with them written by the CLI."""
    from core.report import examples

    shipped = config.models_dir()
    best = report.recommend_model(shipped)
    try:
        examples.load_examples(best.path, threshold=best.threshold)
        return shipped, "models/ (stored examples)"
    except examples.ExamplesUnavailableError:
        pass
    root = folder / "models"
    for model in sorted(p for p in shipped.iterdir() if p.is_dir() and not p.name.startswith(".")):
        (root / model.name).mkdir(parents=True)
        for file in model.iterdir():
            if file.is_file():
                (root / model.name / file.name).symlink_to(file.resolve())
    subprocess.run([sys.executable, "-m", "core.report.examples", str(root / best.name), "--data", str(config.data_root())],
                   cwd=PROJECT_ROOT, check=True, capture_output=True)
    return root, f"linked copy of models/, examples of {best.name} written by python -m core.report.examples"





def _browser_first_contact(models_dir: Path) -> dict:
    """Seconds from a fresh server's start / first health answer to the landing page fully drawn in chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            run = first_contact(browser, env={"PNEUMONIA_MODELS": str(models_dir)})
        finally:
            browser.close()
    return {"browser_landing_drawn_after_serving_s": round(run["after_first_request_s"], 3),
            "browser_landing_drawn_after_spawn_s": round(run["after_spawn_s"], 3),
            "browser_server_start_s": round(run["after_spawn_s"] - run["after_first_request_s"], 3),
            "browser_example_images": run["images"]}


def main() -> None:
    """Measure and print the ratios; write bench/results/overview.json."""
    config.quiet_tensorflow()
    scratch = tempfile.TemporaryDirectory()
    models_dir, models_source = _models_with_examples(Path(scratch.name))
    os.environ["PNEUMONIA_MODELS"] = str(models_dir)
    browser = _browser_first_contact(models_dir)
    print(browser, flush=True)
    first, rerun = _page_runs()
    with tempfile.TemporaryDirectory() as folder:
        _report_cli(False, Path(folder) / "warm-up.html")  # dataset index cache and OS file cache, for both runs alike
        light_s, light_bytes = _report_cli(False, Path(folder) / "light.html")
        full_s, full_bytes = _report_cli(True, Path(folder) / "full.html")
    recommended = report.recommend_model(models_dir).name
    scratch.cleanup()
    results = {
        "recommended_model": recommended,
        "models": models_source,
        **browser,
        "goal_landing_drawn_s": 3.0,
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),  # the machine is shared: context for the times
        "page_first_run_s": round(first, 3),
        "page_cached_rerun_s": round(rerun, 3),
        "page_first_over_cached": round(first / rerun, 1),
        "report_cli_with_stored_heatmaps_s": round(full_s, 3),
        "report_cli_no_heatmaps_s": round(light_s, 3),
        "report_heatmaps_over_no_heatmaps": round(full_s / light_s, 2),
        "report_with_heatmaps_mb": round(full_bytes / 1e6, 2),
        "report_no_heatmaps_mb": round(light_bytes / 1e6, 2),
    }
    for key, value in results.items():
        print(f"{key:36s} {value}")
    write_results("overview", results)


if __name__ == "__main__":
    main()
