"""Your site: how do the models do on your own labelled films, and an adapted model from unlabelled ones."""

from __future__ import annotations

import hashlib

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import config
from core.models import registry
from core import report as results_report
from core import site as site_check
from ui import (choose_model, default_model_index, enter_through_app, load_scorer, model_entries,
                operating_point, recommended_label, recommended_model_name)

enter_through_app(__file__)

SHOWN_METRICS = {"roc_auc": "ROC AUC", "recall": "Sensitivity", "specificity": "Specificity", "precision": "PPV",
                 "npv": "NPV", "accuracy": "Accuracy", "f1": "F1", "brier": "Brier (lower is better)"}


# ----------------------------------------------------------------------------------------- cached calls into core/
@st.cache_data(show_spinner=False, max_entries=8)
def read_upload(digest: str, _zip_bytes: bytes, _csv_bytes: bytes | None, name: str, labelled: bool) -> site_check.SiteSet:
    """The films of an uploaded ZIP (kept in memory), keyed by the bytes' digest."""
    return site_check.read_site(_zip_bytes, name=name, labels_csv=_csv_bytes, labelled=labelled)


@st.cache_data(show_spinner="Scoring every film with every model and bootstrapping the CIs…", max_entries=8)
def validate(digest: str, _site: site_check.SiteSet, models_signature: tuple, guard: bool) -> dict:
    """site_check.validate_site on the cached models, as a plain dict (frames kept for plotting)."""
    report = site_check.validate_site(_site, model_entries(), guard=guard, scorer_loader=load_scorer)
    return {"report": report, "results": {r["model"]: r for r in report.results}}


def _digest(*parts: bytes | None) -> str:
    return hashlib.sha256(b"".join(p or b"" for p in parts)).hexdigest()


def curves_figure(result: dict) -> go.Figure:
    """ROC, PR and calibration of one model on the site films, side by side."""
    from plotly.subplots import make_subplots

    curves = result["curves"]
    figure = make_subplots(rows=1, cols=3, subplot_titles=("ROC", "Precision–recall", "Calibration"))
    figure.add_scatter(x=curves["roc"]["fpr"], y=curves["roc"]["tpr"], mode="lines", name="ROC", row=1, col=1)
    figure.add_scatter(x=curves["pr"]["recall"], y=curves["pr"]["precision"], mode="lines", name="PR", row=1, col=2)
    cal = curves["calibration"]
    figure.add_scatter(x=cal["mean_predicted"], y=cal["fraction_positive"], mode="lines+markers", name="site films",
                       marker={"size": 6}, row=1, col=3)
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "grey"}, name="perfect calibration",
                       row=1, col=3)
    counts = result["metrics"]["counts"]
    figure.add_scatter(x=[1 - counts["specificity"]], y=[counts["recall"]], mode="markers", marker={"symbol": "x", "size": 12},
                       name="card threshold", row=1, col=1)
    figure.update_xaxes(title_text="1 − specificity", row=1, col=1)
    figure.update_yaxes(title_text="sensitivity", row=1, col=1)
    figure.update_xaxes(title_text="recall", row=1, col=2)
    figure.update_yaxes(title_text="precision", row=1, col=2)
    figure.update_xaxes(title_text="mean score (binned)", row=1, col=3)
    figure.update_yaxes(title_text="fraction with pneumonia", row=1, col=3)
    figure.update_layout(height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return figure


def drift_figure(result: dict) -> go.Figure:
    """Score distributions of the site films beside the model's validation films, per class."""
    drift = result["drift"]
    figure = go.Figure()
    colours = {("validation", 0): "#54aeff", ("validation", 1): "#0550ae", ("your site", 0): "#fb8f44", ("your site", 1): "#a40e26"}
    for scores, labels, where in ((drift["val_scores"], drift["val_labels"], "validation"),
                                  (drift["site_scores"], drift["site_labels"], "your site")):
        for label, name in enumerate(config.CLASS_NAMES):
            chosen = scores[labels == label]
            if len(chosen):
                figure.add_histogram(x=chosen, name=f"{where} · {name} ({len(chosen)})", histnorm="probability",
                                     xbins={"start": 0, "end": 1, "size": 0.05}, opacity=0.5,
                                     marker_color=colours[(where, label)])
    figure.add_vline(x=result["threshold"], line_dash="dash", annotation_text="card threshold")
    figure.update_layout(barmode="overlay", height=340, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         xaxis_title="pneumonia score", yaxis_title="share of films", legend={"orientation": "h", "y": -0.3})
    return figure


# ----------------------------------------------------------------------------------------- page
st.title("Your site")
st.caption("Check the models on your own films before you trust them. Uploads stay in memory; DICOM patient tags are never "
           "read into the results. Thresholds and model choices made elsewhere in this app come from the training "
           "hospital's validation films; this page shows how they hold at yours.")

validate_tab, adapt_tab = st.tabs(["Validate on labelled films", "Adapt to unlabelled films"])

with validate_tab:
    st.markdown("A **ZIP** of your films in `NORMAL/` and `PNEUMONIA/` folders (at any depth), or of the films plus a "
                "`file,label[,patient]` CSV. PNG, JPEG and DICOM. Patients are read from Kaggle-style file names or the CSV, "
                "so the confidence intervals resample patients, not films.")
    upload = st.file_uploader("Labelled films (ZIP)", key="site_upload")
    labels_upload = st.file_uploader("Labels CSV (optional: file,label[,patient])", key="site_labels")
    guard = st.toggle("Run the out-of-distribution guard on every film (slower)", value=True, key="site_guard")
    if upload is None:
        st.info("Upload a ZIP of labelled films to see how each model does on them.")
    else:
        zip_bytes, csv_bytes = upload.getvalue(), labels_upload.getvalue() if labels_upload else None
        digest = _digest(zip_bytes, csv_bytes)
        try:
            site_set = read_upload(digest, zip_bytes, csv_bytes, upload.name.rsplit(".", 1)[0], True)
            outcome = validate(digest, site_set, registry.models_signature(config.models_dir()), guard)
        except ValueError as error:  # SiteDataError and registry errors: a message the user can act on
            st.error(f"**{upload.name}** cannot be used: {error}")
            outcome = None
        if outcome is not None:
            report = outcome["report"]
            st.success(f"{report.films} films of '{report.site}' scored · labels from {report.labels_from} · patients from "
                       f"{report.patients_from} · fingerprint `{report.fingerprint}`")
            if report.problems:
                with st.expander(f"{len(report.problems)} file(s) not used", expanded=True):
                    st.dataframe(pd.DataFrame([{"file": p.name, "why": p.reason} for p in report.problems]), hide_index=True,
                                 width="stretch")

            st.subheader("Every model at its own threshold, on your films (95% CI over patients)")
            st.dataframe(site_check.summary_frame(report), hide_index=True, width="stretch")

            names = [r["model"] for r in report.results]
            labels = {r["model"]: r["display_name"] for r in report.results}
            recommended = recommended_model_name()
            chosen = st.selectbox("Look at one model in detail", names, index=default_model_index(names), key="site_model",
                                  format_func=lambda n: recommended_label(labels[n]) if n == recommended else labels[n])
            result = outcome["results"][chosen]
            if result["adaptation"]:
                st.warning(result["adaptation"], icon="⚠️")
            counts = result["counts"]
            st.caption(f"Site films: {counts['NORMAL']} NORMAL, {counts['PNEUMONIA']} PNEUMONIA, {counts['patients']} patients. "
                       f"Threshold {result['threshold']:.3f}: {result['threshold_source']}.")
            if result["metrics"] is None:
                st.warning(result["refusal"])
            else:
                cols = st.columns(4)
                for i, (key, label) in enumerate(SHOWN_METRICS.items()):
                    entry = result["metrics"][key]
                    cols[i % 4].metric(f"{label} (site)", f"{entry['value']:.3f}",
                                       help=f"95% CI {entry['ci_low']:.3f}–{entry['ci_high']:.3f}")
                    cols[i % 4].caption(f"95% CI {entry['ci_low']:.3f}–{entry['ci_high']:.3f} · width {entry['ci_width']:.3f}")
                st.plotly_chart(curves_figure(result), width="stretch", key="site_curves")
            ood_counts = result["ood"]
            if ood_counts["guard"]:
                st.markdown(f"**Out-of-distribution guard:** {ood_counts['flagged']} of {ood_counts['checked']} films flagged as "
                            f"unlike the validation X-rays, {ood_counts['passed']} passed.")
            else:
                st.caption("Out-of-distribution guard: not run (switched off, or this model has no ood.npz).")

            st.markdown("**Drift: your films' scores beside the validation films the model was checked on**")
            st.plotly_chart(drift_figure(result), width="stretch", key="site_drift")
            drift = result["drift"]
            st.caption(f"Mean score {drift['site_mean']:.3f} on your films vs {drift['val_mean']:.3f} on validation; "
                       f"{drift['site_called_positive']:.0%} vs {drift['val_called_positive']:.0%} called PNEUMONIA at the card "
                       f"threshold; Kolmogorov–Smirnov distance {drift['ks_statistic']:.2f} (p = {drift['ks_pvalue']:.2g}).")

            st.subheader("A site operating point")
            point = result["site_operating_point"]
            if point["threshold"] is None:
                st.warning(point["refusal"])
            else:
                st.markdown(f"Threshold **{point['threshold']:.3f}** — {point['source']}. Numbers below are on the "
                            f"**evaluation half** only ({point['evaluation']['NORMAL']} NORMAL, {point['evaluation']['PNEUMONIA']} "
                            f"PNEUMONIA, {point['evaluation']['patients']} patients); no patient is in both halves.")
                cols = st.columns(4)
                for i, key in enumerate(("recall", "specificity", "precision", "accuracy")):
                    entry = point["metrics"][key]
                    cols[i].metric(f"{SHOWN_METRICS[key]} (evaluation half)", f"{entry['value']:.3f}")
                    cols[i].caption(f"95% CI {entry['ci_low']:.3f}–{entry['ci_high']:.3f} · width {entry['ci_width']:.3f}")
                operating_point.adopt_button(registry.get_model(result["model"], config.models_dir()), point["threshold"],
                                             f"{point['source']}, site '{report.site}'", "Your site", key="site_use_point")
            left, right = st.columns(2)
            left.download_button("Download the site results (JSON)", site_check.json_bytes(report), file_name=f"site-{report.site}.json",
                                 mime="application/json", key="site_download")
            right.download_button(
                "Download the HTML report with this site section",
                data=lambda: results_report.build_report(config.models_dir(), st.session_state.get("data_root") or config.data_root(),
                                                         heatmaps=False, site=report.to_dict()),
                file_name=f"pneumonia_report_site-{report.site}.html", mime="text/html", on_click="ignore",
                key="site_download_report", help="The whole results report (no heatmaps) plus a 'Your site' section; built on click.")

with adapt_tab:
    st.markdown("Adapt a model to your films **without labels**: a new model is written next to the others, with a card that "
                "says what it was adapted on. The original is never changed. Every number of the adapted model is computed "
                "after adapting, and says so.")
    st.markdown("\n".join(f"- **{key}**: {text}" for key, text in site_check.ADAPTATION_METHODS.items()))
    adapt_upload = st.file_uploader("Unlabelled films (ZIP)", key="adapt_upload")
    ready = [e for e in model_entries() if e.available and not e.card.get("adapted")]
    if not ready:
        st.info("No model to adapt; train the shipped models with `make models`.")
    else:
        left, right = st.columns(2)
        source_name = choose_model("Model", ready, key="adapt_model", container=left).name
        methods = right.multiselect("Methods", list(site_check.ADAPTATION_METHODS), default=["adabn"], key="adapt_methods")
        site_name = st.text_input("Site name (the new model is <model>-adapted-<site name>)", key="adapt_site_name")
        if st.button("Write the adapted model", key="adapt_run", disabled=adapt_upload is None or not methods or not site_name):
            try:
                films = site_check.read_site(adapt_upload.getvalue(), name=site_name, labelled=False)
                with st.spinner("Adapting and re-scoring the validation and test films…"):
                    path = site_check.adapt_model(next(e.path for e in ready if e.name == source_name), films, methods=methods,
                                                  site_name=site_name, models_dir=config.models_dir(),
                                                  data_root=st.session_state.get("data_root"))
            except ValueError as error:
                st.error(f"The model could not be adapted: {error}")
            else:
                card = registry.load_card(path)
                st.success(f"Wrote `{path.name}`: listed on every page like any other model. {card['metrics_note']}")
