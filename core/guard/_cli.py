"""Command line: python -m core.guard (calibrate), evaluate (measure into the card), fit-chest-film."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from core import config
from core.guard._chest_film import CHEST_FILM_ASSET, fit_chest_film_asset
from core.guard._features import DEFAULT_QUANTILE, calibrate_model, logger
from core.guard._measure import evaluate_guard, guard_table, write_guard_card


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: calibrate model folders; `evaluate` measures their guards; `fit-chest-film` rebuilds the shared check."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config.quiet_tensorflow()
    if argv[:1] == ["fit-chest-film"]:
        parser = argparse.ArgumentParser(prog="python -m core.guard fit-chest-film",
                                         description="Rebuild core/assets/chest_film.npz from the training films.")
        parser.add_argument("--data-root", default=None)
        parser.add_argument("--out", default=str(CHEST_FILM_ASSET))
        args = parser.parse_args(argv[1:])
        logger.info("Wrote %s", fit_chest_film_asset(args.data_root, out=Path(args.out)))
        return 0
    if argv[:1] == ["evaluate"]:
        parser = argparse.ArgumentParser(prog="python -m core.guard evaluate", description=(
            "Measure each model's guard: detection rate on out-of-distribution films, false alarms on validation films; "
            "write them into card.json (guard) and card.md, and print a table."))
        parser.add_argument("models", nargs="+", help="model folders, e.g. models/*/")
        parser.add_argument("--data-root", default=None, help="dataset folder of the model's predictions.csv paths")
        parser.add_argument("--extra", action="append", default=[], metavar="NAME=FOLDER",
                            help="another folder of films the guard should flag, e.g. 'site adults=/data/adults'")
        parser.add_argument("--no-write", action="store_true", help="print only; leave the model cards untouched")
        parser.add_argument("--json", default=None, metavar="PATH", help="also write every model's guard section to this JSON file")
        args = parser.parse_args(argv[1:])
        extra = {}
        for item in args.extra:
            name, sep, folder = item.partition("=")
            if not sep or not Path(folder).is_dir():
                parser.error(f"--extra takes NAME=FOLDER with an existing folder, got {item!r}")
            extra[name] = Path(folder)
        guards, failed = [], 0
        for model_dir in args.models:
            try:
                guard = evaluate_guard(model_dir, args.data_root, extra=extra)
            except ValueError as error:
                logger.error("%s: %s", model_dir, error)
                failed += 1
                continue
            guards.append(guard)
            if not args.no_write:
                write_guard_card(model_dir, guard)
                logger.info("Wrote the guard section of %s/card.json and card.md", model_dir)
            for row in guard["sets"]:
                missed = row.get("missed") or row.get("false_alarms")
                logger.info("%s · %s: %s/%s flagged%s", guard["model"], row["set"], row["flagged"], row["n"],
                            f"; {'missed' if row['should_flag'] else 'false alarms'}: {', '.join(missed[:10])}" if missed else "")
        if guards:
            print(guard_table(guards))
        if args.json:
            Path(args.json).write_text(json.dumps(guards, indent=2, default=str))
        return 1 if failed else 0
    parser = argparse.ArgumentParser(prog="python -m core.guard", description=(
        "Calibrate the out-of-distribution guard on validation images. Also: 'python -m core.guard evaluate MODEL...' "
        "(measure the guard, write it into the card) and 'python -m core.guard fit-chest-film' (rebuild the shared check)."))
    parser.add_argument("models", nargs="+", help="model folders, e.g. models/xception-224")
    parser.add_argument("--data-root", default=None, help="dataset folder of the model's predictions.csv paths")
    parser.add_argument("--quantile", type=float, default=DEFAULT_QUANTILE)
    args = parser.parse_args(argv)
    failed = 0
    for model_dir in args.models:
        try:
            calibrate_model(model_dir, args.data_root, quantile=args.quantile)
        except ValueError as error:  # one bad folder does not stop the others
            logger.error("%s: %s", model_dir, error)
            failed += 1
    return 1 if failed else 0
