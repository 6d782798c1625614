"""Films per second through the archive watcher against a local Orthanc, and where the time goes.

    python -m bench pacs        (or: python -m bench.bench_pacs [--films 40])

A local Orthanc (Debian orthanc + orthanc-dicomweb, loopback) holds FILMS real Kaggle test films (both classes,
sorted names), each wrapped as a DX study of an invented child. `watch_once` with the recommended model at its own
threshold: query (QIDO-RS), retrieve (WADO-RS, in memory), score (decode, guard, model, Grad-CAM for the secondary
capture), build the SR and the secondary capture (highdicom), store them (STOW-RS, then a QIDO-RS check that each
is in the archive), write the trail (SQLite). Then a second pass (nothing new: the restart cost), and the same
archive through the command line (`python -m core.pacs watch --once` in a fresh process: model loading included).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.results_io import write_results
from core import config

FILMS = 40


def main(argv: list[str] | None = None) -> dict:
    """Measure, print and save the results."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_pacs")
    parser.add_argument("--films", type=int, default=FILMS)
    args = parser.parse_args(argv or [])
    config.quiet_tensorflow()
    os.environ.setdefault("PNEUMONIA_SITE_SECRET", "bench-secret")
    from core import trail as audit
    from core.pacs import films
    from core.pacs.client import Archive
    from core.pacs.orthanc import LocalOrthanc
    from core.pacs.scoring import load_model
    from core.pacs.watch import watch_once

    root = config.data_root() / "test"
    paths = (sorted((root / "NORMAL").glob("*.jpeg"))[: args.films // 2]
             + sorted((root / "PNEUMONIA").glob("*.jpeg"))[: args.films - args.films // 2])
    tick = time.perf_counter()
    model = load_model()
    load_s = time.perf_counter() - tick
    with tempfile.TemporaryDirectory() as folder, LocalOrthanc() as orthanc:
        for number, path in enumerate(paths):
            orthanc.upload(films.to_bytes(films.wrap_film(path, patient_id=f"BENCH-{number}", age_years=3)))
        archive = Archive(orthanc.dicomweb_url)
        trail = audit.Trail(Path(folder) / "trail.sqlite")
        tick = time.perf_counter()
        outcomes = watch_once(archive, model, trail)
        first_s = time.perf_counter() - tick
        tick = time.perf_counter()
        again = watch_once(archive, model, trail)
        second_s = time.perf_counter() - tick
        parts: dict[str, float] = defaultdict(float)
        for outcome in outcomes:
            for name, seconds in outcome.seconds.items():
                parts[name] += seconds
        top = {k: v for k, v in parts.items() if not k.startswith("score: ")}
        top["other (study search, bookkeeping)"] = first_s - sum(top.values())
        scored = sum(o.result is not None and o.result.scored for o in outcomes)
        errors = sum(bool(o.error) for o in outcomes)

        cli_folder = Path(folder) / "cli"
        cli_folder.mkdir()
        orthanc_cli = LocalOrthanc()
        with orthanc_cli:
            for number, path in enumerate(paths):
                orthanc_cli.upload(films.to_bytes(films.wrap_film(path, patient_id=f"BENCH-{number}", age_years=3)))
            tick = time.perf_counter()
            run = subprocess.run([sys.executable, "-m", "core.pacs", "--url", orthanc_cli.dicomweb_url, "--audit-db",
                                  str(cli_folder / "trail.sqlite"), "watch", "--once"], cwd=config.PROJECT_ROOT,
                                 capture_output=True, text=True, env={**os.environ})
            cli_s = time.perf_counter() - tick
    results = {
        "films": len(paths), "scored": scored, "errors": errors, "model": model.name,
        "model_load_seconds": round(load_s, 2),
        "watch_once_seconds": round(first_s, 2), "films_per_second": round(len(paths) / first_s, 2),
        "seconds_per_film": {k: round(v / len(paths), 4) for k, v in sorted(top.items(), key=lambda kv: -kv[1])},
        "share_of_time": {k: round(v / first_s, 3) for k, v in sorted(top.items(), key=lambda kv: -kv[1])},
        "score_breakdown_seconds_per_film": {k.removeprefix("score: "): round(v / len(paths), 4)
                                             for k, v in parts.items() if k.startswith("score: ")},
        "second_pass_seconds": round(second_s, 2), "second_pass_skipped": sum(o.skipped for o in again),
        "cli_watch_once_seconds": round(cli_s, 2), "cli_exit_status": run.returncode,
        "load_average": os.getloadavg(),
    }
    for key, value in results.items():
        print(f"{key}: {value}")
    write_results("pacs", results)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
