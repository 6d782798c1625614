"""Overview: the landing page for people who have never seen a ROC curve, with a presentation mode and the report."""

from __future__ import annotations


import pandas as pd
import streamlit as st

from core import audit, config, report
from core.models import registry
from core.report import examples
from ui import enter_through_app, model_ranking

enter_through_app(__file__)

PRESENTATION_CSS = """
<style>
html, body, [data-testid="stAppViewContainer"] { font-size: 22px; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li { font-size: 1.35rem; line-height: 1.5; }
h1 { font-size: 3rem !important; } h2, h3 { font-size: 2.2rem !important; }
section[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stExpandSidebarButton"],
[data-testid="stSidebarNav"] { display: none !important; }
[class*="st-key-overview_section_"] { min-height: 88vh; padding-top: 4vh; border-bottom: 2px solid #d0d7de; }
.block-container { max-width: 1400px; }
[data-testid="stMetricLabel"], [data-testid="stMetricLabel"] * { white-space: normal !important; overflow: visible !important;
  text-overflow: clip !important; font-size: 1.3rem !important; height: auto !important; }
</style>
"""


# ------------------------------------------------------------------------------ cached data access
@st.cache_data(show_spinner="Bootstrapping 95% confidence intervals…")
def summary_on_test(models_dir: str, name: str, stamp: float) -> dict:
    return registry.model_summary(registry.get_model(name, models_dir), "test")


@st.cache_data(show_spinner=False)
def split_sizes(models_dir: str, name: str, stamp: float) -> dict[str, int]:
    test = registry.load_predictions(registry.get_model(name, models_dir), split="test")
    return {"pneumonia": int((test["label"] == 1).sum()), "normal": int((test["label"] == 0).sum())}


@st.cache_data(show_spinner=False)
def dataset_counts(data_root: str) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    return report.dataset_counts(data_root)


@st.cache_data(show_spinner=False, max_entries=8, ttl=60)
def stored_examples(model_dir: str, stamp: float, threshold: float) -> tuple[list[dict], str]:
    """The example X-rays stored with the model (core.report.examples: PNGs + JSON, no TensorFlow), or none and why."""
    try:
        cases = examples.load_examples(model_dir, threshold=threshold)
    except examples.ExamplesUnavailableError as exc:
        return [], str(exc)
    return [dict(kind=e.kind, caption=e.caption, path=e.path, label=e.label, score=e.score, png=e.png, heatmap=e.heatmap,
                 note=e.note) for e in cases], ""


def what_changed(models_dir: str, name: str) -> list[str]:
    change = report.recommendation_change(models_dir, name)  # kept by core per state of the files
    return change.sentences() if change else []


@st.cache_data(show_spinner=False, ttl=60)
def dataset_audit(data_root: str) -> dict | None:
    return audit.load_dataset_audit(data_root)


@st.cache_data(show_spinner=False, max_entries=4)
def report_html(models_dir: str, data_root: str, signature: tuple, heatmaps: bool) -> bytes:
    return report.build_report(models_dir, data_root, heatmaps=heatmaps).encode("utf-8")


# ------------------------------------------------------------------------------ page
models_dir = str(config.models_dir())
data_root = str(st.session_state.get("data_root") or config.data_root())
presentation = st.toggle("Presentation mode (large type, no sidebar, one idea per screen)", key="overview_presentation")
if presentation:
    st.html(PRESENTATION_CSS)

with st.container(key="overview_section_intro"):
    st.title("Can a computer help spot pneumonia on a child's chest X-ray?")
    st.markdown(
        "This tool scores a **child's chest X-ray** for signs of pneumonia and shows **which parts of the image** "
        "drove the score.\n\n"
        f"- **What it was built from:** X-rays of children aged one to five from **one hospital**, {report.DATA_CENTRE}.\n"
        "- **What it is:** decision support for research and teaching: a second pair of eyes that flags images for review.\n"
        "- **What it is not:** a diagnosis, or a medical device. It has not been tested on adults, on other hospitals' "
        "machines, or against confirmed clinical outcomes. A clinician reads every image."
    )

with st.container(key="overview_section_data"):
    st.header("The data, in one picture")
    try:
        images, patients, n_patients = dataset_counts(data_root)
    except (OSError, ValueError) as exc:
        dataset_ok = False
        st.warning(f"The dataset folder `{data_root}` cannot be read ({exc}). Choose another folder in the sidebar.")
    else:
        dataset_ok = True
        st.markdown(
            f"**{int(images['total'].sum()):,} X-rays** of **{n_patients:,} children** (distinct patient ids). "
            "The models learned from the training images, were tuned on the validation images (a separate set of "
            "children) and are judged on the **test** images, which they never saw while being built."
        )
        # Plain HTML bars: the landing page loads no charting library in the browser.
        st.html(report.dataset_bars_html(images, patients))

ranked = model_ranking()
if ranked.empty:
    st.info(f"No usable trained model in `{models_dir}` yet. Train the shipped set with `make models`; "
            "the rest of this page appears when a model is there.")
    st.stop()
entry = registry.get_model(report.recommended_name(ranked), models_dir)
stamp = entry.stamp

with st.container(key="overview_section_model"):
    st.header("The recommended model")
    st.markdown(
        f"### {entry.display_name}\n"
        f"{report.recommendation_reason(ranked, entry.name)} The test images played no part in the choice.\n\n"
        f"It flags an X-ray when its score is at least **{entry.threshold:.3f}**; that threshold was also chosen on the "
        f"validation split ({entry.threshold_rule})."
    )
    with st.expander("All models ranked on the validation split"):
        st.dataframe(report.ranking_display(ranked), hide_index=True, key="overview_ranking")

summary = summary_on_test(models_dir, entry.name, stamp)
sizes = split_sizes(models_dir, entry.name, stamp)
freq = report.natural_frequencies(summary, split="test", n_pneumonia=sizes["pneumonia"], n_normal=sizes["normal"])

with st.container(key="overview_section_frequencies"):
    st.header("What that means per 100 X-rays (TEST split)")
    sick, healthy = st.columns(2, gap="large")
    with sick:
        st.metric("Of 100 X-rays WITH pneumonia, it flags", f"{freq.caught:.0f}",
                  help="Sensitivity × 100, measured on the TEST split.")
        st.html(report.icon_array_html(freq.caught, colour="#1a7f37", label="green = flagged, grey = missed"))
        st.caption(f"95% CI {freq.caught_low:.0f}–{freq.caught_high:.0f} (TEST split, {freq.n_pneumonia} X-rays with pneumonia).")
    with healthy:
        st.metric("Of 100 X-rays WITHOUT pneumonia, it wrongly flags", f"{freq.false_alarms:.0f}",
                  help="(1 − specificity) × 100, measured on the TEST split.")
        st.html(report.icon_array_html(freq.false_alarms, colour="#d1242f", label="red = false alarm, grey = correctly not flagged"))
        st.caption(f"95% CI {freq.false_alarms_low:.0f}–{freq.false_alarms_high:.0f} (TEST split, {freq.n_normal} X-rays without).")
    st.markdown(" ".join(freq.sentences()))
    st.markdown(report.PUBLISHED_BASELINE)
    st.caption(
        "95% confidence intervals: bootstrap over the test images (the same numbers as the Model comparison page). "
        "How many flagged children really have pneumonia depends on how common it is where the tool is used: "
        "try it on the Threshold explorer page."
    )

changes = what_changed(models_dir, entry.name)
if changes:
    with st.container(key="overview_section_change"):
        st.header("What changed with the last recommendation")
        st.markdown("\n".join(f"- {sentence}" for sentence in changes))
        st.caption("Both models on the same TEST films, each at its own validation-chosen threshold; 95% bootstrap CIs, "
                   "and the difference from one resample of films for both.")

with st.container(key="overview_section_audit"):
    findings = audit.plain_findings(dataset_audit(data_root), entry.display_name, entry.card.get("audit"))
    if findings:
        st.header("Why it does worse on the test X-rays")
        st.markdown("\n".join(f"- {sentence}" for sentence in findings))
        st.caption("From the audit of the data (Dataset page) and of this model (its model card): `python -m core.audit`.")

with st.container(key="overview_section_examples"):
    # Written with the model (python -m core.report.examples), so this page never loads TensorFlow.
    st.header("Three X-rays from the TEST split")
    cases, why_none = stored_examples(str(entry.path), stamp, entry.threshold)
    with_heatmaps = any(case["heatmap"] for case in cases)
    if not cases:
        st.info(f"No example X-rays to show for {entry.display_name}. {why_none}")
    else:
        st.markdown(f"One typical case of each outcome at the threshold {entry.threshold:.3f}"
                    + (", with the **Grad-CAM** heatmap (red = regions that pushed the score towards pneumonia)."
                       if with_heatmaps else "."))
    for note in sorted({case["note"] for case in cases if case["note"]}):
        st.caption(f"Shown without heatmap: {note}")
    for column, case in zip(st.columns(max(1, len(cases))), cases):
        truth = config.CLASS_NAMES[case["label"]]
        column.image(case["png"], width="stretch")
        column.markdown(f"**{case['kind'].capitalize()}**: {case['caption']}  \nTruth {truth}, score {case['score']:.3f}.")
        column.caption(case["path"])

with st.container(key="overview_section_glossary"):
    st.header("Words you will meet")
    left, right = st.columns(2, gap="large")
    for i, (term, meaning) in enumerate(report.GLOSSARY):
        (left if i % 2 == 0 else right).markdown(f"**{term}**: {meaning}")

with st.container(key="overview_section_provenance"):
    st.header("Where the data comes from, and the limits")
    st.markdown(
        f"{report.DATA_CITATION} doi:[{report.DATA_DOI}]({report.DATA_DOI_URL}). "
        f"Licence: [{report.DATA_LICENCE}]({report.DATA_LICENCE_URL}). Resized to 224×224 for this project."
    )
    with st.expander("Limitations"):
        st.markdown("\n".join(f"- {item}" for item in report.LIMITATIONS))
    with st.expander(f"Model card: {entry.display_name}"):
        card_md = audit.shown_card_markdown(entry)
        if card_md:
            st.markdown(card_md)
        else:
            st.json(entry.card)
    st.download_button(
        "Download report (one HTML file, opens offline)",
        data=lambda: report_html(models_dir, data_root, registry.models_signature(models_dir), with_heatmaps),
        file_name="pneumonia_report.html",
        mime="text/html",
        on_click="ignore",
        icon="📄",
        key="overview_download_report",
        disabled=not dataset_ok,
        help="Dataset summary, all models with 95% CIs, ROC/PR/calibration curves, the operating point, example heatmaps "
        "(the ones stored with the model) and limitations; built on click.",
    )
