"""Threshold explorer: drag a threshold and watch every metric, curve point and count move (no TensorFlow)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import config, metrics, registry
from ui import enter_through_app, model_entries

enter_through_app(__file__)

SPLIT_NAMES = {"test": "TEST", "val": "VALIDATION"}
PREVALENCE_PRESETS = {
    "split": None,
    "1%": 0.01,
    "5%": 0.05,
    "10%": 0.10,
    "custom": None,
}
PREVALENCE_LABELS = {
    "1%": "1% — adult screening population (like NIH ChestX-ray14)",
    "5%": "5%",
    "10%": "10%",
    "custom": "Custom…",
}
SLIDER_KEY = "threshold"


# ------------------------------------------------------------------------------ cached data access
@st.cache_data(show_spinner=False)
def split_view(path: str, stamp: float, split: str) -> dict:
    """Everything the fragment needs for one (model, split), computed once: the sweep, curves, histogram."""
    frame = registry.load_predictions(path, split=split)
    y, s = frame["label"], frame["score"]
    return {
        "sweep": metrics.ThresholdSweep.from_scores(y, s),
        "roc": metrics.roc_curve_frame(y, s),
        "pr": metrics.pr_curve_frame(y, s),
        "histogram": metrics.score_histogram(y, s, bins=50),
        "auc": metrics.roc_auc(y, s),
        "ap": metrics.pr_auc(y, s),
    }


@st.cache_data(show_spinner=False)
def validation_presets(path: str, stamp: float) -> tuple[dict[str, float], int]:
    """Operating-point presets chosen on the validation split, and its size."""
    val = registry.load_predictions(path, split="val")
    return metrics.operating_points(val["label"], val["score"], sensitivity_target=0.95, specificity_target=0.90), len(val)


def _set_threshold(value: float) -> None:
    st.session_state[SLIDER_KEY] = float(value)


# ------------------------------------------------------------------------------ page: choose what to look at
st.title("🎚️ Threshold explorer")
st.caption(
    "A model outputs a probability; the threshold turns it into a decision. Lower it and more pneumonia is "
    "caught, at the price of more false alarms. Every number below comes from the model's stored predictions."
)

models_dir = str(config.models_dir())
entries = model_entries()
ready = [e for e in entries if e.available]
for entry in (e for e in entries if not e.available):
    st.caption(f":gray[Unavailable: {entry.name} — {entry.reason}]")
if not ready:
    st.info(f"No usable trained model in `{models_dir}` yet. Train the shipped set with `make models`.")
    st.stop()

names = [e.name for e in ready]
remembered = st.session_state.get("operating_point") or {}
left, right = st.columns([2, 1])
model_name = left.selectbox(
    "Model",
    names,
    index=names.index(remembered["model"]) if remembered.get("model") in names else 0,
    format_func={e.name: e.display_name for e in ready}.get,
    key="explorer_model",
)
split = right.radio(
    "Numbers from the split", ["test", "val"], format_func=SPLIT_NAMES.get, horizontal=True, key="explorer_split"
)
entry = next(e for e in ready if e.name == model_name)
try:
    view = split_view(str(entry.path), entry.stamp, split)
    presets, n_val = validation_presets(str(entry.path), entry.stamp)
except registry.ModelUnavailableError as exc:  # the folder changed since it was listed
    st.error(f"{entry.display_name} cannot be read right now: {exc}")
    st.stop()
sweep: metrics.ThresholdSweep = view["sweep"]
presets = {"Model's own": entry.threshold, **presets}
# A rule can land just above the highest score (nothing called positive); let the slider reach it.
slider_max = max(1.0, *presets.values())
preset_help = {
    "Model's own": f"The model card's operating point: {entry.threshold_rule} (chosen on {entry.threshold_split}).",
    "F1-best": "Highest F1 on validation.",
    "Youden J": "Highest sensitivity + specificity − 1 on validation.",
    "Sensitivity ≥ 95%": "The highest threshold whose validation sensitivity is still at least 95%: "
    "the fewest false alarms while catching 95% of cases.",
    "Specificity ≥ 90%": "The lowest threshold whose validation specificity is still at least 90%: "
    "the most cases caught while clearing 90% of normal X-rays.",
}

# A new model (or a return from another page, which drops widget state) starts at the remembered operating
# point for this model, else at the model's own.
if st.session_state.get("explorer_threshold_for") != model_name or SLIDER_KEY not in st.session_state:
    start = remembered.get("threshold") if remembered.get("model") == model_name else entry.threshold
    st.session_state[SLIDER_KEY] = min(max(float(start), 0.0), slider_max)
    st.session_state["explorer_threshold_for"] = model_name

st.markdown(
    f"Presets are chosen on the **VALIDATION** split ({n_val} images) and applied to the "
    f"**{SPLIT_NAMES[split]}** split ({sweep.n} images: {sweep.n_pos} pneumonia, {sweep.n_neg} normal), "
    "where all numbers below come from."
)


# ------------------------------------------------------------------------------ the live part
# Figures of the live part are built from plain dicts without plotly's per-property validation
# (`_validate=False`): the specs are fixed here, and it keeps each fragment rerun a few times cheaper.
_MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}


def _live_figure(view: dict, at: dict, threshold: float) -> go.Figure:
    """One figure, three panels (one chart to redraw per move): ROC and PR with the current point, score histogram."""
    name = SPLIT_NAMES[split]
    domains = ([0.0, 0.29], [0.355, 0.645], [0.71, 1.0])
    point = {"mode": "markers", "marker": {"size": 13, "color": "crimson"}, "name": "current threshold"}
    hist = view["histogram"]
    centres = ((hist["bin_left"] + hist["bin_right"]) / 2).to_numpy()
    width = float(hist["bin_right"].iat[0] - hist["bin_left"].iat[0])
    data = [
        {"type": "scatter", "x": view["roc"]["fpr"].to_numpy(), "y": view["roc"]["tpr"].to_numpy(), "mode": "lines",
         "name": "ROC", "line": {"color": "#1f6feb"}, "xaxis": "x", "yaxis": "y"},
        {"type": "scatter", "x": [1 - at["specificity"]], "y": [at["recall"]], "xaxis": "x", "yaxis": "y", **point},
        {"type": "scatter", "x": view["pr"]["recall"].to_numpy(), "y": view["pr"]["precision"].to_numpy(),
         "mode": "lines", "line": {"shape": "hv", "color": "#1f6feb"}, "name": "PR", "xaxis": "x2", "yaxis": "y2"},
        {"type": "scatter", "x": [at["recall"]], "y": [at["precision"]], "xaxis": "x2", "yaxis": "y2", **point},
    ] + [
        {"type": "bar", "x": centres, "y": hist[label].to_numpy(), "width": width, "name": label, "opacity": 0.6,
         "marker": {"color": color}, "xaxis": "x3", "yaxis": "y3"}
        for label, color in zip(config.CLASS_NAMES, ("steelblue", "darkorange"))
    ]
    titles = (f"ROC ({name}, AUC {view['auc']:.3f})", f"Precision–recall ({name}, AP {view['ap']:.3f})",
              f"Scores by true class ({name})")
    layout = {
        "height": 360, "barmode": "overlay", "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
        "legend": {"orientation": "h", "x": 0.71, "y": -0.22},
        "annotations": [
            {"text": f"<b>{title}</b>", "x": sum(d) / 2, "y": 1.0, "xref": "paper", "yref": "paper",
             "xanchor": "center", "yanchor": "bottom", "showarrow": False}
            for title, d in zip(titles, domains)
        ] + [{"x": threshold, "y": 0.97, "xref": "x3", "yref": "y3 domain", "yanchor": "top", "xanchor": "left",
              "xshift": 4, "showarrow": False, "font": {"color": "crimson"}, "text": f"threshold {threshold:.3f}"}],
        "shapes": [{"type": "line", "x0": threshold, "x1": threshold, "y0": 0, "y1": 1, "xref": "x3",
                    "yref": "y3 domain", "line": {"color": "crimson", "width": 3}}],
    }
    axes = (("1 − specificity", "Sensitivity"), ("Recall", "Precision"), ("Predicted probability of pneumonia", "Images"))
    for i, (domain, (x_title, y_title)) in enumerate(zip(domains, axes), start=1):
        suffix = "" if i == 1 else str(i)
        layout[f"xaxis{suffix}"] = {"domain": domain, "anchor": f"y{suffix}", "title": {"text": x_title},
                                    "range": [-0.02, 1.02]}
        layout[f"yaxis{suffix}"] = {"anchor": f"x{suffix}", "title": {"text": y_title}}
        if i < 3:
            layout[f"yaxis{suffix}"]["range"] = [-0.02, 1.02]
    layout["showlegend"] = True
    for trace in data:
        trace["showlegend"] = trace["type"] == "bar"
    return go.Figure({"data": data, "layout": layout}, _validate=False)


def _population_panel(at: dict, threshold: float) -> None:
    """Prevalence control, re-weighted PPV/NPV and natural frequencies per 1,000 screened."""
    st.markdown("##### What it means for a screened population")
    own = sweep.prevalence
    choice = st.radio(
        "Prevalence of pneumonia in the population screened",
        list(PREVALENCE_PRESETS),
        format_func=lambda k: f"This split's own ({own:.1%})" if k == "split" else PREVALENCE_LABELS[k],
        horizontal=True,
        key="explorer_prevalence",
    )
    if choice == "custom":
        prevalence = st.number_input("Prevalence (%)", 0.1, 99.9, value=2.0, step=0.1, key="explorer_custom") / 100
    else:
        prevalence = PREVALENCE_PRESETS[choice] or own
    weighted = sweep.at(threshold, prevalence=prevalence)
    freq = metrics.per_population(at["recall"], at["specificity"], prevalence, population=1000)
    who = "children screened" if choice == "split" else "people screened"
    with st.container(border=True):
        st.markdown(
            f"Per **1,000 {who}** at {prevalence:.1%} prevalence: **{freq['caught']:.0f}** cases caught, "
            f"**{freq['missed']:.0f}** missed, **{freq['false_alarms']:.0f}** false alarms "
            f"(of {freq['flagged']:.0f} flagged)."
        )
        a, b = st.columns(2)
        a.metric(f"PPV at {prevalence:.1%} prevalence", f"{weighted['precision']:.3f}",
                 help="Chance that a flagged X-ray really shows pneumonia")
        b.metric(f"NPV at {prevalence:.1%} prevalence", f"{weighted['npv']:.3f}",
                 help="Chance that a cleared X-ray really is normal")
        st.caption(
            f"Sensitivity and specificity measured on the {SPLIT_NAMES[split]} split (paediatric X-rays from one "
            "centre), re-weighted to this prevalence with Bayes' rule. Adults are outside what this model was trained on."
        )


@st.fragment
def explorer() -> None:
    """Preset buttons, the slider, prevalence, then every number and plot at the current threshold."""
    st.markdown("**Start from a preset** (chosen on validation):")
    with st.container(horizontal=True):
        for label, value in presets.items():
            st.button(f"{label} · {value:.3f}", key=f"preset_{label}", on_click=_set_threshold, args=(value,),
                      help=preset_help.get(label, f"{label} on validation (highest such threshold)."))
    threshold = st.slider(
        "Threshold: call PNEUMONIA when the probability is at least…", 0.0, slider_max, step=0.001, format="%.3f",
        key=SLIDER_KEY,
    )
    preset_name = next((label for label, value in presets.items() if value == threshold), None)
    if preset_name == "Model's own":
        source = f"{entry.display_name}'s own operating point: {entry.threshold_rule}, chosen on {entry.threshold_split}"
    elif preset_name:
        source = f"{preset_name}, chosen on the validation split of {entry.display_name}"
    else:
        source = f"set by hand in the threshold explorer while viewing the {SPLIT_NAMES[split]} split"
    st.session_state["operating_point"] = {"model": model_name, "threshold": float(threshold), "source": source}
    st.caption(f"Threshold {threshold:.4f}: {source}. The Prediction page uses it.")

    at = sweep.at(threshold)
    st.markdown(f"##### At this threshold, on the {SPLIT_NAMES[split]} split")
    cols = st.columns(6)
    cols[0].metric("Recall (sensitivity)", f"{at['recall']:.3f}", help="Share of pneumonia cases caught")
    cols[1].metric("Specificity", f"{at['specificity']:.3f}", help="Share of normal X-rays cleared")
    cols[2].metric("Precision (PPV)", f"{at['precision']:.3f}", help="Share of alarms that are pneumonia")
    cols[3].metric("NPV", f"{at['npv']:.3f}", help="Share of cleared X-rays that are normal")
    cols[4].metric("F1", f"{at['f1']:.3f}")
    cols[5].metric("Accuracy", f"{at['accuracy']:.3f}")

    st.plotly_chart(_live_figure(view, at, threshold), key="live_curves")
    st.caption("Red: the current threshold on the ROC and precision–recall curves and among the scores of both classes.")

    matrix, population = st.columns([1, 2])
    with matrix:
        st.markdown(f"Confusion matrix ({SPLIT_NAMES[split]})")
        st.table(metrics.confusion_frame_from_counts(at))
        with st.expander("All numbers"):
            st.table(pd.DataFrame([at]).T.rename(columns={0: SPLIT_NAMES[split]}))
    with population:
        _population_panel(at, threshold)


explorer()
