"""Dataset exploration: what the models learn from, how it is split, and what could leak (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core import config, data, imaging
from core.data import summary as dataset_summary
from ui import dataset as dataset_ui
from ui import enter_through_app
from ui.dataset import CLASS_COLOURS, counts_bar, counts_sentence, fmt

enter_through_app(__file__)

SPLIT_LABELS = {"train": "train", "val": "validation", "test": "test (official)"}
SAMPLE_GRID_SIZE = 12


# ------------------------------------------------------------------------------ cached data access
@st.cache_data(show_spinner=False, ttl=30)
def fingerprint(root: str) -> str:
    return data.dataset_fingerprint(root)


@st.cache_data(show_spinner="Indexing the dataset folder…")
def load_index(root: str, stamp: str) -> pd.DataFrame:
    return data.load_index(root)


@st.cache_data(show_spinner="Summarising the dataset: duplicates, intensities, mean images (first time only)…")
def load_summary(root: str, stamp: str) -> dataset_summary.DatasetSummary:
    return dataset_summary.summarize(root)


@st.cache_data(show_spinner=False, max_entries=512)
def load_thumbnail(path: str) -> np.ndarray | None:
    try:
        return imaging.thumbnail(path, max_side=224)
    except imaging.InvalidImageError:
        return None


# ------------------------------------------------------------------------------ page
st.title("Dataset exploration")
root = str(st.session_state.get("data_root") or config.data_root())
st.caption(f"Folder: `{root}` (change it in the sidebar)")

root_path = Path(root).expanduser()
if not root_path.is_dir():
    st.error(f"The dataset folder `{root}` does not exist.")
    st.info("Type an existing folder in the sidebar, set the PNEUMONIA_DATA environment variable, "
            f"or clear the field to go back to the shipped set (`{config.data_root()}`).")
    st.stop()
if not any(root_path.iterdir()):
    st.warning(f"The dataset folder `{root}` is empty.")
    st.info("Copy a Kaggle-layout dataset into it (train/, test/ with NORMAL/ and PNEUMONIA/ inside) "
            "or an NIH ChestX-ray14 folder with Data_Entry_2017.csv.")
    st.stop()
try:
    stamp = fingerprint(root)
    index = load_index(root, stamp)
except ValueError as error:
    st.error(str(error))
    st.stop()

folder_counts = data.split_counts(index, by="folder_split")
split_counts = data.split_counts(index)

# --- headline -------------------------------------------------------------------------------------
cols = st.columns(5)
cols[0].metric("Images", fmt(len(index)))
cols[1].metric("Patients", fmt(index["patient"].nunique()))
for col, split in zip(cols[2:], data.SPLITS):
    if split in split_counts.index:
        col.metric(f"{SPLIT_LABELS[split].capitalize()} images", fmt(split_counts.loc[split, "total"]))
st.markdown(f"On disk: {counts_sentence(folder_counts)}.")

# --- counts ---------------------------------------------------------------------------------------
st.header("Images per split and class")
left, right = st.columns(2)
with left:
    st.plotly_chart(counts_bar(folder_counts, "As found in the folder"), width="stretch")
    st.dataframe(folder_counts, width="stretch")
with right:
    st.plotly_chart(
        counts_bar(split_counts, f"After the validation split ({config.VALIDATION_FRACTION:.0%} of train patients, seed {config.SPLIT_SEED})"),
        width="stretch",
    )
    st.dataframe(split_counts, width="stretch")
st.caption(
    "The validation split is carved from train, grouped by patient (no patient is on both sides) and stratified "
    "by class; Kaggle's 16-image official val/ folder, when present, is folded into that pool first. Model "
    "choices and thresholds are made on validation; the official test split is kept as published so results "
    "compare with Kermany et al. 2018."
)

subtypes = dataset_summary.subtype_counts(index)
patients = dataset_summary.patient_counts(index)
left, right = st.columns(2)
with left:
    st.subheader("Pneumonia subtype (from the file name)")
    long = subtypes.reset_index().melt(id_vars="split", var_name="subtype", value_name="images")
    figure = px.bar(long, x="split", y="images", color="subtype", text="images",
                    color_discrete_map={"normal": "#2b8a3e", "bacteria": "#e67700", "virus": "#862e9c", "unknown": "#868e96"})
    figure.update_layout(height=320, margin=dict(t=10, b=10), legend_title_text="")
    st.plotly_chart(figure, width="stretch")
with right:
    st.subheader("Patients per split and class")
    st.dataframe(patients, width="stretch")
    per_patient = index.groupby(["label_name", "patient"]).size().groupby("label_name").mean()
    st.caption("Images per patient on average: "
               + ", ".join(f"{name} {value:.2f}" for name, value in per_patient.items())
               + ". Splitting by image instead of by patient would let the same child appear in train and validation.")

# --- everything below needs the (cached) summary ---------------------------------------------------
summary = load_summary(root, stamp)

st.header("Leakage and duplicates")
leak = summary.leakage
train_test = int(summary.crossing_patients["splits"].str.contains("test").sum()) if not summary.crossing_patients.empty else 0
cols = st.columns(4)
cols[0].metric("Groups of identical images", fmt(leak["duplicate_groups"]), help=f"{fmt(leak['duplicate_images'])} images in total (identical decoded pixels)")
cols[1].metric("…of which span two splits", fmt(leak["duplicate_groups_crossing_splits"]))
cols[2].metric("Patients in train and validation", fmt(leak["patients_crossing_train_val"]))
cols[3].metric("Patient ids also in test", fmt(train_test), help="Ids found both in train/validation and in the official test folder (see below)")
if leak["duplicate_groups_crossing_splits"] == 0:
    st.success("Every group of identical images stays inside one split, and no patient is in both train and validation.")
else:
    st.error("Some identical images sit in different splits: scores on those splits are optimistic. See the table below.")
if train_test:
    st.info(
        f"{fmt(train_test)} patient ids occur both in the training folders and in the official test folder. "
        "The Kaggle test files reuse the same numbering; none of those images is pixel-identical to a training "
        "image, and the file name alone cannot tell whether it is the same child. The official test split is kept "
        "as published (as in Kermany et al.) and this overlap is reported rather than hidden."
    )
with st.expander("Duplicate groups and crossing patients"):
    st.markdown("**Groups of identical images** (after the validation split)")
    st.dataframe(summary.duplicates.drop(columns="hash"), width="stretch", hide_index=True)
    st.markdown("**Patient ids found in more than one split**")
    st.dataframe(summary.crossing_patients, width="stretch", hide_index=True)


@st.fragment
def sample_grid() -> None:
    st.header("Sample images")
    c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
    splits = c1.multiselect("Split", [s for s in data.SPLITS if s in set(index["split"])], default=None, placeholder="all splits")
    classes = c2.multiselect("Class", list(config.CLASS_NAMES), default=None, placeholder="both classes")
    subtypes_present = [s for s in data.SUBTYPES if s in set(index["subtype"])]
    chosen_subtypes = c3.multiselect("Subtype", subtypes_present, default=None, placeholder="all subtypes")
    if c4.button("🎲 Reseed", width="stretch"):
        st.session_state["dataset_sample_seed"] = st.session_state.get("dataset_sample_seed", 0) + 1
    seed = st.session_state.get("dataset_sample_seed", 0)
    rows = dataset_summary.sample_rows(index, n=SAMPLE_GRID_SIZE, seed=seed, splits=splits or None,
                                       classes=classes or None, subtypes=chosen_subtypes or None)
    if rows.empty:
        st.info("No image matches these filters.")
        return
    st.caption(f"{len(rows)} random images (seed {seed}); each caption gives class, subtype, split and patient.")
    grid = st.columns(6)
    for position, row in enumerate(rows.itertuples(index=False)):
        picture = load_thumbnail(row.path)
        with grid[position % 6]:
            if picture is None:
                st.warning(f"{row.relpath}: unreadable")
            else:
                st.image(picture, caption=f"{row.label_name} · {row.subtype} · {row.split} · {row.patient}", width="stretch")


sample_grid()

st.header("Intensity statistics")
st.caption(f"Over a seeded sample of {summary.sample_per_class} images per class from all splits, decoded to grey in [0, 1].")
names = list(summary.mean_images)
cols = st.columns(len(names) + 1)
for col, name in zip(cols, names):
    col.image(imaging.to_uint8(summary.mean_images[name]), caption=f"Mean {name} image", width="stretch")
if {"NORMAL", "PNEUMONIA"} <= set(names):
    difference = summary.mean_images["PNEUMONIA"] - summary.mean_images["NORMAL"]
    figure = px.imshow(difference, color_continuous_scale="RdBu_r", zmin=-np.abs(difference).max(), zmax=np.abs(difference).max())
    figure.update_layout(height=300, margin=dict(t=30, b=0, l=0, r=0), title="PNEUMONIA − NORMAL")
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    cols[-1].plotly_chart(figure, width="stretch")

left, right = st.columns(2)
with left:
    hist = summary.histograms
    figure = go.Figure()
    for name in names:
        figure.add_trace(go.Scatter(x=(hist["bin_left"] + hist["bin_right"]) / 2, y=hist[name], name=name,
                                    mode="lines", line=dict(color=CLASS_COLOURS.get(name))))
    figure.update_layout(title="Pixel intensity histogram", xaxis_title="grey value (0 = black, 1 = white)",
                         yaxis_title="share of pixels", height=340, margin=dict(t=50, b=10))
    st.plotly_chart(figure, width="stretch")
with right:
    figure = px.box(summary.image_stats, x="label_name", y="mean", color="label_name", points="outliers",
                    color_discrete_map=CLASS_COLOURS, title="Mean grey value per image",
                    labels={"label_name": "", "mean": "mean grey value"})
    figure.update_layout(height=340, margin=dict(t=50, b=10), showlegend=False)
    st.plotly_chart(figure, width="stretch")



dataset_ui.audit_section(root, stamp)
dataset_ui.robustness_section()

st.header("Image sizes")
sizes = summary.size_counts
if len(sizes) == 1:
    st.markdown(f"All {fmt(sizes['count'].iloc[0])} images are {sizes['width'].iloc[0]}×{sizes['height'].iloc[0]} pixels.")
else:
    figure = px.scatter(sizes, x="width", y="height", size="count", hover_data=["count"], title="Width × height (pixels)")
    figure.update_layout(height=380)
    st.plotly_chart(figure, width="stretch")
st.dataframe(sizes.head(20), width="stretch", hide_index=True)

st.header("Provenance and licence")
st.markdown(
    """
The shipped set is the Kaggle **Chest X-Ray Images (Pneumonia)** collection: paediatric anterior-posterior chest
radiographs (children aged one to five) from Guangzhou Women and Children's Medical Center, labelled by
physicians. The copy in `data/chest_xray` keeps the original file names and official train/test splits, resized
to 224×224 JPEG.

Kermany D., Zhang K., Goldbaum M. (2018). *Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images for
Classification*. Mendeley Data, v2. [doi:10.17632/rscbjbr9sj.2](https://doi.org/10.17632/rscbjbr9sj.2).
Licence: [CC BY 4.0](https://creativecommons.org/licenses/by/4.0/). See `data/README.md` for the DICOM and NIH
samples and how to point the dashboard at another folder.
"""
)
st.caption(f"Dataset fingerprint `{summary.fingerprint}` (file names and sizes) · summary computed in {summary.seconds:.1f} s"
           + (" · read from cache" if summary.from_cache else ""))
