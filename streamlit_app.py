"""Entry point of the dashboard: page config, navigation and the sidebar shared by every page."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core import config
from ui import follow_deep_link

config.quiet_tensorflow()

st.set_page_config(page_title="Pneumonia X-ray dashboard", page_icon=":material/pulmonology:", layout="wide")

PAGES = [
    ("pages/1_Overview.py", "Overview", ":material/home:"),
    ("pages/2_Dataset.py", "Dataset exploration", ":material/folder_open:"),
    ("pages/3_Model_comparison.py", "Model comparison", ":material/leaderboard:"),
    ("pages/4_Threshold_explorer.py", "Threshold explorer", ":material/tune:"),
    ("pages/5_Prediction.py", "Prediction", ":material/radiology:"),
    ("pages/6_Activation_maps.py", "Activation maps", ":material/layers:"),
    ("pages/7_Your_site.py", "Your site", ":material/local_hospital:"),
    ("pages/8_Monitoring.py", "Monitoring", ":material/monitoring:"),
]
APP_DIR = Path(__file__).resolve().parent

available_pages = [
    st.Page(path, title=title, icon=icon, default=index == 0)
    for index, (path, title, icon) in enumerate(p for p in PAGES if (APP_DIR / p[0]).exists())
]
# The navigation is drawn by hand below (st.page_link) and Streamlit's automatic one is hidden in
# .streamlit/config.toml: otherwise the pages/ folder's own listing can flash in the sidebar on first load.
navigation = st.navigation(available_pages, position="hidden")
follow_deep_link()

if "data_root" not in st.session_state:
    st.session_state["data_root"] = str(config.data_root())

with st.sidebar:
    for page in available_pages:
        st.page_link(page)
    st.divider()
    st.text_input(
        "Dataset folder",
        key="data_root",
        help="A Kaggle-layout folder (train|val|test × NORMAL|PNEUMONIA) or an NIH ChestX-ray14 folder. "
        "Defaults to the shipped 224-px Kaggle set; the PNEUMONIA_DATA environment variable changes the default.",
    )
    st.caption("Decision support for research and teaching, not a diagnostic device.")

navigation.run()
