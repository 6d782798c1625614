"""Command line: python -m core.audit data | model MODEL_DIR [--write-card]."""
from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core import config
from core.audit._cards import audit_markdown, write_card_audit
from core.audit._dataset import dataset_audit, write_json_atomic
from core.audit._films import PER_CLASS, SAMPLE_SEED, logger
from core.audit._model import model_audit


def _print_model(audit: dict[str, Any]) -> None:
    print(audit_markdown(audit))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `data` (dataset audit) or `model MODEL_DIR` (one model's audit)."""
    parser = argparse.ArgumentParser(prog="python -m core.audit", description=__doc__.split("**Dataset level**")[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    data_cmd = commands.add_parser("data", help="trivial thumbnail baselines + domain classifier (validation vs test films)")
    data_cmd.add_argument("--data-root", default=None, help="dataset folder (default: $PNEUMONIA_DATA or data/chest_xray)")
    data_cmd.add_argument("--models-dir", default=None, help="models whose stored test scores are correlated with the statistics (default models/)")
    data_cmd.add_argument("--force", action="store_true", help="recompute even if the cached JSON exists")
    model_cmd = commands.add_parser("model", help="one model: perturbation table, robustness pass/fail, Grad-CAM mass")
    model_cmd.add_argument("model_dir", help="a model folder written by train.py, e.g. models/cnn-deep-128")
    model_cmd.add_argument("--data-root", default=None, help="dataset folder (default: $PNEUMONIA_DATA or data/chest_xray)")
    model_cmd.add_argument("--splits", nargs="+", default=["val"], choices=["val", "test"],
                           help="films to audit on (default: val; test is for information only)")
    model_cmd.add_argument("--per-class", type=int, default=PER_CLASS, help=f"films per class (default {PER_CLASS}, capped by the smaller class)")
    model_cmd.add_argument("--seed", type=int, default=SAMPLE_SEED, help=f"sampling seed (default {SAMPLE_SEED})")
    model_cmd.add_argument("--no-gradcam", action="store_true", help="skip the Grad-CAM mass")
    model_cmd.add_argument("--write-card", action="store_true", help="add the audit to the folder's card.json and card.md (atomic)")
    model_cmd.add_argument("--out", default=None, help="also write the audit as JSON to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config.quiet_tensorflow()
    try:
        if args.command == "data":
            result = dataset_audit(args.data_root, force=args.force, models_dir=args.models_dir)
            print(json.dumps({k: result[k] for k in ("baselines",)}, indent=2))
            for subset, found in result["domain"].items():
                print(f"domain classifier ({subset} films): ROC AUC {found['roc_auc']:.3f}; top: "
                      + ", ".join(f"{r['statistic']} ({r['auc_drop']:.3f})" for r in found["importance"][:5]))
            return 0
        audit = model_audit(args.model_dir, args.data_root, splits=args.splits, per_class=args.per_class, seed=args.seed,
                            gradcam=not args.no_gradcam)
        _print_model(audit)
        if args.out:
            write_json_atomic(Path(args.out), audit)
        if args.write_card:
            write_card_audit(args.model_dir, audit)
            logger.info("Wrote the audit into %s/card.json and card.md", args.model_dir)
        return 0
    except ValueError as error:
        logger.error("%s", error)
        return 1
