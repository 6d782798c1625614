"""The Prediction page's "From PACS" panel, and the audit-trail hook of its uploads (Streamlit pieces only).

Every computation is a call into core.pacs (archive, scoring, results) and core.trail; archive and trail faults
are shown as messages and the page keeps working. Patient tags are never shown: studies are listed by date,
accession number, description and modalities.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import streamlit as st

from core import trail as audit

URL_ENV = "PNEUMONIA_PACS_URL"
RESULT_KEY = "pacs_result"
STUDIES_KEY = "pacs_studies"


@st.cache_resource(show_spinner=False)
def _trail(location: str) -> audit.Trail:
    """One Trail (engine) per database location, shared by the sessions."""
    return audit.Trail(location or None)


def trail() -> audit.Trail | None:
    """The audit trail ($PNEUMONIA_AUDIT_DB, else .cache/audit-trail.sqlite), or None with a warning when it fails."""
    try:
        return _trail(os.environ.get(audit.ENV_DB, ""))
    except audit.TrailError as error:
        st.warning(f"Audit trail unavailable: {error}", icon="⚠️")
        return None


def record_uploads(entry: Any, files: list[tuple[str, bytes]], results: list[Any], threshold_source: str) -> None:
    """Write one trail row per scored upload (once per file and model version); a failing trail is a caption, not an error."""
    database = trail()
    if database is None or not files:
        return
    try:
        audit.record_uploads(database, files, results, model_dir=entry.path, threshold_source=threshold_source)
    except audit.TrailError as error:
        st.caption(f"⚠️ Not recorded in the audit trail: {error}")


def _archive() -> Any:
    """The archive the form points at (ArchiveError on a bad URL)."""
    from core.pacs.client import Archive

    return Archive(st.session_state.get("pacs_url", ""), username=st.session_state.get("pacs_user") or None,
                   password=st.session_state.get("pacs_password") or None, token=st.session_state.get("pacs_token") or None,
                   timeout=float(st.session_state.get("pacs_timeout", 30)))


def _study_label(study: Any) -> str:
    date = f"{study.date[:4]}-{study.date[4:6]}-{study.date[6:8]}" if len(study.date) == 8 else study.date or "no date"
    images = f"{study.images} object(s)" if study.images else ""
    return " · ".join(part for part in (date, f"accession {study.accession}" if study.accession else "", study.description,
                                        "/".join(study.modalities), images) if part)


def _search() -> None:
    """The search form; the studies found go to session state."""
    from core.pacs.client import ArchiveError

    st.session_state.setdefault("pacs_url", os.environ.get(URL_ENV, ""))
    with st.form("pacs_search"):
        st.text_input("Archive (DICOMweb URL)", key="pacs_url", placeholder="http://127.0.0.1:8042/dicom-web")
        with st.expander("Credentials (optional)"):
            left, right = st.columns(2)
            left.text_input("User", key="pacs_user")
            right.text_input("Password", key="pacs_password", type="password")
            st.text_input("Bearer token (instead of a user)", key="pacs_token", type="password")
        patient, accession, since, until = st.columns(4)
        patient.text_input("Patient ID", key="pacs_patient_id")
        accession.text_input("Accession number", key="pacs_accession")
        since.date_input("From", value=None, key="pacs_from")
        until.date_input("To", value=None, key="pacs_to")
        searched = st.form_submit_button("Search the archive")
    if searched:
        day = lambda value: value.strftime("%Y%m%d") if isinstance(value, dt.date) else ""  # noqa: E731
        try:
            st.session_state[STUDIES_KEY] = _archive().find_studies(
                patient_id=st.session_state.get("pacs_patient_id", "").strip(),
                accession=st.session_state.get("pacs_accession", "").strip(),
                date_from=day(st.session_state.get("pacs_from")), date_to=day(st.session_state.get("pacs_to")))
        except ArchiveError as error:
            st.session_state[STUDIES_KEY] = []
            st.error(str(error))
        st.session_state.pop(RESULT_KEY, None)


def _score(model: Any, study: Any) -> None:
    """Retrieve the study's frontal image (in memory), score it, record it; the outcome goes to session state."""
    from core.pacs import watch
    from core.pacs.client import ArchiveError

    try:
        archive = _archive()
        with st.spinner("Retrieving the study's frontal image and scoring it…"):
            outcome = watch.process_study(archive, study.study_uid, model, None, send=False)
    except ArchiveError as error:
        st.error(str(error))
        return
    if outcome.error:
        st.error(outcome.error)
        return
    row = None
    database = trail()
    if outcome.result is not None and database is not None:
        key = audit.pseudonymous_key(outcome.result.sop_uid)
        try:
            row = database.record(watch.record_for(outcome.result, source=watch.SOURCE, film_key=key)) or \
                database.find(watch.SOURCE, key, model.fingerprint)
        except audit.TrailError as error:
            st.warning(f"Not recorded in the audit trail: {error}")
    st.session_state[RESULT_KEY] = {"outcome": outcome, "dataset": outcome.dataset, "row": row, "sent": ""}


def _show(model: Any) -> None:
    """The scored (or refused) film, the Send button and the clinician's reading."""
    from core.pacs import results, watch
    from core.pacs.client import ArchiveError

    state = st.session_state[RESULT_KEY]
    outcome, result = state["outcome"], state["outcome"].result
    for note in outcome.notes:
        st.info(note, icon="ℹ️")
    if result is None:
        st.warning("Nothing to score in this study.")
        return
    if result.scored:
        left, right = st.columns(2)
        left.metric("Probability of pneumonia", f"{result.probability:.3f}")
        right.metric(f"Decision at threshold {result.threshold:.3f}", result.decision)
        st.write(result.sentence())
    else:
        st.error(f"**Not scored** ({result.decided_by}). " + " ".join(result.reasons))
    if result.pixels is not None:
        st.image(results.burned_image(result), caption=f"What the archive will show ({results.DISCLAIMER})", width=480)
    if state["sent"]:
        st.success(f"Sent to {state['sent']}.")
    elif st.button("Send result to PACS", key="pacs_send", type="primary"):
        try:
            state["sent"] = watch.send_results(_archive(), result, state["dataset"])
        except ArchiveError as error:
            st.error(f"{error} The result was not sent; try again.")
            return
        database = trail()
        if database is not None and state["row"] is not None:
            try:
                database.mark_sent(state["row"], state["sent"])
            except audit.TrailError as error:
                st.warning(f"Sent, but not recorded in the audit trail: {error}")
        st.success(f"Sent to {state['sent']}.")
    if result.scored and state["row"] is not None:
        with st.form("pacs_reading"):
            st.markdown("**Your own reading** (kept in the audit trail, for monitoring)")
            left, right = st.columns(2)
            verdict = left.radio("The decision", ["agree", "disagree"], horizontal=True, key="pacs_reading_verdict")
            label = right.selectbox("Final label", ["(not yet)", *audit.LABELS], key="pacs_reading_label")
            if st.form_submit_button("Save my reading"):
                try:
                    trail().record_reading(state["row"], agree=verdict == "agree",
                                           final_label=None if label == "(not yet)" else label)
                    st.success("Reading saved.")
                except (audit.TrailError, AttributeError) as error:
                    st.warning(f"Reading not saved: {error}")


def from_pacs(entry: Any, scorer: Any, calibration: Any, threshold: float, threshold_source: str) -> None:
    """The whole "From PACS" panel: search, pick a study, score its frontal image, send the result back."""
    from core.pacs.scoring import ScoringModel

    _search()
    studies = st.session_state.get(STUDIES_KEY)
    if studies is None:
        st.info("Search the archive for CR/DX studies by patient ID, accession number or dates (all fields optional).")
        return
    if not studies:
        st.info("No CR/DX study matches.")
        return
    labels = [_study_label(study) for study in studies]
    index = st.selectbox(f"{len(studies)} CR/DX stud{'y' if len(studies) == 1 else 'ies'}", range(len(studies)),
                         format_func=labels.__getitem__, key="pacs_study")
    model = ScoringModel(scorer, calibration, Path(entry.path), audit.card_fingerprint(entry.path), threshold, threshold_source)
    if st.button("Score this study", key="pacs_score"):
        _score(model, studies[index])
    if RESULT_KEY in st.session_state and st.session_state[RESULT_KEY]["outcome"].study_uid == studies[index].study_uid:
        _show(model)
