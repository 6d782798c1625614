"""Export a trained model as a TensorFlow SavedModel, the format TensorFlow Serving (and TF Lite, TF.js) reads.

    python -m core.models.export models/<name> OUT_DIR

OUT_DIR receives the SavedModel (`saved_model.pb`, `variables/`, plus the model's `card.json` under `assets.extra/`
for the threshold and input size). TensorFlow Serving wants `<base>/<model name>/<version>/`, e.g.
`python -m core.models.export models/xception-224 serving/xception-224/1`. The exported `serving_default` signature takes
float32 (N, H, W, C) raw pixel values in [0, 255] (core.predict.prepare_input; the model rescales inside) and returns
P(pneumonia) of shape (N, 1), exactly as model.keras does. Written to a temporary sibling and renamed when complete.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from core import config

logger = logging.getLogger(__name__)


def export_saved_model(model_dir: str | Path, out_dir: str | Path) -> Path:
    """Write models/<name>/model.keras as a SavedModel to `out_dir` (Keras 3 `model.export(format="tf_saved_model")`).

    Raises registry.ModelUnavailableError (a ValueError) for an unusable model folder, ValueError when `out_dir`
    already exists and is not empty (choose a new version number instead of overwriting a served one).
    """
    from core.models import registry

    entry = registry.inspect_model(model_dir)
    if not entry.available:
        raise registry.ModelUnavailableError(f"Model {entry.name} cannot be exported: {entry.reason}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} already exists and is not empty; export to a new folder (e.g. the next version number).")
    config.quiet_tensorflow()
    model = registry.load_keras_model(entry)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-tmp-", dir=out.parent))
    try:
        target = staging / "saved_model"
        model.export(str(target), format="tf_saved_model", verbose=False)
        extra = target / "assets.extra"
        extra.mkdir(exist_ok=True)
        shutil.copy2(Path(entry.path) / "card.json", extra / "card.json")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(target, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("Exported %s to %s", entry.name, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: export one model; exit 0 on success, 1 when it cannot be exported."""
    parser = argparse.ArgumentParser(prog="python -m core.models.export",
                                     description="Export a trained model as a TensorFlow SavedModel (for TensorFlow Serving).")
    parser.add_argument("model", help="model folder, e.g. models/xception-224")
    parser.add_argument("out", help="output folder, e.g. serving/xception-224/1 (TensorFlow Serving's <name>/<version>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        export_saved_model(args.model, args.out)
    except ValueError as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
