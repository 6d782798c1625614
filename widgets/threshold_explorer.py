"""The live threshold explorer widget: a slider whose numbers and figure points move with the pointer, in the browser.

Built with Streamlit's `st.components.v2.component` from the HTML/CSS/JS files next to this module. The browser gets
the sweep (`core.evaluation.metrics.ThresholdSweep.compact()`: distinct scores with cumulative counts, a few kB) and answers
every pointer move itself: sensitivity, specificity, PPV, NPV, F1, accuracy, the confusion matrix, the per-1,000
panel at the chosen prevalence, and the live point on the ROC, PR and histogram panels. On release (pointer up, or
key up after arrows/Home/End/PageUp/PageDown) the value comes back to Python through `on_release`; the server's own
numbers (`core.evaluation.metrics.operating_point_summary`) go back in the next `data` and the widget checks that they agree.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st

from core import config

_HERE = Path(__file__).resolve().parent
STEP = 0.001
"""Threshold resolution of a drag or an arrow key (PageUp/PageDown move 10 steps)."""

_COMPONENT = st.components.v2.component(
    "pneumonia_dashboard.threshold_explorer",
    html=(_HERE / "threshold_explorer.html").read_text(encoding="utf-8"),
    css=(_HERE / "threshold_explorer.css").read_text(encoding="utf-8"),
    js=(_HERE / "threshold_explorer.js").read_text(encoding="utf-8"),
)


def figure_data(roc: pd.DataFrame, pr: pd.DataFrame, histogram: pd.DataFrame) -> dict:
    """The static parts of the three panels as JSON-ready lists (curves from core.evaluation.metrics frames)."""
    names = config.CLASS_NAMES
    return {
        "roc": {"x": roc["fpr"].tolist(), "y": roc["tpr"].tolist()},
        "pr": {"x": pr["recall"].tolist(), "y": pr["precision"].tolist()},
        "histogram": {
            "left": histogram["bin_left"].tolist(),
            "width": float(histogram["bin_right"].iat[0] - histogram["bin_left"].iat[0]),
            "normal": histogram[names[0]].astype(int).tolist(),
            "pneumonia": histogram[names[1]].astype(int).tolist(),
        },
        "class_names": list(names),
    }


def live_threshold(
    *,
    key: str,
    view_id: str,
    sweep: dict,
    figures: dict,
    titles: dict[str, str],
    texts: dict[str, str],
    threshold: float,
    maximum: float,
    revision: int,
    prevalence: float,
    server_numbers: dict[str, str],
    label: str,
    on_release: Callable[[float], None],
) -> None:
    """Mount the widget.

    `sweep` is `ThresholdSweep.compact()`, `figures` is `figure_data(...)`; `view_id` names them (a new id redraws the
    panels). `threshold` is the server's value; the handle moves to it only when `revision` changes (a preset, another
    model), so the echo of a release never pulls the handle back. `prevalence` in (0, 1) is the one the per-1,000 panel
    and the re-weighted PPV/NPV use; `server_numbers` is `core.evaluation.metrics.operating_point_summary` at `threshold`.
    `on_release(value)` runs (as a widget callback, before the rerun) when the user lets go of the handle.
    """

    def _released() -> None:
        value = (st.session_state.get(key) or {}).get("release")
        if value is not None:
            on_release(float(value))

    _COMPONENT(
        key=key,
        data={
            "view_id": view_id, "sweep": sweep, **figures, "titles": titles, "texts": texts,
            "threshold": float(threshold), "max": float(maximum), "step": STEP, "revision": int(revision),
            "prevalence": float(prevalence), "label": label,
            "server": {"value": float(threshold), "numbers": server_numbers},
        },
        on_release_change=_released,
    )


def agreement_numbers(summary: dict[str, str]) -> str:
    """The server's numbers as one sentence (the page prints it under the widget; the browser test reads it)."""
    return (f"sensitivity {summary['recall']} · specificity {summary['specificity']} · PPV {summary['precision']} · "
            f"NPV {summary['npv']} · F1 {summary['f1']} · accuracy {summary['accuracy']}")


__all__ = ["STEP", "agreement_numbers", "figure_data", "live_threshold"]
