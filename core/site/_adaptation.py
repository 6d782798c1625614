"""Label-free adaptation to a site: re-estimated batch normalisation (AdaBN) and an EM prior shift, as a new model folder."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from core import config
from core.evaluation import metrics
from core.models import cards, registry
from core.site._sources import (
    ADAPTATION_METHODS,
    BALANCED_TRAINING,
    FilmProblem,
    SiteDataError,
    SiteSet,
    logger,
    slug,
)
from core.site._validation import films_fingerprint


# Adaptation without labels
# --------------------------------------------------------------------------------------------------
def batchnorm_layers(model: Any) -> list[Any]:
    """Every keras BatchNormalization layer of a model, nested models included, in graph order."""
    import keras

    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


def reestimate_batchnorm(model: Any, batches: Iterable[np.ndarray]) -> int:
    """AdaBN in place: every BatchNorm layer's moving mean/variance become those of its inputs on these films.

    `batches` yields model inputs (B, H, W, C) in [0, 255]. Each BatchNorm layer normalises with the batch's
    own statistics while the films pass (everything else runs in inference mode: no dropout, no augmentation),
    and its moving statistics become the film-weighted average of the batch statistics (exact with one batch).
    Only moving_mean and moving_variance change. Returns the number of films used; raises ValueError when the
    model has no BatchNorm layer or no film was given.
    """
    layers = batchnorm_layers(model)
    if not layers:
        raise ValueError("This model has no BatchNorm layer, so re-estimating BatchNorm statistics (AdaBN) does not "
                         "apply; choose prior-shift correction instead.")
    saved = [(layer, layer.momentum, layer.trainable) for layer in layers]

    def forced(layer: Any) -> Callable:
        original = type(layer).call

        def call(inputs: Any, training: Any = None, mask: Any = None) -> Any:
            return original(layer, inputs, training=True, mask=mask)
        return call

    seen = 0
    try:
        for layer in layers:
            layer.call = forced(layer)
            layer.trainable = True
        for batch in batches:
            batch = np.asarray(batch, dtype=np.float32)
            if not len(batch):
                continue
            weight_old = seen / (seen + len(batch))
            for layer in layers:
                layer.momentum = weight_old  # moving = old * seen/(seen+b) + batch * b/(seen+b)
            model(batch, training=False)
            seen += len(batch)
    finally:
        for layer, momentum, trainable in saved:
            layer.__dict__.pop("call", None)
            layer.momentum = momentum
            layer.trainable = trainable
    if not seen:
        raise ValueError("No film to re-estimate the BatchNorm statistics on; give at least one readable film.")
    return seen


def source_prior(card: dict, validation_labels: np.ndarray | None = None) -> tuple[float, str]:
    """(prevalence the model's probabilities are calibrated to, why): 0.5 after balanced training, else the training prevalence."""
    cfg = (card.get("training") or {}).get("config") or {}
    if cfg.get("balance") in BALANCED_TRAINING:
        return 0.5, f"0.5: the model was trained with balanced classes ({cfg['balance']})"
    per_class = ((card.get("dataset") or {}).get("images_per_class") or {}).get("train") or {}
    if per_class.get("NORMAL") and per_class.get("PNEUMONIA"):
        p = per_class["PNEUMONIA"] / (per_class["NORMAL"] + per_class["PNEUMONIA"])
        return float(p), f"{p:.3f}: the training prevalence recorded on the card"
    if validation_labels is not None and len(validation_labels):
        p = float(np.mean(validation_labels))
        return p, f"{p:.3f}: the validation prevalence (the card records no training prevalence)"
    return 0.5, "0.5: nothing better recorded on the card"


def estimate_prior_em(scores: np.ndarray, prior_source: float, *, tol: float = 1e-6, max_iter: int = 1000) -> tuple[float, int]:
    """Saerens et al. (2002) EM: the prevalence of unlabelled films (n,) whose posteriors assume `prior_source`.

    Returns (estimated prevalence in (0, 1), iterations). E-step: posteriors re-weighted by new/old priors;
    M-step: the new prior is their mean.
    """
    s = np.clip(np.asarray(scores, dtype=np.float64), 1e-7, 1 - 1e-7)
    if s.ndim != 1 or not len(s):
        raise ValueError("Prior estimation needs at least one score (a 1-D array).")
    if not 0.0 < prior_source < 1.0:
        raise ValueError(f"The source prevalence must be in (0, 1); got {prior_source}.")
    prior = prior_source
    for iteration in range(1, max_iter + 1):
        positive = prior / prior_source * s
        negative = (1 - prior) / (1 - prior_source) * (1 - s)
        new = float(np.mean(positive / (positive + negative)))
        new = min(max(new, 1e-4), 1 - 1e-4)
        if abs(new - prior) < tol:
            return new, iteration
        prior = new
    return prior, max_iter


def shift_output_prior(model: Any, prior_source: float, prior_target: float) -> float:
    """Add logit(target) - logit(source) to the bias of the model's final Dense(1, sigmoid) layer; return the shift.

    This is exactly Bayes' prior correction p' ∝ p·π'/π for a sigmoid output. Raises ValueError when the
    model does not end in a single-unit sigmoid Dense layer (e.g. an averaging ensemble).
    """
    import keras

    last = model.layers[-1]
    if not (isinstance(last, keras.layers.Dense) and last.units == 1 and getattr(last.activation, "__name__", "") == "sigmoid"
            and last.use_bias):
        raise ValueError(f"Prior-shift correction needs a model ending in Dense(1, sigmoid) with a bias; {model.name} ends in "
                         f"{type(last).__name__}. Use AdaBN only, or adapt the members of an ensemble.")
    logit = lambda p: math.log(p / (1 - p))
    shift = logit(prior_target) - logit(prior_source)
    last.bias.assign(last.bias.numpy() + np.float32(shift))
    return shift


def _official_split_digests(entry: registry.ModelEntry, data_root: Path) -> dict[str, set[str]]:
    """SHA-256 of the bytes of the source model's val and test films (to detect adapting on them)."""
    frame = registry.load_predictions(entry)
    out: dict[str, set[str]] = {}
    for split in ("val", "test"):
        digests = set()
        for rel in frame.loc[frame["split"] == split, "path"]:
            path = Path(rel) if Path(rel).is_absolute() else data_root / rel
            if path.is_file():
                digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
        out[split] = digests
    return out


def _card_markdown(card: dict) -> str:
    """A short human-readable card.md of an adapted model."""
    info = card["adaptation"]
    transductive = "transductive: test numbers are NOT a held-out measurement" if info["official_test_films"] else "none"
    lines = [f"# {card['display_name']}", "",
             f"**Adapted model** (`{card['name']}`), not a retrained one. Source: `{info['source_model']}`.", "",
             f"- Methods: {'; '.join(ADAPTATION_METHODS[m] for m in info['methods'])}",
             f"- Adapted on: {info['films']} unlabelled films of '{info['site']}' (fingerprint {info['fingerprint']}), {info['date']}",
             "- Labels used: none",
             f"- Official test films among them: {info['official_test_films']} ({transductive})",
             f"- Threshold: {card['threshold']['value']:.4f} ({card['threshold']['rule']})"]
    if "prior" in info:
        lines.append(f"- Prevalence: source {info['prior']['source']:.3f} ({info['prior']['source_reason']}), "
                     f"site estimate {info['prior']['site']:.3f} (EM, {info['prior']['iterations']} iterations)")
    lines += ["", "## Metrics after adaptation (95% CI)", "", "| split | " + " | ".join(metrics.METRIC_KEYS) + " |",
              "|---|" + "---|" * len(metrics.METRIC_KEYS)]
    for split, values in card["metrics"].items():
        lines.append(f"| {split} | " + " | ".join(metrics.format_ci(values[k]) for k in metrics.METRIC_KEYS) + " |")
    lines += ["", card.get("metrics_note", "")]
    return "\n".join(lines) + "\n"


def adapt_model(model_dir: str | Path, site: SiteSet, *, methods: Sequence[str] = ("adabn",), site_name: str | None = None,
                models_dir: str | Path | None = None, data_root: str | Path | None = None, batch_size: int = 64,
                n_resamples: int = config.BOOTSTRAP_RESAMPLES, guard: bool = True, replace: bool = False) -> Path:
    """Adapt a model to a site's films without labels and write it as a new model folder; return its path.

    The new folder ``<models_dir>/<source>-adapted-<site>/`` holds model.keras, card.json (with
    ``"adapted": true`` and an ``adaptation`` section: methods, films, fingerprint, date, source model, whether
    official test films were among them), card.md and predictions.csv (the source's val/test films re-scored
    by the adapted model from `data_root`), plus ood.npz when `guard`. It is written to a hidden temporary folder
    and renamed when complete (os.replace), so a failure leaves nothing behind. The source folder is not touched.
    Raises ValueError (SiteDataError) for an unknown method, an unreadable set, or an existing target (unless
    `replace`).
    """
    from core import guard as ood
    from core.models import scorer as model_scoring
    from core.imaging import decode_xray

    unknown = [m for m in methods if m not in ADAPTATION_METHODS]
    if unknown or not methods:
        raise SiteDataError(f"Unknown adaptation method(s) {unknown or methods}; choose from {', '.join(ADAPTATION_METHODS)}.")
    methods = [m for m in ADAPTATION_METHODS if m in methods]  # AdaBN first, then the prior on the adapted scores
    source = registry.inspect_model(model_dir)
    if not source.available:
        raise SiteDataError(f"Model {source.name} cannot be adapted: {source.reason}")
    if source.card.get("adapted"):
        raise SiteDataError(f"{source.name} is already an adapted model; adapt its source model "
                            f"{source.card.get('adaptation', {}).get('source_model', '')} instead.")
    root = Path(models_dir) if models_dir is not None else config.models_dir()
    data_root = Path(data_root) if data_root is not None else config.data_root()
    site_label = site_name or site.name
    target = root / f"{source.name}-adapted-{slug(site_label)}"
    if target.exists() and not replace:
        raise SiteDataError(f"{target} already exists; choose another site name or pass replace=True (--replace).")

    scorer = model_scoring.load_scorer(source.path)
    model = registry.load_keras_model(source.path)  # a private copy: the shared, cached model is never changed
    adapted = model_scoring.scorer_from_model(model, name=target.name, threshold=scorer.threshold, card=dict(source.card))

    inputs, digests, problems = [], [], list(site.problems)
    for film in site.films:
        try:
            content = film.read()
            inputs.append(adapted.prepare(decode_xray(content, name=PurePosixPath(film.name).name)))
            digests.append(hashlib.sha256(content).hexdigest())
        except (ValueError, OSError) as exc:
            problems.append(FilmProblem(film.name, str(exc)))
    if not inputs:
        raise SiteDataError("None of the site's films could be read; nothing to adapt on.")
    stacked = np.stack(inputs)
    official = _official_split_digests(source, data_root)
    on_test = sum(d in official["test"] for d in digests)  # films whose bytes are an official test film
    on_val = sum(d in official["val"] for d in digests)

    info: dict[str, Any] = {"methods": methods, "site": site_label, "films": len(inputs), "unreadable_films": len(problems),
                            "fingerprint": films_fingerprint(digests),
                            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                            "source_model": source.name, "source_model_sha256": ood.model_fingerprint(source.path),
                            "labels_used": False, "official_test_films": on_test, "validation_films": on_val}
    if "adabn" in methods:
        reestimate_batchnorm(model, (stacked[i:i + batch_size] for i in range(0, len(stacked), batch_size)))
        info["batchnorm_layers"] = len(batchnorm_layers(model))
    if "prior" in methods:
        val_labels = registry.load_predictions(source, split="val")["label"].to_numpy()
        prior_src, why = source_prior(source.card, val_labels)
        site_scores = np.concatenate([adapted.predict_batch(stacked[i:i + batch_size]) for i in range(0, len(stacked), batch_size)])
        prior_site, iterations = estimate_prior_em(site_scores, prior_src)
        shift = shift_output_prior(model, prior_src, prior_site)
        info["prior"] = {"source": prior_src, "source_reason": why, "site": prior_site, "iterations": iterations, "logit_shift": shift}
    adapted = model_scoring.scorer_from_model(model, name=target.name, threshold=scorer.threshold, card=dict(source.card))

    # Re-score the source's validation and test films with the adapted model (predictions.csv is the source of truth).
    stored = registry.load_predictions(source)
    stored = stored[stored["split"].isin(("val", "test"))].reset_index(drop=True)
    files = [Path(p) if Path(p).is_absolute() else data_root / p for p in stored["path"]]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise SiteDataError(f"{len(missing)} validation/test film(s) of {source.name} are missing under {data_root} (first: "
                            f"{missing[0]}); pass the dataset the model was evaluated on (--data-root).")
    new_scores = np.concatenate([adapted.predict_batch(np.stack([adapted.prepare(decode_xray(f)) for f in files[i:i + batch_size]]))
                                 for i in range(0, len(files), batch_size)])
    predictions = stored.assign(score=np.clip(new_scores.astype(np.float64), 0.0, 1.0))

    threshold = float(source.threshold if source.threshold is not None else 0.5)
    card = json.loads(json.dumps(source.card))
    tag = " · TRANSDUCTIVE (adapted on the official test films)" if on_test else ""
    card.update({
        "name": target.name, "adapted": True, "adaptation": info,
        "display_name": f"{source.display_name} — adapted on '{site_label}' ({'+'.join(methods)}, {len(inputs)} films, no labels){tag}",
        "threshold": {**source.card.get("threshold", {}), "value": threshold,
                      "chosen_on": f"{source.threshold_split} of the source model {source.name}, before adaptation"},
        "metrics_note": (f"Every metric of this model was computed AFTER adapting on {len(inputs)} unlabelled films of "
                         f"'{site_label}'." + (f" {on_test} of them are official test films: the test numbers are "
                                              "transductive (unlabelled), not a held-out measurement." if on_test else "")),
    })
    card["metrics"] = {split: metrics.summarize_with_ci(part["label"], part["score"], threshold, n_resamples=n_resamples)
                       for split, part in predictions.groupby("split")}
    card.setdefault("limitations", [])
    card["limitations"] = [card["metrics_note"], *card["limitations"]]

    with cards.staged_folder(target) as tmp:
        model.save(tmp / registry.MODEL_FILE)
        predictions[list(registry.PREDICTION_COLUMNS)].to_csv(tmp / registry.PREDICTIONS_FILE, index=False)
        (tmp / registry.CARD_FILE).write_text(json.dumps(card, indent=2), encoding="utf-8")
        (tmp / registry.CARD_MD_FILE).write_text(_card_markdown(card), encoding="utf-8")
        if guard:
            try:
                ood.calibrate_model(tmp, data_root)
            except ValueError as exc:  # too few validation films etc.: the model is still usable without a guard
                logger.warning("No out-of-distribution guard for %s: %s", target.name, exc)
    logger.info("Adapted %s on %d films of %s (%s): wrote %s", source.name, len(inputs), site_label, "+".join(methods), target)
    return target
