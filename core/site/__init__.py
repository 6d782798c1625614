"""Your site: validate the models on a hospital's own labelled films, and adapt them to unlabelled ones.

    python -m core.site validate SITE_FOLDER_OR_ZIP [--labels labels.csv] [--models NAME ...] [--out site.json]
    python -m core.site adapt UNLABELLED_FOLDER_OR_ZIP --model NAME --site-name NAME [--method adabn] [--method prior]

Labelled films come as a folder or a ZIP in the Kaggle layout (``NORMAL/`` and ``PNEUMONIA/`` folders at any
depth) or as files plus a CSV with columns ``file,label[,patient]`` (label 0/1 or NORMAL/PNEUMONIA). Every format
`core.imaging.decode_xray` reads is accepted. Uploaded bytes stay in memory; DICOM tags are never read into the
results (only the pixels and non-identifying metadata are decoded). A set with unreadable members scores every
good film and lists every bad one with its reason.

Validation (per model, at the model's own card threshold): metrics with 95% CIs from a bootstrap over patients
(patients from Kaggle file names ``person123_...``/``IM-0115-...`` or a CSV ``patient`` column), ROC/PR curves,
calibration, the out-of-distribution guard's verdict counts, and the site's scores beside the model's validation
scores (drift). A *site operating point* is chosen on one patient-grouped half of the films (calibration) by the
card's own rule and reported on the other half (evaluation). No number is reported when a class has fewer than
`MIN_FILMS_PER_CLASS` films.

Adaptation (no labels used): AdaBN re-estimates the BatchNorm moving statistics on the site's films; prior-shift
correction (Saerens, Latinne & Decaestecker 2002, EM) re-estimates the site's prevalence and shifts the output
layer's bias accordingly. The result is a new model folder ``models/<name>-adapted-<site>/`` written atomically,
whose card says what it was adapted on; the source model is never changed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import io
import json
import logging
import math
import re
import sys
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from core.models import cards, registry
from core import config, data
from core.evaluation import metrics

logger = logging.getLogger(__name__)

MIN_FILMS_PER_CLASS = 20
"""Below this many films in a class, metrics on that set are refused (the CIs would be wider than useful)."""
MAX_MEMBER_BYTES = 256 * 1024 * 1024
MAX_TOTAL_BYTES = 4 * 1024 * 1024 * 1024
"""Limits on a ZIP's uncompressed members (one member / all): a guard against ZIP bombs."""
SPLIT_SEED = config.SPLIT_SEED
ADAPTATION_METHODS = {
    "adabn": "BatchNorm statistics re-estimated on the site's films (AdaBN, Li et al. 2016)",
    "prior": "prior-shift correction of the output (Saerens, Latinne & Decaestecker 2002, EM)",
}
BALANCED_TRAINING = {"class-weight", "oversample", "undersample"}
_LABEL_WORDS = {"0": 0, "1": 1, "normal": 0, "pneumonia": 1}
_SKIPPED_PARTS = {"__MACOSX"}


class SiteDataError(ValueError):
    """A site set cannot be used as given; the message says what was wrong and what to do."""


# --------------------------------------------------------------------------------------------------
# Reading a site's films
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SiteFilm:
    """One film of a site set: its name inside the set, label (None when unlabelled), patient group, bytes or file."""

    name: str
    label: int | None
    group: str
    path: Path | None = field(default=None, repr=False)
    data: bytes | None = field(default=None, repr=False)

    def read(self) -> bytes:
        """The file's bytes (from memory for uploads, from disk for folders)."""
        if self.data is not None:
            return self.data
        if self.path is None:
            raise ValueError(f"Film {self.name} has neither bytes nor a file path; build it with read_site.")
        return self.path.read_bytes()


@dataclass(frozen=True)
class FilmProblem:
    """A member of the set that was not scored, and why (a sentence a person can act on)."""

    name: str
    reason: str


@dataclass
class SiteSet:
    """The films of one site with labels (or none), patient groups and the members that could not be used."""

    name: str
    films: list[SiteFilm]
    problems: list[FilmProblem] = field(default_factory=list)
    patients_from: str = "none: every film counts as its own patient"
    labels_from: str = "none"

    @property
    def labelled(self) -> bool:
        """Whether every film has a label."""
        return bool(self.films) and all(f.label is not None for f in self.films)

    def class_counts(self) -> dict[str, int]:
        """{'NORMAL': n, 'PNEUMONIA': m} over the labelled films."""
        labels = [f.label for f in self.films if f.label is not None]
        return {name: labels.count(i) for i, name in enumerate(config.CLASS_NAMES)}


def slug(text: str) -> str:
    """A folder-safe lower-case name: 'St Mary's 2024' -> 'st-mary-s-2024'."""
    value = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:40].strip("-")
    if not value:
        raise SiteDataError("Give the site a name with at least one letter or digit, e.g. 'st-marys-2024'.")
    return value


def _label_from_parts(parts: Sequence[str]) -> int | None:
    """0/1 from the nearest enclosing NORMAL/ or PNEUMONIA/ folder of a member path (None when there is none)."""
    for part in reversed(parts[:-1]):
        upper = part.upper()
        if upper in config.CLASS_NAMES:
            return config.CLASS_NAMES.index(upper)
    return None


def _parse_label(value: object) -> int | None:
    """0/1 from a CSV cell ('0', '1', 'NORMAL', 'PNEUMONIA', any case), None when it is none of these."""
    text = str(value).strip().lower()
    text = text.removesuffix(".0")
    return _LABEL_WORDS.get(text)


def _members_of_zip(source: bytes | Path) -> tuple[list[tuple[str, bytes]], list[FilmProblem]]:
    """(relative POSIX name, bytes) of every file of a ZIP archive, and the members that could not be read."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except zipfile.BadZipFile as exc:
        raise SiteDataError("This file is not a ZIP archive (or it is damaged). Upload a .zip of NORMAL/ and PNEUMONIA/ "
                            "folders, or of X-ray files plus a labels CSV.") from exc
    members, problems, total = [], [], 0
    with archive:
        for info in archive.infolist():
            parts = PurePosixPath(info.filename).parts
            if info.is_dir() or not parts or any(p.startswith(".") or p in _SKIPPED_PARTS for p in parts):
                continue
            if info.file_size > MAX_MEMBER_BYTES:
                problems.append(FilmProblem(info.filename, f"{info.file_size / 1e6:.0f} MB uncompressed, over the "
                                            f"{MAX_MEMBER_BYTES // 2**20} MB limit for one film; it was skipped."))
                continue
            total += info.file_size
            if total > MAX_TOTAL_BYTES:
                raise SiteDataError(f"The ZIP expands to more than {MAX_TOTAL_BYTES // 2**30} GB; split it into smaller archives.")
            try:
                members.append((info.filename, archive.read(info)))
            except (zipfile.BadZipFile, RuntimeError, OSError, EOFError, NotImplementedError) as exc:
                problems.append(FilmProblem(info.filename, f"could not be extracted from the ZIP ({exc}); "
                                            "re-create the archive without encryption."))
    return members, problems


def _members_of_folder(folder: Path) -> list[tuple[str, Path]]:
    """(relative POSIX name, path) of every non-hidden file under a folder, sorted."""
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(p.startswith(".") or p in _SKIPPED_PARTS for p in relative.parts):
            files.append((relative.as_posix(), path))
    return files


def _read_labels_csv(text: str, where: str) -> pd.DataFrame:
    """A labels CSV as a frame with columns file, label (0/1 or None when unreadable), patient (or None)."""
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SiteDataError(f"The labels CSV {where} cannot be read ({exc}); write it with a header row file,label[,patient].") from exc
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if "file" not in frame.columns or "label" not in frame.columns:
        raise SiteDataError(f"The labels CSV {where} needs the columns file and label (and optionally patient); "
                            f"it has {', '.join(frame.columns) or 'none'}.")
    return pd.DataFrame({"file": frame["file"].str.strip(), "label": [_parse_label(v) for v in frame["label"]],
                         "raw_label": frame["label"],
                         "patient": frame["patient"].str.strip() if "patient" in frame.columns else None})


def _is_labels_csv(name: str, content: bytes) -> bool:
    """Whether a member is a CSV whose header names the file and label columns."""
    if not name.lower().endswith(".csv"):
        return False
    header = content[:4096].decode("utf-8", "replace").splitlines()[:1]
    columns = {c.strip().lower() for c in header[0].split(",")} if header else set()
    return {"file", "label"} <= columns


def read_site(source: str | Path | bytes, *, name: str | None = None, labels_csv: str | Path | bytes | None = None,
              labelled: bool = True) -> SiteSet:
    """The films of a site from a folder, a ZIP file path or ZIP bytes (an upload), with labels and patient groups.

    Labels come from `labels_csv` (columns file,label[,patient]) when given, else from a labels CSV inside the
    set (at the shallowest depth), else from the nearest NORMAL/ or PNEUMONIA/ folder of each file. With
    `labelled=False` (adaptation) labels are not needed and every file is a film. Files without a label, CSV
    rows naming missing files and unreadable ZIP members go to `problems`; nothing is decoded here.
    Raises SiteDataError when the source is not a folder or a ZIP, or holds no film at all.
    """
    problems: list[FilmProblem] = []
    if isinstance(source, bytes):
        members_bytes, problems = _members_of_zip(source)
        entries: list[tuple[str, Path | None, bytes | None]] = [(n, None, b) for n, b in members_bytes]
        default_name = "uploaded set"
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            entries = [(n, p, None) for n, p in _members_of_folder(path)]
        elif path.is_file():
            members_bytes, problems = _members_of_zip(path)
            entries = [(n, None, b) for n, b in members_bytes]
        else:
            raise SiteDataError(f"{path} is neither a folder nor a ZIP file; give the folder of the site's films.")
        default_name = path.stem if path.is_file() else path.name
    site_name = name or default_name

    csv_text: str | None = None
    csv_where = ""
    if labels_csv is not None:
        csv_text = labels_csv.decode("utf-8-sig", "replace") if isinstance(labels_csv, bytes) else Path(labels_csv).read_text("utf-8-sig")
        csv_where = "given" if isinstance(labels_csv, bytes) else str(labels_csv)
    else:
        found = sorted((len(PurePosixPath(n).parts), n) for n, p, b in entries if n.lower().endswith(".csv")
                       and _is_labels_csv(n, b if b is not None else p.read_bytes()[:4096]))
        if found and labelled:
            chosen = found[0][1]
            entry = next(e for e in entries if e[0] == chosen)
            csv_text = (entry[2] if entry[2] is not None else entry[1].read_bytes()).decode("utf-8-sig", "replace")
            csv_where = chosen
            entries = [e for e in entries if e[0] != chosen]
    if not entries:
        raise SiteDataError("The set holds no files. Put the films in NORMAL/ and PNEUMONIA/ folders (or list them in a "
                            "file,label CSV) and try again.")

    films: list[SiteFilm] = []
    patients_in_names = False
    if csv_text is not None and labelled:
        table = _read_labels_csv(csv_text, csv_where)
        by_path = {n: (p, b) for n, p, b in entries}
        by_base: dict[str, list[str]] = {}
        for n in by_path:
            by_base.setdefault(PurePosixPath(n).name, []).append(n)
        used: set[str] = set()
        has_patient = table["patient"].notna().any() if "patient" in table else False
        for row in table.itertuples(index=False):
            member = row.file if row.file in by_path else None
            if member is None:
                candidates = [n for n in by_path if n.endswith("/" + row.file.lstrip("/"))] or by_base.get(PurePosixPath(row.file).name, [])
                member = candidates[0] if len(candidates) == 1 else None
            if member is None:
                problems.append(FilmProblem(row.file, "is listed in the labels CSV but no such file is in the set."))
                continue
            if row.label is None:
                problems.append(FilmProblem(member, f"has label {row.raw_label!r} in the CSV; use 0/1 or NORMAL/PNEUMONIA."))
                used.add(member)
                continue
            path, content = by_path[member]
            patient = str(row.patient) if has_patient and row.patient else None
            films.append(SiteFilm(member, int(row.label), patient or data.patient_from_filename(member), path, content))
            used.add(member)
        for n in by_path:
            if n not in used:
                problems.append(FilmProblem(n, "is not listed in the labels CSV, so it has no label."))
        labels_from = f"labels CSV ({csv_where})"
        patients_from = "the CSV's patient column" if has_patient else ""
    else:
        for n, path, content in entries:
            label = _label_from_parts(PurePosixPath(n).parts)
            if label is None and labelled:
                problems.append(FilmProblem(n, "is not inside a NORMAL/ or PNEUMONIA/ folder, so it has no label."))
                continue
            films.append(SiteFilm(n, label, data.patient_from_filename(n), path, content))
        labels_from = "NORMAL/ and PNEUMONIA/ folders" if labelled else "none (unlabelled)"
        patients_from = ""
    if not patients_from:
        patients_in_names = any(data.patient_from_filename(f.name) != PurePosixPath(f.name).stem for f in films)
        patients_from = ("file names (Kaggle person123_…, IM-0115-…)" if patients_in_names
                         else "none: every film counts as its own patient")
    if not films:
        detail = "; ".join(f"{p.name}: {p.reason}" for p in problems[:3])
        raise SiteDataError("No usable film in the set" + (f" ({detail})" if detail else "") +
                            ". Put the films in NORMAL/ and PNEUMONIA/ folders or list them in a file,label CSV.")
    return SiteSet(site_name, films, problems, patients_from, labels_from)


# --------------------------------------------------------------------------------------------------
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

    `scorer_loader(model_dir) -> Scorer` lets the app pass its cached loader (default core.predict.load_scorer).
    Raises SiteDataError when the set has no labelled film or no model is available.
    """
    from core import guard as ood, predict

    if not site.labelled and not any(f.label is not None for f in site.films):
        raise SiteDataError("Validation needs labelled films (NORMAL/ and PNEUMONIA/ folders, or a file,label CSV).")
    entries = [e for e in (entries if entries is not None else registry.list_models(models_dir)) if e.available]
    if not entries:
        raise SiteDataError("No usable model to validate; train the shipped models with `make models`.")
    loader = scorer_loader or predict.load_scorer
    scorers = [loader(str(e.path)) for e in entries]
    guards = {e.name: ood.load_calibration(e.path) for e in entries} if guard else {}
    scores = score_site(site, scorers, names=[e.name for e in entries], guards=guards, batch_size=batch_size, progress=progress)
    if scores.frame.empty:
        raise SiteDataError("None of the films could be read: " + "; ".join(f"{p.name}: {p.reason}" for p in scores.problems[:3]))
    results = [validate_model(scores, e, n_resamples=n_resamples) for e in entries]
    return SiteReport(site.name, scores.fingerprint, len(scores.frame), scores.problems, scores.patients_from,
                      scores.labels_from, results)


# --------------------------------------------------------------------------------------------------
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
    from core import guard as ood, predict
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

    scorer = predict.load_scorer(source.path)
    model = registry.load_keras_model(source.path)  # a private copy: the shared, cached model is never changed
    adapted = predict.scorer_from_model(model, name=target.name, threshold=scorer.threshold, card=dict(source.card))

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
    adapted = predict.scorer_from_model(model, name=target.name, threshold=scorer.threshold, card=dict(source.card))

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


# --------------------------------------------------------------------------------------------------
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

