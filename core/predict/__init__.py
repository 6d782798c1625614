"""Scoring decoded chest X-rays with a trained model, and the batch-scoring command line.

    python -m core.predict --model models/NAME FILE_OR_FOLDER... --out results.csv [--heatmaps DIR] [--threshold T]

Every readable file is scored; every unreadable one gets a row with its reason. Folders are streamed in
batches, so a folder of any size never sits in memory at once. DICOM patient tags are never written.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import config

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".jp2")  # what decode_xray reads
DEFAULT_BATCH_SIZE = 32
EXAMPLE_MODEL = "models/cnn-reference-64"  # a shipped model folder, named in --help and error messages
CSV_COLUMNS = ("file", "status", "probability", "decision", "guard", "guard_reasons", "threshold", "model", "width", "height", "format",
               "heatmap", "error", "guard_details")  # guard*: core.guard.GuardVerdict.row()


def prepare_input(pixels: Any, height: int, width: int, channels: int) -> np.ndarray:
    """Resize grey [0, 1] pixels (H0, W0) (or a DecodedXray) to the model input: float32 (height, width, channels) in [0, 255]."""
    import cv2

    grey = np.asarray(getattr(pixels, "pixels", pixels), dtype=np.float32)
    if grey.ndim != 2:
        raise ValueError(f"Expected a grey image of shape (H, W), got shape {grey.shape}; decode it with core.imaging.decode_xray first.")
    if channels not in (1, 3):
        raise ValueError(f"Models take 1 or 3 channels, this one asks for {channels}; check card.json input.channels.")
    if grey.shape != (height, width):
        # INTER_AREA averages the source pixels under each target pixel: no aliasing when shrinking.
        grey = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
    scaled = np.clip(grey, 0.0, 1.0) * np.float32(255.0)
    return np.repeat(scaled[:, :, None], channels, axis=2).astype(np.float32, copy=False)


def decision_label(probability: float, threshold: float) -> str:
    """'PNEUMONIA' when probability >= threshold, else 'NORMAL'."""
    return config.CLASS_NAMES[int(probability >= threshold)]


def plain_sentence(probability: float, threshold: float) -> str:
    """One sentence a clinician can read: the decision, the score and the threshold it was compared to."""
    if probability >= threshold:
        return (f"The model scores this X-ray {probability:.3f}, at or above its threshold of {threshold:.3f}: "
                "it flags it as showing signs of pneumonia. A clinician should review the image.")
    return (f"The model scores this X-ray {probability:.3f}, below its threshold of {threshold:.3f}: "
            "it does not flag it for pneumonia. This does not rule pneumonia out.")


def operating_threshold(model_name: str, card: dict, operating_point: dict | None = None) -> tuple[float, str]:
    """(threshold, where it comes from): the threshold-page choice when it is for this model, else the card's."""
    if operating_point and operating_point.get("model") == model_name and operating_point.get("threshold") is not None:
        source = operating_point.get("source") or "the threshold explorer"
        page = operating_point.get("page") or "Threshold explorer"  # e.g. "Your site" for a site operating point
        return float(operating_point["threshold"]), f"chosen on the {page} page ({source})"
    threshold = card.get("threshold") or {}
    if "value" not in threshold:
        return 0.5, "default 0.5 (the model card records no threshold)"
    rule = threshold.get("rule", "rule not recorded")
    return float(threshold["value"]), f"the model's own, chosen on {threshold.get('chosen_on', 'val')} ({rule})"


@dataclass
class Scorer:
    """A model ready to score images, built once per model and shared (thread-safe: one traced tf.function, no mutable state)."""

    model: Any
    name: str
    height: int
    width: int
    channels: int
    threshold: float = 0.5
    card: dict = field(default_factory=dict)
    _function: Any = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of one model input."""
        return (self.height, self.width, self.channels)

    def _predict_function(self) -> Any:
        """The traced inference function (created once, under a lock; tf.function calls are thread-safe)."""
        with self._lock:
            if self._function is None:
                import tensorflow as tf

                model = self.model
                spec = tf.TensorSpec((None, *self.input_shape), tf.float32)

                @tf.function(input_signature=[spec], reduce_retracing=True)
                def predict(batch: tf.Tensor) -> tf.Tensor:
                    return tf.reshape(model(batch, training=False), (-1,))

                self._function = predict
            return self._function

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """P(pneumonia) of shape (N,) for model inputs of shape (N, H, W, C) in [0, 255]."""
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != self.input_shape:
            raise ValueError(f"Expected a batch of shape (N, {self.height}, {self.width}, {self.channels}), got {batch.shape}; "
                             "use core.predict.prepare_input on each image.")
        if len(batch) == 0:
            return np.zeros((0,), dtype=np.float32)
        return self._predict_function()(batch).numpy().astype(np.float32)

    def prepare(self, decoded: Any) -> np.ndarray:
        """One decoded X-ray (or grey (H, W) array in [0, 1]) as a model input (H, W, C) in [0, 255]."""
        return prepare_input(decoded, self.height, self.width, self.channels)

    def probability(self, decoded: Any) -> float:
        """P(pneumonia) of one decoded X-ray."""
        return float(self.predict_batch(self.prepare(decoded)[None])[0])

    def probabilities(self, decoded_images: Sequence[Any]) -> np.ndarray:
        """P(pneumonia) of shape (N,) for several decoded X-rays, scored in one batch."""
        if not decoded_images:
            return np.zeros((0,), dtype=np.float32)
        return self.predict_batch(np.stack([self.prepare(d) for d in decoded_images]))


def scorer_from_model(model: Any, *, name: str = "model", threshold: float = 0.5, card: dict | None = None) -> Scorer:
    """A Scorer for an in-memory Keras model; the input size is read from the model's input shape."""
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or None in shape:
        raise ValueError(f"The model input must be (H, W, C) with fixed sizes, got {shape}.")
    height, width, channels = (int(s) for s in shape)
    return Scorer(model=model, name=name, height=height, width=width, channels=channels, threshold=float(threshold), card=card or {})


def _read_card(model_dir: Path) -> dict:
    """card.json of a model folder (through core.models.registry when available)."""
    try:
        from core.models import registry

        return dict(registry.load_card(model_dir))
    except (ImportError, AttributeError):
        path = model_dir / "card.json"
        return json.loads(path.read_text()) if path.exists() else {}


def _read_keras_model(model_dir: Path) -> Any:
    """model.keras of a model folder, loaded with safe_mode (through core.models.registry when available)."""
    try:
        from core.models import registry

        return registry.load_keras_model(model_dir)
    except (ImportError, AttributeError):
        import keras

        return keras.saving.load_model(model_dir / "model.keras", compile=False, safe_mode=True)


def load_scorer(model_dir: str | Path) -> Scorer:
    """Load models/<name>/ (model.keras + card.json) into a Scorer using the card's input size and threshold."""
    model_dir = Path(model_dir)
    if not (model_dir / "model.keras").exists():
        raise ValueError(f"No model.keras in {model_dir}; pass a folder written by train.py, e.g. {EXAMPLE_MODEL}.")
    config.quiet_tensorflow()
    card = _read_card(model_dir)
    model = _read_keras_model(model_dir)
    threshold = float(card.get("threshold", {}).get("value", 0.5))
    scorer = scorer_from_model(model, name=card.get("name", model_dir.name), threshold=threshold, card=card)
    wanted = card.get("input", {})
    if wanted and (int(wanted.get("height", scorer.height)), int(wanted.get("width", scorer.width))) != (scorer.height, scorer.width):
        raise ValueError(f"card.json says input {wanted.get('height')}x{wanted.get('width')} but model.keras takes "
                         f"{scorer.height}x{scorer.width}; the folder {model_dir} is inconsistent, retrain or restore it.")
    return scorer


def predict_probability(model: Any, decoded: Any, *, height: int | None = None, width: int | None = None,
                        channels: int | None = None) -> float:
    """P(pneumonia) of one decoded X-ray with a Keras model or Scorer (input size from the model unless given)."""
    if isinstance(model, Scorer):
        return model.probability(decoded)
    shape = tuple(model.inputs[0].shape[1:])
    x = prepare_input(decoded, height or int(shape[0]), width or int(shape[1]), channels or int(shape[2]))
    return float(np.asarray(model(x[None], training=False)).reshape(-1)[0])


# --------------------------------------------------------------------------------------------- uploads and gallery


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
    def decision(self) -> str:
        """'PNEUMONIA' or 'NORMAL' at the threshold, '' when the file could not be scored."""
        return "" if self.probability is None else decision_label(self.probability, self.threshold)

    @property
    def sentence(self) -> str:
        """The plain-language sentence (or the error)."""
        return self.error if self.probability is None else plain_sentence(self.probability, self.threshold)

    def row(self) -> dict:
        """A flat row for a results table / CSV (no pixels; metadata is already non-identifying)."""
        return {"file": self.name, "status": self.status,
                "probability": None if self.probability is None else round(self.probability, 6),
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
    payload = {"file": result.name, "model": model, "status": result.status, "probability_pneumonia": result.probability,
               "threshold": result.threshold, "threshold_source": threshold_source, "decision": result.decision,
               "sentence": result.sentence, "error": result.error or None, "metadata": result.metadata, **(extra or {})}
    return json.dumps(payload, indent=2, default=lambda value: value.item() if hasattr(value, "item") else str(value))


# --------------------------------------------------------------------------------------------- batch CLI


SNIFF_BYTES = 8192  # how much of a file without an image suffix is read to recognise it (DICM magic, headers)
_SNIFFED_IMAGE_KINDS = ("DICOM", "PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP", "JPEG2000", "HEIF", "AVIF")
_DICOMDIR_SOP_CLASS = rb"1\.2\.840\.10008\.1\.3\.10(?![0-9.])"  # Media Storage Directory Storage: a DICOMDIR


def iter_image_files(sources: Iterable[str | Path], *, skipped: list[tuple[Path, str]] | None = None) -> Iterator[Path]:
    """Files named directly (whatever their suffix), and X-ray files found recursively in folders, sorted.

    In a folder a file is taken when its suffix is one decode_xray reads, or when its first bytes say it is an
    image: CD/PACS exports name DICOM files IM000000 (no suffix), found by the 'DICM' magic at offset 128 or as
    DICOM written without preamble; a phone photo (HEIC) is taken too, so its row says what to do. Every other
    file, and every hidden folder, is skipped with its reason: logged as a warning and appended to `skipped`.
    """
    for source in sources:
        path = Path(source)
        if not path.is_dir():
            yield path
            continue
        found = []
        for folder, subfolders, names in os.walk(path):
            hidden = sorted(name for name in subfolders if name.startswith("."))
            subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
            for name in hidden:
                _skip(Path(folder) / name, "hidden folder (its name starts with '.'); not searched", skipped)
            for name in sorted(names):
                file = Path(folder) / name
                reason = _skip_reason(file)
                if reason is None:
                    found.append(file)
                else:
                    _skip(file, reason, skipped)
        yield from sorted(found)


def _skip(path: Path, reason: str, skipped: list[tuple[Path, str]] | None) -> None:
    """Report one file or folder the folder walk leaves out."""
    logger.warning("Skipped %s: %s", path, reason)
    if skipped is not None:
        skipped.append((path, reason))


def _skip_reason(path: Path) -> str | None:
    """Why a file found in a folder is not an X-ray to score, or None when it should be decoded."""
    from core.imaging import sniff_format

    if path.name.startswith("."):
        return "hidden file (its name starts with '.')"
    if path.name.upper() == "DICOMDIR":
        return "the DICOMDIR index of a CD/PACS export, not an image (the images are the files it lists)"
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return None
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as error:
        return f"could not be read ({error.strerror or error})"
    if not head:
        return "empty file (0 bytes)"
    kind = sniff_format(head)
    if kind == "DICOM" and re.search(_DICOMDIR_SOP_CLASS, head[:1024]):
        return "a DICOMDIR index of a CD/PACS export, not an image (the images are the files it lists)"
    if kind in _SNIFFED_IMAGE_KINDS:
        return None
    described = {"TEXT": "a text file", "PDF": "a PDF document", "ZIP": "a ZIP archive", "GZIP": "a GZIP archive",
                 "7Z": "a 7-Zip archive", "RAR": "a RAR archive", "OLE": "an old-style Office document",
                 "VIDEO": "a video"}.get(kind, "not a format decode_xray reads")
    return f"not an X-ray image: {described} (suffix {path.suffix or 'none'!r})"


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
                fix_inverted: bool = False) -> Iterator[dict]:
    """One CSV row (dict over CSV_COLUMNS) per file, decoding and scoring `batch_size` files at a time.

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
        if good:
            inputs = np.stack([scorer.prepare(decoded) for _, decoded in good])
            probabilities = scorer.predict_batch(inputs)
            cams = explainer.heatmaps(inputs) if explainer is not None else None  # one backward pass per batch
            for index, ((row, decoded), probability) in enumerate(zip(good, probabilities)):
                row.update(probability=f"{float(probability):.6f}", decision=decision_label(float(probability), threshold))
                if cams is not None:
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


def main(argv: Sequence[str] | None = None) -> int:
    """Batch scoring entry point; exit status 0 when at least one file was scored, 1 when none, 2 on bad arguments."""
    parser = argparse.ArgumentParser(prog="python -m core.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help=f"model folder written by train.py, e.g. {EXAMPLE_MODEL} (shipped ones are in models/)")
    parser.add_argument("sources", nargs="+", metavar="FILE_OR_FOLDER", help="images (PNG, JPEG, DICOM, ...) or folders of them; files without a suffix (CD/PACS exports) are recognised by their content")
    parser.add_argument("--out", required=True, help="CSV file to write, one row per file")
    parser.add_argument("--heatmaps", default=None, help="folder for Grad-CAM overlays (PNG), optional")
    parser.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the model's own, from card.json)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--fix-inverted", action="store_true",
                        help="score films that look inverted (negative: white lungs) the right way up; by default they are "
                             "scored as they are and flagged 'inverted' in the guard columns")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error("--threshold must be between 0 and 1")
    try:
        scorer = load_scorer(args.model)
    except ValueError as error:
        parser.error(str(error))
    from tqdm import tqdm

    from core import guard as ood

    calibration = ood.load_calibration(args.model)
    if calibration is None:
        logger.warning("%s has no out-of-distribution calibration (ood.npz): only the model-independent checks run "
                       "(create it with python -m core.guard %s).", scorer.name, args.model)
    skipped: list[tuple[Path, str]] = []  # each one already logged with its reason by the folder walk
    files = list(iter_image_files(args.sources, skipped=skipped))  # paths only; pixels are streamed in batches
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    counts = {"ok": 0, "error": 0}
    warned = 0
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        rows = score_files(scorer, files, threshold=args.threshold, batch_size=args.batch_size,
                           heatmap_dir=Path(args.heatmaps) if args.heatmaps else None, calibration=calibration,
                           fix_inverted=args.fix_inverted)
        for row in tqdm(rows, total=len(files), unit="image", desc=f"Scoring with {scorer.name}"):
            writer.writerow(row)
            counts[row["status"]] += 1
            warned += row.get("guard") == ood.VERDICT_WARNING
    logger.info("Scored %d file(s), %d could not be read, %d skipped (not X-ray images, listed above); results in %s",
                counts["ok"], counts["error"], len(skipped), out)
    if warned:
        logger.warning("The guard flagged %d scored file(s) as unlike the films the model was trained on (column guard = "
                       "'warning', reasons in guard_reasons): do not rely on their scores.", warned)
    return 0 if counts["ok"] else 1

