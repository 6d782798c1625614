"""Prediction: upload chest X-rays (or pick real samples), score them, and see why the model decided."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import config, explain
from core import predict as scoring
from core.imaging import resize_for_display, to_uint8
from core.lungs import masks as lung_evidence_view
from ui import enter_through_app, load_scorer, lung_evidence, operating_point, pacs, pick_model, read_sample
from ui import prediction as prediction_ui
from ui.prediction import at_threshold, deletion_figure, deletion_test, explain_image, load_guard, score_files

enter_through_app(__file__)

config.quiet_tensorflow()
DISPLAY_SIDE = 1024  # longest side (px) of the images drawn on the page; downloads keep the full resolution


# ----------------------------------------------------------------------------------------- page
st.title("Prediction")
st.caption("Score a chest X-ray with a trained model and see which regions drove the score. "
           "Uploads stay in memory; nothing is written to disk and DICOM patient tags are never read into the app.")

# The model of the operating point the user adopted (Threshold explorer, Your site), else the recommended one.
entry = pick_model(key="prediction_model", default=(operating_point.adopted() or {}).get("model"))
model_dir = str(entry.path)
threshold, threshold_source = operating_point.show_in_force(entry)

source = st.radio("Images", ["Upload files", "Real samples", "From PACS"], horizontal=True, key="prediction_source")
if source == "From PACS":  # the hospital's archive: search, score, send the result back (ui/pacs.py)
    pacs.from_pacs(entry, load_scorer(model_dir), load_guard(model_dir), threshold, threshold_source)
    st.stop()
files: list[tuple[str, bytes]] = []
truths: dict[str, str] = {}
if source == "Upload files":
    uploads = st.file_uploader("Chest X-rays (PNG, JPEG or DICOM); several at once are scored together",
                               accept_multiple_files=True, key="prediction_upload")
    files = scoring.unique_names([(upload.name, upload.getvalue()) for upload in uploads or []])
else:
    samples = scoring.gallery(st.session_state.get("data_root"))
    labels = [item.label for item in samples]
    chosen = st.multiselect("Shipped real X-rays (Kaggle test set, pydicom test data, NIH ChestX-ray14)", labels,
                            default=labels[:1], key="prediction_samples")
    for item in samples:
        if item.label in chosen:
            files.append((item.path.name, read_sample(str(item.path))))
            truths[item.path.name] = item.truth
if not files:
    st.info("Upload one or more X-rays, or switch to **Real samples**.")
    st.stop()

fix_inverted = bool(st.session_state.get("prediction_fix_inverted", False))
results = at_threshold(score_files(model_dir, tuple(files), fix_inverted), threshold)
pacs.record_uploads(entry, files, results, threshold_source)  # one audit-trail row per scored file, written once
scored = [r for r in results if r.status == "ok"]
if fix_inverted or any(r.verdict is not None and r.verdict.inverted for r in scored):
    st.checkbox("Score films that look inverted (white lungs, dark bones) the right way up", key="prediction_fix_inverted",
                help="A negative film, e.g. a MONOCHROME1 image exported without inversion, is scored with its grey scale reversed.")
for result in results:
    if result.status == "error":
        st.error(f"**{result.name}** could not be scored. {result.error}")

if len(results) > 1:
    st.subheader(f"Results for {len(results)} files ({len(scored)} scored, {len(results) - len(scored)} refused)")
    table = pd.DataFrame([r.row() for r in results]).rename(columns={"probability": "score"})
    if truths:
        table.insert(1, "known label", [truths.get(r.name, "") for r in results])
    st.dataframe(table, hide_index=True, width="stretch")
    st.download_button("Download the results (CSV)", table.to_csv(index=False).encode(), file_name="predictions.csv", mime="text/csv")
if not scored:
    st.stop()

result = scored[0] if len(scored) == 1 else scored[[r.name for r in scored].index(
    st.selectbox("Look at one file in detail", [r.name for r in scored], key="prediction_detail"))]
data = dict(files)[result.name]

st.subheader(result.name)
guard, upright = result.verdict, bool(result.metadata.get("inverted_by_guard"))
prediction_ui.show_verdict(result, threshold, truths.get(result.name), entry)


def download_result(explanation: dict | None) -> None:
    """The file's metadata, then its result as JSON (decision, threshold and its source, the guard's verdict)."""
    with st.expander("File information (non-identifying)"):
        st.json(result.metadata)
    extra = {"known_label": truths.get(result.name), "explanation": explanation,
             "out_of_distribution": {"status": guard.status, "flagged": guard.flagged, "reasons": list(guard.reasons),
                                     "details": list(guard.details), "inverted": guard.inverted, "scored_upright": upright}}
    st.download_button("Download this result (JSON)", scoring.result_json(result, model=entry.name, threshold_source=threshold_source,
                                                                          extra=extra),
                       file_name=f"{result.name}.json", mime="application/json")


if result.withheld and not st.toggle("Show a heatmap anyway (of a score that means nothing here)", key="prediction_heatmap_anyway"):
    download_result(None)
    st.stop()

methods = explain.available_methods(load_scorer(model_dir).model)
if not methods:
    st.info("No explanation method applies to this model (an ensemble without convolutional members).")
    st.stop()
col_method, col_target = st.columns(2)
method = col_method.selectbox("Explanation method", methods, format_func=explain.METHODS.get,
                              help="Grad-CAM is fast and the default; Score-CAM needs one model pass per channel (bounded).",
                              key=f"prediction_method_{entry.name}")
target_label = col_target.radio("Explain the evidence for", list(config.CLASS_NAMES), horizontal=True,
                                index=config.CLASS_NAMES.index(result.decision) if result.decision in config.CLASS_NAMES else 1,
                                key=f"prediction_target_{result.name}")
if methods == ["smoothgrad"]:
    st.caption("This model has no convolutional layer, so only the pixel saliency (SmoothGrad) is available.")
elif methods == ["gradcam"]:
    st.caption("This model is an ensemble: its heatmap is the mean of its convolutional members' Grad-CAMs.")
heatmap = explain_image(model_dir, result.name, data, method, target_label.lower(), upright)


# Shown at screen size: a 3000-px DICOM is shrunk and encoded once per full run, not on every opacity move.
shown_pixels = resize_for_display(result.pixels, DISPLAY_SIDE)
original_png = explain.to_png(to_uint8(shown_pixels))
lungs = lung_evidence(shown_pixels, heatmap)  # the lungs' outline and the share of the evidence inside them


@st.fragment
def overlay_view() -> None:
    """Original next to the overlay; only this part reruns when the opacity moves (nothing is decoded, scored or
    explained again: the overlay is blended at screen size, the full-size PNG is made only if downloaded)."""
    opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.45, 0.05, key="prediction_opacity")
    overlay = lung_evidence_view.outline_lungs(explain.overlay(shown_pixels, heatmap, opacity=opacity), lungs)
    left, right = st.columns(2)
    left.image(original_png, caption=f"Original ({result.pixels.shape[1]}×{result.pixels.shape[0]} px)", width="stretch")
    right.image(overlay, caption=f"{explain.METHODS[method]} for {target_label} (red = most influential). "
                f"{lung_evidence_view.caption(lungs)}", width="stretch")
    st.download_button("Download the overlay (PNG)", lambda: explain.to_png(explain.overlay(result.pixels, heatmap, opacity=opacity)),
                       file_name=f"{result.name}_{method}.png", mime="image/png", on_click="ignore")


overlay_view()

st.markdown("**Can this heatmap be trusted?** (deletion test)")
curve = None
# On demand: one model pass per deletion step, for every upload of every user, is the page's most expensive part.
if st.toggle("Run the deletion test on this heatmap (one model pass per deletion step)", key="prediction_deletion"):
    curve = deletion_test(model_dir, result.name, data, method, target_label.lower(), upright)
    st.plotly_chart(deletion_figure(curve), width="stretch")
    verdict = curve.verdict()
    (st.success if verdict.startswith("Faithful") else st.warning if verdict.startswith("Not") else st.info)(verdict)
    st.caption(f"The most highlighted pixels are replaced step by step by a {curve.baseline}; a faithful heatmap makes the "
               "model's log-odds for the class fall faster than replacing random pixels (log-odds, not probabilities, so that a "
               "confident score of 1.000 still shows what the blurring removed).")
else:
    st.caption("Replaces the most highlighted pixels step by step and checks that the score falls faster than when "
               "random pixels are replaced. Off until asked for (it stays on for your next images).")

download_result({"method": method, "target": target_label} | ({} if curve is None else {
    "deletion_area": curve.area, "random_deletion_area": curve.random_area, "faithful": curve.faithful}))
