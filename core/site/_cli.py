"""Command line: python -m core.site validate | adapt."""
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from core import config
from core.evaluation import metrics
from core.models import registry
from core.site._adaptation import adapt_model
from core.site._sources import ADAPTATION_METHODS, logger, read_site
from core.site._validation import json_bytes, validate_site


# Command line
# --------------------------------------------------------------------------------------------------
def format_result(result: dict) -> str:
    """A few plain-text lines for one model's site validation (the CLI's output)."""
    lines = [f"{result['display_name']} ({result['model']})"]
    if result["adaptation"]:
        lines.append(f"  NOTE {result['adaptation']}")
    c = result["counts"]
    lines.append(f"  films {c['films']} ({c['NORMAL']} NORMAL, {c['PNEUMONIA']} PNEUMONIA), patients {c['patients']}")
    lines.append(f"  at the card threshold {result['threshold']:.4f} ({result['threshold_source']}):")
    if result["metrics"] is None:
        lines.append(f"    {result['refusal']}")
    else:
        for key in ("roc_auc", "pr_auc", "recall", "specificity", "precision", "npv", "accuracy", "f1", "brier"):
            m = result["metrics"][key]
            lines.append(f"    {key:12s} {metrics.format_ci(m)}  CI width {m['ci_width']:.3f}")
    o = result["ood"]
    lines.append("  out-of-distribution guard: " + (f"{o['flagged']} of {o['checked']} films flagged" if o["guard"] else "not available"))
    d = result["drift"]
    lines.append(f"  drift: mean score site {d['site_mean']:.3f} vs validation {d['val_mean']:.3f}; called positive "
                 f"{d['site_called_positive']:.1%} vs {d['val_called_positive']:.1%}; KS {d['ks_statistic']:.3f} (p={d['ks_pvalue']:.2g})")
    op = result["site_operating_point"]
    if op["threshold"] is None:
        lines.append(f"  site operating point: {op['refusal']}")
    else:
        m = op["metrics"]
        lines.append(f"  site operating point {op['threshold']:.4f} ({op['source']}):")
        for key in ("recall", "specificity", "accuracy", "precision"):
            lines.append(f"    {key:12s} {metrics.format_ci(m[key])}  CI width {m[key]['ci_width']:.3f}  (evaluation half)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: validate on labelled site films, or adapt a model to unlabelled ones. Exit 0 ok, 1 failed, 2 bad arguments."""
    parser = argparse.ArgumentParser(prog="python -m core.site", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    val = sub.add_parser("validate", help="metrics of every model on labelled films of your site")
    val.add_argument("source", help="folder or .zip: NORMAL/ and PNEUMONIA/ folders at any depth, or files + a file,label CSV")
    val.add_argument("--labels", default=None, help="CSV with columns file,label[,patient] (default: folder names or a CSV inside)")
    val.add_argument("--models", nargs="*", default=None, help="model folder names (default: every available model)")
    val.add_argument("--models-dir", default=None, help="folder of trained models (default: $PNEUMONIA_MODELS or models/)")
    val.add_argument("--name", default=None, help="site name for the output (default: the folder or file name)")
    val.add_argument("--out", default=None, help="write the full results (curves, per-model metrics, problems) as JSON here")
    val.add_argument("--no-guard", action="store_true", help="skip the out-of-distribution guard (faster)")
    val.add_argument("--resamples", type=int, default=config.BOOTSTRAP_RESAMPLES, help="bootstrap resamples for the CIs")
    ada = sub.add_parser("adapt", help="write an adapted copy of a model, using unlabelled films of your site")
    ada.add_argument("source", help="folder or .zip of the site's films (labels, if any, are not used)")
    ada.add_argument("--model", required=True, help="model folder name, e.g. cnn-deep-128")
    ada.add_argument("--site-name", required=True, help="short name of the site; the new model is <model>-adapted-<site-name>")
    ada.add_argument("--method", action="append", choices=sorted(ADAPTATION_METHODS), default=None,
                     help="adabn (default) and/or prior; repeat for both")
    ada.add_argument("--models-dir", default=None, help="folder of trained models (default: $PNEUMONIA_MODELS or models/)")
    ada.add_argument("--data-root", default=None, help="dataset of the model's predictions.csv (default: $PNEUMONIA_DATA or data/chest_xray)")
    ada.add_argument("--replace", action="store_true", help="replace an existing adapted model of the same name")
    ada.add_argument("--no-guard", action="store_true", help="do not calibrate the out-of-distribution guard of the new model (faster)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config.quiet_tensorflow()
    try:
        if args.command == "adapt":
            site = read_site(args.source, labelled=False)
            models_dir = Path(args.models_dir) if args.models_dir else config.models_dir()
            path = adapt_model(models_dir / args.model, site, methods=args.method or ["adabn"], site_name=args.site_name,
                               models_dir=models_dir, data_root=args.data_root, replace=args.replace, guard=not args.no_guard)
            card = registry.load_card(path)
            print(f"Wrote {path}\n{card['metrics_note']}")
            for split in ("val", "test"):
                m = card["metrics"][split]
                print(f"  {split}: " + ", ".join(f"{k} {metrics.format_ci(m[k])}" for k in ("roc_auc", "accuracy", "recall", "specificity")))
            return 0
        site = read_site(args.source, name=args.name, labels_csv=args.labels)
        entries = registry.list_models(args.models_dir)
        if args.models:
            known = {e.name: e for e in entries}
            absent = [m for m in args.models if m not in known]
            if absent:
                parser.error(f"unknown model(s) {', '.join(absent)}; available: {', '.join(known)}")
            entries = [known[m] for m in args.models]
        report = validate_site(site, entries, guard=not args.no_guard, n_resamples=args.resamples)
    except ValueError as exc:
        logger.error("%s", exc)
        return 1
    print(f"Site '{report.site}': {report.films} films scored (labels from {report.labels_from}; patients from "
          f"{report.patients_from}; fingerprint {report.fingerprint}); {len(report.problems)} not used")
    for problem in report.problems:
        print(f"  not used: {problem.name}: {problem.reason}")
    for result in report.results:
        print(format_result(result))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_bytes(json_bytes(report))
        tmp.replace(out)
        print(f"Wrote {out}")
    return 0
