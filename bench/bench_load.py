"""Load: N concurrent browser sessions (default 8) against one `streamlit run` server on 127.0.0.1.

Each session (one headless Debian chromium, one context per session) opens the Prediction page, uploads a different
real test X-ray and waits for its probability and Grad-CAM overlay. Measured in one run, side by side:
1. one session alone on a warm server (the model already loaded), the baseline;
2. N sessions at once (each with a file no earlier session used, so nothing comes from the result caches).
Reports errors, cross-talk (a session showing a probability other than the model's own for its file, or another
file's name), p50/p95/max latency from upload to the Grad-CAM overlay, and the p50 ratio concurrent / alone.
Bounded: every session times out after --timeout seconds and the server is always stopped.

Run: .venv/bin/python -m bench load            (or: .venv/bin/python -m bench.bench_load --sessions 8)
"""

from __future__ import annotations

import argparse
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


def run(sessions: int = 8, timeout: float = 300.0) -> dict:
    """Start the server, warm it up, run 1 then `sessions` concurrent sessions; return the summary."""
    from core.imaging import decode_xray
    from core.predict import load_scorer
    from tests.browser.load import conv_model_dir, pick_files, run_sessions
    from tests.browser.server import DashboardServer

    model = conv_model_dir(config.models_dir())
    scorer = load_scorer(model)
    files = pick_files(config.data_root(), sessions + 2)
    warmup, alone, together = files[:1], files[1:2], files[2:]
    expected = {f.name: f"{scorer.probability(decode_xray(f)):.3f}" for f in files}
    with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp:
        models_root = Path(tmp) / "models"
        models_root.mkdir()
        (models_root / model.name).symlink_to(model, target_is_directory=True)  # only this model: Grad-CAM by default
        server = DashboardServer(log_path=Path(tmp) / "server.log", env={"PNEUMONIA_MODELS": str(models_root)})
        started = time.perf_counter()
        with server:
            startup = time.perf_counter() - started
            cold = run_sessions(server.url, warmup, timeout_s=timeout)
            single = run_sessions(server.url, alone, timeout_s=timeout)
            concurrent = run_sessions(server.url, together, timeout_s=timeout)
            traceback_in_log = "Traceback" in server.log()
    result = {
        "model": model.name, "server_startup_seconds": startup,
        "cold_first_session_seconds": cold[0].seconds, "cold_error": cold[0].error,
        "alone": _summary(single, expected), "concurrent": _summary(concurrent, expected),
        "traceback_in_server_log": traceback_in_log,
    }
    if result["alone"]["p50_seconds"] and result["concurrent"]["p50_seconds"]:
        result["p50_ratio_concurrent_vs_alone"] = result["concurrent"]["p50_seconds"] / result["alone"]["p50_seconds"]
    return result


def main(argv: list[str] | None = None) -> None:
    """Run the load benchmark, print the numbers and write bench/results/load.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=8, help="concurrent browser sessions")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds each batch of sessions may take")
    args = parser.parse_args(argv if argv is not None else [])
    result = run(args.sessions, args.timeout)
    conc, alone = result["concurrent"], result["alone"]
    print(f"model {result['model']}; server up in {result['server_startup_seconds']:.1f} s; "
          f"first (cold) session {result['cold_first_session_seconds'] or float('nan'):.1f} s")
    print(f"1 session alone: {alone['p50_seconds'] or float('nan'):.2f} s upload -> Grad-CAM")
    print(f"{conc['sessions']} sessions at once: p50 {conc['p50_seconds'] or float('nan'):.2f} s, "
          f"p95 {conc['p95_seconds'] or float('nan'):.2f} s, max {conc['max_seconds'] or float('nan'):.2f} s; "
          f"errors {conc['errors']}, cross-talk {conc['cross_talk']}")
    if "p50_ratio_concurrent_vs_alone" in result:
        print(f"p50 concurrent / alone: {result['p50_ratio_concurrent_vs_alone']:.2f}x")
    path = write_results("load", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
