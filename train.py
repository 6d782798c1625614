"""Train a pneumonia classifier and write models/<name>/ (model.keras, history.csv, predictions.csv, card.json, card.md).

Examples:
    python train.py --data data/chest_xray --model xception --img-size 224 --epochs 20 \\
        --balance class-weight --augment --name xception-224
    python train.py --preset shipped          # the models the dashboard ships with (make models)
    python train.py --preset shipped --only cnn-reference-64
    python train.py --preset shipped --only ensemble-acq-norm-frame   # its members, then the ensemble
    python train.py --preset experiments      # the ablation runs not shipped (cards in docs/experiments/)
    python train.py --data /data/nih --format nih --model cnn_deep --balance oversample --strategy mirrored

A run that is killed resumes where it stopped when started again with the same --name.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields, replace

from core import config

ROBUST_RECIPE: dict = {
    # The recipe against the acquisition shift (issue 14): augmentation covering framing/exposure/sharpness/noise,
    # per-image standardisation inside the model, label smoothing, and the threshold chosen on the validation films
    # plus 4 acquisition-perturbed views of each (docs/PREREGISTRATION.md).
    "model": "cnn_deep", "img_size": 128, "epochs": 24, "balance": "class-weight", "augment": "acquisition",
    "patience": 5, "threshold_views": 4, "normalize": "per-image", "label_smoothing": 0.1,
}

SHIPPED_PRESET: dict[str, dict] = {
    # name -> options (everything else at the TrainConfig defaults). Order = training order (cheapest first).
    # The first four are the recipes shipped before issue 14 (the baselines of the ablation table).
    "mlp-64": {"model": "mlp", "img_size": 64, "epochs": 40, "learning_rate": 3e-4, "balance": "class-weight", "patience": 6},
    "cnn-reference-64": {"model": "cnn_reference", "img_size": 64, "epochs": 30, "balance": "class-weight", "augment": True, "patience": 6},
    "cnn-deep-128": {"model": "cnn_deep", "img_size": 128, "epochs": 15, "balance": "class-weight", "augment": True, "patience": 4},
    "xception-224": {
        "model": "xception", "img_size": 224, "epochs": 30, "learning_rate": 1e-3, "balance": "class-weight",
        "weights": "imagenet", "finetune_epochs": 8, "finetune_learning_rate": 1e-4, "patience": 4,
    },
    # The robust CNNs (issue 14) and the members of the shipped ensembles.
    "cnn-deep-128-acq-norm-s7": {**ROBUST_RECIPE, "seed": 7},
    "cnn-deep-128-acq-frame-norm": {**ROBUST_RECIPE, "framing": "crop-borders"},
    "cnn-deep-128-acq-frame-norm-s7": {**ROBUST_RECIPE, "framing": "crop-borders", "seed": 7},
    # ImageNet EfficientNet-Lite0 fine-tuned end to end with the acquisition augmentation (addendum 9): ~40 min here.
    "efficientnet-lite0-192-acq": {
        "model": "efficientnet_lite0", "img_size": 192, "weights": "imagenet", "balance": "class-weight",
        "augment": "acquisition", "epochs": 10, "learning_rate": 1e-3, "finetune_epochs": 5,
        "finetune_learning_rate": 1e-4, "end_to_end": True, "patience": 3, "threshold_views": 4,
    },
}
# Ensembles built after the preset's models: name -> {"candidates": [...], "threshold_views": n, "select": bool}.
# "select": False averages the candidates as given (pre-registered members, addendum 6 of docs/PREREGISTRATION.md:
# a model that reads the film as given and one that crops it to its content box fail under different changes);
# True chooses members among them on validation (greedy, validation Brier score). An ensemble holding Xception is
# another ~85 MB model file, over the repository's size budget; build one with
#   python train.py --ensemble cnn-deep-128 xception-224 --name ensemble-224 --threshold-views 4
SHIPPED_ENSEMBLES: dict[str, dict] = {
    "ensemble-acq-norm-frame": {
        "candidates": ["cnn-deep-128-acq-norm-s7", "cnn-deep-128-acq-frame-norm"], "threshold_views": 4, "select": False,
        "display_name": "Two robust CNNs averaged (film as given + cropped to its content), 128 px",
    },
    "ensemble-acq-norm-frame-s7": {
        "candidates": ["cnn-deep-128-acq-norm-s7", "cnn-deep-128-acq-frame-norm-s7"], "threshold_views": 4, "select": False,
        "display_name": "Two robust CNNs averaged, seed-7 pair (film as given + cropped to its content), 128 px",
    },
    "ensemble-lite0-acq-norm-frame": {  # addendum 9: an ImageNet backbone beside the two robust CNNs
        "candidates": ["efficientnet-lite0-192-acq", "cnn-deep-128-acq-norm-s7", "cnn-deep-128-acq-frame-norm"],
        "threshold_views": 4, "select": False,
        "display_name": "EfficientNet-Lite0 (ImageNet, fine-tuned) + two robust CNNs averaged, 192 px",
    },
}

EXPERIMENTS_PRESET: dict[str, dict] = {
    # Runs of the ablation table that are not shipped in models/ (their cards are in docs/experiments/; retrain
    # them with `make experiments`): each isolates one step of the robust recipe or one pre-registered attempt.
    "cnn-deep-128-acq": {**ROBUST_RECIPE, "normalize": "none", "label_smoothing": 0.0},
    "cnn-deep-128-acq-norm": dict(ROBUST_RECIPE),
    "cnn-deep-128-acq-aspect-norm": {**ROBUST_RECIPE, "augment": "acquisition-aspect"},
    "cnn-deep-128-acq-letterbox-norm": {**ROBUST_RECIPE, "augment": "acquisition-letterbox"},
    "cnn-deep-128-acq-aspect-frame-norm": {**ROBUST_RECIPE, "augment": "acquisition-aspect", "framing": "crop-borders"},
    "cnn-deep-128-acq-mixup-norm": {**ROBUST_RECIPE, "label_smoothing": 0.0, "mixup": 0.2},
}
PRESETS = {"shipped": SHIPPED_PRESET, "experiments": EXPERIMENTS_PRESET}
PRESET_ENSEMBLES = {"shipped": SHIPPED_ENSEMBLES, "experiments": {}}


def build_parser() -> argparse.ArgumentParser:
    """The command line: every TrainConfig option, with its default shown in --help."""
    from core.training import distribute
    from core.imaging import framing
    from core.evaluation import metrics
    from core.data import pipeline, streaming
    from core import training
    from core.models import zoo

    defaults = training.TrainConfig()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="The operating threshold is chosen on the validation split only; test metrics are reported at it.",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="train a named set of models (overrides --model/--name; other options still apply if given)")
    parser.add_argument("--only", nargs="+", default=None,
                        help="with --preset: train only these model names (an ensemble's name: its members, then it)")
    parser.add_argument("--ensemble", nargs="+", default=None, metavar="MODEL",
                        help="instead of training: average these trained models/<name> into one model "
                             "(members chosen among them on validation; --name defaults to 'ensemble')")
    parser.add_argument("--ensemble-members", choices=["greedy", "given"], default="greedy",
                        help="with --ensemble: 'greedy' keeps the candidates that lower the validation Brier score "
                             "(Caruana et al. 2004); 'given' averages every model named")
    parser.add_argument("--data", default=defaults.data, help="dataset folder with train/ and test/ (Kaggle layout)")
    parser.add_argument("--format", dest="data_format", default=defaults.data_format, choices=["auto", "kaggle", "nih"],
                        help="dataset layout: Kaggle folders, or NIH ChestX-ray14 (Data_Entry_2017.csv, official lists if present)")
    parser.add_argument("--strategy", default=defaults.strategy, choices=distribute.STRATEGIES,
                        help="tf.distribute: one device, 'mirrored' (all local GPUs) or 'multiworker' (TF_CONFIG); --batch-size is per replica")
    parser.add_argument("--pipeline", default=defaults.pipeline, choices=streaming.PIPELINES,
                        help="end-to-end models: decoded images cached in memory, or streamed from disk ('auto': stream large or multi-worker runs)")
    parser.add_argument("--model", default=defaults.model, choices=zoo.architectures(), help="architecture")
    parser.add_argument("--name", default=None, help="output folder models/<name> (default: <model>-<img-size>)")
    parser.add_argument("--img-size", type=int, default=None, help="input side in pixels (default: the model's own, e.g. 64 for the CNN, 224 for Xception)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="maximum epochs (of the head stage for transfer models)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per batch")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate, help="Adam learning rate")
    parser.add_argument("--balance", default=defaults.balance, choices=pipeline.BALANCE_CHOICES, help="class-imbalance handling")
    parser.add_argument("--augment", nargs="?", const="reference", default=defaults.augment, choices=list(pipeline.AUGMENT_PRESETS),
                        help="on-the-fly augmentation (no horizontal flip): 'reference' (the reference projects' small rotation/"
                             "zoom/shift/brightness/contrast; plain --augment) or 'acquisition' (zoom in/out 30%% with padding, "
                             "shift 15%%, brightness/contrast/gamma, blur, noise: the changes core.audit measures)")
    parser.add_argument("--normalize", default=defaults.normalize, choices=list(zoo.NORMALIZATIONS),
                        help="'per-image': standardise each film (mean 0, std 1) inside the model, at training and prediction alike")
    parser.add_argument("--framing", default=defaults.framing, choices=list(framing.FRAMINGS),
                        help="'crop-borders': crop each film to its content box (black borders/padding removed) inside the model, "
                             "at training and prediction alike (core.imaging.framing)")
    parser.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing,
                        help="binary cross-entropy label smoothing (0 = off); keeps validation scores off 0/1 so the threshold rule has room")
    parser.add_argument("--threshold-views", type=int, default=defaults.threshold_views,
                        help="choose the threshold on the validation films plus this many acquisition-perturbed views of each (0 = as given)")
    parser.add_argument("--mixup", type=float, default=defaults.mixup,
                        help="mixup of training image pairs and their labels (Zhang et al. 2018), lam ~ Beta(a, a) per "
                             "image; a > 0, e.g. 0.2 (0 = off). Pixel models only; class weights become mixed sample weights")
    parser.add_argument("--augment-views", type=int, default=defaults.augment_views,
                        help="transfer models: also cache backbone features of this many 'acquisition'-augmented views of each training film")
    parser.add_argument("--weights", default=defaults.weights,
                        help="transfer models: 'imagenet' (offline Xception copy if installed, else Keras download), 'none', or a weights file")
    parser.add_argument("--dropout", type=float, default=defaults.dropout, help="dropout rate before the output layer")
    parser.add_argument("--finetune-epochs", type=int, default=defaults.finetune_epochs,
                        help="transfer models: epochs of fine-tuning the top blocks after the head (0 = head only)")
    parser.add_argument("--end-to-end", action="store_true", default=defaults.end_to_end,
                        help="transfer models: the fine-tuning stage trains every layer on augmented films (tf.data) "
                             "instead of the top blocks on cached features")
    parser.add_argument("--finetune-learning-rate", type=float, default=defaults.finetune_learning_rate, help="learning rate while fine-tuning")
    parser.add_argument("--patience", type=int, default=defaults.patience, help="EarlyStopping patience in epochs (val_loss)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (weights, shuffling, augmentation)")
    parser.add_argument("--threshold-rule", default=defaults.threshold_rule, choices=metrics.THRESHOLD_RULES,
                        help="operating-point rule applied on the validation split")
    parser.add_argument("--threshold-target", type=float, default=defaults.threshold_target,
                        help="target for the 'sensitivity'/'specificity' rules")
    parser.add_argument("--limit", type=int, default=None, help="at most this many images per split and class (quick runs)")
    parser.add_argument("--models-dir", default=defaults.models_dir, help="where models/<name>/ is written")
    parser.add_argument("--cache-dir", default=defaults.cache_dir, help="where backbone features are cached")
    parser.add_argument("--bootstrap", type=int, default=defaults.bootstrap, help="bootstrap resamples for the 95%% CIs")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bars")
    parser.add_argument("--no-overwrite", dest="overwrite", action="store_false", help="refuse to replace an existing models/<name>")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    return parser


def only_with_members(preset: str, only: list[str]) -> list[str]:
    """The single models ``--only`` asks for, in preset order: an ensemble name stands for its candidates.

    Names that are neither a model nor an ensemble of the preset are kept (and then reported as unknown).
    """
    ensembles = PRESET_ENSEMBLES.get(preset, {})
    wanted: list[str] = []
    for name in only:
        for member in ensembles[name]["candidates"] if name in ensembles else [name]:
            if member not in wanted:
                wanted.append(member)
    order = {name: i for i, name in enumerate(PRESETS[preset])}
    return sorted(wanted, key=lambda n: order.get(n, len(order)))


def configs_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list:
    """The TrainConfig(s) to run: one from the options, or one per model of --preset."""
    from core import training

    names = {f.name for f in fields(training.TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    base = training.TrainConfig(**given)
    if args.preset is None:
        if args.only:
            parser.error("--only needs --preset")
        return [base]
    preset = PRESETS[args.preset]
    chosen = list(preset) if not args.only else only_with_members(args.preset, args.only)
    unknown = [n for n in chosen if n not in preset]
    if unknown:
        parser.error(
            f"unknown model(s) {unknown} in preset {args.preset}; "
            f"choose from {list(preset) + list(PRESET_ENSEMBLES[args.preset])}"
        )
    explicit = {k for k in names if getattr(args, k) != parser.get_default(k)}
    runs = []
    for name in chosen:
        options = dict(preset[name])
        options.update({k: given[k] for k in explicit if k not in {"model", "name"}})
        runs.append(replace(base, **options, name=name))
    return runs


def main(argv: list[str] | None = None) -> int:
    """Parse the options, train each configured model, print where it went and its headline test numbers."""
    config.quiet_tensorflow()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("core").setLevel(logging.INFO)
    from core.training import ensembles
    from core.evaluation import metrics
    from core import training

    def report(result: training.RunResult) -> None:
        test = result.card["metrics"]["test"]
        print(
            f"{result.folder}: threshold {result.card['threshold']['value']:.3f} (val, {result.card['threshold']['rule']}); "
            + ", ".join(f"test {k} {metrics.format_ci(test[k])}" for k in ("roc_auc", "accuracy", "recall", "specificity")),
            flush=True,
        )

    ensemble_runs: dict[str, dict] = {}
    if args.ensemble:
        ensemble_runs = {
            args.name or "ensemble": {
                "candidates": args.ensemble, "threshold_views": args.threshold_views,
                "select": args.ensemble_members == "greedy",
            }
        }
    else:
        for cfg in configs_from_args(args, parser):
            try:
                report(training.train(cfg))
            except (ValueError, FileNotFoundError, FileExistsError) as error:
                print(f"train.py: {cfg.resolved_name()}: {error}", file=sys.stderr)
                return 2
        if args.preset:
            ensemble_runs = {
                name: options for name, options in PRESET_ENSEMBLES.get(args.preset, {}).items()
                if not args.only or name in args.only
            }
    for name, options in ensemble_runs.items():
        try:
            report(ensembles.train_ensemble(
                options["candidates"], name=name, data=args.data, models_dir=args.models_dir, bootstrap=args.bootstrap,
                seed=args.seed, progress=args.progress, threshold_views=options.get("threshold_views", 0),
                select=options.get("select", True), display_name=options.get("display_name"),
            ))
        except (ValueError, FileNotFoundError) as error:
            print(f"train.py: {name}: {error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
