"""Time to validate 500 labelled site films per model on this CPU (the Your site page and python -m core.site).

    python -m bench site        (or: python -m bench.bench_site)

The films are 500 real films of the shipped set's official test split (all 234 NORMAL and the first 266
PNEUMONIA, sorted names), packed into an in-memory ZIP exactly like an upload. For every available model:
reading the ZIP, decoding and scoring every film, the out-of-distribution guard on every film (one extra model
pass per film), and the statistics (patient-bootstrap CIs of 9 metrics at the card threshold and on the
evaluation half, curves, drift). Ratios are measured side by side in this one run: guard / scoring, and
every model in one decoding pass vs one pass per model.
"""

from __future__ import annotations

import io
import time
import zipfile

from bench.results_io import write_results
from core import config
from core.models import registry

FILMS = 500


def _site_zip() -> bytes:
    """FILMS real test films (every NORMAL first, then PNEUMONIA) in a Kaggle-layout ZIP held in memory."""
    root = config.data_root() / "test"
    paths = sorted((root / "NORMAL").glob("*.jpeg")) + sorted((root / "PNEUMONIA").glob("*.jpeg"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in paths[:FILMS]:
            archive.write(path, f"site/{path.parent.name}/{path.name}")
    return buffer.getvalue()


def main() -> dict:
    """Measure, print and save the results."""
    config.quiet_tensorflow()
    from core import guard as ood, predict
    from core import site as site_check
    from core.imaging import decode_xray

    content = _site_zip()
    start = time.perf_counter()
    site = site_check.read_site(content, name="bench")
    read_seconds = time.perf_counter() - start
    entries = [e for e in registry.list_models() if e.available and not e.card.get("adapted")]
    results: dict = {"films": len(site.films), "zip_mb": round(len(content) / 1e6, 2), "read_zip_s": round(read_seconds, 3),
                     "models": {}}
    print(f"{len(site.films)} films, ZIP {len(content) / 1e6:.1f} MB read in {read_seconds:.2f} s")
    scorers = {}
    for entry in entries:
        scorer = predict.load_scorer(entry.path)
        scorer.predict_batch(scorer.prepare(decode_xray(site.films[0].read()))[None])  # warm: trace the function once
        scorers[entry.name] = scorer
        start = time.perf_counter()
        scores = site_check.score_site(site, [scorer], names=[entry.name])
        score_s = time.perf_counter() - start
        guard = ood.load_calibration(entry.path)
        guard_s = None
        if guard is not None:
            start = time.perf_counter()
            site_check.score_site(site, [scorer], names=[entry.name], guards={entry.name: guard})
            guard_s = time.perf_counter() - start - score_s
        start = time.perf_counter()
        site_check.validate_model(scores, entry)
        stats_s = time.perf_counter() - start
        total = score_s + (guard_s or 0.0) + stats_s
        results["models"][entry.name] = {"decode_and_score_s": round(score_s, 2), "ood_guard_s": None if guard_s is None else round(guard_s, 2),
                                         "statistics_s": round(stats_s, 2), "total_s": round(total, 2),
                                         "films_per_s": round(len(site.films) / total, 1),
                                         "guard_over_scoring": None if guard_s is None else round(guard_s / score_s, 1)}
        print(f"{entry.name:24s} decode+score {score_s:6.1f} s  guard {guard_s if guard_s is not None else float('nan'):6.1f} s  "
              f"statistics {stats_s:5.1f} s  total {total:6.1f} s ({len(site.films) / total:.0f} films/s)")
    if len(scorers) > 1:
        start = time.perf_counter()
        site_check.score_site(site, list(scorers.values()), names=list(scorers))
        together = time.perf_counter() - start
        separate = sum(m["decode_and_score_s"] for m in results["models"].values())
        results["all_models_one_pass_s"] = round(together, 2)
        results["one_pass_per_model_s"] = round(separate, 2)
        print(f"every model, one decoding pass: {together:.1f} s vs {separate:.1f} s one pass per model")
    results["load_average_1min_at_end"] = round(__import__("os").getloadavg()[0], 1)  # >2 on this 2-core machine = contended
    write_results("site", results)
    return results


if __name__ == "__main__":
    main()
