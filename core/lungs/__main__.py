"""`python -m core.lungs FILM_OR_FOLDER... --out DIR`: each film's lung mask as a PNG of the film's own size
(0 outside, 255 inside), named after the film (`<stem>.png`). Films that cannot be decoded are reported and skipped."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger("core.lungs")

FILM_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp"}


def _films(arguments: list[str]) -> list[Path]:
    """The files named, and the image files inside the folders named (not recursive), sorted."""
    files: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FILM_SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"{path} is neither a file nor a folder; give films (PNG, JPEG, DICOM) or folders of them.")
    return files


def main(argv: list[str] | None = None) -> int:
    """Write lung masks for the films given; exit status 1 when any film could not be read."""
    from core.imaging import decode_xray
    from core.lungs.segment import load_lung_model, segment_film

    parser = argparse.ArgumentParser(prog="python -m core.lungs", description=__doc__.split("\n\n")[0])
    parser.add_argument("films", nargs="+", metavar="FILM_OR_FOLDER")
    parser.add_argument("--out", required=True, help="folder for the masks (created if missing)")
    parser.add_argument("--model", default=None, help="lung model folder (default core/assets/lungs-unet)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_lung_model(args.model)
    failed = 0
    for path in _films(args.films):
        try:
            decoded = decode_xray(path)
        except ValueError as exc:
            logger.error("%s: skipped (%s)", path.name, exc)
            failed += 1
            continue
        result = segment_film(decoded.pixels, model=model)
        target = out / f"{path.stem}.png"
        Image.fromarray(result.mask.astype(np.uint8) * 255).save(target, optimize=True)
        logger.info("%s: %s, lungs %.0f%% of the film -> %s", path.name,
                    "lungs found" if result.lungs_found else "NO LUNGS FOUND", 100 * result.area_share, target)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
