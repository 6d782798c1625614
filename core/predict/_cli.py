"""Command line: python -m core.predict --model models/NAME FILE_OR_FOLDER... --out results.csv."""
from __future__ import annotations

import argparse
import csv
import logging
from collections.abc import Sequence
from pathlib import Path

from core.imaging.files import iter_image_files
from core.models.scorer import EXAMPLE_MODEL, load_scorer
from core.predict._batch import CSV_COLUMNS, DEFAULT_BATCH_SIZE, score_files

logger = logging.getLogger(__name__)


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
    parser.add_argument("--raw-scores", action="store_true",
                        help="also write the raw score (and heatmap) of films outside the models' scope (not a paediatric chest "
                             "film; their decision is WITHHELD): it is meaningless, kept only for auditing")
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
                           fix_inverted=args.fix_inverted, raw_scores=args.raw_scores)
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
