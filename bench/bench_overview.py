"""Overview page and HTML report: what the caches and the --no-heatmaps flag buy, measured side by side.

    python -m bench overview

Runs on the shipped models/ and data/chest_xray. Prints and stores:
- the Overview page's first run (empty caches: bootstrap CIs, dataset index, heatmaps with TensorFlow) against a
  rerun in the same session (everything cached), as seconds and a ratio;
- the report built with Grad-CAM heatmaps against --no-heatmaps, as seconds, a ratio and the file sizes.
"""

from __future__ import annotations

import os
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


def _report(heatmaps: bool) -> tuple[float, int]:
    """(seconds, bytes) of one report build."""
    started = time.perf_counter()
    text = report.build_report(config.models_dir(), config.data_root(), heatmaps=heatmaps)
    return time.perf_counter() - started, len(text.encode("utf-8"))


def main() -> None:
    """Measure and print the ratios; write bench/results/overview.json."""
    config.quiet_tensorflow()
    os.environ.setdefault("PNEUMONIA_MODELS", str(config.models_dir()))
    first, rerun = _page_runs()
    _report(heatmaps=False)  # warm-up: dataset index and imports, so both timings below start from the same state
    light_s, light_bytes = _report(heatmaps=False)
    full_s, full_bytes = _report(heatmaps=True)
    results = {
        "recommended_model": report.recommend_model(config.models_dir()).name,
        "page_first_run_s": round(first, 3),
        "page_cached_rerun_s": round(rerun, 3),
        "page_first_over_cached": round(first / rerun, 1),
        "report_with_heatmaps_s": round(full_s, 3),
        "report_no_heatmaps_s": round(light_s, 3),
        "report_heatmaps_over_no_heatmaps": round(full_s / light_s, 2),
        "report_with_heatmaps_mb": round(full_bytes / 1e6, 2),
        "report_no_heatmaps_mb": round(light_bytes / 1e6, 2),
    }
    for key, value in results.items():
        print(f"{key:36s} {value}")
    write_results("overview", results)


if __name__ == "__main__":
    main()
