"""The operating point every page shares: set only by an explicit "use this operating point" button.

One session-state value, ``st.session_state["operating_point"] = {"model", "threshold", "source", "page"}``: the
Threshold explorer and the Your site page set it when the user presses their button, the Prediction page reads it,
says which point is in force and where it came from, and offers a one-click way back to the model's own.
"""

from __future__ import annotations

import streamlit as st

from core import predict as scoring
from core.models import registry

KEY = "operating_point"
"""Session-state key of the adopted operating point (None or absent: every model at its own)."""


def adopt(model: str, threshold: float, source: str, page: str, display_name: str = "") -> None:
    """Make (model, threshold) the operating point of the Prediction page; `source` and `page` say where it came from."""
    st.session_state[KEY] = {"model": model, "threshold": float(threshold), "source": source, "page": page,
                             "display_name": display_name or model}


def adopted() -> dict | None:
    """The adopted operating point, or None when every model decides at its own threshold."""
    point = st.session_state.get(KEY)
    return point if isinstance(point, dict) and point.get("threshold") is not None else None


def back_to_own() -> None:
    """Forget the adopted operating point: every model decides at its own threshold again."""
    st.session_state.pop(KEY, None)


def adopt_button(entry: registry.ModelEntry, threshold: float, source: str, page: str, *, key: str) -> None:
    """The one button that changes what Prediction decides; says what is in force now."""
    point = adopted()
    same = point is not None and point["model"] == entry.name and abs(point["threshold"] - float(threshold)) < 1e-12
    st.button(f"Use this operating point ({threshold:.3f}) on the Prediction page", key=key, type="primary",
              disabled=same, on_click=adopt, args=(entry.name, threshold, source, page, entry.display_name),
              help="Until you press this, the Prediction page decides at the model's own threshold.")
    if same:
        st.caption(f"The Prediction page uses this operating point ({threshold:.3f}).")
    elif point is not None:
        st.caption(f"The Prediction page uses {point['threshold']:.3f} for {point.get('display_name') or point['model']}, "
                   f"chosen on the {point['page']} page; other models decide at their own threshold.")
    else:
        st.caption("The Prediction page uses each model's own threshold.")


def in_force(entry: registry.ModelEntry) -> tuple[float, str, bool]:
    """(threshold, where it came from, adopted?) for a model on the Prediction page."""
    point = adopted()
    threshold, source = scoring.operating_threshold(entry.name, entry.card, point)
    return threshold, source, point is not None and point.get("model") == entry.name


def show_in_force(entry: registry.ModelEntry) -> tuple[float, str]:
    """(threshold, where it came from) the Prediction page decides at, shown with the way back when adopted."""
    threshold, source, is_adopted = in_force(entry)
    if is_adopted:
        text, button = st.columns([4, 1], vertical_alignment="center")
        text.info(f"Decision threshold **{threshold:.3f}**: {source}.", icon=":material/tune:")
        button.button(f"Back to the model's own ({entry.threshold:.3f})", key="prediction_back_to_own",
                      on_click=back_to_own)
    else:
        st.caption(f"Decision threshold **{threshold:.3f}**: {source}.")
    return threshold, source
