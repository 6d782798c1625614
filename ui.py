"""Streamlit pieces shared by several pages: the cached model loader, shipped sample bytes, the model picker.

Pages stay layout only; this module holds the few widgets and caches that two pages would otherwise repeat.
"""

from __future__ import annotations

import streamlit as st

from core import predict as scoring
from core import registry


@st.cache_resource(show_spinner="Loading the model…")
def load_scorer(model_dir: str) -> scoring.Scorer:
    """One Scorer per model, shared by every session and every page (thread-safe)."""
    return scoring.load_scorer(model_dir)


@st.cache_data(show_spinner=False)
def read_sample(path: str) -> bytes:
    """Bytes of a shipped sample file."""
    with open(path, "rb") as handle:
        return handle.read()


def pick_model(*, key: str, default: str | None = None) -> registry.ModelEntry:
    """A model select box over the usable models, the unusable ones listed with their reason.

    Stops the page with a message when no model is usable, or when the chosen one cannot be loaded.
    """
    entries = registry.list_models()
    models = [entry for entry in entries if entry.available]
    for unavailable in (entry for entry in entries if not entry.available):
        st.caption(f":gray[Unavailable: {unavailable.name} — {unavailable.reason}]")
    if not models:
        st.warning("No trained model is available. Train the shipped models with `make models` "
                   "(or `python train.py`) and reload this page.")
        st.stop()
    names = [entry.name for entry in models]
    chosen = st.selectbox("Model", names, index=names.index(default) if default in names else 0,
                          format_func=lambda name: models[names.index(name)].display_name, key=key)
    entry = models[names.index(chosen)]
    try:
        load_scorer(str(entry.path))
    except ValueError as error:  # registry.ModelUnavailableError, or a card that does not match its model
        st.error(f"**{entry.display_name}** cannot be used: {error}")
        st.stop()
    return entry
