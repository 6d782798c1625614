"""Monitoring: what the audit trail says about the films scored here, day by day, and alerts when something moves."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import streamlit as st

from core import config, monitoring
from core import trail as audit
from ui import default_model_index, enter_through_app, model_entries, pacs, recommended_label, recommended_model_name

enter_through_app(__file__)

LIMITS = monitoring.Limits()

st.title("Monitoring")
st.caption("Every film scored here (uploads, the command line, the archive) is a row in the audit trail: no patient data, "
           "only a keyed hash of each film. This page reads it.")

database = pacs.trail()
if database is None:
    st.stop()
try:
    frame = database.frame()
except audit.TrailError as error:
    st.error(str(error))
    st.stop()
st.caption(f"Audit trail: `{database.where}` (set `{audit.ENV_DB}` to a file path or a database URL).")
if frame.empty:
    st.info("No film has been scored yet. Score some on the Prediction page, or run "
            "`python -m core.pacs --url DICOMWEB_URL watch --once`.")
    st.stop()

models = sorted(frame["model"].unique())
shown, recommended = {e.name: e.display_name for e in model_entries()}, recommended_model_name()
model = st.selectbox("Model", models, index=default_model_index(models), key="monitoring_model",  # recommended first
                     format_func=lambda n: recommended_label(shown.get(n, n)) if n == recommended else shown.get(n, n),
                     help="The drift is measured against this model's validation films.")
rows = frame[frame["model"] == model]
reference = None
model_dir = config.models_dir() / model
if (model_dir / "predictions.csv").is_file():
    reference = monitoring.validation_scores(model_dir)
else:
    st.info(f"{shown.get(model, model)} has no predictions.csv in {config.models_dir()}: no drift is measured.")
days = monitoring.daily(rows, reference)
agreed = monitoring.agreement(rows)

st.subheader("Alerts")
st.caption(f"Limits: KS distance of a day's scores to the validation films above {LIMITS.ks_distance}, guard flags above "
           f"{LIMITS.flag_rate:.0%} of a day's films (days with at least {LIMITS.min_films} films), agreement with the "
           f"clinicians whose whole 95% CI is below {LIMITS.agreement:.0%}.")
lines = monitoring.alerts(days, agreed, LIMITS)
for line in lines:
    st.error(line, icon="🚨")
if not lines:
    st.success("Nothing past its limit.")

total, scored_col, flagged_col, sent_col = st.columns(4)
total.metric("Films", len(rows))
scored_col.metric("Scored", int(rows["score"].notna().sum()))
flagged_col.metric("Flagged by the guard", int(monitoring.flagged(rows).sum()))
sent_col.metric("Results sent to the archive", int(rows["sent"].fillna(False).astype(bool).sum()))

st.subheader("Films per day")
figure = go.Figure()
figure.add_bar(x=days["day"], y=days["scored"], name="scored")
figure.add_bar(x=days["day"], y=days["not_scored"], name="not scored (out of scope or flagged)")
figure.update_layout(barmode="stack", height=280, margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend={"orientation": "h"})
st.plotly_chart(figure, width="stretch")

left, right = st.columns(2)
with left:
    st.markdown("**Score drift** (KS distance to the validation films)")
    drift = go.Figure()
    drift.add_scatter(x=days["day"], y=days["ks_distance"], mode="lines+markers", name="KS distance")
    drift.add_hline(y=LIMITS.ks_distance, line_dash="dash", annotation_text="limit")
    drift.update_layout(height=260, margin={"l": 10, "r": 10, "t": 10, "b": 10}, yaxis_range=[0, 1])
    st.plotly_chart(drift, width="stretch")
    if reference is not None and rows["score"].notna().any():
        histogram = go.Figure()
        histogram.add_histogram(x=reference, histnorm="probability", name="validation films", opacity=0.6, nbinsx=20)
        histogram.add_histogram(x=rows["score"].dropna(), histnorm="probability", name="scored here", opacity=0.6, nbinsx=20)
        histogram.update_layout(barmode="overlay", height=240, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                                legend={"orientation": "h"}, xaxis_title="score")
        st.plotly_chart(histogram, width="stretch")
with right:
    st.markdown("**Guard flag rate** (95% Wilson CI)")
    flags = go.Figure()
    flags.add_scatter(x=days["day"], y=days["flag_rate"], mode="lines+markers", name="flag rate",
                      error_y={"type": "data", "symmetric": False, "array": days["flag_high"] - days["flag_rate"],
                               "arrayminus": days["flag_rate"] - days["flag_low"]})
    flags.add_hline(y=LIMITS.flag_rate, line_dash="dash", annotation_text="limit")
    flags.update_layout(height=260, margin={"l": 10, "r": 10, "t": 10, "b": 10}, yaxis_range=[0, 1], yaxis_tickformat=".0%")
    st.plotly_chart(flags, width="stretch")

st.subheader("Agreement with the clinicians")


def rate(value: float, interval: tuple[float, float], n: int) -> str:
    return "no readings yet" if n == 0 or math.isnan(value) else f"{value:.0%} (95% CI {interval[0]:.0%}-{interval[1]:.0%}, n = {n})"


st.markdown(f"- Agreement with the decision: **{rate(agreed['agreement'], agreed['agreement_ci'], agreed['readings'])}**\n"
            f"- Sensitivity against their final labels: **{rate(agreed['sensitivity'], agreed['sensitivity_ci'], agreed['positives'])}**\n"
            f"- Specificity against their final labels: **{rate(agreed['specificity'], agreed['specificity_ci'], agreed['negatives'])}**")
labelled = monitoring.labelled_scores(rows)
if not labelled.empty:
    st.download_button("Download the films with a final label (CSV: key, score, label)", labelled.to_csv(index=False).encode(),
                       file_name="trail-labelled-scores.csv", mime="text/csv")

with st.expander("The trail's rows (no patient data)"):
    st.dataframe(rows.drop(columns=["film_key"]), hide_index=True, width="stretch")
