"""Scoring uploads (in memory) and the gallery of shipped films, with the guard's verdict per film."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import config
from core.guard import scope
from core.models.scorer import Scorer, decision_label, plain_sentence


@dataclass
class ImageResult:
    """One file's outcome: decoded and scored (status 'ok'), or refused with a readable reason (status 'error')."""

    name: str
    status: str
    threshold: float
    probability: float | None = None
    error: str = ""
    metadata: dict = field(default_factory=dict)
    pixels: np.ndarray | None = field(default=None, repr=False)
    verdict: Any = None  # core.guard.GuardVerdict of the film as scored (None: the guard did not run)

    @property
    def withheld(self) -> bool:
        """True when the guard says the film is not a paediatric chest film: no decision, the score means nothing."""
        return self.probability is not None and scope.out_of_scope(self.verdict)

    @property
    def decision(self) -> str:
        """'PNEUMONIA' or 'NORMAL' at the threshold, 'WITHHELD' outside the models' scope, '' when not scored."""
        if self.probability is None:
            return ""
        return scope.WITHHELD if self.withheld else decision_label(self.probability, self.threshold)

    @property
    def sentence(self) -> str:
        """The plain-language sentence (or the error, or why the decision is withheld)."""
        if self.probability is None:
            return self.error
        return scope.withheld_message(self.verdict) if self.withheld else plain_sentence(self.probability, self.threshold)

    def row(self, *, raw_scores: bool = False) -> dict:
        """A flat row for a results table / CSV (no pixels; metadata is already non-identifying); a withheld film's
        score is left out unless `raw_scores`."""
        shown = self.probability is not None and (raw_scores or not self.withheld)
        return {"file": self.name, "status": self.status,
                "probability": round(self.probability, 6) if shown else None,
                "decision": self.decision, "threshold": round(self.threshold, 6), "error": self.error,
                "width": self.metadata.get("width"), "height": self.metadata.get("height"), "format": self.metadata.get("format"),
                **(self.verdict.row() if self.verdict is not None else {})}


def unique_names(files: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The same (name, bytes) pairs with repeated names made unique: 'a.png', 'a (2).png'."""
    seen: dict[str, int] = {}
    unique = []
    for name, data in files:
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            stem, dot, suffix = name.rpartition(".")
            name = f"{stem} ({seen[name]}).{suffix}" if dot else f"{name} ({seen[name]})"
        unique.append((name, data))
    return unique


def score_uploads(scorer: Scorer, files: Sequence[tuple[str, bytes]], *, threshold: float | None = None, guard: bool = False,
                  calibration: Any = None, fix_inverted: bool = False) -> list[ImageResult]:
    """Decode (in memory) and score (name, bytes) pairs in one batch; unreadable files get the decoder's message.

    With guard=True every scored file gets the guard's verdict (core.guard.assess_many; `calibration` is the model's
    ood.npz, or None); with fix_inverted too, films that look inverted are scored the right way up.
    """
    from core.imaging import decode_xray

    threshold = scorer.threshold if threshold is None else float(threshold)
    results, decoded = [], []
    for name, data in files:
        try:
            image = decode_xray(data, name=name)
        except ValueError as error:  # core.imaging.InvalidImageError: message written for the user
            results.append(ImageResult(name, "error", threshold, error=str(error)))
            continue
        results.append(ImageResult(name, "ok", threshold, metadata=dict(image.metadata), pixels=image.pixels))
        decoded.append(image)
    if guard and decoded:
        from core import guard as ood

        raw = [data for (_, data), result in zip(files, results) if result.status == "ok"]
        decoded, verdicts = ood.assess_many(scorer, calibration, decoded, raw_bytes=raw, fix_inverted=fix_inverted)
        for result, image, verdict in zip([r for r in results if r.status == "ok"], decoded, verdicts):
            result.metadata, result.pixels, result.verdict = dict(image.metadata), image.pixels, verdict
    checks = [getattr(result.verdict, "model_check", None) for result in results if result.status == "ok"]
    if decoded and all(check is not None and check.probability is not None for check in checks):
        probabilities = iter([check.probability for check in checks])  # the guard's model pass scored them already
    else:
        probabilities = iter(scorer.probabilities(decoded))
    for result in results:
        if result.status == "ok":
            result.probability = float(next(probabilities))
    return results


@dataclass(frozen=True)
class GalleryItem:
    """A shipped real X-ray to try the model on: label for the picker, file path, known truth if any."""

    label: str
    path: Path
    truth: str


def gallery(data_root: str | Path | None = None, *, per_class: int = 3) -> list[GalleryItem]:
    """Real samples: the first `per_class` test images of each class (sorted names), the DICOM and one NIH PNG."""
    root = Path(data_root) if data_root else config.data_root()
    items = []
    for label in config.CLASS_NAMES:
        for path in sorted((root / "test" / label).glob("*.jpeg"))[:per_class]:
            items.append(GalleryItem(f"Kaggle test · {label} · {path.name}", path, label))
    dicom = config.SAMPLES_DIR / "RG1_UNCI.dcm"
    if dicom.is_file():
        items.append(GalleryItem("Adult PA chest, DICOM MONOCHROME1 (pydicom test data, no label) · RG1_UNCI.dcm", dicom, "unknown"))
    nih = sorted(config.SAMPLES_DIR.glob("*.png"))[:1]
    items += [GalleryItem(f"NIH ChestX-ray14 adult, 128 px (no label) · {p.name}", p, "unknown") for p in nih]
    return items


def result_json(result: ImageResult, *, model: str, threshold_source: str, extra: dict | None = None) -> str:
    """The result of one file as a JSON document (no pixels, no patient data)."""
    payload = {"file": result.name, "model": model, "status": result.status,
               "probability_pneumonia": None if result.withheld else result.probability,
               "threshold": result.threshold, "threshold_source": threshold_source, "decision": result.decision,
               "sentence": result.sentence, "error": result.error or None, "metadata": result.metadata, **(extra or {})}
    if result.withheld:  # the score of a film outside the models' scope is not a probability of anything
        payload["raw_score_meaningless"] = result.probability
    return json.dumps(payload, indent=2, default=lambda value: value.item() if hasattr(value, "item") else str(value))
