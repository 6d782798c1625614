"""Activation maps: what each layer of a model responds to in one X-ray, and what its filters look for."""

from __future__ import annotations

import math

import streamlit as st

from core import config, explain
from core import predict as scoring
from core.imaging import InvalidImageError, decode_xray
from ui import enter_through_app, load_scorer, pick_model, read_sample

enter_through_app(__file__)

config.quiet_tensorflow()

MAPS_PER_PAGE = 16
GRID_COLUMNS = 4


@st.cache_data(show_spinner="Computing the layer's feature maps…", max_entries=32)
def feature_maps(model_dir: str, name: str, data: bytes, layer: str):
    """(activations (h, w, c), grey pixels of the input) for one file and layer."""
    scorer = load_scorer(model_dir)
    decoded = decode_xray(data, name=name)
    return explain.layer_activations(scorer.model, layer, scorer.prepare(decoded)), explain.as_the_model_frames_it(scorer.model, decoded.pixels)


@st.cache_data(show_spinner="Running gradient ascent for each filter…", max_entries=32)
def filter_images(model_dir: str, layer: str, filters: tuple[int, ...], steps: int):
    """Activation-maximisation images (k, H, W) in [0, 1]."""
    return explain.filter_visualisations(load_scorer(model_dir).model, layer, filters, steps=steps)


st.title("Activation maps")
st.caption("Feature maps show where each filter of a layer fires on this X-ray; filter visualisations show the input "
           "pattern each filter responds to most (activation maximisation by gradient ascent).")

entry = pick_model(key="activation_model")
model_dir = str(entry.path)

source = st.radio("Image", ["Real sample", "Upload"], horizontal=True, key="activation_source")
if source == "Upload":
    upload = st.file_uploader("One chest X-ray (PNG, JPEG or DICOM)", key="activation_upload")
    if upload is None:
        st.info("Upload an X-ray, or switch to **Real sample**.")
        st.stop()
    name, data = upload.name, upload.getvalue()
else:
    samples = scoring.gallery(st.session_state.get("data_root"))
    item = samples[[s.label for s in samples].index(st.selectbox("Sample", [s.label for s in samples], key="activation_sample"))]
    name, data = item.path.name, read_sample(str(item.path))

try:
    decode_xray(data, name=name)
except InvalidImageError as error:
    st.error(str(error))
    st.stop()

layers = explain.feature_layers(load_scorer(model_dir).model)
if not layers:
    st.info(f"{entry.display_name} has no layer with a spatial output (it is a dense network), so it has no feature maps.")
    st.stop()
blocks = list(dict.fromkeys(info.block for info in layers))
col_block, col_layer = st.columns(2)
block = col_block.selectbox("Block", blocks, index=len(blocks) - 1, key="activation_block")
in_block = [info for info in layers if info.block == block]
layer = in_block[[i.label for i in in_block].index(col_layer.selectbox("Layer (type, output shape)", [i.label for i in in_block],
                                                                       index=explain.default_layer_index(in_block),
                                                                       key=f"activation_layer_{block}"))]

activations, pixels = feature_maps(model_dir, name, data, layer.name)
st.subheader(f"Feature maps of {layer.name}")
col_sort, col_page = st.columns(2)
sort_by = col_sort.radio("Order", ["mean", "max", "index"], horizontal=True, key="activation_sort",
                         format_func={"mean": "strongest mean activation", "max": "strongest peak", "index": "filter number"}.get)
order = explain.channel_order(activations, by=sort_by)
pages = math.ceil(len(order) / MAPS_PER_PAGE)
page = col_page.number_input(f"Page (of {pages})", 1, pages, 1, key="activation_page")
shown = order[(page - 1) * MAPS_PER_PAGE: page * MAPS_PER_PAGE]
st.caption(f"{len(order)} filters, {activations.shape[0]}×{activations.shape[1]} px each; each map is scaled to its own "
           "range (dark = low, bright = high). Input shown at left.")
left, grid = st.columns([1, 3])
cropped = explain.crops_to_content(load_scorer(model_dir).model)
left.image(pixels, caption=f"{name}{' (cropped to its content box, as this model sees it)' if cropped else ''}", clamp=True,
           width="stretch")
with grid:
    for start in range(0, len(shown), GRID_COLUMNS):
        for column, channel in zip(st.columns(GRID_COLUMNS), shown[start: start + GRID_COLUMNS]):
            column.image(explain.colourise(activations[:, :, channel]), width="stretch",
                         caption=f"#{channel} · mean {activations[:, :, channel].mean():.2f}")

st.subheader(f"Filter visualisations of {layer.name}")
with st.form("filter_form"):
    col_count, col_steps = st.columns(2)
    count = col_count.slider("Filters (the first ones shown above)", 1, max(2, min(8, len(shown))), min(4, len(shown)))
    steps = col_steps.slider("Gradient-ascent steps", 5, explain.FILTER_VIS_MAX_STEPS, 20, 5)
    submitted = st.form_submit_button("Visualise filters")
if submitted or st.session_state.get("activation_filters_for") == (model_dir, layer.name):
    st.session_state["activation_filters_for"] = (model_dir, layer.name)
    chosen = tuple(int(c) for c in shown[:count])
    images = filter_images(model_dir, layer.name, chosen, steps)
    for column, channel, image in zip(st.columns(len(chosen)), chosen, images):
        column.image(image, caption=f"filter #{channel}", clamp=True, width="stretch")
    st.caption("Each image starts as flat grey plus noise and is changed, step by step, to excite one filter as much as "
               "possible (borders ignored). Early layers show edges and textures; deep layers show larger patterns.")
