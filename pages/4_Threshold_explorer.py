"""Threshold explorer: drag a threshold and watch every metric, curve point and count move (no TensorFlow)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import config
from core.evaluation import metrics
from core.models import registry
from ui import enter_through_app, model_entries
from widgets.threshold_explorer import agreement_numbers, figure_data, live_threshold

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
    sweep = metrics.ThresholdSweep.from_scores(y, s)
    return {
        "sweep": sweep,
        "compact": sweep.compact(),
        "figures": figure_data(metrics.roc_curve_frame(y, s), metrics.pr_curve_frame(y, s),
                               metrics.score_histogram(y, s, bins=50)),
        "auc": metrics.roc_auc(y, s),
        "ap": metrics.pr_auc(y, s),
    }


@st.cache_data(show_spinner=False)
def validation_presets(path: str, stamp: float) -> tuple[dict[str, float], int]:
    """Operating-point presets chosen on the validation split, and its size."""
    val = registry.load_predictions(path, split="val")
    return metrics.operating_points(val["label"], val["score"], sensitivity_target=0.95, specificity_target=0.90), len(val)


def _set_threshold(value: float) -> None:
    """Set by the page (a preset): a new revision, so the widget's handle moves to it."""
    st.session_state[SLIDER_KEY] = float(value)
    st.session_state["threshold_revision"] = st.session_state.get("threshold_revision", 0) + 1


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
    _set_threshold(min(max(float(start), 0.0), slider_max))
    st.session_state["explorer_threshold_for"] = model_name

st.markdown(
    f"Presets are chosen on the **VALIDATION** split ({n_val} images) and applied to the "
    f"**{SPLIT_NAMES[split]}** split ({sweep.n} images: {sweep.n_pos} pneumonia, {sweep.n_neg} normal), "
    "where all numbers below come from."
)


# ------------------------------------------------------------------------------ the live part
# The slider, every number and the figure points are answered in the browser on each pointer move
# (widgets/threshold_explorer.py, from the sweep's compact form); the server hears the value on release, stores the
# operating point, and sends back its own numbers (core.evaluation.metrics), which the widget checks against what it showed.
LIVE_KEY = "threshold_live"


def _released(value: float) -> None:
    st.session_state[SLIDER_KEY] = min(max(float(value), 0.0), slider_max)


def _prevalence_choice() -> tuple[float, str]:
    """Prevalence control of the population panel: (prevalence in (0, 1), who is screened)."""
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
    return prevalence, "children screened" if choice == "split" else "people screened"


@st.fragment
def explorer() -> None:
    """Preset buttons, prevalence, the live widget, then the operating point the server stored and its numbers."""
    st.markdown("**Start from a preset** (chosen on validation):")
    with st.container(horizontal=True):
        for label, value in presets.items():
            st.button(f"{label} · {value:.3f}", key=f"preset_{label}", on_click=_set_threshold, args=(value,),
                      help=preset_help.get(label, f"{label} on validation (highest such threshold)."))
    prevalence, who = _prevalence_choice()
    threshold = float(st.session_state[SLIDER_KEY])
    preset_name = next((label for label, value in presets.items() if value == threshold), None)
    if preset_name == "Model's own":
        source = f"{entry.display_name}'s own operating point: {entry.threshold_rule}, chosen on {entry.threshold_split}"
    elif preset_name:
        source = f"{preset_name}, chosen on the validation split of {entry.display_name}"
    else:
        source = f"set by hand in the threshold explorer while viewing the {SPLIT_NAMES[split]} split"
    st.session_state["operating_point"] = {"model": model_name, "threshold": threshold, "source": source}

    name = SPLIT_NAMES[split]
    summary = metrics.operating_point_summary(sweep, threshold, prevalence=prevalence)
    live_threshold(
        key=LIVE_KEY,
        view_id=f"{model_name}:{split}:{entry.stamp}",
        sweep=view["compact"],
        figures=view["figures"],
        titles={"roc": f"ROC ({name}, AUC {view['auc']:.3f})", "pr": f"Precision–recall ({name}, AP {view['ap']:.3f})",
                "histogram": f"Scores by true class ({name})"},
        texts={
            "heading": f"At this threshold, on the {name} split",
            "figure_caption": "Red: the current threshold on the ROC and precision–recall curves and among the "
                              "scores of both classes.",
            "matrix_title": f"Confusion matrix ({name})",
            "predicted_0": f"predicted {config.CLASS_NAMES[0]}", "predicted_1": f"predicted {config.CLASS_NAMES[1]}",
            "actual_0": f"actual {config.CLASS_NAMES[0]}", "actual_1": f"actual {config.CLASS_NAMES[1]}",
            "who": who, "prevalence_text": f"{prevalence:.1%}",
            "population_caption": f"Sensitivity and specificity measured on the {name} split (paediatric X-rays from "
                                  "one centre), re-weighted to this prevalence with Bayes' rule. Adults are outside "
                                  "what this model was trained on.",
        },
        threshold=threshold,
        maximum=slider_max,
        revision=st.session_state.get("threshold_revision", 0),
        prevalence=prevalence,
        server_numbers=summary,
        label="Threshold: call PNEUMONIA when the probability is at least…",
        on_release=_released,
    )
    st.caption(f"Threshold {threshold:.4f}: {source}. The Prediction page uses it. "
               f"Server numbers ({name}): {agreement_numbers(summary)}.")
    with st.expander("All numbers (exact, computed on the server)"):
        at = sweep.at(threshold)
        weighted = sweep.at(threshold, prevalence=prevalence)
        table = pd.DataFrame([at]).T.rename(columns={0: name})
        table[f"at {prevalence:.1%} prevalence"] = pd.Series(weighted)
        st.table(table)


explorer()
