"""Validating models on a site's labelled films: scores, metrics with patient-grouped CIs, a site operating point."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from core import config
from core.evaluation import metrics
from core.models import registry
from core.site._sources import (
    MIN_FILMS_PER_CLASS,
    SPLIT_SEED,
    FilmProblem,
    SiteDataError,
    SiteSet,
)


# Scoring every film with every model (each film decoded once)
# --------------------------------------------------------------------------------------------------
@dataclass
class SiteScores:
    """Scores of the readable films: `frame` has film, label, group and, per model, `score:<name>` and `ood:<name>`."""

    site: str
    frame: pd.DataFrame
    problems: list[FilmProblem]
    fingerprint: str
    models: list[str]
    patients_from: str
    labels_from: str

    def model_frame(self, model: str) -> pd.DataFrame:
        """film, label, group, score, ood (True flagged / False passed / None no guard) for one model."""
        return self.frame[["film", "label", "group"]].assign(score=self.frame[f"score:{model}"], ood=self.frame[f"ood:{model}"])


def films_fingerprint(digests: Iterable[str]) -> str:
    """SHA-256 (first 16 hex) over the sorted SHA-256 digests of the films' bytes: same films, same fingerprint."""
    return hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()[:16]


def score_site(site: SiteSet, scorers: Sequence[Any], *, names: Sequence[str] | None = None, guards: dict[str, Any] | None = None,
               batch_size: int = 32, progress: Callable[[int, int], None] | None = None) -> SiteScores:
    """Decode each film once (in memory) and score it with every Scorer; run each model's OOD guard when given.

    `names` (default each scorer's own name) label the columns; `guards` maps a name to its core.guard calibration
    (or None: no guard). Unreadable films are added
    to the problems with the decoder's message. `progress(done, total)` is called after each batch.
    """
    from core import guard as ood
    from core.imaging import decode_xray

    guards = guards or {}
    names = list(names) if names is not None else [s.name for s in scorers]
    rows: list[dict] = []
    problems = list(site.problems)
    digests: list[str] = []
    total = len(site.films)
    for start in range(0, total, batch_size):
        chunk = site.films[start:start + batch_size]
        decoded, raw, kept = [], [], []
        for film in chunk:
            try:
                content = film.read()
                image = decode_xray(content, name=PurePosixPath(film.name).name)
            except OSError as exc:
                problems.append(FilmProblem(film.name, f"could not be read ({exc.strerror or exc})."))
                continue
            except ValueError as exc:  # InvalidImageError: the decoder's readable message
                problems.append(FilmProblem(film.name, str(exc)))
                continue
            decoded.append(image)
            raw.append(content)
            kept.append(film)
            digests.append(hashlib.sha256(content).hexdigest())
        batch_rows = [{"film": f.name, "label": f.label, "group": f.group} for f in kept]
        for scorer, model_name in zip(scorers, names):
            if not kept:
                break
            scores = scorer.predict_batch(np.stack([scorer.prepare(d) for d in decoded]))
            guard = guards.get(model_name)
            for i, row in enumerate(batch_rows):
                row[f"score:{model_name}"] = float(scores[i])
                row[f"ood:{model_name}"] = (None if guard is None else
                                             bool(ood.check(scorer, guard, decoded[i], raw_bytes=raw[i]).flagged))
        rows.extend(batch_rows)
        if progress is not None:
            progress(min(start + batch_size, total), total)
    columns = ["film", "label", "group"] + [c for n in names for c in (f"score:{n}", f"ood:{n}")]
    frame = pd.DataFrame(rows, columns=columns)
    return SiteScores(site.name, frame, problems, films_fingerprint(digests), names,
                      site.patients_from, site.labels_from)


# --------------------------------------------------------------------------------------------------
# Validation of one model on the site's scores
# --------------------------------------------------------------------------------------------------
def refusal(labels: Sequence[int] | np.ndarray, *, where: str = "these films", minimum: int = MIN_FILMS_PER_CLASS) -> str | None:
    """Why metrics cannot be reported on these labels (a class with fewer than `minimum` films), or None."""
    labels = np.asarray(labels)
    counts = {name: int(np.count_nonzero(labels == i)) for i, name in enumerate(config.CLASS_NAMES)}
    short = [f"{n} {name}" for name, n in counts.items() if n < minimum]
    if not short:
        return None
    return (f"Not reported: {where} hold only {' and '.join(short)} film(s); at least {minimum} of each class are "
            "needed before a sensitivity, specificity or AUC means anything (the 95% CI would span most of [0, 1]). "
            "Add more labelled films of the missing class.")


def patient_halves(labels: Sequence[int], groups: Sequence[str], *, seed: int = SPLIT_SEED) -> np.ndarray:
    """Boolean mask (n,) of the calibration half; the rest is the evaluation half. No patient is in both.

    sklearn.model_selection.StratifiedGroupKFold(2) keeps the class balance of the two halves close.
    """
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    y = np.asarray(labels, dtype=int)
    g = np.asarray(groups)
    if len(np.unique(g)) < 2:
        raise SiteDataError("The films come from a single patient; a calibration/evaluation split needs at least two.")
    try:
        _, evaluation = next(StratifiedGroupKFold(n_splits=2, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, g))
    except ValueError:  # a class with a single patient: fall back to a plain grouped split
        _, evaluation = next(GroupShuffleSplit(n_splits=1, test_size=0.5, random_state=seed).split(np.zeros(len(y)), y, g))
    mask = np.ones(len(y), dtype=bool)
    mask[evaluation] = False
    return mask


def card_rule(card: dict) -> tuple[str, float | None] | None:
    """(rule_id, target) of the card's threshold rule (threshold.rule_id/target, else training.config), or None."""
    threshold = card.get("threshold") or {}
    rule = threshold.get("rule_id")
    target = threshold.get("target")
    if rule is None:
        cfg = (card.get("training") or {}).get("config") or {}
        rule, target = cfg.get("threshold_rule"), cfg.get("threshold_target")
    if rule not in metrics.THRESHOLD_RULES:
        return None
    return str(rule), (float(target) if target is not None else None)


def _describe_rule(rule: str, target: float | None) -> str:
    """'highest sensitivity with specificity >= 0.95' for ('specificity', 0.95), etc."""
    return {"f1": "highest F1", "youden": "highest Youden J",
            "sensitivity": f"highest threshold with sensitivity >= {target}",
            "specificity": f"highest sensitivity with specificity >= {target}"}[rule]


def _counts(labels: np.ndarray, groups: np.ndarray) -> dict:
    """films, patients and films per class of a subset."""
    return {"films": len(labels), "patients": len(np.unique(groups)),
            **{name: int(np.count_nonzero(labels == i)) for i, name in enumerate(config.CLASS_NAMES)}}


def adaptation_note(card: dict, fingerprint: str | None = None) -> str:
    """'' for an ordinary model; else a sentence saying what the model was adapted on (and if it is these films)."""
    info = card.get("adaptation") or {}
    if not card.get("adapted"):
        return ""
    text = (f"Adapted model: {', '.join(info.get('methods', []))} on {info.get('films', '?')} unlabelled films of "
            f"'{info.get('site', '?')}' (fingerprint {info.get('fingerprint', '?')}, {info.get('date', '?')[:10]}); "
            f"source model {info.get('source_model', '?')}.")
    if fingerprint and info.get("fingerprint") == fingerprint:
        text += " It was adapted on these very films (transductive, labels not used)."
    return text


def validate_model(scores: SiteScores, entry: registry.ModelEntry, *, n_resamples: int = config.BOOTSTRAP_RESAMPLES,
                   seed: int = 0) -> dict:
    """Everything the page, the CLI and the report show for one model on one labelled site set.

    Keys: model, display_name, threshold, threshold_source, adaptation, counts, refusal, metrics (group-bootstrap
    CIs at the card threshold, or None), curves (roc, pr, calibration frames or None), ood (counts), drift
    (site vs validation score summaries, KS test, histograms), site_operating_point (dict with threshold, rule,
    calibration/evaluation counts, metrics on the evaluation half, refusal). Uses only stored validation scores.
    """
    from scipy.stats import ks_2samp

    frame = scores.model_frame(entry.name)
    labelled = frame[frame["label"].notna()]
    y = labelled["label"].to_numpy(dtype=int)
    s = labelled["score"].to_numpy(dtype=float)
    g = labelled["group"].to_numpy()
    threshold = float(entry.threshold if entry.threshold is not None else 0.5)
    result: dict[str, Any] = {
        "model": entry.name, "display_name": entry.display_name, "threshold": threshold,
        "threshold_source": f"the model's own, chosen on {entry.threshold_split} ({entry.threshold_rule})",
        "adaptation": adaptation_note(entry.card, scores.fingerprint),
        "counts": _counts(y, g), "refusal": refusal(y, where="the site's labelled films"),
        "metrics": None, "curves": None,
    }
    if result["refusal"] is None:
        result["metrics"] = metrics.summarize_with_group_ci(y, s, threshold, g, n_resamples=n_resamples, seed=seed)
        result["metrics"]["counts"] = metrics.metrics_at_threshold(y, s, threshold)
        result["curves"] = {"roc": metrics.roc_curve_frame(y, s), "pr": metrics.pr_curve_frame(y, s),
                            "calibration": metrics.calibration_frame(y, s)}
    flags = frame["ood"]
    result["ood"] = {"checked": int(flags.notna().sum()), "flagged": int((flags == True).sum()),
                     "passed": int((flags == False).sum()), "guard": bool(flags.notna().any())}
    val = registry.load_predictions(entry, split="val")
    all_scores = frame["score"].to_numpy(dtype=float)
    ks = ks_2samp(all_scores, val["score"].to_numpy()) if len(all_scores) else None
    result["drift"] = {
        "site_mean": float(np.mean(all_scores)) if len(all_scores) else math.nan,
        "val_mean": float(val["score"].mean()),
        "site_called_positive": float(np.mean(all_scores >= threshold)) if len(all_scores) else math.nan,
        "val_called_positive": float((val["score"] >= threshold).mean()),
        "ks_statistic": float(ks.statistic) if ks else math.nan, "ks_pvalue": float(ks.pvalue) if ks else math.nan,
        "site_scores": all_scores, "site_labels": frame["label"].to_numpy(dtype=float),
        "val_scores": val["score"].to_numpy(), "val_labels": val["label"].to_numpy(),
    }
    result["site_operating_point"] = site_operating_point(y, s, g, entry, n_resamples=n_resamples, seed=seed)
    return result


def site_operating_point(labels: np.ndarray, scores_: np.ndarray, groups: np.ndarray, entry: registry.ModelEntry, *,
                         n_resamples: int = config.BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict:
    """Threshold chosen on the calibration half (card's rule), metrics with CIs on the evaluation half.

    Returns rule, target, rule_text, threshold (or None), calibration/evaluation counts, metrics (or None),
    refusal (or None), source (a provenance sentence for wherever the threshold is used).
    """
    rule = card_rule(entry.card)
    out: dict[str, Any] = {"rule": None, "target": None, "rule_text": "", "threshold": None, "calibration": None,
                           "evaluation": None, "metrics": None, "refusal": None, "source": ""}
    if rule is None:
        out["refusal"] = ("Not reported: the model card records no machine-readable threshold rule (threshold.rule_id), "
                          "so the site threshold cannot be chosen 'by the same rule'. Retrain the model with train.py.")
        return out
    out["rule"], out["target"] = rule
    out["rule_text"] = _describe_rule(*rule)
    if len(labels) < 2 * MIN_FILMS_PER_CLASS or refusal(labels) is not None:
        out["refusal"] = refusal(labels, minimum=2 * MIN_FILMS_PER_CLASS, where="the site's labelled films") or \
            f"Not reported: at least {2 * MIN_FILMS_PER_CLASS} films of each class are needed to split them in halves."
        return out
    try:
        calibration = patient_halves(labels, groups, seed=SPLIT_SEED)
    except SiteDataError as exc:
        out["refusal"] = f"Not reported: {exc}"
        return out
    out["calibration"] = _counts(labels[calibration], groups[calibration])
    out["evaluation"] = _counts(labels[~calibration], groups[~calibration])
    why = refusal(labels[calibration], where="the calibration half") or refusal(labels[~calibration], where="the evaluation half")
    if why:
        out["refusal"] = why
        return out
    threshold = metrics.choose_threshold(labels[calibration], scores_[calibration], out["rule"], target=out["target"])
    out["threshold"] = threshold
    out["metrics"] = metrics.summarize_with_group_ci(labels[~calibration], scores_[~calibration], threshold,
                                                     groups[~calibration], n_resamples=n_resamples, seed=seed)
    out["metrics"]["counts"] = metrics.metrics_at_threshold(labels[~calibration], scores_[~calibration], threshold)
    out["source"] = (f"site operating point: {out['rule_text']}, chosen on the calibration half of the site films "
                     f"({out['calibration']['films']} films, {out['calibration']['patients']} patients); "
                     f"reported on the other half ({out['evaluation']['films']} films)")
    return out


@dataclass
class SiteReport:
    """A whole site validation: the set, its problems and one result per model."""

    site: str
    fingerprint: str
    films: int
    problems: list[FilmProblem]
    patients_from: str
    labels_from: str
    results: list[dict]
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (curves as lists of records, score arrays as lists)."""
        def clean(value: Any) -> Any:
            if isinstance(value, pd.DataFrame):
                return value.replace([np.inf, -np.inf], None).to_dict(orient="records")
            if isinstance(value, np.ndarray):
                return [None if isinstance(v, float) and math.isnan(v) else v for v in value.tolist()]
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [clean(v) for v in value]
            if isinstance(value, (np.floating, float)):
                return None if math.isnan(float(value)) else float(value)
            if isinstance(value, np.integer):
                return int(value)
            return value
        return clean({"site": self.site, "fingerprint": self.fingerprint, "films": self.films, "created": self.created,
                      "patients_from": self.patients_from, "labels_from": self.labels_from,
                      "problems": [{"name": p.name, "reason": p.reason} for p in self.problems], "results": self.results})


def summary_frame(report: SiteReport) -> pd.DataFrame:
    """One display row per model: films, patients, ROC AUC / sensitivity / specificity with CIs (or 'not reported'),
    OOD verdicts and the KS distance of the site's scores from the validation scores."""
    rows = []
    for r in report.results:
        m = r["metrics"]
        cells = {label: (metrics.format_ci(m[key]) if m else "not reported")
                 for key, label in (("roc_auc", "ROC AUC"), ("recall", "Sensitivity"), ("specificity", "Specificity"))}
        rows.append({"model": r["display_name"], "films": r["counts"]["films"], "patients": r["counts"]["patients"], **cells,
                     "OOD flagged": f"{r['ood']['flagged']} / {r['ood']['checked']}" if r["ood"]["guard"] else "no guard",
                     "score drift (KS)": f"{r['drift']['ks_statistic']:.2f}"})
    return pd.DataFrame(rows)


def json_bytes(report: SiteReport) -> bytes:
    """The whole site report as UTF-8 JSON (what the CLI's --out writes and the page offers for download)."""
    return json.dumps(report.to_dict(), indent=1).encode("utf-8")


def validate_site(site: SiteSet, entries: Sequence[registry.ModelEntry] | None = None, *, models_dir: str | Path | None = None,
                  guard: bool = True, n_resamples: int = config.BOOTSTRAP_RESAMPLES, batch_size: int = 32,
                  scorer_loader: Callable[[str], Any] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> SiteReport:
    """Score a labelled site set with every available model (or `entries`) and validate each (see validate_model).

    `scorer_loader(model_dir) -> Scorer` lets the app pass its cached loader (default core.model_scoring.load_scorer).
    Raises SiteDataError when the set has no labelled film or no model is available.
    """
    from core import guard as ood
    from core.models import scorer as model_scoring

    if not site.labelled and not any(f.label is not None for f in site.films):
        raise SiteDataError("Validation needs labelled films (NORMAL/ and PNEUMONIA/ folders, or a file,label CSV).")
    entries = [e for e in (entries if entries is not None else registry.list_models(models_dir)) if e.available]
    if not entries:
        raise SiteDataError("No usable model to validate; train the shipped models with `make models`.")
    loader = scorer_loader or model_scoring.load_scorer
    scorers = [loader(str(e.path)) for e in entries]
    guards = {e.name: ood.load_calibration(e.path) for e in entries} if guard else {}
    scores = score_site(site, scorers, names=[e.name for e in entries], guards=guards, batch_size=batch_size, progress=progress)
    if scores.frame.empty:
        raise SiteDataError("None of the films could be read: " + "; ".join(f"{p.name}: {p.reason}" for p in scores.problems[:3]))
    results = [validate_model(scores, e, n_resamples=n_resamples) for e in entries]
    return SiteReport(site.name, scores.fingerprint, len(scores.frame), scores.problems, scores.patients_from,
                      scores.labels_from, results)
