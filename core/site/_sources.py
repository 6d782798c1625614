"""Reading a site's films: folders, ZIPs and label CSVs into a SiteSet, every unreadable file reported."""
from __future__ import annotations

import io
import logging
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from core import config, data

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
