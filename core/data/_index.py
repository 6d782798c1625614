"""Indexing a dataset folder (Kaggle or NIH layout): patients from file names, image sizes, a cached index."""
from __future__ import annotations

import hashlib
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

import numpy as np
import pandas as pd

from core import config

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".dcm"})
SPLITS = ("train", "val", "test")
SUBTYPES = ("normal", "bacteria", "virus", "unknown")
INDEX_COLUMNS = ["path", "relpath", "label", "label_name", "split", "patient", "subtype", "width", "height", "folder_split"]
NIH_LABELS_FILE = "Data_Entry_2017.csv"
NIH_TRAIN_LIST = "train_val_list.txt"
NIH_TEST_LIST = "test_list.txt"
NIH_POSITIVE_FINDING = "Pneumonia"
NIH_TEST_FRACTION = 0.2
_CACHE_VERSION = "1"

_PERSON_RE = re.compile(r"^(person\d+)_", re.IGNORECASE)
_NORMAL_RE = re.compile(r"^((?:NORMAL2-)?IM-\d+)", re.IGNORECASE)

Layout = Literal["auto", "kaggle", "nih"]


# File names -> patient, subtype


def patient_from_filename(name: str) -> str:
    """Patient id from a Kaggle file name: person1661_virus_2872 -> person1661, NORMAL2-IM-0173-0001 -> NORMAL2-IM-0173.

    Names that follow neither pattern are their own patient (the file stem).
    """
    stem = os.path.splitext(os.path.basename(name))[0]
    match = _PERSON_RE.match(stem) or _NORMAL_RE.match(stem)
    return match.group(1) if match else stem


def subtype_from_filename(name: str, label: int) -> str:
    """'normal' for label 0, else 'bacteria' / 'virus' from the Kaggle file name, else 'unknown'."""
    if label == 0:
        return "normal"
    lowered = os.path.splitext(os.path.basename(name))[0].lower()
    if "bacteria" in lowered:
        return "bacteria"
    if "virus" in lowered:
        return "virus"
    return "unknown"


# --------------------------------------------------------------------------------------------------
# Scanning and fingerprints


@dataclass(frozen=True)
class _FileEntry:
    relpath: str
    size: int
    mtime_ns: int


def _scan(root: Path) -> list[_FileEntry]:
    """Every image and label file under `root` (hidden folders and files skipped), sorted by relpath."""
    entries: list[_FileEntry] = []
    root_str = str(root)
    prefix = len(root_str) + 1
    stack = [root_str]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as iterator:
                for entry in iterator:
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir(follow_symlinks=True):
                        stack.append(entry.path)
                        continue
                    suffix = os.path.splitext(entry.name)[1].lower()
                    if suffix in IMAGE_EXTENSIONS or (folder == root_str and suffix in (".csv", ".txt")):
                        stat = entry.stat()
                        relpath = entry.path[prefix:].replace(os.sep, "/")
                        entries.append(_FileEntry(relpath, stat.st_size, stat.st_mtime_ns))
        except PermissionError:
            logger.warning("Skipping unreadable folder %s", folder)
    entries.sort(key=lambda e: e.relpath)
    return entries


def _absolute_paths(root: Path, relpaths: Iterable[str]) -> list[str]:
    """Absolute path strings for POSIX relpaths under `root` (string joins: fast for 100k files)."""
    prefix = str(root) + os.sep
    return [prefix + r.replace("/", os.sep) for r in relpaths]


def _digest(parts: Iterable[str]) -> str:
    """SHA-256 over newline-joined parts, first 16 hex characters."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode("utf-8"))
        hasher.update(b"\n")
    return hasher.hexdigest()[:16]


def dataset_fingerprint(root: str | os.PathLike) -> str:
    """16-hex identity of a dataset folder from every image's relative path and byte size.

    Stable across copies and clones (modification times are ignored); changes when a file is added,
    removed, renamed or changes size.
    """
    root = _existing_root(root)
    return _digest(f"{e.relpath}\t{e.size}" for e in _scan(root))


def _cache_key(entries: list[_FileEntry], layout: str) -> str:
    """Key for cached artefacts: relpaths, sizes and modification times, so any change recomputes."""
    return _digest([_CACHE_VERSION, layout, *(f"{e.relpath}\t{e.size}\t{e.mtime_ns}" for e in entries)])


def _existing_root(root: str | os.PathLike) -> Path:
    """`root` as an absolute Path, or a ValueError telling the user what to fix."""
    path = Path(root).expanduser()
    if not path.exists():
        raise ValueError(
            f"The dataset folder {str(path)!r} does not exist. Choose an existing folder in the sidebar, "
            "set PNEUMONIA_DATA, or pass --data to train.py."
        )
    if not path.is_dir():
        raise ValueError(f"{str(path)!r} is a file, not a dataset folder. Choose the folder that holds train/ and test/.")
    return path.resolve()


# --------------------------------------------------------------------------------------------------
# Layout detection and indexers


def _child_dirs(folder: Path) -> dict[str, Path]:
    """Sub-folders of `folder` keyed by lower-case name."""
    try:
        return {p.name.lower(): p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return {}


def _find_nih_labels(root: Path) -> Path | None:
    """Data_Entry_2017.csv in `root` or one level below, if present."""
    for candidate in (root / NIH_LABELS_FILE, *root.glob(f"*/{NIH_LABELS_FILE}")):
        if candidate.is_file():
            return candidate
    return None


def detect_layout(root: str | os.PathLike) -> Literal["kaggle", "nih"]:
    """'nih' when Data_Entry_2017.csv is present, 'kaggle' when train|val|test/NORMAL|PNEUMONIA folders are."""
    root = _existing_root(root)
    if _find_nih_labels(root) is not None:
        return "nih"
    for split_dir in (d for name, d in _child_dirs(root).items() if name in SPLITS):
        if any(name in ("normal", "pneumonia") for name in _child_dirs(split_dir)):
            return "kaggle"
    nested = [child for child in _child_dirs(root).values() if _is_dataset_folder(child)]
    hint = f" Did you mean {str(nested[0])!r}? (The Kaggle download nests its folders.)" if nested else ""
    raise ValueError(
        f"{str(root)!r} is neither a Kaggle-layout folder (train/, val/ or test/, each with NORMAL/ and "
        f"PNEUMONIA/ inside) nor an NIH ChestX-ray14 folder ({NIH_LABELS_FILE} plus image folders). "
        f"Choose the folder that directly contains them.{hint}"
    )


def _is_dataset_folder(folder: Path) -> bool:
    """True when `folder` has a recognisable layout (used for hints only)."""
    try:
        detect_layout(folder)
        return True
    except ValueError:
        return False


def _read_sizes(paths: list[str]) -> list[tuple[int, int]]:
    """(width, height) of every file from its header, read in a few threads; (0, 0) when unreadable."""
    from core.imaging import read_image_size

    def one(path: str) -> tuple[int, int]:
        try:
            return read_image_size(path)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the index; it is reported
            logger.warning("Cannot read the size of %s (%s); it is indexed with size 0x0", path, type(exc).__name__)
            return (0, 0)

    return _map_chunked(one, paths)


def _map_chunked(func, items: list, *, workers: int | None = None, min_chunk: int = 512) -> list:
    """[func(x) for x in items] on a few threads over large interleaved chunks (order kept).

    Overlaps file reads and the C parts of decoding without the overhead of one task per file.
    """
    n_chunks = min(workers or min(4, os.cpu_count() or 1), max(1, len(items) // min_chunk))
    if n_chunks <= 1:
        return [func(x) for x in items]
    chunks = [items[i::n_chunks] for i in range(n_chunks)]
    with ThreadPoolExecutor(max_workers=n_chunks) as pool:
        results = list(pool.map(lambda chunk: [func(x) for x in chunk], chunks))
    out: list = [None] * len(items)
    for offset, chunk_results in enumerate(results):
        out[offset::n_chunks] = chunk_results
    return out


def _finish(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Add absolute paths, label names and sizes; order the columns; sort by relpath."""
    frame = frame.sort_values("relpath", kind="stable").reset_index(drop=True)
    frame.insert(0, "path", _absolute_paths(root, frame["relpath"]))
    frame["label"] = frame["label"].astype("int64")
    frame["label_name"] = [config.CLASS_NAMES[v] for v in frame["label"]]
    if "width" not in frame:
        sizes = _read_sizes(frame["path"].tolist())
        frame["width"] = np.array([s[0] for s in sizes], dtype=np.int64)
        frame["height"] = np.array([s[1] for s in sizes], dtype=np.int64)
    frame["folder_split"] = frame["split"]
    return frame[INDEX_COLUMNS]


def index_kaggle(root: str | os.PathLike) -> pd.DataFrame:
    """Index a Kaggle-layout folder: {train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg (any split may be missing)."""
    root = _existing_root(root)
    rows = []
    for split_name, split_dir in sorted(_child_dirs(root).items()):
        if split_name not in SPLITS:
            continue
        for class_name, class_dir in _child_dirs(split_dir).items():
            if class_name not in ("normal", "pneumonia"):
                logger.info("Ignoring folder %s (not NORMAL or PNEUMONIA)", class_dir)
                continue
            label = int(class_name == "pneumonia")
            folder = f"{split_dir.name}/{class_dir.name}/"
            with os.scandir(class_dir) as entries:
                for entry in entries:
                    name = entry.name
                    if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS or not entry.is_file():
                        continue
                    rows.append(
                        {
                            "relpath": folder + name,
                            "label": label,
                            "split": split_name,
                            "patient": patient_from_filename(name),
                            "subtype": subtype_from_filename(name, label),
                        }
                    )
    unnamed = sum(r["patient"] == os.path.splitext(r["relpath"].rsplit("/", 1)[-1])[0] for r in rows)
    if unnamed:
        logger.warning(
            "%d of %d file names carry no Kaggle patient id (personN_... / IM-NNNN-...); each is treated as its own "
            "patient, so the validation split cannot group their images by patient", unnamed, len(rows)
        )
    if not rows:
        raise ValueError(
            f"No images found in {str(root)!r}. Expected train/, val/ or test/ folders each holding "
            "NORMAL/ and PNEUMONIA/ folders of .jpeg/.png files."
        )
    return _finish(pd.DataFrame(rows), root)


def _read_list(path: Path) -> set[str]:
    """File names listed one per line in an NIH split list."""
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def index_nih(root: str | os.PathLike, *, test_fraction: float = NIH_TEST_FRACTION, seed: int = config.SPLIT_SEED) -> pd.DataFrame:
    """Index an NIH ChestX-ray14 folder: Data_Entry_2017.csv plus images in any sub-folders.

    label = 1 when "Pneumonia" is among `Finding Labels`; subtype "normal" for "No Finding", else "unknown".
    Splits come from train_val_list.txt / test_list.txt when present, else a patient-grouped,
    label-stratified test split of `test_fraction` of the patients.
    """
    root = _existing_root(root)
    labels_file = _find_nih_labels(root)
    if labels_file is None:
        raise ValueError(f"{NIH_LABELS_FILE} was not found in {str(root)!r}. Put the NIH label file next to the image folders.")
    table = pd.read_csv(labels_file, usecols=["Image Index", "Finding Labels", "Patient ID"], dtype=str)
    on_disk = {e.relpath.rsplit("/", 1)[-1]: e.relpath for e in _scan(root) if not e.relpath.endswith((".csv", ".txt"))}
    present = table["Image Index"].isin(on_disk)
    if not present.all():
        logger.warning("%d of %d images listed in %s are not on disk; they are left out", (~present).sum(), len(table), NIH_LABELS_FILE)
    table = table[present]
    if table.empty:
        raise ValueError(f"None of the images listed in {NIH_LABELS_FILE} were found under {str(root)!r}.")
    findings = table["Finding Labels"].fillna("")
    label = findings.map(lambda s: int(NIH_POSITIVE_FINDING in s.split("|"))).astype("int64")
    frame = pd.DataFrame(
        {
            "relpath": table["Image Index"].map(on_disk).to_numpy(),
            "label": label.to_numpy(),
            "patient": table["Patient ID"].str.strip().to_numpy(),
            "subtype": np.where(label.to_numpy() == 1, "unknown", np.where(findings.to_numpy() == "No Finding", "normal", "unknown")),
        }
    )
    names = table["Image Index"].to_numpy()
    train_list, test_list = labels_file.parent / NIH_TRAIN_LIST, labels_file.parent / NIH_TEST_LIST
    if train_list.is_file() and test_list.is_file():
        test_names = _read_list(test_list)
        frame["split"] = np.where(np.isin(names, list(test_names)), "test", "train")
        crossing = set(frame.loc[frame["split"] == "test", "patient"]) & set(frame.loc[frame["split"] == "train", "patient"])
        if crossing:
            examples = ", ".join(sorted(crossing)[:5])
            raise ValueError(
                f"{len(crossing)} patient(s) (e.g. {examples}) have films in both {NIH_TRAIN_LIST} and {NIH_TEST_LIST}, "
                "so the official split would leak patients between training and test. Fix the lists, or remove both "
                "files to get a patient-grouped split instead."
            )
        logger.info(
            "Official NIH lists: %d train/validation and %d test images; no patient is in both",
            int((frame["split"] == "train").sum()), int((frame["split"] == "test").sum()),
        )
    else:
        frame["split"] = "train"
        held_out = _grouped_holdout(frame["label"].to_numpy(), frame["patient"].to_numpy(), test_fraction, seed)
        frame.loc[held_out, "split"] = "test"
    return _finish(frame, root)


def index_dataset(root: str | os.PathLike, format: Layout = "auto", *, use_cache: bool = True) -> pd.DataFrame:
    """Index a dataset folder (layout detected unless `format` says); cached under config.CACHE_DIR.

    The cache key covers every file's path, size and modification time, so any change re-indexes.
    """
    return _index_and_key(root, format, use_cache=use_cache)[0]


def _layout_and_key(root: Path, format: Layout) -> tuple[str, str]:
    """The layout of `root` and the cache key of its current files."""
    layout = detect_layout(root) if format == "auto" else format
    if layout not in ("kaggle", "nih"):
        raise ValueError(f"Unknown dataset format {format!r}; use 'auto', 'kaggle' or 'nih'.")
    return layout, f"{layout}-{_cache_key(_scan(root), layout)}"


def _index_and_key(root: str | os.PathLike, format: Layout, *, use_cache: bool, key: str | None = None) -> tuple[pd.DataFrame, str | None]:
    """The index of `root` and its cache key (None when caching is off)."""
    root = _existing_root(root)
    layout, computed = _layout_and_key(root, format) if key is None else (key.split("-", 1)[0], key)
    if not use_cache:
        return (index_kaggle(root) if layout == "kaggle" else index_nih(root)), None
    cache_file = config.CACHE_DIR / "index" / f"{computed}.csv"
    cached = _read_cached_index(cache_file, root)
    if cached is not None:
        return cached, computed
    index = index_kaggle(root) if layout == "kaggle" else index_nih(root)
    _write_cached_index(cache_file, index)
    logger.info("Indexed %d images in %s (%s layout)", len(index), root, layout)
    return index, computed


def _read_cached_index(cache_file: Path, root: Path) -> pd.DataFrame | None:
    """A cached index with absolute paths rebuilt for `root`, or None when absent or unreadable."""
    if not cache_file.is_file():
        return None
    try:
        frame = pd.read_csv(
            cache_file,
            dtype={"relpath": str, "label": "int64", "split": str, "patient": str, "subtype": str,
                   "width": "int64", "height": "int64", "folder_split": str},
            keep_default_na=False,
        )
    except (OSError, ValueError) as exc:
        logger.warning("Ignoring unreadable index cache %s (%s)", cache_file, exc)
        return None
    frame.insert(0, "path", _absolute_paths(root, frame["relpath"]))
    frame["label_name"] = np.asarray(config.CLASS_NAMES, dtype=object)[frame["label"].to_numpy()]
    return frame[INDEX_COLUMNS]


def _write_cached_index(cache_file: Path, index: pd.DataFrame) -> None:
    """Write the index (without absolute paths) atomically; a read-only cache folder is only logged."""
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
        index.drop(columns=["path", "label_name"]).to_csv(tmp, index=False)
        os.replace(tmp, cache_file)
    except OSError as exc:
        logger.warning("Could not write the index cache %s (%s); indexing will not be cached", cache_file, exc)


def _grouped_holdout(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask (n_images,) of a held-out set: `fraction` of the groups, stratified by group label."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"The held-out fraction must be between 0 and 1 (exclusive), got {fraction}.")
    frame = pd.DataFrame({"label": labels, "group": groups})
    group_label = frame.groupby("group", sort=True)["label"].max()
    if len(group_label) < 2:
        raise ValueError(
            f"Only {len(group_label)} patient(s) in the training pool; at least 2 are needed to carve a "
            "patient-grouped split. Add images from more patients."
        )
    try:
        _, held = train_test_split(group_label.index.to_numpy(), test_size=fraction, random_state=seed, stratify=group_label.to_numpy())
    except ValueError:
        logger.warning("Too few patients per class to stratify the split; splitting patients without stratification")
        _, held = train_test_split(group_label.index.to_numpy(), test_size=fraction, random_state=seed)
    return frame["group"].isin(set(held)).to_numpy()
