"""Threshold explorer speed: the vectorised sweep vs scikit-learn, and the server-side slider rerun.

1. All threshold metrics for 100k scores at a new threshold: `ThresholdSweep.at` (built once) against
   `sklearn.metrics.precision_recall_fscore_support` (and a plain NumPy count) on the same data, side by side.
2. Bootstrap CIs: `summarize_with_ci` (vectorised statistic inside scipy.stats.bootstrap) against a loop of
   scikit-learn calls per resample.
3. Server-side time from a slider change to the finished rerun of the threshold page, via AppTest.
   AppTest reruns the whole page script (it does not scope a rerun to the fragment), so this is an upper
   bound of the fragment rerun; bench_threshold_browser.py measures the real fragment round trip.

Run: .venv/bin/python -m bench threshold
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.results_io import write_results
from core import config
from core.evaluation import metrics
from core.models import registry

N_SCORES = 100_000
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _median_seconds(func, thresholds: np.ndarray, repeats: int) -> float:
    """Median wall time of func(t) over `repeats` thresholds cycled from `thresholds`."""
    times = []
    for i in range(repeats):
        t = float(thresholds[i % len(thresholds)])
        start = time.perf_counter()
        func(t)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_sweep() -> dict:
    """Sweep lookup vs scikit-learn on 100k scores (random, with ties from 4-decimal rounding)."""
    rng = np.random.default_rng(0)
    y = (rng.random(N_SCORES) < 0.6).astype(np.int8)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0.0, 1.0).round(4)
    thresholds = rng.random(500)
    from sklearn.metrics import precision_recall_fscore_support

    start = time.perf_counter()
    sweep = metrics.ThresholdSweep.from_scores(y, s)
    build = time.perf_counter() - start

    def with_sklearn(t: float) -> None:
        precision_recall_fscore_support(y, s >= t, average="binary", zero_division=0.0)

    def with_numpy(t: float) -> None:
        metrics.metrics_at_threshold(y, s, t)

    # Same answer first (the comparison is only meaningful if both compute the same thing).
    p, r, f, _ = precision_recall_fscore_support(y, s >= 0.5, average="binary", zero_division=0.0)
    at = sweep.at(0.5)
    assert (at["precision"], at["recall"], at["f1"]) == (p, r, f) or np.allclose([at["precision"], at["recall"], at["f1"]], [p, r, f])

    sweep_s = _median_seconds(sweep.at, thresholds, 5000)
    sklearn_s = _median_seconds(with_sklearn, thresholds, 60)
    numpy_s = _median_seconds(with_numpy, thresholds, 200)
    table_times = []
    for _ in range(5):
        start = time.perf_counter()
        table = sweep.table()
        table_times.append(time.perf_counter() - start)
    table_s = statistics.median(table_times)
    return {
        "n_scores": N_SCORES,
        "sweep_build_ms": build * 1e3,
        "sweep_at_median_us": sweep_s * 1e6,
        "sklearn_prfs_median_ms": sklearn_s * 1e3,
        "numpy_metrics_at_threshold_median_ms": numpy_s * 1e3,
        "speedup_vs_sklearn": sklearn_s / sweep_s,
        "speedup_vs_numpy_recount": numpy_s / sweep_s,
        "all_distinct_thresholds_table_ms": table_s * 1e3,
        "distinct_thresholds": int(len(table) - 1),
    }


def bench_bootstrap(n: int = 1500, n_resamples: int = 1000, naive_resamples: int = 100) -> dict:
    """summarize_with_ci (vectorised, scipy.stats.bootstrap) vs a per-resample scikit-learn loop, per resample."""
    from sklearn import metrics as skm

    rng = np.random.default_rng(1)
    y = (rng.random(n) < 0.6).astype(np.int8)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0.0, 1.0)
    times = []
    for seed in range(3):
        start = time.perf_counter()
        metrics.summarize_with_ci(y, s, 0.5, n_resamples=n_resamples, seed=seed)
        times.append(time.perf_counter() - start)
    vectorised = statistics.median(times)

    neg, pos = s[y == 0], s[y == 1]
    start = time.perf_counter()
    for _ in range(naive_resamples):  # the same stratified resampling, one scikit-learn call per metric
        yb = np.r_[np.zeros(len(neg)), np.ones(len(pos))]
        sb = np.r_[rng.choice(neg, len(neg)), rng.choice(pos, len(pos))]
        pred = sb >= 0.5
        skm.precision_recall_fscore_support(yb, pred, average="binary", zero_division=0.0)
        skm.confusion_matrix(yb, pred)
        skm.roc_auc_score(yb, sb)
        skm.average_precision_score(yb, sb)
        skm.brier_score_loss(yb, sb)
    naive = (time.perf_counter() - start) / naive_resamples * n_resamples
    return {
        "bootstrap_n_scores": n,
        "bootstrap_resamples": n_resamples,
        "summarize_with_ci_s": vectorised,
        "sklearn_loop_s_extrapolated": naive,
        "bootstrap_speedup": naive / vectorised,
    }


def _models_for_apptest() -> tuple[str, str]:
    """The real models folder when it holds a usable model, else a fixture folder (timing only, never a metric)."""
    if any(e.available for e in registry.list_models()):
        return str(config.models_dir()), "real models/"
    from tests.models.test_registry import write_model_folder

    root = Path(tempfile.mkdtemp(prefix="bench-threshold-")) / "models"
    write_model_folder(root, "fixture", n_val=300, n_test=624)
    return str(root), "fixture folder (synthetic scores; used for timing only)"


def bench_apptest(repeats: int = 25) -> dict:
    """Median server-side seconds from a slider change to the finished page rerun (AppTest, full script)."""
    from streamlit.testing.v1 import AppTest

    models_dir, source = _models_for_apptest()
    previous = os.environ.get("PNEUMONIA_MODELS")
    os.environ["PNEUMONIA_MODELS"] = models_dir
    try:
        at = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app.py"), default_timeout=120)
        at.switch_page("pages/4_Threshold_explorer.py")
        at.run()
        if at.exception:
            raise RuntimeError(f"threshold page failed: {at.exception}")
        values = np.linspace(0.05, 0.95, repeats)
        times = []
        for value in values:
            at.session_state["threshold"] = float(round(value, 3))  # what a release of the live widget stores
            start = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - start)
    finally:
        if previous is None:
            os.environ.pop("PNEUMONIA_MODELS", None)
        else:
            os.environ["PNEUMONIA_MODELS"] = previous
    return {
        "apptest_models": source,
        "apptest_rerun_median_ms": statistics.median(times) * 1e3,
        "apptest_rerun_p90_ms": float(np.percentile(times, 90) * 1e3),
        "apptest_reruns": repeats,
    }


def main() -> None:
    """Measure, print the ratios and write bench/results/threshold.json."""
    results = bench_sweep()
    print(
        f"100k scores, new threshold: sweep.at {results['sweep_at_median_us']:.1f} µs | "
        f"sklearn precision_recall_fscore_support {results['sklearn_prfs_median_ms']:.2f} ms "
        f"({results['speedup_vs_sklearn']:.0f}x) | NumPy recount {results['numpy_metrics_at_threshold_median_ms']:.2f} ms "
        f"({results['speedup_vs_numpy_recount']:.0f}x) | sweep built once in {results['sweep_build_ms']:.1f} ms; "
        f"every metric at all {results['distinct_thresholds']} distinct thresholds in {results['all_distinct_thresholds_table_ms']:.1f} ms"
    )
    results.update(bench_bootstrap())
    print(
        f"Bootstrap CIs of 9 metrics, {results['bootstrap_resamples']} resamples x {results['bootstrap_n_scores']} scores: "
        f"summarize_with_ci {results['summarize_with_ci_s']:.2f} s (median of 3) | per-resample scikit-learn loop "
        f"{results['sklearn_loop_s_extrapolated']:.1f} s (timed on 100 resamples) ({results['bootstrap_speedup']:.0f}x)"
    )
    results.update(bench_apptest())
    results["load_average_1min_after"] = os.getloadavg()[0]  # the machine is shared: context for the times
    print(
        f"Slider change -> finished page rerun (AppTest, {results['apptest_models']}): median "
        f"{results['apptest_rerun_median_ms']:.0f} ms, p90 {results['apptest_rerun_p90_ms']:.0f} ms"
    )
    path = write_results("threshold", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
