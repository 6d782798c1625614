"""Model comparison: every trained model side by side, on stored predictions only (no TensorFlow)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import audit, config
from core.evaluation import ablation, compare, goals, operating_points, references
from core.models import registry
from ui import choose_model, enter_through_app, model_entries, model_label, recommended_model_name
from ui.comparison import (METRIC_LABELS, SPLIT_NAMES, ablation_table, curve_figures, history_figures, metrics_display,
                           metrics_table, operating_points_table, paired_comparison, readable, summary_row)

enter_through_app(__file__)

# ------------------------------------------------------------------------------ page
st.title("Model comparison")
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
display, best_rows, our_rows = metrics_display(table, split, recommended_model_name())
metrics_table(display, best_rows, our_rows)
st.caption(
    "Best per column (highlighted): "
    + "; ".join(f"{METRIC_LABELS[k]} — {', '.join(display_names[m] for m in v)}" for k, v in best.items())
    + f". Split: {split_name}. Intervals: stratified percentile bootstrap over images "
    f"({config.BOOTSTRAP_RESAMPLES} resamples). Click a column header to sort."
)
for adapted in (e for e in ready if e.card.get("adapted")):  # models adapted on a site's films (core.site)
    st.warning(f"**{adapted.display_name}**: {adapted.card.get('metrics_note', 'adapted model: numbers computed after adapting.')}",
               icon="⚠️")
if split == "test":
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
    with_goals = [e.card for e in ready if not e.card.get("adapted") and goals.has_goal_metrics(e.card)]
    if with_goals:
        with st.expander("Against the goal set for the recommended model (test split, 95% CI)"):
            st.markdown(goals.goals_table(with_goals, recommended_model_name()))
            st.caption("Each model at its own validation-chosen threshold. *Within reach*: missed, but the 95% CI "
                       "includes the goal. The goal guides the work; no model is chosen on it.")
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
if len(pair_names) < 2:
    st.info("A paired test needs two usable models; train another one with `python train.py`.")
else:
    left, right = st.columns(2)
    entry_a = choose_model("Model A", ready, key="comparison_pair_a", container=left)
    entry_b = choose_model("Model B", ready, key="comparison_pair_b", container=right, avoid=entry_a.name)
    name_a, name_b = entry_a.name, entry_b.name
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
        st.dataframe(readable(ablation.display_frame(recipes), "Recipe"), hide_index=True, width="stretch", key="comparison_ablation",
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
            st.dataframe(readable(operating_points.display_frame(points), "model"), hide_index=True, width="stretch",
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
labels = {e.name: model_label(e) for e in ready}
chosen = st.multiselect("Models to overlay", names, default=names, format_func=labels.get, key="comparison_models")
chosen_entries = [e for e in ready if e.name in chosen]

roc, pr, calibration, decision = curve_figures(chosen_entries, split)
left, right = st.columns(2)
left.plotly_chart(roc, key="roc_chart")
right.plotly_chart(pr, key="pr_chart")
st.caption("× marks each model's operating point: its validation-chosen threshold applied to this split.")
left, right = st.columns(2)
left.plotly_chart(calibration, key="calibration_chart")
right.plotly_chart(decision, key="decision_chart")
st.caption(
    "Calibration: points on the diagonal would mean a score of 0.8 really is pneumonia 80% of the time; points off it "
    "mean the scores are not probabilities (these models' are overconfident), which is why the app calls them scores. "
    "Decision curve: net benefit of acting on the model versus treating everyone or no one (Vickers & Elkin 2006)."
)

# --- One model in detail -------------------------------------------------------------------------
st.subheader("Training history and model card")
detail = choose_model("Model", ready, key="comparison_detail")
history = registry.load_history(detail)
if history is None:
    st.info(f"{detail.display_name} has no training history (history.csv).")
for column_slot, (metric_name, figure) in zip(st.columns(2), history_figures(history) if history is not None else []):
    column_slot.plotly_chart(figure, key=f"history_{metric_name}")
markdown = audit.shown_card_markdown(detail)
with st.expander(f"Model card: {detail.display_name}", expanded=False):
    if markdown:
        st.markdown(markdown)
    else:
        st.json(detail.card)
for note in detail.notes:
    st.caption(f"Note: {note}.")
