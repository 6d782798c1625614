"""Pieces of the Model comparison page: cached reads of stored predictions, the metrics table, the curve figures."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import config
from core.evaluation import ablation, compare, metrics, operating_points, references
from core.models import registry
from core.report import recommended_label

SPLIT_NAMES = {"test": "TEST", "val": "VALIDATION"}
METRIC_LABELS = {  # the ones a reader compares first come first, so they fit at 1440 px without scrolling
    "roc_auc": "ROC AUC",
    "recall": "Sensitivity",
    "specificity": "Specificity",
    "f1": "F1",
    "accuracy": "Accuracy",
    "precision": "PPV (precision)",
    "brier": "Brier (lower is better)",
}
BEST_STYLE = "font-weight: bold; background-color: rgba(33, 150, 83, 0.22)"
PUBLISHED_STYLE = "color: #8a8a8a; font-style: italic"


@st.cache_data(show_spinner="Bootstrapping 95% confidence intervals…")
def summary_row(_entry: registry.ModelEntry, path: str, stamp: float, split: str) -> dict:
    """One table row with bootstrap CIs (registry.model_summary), cached per model file version and split."""
    return registry.model_summary(_entry, split)


@st.cache_data(show_spinner=False)
def curves(path: str, stamp: float, split: str, threshold: float) -> dict:
    """ROC, PR, calibration and decision curves of one model on one split, and its operating point there."""
    frame = registry.load_predictions(path, split=split)
    y, s = frame["label"], frame["score"]
    return {
        "roc": metrics.roc_curve_frame(y, s),
        "pr": metrics.pr_curve_frame(y, s),
        "calibration": metrics.calibration_frame(y, s, n_bins=10),
        "decision": metrics.decision_curve(y, s),
        "point": metrics.ThresholdSweep.from_scores(y, s).at(threshold),
        "brier": metrics.brier_score(y, s),
        "auc": metrics.roc_auc(y, s),
        "ap": metrics.pr_auc(y, s),
    }


@st.cache_data(show_spinner="Comparing the two models film by film (DeLong, paired bootstrap)…")
def paired_comparison(path_a: str, stamp_a: float, threshold_a: float, path_b: str, stamp_b: float, threshold_b: float,
                      split: str) -> compare.ModelComparison:
    """DeLong + paired bootstrap of two models on the films both were scored on (raises ValueError if none)."""
    return compare.compare_models(registry.load_predictions(path_a, split=split),
                                  registry.load_predictions(path_b, split=split), threshold_a, threshold_b)


@st.cache_data(show_spinner=False)
def operating_points_table(path: str, stamp: float) -> pd.DataFrame:
    """The operating-point study written by python -m core.evaluation.operating_points --json (ValueError when unreadable)."""
    return operating_points.read_json(path)


@st.cache_data(show_spinner=False)
def ablation_table(path: str, stamp: float) -> pd.DataFrame:
    """The ablation table written by python -m core.evaluation.ablation --json (raises ValueError when unreadable)."""
    return ablation.read_json(path)


@st.cache_data(show_spinner=False, ttl=60)
def display_names() -> dict[str, str]:
    """Model and recipe names -> the names a person reads: every model folder's and every experiment card's display_name."""
    import json

    names = {}
    for card in sorted(ablation.ablation_path().parent.glob("experiments/*/card.json")):
        try:
            names[card.parent.name] = json.loads(card.read_text(encoding="utf-8")).get("display_name") or card.parent.name
        except (OSError, ValueError):
            continue
    names.update({entry.name: entry.display_name for entry in registry.list_models(config.models_dir())})
    return names


def readable(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """`frame` with the internal model names of `column` replaced by display names."""
    names = display_names()
    return frame.assign(**{column: frame[column].map(lambda name: names.get(name, name))})


LEGEND_CHARACTERS = 62
"""Legend names are wrapped at this many characters: a horizontal plotly legend does not wrap, it cuts off."""


def legend_name(name: str, suffix: str = "", width: int = LEGEND_CHARACTERS) -> str:
    """`name` wrapped onto lines of at most `width` characters for a plotly legend (joined by <br>), then `suffix`
    (e.g. ' (AUC 0.956)') kept whole on the last line."""
    import textwrap

    return "<br>".join(textwrap.wrap(name, max(20, width - len(suffix)))) + suffix


def overlay(title: str, x_title: str, y_title: str, *, entries: int = 4) -> go.Figure:
    """An empty figure whose legend sits below the plot, with room for `entries` legend lines (nothing cut off)."""
    legend_height = 22 * entries
    fig = go.Figure()
    fig.update_layout(
        title=title, xaxis_title=x_title, yaxis_title=y_title, height=400 + legend_height,
        margin=dict(l=10, r=10, t=50, b=60 + legend_height),
        legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0, font=dict(size=11)),
    )
    return fig


def duration(seconds: float | None) -> str:
    """'1 h 05 min' or '3 min 20 s' (or 'not recorded')."""
    if seconds is None or pd.isna(seconds):
        return "not recorded"
    minutes, secs = divmod(int(round(float(seconds))), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def metrics_display(table: pd.DataFrame, split: str, recommended: str | None) -> tuple[pd.DataFrame, dict, int]:
    """(display frame, best rows per metric label, how many rows are ours) of registry.model_summary rows.

    Our models first (display names, the recommended one marked), published results after them on TEST, greyed.
    """
    split_name = SPLIT_NAMES[split]
    best = registry.best_models(table)
    display = pd.DataFrame({"Model": [recommended_label(d) if m == recommended else d
                                      for m, d in zip(table["model"], table["display_name"])]})
    for key, label in METRIC_LABELS.items():
        display[label] = [metrics.format_ci({"value": row[key], "ci_low": row[f"{key}_ci_low"], "ci_high": row[f"{key}_ci_high"]})
                          for _, row in table.iterrows()]
    display["Threshold (rule, on val)"] = [f"{t:.3f} ({r})" for t, r in zip(table["threshold"], table["threshold_rule"])]
    display["Architecture"] = table["architecture"]
    display["Input"] = table["input"]
    display["Weights"] = table["weights_source"]
    display["Parameters"] = table["parameters"]
    display["Training time"] = [duration(s) for s in table["training_seconds"]]
    display[f"{split_name} images"] = table["images"]
    best_rows = {METRIC_LABELS[key]: table["model"].isin(models).tolist() for key, models in best.items()}
    our_rows = len(display)
    published = references.published_frame(tuple(METRIC_LABELS)) if split == "test" else None
    if published is not None:  # published results are test-set numbers, never ranked
        display["Evaluated on"] = [f"{n} {split_name} films, recomputed here" for n in table["images"]]
        display[f"{split_name} images"] = display[f"{split_name} images"].astype("Int64")
        display["Parameters"] = display["Parameters"].astype("Int64")
        reference_rows = pd.DataFrame("—", index=range(len(published)), columns=display.columns)
        reference_rows[["Parameters", f"{split_name} images"]] = pd.NA
        reference_rows["Model"] = published["label"]
        reference_rows["Evaluated on"] = published["evaluated_on"]
        for key, label in METRIC_LABELS.items():
            reference_rows[label] = ["—" if pd.isna(value) else f"{value:.3f}" for value in published[key]]
        display = pd.concat([display, reference_rows], ignore_index=True)
    return display, best_rows, our_rows


def metrics_table(display: pd.DataFrame, best_rows: dict, our_rows: int) -> None:
    """The table: best per metric highlighted, published rows greyed, the model column pinned and narrow enough for
    the metrics to fit at 1440 px."""
    def highlight(column: pd.Series) -> list[str]:
        marks = best_rows.get(column.name, [False] * our_rows) + [False] * (len(column) - our_rows)
        return [BEST_STYLE if mark else "" for mark in marks]

    def grey(row: pd.Series) -> list[str]:
        return [PUBLISHED_STYLE if row.name >= our_rows else ""] * len(row)

    st.dataframe(
        display.style.apply(highlight, subset=list(METRIC_LABELS.values())).apply(grey, axis=1),
        hide_index=True, width="stretch", height=(len(display) + 1) * 35 + 3,  # every row visible
        column_config={"Model": st.column_config.TextColumn(pinned=True, width=260),
                       **{label: st.column_config.TextColumn(width=135) for label in METRIC_LABELS.values()},
                       "Parameters": st.column_config.NumberColumn(format="localized")},
        key="comparison_table",
    )


def curve_figures(entries: list[registry.ModelEntry], split: str) -> tuple[go.Figure, go.Figure, go.Figure, go.Figure]:
    """ROC, precision-recall, calibration and decision curves of `entries` on `split`, each model's operating point x."""
    split_name = SPLIT_NAMES[split]
    n = sum(legend_name(e.display_name, " (Brier 0.000)").count("<br>") + 1 for e in entries) + 2  # legend lines
    roc = overlay(f"ROC curve ({split_name})", "1 − specificity (false-positive rate)", "Sensitivity (recall)", entries=n)
    pr = overlay(f"Precision–recall curve ({split_name})", "Recall (sensitivity)", "Precision (PPV)", entries=n)
    calibration = overlay(f"Calibration ({split_name})", "Mean score (binned)", "Observed fraction with pneumonia", entries=n)
    decision = overlay(f"Decision curve ({split_name})", "Threshold", "Net benefit", entries=n)
    roc.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="chance"))
    calibration.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="perfect"))
    for index, entry in enumerate(entries):
        color = f"hsl({(index * 67) % 360}, 65%, 45%)"
        c = curves(str(entry.path), entry.stamp, split, entry.threshold)
        point = c["point"]
        roc.add_trace(go.Scatter(x=c["roc"]["fpr"], y=c["roc"]["tpr"], mode="lines", line=dict(color=color),
                                 name=legend_name(entry.display_name, f" (AUC {c['auc']:.3f})")))
        roc.add_trace(go.Scatter(x=[1 - point["specificity"]], y=[point["recall"]], mode="markers", showlegend=False,
                                 marker=dict(color=color, size=12, symbol="x"),
                                 hovertext=f"{entry.display_name}: threshold {entry.threshold:.3f}"))
        pr.add_trace(go.Scatter(x=c["pr"]["recall"], y=c["pr"]["precision"], mode="lines", line=dict(color=color, shape="hv"),
                                name=legend_name(entry.display_name, f" (AP {c['ap']:.3f})")))
        pr.add_trace(go.Scatter(x=[point["recall"]], y=[point["precision"]], mode="markers", showlegend=False,
                                marker=dict(color=color, size=12, symbol="x"),
                                hovertext=f"{entry.display_name}: threshold {entry.threshold:.3f}"))
        calibration.add_trace(go.Scatter(x=c["calibration"]["mean_predicted"], y=c["calibration"]["fraction_positive"],
                                         mode="lines+markers", line=dict(color=color),
                                         name=legend_name(entry.display_name, f" (Brier {c['brier']:.3f})")))
        decision.add_trace(go.Scatter(x=c["decision"]["threshold"], y=c["decision"]["model"], mode="lines",
                                      line=dict(color=color), name=legend_name(entry.display_name)))
    if entries:
        reference = curves(str(entries[0].path), entries[0].stamp, split, entries[0].threshold)
        decision.add_trace(go.Scatter(x=reference["decision"]["threshold"], y=reference["decision"]["treat_all"],
                                      mode="lines", line=dict(dash="dash", color="grey"), name="treat all"))
        decision.add_trace(go.Scatter(x=reference["decision"]["threshold"], y=reference["decision"]["treat_none"],
                                      mode="lines", line=dict(dash="dot", color="black"), name="treat none"))
        decision.update_yaxes(range=[-0.1, max(0.05, float(reference["decision"]["treat_all"].max()) + 0.05)])
    return roc, pr, calibration, decision


def history_figures(history: pd.DataFrame) -> list[tuple[str, go.Figure]]:
    """(metric, figure) of the loss and ROC AUC per epoch, train vs validation, stage boundaries marked."""
    history = history.reset_index(drop=True)
    history["step"] = range(1, len(history) + 1)
    figures = []
    for metric_name, title in (("loss", "Loss"), ("auc", "ROC AUC")):
        columns = [c for c in (metric_name, f"val_{metric_name}") if c in history.columns]
        if not columns:
            continue
        fig = overlay(f"{title} per epoch (train vs validation)", "Epoch (all stages)", title, entries=2)
        for column in columns:
            fig.add_trace(go.Scatter(x=history["step"], y=history[column], mode="lines+markers",
                                     name="validation" if column.startswith("val_") else "train"))
        if "stage" in history.columns:
            starts = history.groupby("stage", sort=False)["step"].min()
            for stage, step in starts.items():
                fig.add_vline(x=step - 0.5, line_dash="dot", annotation_text=str(stage), annotation_position="top left")
        figures.append((metric_name, fig))
    return figures
