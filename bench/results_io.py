"""Write a benchmark's summary to bench/results/<name>.json (shared by every bench module)."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).parent / "results"


def write_results(name: str, results: dict) -> Path:
    """Save `results` with the machine and time it was measured on; return the file path."""
    RESULTS_DIR.mkdir(exist_ok=True)
    payload = {
        "benchmark": name,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": platform.python_version(), "processor": platform.machine(), "cpus": __import__("os").cpu_count()},
        "results": results,
    }
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=float))
    return path
