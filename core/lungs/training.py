"""The shipped lung U-Net's recipe and its model folder (`core/assets/lungs-unet/`: model.keras, history.csv, card).

The network is fold A of the pairing's cross-fit (`core.lungs.pairing`, which calls `write_model`): it learns from
the films of the classifiers' training split, is monitored on their validation split (`core.data.load_index`,
grouped by patient, no patient on both sides), and its Dice is reported on every official test pair (another
acquisition, never used for any choice; the pairs that later fail the checks are not left out of the number),
with a bootstrap 95 % interval. The adult films we ship have no masks: `adult_sheet` draws what the network finds
on them for a reader to judge.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from core import config
from core.lungs import geometry
from core.lungs.segment import CARD_FILE, MODEL_FILE
from core.lungs.unet import DEFAULT_BASE_FILTERS, DEFAULT_DEPTH, DEFAULT_SIZE

logger = logging.getLogger(__name__)

EPOCHS = 8
SEED = 42
ADULT_FILMS = (
    "data/samples/RG1_UNCI.dcm",
    "data/samples/00000001_000.png",
    "data/samples/00000002_000.png",
    "data/samples/00000003_000.png",
    "data/samples/00000005_000.png",
)


def bootstrap_ci(values: np.ndarray, *, resamples: int = config.BOOTSTRAP_RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of the mean."""
    rng = np.random.default_rng(seed)
    means = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(resamples)]
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def adult_sheet(model, path: Path, *, tile: int = 256) -> list[dict]:
    """Contact sheet of the adult films we ship with the network's lung outline; returns what it found per film."""
    from PIL import ImageDraw

    from core.imaging import decode_xray, to_uint8
    from core.lungs.segment import segment_film

    films = [Path(config.PROJECT_ROOT / f) for f in ADULT_FILMS]
    field = Path("/work/shared/field-cases/adult_pa_nih_00027426_000.png")
    for candidate in (config.PROJECT_ROOT / "data" / "samples" / field.name, field):
        if candidate.is_file():
            films.append(candidate)
            break
    found, tiles = [], []
    for film in films:
        if not film.is_file():
            continue
        decoded = decode_xray(film)
        result = segment_film(decoded.pixels, model=model)
        rgb = geometry.draw_outline(to_uint8(decoded.pixels), result.mask, colour=(255, 40, 40), thickness=max(2, decoded.shape[0] // 120))
        tiles.append((film.name, Image.fromarray(rgb).resize((tile, tile))))
        found.append({"film": film.name, "lungs_found": result.lungs_found, "area_share": round(result.area_share, 3)})
    sheet = Image.new("RGB", (tile * len(tiles), tile + 16), "black")
    draw = ImageDraw.Draw(sheet)
    for k, (name, image) in enumerate(tiles):
        sheet.paste(image, (k * tile, 0))
        draw.text((k * tile + 2, tile + 2), name[:36], fill="white")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    return found


def write_card(out: Path, card: dict) -> None:
    """card.json and a short card.md."""
    (out / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    test = card["dice"]["test"]
    lines = [
        "# lungs-unet: lung fields on a chest film",
        "",
        f"Small U-Net ({card['architecture']['parameters']:,} parameters, {card['architecture']['size']} px input, "
        f"base {card['architecture']['base_filters']} filters, depth {card['architecture']['depth']}), trained "
        f"{card['training']['epochs']} epochs in {card['training']['seconds'] / 60:.1f} min on CPU on "
        f"{card['data']['train_films']} paediatric films with human lung masks (V7 Labs, CC BY 4.0; see data/README.md).",
        "",
        "| films | n | mean Dice | 95% CI | median | 5th percentile |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, label in (("validation", "validation (patient-grouped, monitored)"), ("test", "official test (held out)")):
        d = card["dice"][name]
        lines.append(f"| {label} | {d['n']} | {d['mean']:.3f} | {d['ci95'][0]:.3f}-{d['ci95'][1]:.3f} | {d['median']:.3f} | {d['p05']:.3f} |")
    lines += [
        "",
        f"Held-out Dice on the official test films: **{test['mean']:.3f}** (95% CI {test['ci95'][0]:.3f}-{test['ci95'][1]:.3f}).",
        "Dice is computed at the network's input size against the human masks; masks are stretched with the film.",
        "",
        "## Adult films we ship (no masks; judged by eye on docs/lungs/adult_films.png)",
        "",
        "| film | lungs found | share of the film |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {a['film']} | {'yes' if a['lungs_found'] else 'no'} | {a['area_share']:.0%} |" for a in card["adult_films"]]
    lines += ["", card.get("adult_note", ""), ""]
    (out / "card.md").write_text("\n".join(lines))


def write_model(out: Path, fit) -> dict:
    """Save a `core.lungs.pairing.CrossFit`'s fold-A network with its history and card; returns the card."""
    table = fit.table
    out.mkdir(parents=True, exist_ok=True)
    fit.model.save(out / MODEL_FILE)
    pd.DataFrame({k: v for k, v in fit.history.items() if v}).rename_axis("epoch").to_csv(out / "history.csv", float_format="%.5f")
    dice = {}
    for role, name in (("val", "validation"), ("test", "test")):
        values = table.loc[table["role"] == role, "dice"].to_numpy(dtype=float)
        dice[name] = {"n": int(len(values)), "mean": float(values.mean()), "ci95": bootstrap_ci(values),
                      "median": float(np.median(values)), "p05": float(np.percentile(values, 5))}
    adults = adult_sheet(fit.model, config.PROJECT_ROOT / "docs" / "lungs" / "adult_films.png")
    card = {
        "name": out.name,
        "task": "lung field segmentation",
        "architecture": {"kind": "U-Net", "size": DEFAULT_SIZE, "base_filters": DEFAULT_BASE_FILTERS, "depth": DEFAULT_DEPTH,
                         "parameters": int(fit.model.count_params())},
        "training": {"epochs": len(fit.history["loss"]), "seconds": round(fit.seconds, 1), "seed": SEED,
                     "loss": "binary cross-entropy + soft Dice", "optimizer": "Adam, cosine decay from 3e-3",
                     "augmentation": "contrast/brightness, shift up to 1/16 of the side", "hardware": "2 shared CPU cores"},
        "data": {"masks": "data/lung_masks (V7 Labs covid-19-xray-dataset, CC BY 4.0), paired by core.lungs.pairing",
                 "split": "classifier train split (fit) / patient-grouped validation split (monitored) / official test split (held out)",
                 "train_films": int((table["role"] == "train").sum()), "validation_films": int((table["role"] == "val").sum()),
                 "test_films": int((table["role"] == "test").sum())},
        "postprocessing": "probability > 0.5, two largest regions of at least 1 % of the film",
        "dice": dice,
        "adult_films": adults,
        "adult_note": "",
    }
    write_card(out, card)
    return card
