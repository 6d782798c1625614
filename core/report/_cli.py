"""Command line: python -m core.report --out report.html [--site site.json] [--no-heatmaps]."""
from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from core import config
from core.report._html import write_report
from core.report._texts import logger


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the report; exit 0 on success, 1 when no report could be built, 2 on bad arguments."""
    parser = argparse.ArgumentParser(prog="python -m core.report", description="Write the self-contained HTML results report.")
    parser.add_argument("--models", default=str(config.models_dir()), help="folder of trained models (default: %(default)s)")
    parser.add_argument("--data", default=str(config.data_root()), help="dataset folder (default: %(default)s)")
    parser.add_argument("--out", default="report.html", help="HTML file to write (default: %(default)s)")
    parser.add_argument("--model", default=None, help="report this model instead of the recommended one (best validation ROC AUC)")
    parser.add_argument("--no-heatmaps", action="store_true", help="skip the Grad-CAM heatmaps (no TensorFlow, faster)")
    parser.add_argument("--resamples", type=int, default=config.BOOTSTRAP_RESAMPLES, help="bootstrap resamples for the CIs")
    parser.add_argument("--site", default=None, help="site results (JSON from python -m core.site validate --out) to add as a section")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config.quiet_tensorflow()
    try:
        site = json.loads(Path(args.site).read_text(encoding="utf-8")) if args.site else None
        path = write_report(args.out, args.models, args.data, heatmaps=not args.no_heatmaps, model=args.model,
                            n_resamples=args.resamples, site=site)
    except (ValueError, OSError) as exc:  # OSError: the --site file cannot be read
        logger.error("%s", exc)
        return 1
    logger.info("Wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return 0
