"""Model comparison: every trained model side by side, on stored predictions only (no TensorFlow)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.evaluation import ablation, compare, metrics, operating_points, references
from core import config
from core.models import registry
from ui import enter_through_app, model_entries

enter_through_app(__file__)

SPLIT_NAMES = {"test": "TEST", "val": "VALIDATION"}
METRIC_LABELS = {
    "accuracy": "Accuracy",
    "precision": "Precision (PPV)",
    "recall": "Recall (sensitivity)",
    "specificity": "Specificity",
    "f1": "F1",
    "roc_auc": "ROC AUC",
    "brier": "Brier (lower is better)",
}


# ------------------------------------------------------------------------------ cached data access
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


# ------------------------------------------------------------------------------ small figure helpers
def _overlay(title: str, x_title: str, y_title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(
        title=title, xaxis_title=x_title, yaxis_title=y_title, height=420, margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(orientation="h", yanchor="top", y=-0.18),
    )
    return fig


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    minutes, secs = divmod(int(round(float(seconds))), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


# ------------------------------------------------------------------------------ page
st.title("📊 Model comparison")
st.caption(
    "Every model in the models folder, scored from its stored predictions. Each model is judged at **its own "
    "threshold, chosen on the validation split**; the test split is never used to choose anything."
)

models_dir = str(config.models_dir())
entries = model_entries()
ready = [e for e in entries if e.available]
broken = [e for e in entries if not e.available]

if broken:
    with st.container(border=True):
        st.markdown("**Unavailable models** (listed for completeness; the rest of the page works without them)")
        for entry in broken:
            st.markdown(f":gray[~~{entry.name}~~ — {entry.reason}]")
if not ready:
    st.info(f"No usable trained model in `{models_dir}` yet. Train the shipped set with `make models`.")
    st.stop()

show_val = st.toggle("Show the validation split instead of test", value=False, key="comparison_show_val")
split = "val" if show_val else "test"
split_name = SPLIT_NAMES[split]
if show_val:
    st.warning(
        "Validation numbers are optimistic: each model's threshold (and its training choices) were made on this "
        "split. Judge models on TEST."
    )

# --- Table -------------------------------------------------------------------------------------
st.subheader(f"Metrics on the {split_name} split, each at its validation-chosen threshold (95% CI)")
rows = []
for entry in list(ready):
    try:
        rows.append(summary_row(entry, str(entry.path), entry.stamp, split))
    except registry.ModelUnavailableError as exc:  # the folder changed since it was listed
        st.error(f"{entry.display_name} cannot be read right now: {exc}")
        ready.remove(entry)
if not rows:
    st.stop()
table = pd.DataFrame(rows)
best = registry.best_models(table)
display_names = dict(zip(table["model"], table["display_name"]))


def labels_of(models: list[str]) -> list[str]:
    return [display_names[m] for m in models]


display = pd.DataFrame({"Model": table["display_name"]})
for key, label in METRIC_LABELS.items():
    display[label] = [
        metrics.format_ci({"value": row[key], "ci_low": row[f"{key}_ci_low"], "ci_high": row[f"{key}_ci_high"]})
        for _, row in table.iterrows()
    ]
display["Threshold (rule, on val)"] = [f"{t:.3f} ({r})" for t, r in zip(table["threshold"], table["threshold_rule"])]
display["Architecture"] = table["architecture"]
display["Input"] = table["input"]
display["Weights"] = table["weights_source"]
display["Parameters"] = table["parameters"]
display["Training time"] = [_duration(s) for s in table["training_seconds"]]
display[f"{split_name} images"] = table["images"]
best_rows = {METRIC_LABELS[key]: table["model"].isin(models).tolist() for key, models in best.items()}

# Published results are test-set numbers: on TEST they follow our rows, greyed, and are never ranked.
published = references.published_frame(tuple(METRIC_LABELS)) if split == "test" else None
our_rows = len(display)
if published is not None:
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


def _highlight(column: pd.Series) -> list[str]:
    marks = best_rows.get(column.name, [False] * our_rows) + [False] * (len(column) - our_rows)
    return ["font-weight: bold; background-color: rgba(33, 150, 83, 0.22)" if m else "" for m in marks]


def _grey_published(row: pd.Series) -> list[str]:
    style = "color: #8a8a8a; font-style: italic" if row.name >= our_rows else ""
    return [style] * len(row)


st.dataframe(
    display.style.apply(_highlight, subset=list(METRIC_LABELS.values())).apply(_grey_published, axis=1),
    hide_index=True,
    width="stretch",
    height=(len(display) + 1) * 35 + 3,  # every row visible, published ones included
    column_config={
        "Model": st.column_config.TextColumn(pinned=True),
        "Parameters": st.column_config.NumberColumn(format="localized"),
    },
    key="comparison_table",
)
st.caption(
    "Best per column (highlighted): "
    + "; ".join(f"{METRIC_LABELS[k]} — {', '.join(labels_of(v))}" for k, v in best.items())
    + f". Split: {split_name}. Intervals: stratified percentile bootstrap over images "
    f"({config.BOOTSTRAP_RESAMPLES} resamples). Click a column header to sort."
)
for adapted in (e for e in ready if e.card.get("adapted")):  # models adapted on a site's films (core.site)
    st.warning(f"**{adapted.display_name}**: {adapted.card.get('metrics_note', 'adapted model: numbers computed after adapting.')}",
               icon="⚠️")
if published is not None:
    st.caption(
        f"Grey rows: **{references.PUBLISHED_MARK}** — numbers as their authors reported them (— = not reported), "
        "never ranked or highlighted. Only Kermany et al. 2018 and reference project 001 were measured on these same "
        "624 official test films; the others on other films or another dataset (column *Evaluated on*)."
    )
    with st.expander("Published results: sources and caveats"):
        for result in references.published_results():
            st.markdown(f"**{result.source} · {result.model}** — {result.citation}. Evaluated on {result.evaluated_on}. "
                        f"{result.note}")
        for line in references.WITHOUT_NUMBERS:
            st.markdown(line)
else:
    st.caption("Published results (Kermany et al. 2018, the reference projects) are test-set numbers: they are "
               "shown beside ours on the TEST split.")
st.download_button(
    f"Download the table as CSV ({split_name.lower()} split)",
    data=table.to_csv(index=False).encode(),
    file_name=f"model_comparison_{split}.csv",
    mime="text/csv",
    key="comparison_csv",
)

# --- Paired test: is one model significantly better? ---------------------------------------------
st.subheader(f"Is the difference significant? Two models, film by film, on the {split_name} split")
pair_names = [e.name for e in ready]
pair_labels = {e.name: e.display_name for e in ready}
if len(pair_names) < 2:
    st.info("A paired test needs two usable models; train another one with `python train.py`.")
else:
    left, right = st.columns(2)
    name_a = left.selectbox("Model A", pair_names, index=0, format_func=pair_labels.get, key="comparison_pair_a")
    name_b = right.selectbox("Model B", pair_names, index=1, format_func=pair_labels.get, key="comparison_pair_b")
    entry_a = next(e for e in ready if e.name == name_a)
    entry_b = next(e for e in ready if e.name == name_b)
    if name_a == name_b:
        st.info("Pick two different models to compare.")
    else:
        try:
            paired = paired_comparison(str(entry_a.path), entry_a.stamp, entry_a.threshold,
                                       str(entry_b.path), entry_b.stamp, entry_b.threshold, split)
        except (ValueError, registry.ModelUnavailableError) as exc:
            st.error(f"{entry_a.display_name} and {entry_b.display_name} cannot be compared on the {split_name} "
                     f"split: {exc}")
        else:
            auc_reading, *other_readings = paired.readings(entry_a.display_name, entry_b.display_name)
            st.markdown(f"**{auc_reading}**")
            if paired.films.only_a or paired.films.only_b:
                st.warning(f"Compared on the {paired.films.n_films} {split_name} films both models were scored on; "
                           f"{paired.films.only_a} film(s) only A scored and {paired.films.only_b} only B scored are "
                           "left out.")
            st.dataframe(compare.comparison_frame(paired), hide_index=True, width="stretch", key="comparison_paired_table")
            st.markdown("\n".join(f"- {reading}" for reading in other_readings))
            st.caption(
                f"{paired.films.n_films} {split_name} films, joined on the film path of each predictions.csv. "
                f"Each model at its own threshold chosen on validation (A {paired.threshold_a:.3f}, "
                f"B {paired.threshold_b:.3f}). ROC AUC: DeLong's test for two correlated AUCs (DeLong et al. 1988; "
                "fast algorithm of Sun & Xu 2014). Accuracy, sensitivity, specificity: paired bootstrap over films "
                "(both models resampled together), percentile 95% CI, p-value from the same resamples. Significant "
                "means p < 0.05 for that metric alone (no correction for the four metrics). Films, not children, are "
                "the unit, so intervals are slightly optimistic where one child has several films."
            )

# --- Ablation: what each training recipe bought ---------------------------------------------------
ablation_file = ablation.ablation_path()
if ablation_file.is_file():
    st.subheader("Ablation: what each training recipe bought (validation and test)")
    try:
        recipes = ablation_table(str(ablation_file), ablation_file.stat().st_mtime)
    except ValueError as exc:
        st.warning(f"The ablation table cannot be shown: {exc}")
    else:
        st.dataframe(ablation.display_frame(recipes), hide_index=True, width="stretch", key="comparison_ablation",
                     column_config={"Recipe": st.column_config.TextColumn(pinned=True)})
        st.caption(
            f"One row per training recipe; *Changes vs baseline* lists the `train.py` options that differ from "
            f"`{ablation.baseline_recipe(recipes)}`. Numbers from each model's card, at its own threshold chosen on "
            "validation, with 95% bootstrap CIs; test numbers are reported, never used to choose a recipe. "
            f"Written by `python -m core.evaluation.ablation … --json` ({ablation_file.name})."
        )

# --- Operating-point rules: which way of fixing the threshold on validation transfers ------------
points_file = operating_points.study_path()
if points_file.is_file():
    with st.expander("Operating-point rules compared (a study; the shipped thresholds are not chosen from it)"):
        try:
            points = operating_points_table(str(points_file), points_file.stat().st_mtime)
        except ValueError as exc:
            st.warning(f"The operating-point study cannot be shown: {exc}")
        else:
            st.dataframe(operating_points.display_frame(points), hide_index=True, width="stretch",
                         key="comparison_operating_points")
            st.caption(
                "Each rule fixes a threshold from VALIDATION data only (the films as given, or the films plus 4 "
                "acquisition-perturbed views of each); the TEST split is reported at it, with 95% bootstrap CIs. "
                "Temperature scaling keeps the 0.5 decision of the raw score (it divides the logit by T > 0), so it "
                "recalibrates the probability shown, not the decision. The shipped thresholds stay those of the rule "
                f"fixed beforehand (docs/PREREGISTRATION.md). Written by `python -m core.evaluation.operating_points` ({points_file.name})."
            )

# --- Curves ------------------------------------------------------------------------------------
st.subheader(f"Curves on the {split_name} split")
names = [e.name for e in ready]
labels = {e.name: e.display_name for e in ready}
chosen = st.multiselect("Models to overlay", names, default=names, format_func=labels.get, key="comparison_models")
chosen_entries = [e for e in ready if e.name in chosen]

roc = _overlay(f"ROC curve ({split_name})", "1 − specificity (false-positive rate)", "Sensitivity (recall)")
pr = _overlay(f"Precision–recall curve ({split_name})", "Recall (sensitivity)", "Precision (PPV)")
calibration = _overlay(f"Calibration ({split_name})", "Mean predicted probability", "Observed fraction with pneumonia")
decision = _overlay(f"Decision curve ({split_name})", "Threshold probability", "Net benefit")
roc.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="chance"))
calibration.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="perfect"))
for index, entry in enumerate(chosen_entries):
    color = f"hsl({(index * 67) % 360}, 65%, 45%)"
    c = curves(str(entry.path), entry.stamp, split, entry.threshold)
    point = c["point"]
    roc.add_trace(go.Scatter(x=c["roc"]["fpr"], y=c["roc"]["tpr"], mode="lines", line=dict(color=color),
                             name=f"{entry.display_name} (AUC {c['auc']:.3f})"))
    roc.add_trace(go.Scatter(x=[1 - point["specificity"]], y=[point["recall"]], mode="markers", showlegend=False,
                             marker=dict(color=color, size=12, symbol="x"),
                             hovertext=f"{entry.display_name}: threshold {entry.threshold:.3f}"))
    pr.add_trace(go.Scatter(x=c["pr"]["recall"], y=c["pr"]["precision"], mode="lines", line=dict(color=color, shape="hv"),
                            name=f"{entry.display_name} (AP {c['ap']:.3f})"))
    pr.add_trace(go.Scatter(x=[point["recall"]], y=[point["precision"]], mode="markers", showlegend=False,
                            marker=dict(color=color, size=12, symbol="x"),
                            hovertext=f"{entry.display_name}: threshold {entry.threshold:.3f}"))
    calibration.add_trace(go.Scatter(x=c["calibration"]["mean_predicted"], y=c["calibration"]["fraction_positive"],
                                     mode="lines+markers", line=dict(color=color),
                                     name=f"{entry.display_name} (Brier {c['brier']:.3f})"))
    decision.add_trace(go.Scatter(x=c["decision"]["threshold"], y=c["decision"]["model"], mode="lines",
                                  line=dict(color=color), name=entry.display_name))
if chosen_entries:
    reference = curves(str(chosen_entries[0].path), chosen_entries[0].stamp, split, chosen_entries[0].threshold)
    decision.add_trace(go.Scatter(x=reference["decision"]["threshold"], y=reference["decision"]["treat_all"],
                                  mode="lines", line=dict(dash="dash", color="grey"), name="treat all"))
    decision.add_trace(go.Scatter(x=reference["decision"]["threshold"], y=reference["decision"]["treat_none"],
                                  mode="lines", line=dict(dash="dot", color="black"), name="treat none"))
    decision.update_yaxes(range=[-0.1, max(0.05, float(reference["decision"]["treat_all"].max()) + 0.05)])

left, right = st.columns(2)
left.plotly_chart(roc, key="roc_chart")
right.plotly_chart(pr, key="pr_chart")
st.caption("× marks each model's operating point: its validation-chosen threshold applied to this split.")
left, right = st.columns(2)
left.plotly_chart(calibration, key="calibration_chart")
right.plotly_chart(decision, key="decision_chart")
st.caption(
    "Calibration: points on the diagonal mean a predicted 0.8 really is pneumonia 80% of the time. "
    "Decision curve: net benefit of acting on the model versus treating everyone or no one (Vickers & Elkin 2006)."
)

# --- One model in detail -------------------------------------------------------------------------
st.subheader("Training history and model card")
detail_name = st.selectbox("Model", names, format_func=labels.get, key="comparison_detail")
detail = next(e for e in ready if e.name == detail_name)
history = registry.load_history(detail)
if history is None:
    st.info(f"{detail.display_name} has no training history (history.csv).")
else:
    history = history.reset_index(drop=True)
    history["step"] = range(1, len(history) + 1)
    for column_slot, (metric_name, title) in zip(st.columns(2), (("loss", "Loss"), ("auc", "ROC AUC"))):
        columns = [c for c in (metric_name, f"val_{metric_name}") if c in history.columns]
        if not columns:
            continue
        fig = _overlay(f"{title} per epoch (train vs validation)", "Epoch (all stages)", title)
        for column in columns:
            fig.add_trace(go.Scatter(x=history["step"], y=history[column], mode="lines+markers",
                                     name="validation" if column.startswith("val_") else "train"))
        if "stage" in history.columns:
            starts = history.groupby("stage", sort=False)["step"].min()
            for stage, step in starts.items():
                fig.add_vline(x=step - 0.5, line_dash="dot", annotation_text=str(stage), annotation_position="top left")
        column_slot.plotly_chart(fig, key=f"history_{metric_name}")
markdown = registry.load_card_markdown(detail)
with st.expander(f"Model card: {detail.display_name}", expanded=False):
    if markdown:
        st.markdown(markdown)
    else:
        st.json(detail.card)
for note in detail.notes:
    st.caption(f"Note: {note}.")
