"""Streamlit pieces shared by the pages: deep-link entry, the cached model loader, sample bytes, the model picker.

Pages stay layout only; this module holds the few widgets and caches that two pages would otherwise repeat.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core import config
from core.models import registry
from core import predict as scoring
from core.report import RECOMMENDED_MARK, recommended_label  # noqa: F401  (how every model list marks the recommended one)

APP_SHELL_KEY = "app_shell"
"""Session-state flag set by streamlit_app.py on every run: the navigation and the sidebar are in place."""
DEEP_LINK_KEY = "deep_link"
"""Session-state key holding the page a deep link asked for, while the request goes through the entry point."""


def enter_through_app(page_file: str) -> None:
    """Send a page that runs without the app's entry point through streamlit_app.py, then back to the page.

    On a fresh server the first request for a deep link (e.g. /Dataset) is served by Streamlit's pages/ folder
    fallback, before streamlit_app.py has ever declared its st.navigation: the page would run without the sidebar,
    the navigation or the wide layout. Pages call this first; it does nothing once the entry point has run, or when
    a page is run on its own (its own file is the main script, as in an AppTest of one page).
    """
    if st.session_state.get(APP_SHELL_KEY):
        return
    context = get_script_run_ctx()
    main_script = Path(getattr(context, "main_script_path", "") or "")
    page = Path(page_file).resolve()
    if main_script.name != "streamlit_app.py" or page == main_script.resolve():
        return
    st.session_state[DEEP_LINK_KEY] = page.relative_to(main_script.resolve().parent).as_posix()
    st.switch_page(main_script.name)


def follow_deep_link() -> None:
    """In streamlit_app.py, after st.navigation: go on to the page a deep link asked for (see enter_through_app)."""
    st.session_state[APP_SHELL_KEY] = True
    wanted = st.session_state.pop(DEEP_LINK_KEY, None)
    if wanted:
        st.switch_page(wanted)


@st.cache_resource(show_spinner=False, max_entries=4)
def _listed_models(models_dir: str, signature: tuple) -> list[registry.ModelEntry]:
    """registry.list_models, cached until a file in a model folder changes (signature = names, times, sizes).

    One shared list (st.cache_resource), not a copy per rerun: st.cache_data would unpickle every card on every run
    of every page (about a tenth of a Prediction rerun's server time). Entries are frozen; pages only read cards.
    """
    return registry.list_models(models_dir)


@st.cache_data(show_spinner=False, max_entries=4)
def _ranking(models_dir: str, signature: tuple):
    """core.report.rank_models for the folder, cached until a file in a model folder changes (like the model list)."""
    from core import report

    return report.rank_models(models_dir)


def model_ranking():
    """Every usable model of config.models_dir() ranked on validation (core.report.rank_models; a pandas DataFrame)."""
    models_dir = str(config.models_dir())
    return _ranking(models_dir, registry.models_signature(models_dir))


def recommended_model_name() -> str | None:
    """The name of the model the Overview recommends (validation-only rule, core.report); None when none is usable."""
    from core import report

    ranking = model_ranking()
    return None if ranking.empty else report.recommended_name(ranking)


def model_entries() -> list[registry.ModelEntry]:
    """Every model folder of config.models_dir(), usable or not, read again only when one of its files changes."""
    models_dir = str(config.models_dir())
    return _listed_models(models_dir, registry.models_signature(models_dir))


def _keep_keras_state_between_reruns() -> None:
    """Stop Streamlit from resetting Keras after every script run, in this (dashboard) process.

    After each run of any page, Streamlit calls `keras.backend.clear_session()` once Keras is imported (to free models
    a script built): a full garbage collection (~0.9 s of CPU holding the GIL with TensorFlow loaded) and a cleared
    TensorFlow kernel cache, so the next session's model calls rebuild their kernels (~180 ms instead of ~5 ms each).
    Under eight concurrent uploads that is most of the server's work. The dashboard's scripts build no model: models are
    loaded once and shared (st.cache_resource), so only that call is skipped; any other caller gets the real function.
    """
    import sys

    import keras

    original = keras.backend.clear_session
    if getattr(original, "skips_streamlit_cleanup", False):
        return

    def clear_session(*args, **kwargs):
        caller = sys._getframe(1).f_code
        if caller.co_name == "_clean_problem_modules" and "streamlit" in caller.co_filename:
            return None
        return original(*args, **kwargs)

    clear_session.skips_streamlit_cleanup = True
    clear_session.__doc__ = original.__doc__
    keras.backend.clear_session = clear_session


@st.cache_resource(show_spinner="Loading the model…")
def load_scorer(model_dir: str) -> scoring.Scorer:
    """One Scorer per model, shared by every session and every page (thread-safe)."""
    scorer = scoring.load_scorer(model_dir)
    _keep_keras_state_between_reruns()
    return scorer


@st.cache_resource(show_spinner="Loading the lung model…")
def load_lung_model():
    """The lung U-Net (core.lungs), one for every session and page."""
    from core.lungs.segment import load_lung_model as load

    model = load()
    _keep_keras_state_between_reruns()
    return model


@st.cache_data(show_spinner="Finding the lungs…", max_entries=64)
def lung_evidence(pixels, heatmap):
    """The film's lungs and the heatmap's share inside them (core.lungs.masks.LungEvidence); None without a lung model."""
    from core.lungs import masks as evidence

    try:
        model = load_lung_model()
    except ValueError:
        return None
    return evidence.lung_evidence(pixels, heatmap, model=model)


@st.cache_data(show_spinner=False)
def read_sample(path: str) -> bytes:
    """Bytes of a shipped sample file."""
    with open(path, "rb") as handle:
        return handle.read()




def model_label(entry: registry.ModelEntry, recommended: str | None = None) -> str:
    """The name a person reads for a model: its display name, marked when it is the recommended one."""
    recommended = recommended_model_name() if recommended is None else recommended
    return recommended_label(entry.display_name) if entry.name == recommended else entry.display_name


def default_model_index(names: list[str], *, remembered: str | None = None, avoid: str | None = None) -> int:
    """Index of the model a picker starts on: `remembered` (this session's last choice) if listed, else the recommended
    model, else the first; `avoid` (e.g. the other side of a pair) is skipped when another model exists."""
    candidates = [n for n in names if n != avoid] or list(names)
    if remembered in candidates:
        return names.index(remembered)
    recommended = recommended_model_name()
    if recommended in candidates:
        return names.index(recommended)
    return names.index(candidates[0]) if candidates else 0


def choose_model(label: str, entries: list[registry.ModelEntry], *, key: str, container=None,
                 avoid: str | None = None, help: str | None = None) -> registry.ModelEntry:
    """A model select box over `entries` starting on the recommended model (marked ★), remembered per page key for
    the session (widget state is dropped when the user leaves a page)."""
    names = [entry.name for entry in entries]
    recommended = recommended_model_name()
    labels = {entry.name: model_label(entry, recommended) for entry in entries}
    memory = f"{key}__chosen"
    if key not in st.session_state:
        st.session_state[key] = names[default_model_index(names, remembered=st.session_state.get(memory), avoid=avoid)]
    elif st.session_state[key] not in names:
        st.session_state[key] = names[default_model_index(names, avoid=avoid)]
    chosen = (container or st).selectbox(label, names, format_func=labels.get, key=key, help=help)
    st.session_state[memory] = chosen
    return entries[names.index(chosen)]


def pick_model(*, key: str, default: str | None = None) -> registry.ModelEntry:
    """A model select box over the usable models (``default`` first selected, else the recommended model), the unusable
    ones listed with their reason.

    Stops the page with a message when no model is usable, or when the chosen one cannot be loaded.
    """
    entries = model_entries()
    models = [entry for entry in entries if entry.available]
    for unavailable in (entry for entry in entries if not entry.available):
        st.caption(f":gray[Unavailable: {unavailable.name} — {unavailable.reason}]")
    if not models:
        st.warning("No trained model is available. Train the shipped models with `make models` "
                   "(or `python train.py`) and reload this page.")
        st.stop()
    names = [entry.name for entry in models]
    if default in names and key not in st.session_state:
        st.session_state[f"{key}__chosen"] = default
    entry = choose_model("Model", models, key=key)
    try:
        load_scorer(str(entry.path))
    except ValueError as error:  # registry.ModelUnavailableError, or a card that does not match its model
        st.error(f"**{entry.display_name}** cannot be used: {error}")
        st.stop()
    return entry
