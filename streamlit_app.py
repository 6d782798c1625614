"""Entry point of the dashboard: page config, navigation and the sidebar shared by every page."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core import config

config.quiet_tensorflow()

st.set_page_config(page_title="Pneumonia X-ray dashboard", page_icon="🫁", layout="wide")

PAGES = [
    ("pages/1_Overview.py", "Overview", "🏠"),
    ("pages/2_Dataset.py", "Dataset exploration", "🗂️"),
    ("pages/3_Model_comparison.py", "Model comparison", "📊"),
    ("pages/4_Threshold_explorer.py", "Threshold explorer", "🎚️"),
    ("pages/5_Prediction.py", "Prediction", "🩻"),
    ("pages/6_Activation_maps.py", "Activation maps", "🧠"),
]
APP_DIR = Path(__file__).resolve().parent

available_pages = [
    st.Page(path, title=title, icon=icon)
    for path, title, icon in PAGES
    if (APP_DIR / path).exists()
]

if "data_root" not in st.session_state:
    st.session_state["data_root"] = str(config.data_root())

with st.sidebar:
    st.text_input(
        "Dataset folder",
        key="data_root",
        help="A Kaggle-layout folder (train|val|test × NORMAL|PNEUMONIA) or an NIH ChestX-ray14 folder. "
        "Defaults to the shipped 224-px Kaggle set; the PNEUMONIA_DATA environment variable changes the default.",
    )
    st.caption("Decision support for research and teaching, not a diagnostic device.")

st.navigation(available_pages).run()
