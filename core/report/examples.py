"""Example X-rays of a model, written once next to the model so the Overview page and the report need no TensorFlow.

    python -m core.report.examples models/<name> [--data data/chest_xray] [--out FOLDER]

Writes `<out>/examples/` (default `<out>` = the model folder): per example, the X-ray as shown (`<n>-<outcome>-xray.png`)
and, when the model has a Grad-CAM, the heatmap overlay (`<n>-<outcome>-heatmap.png`), plus `examples.json`:

    {"model": name, "split": "test", "threshold": t, "predictions_sha256": "...", "created": ISO-8601,
     "examples": [{"kind", "outcome", "caption", "path", "label", "score", "xray", "heatmap" (file or null), "note"}]}

One typical case per outcome (correct detection, miss, false alarm) at the model's threshold, chosen from its stored
predictions (core._picking.pick_examples). The folder is written to a temporary sibling and renamed when complete.
`load_examples` reads it back (no TensorFlow) and refuses examples whose predictions.csv or threshold changed since.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core import config
from core.models import cards, registry

logger = logging.getLogger(__name__)

EXAMPLES_DIR = "examples"
MANIFEST = "examples.json"


class ExamplesUnavailableError(ValueError):
    """A model has no usable stored examples; the message says why and what to run."""


@dataclass(frozen=True)
class StoredExample:
    """One stored example: its case, and PNG bytes of the X-ray and of the heatmap overlay (None without Grad-CAM).

    Same attribute names as core.report.ExampleImage (kind, caption, path, label, score, png, heatmap, note), so the
    report can show either; `png` is the heatmap overlay when there is one, else the X-ray.
    """

    kind: str
    outcome: str
    caption: str
    path: str
    label: int
    score: float
    xray_png: bytes
    heatmap_png: bytes | None
    note: str = ""

    @property
    def heatmap(self) -> bool:
        """Whether a Grad-CAM overlay is stored."""
        return self.heatmap_png is not None

    @property
    def png(self) -> bytes:
        """The picture to show: the heatmap overlay when stored, else the X-ray."""
        return self.heatmap_png if self.heatmap_png is not None else self.xray_png


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_examples(
    model_dir: str | Path,
    data_root: str | Path | None = None,
    *,
    out_dir: str | Path | None = None,
    split: str = "test",
    heatmaps: bool = True,
) -> Path:
    """Compute the model's example X-rays with Grad-CAM (TensorFlow) and write them; returns the examples folder.

    model_dir: a models/<name>/ folder (model.keras, card.json, predictions.csv). data_root: the dataset folder the
    predictions' paths are relative to (default config.data_root()). out_dir: where `examples/` goes (default the model
    folder). `heatmaps=False` stores the X-rays only (no TensorFlow). Raises registry.ModelUnavailableError (a ValueError) for an unusable model, ValueError when no example
    image can be read.
    """
    from core.explain import to_png
    from core.report import _picking

    entry = registry.inspect_model(model_dir)
    if not entry.available:
        raise registry.ModelUnavailableError(f"Model {entry.name} cannot be used: {entry.reason}")
    root = Path(data_root) if data_root is not None else config.data_root()
    predictions = registry.load_predictions(entry)
    picked = _picking.pick_examples(predictions, entry.threshold, split=split)
    overlays = _picking.example_images(entry, picked, root, heatmaps=heatmaps)
    plain = {image.path: image for image in _picking.example_images(entry, picked, root, heatmaps=False)}
    if not overlays:
        raise ValueError(f"None of the example X-rays of {entry.name} could be read from {root}; "
                         "pass the dataset folder its predictions.csv refers to with --data.")
    target = Path(out_dir) if out_dir is not None else Path(entry.path)
    final = target / EXAMPLES_DIR
    with cards.staged_folder(final) as staging:  # an old folder is moved aside first: a reader never sees half of either
        rows = []
        for number, image in enumerate(overlays, start=1):
            outcome = picked.loc[picked["path"] == image.path, "outcome"].iat[0]
            xray_file = f"{number}-{outcome}-xray.png"
            (staging / xray_file).write_bytes(to_png(plain[image.path].image))
            heatmap_file = None
            if image.heatmap:
                heatmap_file = f"{number}-{outcome}-heatmap.png"
                (staging / heatmap_file).write_bytes(to_png(image.image))
            rows.append({"kind": image.kind, "outcome": outcome, "caption": image.caption, "path": image.path,
                         "label": image.label, "score": image.score, "xray": xray_file, "heatmap": heatmap_file,
                         "note": image.note})
        manifest = {"model": entry.name, "split": split, "threshold": entry.threshold,
                    "predictions_sha256": _sha256(Path(entry.path) / "predictions.csv"),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "examples": rows}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    logger.info("Wrote %d examples of %s to %s", len(rows), entry.name, final)
    return final


def load_examples(model_dir: str | Path, *, threshold: float | None = None) -> list[StoredExample]:
    """The model's stored examples (no TensorFlow). model_dir: a models/<name>/ folder.

    Raises ExamplesUnavailableError (a ValueError) with a readable reason when there are none, when a file is
    missing, or when the model's predictions.csv (or `threshold`, if given) changed since they were written.
    """
    folder = Path(model_dir) / EXAMPLES_DIR
    manifest_path = folder / MANIFEST
    command = f"python -m core.report.examples {Path(model_dir).as_posix()}"
    if not manifest_path.is_file():
        raise ExamplesUnavailableError(f"No example X-rays are stored with this model yet (run `{command}`).")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        predictions = Path(model_dir) / "predictions.csv"
        if predictions.is_file() and manifest.get("predictions_sha256") != _sha256(predictions):
            raise ExamplesUnavailableError(f"The stored example X-rays are from an earlier version of this model "
                                           f"(its predictions changed); write them again with `{command}`.")
        if threshold is not None and manifest.get("threshold") != threshold:
            raise ExamplesUnavailableError(f"The stored example X-rays were chosen at threshold {manifest.get('threshold')}, "
                                           f"not the model's {threshold}; write them again with `{command}`.")
        return [
            StoredExample(kind=row["kind"], outcome=row["outcome"], caption=row["caption"], path=row["path"],
                          label=int(row["label"]), score=float(row["score"]), xray_png=(folder / row["xray"]).read_bytes(),
                          heatmap_png=(folder / row["heatmap"]).read_bytes() if row.get("heatmap") else None,
                          note=row.get("note") or "")
            for row in manifest["examples"]
        ]
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ExamplesUnavailableError(f"The stored example X-rays cannot be read ({exc}); write them again with "
                                       f"`{command}`.") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the examples of one or more models; exit 0 when all were written, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="python -m core.report.examples",
                                     description="Write a model's example X-rays with Grad-CAM heatmaps next to it.")
    parser.add_argument("models", nargs="+", help="model folders, e.g. models/xception-224")
    parser.add_argument("--data", default=str(config.data_root()), help="dataset folder (default: %(default)s)")
    parser.add_argument("--no-heatmaps", action="store_true", help="store the X-rays only (no TensorFlow)")
    parser.add_argument("--out", default=None,
                        help="write <OUT>/<model name>/examples/ instead of into the model folder (for a trial run)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config.quiet_tensorflow()
    failed = 0
    for model in args.models:
        out = Path(args.out) / Path(model).name if args.out else None
        try:
            write_examples(model, args.data, out_dir=out, heatmaps=not args.no_heatmaps)
        except ValueError as exc:
            logger.error("%s: %s", model, exc)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
