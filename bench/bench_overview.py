"""Overview page and HTML report: what the caches and the --no-heatmaps flag buy, measured side by side.

    python -m bench overview

Runs on the shipped models/ and data/chest_xray. Prints and stores:
- the Overview page's first run (empty caches: bootstrap CIs, dataset index, heatmaps with TensorFlow) against a
  rerun in the same session (everything cached), as seconds and a ratio;
- the report CLI (a fresh process each) with Grad-CAM heatmaps against --no-heatmaps, as seconds, a ratio and file sizes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    command = [sys.executable, "-m", "core.report", "--models", str(config.models_dir()), "--data", str(config.data_root()),
               "--out", str(out)] + ([] if heatmaps else ["--no-heatmaps"])
    started = time.perf_counter()
    subprocess.run(command, cwd=PROJECT_ROOT, check=True, capture_output=True)
    return time.perf_counter() - started, out.stat().st_size


def main() -> None:
    """Measure and print the ratios; write bench/results/overview.json."""
    config.quiet_tensorflow()
    os.environ.setdefault("PNEUMONIA_MODELS", str(config.models_dir()))
    first, rerun = _page_runs()
    with tempfile.TemporaryDirectory() as folder:
        _report_cli(False, Path(folder) / "warm-up.html")  # dataset index cache and OS file cache, for both runs alike
        light_s, light_bytes = _report_cli(False, Path(folder) / "light.html")
        full_s, full_bytes = _report_cli(True, Path(folder) / "full.html")
    results = {
        "recommended_model": report.recommend_model(config.models_dir()).name,
        "page_first_run_s": round(first, 3),
        "page_cached_rerun_s": round(rerun, 3),
        "page_first_over_cached": round(first / rerun, 1),
        "report_cli_with_heatmaps_s": round(full_s, 3),
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
