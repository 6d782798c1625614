"""Data and plotly figures that the Overview page and the report both draw."""
from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from core import config
from core.evaluation import metrics
from core.models import registry
from core.report._texts import _COLOURS, SPLIT_NAMES


def dataset_counts(data_root: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(images, patients) per split x class with a total column (rows train/val/test), and the distinct patient ids.

    The same functions as the Dataset page: core.data.split_counts and core.data.summary.patient_counts.
    """
    images, patients, n_patients = _dataset_counts(str(Path(data_root).resolve()), _folders_stamp(data_root))
    return images.copy(), patients.copy(), n_patients


def _folders_stamp(root: str | Path) -> tuple[tuple[str, int], ...]:
    """(folder, mtime in ns) of the dataset root and every folder below it: changes when a file is added, removed or
    renamed, which is all the counts depend on (a film rewritten in place keeps its name, label and patient)."""
    import os

    return tuple((folder, os.stat(folder).st_mtime_ns) for folder, _, _ in sorted(os.walk(root)))


@functools.lru_cache(maxsize=8)
def _dataset_counts(data_root: str, stamp: tuple) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """dataset_counts for one state of the dataset's folders, kept per process."""
    from core import data
    from core.data import summary as dataset_summary

    index = data.load_index(data_root)
    return data.split_counts(index), dataset_summary.patient_counts(index), int(index["patient"].nunique())


def comparison_rows(models_dir: str | Path, *, split: str = "test", n_resamples: int = config.BOOTSTRAP_RESAMPLES) -> pd.DataFrame:
    """registry.model_summary of every available model on `split` (the Model comparison page's table), one row each."""
    rows = [registry.model_summary(e, split, n_resamples=n_resamples) for e in registry.list_models(models_dir) if e.available]
    return pd.DataFrame(rows)


def curve_frames(models_dir: str | Path, *, split: str = "test") -> dict[str, dict[str, pd.DataFrame | dict]]:
    """{model: {"roc", "pr", "calibration" frames, "point" (metrics at the card threshold)}} on `split`."""
    frames = {}
    for entry in registry.list_models(models_dir):
        if not entry.available:
            continue
        rows = registry.load_predictions(entry, split=split)
        y, s = rows["label"], rows["score"]
        frames[entry.name] = {
            "display_name": entry.display_name,
            "roc": metrics.roc_curve_frame(y, s),
            "pr": metrics.pr_curve_frame(y, s),
            "calibration": metrics.calibration_frame(y, s, n_bins=10),
            "point": metrics.ThresholdSweep.from_scores(y, s).at(entry.threshold),
            "auc": metrics.roc_auc(y, s),
            "ap": metrics.pr_auc(y, s),
            "brier": metrics.brier_score(y, s),
        }
    return frames


# --------------------------------------------------------------------------------------------------
# Figures (plotly; the page and the report draw the same ones)
# --------------------------------------------------------------------------------------------------
def dataset_figure(images: pd.DataFrame, patients: pd.DataFrame | None = None):  # -> plotly Figure
    """Stacked bars: images per split and class (hover: patients), the dataset 'in one picture'."""
    import plotly.graph_objects as go

    splits = [s for s in ("train", "val", "test") if s in images.index]
    labels = [f"{SPLIT_NAMES[s].title()}" for s in splits]
    fig = go.Figure()
    for class_name, colour in zip(config.CLASS_NAMES, ("#1f6feb", "#d1242f")):
        counts = [int(images.at[s, class_name]) for s in splits]
        hover = [
            f"{class_name}: {c} X-rays" + (f" from {int(patients.at[s, class_name])} children" if patients is not None else "")
            for s, c in zip(splits, counts)
        ]
        fig.add_trace(go.Bar(x=labels, y=counts, name=class_name.title(), marker_color=colour, text=counts,
                             textposition="inside", hovertext=hover, hoverinfo="text"))
    fig.update_layout(barmode="stack", title="X-rays per split (validation carved from train, grouped by child)",
                      yaxis_title="X-rays", height=380, margin=dict(l=10, r=10, t=50, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"))
    return fig


def _legend_name(name: str, suffix: str = "", width: int = 62) -> str:
    """`name` wrapped for a plotly legend (a horizontal legend does not wrap, it cuts off), `suffix` whole at the end."""
    import textwrap

    return "<br>".join(textwrap.wrap(name, max(20, width - len(suffix)))) + suffix


def _line_figure(title: str, x_title: str, y_title: str, entries: int = 4):
    """An empty curve figure with room below the plot for the axis title and `entries` legend lines (nothing cut off)."""
    import plotly.graph_objects as go

    legend = 22 * entries
    fig = go.Figure()
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, height=420 + legend,
                      margin=dict(l=10, r=10, t=50, b=60 + legend),
                      legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0, font=dict(size=11)),
                      xaxis=dict(range=[0, 1], automargin=True), yaxis=dict(range=[0, 1.02], automargin=True))
    return fig


def curve_figures(frames: dict, *, split: str = "test", highlight: str | None = None) -> dict:
    """{"roc", "pr", "calibration"} plotly figures overlaying every model of `frames` (curve_frames); × = operating point."""
    import plotly.graph_objects as go

    name = SPLIT_NAMES.get(split, split.upper())
    n = sum(_legend_name(f"{c['display_name']} (recommended)", ", Brier 0.000").count("<br>") + 1 for c in frames.values()) + 1
    roc = _line_figure(f"ROC curve ({name} split)", "1 − specificity (false-alarm rate)", "Sensitivity (share flagged)", n)
    pr = _line_figure(f"Precision–recall curve ({name} split)", "Recall (sensitivity)", "Precision (PPV)", n)
    cal = _line_figure(f"Calibration ({name} split)", "Mean score (binned)", "Observed share with pneumonia", n)
    roc.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="chance"))
    cal.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="perfect calibration"))
    for i, (model, c) in enumerate(frames.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        width = 4 if model == highlight else 2
        label = c["display_name"] + (" (recommended)" if model == highlight else "")
        point = c["point"]
        roc.add_trace(go.Scatter(x=c["roc"]["fpr"], y=c["roc"]["tpr"], mode="lines", line=dict(color=colour, width=width),
                                 name=_legend_name(label, f", AUC {c['auc']:.3f}")))
        roc.add_trace(go.Scatter(x=[1 - point["specificity"]], y=[point["recall"]], mode="markers", showlegend=False,
                                 marker=dict(color=colour, size=12, symbol="x"),
                                 hovertext=f"{label}: threshold {point['threshold']:.3f}", hoverinfo="text"))
        pr.add_trace(go.Scatter(x=c["pr"]["recall"], y=c["pr"]["precision"], mode="lines", line=dict(color=colour, width=width, shape="hv"),
                                name=_legend_name(label, f", AP {c['ap']:.3f}")))
        pr.add_trace(go.Scatter(x=[point["recall"]], y=[point["precision"]], mode="markers", showlegend=False,
                                marker=dict(color=colour, size=12, symbol="x"),
                                hovertext=f"{label}: threshold {point['threshold']:.3f}", hoverinfo="text"))
        cal.add_trace(go.Scatter(x=c["calibration"]["mean_predicted"], y=c["calibration"]["fraction_positive"], mode="lines+markers",
                                 line=dict(color=colour, width=width), name=_legend_name(label, f", Brier {c['brier']:.3f}")))
    return {"roc": roc, "pr": pr, "calibration": cal}
