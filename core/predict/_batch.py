"""Scoring files and folders in batches, streamed, every unreadable file reported with its reason."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from core.guard import scope
from core.models.scorer import Scorer, decision_label

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32
CSV_COLUMNS = ("file", "status", "probability", "decision", "guard", "guard_reasons", "threshold", "model", "width", "height", "format",
               "heatmap", "error", "guard_details")  # guard*: core.guard.GuardVerdict.row()


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of at most `size` items (streaming)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def score_files(scorer: Scorer, files: Iterable[Path], *, threshold: float | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                heatmap_dir: Path | None = None, guard: bool = True, calibration: Any = None,
                fix_inverted: bool = False, raw_scores: bool = False) -> Iterator[dict]:
    """One CSV row (dict over CSV_COLUMNS) per file, decoding and scoring `batch_size` files at a time.

    A film the guard finds outside the models' scope (core.guard.scope) gets decision WITHHELD, no score and no heatmap
    (its raw, meaningless score and heatmap only with raw_scores=True).

    With guard=True (default) each scored row has the guard's verdict and reasons (core.guard.assess_many with the
    model's `calibration`, or None: model-independent checks only); with fix_inverted, films that look inverted
    are scored the right way up (their guard_reasons say so).
    """
    from core.imaging import decode_xray

    threshold = scorer.threshold if threshold is None else float(threshold)
    explainer = None
    if heatmap_dir is not None:
        from core import explain

        try:
            explainer = explain.gradcam_for(scorer.model)
            heatmap_dir.mkdir(parents=True, exist_ok=True)
        except ValueError as error:  # e.g. a dense model has no convolution to explain
            logger.warning("No heatmaps for %s: %s", scorer.name, error)
    for chunk in _batched(files, batch_size):
        rows: list[dict] = []
        good: list[tuple[dict, Any]] = []
        for path in chunk:
            row = dict.fromkeys(CSV_COLUMNS, "")
            row.update(file=str(path), model=scorer.name, threshold=f"{threshold:.6g}")
            try:
                decoded = decode_xray(path)
            except ValueError as error:  # InvalidImageError is a ValueError with a readable message
                row.update(status="error", error=str(error))
            except OSError as error:
                row.update(status="error", error=f"Could not read the file: {error.strerror or error}")
            else:
                meta = decoded.metadata
                row.update(status="ok", width=meta.get("width", decoded.pixels.shape[1]),
                           height=meta.get("height", decoded.pixels.shape[0]), format=meta.get("format", ""))
                good.append((row, decoded))
            rows.append(row)
        if good and guard:
            from core import guard as ood

            images, verdicts = ood.assess_many(scorer, calibration, [decoded for _, decoded in good],
                                               raw_bytes=[_raw_bytes(Path(row["file"])) for row, _ in good], fix_inverted=fix_inverted)
            good = [(row, image) for (row, _), image in zip(good, images)]
            for (row, _), verdict in zip(good, verdicts):
                row.update(verdict.row())
                row["_withheld"] = scope.out_of_scope(verdict)
        if good:
            inputs = np.stack([scorer.prepare(decoded) for _, decoded in good])
            probabilities = scorer.predict_batch(inputs)
            cams = explainer.heatmaps(inputs) if explainer is not None else None  # one backward pass per batch
            for index, ((row, decoded), probability) in enumerate(zip(good, probabilities)):
                withheld = row.pop("_withheld", False)
                if withheld:
                    row.update(probability=f"{float(probability):.6f}" if raw_scores else "", decision=scope.WITHHELD)
                else:
                    row.update(probability=f"{float(probability):.6f}", decision=decision_label(float(probability), threshold))
                if cams is not None and (raw_scores or not withheld):  # no heatmap of a meaningless score unless asked
                    row["heatmap"] = str(_write_heatmap(cams[index], decoded.pixels, Path(row["file"]), heatmap_dir))
        yield from rows


def _raw_bytes(path: Path) -> bytes | None:
    """The file's bytes for the guard's colour check (None when it cannot be read again)."""
    try:
        return path.read_bytes()
    except OSError:
        return None


def _write_heatmap(cam: np.ndarray, pixels: np.ndarray, source: Path, heatmap_dir: Path) -> Path:
    """Write the Grad-CAM overlay (cam (h, w) in [0, 1]) of one image as PNG at its original resolution; return its path."""
    import cv2

    from core import explain

    overlay_rgb = explain.overlay(pixels, cam, opacity=0.45)
    import hashlib

    tag = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:8]  # same name in two folders: two files
    target = heatmap_dir / f"{source.stem}_{tag}_gradcam.png"
    if not cv2.imwrite(str(target), cv2.cvtColor(overlay_rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"Could not write {target}")
    return target
