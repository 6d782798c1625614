"""Measuring the guard on validation films and on sets it must refuse; its card section."""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import config
from core.guard._features import (
    OodCalibration,
    check_many,
    load_calibration,
    validation_files,
)
from core.guard._verdict import GuardVerdict, assess


@dataclass
class FilmSet:
    """A named set of films for measuring the guard: what it is, and (label, loader) pairs; a loader returns
    (DecodedXray or grey pixels, raw bytes or None)."""

    name: str
    description: str
    expected_flag: bool
    films: list[tuple[str, Any]]
    derived: bool = False  # made from other films (rotated, cropped, inverted), not real films as they come


def _file_loader(path: Path, transform: Any = None) -> Any:
    """A loader decoding `path` (then applying transform to its pixels, if given)."""
    def load() -> tuple[Any, bytes | None]:
        from core.imaging import decode_xray

        data = path.read_bytes()
        decoded = decode_xray(data, name=path.name)
        if transform is None:
            return decoded, data
        return np.ascontiguousarray(transform(decoded.pixels), np.float32), None
    return load


def _existing(paths: Iterable[Path]) -> list[Path]:
    return [p for p in paths if p.is_file()]


def out_of_distribution_sets(extra: dict[str, Path] | None = None) -> list[FilmSet]:
    """The out-of-distribution films shipped with the project (and its dependencies), each set saying what it is.

    `extra` adds folders of films the guard should flag (name -> folder), e.g. a hospital's own adult films.
    """
    import pydicom

    field_cases = config.PROJECT_ROOT / "tests" / "fixtures" / "field_cases"
    pydicom_files = Path(pydicom.__file__).parent / "data" / "test_files"
    adult = _existing([*sorted(config.SAMPLES_DIR.glob("*.png")), config.SAMPLES_DIR / "RG1_UNCI.dcm", config.SAMPLES_DIR / "RG1_J2KI.dcm",
                       field_cases / "adult_pa_nih_00027426_000.png", field_cases / "dicom_no_transfer_syntax_uid.dcm"])
    non_chest = _existing([field_cases / "dicom_extremity_not_chest.dcm", field_cases / "dicom_jpeg_lossless_sv1.dcm",
                           *(pydicom_files / n for n in ("CT_small.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm", "MR_small.dcm",
                                                         "examples_overlay.dcm", "examples_rgb_color.dcm", "examples_jpeg2k.dcm",
                                                         "examples_palette.dcm"))])
    photos = _existing(sorted((Path(__import__("sklearn").__file__).parent / "datasets" / "images").glob("*.jpg")))
    sets = [
        FilmSet("adult chest films", "real adult PA chest films: NIH ChestX-ray14 (4 shipped 128-px samples + the field-case "
                "00027426_000) and one pydicom CR (RG1) in up to three encodings (uncompressed, JPEG 2000, resized without "
                "Transfer Syntax UID)", True, [(p.name, _file_loader(p)) for p in adult]),
        FilmSet("non-chest medical images", "real DICOMs that are not chest films: CR of a tibia (field case), a whole-body "
                "bone scan (NM), CT slices, MR slices and ultrasound frames (pydicom's bundled test files, MIT)", True,
                [(p.name, _file_loader(p)) for p in non_chest]),
        FilmSet("photographs", "real colour photographs (scikit-learn's bundled china.jpg and flower.jpg)", True,
                [(p.name, _file_loader(p)) for p in photos]),
        FilmSet("adult films rotated 90 degrees", "the adult chest films above turned a quarter turn (derived: a sideways "
                "film, NOT a real lateral view)", True, [(f"{p.name} rot90", _file_loader(p, np.rot90)) for p in adult], derived=True),
        FilmSet("adult films, right half", "the right half of each adult chest film (derived crop: one lung; NOT a real "
                "lateral view)", True, [(f"{p.name} right half", _file_loader(p, lambda x: x[:, x.shape[1] // 2:])) for p in adult], derived=True),
    ]
    for name, folder in (extra or {}).items():
        from core.imaging.files import iter_image_files

        files = list(iter_image_files([folder]))
        sets.append(FilmSet(name, f"films in {folder} (given with --extra)", True, [(str(p), _file_loader(p)) for p in files]))
    return [s for s in sets if s.films]


def validation_sets(model_dir: str | Path, data_root: str | Path | None = None, *, test_every: int = 4,
                    inverted_every: int = 5) -> list[FilmSet]:
    """In-distribution films for the false-alarm rate: the model's validation films, every `test_every`-th test film
    of its predictions.csv (held out from everything, another acquisition), and every `inverted_every`-th validation
    film inverted (derived negatives: the guard should flag these)."""
    import pandas as pd

    files = validation_files(model_dir, data_root)
    frame = pd.read_csv(Path(model_dir) / "predictions.csv")
    root = Path(data_root) if data_root else config.data_root()
    test = [root / p for p in frame.loc[frame["split"] == "test", "path"].astype(str)][::test_every]
    sets = [FilmSet("validation films", "the model's validation films (patient-grouped split of train); the per-model check "
                    "is calibrated on them (99th percentile of out-of-fold distances), the other checks never saw them", False,
                    [(p.name, _file_loader(p)) for p in files])]
    if test:
        sets.append(FilmSet("test films", f"every {test_every}th film of the official test split (another acquisition; no check "
                            "was fitted on them)", False, [(p.name, _file_loader(p)) for p in test if p.is_file()]))
    sets.append(FilmSet("validation films inverted", f"every {inverted_every}th validation film with its grey scale inverted "
                        "(derived negatives)", True, [(f"{p.name} inverted", _file_loader(p, lambda x: 1.0 - x)) for p in files[::inverted_every]], derived=True))
    return sets


def measure(scorer: Any, calibration: OodCalibration | None, film_set: FilmSet, *, batch_size: int = 32) -> dict:
    """Flag rate of the whole guard (and of each kind of reason) on one set; films that do not decode are counted apart."""
    verdicts: list[tuple[str, GuardVerdict]] = []
    unreadable: list[str] = []
    for start in range(0, len(film_set.films), batch_size):
        batch = []
        for label, load in film_set.films[start:start + batch_size]:
            try:
                image, raw = load()
            except ValueError as error:
                unreadable.append(f"{label}: {str(error).splitlines()[0][:120]}")
                continue
            batch.append((label, image, raw))
        model_checks = (check_many(scorer, calibration, [b[1] for b in batch]) if calibration is not None and batch
                        else [None] * len(batch))
        for (label, image, raw), model_check in zip(batch, model_checks):
            verdicts.append((label, assess(scorer, calibration, image, raw_bytes=raw, model_check=model_check)))
    n = len(verdicts)
    flagged = [label for label, v in verdicts if v.flagged]
    by_reason: dict[str, int] = {}
    for _, verdict in verdicts:
        for reason in verdict.reasons:
            by_reason[reason] = by_reason.get(reason, 0) + 1
    return {"set": film_set.name, "description": film_set.description, "should_flag": film_set.expected_flag,
            "derived": film_set.derived, "n": n,
            "flagged": len(flagged), "rate": round(len(flagged) / n, 4) if n else None, "by_reason": by_reason,
            "missed" if film_set.expected_flag else "false_alarms":
                [label for label, v in verdicts if v.flagged != film_set.expected_flag][:50],
            "unreadable": unreadable}


def evaluate_guard(model_dir: str | Path, data_root: str | Path | None = None, *, extra: dict[str, Path] | None = None) -> dict:
    """The guard of one model measured: detection rate per out-of-distribution set, false-alarm rate on validation."""
    import datetime

    from core.models import scorer as model_scoring

    scorer = model_scoring.load_scorer(model_dir)
    calibration = load_calibration(model_dir)
    sets = [*out_of_distribution_sets(extra), *validation_sets(model_dir, data_root)]
    rows = [measure(scorer, calibration, s) for s in sets]
    detected = [r for r in rows if r["should_flag"] and not r["derived"] and r["n"]]
    return {"model": scorer.name, "model_check": "ood.npz" if calibration is not None else "none (no ood.npz: run python -m core.guard on it)",
            "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": f"python -m core.guard evaluate {model_dir}",
            "detection_rate_real_out_of_distribution": round(sum(r["flagged"] for r in detected) / max(1, sum(r["n"] for r in detected)), 4),
            "false_alarm_rate_validation": next((r["rate"] for r in rows if r["set"] == "validation films"), None),
            "sets": rows}


GUARD_MD_START, GUARD_MD_END = "<!-- guard:start -->", "<!-- guard:end -->"


def guard_markdown(guard: dict) -> str:
    """The `guard` card section as Markdown: one row per set."""
    lines = [GUARD_MD_START, "## Out-of-distribution guard (measured)", "",
             f"Measured {guard['measured']} with `{guard['command']}`; model-specific check: {guard['model_check']}.", "",
             "| set | what it is | films | flagged | rate |", "| --- | --- | --- | --- | --- |"]
    for row in guard["sets"]:
        kind = "detection" if row["should_flag"] else "false alarms"
        rate = "n/a" if row["rate"] is None else f"{row['rate']:.1%}"
        lines.append(f"| {row['set']} | {row['description']} | {row['n']} | {row['flagged']} | {kind} {rate} |")
    lines += ["", f"Detection rate: **{guard['detection_rate_real_out_of_distribution']:.1%}** of the real "
              "out-of-distribution films (derived sets not counted); "
              f"false alarms on validation films: **{(guard['false_alarm_rate_validation'] or 0):.1%}**.", GUARD_MD_END]
    return "\n".join(lines) + "\n"


def write_guard_card(model_dir: str | Path, guard: dict) -> None:
    """Put `guard` into card.json and its section into card.md (replacing an earlier one), each written atomically."""
    import os
    import re

    model_dir = Path(model_dir)
    card_path = model_dir / "card.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    card["guard"] = guard
    tmp = card_path.with_name(f".{card_path.name}.tmp")
    tmp.write_text(json.dumps(card, indent=2, default=str))
    os.replace(tmp, card_path)
    md_path = model_dir / "card.md"
    text = md_path.read_text() if md_path.is_file() else f"# {guard['model']}\n"
    pattern = re.compile(re.escape(GUARD_MD_START) + ".*?" + re.escape(GUARD_MD_END) + "\n?", re.S)
    text = pattern.sub("", text).rstrip("\n") + "\n\n" + guard_markdown(guard)
    tmp = md_path.with_name(f".{md_path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, md_path)


def guard_table(guards: Sequence[dict]) -> str:
    """A Markdown table, one row per model: detection rate per out-of-distribution set and false alarms."""
    names = [r["set"] for r in guards[0]["sets"]] if guards else []
    lines = ["| model | " + " | ".join(names) + " | real out-of-distribution films |", "| --- |" + " --- |" * (len(names) + 1)]
    for guard in guards:
        cells = []
        for name in names:
            row = next((r for r in guard["sets"] if r["set"] == name), None)
            cells.append("n/a" if not row or row["rate"] is None else f"{row['flagged']}/{row['n']} ({row['rate']:.0%})")
        lines.append(f"| `{guard['model']}` | " + " | ".join(cells) + f" | {guard['detection_rate_real_out_of_distribution']:.1%} |")
    return "\n".join(lines)
