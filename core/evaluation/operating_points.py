"""Operating-point rules side by side: which way of fixing the threshold on validation survives the shift to test.

    python -m core.evaluation.operating_points models/*/ [--json docs/operating_points.json] [--markdown]

Every rule fixes a threshold from **validation** data only (the films as given, ``predictions.csv``, or the films plus
their acquisition-perturbed views, ``threshold_views.csv``); the test split is only reported at that threshold. This is
a study of rules (issue 14, item 3), not a way to choose one: the shipped thresholds stay those of the rule fixed in
docs/PREREGISTRATION.md before any test number was seen, and nothing here feeds back into them.

Rules (``RULES``):
- ``spec95-val``: highest sensitivity with specificity >= 0.95 on the validation films as given (the card rule of the
  models shipped before issue 14).
- ``spec95-views``: the same on the validation films plus their perturbed views (the shipped robust models' rule).
- ``youden-views``: the threshold maximising sensitivity + specificity - 1 on the films plus views.
- ``platt-views``: Platt scaling (a logistic regression on the score's logit, Platt 1999) fitted on the films plus
  views; flag when the calibrated probability is >= 0.5 (the Bayes decision for equal costs at the validation
  prevalence).
- ``temperature-views``: temperature scaling (Guo et al. 2017: logit / T, T fitted by log-loss) on the films plus
  views, then flag at calibrated probability >= 0.5. Dividing the logit by T > 0 keeps its sign, so this is the raw
  score's 0.5 whatever T is: temperature scaling recalibrates the probabilities shown, never the 0.5 decision. It
  is listed to make that visible; T is reported.

Sources: J. Platt (1999), Probabilistic outputs for support vector machines; C. Guo et al. (2017), On calibration of
modern neural networks (ICML).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from core import config
from core.evaluation import evaluate as evaluation, metrics
from core.models import registry

logger = logging.getLogger(__name__)

SPECIFICITY_TARGET = 0.95
_EPS = 1e-7


def logit(scores: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of probabilities clipped to [1e-7, 1 - 1e-7]; shape kept."""
    p = np.clip(np.asarray(scores, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def fit_temperature(labels: np.ndarray, scores: np.ndarray) -> float:
    """Temperature T > 0 minimising the log-loss of sigmoid(logit(score) / T) (Guo et al. 2017).

    ``labels`` are 0/1, ``scores`` probabilities (N,). Searched on log T in [-5, 5] (scipy's bounded Brent method).
    Raises ValueError when only one class is present.
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import expit

    y = np.asarray(labels, dtype=np.float64)
    if y.min() == y.max():
        raise ValueError("Temperature scaling needs both classes in the validation data.")
    z = logit(scores)

    def log_loss(log_t: float) -> float:
        p = np.clip(expit(z / math.exp(log_t)), _EPS, 1.0 - _EPS)
        return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))

    result = minimize_scalar(log_loss, bounds=(-5.0, 5.0), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(result.x))


def fit_platt(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Platt scaling (slope a, intercept b): P = sigmoid(a * logit(score) + b), fitted by scikit-learn's unpenalised
    logistic regression on the logit. Raises ValueError when only one class is present."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels, dtype=int)
    if y.min() == y.max():
        raise ValueError("Platt scaling needs both classes in the validation data.")
    model = LogisticRegression(C=np.inf, max_iter=1000).fit(logit(scores).reshape(-1, 1), y)  # C=inf: unpenalised
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def platt_threshold(a: float, b: float) -> float:
    """The raw score at which sigmoid(a * logit(score) + b) = 0.5, i.e. logit(score) = -b / a (a > 0 required)."""
    if a <= 0:
        raise ValueError(f"Platt slope {a:.3g} is not positive: the scores rank the classes the wrong way round.")
    return float(1.0 / (1.0 + math.exp(b / a)))


def _spec95(labels: np.ndarray, scores: np.ndarray) -> float:
    return metrics.choose_threshold(labels, scores, "specificity", target=SPECIFICITY_TARGET)


def _youden(labels: np.ndarray, scores: np.ndarray) -> float:
    return metrics.choose_threshold(labels, scores, "youden")


def _platt(labels: np.ndarray, scores: np.ndarray) -> float:
    return platt_threshold(*fit_platt(labels, scores))


def _temperature(labels: np.ndarray, scores: np.ndarray) -> float:
    return 0.5  # T (fitted in study_model, for the table) changes the probabilities, not where they cross 0.5


RULES: dict[str, tuple[str, Callable[[np.ndarray, np.ndarray], float], str]] = {
    # name -> (validation data it is fitted on: "val" | "views", threshold function, plain description)
    "spec95-val": ("val", _spec95, "sensitivity max. with specificity >= 0.95, validation films as given"),
    "spec95-views": ("views", _spec95, "sensitivity max. with specificity >= 0.95, validation films + perturbed views"),
    "youden-views": ("views", _youden, "Youden's J (sensitivity + specificity - 1) max., films + views"),
    "platt-views": ("views", _platt, "Platt-scaled probability >= 0.5, fitted on films + views"),
    "temperature-views": ("views", _temperature, "temperature-scaled probability >= 0.5, fitted on films + views"),
}


def study_model(model_dir: str | Path, *, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per rule for models/<name>/: the threshold it fixes on validation, and validation and test metrics at it.

    Columns: model, rule, fitted_on, description, threshold, temperature (temperature rule only), val_sensitivity,
    val_specificity, test_accuracy, test_sensitivity, test_specificity (each test metric also ``*_low``/``*_high``:
    95 % bootstrap CI over test films, ``metrics.summarize_with_ci``). Rules needing views are left out when the model
    has no threshold_views.csv. Raises FileNotFoundError without predictions.csv.
    """
    folder = Path(model_dir)
    predictions = pd.read_csv(folder / registry.PREDICTIONS_FILE)
    val = predictions[predictions["split"] == "val"]
    test = predictions[predictions["split"] == "test"]
    views_file = folder / evaluation.THRESHOLD_VIEWS_FILE
    views = pd.read_csv(views_file) if views_file.is_file() else None
    rows = []
    for name, (fitted_on, rule, description) in RULES.items():
        data = val if fitted_on == "val" else views
        if data is None:
            continue
        labels, scores = data["label"].to_numpy(), data["score"].to_numpy()
        threshold = rule(labels, scores)
        val_point = metrics.metrics_at_threshold(val["label"], val["score"], threshold)
        test_ci = metrics.summarize_with_ci(
            test["label"].to_numpy(), test["score"].to_numpy(), threshold, n_resamples=n_resamples, seed=seed
        )
        row = {
            "model": folder.name, "rule": name, "fitted_on": fitted_on, "description": description,
            "threshold": threshold,
            "temperature": fit_temperature(labels, scores) if name == "temperature-views" else math.nan,
            "val_sensitivity": val_point["recall"], "val_specificity": val_point["specificity"],
        }
        for key, metric in (("accuracy", "accuracy"), ("sensitivity", "recall"), ("specificity", "specificity")):
            entry = test_ci[metric]
            row[f"test_{key}"], row[f"test_{key}_low"], row[f"test_{key}_high"] = (
                entry["value"], entry["ci_low"], entry["ci_high"])
        rows.append(row)
    return pd.DataFrame(rows)


def study(model_dirs: Sequence[str | Path], **kwargs) -> pd.DataFrame:
    """:func:`study_model` for every folder holding predictions.csv, concatenated (others are skipped with a log line)."""
    frames = []
    for folder in model_dirs:
        if not (Path(folder) / registry.PREDICTIONS_FILE).is_file():
            logger.info("Skipped %s: no predictions.csv", folder)
            continue
        frames.append(study_model(folder, **kwargs))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


DEFAULT_JSON = config.PROJECT_ROOT / "docs" / "operating_points.json"
"""Where the Model comparison page reads the study (written by ``--json``)."""


STUDY_ENV = "PNEUMONIA_OPERATING_POINTS"


def study_path() -> Path:
    """Where the Model comparison page looks for the study: $PNEUMONIA_OPERATING_POINTS if set, else DEFAULT_JSON."""
    import os

    return Path(os.environ.get(STUDY_ENV, DEFAULT_JSON)).expanduser()


def read_json(path: str | Path = DEFAULT_JSON) -> pd.DataFrame:
    """The table written by ``--json`` (columns of :func:`study_model`); ValueError when the file is not one."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable operating-point study ({exc}); rewrite it with "
                         "python -m core.evaluation.operating_points models/*/ --json.") from exc
    rows = payload.get("rows") if isinstance(payload, dict) else None
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path} holds no rows; rewrite it with python -m core.evaluation.operating_points models/*/ --json.")
    return pd.DataFrame(rows)


def display_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The study for a page: one row per model and rule, test metrics as 'value (low–high)' strings."""
    shown = pd.DataFrame({
        "model": table["model"], "rule (fixed on validation)": table["description"],
        "threshold": table["threshold"].round(3),
        "VALIDATION sensitivity": table["val_sensitivity"].round(3),
        "VALIDATION specificity": table["val_specificity"].round(3),
    })
    for key in ("accuracy", "sensitivity", "specificity"):
        shown[f"TEST {key} (95% CI)"] = [
            f"{v:.3f} ({lo:.3f}–{hi:.3f})" for v, lo, hi in
            zip(table[f"test_{key}"], table[f"test_{key}_low"], table[f"test_{key}_high"])
        ]
    return shown


def markdown(table: pd.DataFrame) -> str:
    """The study as a Markdown table (test metrics with their 95 % CIs)."""
    lines = ["| model | rule | threshold | val sensitivity / specificity | test accuracy | test sensitivity | test specificity |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in table.itertuples():
        def ci(key: str) -> str:
            return (f"{getattr(row, f'test_{key}'):.3f} ({getattr(row, f'test_{key}_low'):.3f}–"
                    f"{getattr(row, f'test_{key}_high'):.3f})")
        extra = f" (T = {row.temperature:.2f})" if not math.isnan(row.temperature) else ""
        lines.append(f"| `{row.model}` | {row.rule}{extra} | {row.threshold:.3f} | {row.val_sensitivity:.3f} / "
                     f"{row.val_specificity:.3f} | {ci('accuracy')} | {ci('sensitivity')} | {ci('specificity')} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: study the rules on each model folder; print Markdown, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model folders (models/<name>/)")
    parser.add_argument("--json", default=None, help="write the table here (records, with the time it was computed)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--resamples", type=int, default=config.BOOTSTRAP_RESAMPLES, help="bootstrap resamples for the CIs")
    args = parser.parse_args(argv)
    table = study(args.models, n_resamples=args.resamples)
    if table.empty:
        print("No model folder with predictions.csv among the arguments.", file=sys.stderr)
        return 2
    if args.json:
        payload = {"rules": {name: description for name, (_, _, description) in RULES.items()},
                   "rows": json.loads(table.to_json(orient="records"))}
        target = Path(args.json)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        partial.replace(target)  # atomic: a reader never sees half a file
    print(markdown(table) if args.markdown else table.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
