"""Reconstruct which V7 Labs lung mask belongs to which shipped Kermany film, check every pair, ship the masks.

The public repository `v7labs/covid-19-xray-dataset` (annotations CC BY 4.0) holds semantic lung masks named by
upload id, `annotations/all-images-semantic-masks/<id>.png`, at each film's original resolution; its id-to-file
tables are not in the snapshot. Ids were given in upload order, consecutively for the files of one Kaggle folder
in `upload_order_key` order, the folders in the order of `FOLDER_ORDER`. This module rebuilds the pairing from that order alone:

1. **Blocks.** Walking back from the last Kermany id, each folder takes as many ids as it has films; a block must be
   contiguous (no gap) and as long as its folder. The first folder (train/PNEUMONIA) gets what is left: its ids have
   gaps (failed uploads) and a few late ids after the test films, so it is aligned film by film instead (step 2).
2. **Alignment.** A small U-Net trained on the blocks that passed step 1 predicts each film's lungs; masks and films
   are aligned in order by dynamic programming, maximising the Dice between prediction and mask, with as many
   skipped films as there are more films than masks. Late ids go to the unpaired film they match best.
3. **Checks per pair** (`check_pairs`): the mask's box lies inside the body's box on the film; cross-fitted Dice (two
   patient-grouped folds, each pair scored by a network that never saw it) is at least `DICE_FLOOR`; and over the
   `WINDOW` films around it, films fit their own masks better than their neighbours' (a pairing shifted by one film
   fails this). Pairs that fail are dropped; the CSV keeps them with the reason.

Run: `python -m core.lungs.pairing --masks-git /path/to/covid-19-xray-dataset.git --data data/chest_xray --out data/lung_masks`
(or `--masks-dir` for an extracted `all-images-semantic-masks/` folder).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
from PIL import Image

from core.lungs import geometry
from core.lungs.unet import DEFAULT_SIZE, fit_unet, predict_probabilities, prepare_film

logger = logging.getLogger(__name__)

MASKS_PATH_IN_REPO = "annotations/all-images-semantic-masks"
FIRST_KERMANY_ID = 959789
LAST_KERMANY_ID = 966241
# Upload order of the Kaggle folders (found from the masks' sizes: NORMAL originals are about 1.5 times larger, and
# the 16 Kaggle val/ films, whose sizes are known, sit at 965314-965321 and 965556-965563).
FOLDER_ORDER = ("train/PNEUMONIA", "train/NORMAL", "val/NORMAL", "test/NORMAL", "val/PNEUMONIA", "test/PNEUMONIA")
# Kaggle's val/ folder is not shipped; its counts are those of the published dataset.
UNSHIPPED_COUNTS = {"val/NORMAL": 8, "val/PNEUMONIA": 8}
FILM_SIZE = 224
PAIRING_SIZE = DEFAULT_SIZE  # the shipped network's input size
DICE_FLOOR = 0.75
WINDOW = 15
BODY_FRACTION_FLOOR = 0.95
LATE_MARGIN = 0.05


# --------------------------------------------------------------------------------------------------
# Reading the masks


class MaskSource:
    """The V7 semantic masks, read from a bare git directory or an extracted folder; lung = any non-zero class."""

    def __init__(self, *, git_dir: str | os.PathLike | None = None, folder: str | os.PathLike | None = None) -> None:
        if (git_dir is None) == (folder is None):
            raise ValueError("Give exactly one of git_dir (a clone of v7labs/covid-19-xray-dataset) or folder.")
        self.git_dir = Path(git_dir) if git_dir else None
        self.folder = Path(folder) if folder else None
        if self.folder is not None and not self.folder.is_dir():
            raise ValueError(f"The mask folder {self.folder} does not exist; extract {MASKS_PATH_IN_REPO} there first.")

    def ids(self) -> list[int]:
        """Every mask id in the source, sorted."""
        if self.folder is not None:
            names = [p.name for p in self.folder.iterdir()]
        else:
            out = subprocess.run(["git", "--git-dir", str(self.git_dir), "ls-tree", "--name-only", f"HEAD:{MASKS_PATH_IN_REPO}"],
                                 check=True, capture_output=True, text=True).stdout
            names = out.split()
        return sorted(int(n[:-4]) for n in names if n.endswith(".png") and n[:-4].isdigit())

    def read(self, ids: Iterable[int]) -> dict[int, np.ndarray]:
        """Boolean full-resolution masks by id (0 background; 127 "Ignore" and 255 "Lung" both count as lung)."""
        import io

        ids = list(ids)
        if self.folder is not None:
            return {i: np.asarray(Image.open(self.folder / f"{i}.png").convert("L")) > 0 for i in ids}
        request = "".join(f"HEAD:{MASKS_PATH_IN_REPO}/{i}.png\n" for i in ids).encode()
        out = subprocess.run(["git", "--git-dir", str(self.git_dir), "cat-file", "--batch"], input=request,
                             check=True, capture_output=True).stdout
        masks, pos = {}, 0
        for i in ids:
            end = out.index(b"\n", pos)
            header = out[pos:end].split()
            if len(header) < 3 or header[1] != b"blob":
                raise ValueError(f"Mask {i} is missing from {self.git_dir}; is it a full clone of the V7 repository?")
            size = int(header[2])
            blob = out[end + 1 : end + 1 + size]
            pos = end + 1 + size + 1
            masks[i] = np.asarray(Image.open(io.BytesIO(blob)).convert("L")) > 0
        return masks


# --------------------------------------------------------------------------------------------------
# Blocks


@dataclass(frozen=True)
class Block:
    """The ids one Kaggle folder took, and whether the block is contiguous and as long as the folder."""

    folder: str
    ids: tuple[int, ...]
    count: int
    late: tuple[int, ...] = ()

    @property
    def exact(self) -> bool:
        """True when the ids are consecutive, none came late, and they are as many as the folder's films."""
        return (not self.late and len(self.ids) == self.count
                and (not self.ids or self.ids[-1] - self.ids[0] + 1 == self.count))


def assign_blocks(ids: Iterable[int], counts: dict[str, int]) -> list[Block]:
    """Split the Kermany ids into folder blocks, walking back from the last in-order id (see the module doc).

    `counts` gives each folder of `FOLDER_ORDER` its number of films. The first folder gets the remaining ids,
    including the late ones after the last block.
    """
    kermany = sorted(i for i in ids if FIRST_KERMANY_ID <= i <= LAST_KERMANY_ID)
    runs = np.split(np.array(kermany), np.flatnonzero(np.diff(kermany) != 1) + 1)
    late = [int(i) for i in runs[-1]] if len(runs) > 1 and len(runs[-1]) < counts[FOLDER_ORDER[0]] // 100 else []
    in_order = [i for i in kermany if i not in set(late)]
    blocks, end = [], len(in_order)
    for folder in reversed(FOLDER_ORDER[1:]):
        start = max(0, end - counts[folder])
        blocks.append(Block(folder, tuple(in_order[start:end]), counts[folder]))
        end = start
    blocks.append(Block(FOLDER_ORDER[0], tuple(in_order[:end]), counts[FOLDER_ORDER[0]], tuple(late)))
    return blocks[::-1]


def align_in_order(scores: Callable[[int, int], float], n_masks: int, n_films: int) -> list[int]:
    """Monotone alignment of masks 0..n_masks-1 to films 0..n_films-1 maximising the summed `scores(mask, film)`.

    Each mask takes one film, in order; up to n_films - n_masks films are skipped. Returns the film of each mask.
    """
    gaps = n_films - n_masks
    if gaps < 0:
        raise ValueError(f"More masks ({n_masks}) than films ({n_films}); cannot align them one to one.")
    best = np.full((n_masks + 1, gaps + 1), -np.inf)
    came = np.zeros((n_masks + 1, gaps + 1), dtype=np.int64)
    best[0, :] = 0.0
    for i in range(n_masks):
        running, arg = -np.inf, 0
        for s in range(gaps + 1):
            if best[i, s] > running:
                running, arg = best[i, s], s
            best[i + 1, s] = running + scores(i, i + s)
            came[i + 1, s] = arg
    s = int(np.argmax(best[n_masks]))
    films = [0] * n_masks
    for i in range(n_masks, 0, -1):
        films[i - 1] = i - 1 + s
        s = int(came[i, s])
    return films


# --------------------------------------------------------------------------------------------------
# Films, checks


def read_film(path: str | os.PathLike) -> np.ndarray:
    """A shipped film as grey uint8 (224, 224)."""
    return np.asarray(Image.open(path).convert("L"))


def body_fraction(film: np.ndarray, mask: np.ndarray) -> float:
    """Share of the mask's bounding box that lies inside the body's bounding box on the film.

    Body pixels: above 15 % of the film's 1-99 % percentile range, after a 5-pixel smoothing
    (the air around the body is darker). The body's box spans the rows and columns at least a fifth of which are body.
    """
    from scipy.ndimage import uniform_filter

    values = uniform_filter(film.astype(np.float32), size=5)
    low, high = np.percentile(values, [1, 99])
    body = values > low + 0.15 * (high - low) if high > low else np.ones_like(values, bool)
    box = geometry.bounding_box(mask)
    if box is None:
        return 0.0
    rows = np.flatnonzero(body.mean(axis=1) >= 0.2)
    cols = np.flatnonzero(body.mean(axis=0) >= 0.2)
    if rows.size == 0 or cols.size == 0:
        return 0.0
    top, left, bottom, right = box
    inside_h = max(0, min(bottom, rows[-1] + 1) - max(top, rows[0]))
    inside_w = max(0, min(right, cols[-1] + 1) - max(left, cols[0]))
    return float(inside_h * inside_w / ((bottom - top) * (right - left)))


def _fit(films: np.ndarray, masks: np.ndarray, *, epochs: int, seed: int, validation=None):
    """A lung network with the shipped recipe (core.lungs.unet defaults) on prepared films and masks."""
    return fit_unet(films, masks, epochs=epochs, seed=seed, validation=validation)


def _small_masks(masks224: np.ndarray) -> np.ndarray:
    return np.stack([geometry.resize_mask(m, (PAIRING_SIZE, PAIRING_SIZE)) for m in masks224])


def _predict_masks(model, x: np.ndarray) -> np.ndarray:
    """Cleaned boolean predictions (n, size, size) for prepared films."""
    from core.lungs.segment import clean_mask

    return np.stack([clean_mask(p) for p in predict_probabilities(model, x)]) if len(x) else np.zeros(x.shape, bool)


def pair_verdicts(pred: np.ndarray, masks: np.ndarray, films224: np.ndarray, masks224: np.ndarray,
                  folders: np.ndarray) -> pd.DataFrame:
    """The per-pair checks, given each film's predicted lungs (n, s, s) by a network that never saw the pair.

    Columns: dice (prediction vs the pair's mask); window_margin: over the WINDOW pairs around it in the same folder,
    the mean Dice of film and own mask minus the larger mean Dice of each film against the mask one place before or
    after (a pairing that is off by one film locally is negative); body_fraction (`body_fraction`); passed; reason.
    One film's Dice alone cannot tell its mask from a neighbour's (children's lungs look alike at this resolution),
    the run of films around it can.
    """
    n = len(pred)
    own = np.array([geometry.dice(p, m) for p, m in zip(pred, masks)])
    shifted = {}
    for shift in (-1, 1):
        values = np.full(n, np.nan)
        for i in range(n):
            j = i + shift
            if 0 <= j < n and folders[j] == folders[i]:
                values[i] = geometry.dice(pred[i], masks[j])
        shifted[shift] = values
    half = WINDOW // 2
    rows = []
    for i in range(n):
        window = [j for j in range(max(0, i - half), min(n, i + half + 1)) if folders[j] == folders[i]]
        others = [np.nanmean(shifted[s][window]) for s in (-1, 1) if not np.all(np.isnan(shifted[s][window]))]
        margin = float(np.mean(own[window]) - max(others)) if others else float("nan")
        body = body_fraction(films224[i], masks224[i])
        why = []
        if body < BODY_FRACTION_FLOOR:
            why.append(f"mask box {body:.0%} inside the body")
        if own[i] < DICE_FLOOR:
            why.append(f"Dice {own[i]:.2f} < {DICE_FLOOR}")
        if not np.isnan(margin) and margin <= 0:
            why.append(f"the films around it fit their neighbours' masks as well (margin {margin:+.3f})")
        rows.append({"dice": float(own[i]), "window_margin": margin, "body_fraction": body, "reason": "; ".join(why)})
    result = pd.DataFrame(rows)
    result["passed"] = result["reason"] == ""
    return result


@dataclass
class CrossFit:
    """The checked pairs, and the network trained on the classifiers' training split (the shipped lung model)."""

    table: pd.DataFrame
    model: object
    history: dict
    seconds: float
    predictions: np.ndarray  # (n, s, s) bool, each by the network that did not see the pair
    masks: np.ndarray        # (n, s, s) bool, the pairs' masks at the network's size


def check_pairs(frame: pd.DataFrame, films: np.ndarray, masks224: np.ndarray, *, epochs: int = 8,
                seed: int = 42) -> CrossFit:
    """Cross-fitted checks of every pair (see `pair_verdicts`), two folds by the classifiers' patient-grouped split.

    `frame` has one row per pair with `folder` and `role` ('train' for the classifiers' training split, 'val' or
    'test' otherwise); `films` are (n, 224, 224) uint8 and `masks224` (n, 224, 224) bool in the frame's order.
    Fold A (train) teaches the network that scores fold B (val and test) and becomes the shipped model; fold B
    teaches the one that scores fold A. No network scores a pair it saw.
    """
    fold = (frame["role"].to_numpy() != "train").astype(int)
    x = np.stack([prepare_film(f, PAIRING_SIZE) for f in films])
    y = _small_masks(masks224)
    pred = np.zeros_like(y)
    val = frame["role"].to_numpy() == "val"
    shipped = _fit(x[fold == 0], y[fold == 0], epochs=epochs, seed=seed, validation=(x[val], y[val]) if val.any() else None)
    pred[fold == 1] = _predict_masks(shipped.model, x[fold == 1])
    other = _fit(x[fold == 1], y[fold == 1], epochs=epochs, seed=seed + 1)
    pred[fold == 0] = _predict_masks(other.model, x[fold == 0])
    verdicts = pair_verdicts(pred, y, films, masks224, frame["folder"].to_numpy())
    table = pd.concat([frame.reset_index(drop=True), verdicts], axis=1)
    table["fold"] = fold
    return CrossFit(table=table, model=shipped.model, history=shipped.history, seconds=shipped.seconds,
                    predictions=pred, masks=y)


def shifted_pass_rate(fit: CrossFit, films224: np.ndarray, masks224: np.ndarray, *, shift: int = 1) -> float:
    """Share of pairs that would pass the checks if every film of a folder took the mask `shift` places later."""
    folders = fit.table["folder"].to_numpy()
    keep = np.array([i + shift < len(folders) and folders[i + shift] == folders[i] for i in range(len(folders))])
    idx = np.flatnonzero(keep)
    verdicts = pair_verdicts(fit.predictions[idx], fit.masks[idx + shift], films224[idx], masks224[idx + shift], folders[idx])
    return float(verdicts["passed"].mean())


# --------------------------------------------------------------------------------------------------
# The whole reconstruction


def film_lists(data_root: str | os.PathLike) -> dict[str, list[Path]]:
    """Films of each shipped folder (train/test x NORMAL/PNEUMONIA), in upload order (`upload_order_key`)."""
    root = Path(data_root)
    lists = {}
    for folder in FOLDER_ORDER:
        if folder in UNSHIPPED_COUNTS:
            continue
        path = root / folder
        if not path.is_dir():
            raise ValueError(f"{path} is missing; point --data at the Kaggle-layout folder (train/ and test/).")
        lists[folder] = sorted((p for p in path.iterdir() if p.suffix.lower() in {".jpeg", ".jpg", ".png"}),
                               key=lambda p: upload_order_key(p.name))
    return lists


def upload_order_key(name: str) -> tuple:
    """The order in which V7 gave ids within a folder: bacterial before viral films, then by the numbers in the name
    (patient, image) compared as numbers, not as text (`person2_...` before `person10_...`).

    Found on the official test PNEUMONIA films, whose block is exact: this order gives a mean Dice against the masks
    clearly above that of a shifted or random order, plain text order does not (see data/README.md). NORMAL names
    have zero-padded numbers, so for them it is the plain sorted order.
    """
    import re

    subtype = "virus" if "_virus_" in name else "bacteria" if "_bacteria_" in name else ""
    return (subtype, [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)])


def reconstruct(source: MaskSource, data_root: str | os.PathLike, *, epochs: int = 8, seed: int = 42) -> tuple[CrossFit, np.ndarray, np.ndarray]:
    """Pair masks with films and check every pair; returns (cross-fit, films (n,224,224), masks (n,224,224))."""
    from core import data

    lists = film_lists(data_root)
    counts = {f: len(v) for f, v in lists.items()} | UNSHIPPED_COUNTS
    blocks = assign_blocks(source.ids(), counts)
    for block in blocks:
        logger.info("%-16s %5d films, %5d ids + %d late: %s", block.folder, block.count, len(block.ids), len(block.late),
                    "contiguous, length = folder" if block.exact else "not exact: aligned film by film")
    pairs: list[tuple[str, Path, int, str]] = []
    masks_full: dict[int, np.ndarray] = {}  # at FILM_SIZE

    sizes: dict[int, tuple[int, int]] = {}

    def load(ids: Iterable[int]) -> None:
        """Read masks in chunks, keeping each at 224 x 224 and its original (width, height)."""
        wanted = [i for i in ids if i not in masks_full]
        for start in range(0, len(wanted), 256):
            for i, mask in source.read(wanted[start : start + 256]).items():
                sizes[i] = (mask.shape[1], mask.shape[0])
                masks_full[i] = geometry.resize_mask(mask, (FILM_SIZE, FILM_SIZE))

    exact = [b for b in blocks if b.exact and b.folder in lists]
    for block in exact:
        load(block.ids)
        for path, mask_id in zip(lists[block.folder], block.ids):
            pairs.append((block.folder, path, mask_id, "block"))
    inexact = [b for b in blocks if not b.exact and b.folder in lists]
    if inexact:
        boot_films = np.stack([prepare_film(read_film(p), PAIRING_SIZE) for _, p, _, _ in pairs])
        boot_masks = np.stack([geometry.resize_mask(masks_full[i], (PAIRING_SIZE, PAIRING_SIZE)) for _, _, i, _ in pairs])
        model = _fit(boot_films, boot_masks, epochs=max(1, epochs - 2), seed=seed).model
        for block in inexact:
            pairs.extend(_align_block(block, lists[block.folder], model, source, masks_full, load))
    frame = pd.DataFrame(pairs, columns=["folder", "film_path", "mask_id", "method"])
    frame["split"] = frame["folder"].str.split("/").str[0]
    frame["label"] = frame["folder"].str.split("/").str[1]
    frame["film"] = [p.name for p in frame["film_path"]]
    frame["patient"] = [data.patient_from_filename(p.name) for p in frame["film_path"]]
    split = data.load_index(data_root).set_index("relpath")["split"]
    frame["role"] = [split.get(f"{folder}/{p.name}", "test" if folder.startswith("test") else "train")
                     for folder, p in zip(frame["folder"], frame["film_path"])]
    frame["original_width"] = [sizes[i][0] for i in frame["mask_id"]]
    frame["original_height"] = [sizes[i][1] for i in frame["mask_id"]]
    position = {(folder, p.name): k for folder, films in lists.items() for k, p in enumerate(films)}
    frame["order"] = [FOLDER_ORDER.index(f) * 100_000 + position[(f, p.name)] for f, p in zip(frame["folder"], frame["film_path"])]
    frame = frame.sort_values("order").drop(columns=["order"]).reset_index(drop=True)
    films = np.stack([read_film(p) for p in frame["film_path"]])
    masks224 = np.stack([masks_full[i] for i in frame["mask_id"]])
    checked = check_pairs(frame.drop(columns=["film_path"]), films, masks224, epochs=epochs, seed=seed)
    return checked, films, masks224


def _align_block(block: Block, films: list[Path], model, source: MaskSource, masks_full: dict, load) -> list[tuple]:
    """Pairs of an inexact block: in-order ids aligned by dynamic programming, late ids matched to what is left."""
    main, late = list(block.ids), list(block.late)
    ids = main + late
    load(ids)
    x = np.stack([prepare_film(read_film(p), PAIRING_SIZE) for p in films])
    pred = _predict_masks(model, x)
    small = {i: geometry.resize_mask(masks_full[i], (PAIRING_SIZE, PAIRING_SIZE)) for i in ids}
    cache: dict[tuple[int, int], float] = {}

    def score(m: int, f: int) -> float:
        key = (m, f)
        if key not in cache:
            cache[key] = geometry.dice(pred[f], small[main[m]])
        return cache[key]

    skips = len(films) - len(main)
    chosen = align_in_order(score, len(main), len(films))
    logger.info("%s: %d in-order masks aligned to %d films (%d skipped)", block.folder, len(main), len(films), skips)
    pairs = [(block.folder, films[f], main[m], "aligned") for m, f in enumerate(chosen)]
    free = sorted(set(range(len(films))) - set(chosen))
    for mask_id in late:
        if not free:
            break
        dices = sorted(((geometry.dice(pred[f], small[mask_id]), f) for f in free), reverse=True)
        margin = dices[0][0] - (dices[1][0] if len(dices) > 1 else 0.0)
        if margin >= LATE_MARGIN:
            pairs.append((block.folder, films[dices[0][1]], mask_id, "late id, best match"))
            free.remove(dices[0][1])
        logger.info("late id %d: best Dice %.2f (%s), margin %.2f -> %s", mask_id, dices[0][0], films[dices[0][1]].name,
                    margin, "paired" if margin >= LATE_MARGIN else "dropped")
    for f in free:
        logger.info("%s: %s has no mask", block.folder, films[f].name)
    return pairs


def save_masks(frame: pd.DataFrame, masks224: np.ndarray, out: str | os.PathLike) -> None:
    """Write each passed pair's 224 x 224 mask as a 1-bit PNG at out/<split>/<label>/<film stem>.png."""
    out = Path(out)
    for row, mask in zip(frame.itertuples(), masks224):
        if not row.passed:
            continue
        path = out / row.split / row.label / (Path(row.film).stem + ".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).convert("1").save(path, optimize=True)


def contact_sheet(frame: pd.DataFrame, films: np.ndarray, masks224: np.ndarray, path: str | os.PathLike, *,
                  n: int = 48, columns: int = 8, seed: int = 0, tile: int = 160) -> None:
    """A PNG of `n` random passed pairs: each film with its mask outline, captioned by file name and mask id."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    passed = np.flatnonzero(frame["passed"].to_numpy())
    chosen = np.sort(rng.choice(passed, size=min(n, len(passed)), replace=False))
    rows = int(np.ceil(len(chosen) / columns))
    sheet = Image.new("RGB", (columns * tile, rows * (tile + 14)), "black")
    draw = ImageDraw.Draw(sheet)
    for k, i in enumerate(chosen):
        rgb = geometry.draw_outline(films[i], masks224[i], colour=(255, 40, 40), thickness=2)
        x, y = (k % columns) * tile, (k // columns) * (tile + 14)
        sheet.paste(Image.fromarray(rgb).resize((tile, tile)), (x, y))
        draw.text((x + 2, y + tile + 1), f"{Path(frame['film'].iloc[i]).stem[:18]} #{frame['mask_id'].iloc[i]}", fill="white")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    """Command line: reconstruct, check, write masks, pairing.csv, the contact sheet and the shipped lung model."""
    from core.lungs import training

    parser = argparse.ArgumentParser(prog="python -m core.lungs.pairing", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--masks-git", help="bare git directory of v7labs/covid-19-xray-dataset")
    where.add_argument("--masks-dir", help="an extracted annotations/all-images-semantic-masks folder")
    parser.add_argument("--data", default="data/chest_xray", help="Kaggle-layout folder with train/ and test/")
    parser.add_argument("--out", default="data/lung_masks", help="where the masks and pairing.csv go")
    parser.add_argument("--sheet", default="docs/lungs/pairing_contact_sheet.png")
    parser.add_argument("--model-out", default="core/assets/lungs-unet", help="where the lung network trained on fold A goes")
    parser.add_argument("--epochs", type=int, default=training.EPOCHS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    source = MaskSource(git_dir=args.masks_git, folder=args.masks_dir)
    fit, films, masks224 = reconstruct(source, args.data, epochs=args.epochs)
    frame = fit.table
    save_masks(frame, masks224, args.out)
    columns = ["split", "label", "film", "mask_id", "method", "original_width", "original_height", "role", "fold",
               "dice", "window_margin", "body_fraction", "passed", "reason"]
    frame[columns].to_csv(Path(args.out) / "pairing.csv", index=False, float_format="%.4f")
    contact_sheet(frame, films, masks224, args.sheet)
    summary = {"pairs": int(len(frame)), "passed": int(frame["passed"].sum()),
               "shifted_by_one_passed": shifted_pass_rate(fit, films, masks224, shift=1),
               "per_folder": {folder: {"pairs": int(len(g)), "passed": int(g["passed"].sum()),
                                       "median_dice": float(g["dice"].median())}
                              for folder, g in frame.groupby("folder", sort=False)}}
    (Path(args.out) / "pairing_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for folder, entry in summary["per_folder"].items():
        logger.info("%-16s %5d pairs, %5d passed, median Dice %.3f", folder, entry["pairs"], entry["passed"], entry["median_dice"])
    logger.info("passed %d of %d pairs; shifted by one film, %.1f%% would pass", summary["passed"], summary["pairs"],
                100 * summary["shifted_by_one_passed"])
    training.write_model(Path(args.model_out), fit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
