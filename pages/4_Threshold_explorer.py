"""Threshold explorer: drag a threshold and watch every metric, curve point and count move (no TensorFlow)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import config
from core.evaluation import metrics, presets
from core.models import registry
from ui import choose_model, enter_through_app, model_entries, operating_point
from widgets.threshold_explorer import agreement_numbers, figure_data, live_threshold

enter_through_app(__file__)

SPLIT_NAMES = {"test": "TEST", "val": "VALIDATION"}
PREVALENCE_PRESETS = {"split": None, "1%": 0.01, "5%": 0.05, "10%": 0.10, "custom": None}
PREVALENCE_LABELS = {"1%": "1%", "5%": "5%", "10%": "10%", "custom": "Custom…"}
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
def validation_presets(path: str, stamp: float, own: float) -> tuple[list[tuple[str, float]], int]:
    """(label, threshold) presets: the model's own, then the rules applied to the validation split; and its size."""
    val = registry.load_predictions(path, split="val")
    return presets.rule_presets(val["label"], val["score"], own_threshold=own), len(val)


def _set_threshold(value: float) -> None:
    """Set by the page (a preset): a new revision, so the widget's handle moves to it."""
    st.session_state[SLIDER_KEY] = float(value)
    st.session_state["threshold_revision"] = st.session_state.get("threshold_revision", 0) + 1


# ------------------------------------------------------------------------------ page: choose what to look at
st.title("Threshold explorer")
st.caption(
    "A model outputs a score between 0 and 1; the threshold turns it into a decision. Lower it and more pneumonia is "
    "caught, at the price of more false alarms. Every number below comes from the model's stored predictions. "
    "Nothing here changes the Prediction page until you press **Use this operating point**."
)

models_dir = str(config.models_dir())
entries = model_entries()
ready = [e for e in entries if e.available]
for entry in (e for e in entries if not e.available):
    st.caption(f":gray[Unavailable: {entry.name} — {entry.reason}]")
if not ready:
    st.info(f"No usable trained model in `{models_dir}` yet. Train the shipped set with `make models`.")
    st.stop()

left, right = st.columns([2, 1])
entry = choose_model("Model", ready, key="explorer_model", container=left)
model_name = entry.name
split = right.radio(
    "Numbers from the split", ["test", "val"], format_func=SPLIT_NAMES.get, horizontal=True, key="explorer_split"
)
try:
    view = split_view(str(entry.path), entry.stamp, split)
    candidates, n_val = validation_presets(str(entry.path), entry.stamp, entry.threshold)
    val_sweep = split_view(str(entry.path), entry.stamp, "val")["sweep"]
except registry.ModelUnavailableError as exc:  # the folder changed since it was listed
    st.error(f"{entry.display_name} cannot be read right now: {exc}")
    st.stop()
sweep: metrics.ThresholdSweep = view["sweep"]
point_list = presets.threshold_presets(val_sweep, sweep, candidates=candidates, chosen_on="VALIDATION",
                                       shown_on=SPLIT_NAMES[split])
# A rule can land just above the highest score (nothing called positive); let the slider reach it.
slider_max = max(1.0, *(p.threshold for p in point_list))
RULE_HELP = {
    presets.OWN_LABEL: f"The model card's operating point: {entry.threshold_rule} (chosen on {entry.threshold_split}).",
    "F1-best": "Highest F1 on validation.",
    "Youden J": "Highest sensitivity + specificity − 1 on validation.",
    "Sensitivity ≥ 95%": "The highest threshold whose validation sensitivity is still at least 95%: "
    "the fewest false alarms while catching 95% of validation cases.",
    "Specificity ≥ 90%": "The lowest threshold whose validation specificity is still at least 90%: "
    "the most cases caught while clearing 90% of validation normal X-rays.",
}

# A new model (or a return from another page) starts at this session's slider value for this model, else at the
# adopted operating point for this model, else at the model's own.
if st.session_state.get("explorer_threshold_for") != model_name or SLIDER_KEY not in st.session_state:
    adopted = operating_point.adopted() or {}
    start = adopted.get("threshold") if adopted.get("model") == model_name else entry.threshold
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
    return prevalence, "children screened"


def _preset_table() -> pd.DataFrame:
    """One row per preset: the rules that give it, its threshold, and what it gives on validation and on the split shown."""
    rows = []
    for preset in point_list:
        row = {"Preset": " = ".join(preset.labels), "Threshold": f"{preset.threshold:.3f}",
               "Sensitivity (VALIDATION)": f"{preset.chosen['recall']:.3f}",
               "Specificity (VALIDATION)": f"{preset.chosen['specificity']:.3f}"}
        if split != "val":
            row |= {f"Sensitivity ({SPLIT_NAMES[split]})": f"{preset.shown['recall']:.3f}",
                    f"Specificity ({SPLIT_NAMES[split]})": f"{preset.shown['specificity']:.3f}"}
        rows.append(row)
    return pd.DataFrame(rows)


@st.fragment
def explorer() -> None:
    """Presets, prevalence, the live widget, the button that hands the operating point to Prediction, every number."""
    st.markdown("**Start from a preset** (each chosen on VALIDATION; presets that land on the same threshold are one):")
    with st.container(horizontal=True):
        for preset in point_list:
            st.button(preset.title, key=f"preset_{preset.labels[0]}", on_click=_set_threshold, args=(preset.threshold,),
                      help=" ".join(RULE_HELP.get(label, label) for label in preset.labels) + " " + preset.gives())
    st.dataframe(_preset_table(), hide_index=True, key="explorer_presets")
    prevalence, who = _prevalence_choice()
    threshold = float(st.session_state[SLIDER_KEY])
    preset = next((p for p in point_list if p.threshold == threshold), None)
    if preset is not None and preset.is_own:
        source = f"{entry.display_name}'s own operating point: {entry.threshold_rule}, chosen on {entry.threshold_split}"
    elif preset is not None:
        source = f"{' = '.join(preset.labels)}, chosen on the validation split of {entry.display_name}"
    else:
        source = f"set by hand in the threshold explorer while viewing the {SPLIT_NAMES[split]} split"

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
            "heading": f"At this threshold, on the {name} split as it is ({sweep.prevalence:.1%} with pneumonia): "
                       "its PPV, NPV, F1 and accuracy hold for that mix only; the panel below re-weights them",
            "figure_caption": "Red: the current threshold on the ROC and precision–recall curves and among the "
                              "scores of both classes.",
            "matrix_title": f"Confusion matrix ({name})",
            "predicted_0": f"predicted {config.CLASS_NAMES[0]}", "predicted_1": f"predicted {config.CLASS_NAMES[1]}",
            "actual_0": f"actual {config.CLASS_NAMES[0]}", "actual_1": f"actual {config.CLASS_NAMES[1]}",
            "who": who, "prevalence_text": f"{prevalence:.1%}",
            "population_caption": f"Sensitivity and specificity measured on the {name} split (X-rays of children aged "
                                  "one to five from one centre), re-weighted to this prevalence with Bayes' rule. The "
                                  "model was built for children only.",
        },
        threshold=threshold,
        maximum=slider_max,
        revision=st.session_state.get("threshold_revision", 0),
        prevalence=prevalence,
        server_numbers=summary,
        label="Threshold: call PNEUMONIA when the score is at least…",
        on_release=_released,
    )
    st.caption(f"Threshold {threshold:.4f}: {source}. "
               f"Server numbers ({name}): {agreement_numbers(summary)}.")
    operating_point.adopt_button(entry, threshold, source, "Threshold explorer", key="explorer_adopt")
    with st.expander(f"All numbers, on the {name} split and at {prevalence:.1%} prevalence (exact, computed on the server)"):
        st.table(presets.prevalence_table(sweep, threshold, prevalence, split_name=name).set_index("Measure"))


explorer()
