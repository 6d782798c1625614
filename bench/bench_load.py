"""Load: N concurrent browser sessions (default 8) against one `streamlit run` server on 127.0.0.1.

Each session (one headless Debian chromium, one context per session) opens the Prediction page, uploads a different
real test X-ray and waits for its probability and Grad-CAM overlay. Measured in one run, side by side, on a warm
server (the model already loaded): 1, 4, 8 and 16 sessions at once (each with a file no earlier session used, so
nothing comes from the result caches). The browsers run on the same machine as the server and take CPU too.
Reports errors, cross-talk (a session showing a probability other than the model's own for its file, or another
file's name), p50/p95/max latency from upload to the Grad-CAM overlay, and 8 sessions' p95 over one session's time.
Bounded: every session times out after --timeout seconds and the server is always stopped.

Run: nice .venv/bin/python -m bench load       (or: .venv/bin/python -m bench.bench_load --levels 1,8)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.results_io import write_results
from core import config

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _summary(results: list, expected: dict[str, str]) -> dict:
    """Errors, cross-talk and latency percentiles of one batch of sessions."""
    seconds = [r.seconds for r in results if r.seconds is not None]
    errors = [f"{r.file}: {r.error or r.exceptions}" for r in results if r.error or r.exceptions]
    cross_talk = [f"{r.file}: shown {r.probability} / {r.heading}, expected {expected[r.file]}" for r in results
                  if not r.error and (r.probability != expected[r.file] or r.heading != r.file)]
    not_gradcam = [r.file for r in results if not r.error and not (r.overlay_caption or "").startswith("Grad-CAM")]
    return {
        "sessions": len(results), "errors": len(errors), "error_details": errors, "cross_talk": len(cross_talk),
        "cross_talk_details": cross_talk, "without_gradcam": not_gradcam,
        "p50_seconds": float(np.percentile(seconds, 50)) if seconds else None,
        "p95_seconds": float(np.percentile(seconds, 95)) if seconds else None,
        "max_seconds": max(seconds) if seconds else None,
        "mean_seconds": statistics.fmean(seconds) if seconds else None,
    }


def run(levels: tuple[int, ...] = (1, 4, 8, 16), timeout: float = 300.0) -> dict:
    """Start the server, warm it up, then run each level of concurrent sessions in turn; return the summary.

    Every session of every level uploads a file no earlier session used (nothing comes from the result caches).
    `alone` is the 1-session level, `concurrent` the 8-session one (the goal: its p95 <= 2x alone).
    """
    from core.imaging import decode_xray
    from core.predict import load_scorer
    from tests.browser.load import conv_model_dir, cpu_meter, pick_files, run_sessions
    from tests.browser.server import DashboardServer

    model = conv_model_dir(config.models_dir())
    scorer = load_scorer(model)
    files = pick_files(config.data_root(), 1 + sum(levels))
    expected = {f.name: f"{scorer.probability(decode_xray(f)):.3f}" for f in files}
    batches, start = [], 1
    for level in levels:
        batches.append((level, files[start:start + level]))
        start += level
    with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp:
        models_root = Path(tmp) / "models"
        models_root.mkdir()
        (models_root / model.name).symlink_to(model, target_is_directory=True)  # only this model: Grad-CAM by default
        server = DashboardServer(log_path=Path(tmp) / "server.log", env={"PNEUMONIA_MODELS": str(models_root)})
        started = time.perf_counter()
        with server:
            startup = time.perf_counter() - started
            meter = cpu_meter(server.process.pid)
            cold = run_sessions(server.url, files[:1], timeout_s=timeout)
            summaries = {}
            for level, batch in batches:
                cpu: dict[str, float] = {}
                summaries[str(level)] = _summary(run_sessions(server.url, batch, timeout_s=timeout, meter=meter, cpu=cpu), expected)
                summaries[str(level)]["load_average_1min"] = os.getloadavg()[0]
                summaries[str(level)]["cpu_seconds_during_uploads"] = cpu
            traceback_in_log = "Traceback" in server.log()
    result = {
        "model": model.name, "server_startup_seconds": startup,
        "cold_first_session_seconds": cold[0].seconds, "cold_error": cold[0].error,
        "levels": summaries, "alone": summaries.get("1"), "concurrent": summaries.get("8"),
        "traceback_in_server_log": traceback_in_log,
    }
    alone, eight = result["alone"], result["concurrent"]
    if alone and eight and alone["p50_seconds"] and eight["p50_seconds"]:
        result["p50_ratio_concurrent_vs_alone"] = eight["p50_seconds"] / alone["p50_seconds"]
        result["p95_8_sessions_over_alone"] = eight["p95_seconds"] / alone["p50_seconds"]
    return result


def main(argv: list[str] | None = None) -> None:
    """Run the load benchmark, print the numbers and write bench/results/load.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,4,8,16", help="numbers of concurrent browser sessions, run in turn")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds each batch of sessions may take")
    args = parser.parse_args(argv if argv is not None else [])
    result = run(tuple(int(n) for n in args.levels.split(",")), args.timeout)
    print(f"model {result['model']}; server up in {result['server_startup_seconds']:.1f} s; "
          f"first (cold) session {result['cold_first_session_seconds'] or float('nan'):.1f} s")
    for level, summary in result["levels"].items():
        cpu = summary.get("cpu_seconds_during_uploads") or {}
        print(f"{level:>2} sessions at once: p50 {summary['p50_seconds'] or float('nan'):.2f} s, "
              f"p95 {summary['p95_seconds'] or float('nan'):.2f} s upload -> Grad-CAM; errors {summary['errors']}, "
              f"cross-talk {summary['cross_talk']} (load average {summary['load_average_1min']:.1f}); CPU from the uploads to "
              f"the last result: server {cpu.get('server', float('nan')):.2f} s, browsers {cpu.get('browsers', float('nan')):.2f} s")
    if "p95_8_sessions_over_alone" in result:
        print(f"8 sessions p95 / one session: {result['p95_8_sessions_over_alone']:.2f}x (goal <= 2)")
    path = write_results("load", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
