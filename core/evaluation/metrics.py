"""Binary-classification metrics over stored scores: threshold sweep, operating points, curves, CIs.

Conventions (the same as scikit-learn's ``roc_curve``):
- ``y_true`` holds 0 (NORMAL) / 1 (PNEUMONIA, the positive class); ``scores`` are probabilities of class 1.
- A case is called positive when ``score >= threshold``.
- A ratio whose denominator is zero (e.g. precision when nothing is called positive) is ``zero_division``
  (0.0 by default, as scikit-learn's default behaviour), never an exception.

Everything here is a pure function (or a small immutable object) over NumPy arrays; nothing plots."""
# The work lives in the private modules below; these are the names to import from here.
from core.evaluation._counts import (  # noqa: F401
    METRIC_KEYS,
    THRESHOLD_RULES,
    Rule,
    _as_arrays,
    reweighted_ppv_npv,
)
from core.evaluation._sweep import (  # noqa: F401
    ThresholdSweep,
    metrics_at_threshold,
)
from core.evaluation._rules import (  # noqa: F401
    choose_threshold,
    operating_points,
)
from core.evaluation._curves import (  # noqa: F401
    roc_curve_frame,
    pr_curve_frame,
    roc_auc,
    pr_auc,
    brier_score,
    confusion_matrix_frame,
    confusion_frame_from_counts,
    score_histogram,
    classification_report_frame,
    calibration_frame,
    decision_curve,
    per_population,
    LIVE_DIGITS,
    operating_point_summary,
    _require_both_classes,
)
from core.evaluation._intervals import (  # noqa: F401
    _batched_statistics,
    summarize_with_ci,
    format_ci,
    summarize_with_group_ci,
)
