"""The result written back beside the image: a Comprehensive SR and a Secondary Capture (highdicom, MIT).

Both belong to the source image's study, each in a new series, with UIDs derived from the source image and the model
fingerprint: writing the same result twice (a restarted watcher) stores the same objects, never a second copy.
The SR holds the probability and threshold as NUM items, the decision, where the threshold came from, the model and
its card fingerprint, the guard's verdict, or the reason there is no score; it references the source image.
The Secondary Capture is the film with the heatmap and the decision burned in, marked "AI result, not for primary
diagnosis".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.pacs.scoring import NOT_SCORED, FilmResult

DISCLAIMER = "AI result, not for primary diagnosis"
MANUFACTURER = "pneumonia-dashboard"
SC_SIDE = 1024  # longest side of the Secondary Capture, pixels
SC_MIN_SIDE = 640  # smaller films are enlarged to this
SERIES_NUMBER_SR, SERIES_NUMBER_SC = 9901, 9902
SCHEME = "99PNEUMONIA"  # private coding scheme for the concepts DICOM has no code for


def _code(value: str, meaning: str, scheme: str = SCHEME) -> Any:
    """A highdicom CodedConcept."""
    import highdicom as hd

    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def result_uid(result: FilmResult, kind: str) -> str:
    """A UID fixed by the source image, the model version and `kind`: 2.25 followed by 128 bits of their SHA-256."""
    import hashlib

    digest = hashlib.sha256("\n".join((result.sop_uid, result.fingerprint, kind)).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def _content(result: FilmResult) -> Any:
    """The SR content tree: one CONTAINER with the numbers, the decision, the model, the guard and the source image."""
    import highdicom as hd
    from highdicom.sr import RelationshipTypeValues as Rel

    contains = Rel.CONTAINS
    unit = _code("1", "no units", "UCUM")
    items = []
    if result.scored:
        items.append(hd.sr.NumContentItem(name=_code("P-PNEU", "Probability of pneumonia"), value=round(result.probability, 6),
                                          unit=unit, relationship_type=contains))
    items.append(hd.sr.NumContentItem(name=_code("T-PNEU", "Decision threshold"), value=round(result.threshold, 6), unit=unit,
                                      relationship_type=contains))
    if result.decision == "PNEUMONIA":
        finding = _code("233604007", "Pneumonia", "SCT")
    elif result.decision == "NORMAL":
        finding = _code("N-PNEU", "No pneumonia flagged")
    else:
        finding = _code("NS-PNEU", "Not scored")
    items.append(hd.sr.CodeContentItem(name=_code("121071", "Finding", "DCM"), value=finding, relationship_type=contains))
    texts = [("TS-PNEU", "Threshold source", result.threshold_source), ("111001", "Algorithm Name", result.model),
             ("111003", "Algorithm Version", result.fingerprint), ("G-PNEU", "Guard verdict", result.guard_status or "did not run"),
             ("D-PNEU", "Decided by", result.decided_by), ("DIS-PNEU", "Disclaimer", DISCLAIMER)]
    texts += [("GR-PNEU", "Guard reason", reason) for reason in result.guard_reasons]
    texts += [("R-PNEU", "Reason not scored", reason) for reason in (result.reasons if not result.scored else ())]
    for value, meaning, text in texts:
        scheme = "DCM" if value.startswith("111") else SCHEME
        items.append(hd.sr.TextContentItem(name=_code(value, meaning, scheme), value=str(text)[:1024] or "-",
                                           relationship_type=contains))
    items.append(hd.sr.ImageContentItem(name=_code("121112", "Source of Measurement", "DCM"),
                                        referenced_sop_class_uid=result.sop_class_uid,
                                        referenced_sop_instance_uid=result.sop_uid, relationship_type=contains))
    root = hd.sr.ContainerContentItem(name=_code("R-PNEU", "Pneumonia AI result"))
    root.ContentSequence = hd.sr.ContentSequence(items)
    return root


def structured_report(result: FilmResult, source: Any) -> Any:
    """The Comprehensive SR of one result (a highdicom ComprehensiveSR, a pydicom Dataset) in the source's study."""
    import highdicom as hd

    evidence = _evidence_header(source)
    report = hd.sr.ComprehensiveSR(
        evidence=[evidence], content=_content(result), series_instance_uid=result_uid(result, "sr-series"),
        series_number=SERIES_NUMBER_SR, sop_instance_uid=result_uid(result, "sr"), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
        series_description=DISCLAIMER)
    return report


def _evidence_header(source: Any) -> Any:
    """The source image's header without its pixels (what the SR's evidence needs)."""
    header = source.copy()
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in header:
            delattr(header, keyword)
    return header


def burned_image(result: FilmResult) -> np.ndarray:
    """RGB uint8 (H, W, 3): the film (longest side SC_SIDE) with the heatmap, the decision and the disclaimer burned in."""
    import cv2

    from core import explain
    from core.imaging import resize_for_display

    pixels = resize_for_display(result.pixels, SC_SIDE)
    if max(pixels.shape) < SC_MIN_SIDE:  # small films are enlarged so that the burned-in text stays readable
        factor = SC_MIN_SIDE / max(pixels.shape)
        pixels = cv2.resize(pixels, (round(pixels.shape[1] * factor), round(pixels.shape[0] * factor)), interpolation=cv2.INTER_LINEAR)
    if result.heatmap is not None:
        rgb = explain.overlay(pixels, result.heatmap, opacity=0.4)
    else:
        grey = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
    height, width = rgb.shape[:2]
    bar = max(56, height // 9)
    canvas = np.zeros((height + 2 * bar, width, 3), np.uint8)
    canvas[bar:bar + height] = rgb
    scale = width / 1100
    if result.scored:
        lines = (f"{result.decision}  p = {result.probability:.3f}  (threshold {result.threshold:.3f})", f"model {result.model}")
    else:
        lines = (NOT_SCORED, result.decided_by[:60])
    for row, line in enumerate(lines):
        cv2.putText(canvas, line, (8, int(bar * (0.42 + 0.45 * row))), cv2.FONT_HERSHEY_SIMPLEX, scale * (1.2 - 0.4 * row),
                    (255, 255, 255), 1 + (row == 0), cv2.LINE_AA)
    cv2.putText(canvas, DISCLAIMER.upper(), (8, height + bar + int(bar * 0.6)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 0), 2, cv2.LINE_AA)
    return canvas


def secondary_capture(result: FilmResult, source: Any) -> Any:
    """The Secondary Capture (highdicom SCImage) of a scored film, in the source's study, or None without pixels."""
    import highdicom as hd

    if result.pixels is None:
        return None
    image = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=burned_image(result), photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", patient_orientation=("L", "F"), series_instance_uid=result_uid(result, "sc-series"),
        series_number=SERIES_NUMBER_SC, sop_instance_uid=result_uid(result, "sc"), instance_number=1,
        manufacturer=MANUFACTURER, series_description=DISCLAIMER)
    image.Laterality = ""  # type 2C in General Series; a chest film has none
    image.BurnedInAnnotation = "YES"
    image.ImageComments = DISCLAIMER
    image.DerivationDescription = f"{DISCLAIMER}; Grad-CAM heatmap of {result.model} ({result.fingerprint})"
    return image


def result_objects(result: FilmResult, source: Any) -> list[Any]:
    """What goes back to the archive: the SR, and the Secondary Capture when the film was scored."""
    import warnings

    with warnings.catch_warnings():
        # highdicom quotes a one-part patient name in this warning: never let a patient tag reach a log
        warnings.filterwarnings("ignore", message=r"The string .* is unlikely to represent", category=UserWarning)
        objects = [structured_report(result, source)]
        if result.scored:
            capture = secondary_capture(result, source)
            if capture is not None:
                objects.append(capture)
    return objects


def read_report(report: Any) -> dict[str, Any]:
    """The values of an SR written by `structured_report` (read back from the archive): name -> value or list of values."""
    values: dict[str, Any] = {}
    for item in report.ContentSequence:
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        if item.ValueType == "NUM":
            value: Any = float(item.MeasuredValueSequence[0].NumericValue)
        elif item.ValueType == "CODE":
            value = item.ConceptCodeSequence[0].CodeMeaning
        elif item.ValueType == "TEXT":
            value = item.TextValue
        elif item.ValueType == "IMAGE":
            value = item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        else:
            continue
        if name in ("Guard reason", "Reason not scored"):
            values.setdefault(name, []).append(value)
        else:
            values[name] = value
    return values
