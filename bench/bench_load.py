"""Load: N concurrent sessions (default 8) against one `streamlit run` server on 127.0.0.1, through two clients.

Each session opens the Prediction page, uploads a different real test X-ray and waits for its probability and
Grad-CAM overlay. Two clients, chosen with --client (both can run side by side in one run):

- ``browser``: one headless Debian chromium, one context per session (tests/browser/load.py); timed from the upload
  to the overlay caption shown and both images loaded. The browsers run on the same 2-core machine as the server and
  take most of the CPU (measured below), so this number is mostly the test browsers' own rendering.
- ``protocol``: bench/streamlit_client.py speaks Streamlit's websocket protocol exactly as the frontend does (no
  rendering); timed from the file_urls_request to ``script_finished`` of the run that scored the file (also: until the
  overlay's caption arrived and both its images were fetched from /media). This is what the *server* delivers.

Measured in one run, side by side, on a warm server (a first session and 4 warm-up uploads done): 1, 4, 8 and 16
sessions at once, each with a file no earlier session of either client used (nothing comes from the result caches);
with both clients the order of the clients alternates from level to level. Reports per client: errors, cross-talk (a session showing a
probability other than the model's own for its file, or another file's name), p50/p95/max latency, the CPU seconds of
the server, the browsers and this process from the uploads to the last result, and 8 sessions' p95 over one
session's time (the goal of issue 12: <= 2). Bounded: every session times out after --timeout seconds and the server
is always stopped. bench/results/load.json holds one block per client under "clients".

Run: nice .venv/bin/python -m bench load       (browser client, levels 1,4,8,16)
     .venv/bin/python -m bench.bench_load --client both --levels 1,4,8,16
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.results_io import write_results
from core import config

PROJECT_ROOT = Path(__file__).resolve().parent.parent


CLIENTS = ("browser", "protocol", "mixed")
MIXED_ROUNDS = 10
"""Rounds per level of the mixed client (one real browser among protocol sessions): its latencies are the browser's."""
WARM_UP = 4
"""Files uploaded at once (protocol client) after the first session, before any measured level: the server's
first-time paths (e.g. Grad-CAM of the other class, Streamlit's emoji table imported by the first st.warning or st.info
with an icon, ~1.6 s under load) must not land in one measured level."""


def _summary(results: list, expected: dict[str, str]) -> dict:
    """Errors, cross-talk and latency percentiles of one batch of sessions (either client's results)."""
    seconds = [r.seconds for r in results if r.seconds is not None]
    errors = [f"{r.file}: {r.error or r.exceptions}" for r in results if r.error or r.exceptions]
    cross_talk = [f"{r.file}: shown {r.probability} / {r.heading}, expected {expected[r.file]}" for r in results
                  if not r.error and (r.probability != expected[r.file] or r.heading != r.file)]
    not_gradcam = [r.file for r in results if not r.error and not (r.overlay_caption or "").startswith("Grad-CAM")]
    summary = {
        "sessions": len(results), "errors": len(errors), "error_details": errors, "cross_talk": len(cross_talk),
        "cross_talk_details": cross_talk, "without_gradcam": not_gradcam,
        "p50_seconds": float(np.percentile(seconds, 50)) if seconds else None,
        "p95_seconds": float(np.percentile(seconds, 95)) if seconds else None,
        "max_seconds": max(seconds) if seconds else None,
        "mean_seconds": statistics.fmean(seconds) if seconds else None,
    }
    overlay = [r.seconds_to_overlay for r in results if getattr(r, "seconds_to_overlay", None) is not None]
    if overlay:  # protocol client: until the overlay caption arrived and both its images were fetched
        summary["overlay_p50_seconds"] = float(np.percentile(overlay, 50))
        summary["overlay_p95_seconds"] = float(np.percentile(overlay, 95))
    return summary


def _meter(server_pids: list[int]):
    """CPU seconds so far of the server processes (summed), of the chromium processes and of this process."""
    from tests.browser.load import cpu_meter

    bases = [cpu_meter(pid) for pid in server_pids]

    def read() -> dict[str, float]:
        readings = [base() for base in bases]
        own = resource.getrusage(resource.RUSAGE_SELF)
        return {"server": sum(r["server"] for r in readings), "browsers": readings[0]["browsers"],
                "bench_process": own.ru_utime + own.ru_stime}
    return read


def _protocol_sessions(url: str | list[str], files: list[Path], timeout: float, meter=None, cpu: dict | None = None) -> list:
    """All protocol sessions at once; ``cpu`` gets the CPU used from the moment all pages were open to the end."""
    from bench.streamlit_client import run_protocol_sessions

    marks: dict = {}

    def on_start() -> None:
        if meter is not None and "start" not in marks:
            marks["start"] = meter()

    results = asyncio.run(run_protocol_sessions(url, files, timeout_s=timeout, on_start=on_start))
    if meter is not None and cpu is not None and "start" in marks:
        end = meter()
        cpu.update({key: end[key] - marks["start"][key] for key in end})
    return results


async def _one_browser_among_protocol_sessions(url: str | list[str], rounds: list[list[Path]], timeout: float) -> list:
    """For each round: one real browser session and len(round) - 1 protocol sessions upload at the same moment.

    The browser's result is what one clinician sees while the others' uploads load the server; the others are what
    their own browsers (on their own computers) would send. Returns every session's result, browsers first per round.
    """
    from playwright.async_api import async_playwright

    from bench.streamlit_client import upload_session
    from tests.browser.load import CHROMIUM, CHROMIUM_ARGS, _session

    out: list = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            urls = [url] if isinstance(url, str) else list(url)  # replicas: session i of a round -> urls[i % n]
            for files in rounds:
                ready = asyncio.Barrier(len(files))
                out += await asyncio.gather(_session(browser, urls[0], files[0], int(timeout * 1000), ready),
                                            *(upload_session(urls[i % len(urls)], f, timeout_s=timeout, ready=ready)
                                              for i, f in enumerate(files) if i > 0))
        finally:
            await browser.close()
    return out


def _sessions(client: str, url: str | list[str], files: list[Path], timeout: float, meter=None, cpu: dict | None = None) -> list:
    """One batch of concurrent sessions through `client` ("browser", "protocol" or "mixed").

    "mixed": the batch is cut into MIXED_ROUNDS rounds of equal size; only the first session of each round is a real
    browser (see _one_browser_among_protocol_sessions).
    """
    if client == "protocol":
        return _protocol_sessions(url, files, timeout, meter, cpu)
    if client == "mixed":
        size = len(files) // MIXED_ROUNDS
        rounds = [files[i * size:(i + 1) * size] for i in range(MIXED_ROUNDS)]
        before = meter() if meter is not None else None
        results = asyncio.run(_one_browser_among_protocol_sessions(url, rounds, timeout))
        if before is not None and cpu is not None:
            after = meter()
            cpu.update({key: after[key] - before[key] for key in after})
        return results
    from tests.browser.load import run_sessions

    return run_sessions(url, files, timeout_s=timeout, meter=meter, cpu=cpu)


def _ratios(summaries: dict) -> dict:
    """`alone` (1 session), `concurrent` (8 sessions) and 8 sessions' p95 over one session's time."""
    alone, eight = summaries.get("1"), summaries.get("8")
    out = {"levels": summaries, "alone": alone, "concurrent": eight}
    if alone and eight and alone["p50_seconds"] and eight["p50_seconds"]:
        out["p50_ratio_concurrent_vs_alone"] = eight["p50_seconds"] / alone["p50_seconds"]
        out["p95_8_sessions_over_alone"] = eight["p95_seconds"] / alone["p50_seconds"]
    return out


def run(levels: tuple[int, ...] = (1, 4, 8, 16), timeout: float = 300.0, clients: tuple[str, ...] = ("browser",),
        replicas: int = 1) -> dict:
    """Start the server (or ``replicas`` servers, one process each, sessions placed on them in turn as a sticky load
    balancer would), warm it up, then run each level of concurrent sessions in turn for each client.

    Every session of every level and client uploads a file no earlier session used (nothing comes from the result
    caches). Per client: `alone` is the 1-session level, `concurrent` the 8-session one (the goal: its p95 <= 2x alone).
    """
    from core.imaging import decode_xray
    from core.predict import load_scorer
    from tests.browser.load import conv_model_dir, pick_files
    from tests.browser.server import DashboardServer

    model = conv_model_dir(config.models_dir())
    scorer = load_scorer(model)
    per_level = {client: (MIXED_ROUNDS if client == "mixed" else 1) for client in clients}
    head = (1 + WARM_UP) * replicas
    files = pick_files(config.data_root(), head + sum(levels) * sum(per_level.values()))
    expected = {f.name: f"{scorer.probability(decode_xray(f)):.3f}" for f in files}
    batches, start = [], head
    for index, level in enumerate(levels):
        order = clients if index % 2 == 0 else tuple(reversed(clients))  # neither client always runs first
        for client in order:
            count = level * per_level[client]
            batches.append((client, level, files[start:start + count]))
            start += count
    with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp:
        models_root = Path(tmp) / "models"
        models_root.mkdir()
        (models_root / model.name).symlink_to(model, target_is_directory=True)  # only this model: Grad-CAM by default
        servers = [DashboardServer(log_path=Path(tmp) / f"server{i}.log", env={"PNEUMONIA_MODELS": str(models_root)})
                   for i in range(replicas)]
        started = time.perf_counter()
        with contextlib.ExitStack() as stack:
            for server in servers:
                stack.enter_context(server)
            startup = time.perf_counter() - started
            urls = [server.url for server in servers]
            url = urls[0] if replicas == 1 else urls
            meter = _meter([server.process.pid for server in servers])
            cold_client = "browser" if clients[0] == "mixed" else clients[0]
            cold = _sessions(cold_client, url, files[:replicas], timeout)
            warm = _summary(_sessions("protocol", url, files[replicas:head], timeout), expected)
            summaries: dict[str, dict] = {client: {} for client in clients}
            for client, level, batch in batches:
                cpu: dict[str, float] = {}
                results = _sessions(client, url, batch, timeout, meter, cpu)
                if client == "mixed":  # latencies: the real browser of each round; errors and cross-talk: everyone
                    summary = _summary(results[::level], expected)
                    everyone = _summary(results, expected)
                    summary.update({key: everyone[key] for key in ("sessions", "errors", "error_details", "cross_talk",
                                                                   "cross_talk_details", "without_gradcam")})
                    summary["rounds"] = MIXED_ROUNDS
                else:
                    summary = _summary(results, expected)
                summary["load_average_1min"] = os.getloadavg()[0]
                summary["cpu_seconds_during_uploads"] = cpu
                summaries[client][str(level)] = summary
            traceback_in_log = any("Traceback" in server.log() for server in servers)
    return {
        "model": model.name, "replicas": replicas, "server_startup_seconds": startup, "cold_client": cold_client,
        "cold_first_session_seconds": cold[0].seconds, "cold_error": cold[0].error, "warm_up": warm,
        "clients": {client: _ratios(summaries[client]) for client in clients},
        "traceback_in_server_log": traceback_in_log,
    }


def main(argv: list[str] | None = None) -> None:
    """Run the load benchmark, print the numbers and write bench/results/load.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,4,8,16", help="numbers of concurrent sessions, run in turn")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds each batch of sessions may take")
    parser.add_argument("--client", choices=(*CLIENTS, "both", "all"), default="browser",
                        help="browser: headless chromium sessions; protocol: Streamlit's websocket protocol without a "
                             "browser (what the server delivers); mixed: one real browser among protocol sessions, "
                             f"{MIXED_ROUNDS} rounds per level (what one clinician sees while the others upload); both: "
                             "browser and protocol side by side in one run; all: the three")
    parser.add_argument("--replicas", type=int, default=1,
                        help="dashboard processes to start; session i of a batch goes to replica i mod n and stays there "
                             "(what a sticky load balancer does; README 'Serving more users')")
    args = parser.parse_args(argv if argv is not None else [])
    clients = {"both": ("browser", "protocol"), "all": CLIENTS}.get(args.client, (args.client,))
    result = run(tuple(int(n) for n in args.levels.split(",")), args.timeout, clients, args.replicas)
    print(f"model {result['model']}; {args.replicas} server process(es) up in {result['server_startup_seconds']:.1f} s; "
          f"first (cold, {result['cold_client']}) session {result['cold_first_session_seconds'] or float('nan'):.1f} s; "
          f"{WARM_UP} warm-up uploads at once: max {result['warm_up']['max_seconds'] or float('nan'):.2f} s, "
          f"errors {result['warm_up']['errors']}")
    nan = float("nan")
    for client, block in result["clients"].items():
        until = "script_finished" if client == "protocol" else "Grad-CAM shown in the browser"
        for level, summary in block["levels"].items():
            cpu = summary.get("cpu_seconds_during_uploads") or {}
            overlay = (f" (overlay p50 {summary['overlay_p50_seconds']:.2f} / p95 {summary['overlay_p95_seconds']:.2f} s)"
                       if "overlay_p50_seconds" in summary else "")
            print(f"{client:>8} {level:>2} sessions at once: p50 {summary['p50_seconds'] or nan:.2f} s, "
                  f"p95 {summary['p95_seconds'] or nan:.2f} s upload -> {until}{overlay}; errors {summary['errors']}, "
                  f"cross-talk {summary['cross_talk']} (load average {summary['load_average_1min']:.1f}); CPU from the "
                  f"uploads to the last result: server {cpu.get('server', nan):.2f} s, browsers {cpu.get('browsers', nan):.2f} s, "
                  f"this process {cpu.get('bench_process', nan):.2f} s")
        if "p95_8_sessions_over_alone" in block:
            print(f"{client:>8}: 8 sessions p95 / one session: {block['p95_8_sessions_over_alone']:.2f}x (goal <= 2)")
    path = write_results("load" if args.replicas == 1 else f"load-{args.replicas}-replicas", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
