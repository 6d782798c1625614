"""Pieces of the Dataset page: counts in words and bars, the audit of what a model could rely on, robustness per model."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core import audit, config
from core.imaging import perturbations
from core.models import registry

CLASS_COLOURS = {"NORMAL": "#2b8a3e", "PNEUMONIA": "#c92a2a"}


@st.cache_data(show_spinner=False)
def load_audit(root: str, stamp: str) -> dict | None:
    """The cached dataset audit of this folder (data/audit/), or None."""
    return audit.load_dataset_audit(root)


@st.cache_data(show_spinner=False, ttl=60)
def load_robustness(models_dir: str) -> pd.DataFrame:
    """core.audit.robustness_summary, cached for a minute."""
    return audit.robustness_summary(models_dir)


def fmt(value: int) -> str:
    """A whole number with thousands separators."""
    return f"{int(value):,}"


def counts_sentence(table: pd.DataFrame) -> str:
    """'**train** 1,000 NORMAL + 2,000 PNEUMONIA; ...' for a split x class count table."""
    parts = [
        f"**{split}** {fmt(row['NORMAL'])} NORMAL + {fmt(row['PNEUMONIA'])} PNEUMONIA"
        for split, row in table.iterrows()
    ]
    return "; ".join(parts)


def counts_bar(table: pd.DataFrame, title: str) -> go.Figure:
    """Grouped bars of images per split and class."""
    long = table.drop(columns="total").reset_index(names="split").melt(id_vars="split", var_name="class", value_name="images")
    figure = px.bar(long, x="split", y="images", color="class", barmode="group", text="images",
                    color_discrete_map=CLASS_COLOURS, title=title)
    figure.update_layout(height=340, margin=dict(t=50, b=10), legend_title_text="")
    return figure


@st.fragment
def audit_section(root: str, stamp: str) -> None:
    """Trivial baselines, validation-vs-test domain classifier and score correlations (computed here on request)."""
    st.header("What a model could rely on")
    st.markdown("Before trusting a model, check what else in the films could give the answer away, and how the "
                "official test films differ from the validation films the models were tuned on (`python -m core.audit data`).")
    found = load_audit(root, stamp)
    if found is None:
        st.info("The dataset audit has not been computed for this folder yet. Run `python -m core.audit data` "
                "(a few minutes on two cores) or compute it here.")
        if st.button("Compute the dataset audit", key="dataset_audit_compute"):
            with st.spinner("Reading every film, fitting the baselines and the domain classifier…"):
                audit.dataset_audit(root)
            load_audit.clear()
            st.rerun(scope="fragment")
        return
    st.subheader("Trivial baselines: the film shrunk to a few grey squares")
    baselines = pd.DataFrame(found["baselines"]).rename(columns={
        "variant": "made from", "size": "thumbnail (px per side)", "features": "numbers per film",
        "val_roc_auc": "ROC AUC (VALIDATION)", "test_roc_auc": "ROC AUC (TEST)"})
    long = baselines.melt(id_vars=["made from", "thumbnail (px per side)"], value_vars=["ROC AUC (VALIDATION)", "ROC AUC (TEST)"],
                          var_name="split", value_name="ROC AUC")
    long["thumbnail"] = long["thumbnail (px per side)"].map(lambda side: f"{side}×{side}")
    figure = px.bar(long, x="thumbnail", y="ROC AUC", color="split", barmode="group", facet_col="made from", text_auto=".2f",
                    color_discrete_map={"ROC AUC (VALIDATION)": "#1971c2", "ROC AUC (TEST)": "#e8590c"})
    figure.update_yaxes(range=[0.5, 1.0])
    figure.for_each_annotation(lambda annotation: annotation.update(text=annotation.text.split("=")[-1]))
    figure.update_layout(height=340, margin=dict(t=60, b=10), legend_title_text="", legend=dict(orientation="h", y=1.18))
    st.plotly_chart(figure, width="stretch", key="audit_baselines_chart")
    with st.expander("Baselines as a table"):
        st.dataframe(baselines[[c for c in baselines.columns if not c.endswith("_n")]], hide_index=True, key="audit_baselines")
    st.caption("Logistic regression on the grey pixels of the thumbnail, fitted on the train split. Made from: the "
               "whole film; the film after histogram equalisation (global brightness and contrast removed); the central "
               "half of each side only (lungs and mediastinum); the edges only (central half blacked out). A high "
               "validation AUC from 16 numbers means coarse brightness and layout already separate the classes in the "
               "training distribution: a model can score well there without reading the lungs.")
    st.subheader("How the test films differ from the validation films")
    domain = found.get("domain", {})
    cols = st.columns(max(1, len(domain)))
    for col, (subset, part) in zip(cols, domain.items()):
        col.metric(f"Validation vs test, {'all films' if subset == 'all' else 'NORMAL films only'}: ROC AUC",
                   f"{part['roc_auc']:.3f}", help=f"{part['model']}, {part['folds']}-fold cross-validation grouped by patient, "
                   f"{part['n_validation']} validation and {part['n_test']} test films. 0.5 = indistinguishable.")
    normal = domain.get("normal") or domain.get("all")
    if normal:
        profile = pd.DataFrame(normal["profile"])
        importance = {row["statistic"]: row["auc_drop"] for row in normal["importance"]}
        profile.insert(1, "importance (AUC drop)", profile["statistic"].map(importance))
        words = profile.pop("statistic").map(audit.statistic_words)  # plain words, not internal keys (thumb_r3c3)
        profile = profile.drop(columns=["words"], errors="ignore")
        profile.insert(0, "words", words)
        st.dataframe(profile.rename(columns={
            "words": "statistic (plain words)", "median_val_normal": "median VAL NORMAL", "median_val_pneumonia": "median VAL PNEUMONIA",
            "median_test_normal": "median TEST NORMAL", "median_test_pneumonia": "median TEST PNEUMONIA",
            "auc_pneumonia_vs_normal_val": "AUC pneumonia vs normal (VAL)", "auc_test_normal_vs_val_normal": "AUC test vs val normals",
            "test_normals_move_towards_pneumonia": "test normals move towards pneumonia"}),
            hide_index=True, key="audit_profile")
        st.caption("Top statistics of the domain classifier on NORMAL films (permutation importance: how much its "
                   "held-out AUC drops when the statistic is shuffled). 'Move towards pneumonia' means the test normals "
                   "differ from the validation normals in the same direction as validation pneumonia films do: on that "
                   "statistic a healthy test film looks like a sick training film.")
    correlations = found.get("score_correlations") or {}
    if correlations:
        names = {entry.name: entry.display_name for entry in registry.list_models(config.models_dir())}
        st.dataframe(pd.DataFrame(correlations).rename(index=audit.statistic_words, columns=lambda n: names.get(n, n)),
                     key="audit_correlations")
        st.caption("Spearman correlation, on the TEST NORMAL films, between each statistic and each model's stored "
                   "score (predictions.csv): positive = healthy test films higher on the statistic get a higher "
                   "pneumonia score.")
    st.caption(f"Computed {found.get('computed', '')} in {found.get('seconds', 0):.0f} s.")


def robustness_section() -> None:
    """Each audited model under acquisition changes, by display name."""
    st.subheader("Each model under acquisition changes (VALIDATION films)")
    robustness = load_robustness(str(config.models_dir()))
    if robustness.empty:
        st.info("No model card carries an audit yet: run `python -m core.audit model models/<name> --write-card`.")
    else:
        names = {entry.name: entry.display_name for entry in registry.list_models(config.models_dir())}
        shown = robustness.assign(model=robustness["model"].map(lambda n: names.get(n, n))).fillna("not measured")
        st.dataframe(shown, hide_index=True, key="audit_robustness")
    st.caption(f"Goal: sensitivity and specificity at the model's threshold move by at most {perturbations.ROBUSTNESS_TOLERANCE:.2f} "
               "under zoom in/out 15 %, shift 10 %, gamma 0.7/1.4, side padding and a black frame, on validation films. "
               "The full table (blur, noise, contrast, bit depth too) and where each model's Grad-CAM sits are in its "
               "model card (Model comparison page).")


