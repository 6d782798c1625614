"""First contact: a freshly started server (as `make demo` starts it), the landing page fully drawn in headless
Debian chromium, with and without the start-up warm-up (core.report.warm_landing_page), alternated so that both see
the same machine.

    python -m bench first_contact          (BENCH_REPEATS=3 by default)

Prints and stores (bench/results/first_contact.json), per variant: seconds from the server answering its health check
(the first request) to the page fully drawn (title, dataset bars, three example X-rays loaded, the report button, no
script running), and from the process start; the server's own CPU seconds for that first visit (user + system, which
the machine's load does not inflate); the medians, their ratios, and the load average (the machine is shared).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.results_io import write_results

PROJECT_ROOT = Path(__file__).resolve().parent.parent

FULLY_DRAWN_JS = """
() => {
  const status = document.querySelector('[data-testid="stStatusWidget"]');
  if (status && /running/i.test(status.innerText)) return false;
  const images = [...document.querySelectorAll('[data-testid="stImage"] img')];
  const noExamples = [...document.querySelectorAll('[data-testid="stAlert"]')].some(a => a.innerText.includes('No example X-rays'));
  return !!document.querySelector('h1')
      && !!document.querySelector('.dataset-bars')
      && (noExamples || (images.length >= 3 && images.every(img => img.complete && img.naturalWidth > 0)))
      && [...document.querySelectorAll('button')].some(b => b.innerText.includes('Download report'));
}
"""


def launch_chromium(playwright):
    """Debian's chromium, headless, with no background traffic (never a browser download of Playwright's own)."""
    return playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"])


def first_contact(browser, env: dict[str, str] | None = None) -> dict[str, float]:
    """One fresh server started like `make demo` (extra environment `env`), one first visit: seconds to the landing
    page fully drawn after the server answered its health check and after its spawn, and the images shown."""
    import sys

    sys.path.insert(0, str(PROJECT_ROOT))
    from tests.browser.server import DashboardServer

    server = DashboardServer(log_path=Path(tempfile.gettempdir()) / f"bench-first-contact-{os.getpid()}.log", env=env or {})
    spawned = time.perf_counter()
    server.start()
    serving = time.perf_counter()
    cpu_before = _cpu_seconds(server.process.pid)
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(server.url, wait_until="domcontentloaded")
        page.wait_for_function(FULLY_DRAWN_JS, timeout=300_000, polling="raf")
        drawn = time.perf_counter()
        cpu_after = _cpu_seconds(server.process.pid)
        images = page.evaluate("() => document.querySelectorAll('[data-testid=\"stImage\"] img').length")
        page.close()
    finally:
        server.stop()
    return {"after_first_request_s": drawn - serving, "after_spawn_s": drawn - spawned, "images": images,
            "server_cpu_first_visit_s": cpu_after - cpu_before}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc): the server's own work, whatever the machine's load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    """Alternate warm-up on / off BENCH_REPEATS times; print the medians and their ratio; write the JSON."""
    from playwright.sync_api import sync_playwright

    repeats = int(os.environ.get("BENCH_REPEATS", "3"))
    runs: dict[str, list[dict]] = {"warm_up": [], "no_warm_up": []}
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            for _ in range(repeats):
                for variant in ("no_warm_up", "warm_up"):
                    env = {} if variant == "warm_up" else {"PNEUMONIA_NO_WARMUP": "1"}
                    runs[variant].append(first_contact(browser, env))
                    print(variant, {k: round(v, 3) for k, v in runs[variant][-1].items()}, flush=True)
        finally:
            browser.close()
    results: dict[str, object] = {"repeats": repeats, "goal_after_first_request_s": 3.0}
    for variant, rows in runs.items():
        for key in ("after_first_request_s", "after_spawn_s", "server_cpu_first_visit_s"):
            results[f"{variant}_{key}_median"] = round(statistics.median(r[key] for r in rows), 3)
        results[f"{variant}_images"] = min(r["images"] for r in rows)
    results["first_request_no_warm_up_over_warm_up"] = round(
        results["no_warm_up_after_first_request_s_median"] / results["warm_up_after_first_request_s_median"], 2)
    results["first_visit_cpu_no_warm_up_over_warm_up"] = round(
        results["no_warm_up_server_cpu_first_visit_s_median"] / results["warm_up_server_cpu_first_visit_s_median"], 2)
    results["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    print(results)
    write_results("first_contact", results)


if __name__ == "__main__":
    main()
