"""A film from the archive scored exactly as an upload: scope from its header, the guard, the model at its own threshold.

`assess_dataset` works on a pydicom Dataset already in memory (no network); `choose_frontal` picks the image of a
study to score and says why the others were left out.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import trail as audit
from core.pacs.client import InstanceSummary
from core.pacs.scope import LATERAL_VIEWS, MODALITIES, Scope, scope_from_header

logger = logging.getLogger(__name__)

NOT_SCORED = audit.NOT_SCORED
RADIOGRAPH_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1": "CR", "1.2.840.10008.5.1.4.1.1.1.1": "DX for presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "DX for processing",
}
_KNOWN_OTHERS = {"1.2.840.10008.5.1.4.1.1.88.": "a structured report", "1.2.840.10008.5.1.4.1.1.104.": "an encapsulated document (PDF)",
                 "1.2.840.10008.5.1.4.1.1.7": "a secondary capture", "1.2.840.10008.5.1.4.1.1.11.": "a presentation state"}


@dataclass
class ScoringModel:
    """A model ready for the archive: its scorer, guard calibration, card fingerprint and operating point."""

    scorer: Any
    calibration: Any
    model_dir: Path
    fingerprint: str
    threshold: float
    threshold_source: str

    @property
    def name(self) -> str:
        """The model's name (its folder)."""
        return self.scorer.name


def recommended_model_dir(models_dir: str | Path | None = None) -> Path:
    """The folder of the model the dashboard recommends (core.report's validation-only rule)."""
    from core import config, report

    models_dir = Path(models_dir or config.models_dir())
    ranking = report.rank_models(models_dir)
    return models_dir / report.recommended_name(ranking)


def load_model(model_dir: str | Path | None = None, *, threshold: float | None = None) -> ScoringModel:
    """The model of `model_dir` (default: the recommended one) with its guard and its own threshold (or `threshold`)."""
    from core import guard
    from core import predict as scoring

    model_dir = Path(model_dir) if model_dir else recommended_model_dir()
    scorer = scoring.load_scorer(model_dir)
    own, source = scoring.operating_threshold(scorer.name, scorer.card)
    if threshold is not None:
        own, source = float(threshold), "given on the command line"
    return ScoringModel(scorer, guard.load_calibration(model_dir), model_dir, audit.card_fingerprint(model_dir), own, source)


@dataclass
class FilmResult:
    """The outcome for one archive image. UIDs stay in memory (to write results back); the trail keeps only a keyed hash."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    model: str
    fingerprint: str
    threshold: float
    threshold_source: str
    scope: Scope
    probability: float | None = None
    decision: str = NOT_SCORED
    guard_status: str = ""
    guard_reasons: tuple[str, ...] = ()
    decided_by: str = ""
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    pixels: np.ndarray | None = field(default=None, repr=False)
    heatmap: np.ndarray | None = field(default=None, repr=False)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def scored(self) -> bool:
        """True when the film got a score (in scope, guard passed)."""
        return self.probability is not None

    def sentence(self) -> str:
        """One plain sentence: the decision and why, or why there is no score."""
        if self.scored:
            from core import predict as scoring

            return scoring.plain_sentence(self.probability, self.threshold)
        return "Not scored: " + " ".join(self.reasons)


def choose_frontal(instances: list[InstanceSummary]) -> tuple[InstanceSummary | None, list[str]]:
    """(the image to assess or None, plain notes on every object left out and why).

    A single-frame CR/DX image with a frontal (or unstated) view is preferred; when the study has none, its first
    lateral or multi-frame radiograph is returned, so that it is refused with its reason in the SR and the trail.
    Objects that are not radiographs (SRs, PDFs, secondary captures) are only listed in the notes.
    """
    notes: list[str] = []
    frontal, others = [], []
    for item in instances:
        where = f"Series {item.series_number} image {item.instance_number}"
        if item.modality not in MODALITIES or item.sop_class_uid not in RADIOGRAPH_SOP_CLASSES:
            kind = next((text for prefix, text in _KNOWN_OTHERS.items() if item.sop_class_uid.startswith(prefix)), None)
            kind = kind or f"a {item.modality or 'non-radiograph'} object"
            notes.append(f"{where} is {kind}, not a radiograph: left out.")
        elif item.frames > 1:
            notes.append(f"{where} has {item.frames} frames; a radiograph has one.")
            others.append(item)
        elif item.view in LATERAL_VIEWS:
            notes.append(f"{where} is a lateral or oblique view ({item.view}).")
            others.append(item)
        else:
            frontal.append(item)
    if frontal:
        frontal.sort(key=lambda item: not item.view)  # a stated frontal view before an unstated one (stable otherwise)
        chosen = frontal[0]
        if len(frontal) > 1:
            notes.append(f"The study holds {len(frontal)} frontal images; the first (series {chosen.series_number}, image "
                         f"{chosen.instance_number}) is scored.")
        return chosen, notes
    if others:
        notes.append("The study holds no single-frame frontal radiograph; its first radiograph is assessed and refused with the reason.")
        return others[0], notes
    notes.append("The study holds no images." if not instances else "The study holds no radiograph (CR or DX image) to score.")
    return None, notes


def dataset_bytes(ds: Any) -> bytes:
    """A pydicom Dataset as DICOM Part 10 bytes (in memory), for core.imaging.decode_xray."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    return buffer.getvalue()


def assess_dataset(ds: Any, model: ScoringModel, *, heatmap: bool = True) -> FilmResult:
    """Scope from the header, then decode, guard and score exactly like an upload (core.predict.score_uploads).

    Out of scope by the header: no score, the header decided. In scope but flagged by the image checks: no score, the
    checks decided (an adult film without an age in its header is caught here, if at all). Otherwise the score.
    """
    from core import predict as scoring

    started = time.perf_counter()
    scope = scope_from_header(ds)
    result = FilmResult(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID), str(ds.SOPClassUID),
                        model.name, model.fingerprint, model.threshold, model.threshold_source, scope, notes=scope.notes)
    if not scope.in_scope:
        result.decided_by, result.reasons = "DICOM header", scope.reasons
        return result
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        result.decided_by, result.reasons = "DICOM header", (f"It has {frames} frames; a radiograph has one.",)
        return result
    [upload] = scoring.score_uploads(model.scorer, [("archive image", dataset_bytes(ds))], threshold=model.threshold,
                                     guard=True, calibration=model.calibration)
    result.seconds["decode, guard and model"] = time.perf_counter() - started
    if upload.status != "ok":
        result.decided_by, result.reasons = "decoder", (upload.error,)
        return result
    verdict = upload.verdict
    result.guard_status, result.guard_reasons = verdict.status, tuple(verdict.reasons)
    result.pixels = upload.pixels
    result.notes = scope.notes + tuple(upload.metadata.get("notes", ()))
    if verdict.flagged:
        flagged = [r for r in verdict.reasons if r not in ("bit depth rescaled", "DICOM encoding inferred", "first frame of several")]
        result.decided_by = "image checks: " + "; ".join(flagged)
        result.reasons = ("The out-of-distribution guard flagged it (" + "; ".join(flagged) + "): " + " ".join(verdict.details),)
        return result
    result.probability, result.decision = float(upload.probability), upload.decision
    result.decided_by = "model" if scope.age_known else "model (no age in the header; the image checks passed)"
    if heatmap:
        started = time.perf_counter()
        result.heatmap = _gradcam(model, upload)
        result.seconds["Grad-CAM heatmap"] = time.perf_counter() - started
    return result


def _gradcam(model: ScoringModel, upload: Any) -> np.ndarray | None:
    """Grad-CAM (h, w) in [0, 1] for PNEUMONIA of a scored film, None when the model has no convolution to explain."""
    from core import explain

    try:
        return explain.explain(model.scorer.model, model.scorer.prepare(upload.pixels), method="gradcam", target="pneumonia")
    except ValueError as error:
        logger.warning("No heatmap for %s: %s", model.name, error)
        return None
