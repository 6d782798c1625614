"""Pieces of the Prediction page: cached scoring, heatmaps and the deletion test, and the verdict of one film."""

from __future__ import annotations

import dataclasses

import plotly.graph_objects as go
import streamlit as st

from core import config, explain
from core import guard as ood
from core import predict as scoring
from core.guard import scope
from core.imaging import decode_xray, inversion
from core.models import registry
from ui import load_scorer


@st.cache_resource(show_spinner=False)
def load_guard(model_dir: str):
    """The model's out-of-distribution calibration (None when it has none)."""
    return ood.load_calibration(model_dir)


@st.cache_data(show_spinner="Reading and scoring…", max_entries=32)
def score_files(model_dir: str, files: tuple[tuple[str, bytes], ...], fix_inverted: bool = False) -> list[scoring.ImageResult]:
    """Decode in memory, run the guard and score every file; bad files come back with the decoder's message.
    With fix_inverted, films that look inverted are scored the right way up.

    Keyed on the model and the files' bytes only, so every session uploading the same files shares one scoring, and
    a new threshold re-scores nothing (the page applies it with `at_threshold`).
    """
    return scoring.score_uploads(load_scorer(model_dir), list(files), guard=True, calibration=load_guard(model_dir),
                                 fix_inverted=fix_inverted)


def model_input(model_dir: str, name: str, data: bytes, upright: bool):
    """The model input of one file, turned the right way up when the guard did so for scoring."""
    decoded = decode_xray(data, name=name)
    return load_scorer(model_dir).prepare(inversion.invert(decoded) if upright else decoded)


def at_threshold(results: list[scoring.ImageResult], threshold: float) -> list[scoring.ImageResult]:
    """The same results, decided at `threshold` (copies: the cached ones are shared between sessions)."""
    return [dataclasses.replace(result, threshold=threshold) for result in results]


@st.cache_data(show_spinner="Computing the heatmap…", max_entries=64)
def explain_image(model_dir: str, name: str, data: bytes, method: str, target: str, upright: bool = False):
    """Heatmap (H, W) in [0, 1] at the model input resolution for one file."""
    return explain.explain(load_scorer(model_dir).model, model_input(model_dir, name, data, upright), method=method, target=target)


@st.cache_data(show_spinner="Testing the heatmap's faithfulness (one model pass per deletion step)…", max_entries=64)
def deletion_test(model_dir: str, name: str, data: bytes, method: str, target: str, upright: bool = False):
    """The deletion curve (log-odds of the explained class) of the heatmap of one file."""
    scorer = load_scorer(model_dir)
    heatmap = explain_image(model_dir, name, data, method, target, upright)
    return explain.deletion_curve(scorer.predict_batch, model_input(model_dir, name, data, upright), heatmap, target=target,
                                  logit_batch=explain.logit_function(scorer.model))


def deletion_figure(curve) -> go.Figure:
    """The deletion curve against the random-order reference."""
    figure = go.Figure()
    figure.add_scatter(x=curve.fractions, y=curve.scores, mode="lines+markers", name=f"highlighted first (mean change {curve.area:+.2f})")
    figure.add_scatter(x=curve.fractions, y=curve.random_scores, mode="lines", name=f"random order (mean change {curve.random_area:+.2f})",
                       line={"dash": "dash"})
    figure.update_layout(height=300, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h", "y": -0.3},
                         xaxis_title="fraction of pixels blurred", yaxis_title="log-odds of the explained class")
    return figure


def show_verdict(result: scoring.ImageResult, threshold: float, truth: str | None, entry: registry.ModelEntry) -> None:
    """The film's outcome, reason first: no decision outside the models' scope (raw score on request only), else the
    score and the decision; what decoding did; the guard's warnings in plain words, its numbers in an expander."""
    guard = result.verdict
    if result.withheld:  # not a paediatric chest film: the reason first, no verdict, the raw score only on request
        st.error(result.sentence, icon=":material/block:")
        st.metric("Decision", "Withheld", help="The guard says this image is outside what the model was built for.")
        if st.toggle("Show the raw score anyway (meaningless for this image)", key="prediction_raw_score"):
            st.caption(f"Raw model output {result.probability:.3f}: not a score of pneumonia for an image like this one.")
    else:
        col_score, col_decision = st.columns(2)
        col_score.metric("Pneumonia score", f"{result.probability:.3f}",
                         help="The model's output between 0 and 1, not a calibrated probability: the calibration plot on the "
                              "Model comparison page shows these scores are overconfident. Only its side of the threshold counts.")
        col_decision.metric(f"Decision at threshold {threshold:.3f}", result.decision)
        st.write(result.sentence)
    if truth:
        st.caption(f"Known label of this sample: **{truth}**.")
    for note in result.metadata.get("notes", []):  # what decoding did: bit depth rescaled, DICOM encoding inferred, ...
        st.info(note, icon="ℹ️")

    if guard.flagged:
        plain = scope.plain_reasons(guard)
        if not result.withheld:
            st.warning("This image does not look like the chest X-rays the model was trained and validated on, so its score "
                       "may mean little. " + " ".join(plain), icon="⚠️")
        with st.expander("What the guard measured"):
            st.markdown("\n".join(f"- {detail}" for detail in guard.details))
    elif guard.every_check_passed:  # the only place that reassures: every check ran, the model's own included, and passed
        st.caption("Out-of-distribution guard: every check passed; the image looks like the validation X-rays this model was checked on.")
    else:
        st.info("The model-independent checks passed, but this model has no out-of-distribution calibration (no ood.npz; create it "
                f"with `python -m core.guard {entry.path.relative_to(config.PROJECT_ROOT) if entry.path.is_relative_to(config.PROJECT_ROOT) else entry.path}`), "
                "so it cannot be said that the image looks like the X-rays it was validated on.")
