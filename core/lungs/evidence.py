"""How much of a model's pneumonia evidence (Grad-CAM) lies inside the lungs, per film and per model.

Lungs come from the human masks where a shipped film has one (`data/lung_masks`), else from the lung model.
Per model, on the audit's sample of validation PNEUMONIA films (`core.audit.balanced_sample`, seed 0): the mean share
of the heatmap inside the lungs against the lungs' mean share of the film's area; their ratio says how much more the
model looks at the lungs than a heatmap spread evenly over the film would (1 = chance).

    python -m core.lungs.evidence models/*/ --json docs/lungs/evidence.json --markdown [--write-card]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core import config
from core.lungs import geometry
from core.lungs.masks import LungEvidence, lung_masks  # noqa: F401  (the per-film part, re-exported)

logger = logging.getLogger(__name__)

GOAL_RATIO = 2.0
CARD_HEADING = "## Evidence inside the lungs"


def pneumonia_heatmaps(model_dir: str | os.PathLike, data_root: str | os.PathLike | None = None, *, split: str = "val",
                       per_class: int | None = None, seed: int | None = None, batch_size: int = 16,
                       cache: str | os.PathLike | None = None) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """(relpaths, films (N, H, W) uint8, Grad-CAMs (N, H, W)) of the audit sample's PNEUMONIA films of `split`;
    None for a model without convolutions. With `cache`, stored there as <model>-<split>.npz and reused."""
    from core import audit, data, explain, predict

    cache_file = Path(cache) / f"{Path(model_dir).name}-{split}.npz" if cache else None
    if cache_file is not None and cache_file.is_file():
        stored = np.load(cache_file, allow_pickle=False)
        return [str(r) for r in stored["relpaths"]], stored["films"], stored["maps"]
    per_class = audit.PER_CLASS if per_class is None else per_class
    seed = audit.SAMPLE_SEED if seed is None else seed
    scorer = predict.load_scorer(model_dir)
    model = scorer.model
    if not explain.conv_layers(model) and not explain.members(model):
        return None
    index = data.load_index(data_root)
    sample = audit.balanced_sample(index, split, per_class=per_class, seed=seed)
    sample = sample[sample["label"] == config.POSITIVE_LABEL].reset_index(drop=True)
    films = audit.load_films(sample["path"].tolist(), scorer.height, scorer.width)
    gradcam = explain.gradcam_for(model)
    channels = int(model.inputs[0].shape[-1])
    maps = np.concatenate([gradcam.heatmaps(audit.to_model_input(films[i: i + batch_size], channels))
                           for i in range(0, len(films), batch_size)])
    relpaths = sample["relpath"].astype(str).tolist()
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache_file, relpaths=np.array(relpaths), films=films, maps=maps.astype(np.float32))
    return relpaths, films, maps


def model_evidence(model_dir: str | os.PathLike, data_root: str | os.PathLike | None = None, *, split: str = "val",
                   cache: str | os.PathLike | None = None) -> dict[str, Any]:
    """Grad-CAM share inside the lungs on the audit sample's PNEUMONIA films of `split`, for models/<name>/."""
    found = pneumonia_heatmaps(model_dir, data_root, split=split, cache=cache)
    if found is None:
        return {"model": Path(model_dir).name, "gradcam": False}
    relpaths, films, maps = found
    masks, sources = lung_masks(list(films), relpaths)
    shares = np.array([geometry.share_inside(h, m) if m.any() else np.nan for h, m in zip(maps, masks)])
    areas = np.array([geometry.area_share(m) for m in masks])
    keep = ~np.isnan(shares)
    rng = np.random.default_rng(0)
    boot = [shares[keep][rng.integers(0, keep.sum(), keep.sum())].mean() for _ in range(config.BOOTSTRAP_RESAMPLES)]
    share, area = float(shares[keep].mean()), float(areas.mean())
    return {
        "model": Path(model_dir).name, "gradcam": True, "split": split, "films": int(len(films)),
        "no_evidence_or_no_lungs": int((~keep).sum()), "human_masks": int(sum(s == "human mask" for s in sources)),
        "evidence_share": share, "evidence_share_ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
        "area_share": area, "ratio": share / area, "goal_ratio": GOAL_RATIO, "meets_goal": bool(share / area >= GOAL_RATIO),
    }


def evidence_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table: one row per model."""
    lines = ["| model | films | evidence inside the lungs (95% CI) | lungs' share of the area | ratio |",
             "| --- | --- | --- | --- | --- |"]
    for row in rows:
        if not row.get("gradcam"):
            lines.append(f"| {row['model']} | - | no Grad-CAM (no convolution) | - | - |")
            continue
        low, high = row["evidence_share_ci95"]
        lines.append(f"| {row['model']} | {row['films']} | {row['evidence_share']:.0%} ({low:.0%}-{high:.0%}) | "
                     f"{row['area_share']:.0%} | {row['ratio']:.2f} |")
    return "\n".join(lines)


def card_section(row: dict[str, Any]) -> str:
    """The card.md section for one model."""
    if not row.get("gradcam"):
        return f"{CARD_HEADING}\n\nThis model has no convolution, so it has no Grad-CAM to place.\n"
    low, high = row["evidence_share_ci95"]
    verdict = "meets" if row["meets_goal"] else "does not meet"
    return (f"{CARD_HEADING}\n\nOn {row['films']} validation PNEUMONIA films (the audit sample), "
            f"{row['evidence_share']:.0%} (95% CI {low:.0%}-{high:.0%}) of the Grad-CAM pneumonia evidence lies inside the "
            f"lungs, which cover {row['area_share']:.0%} of the film: {row['ratio']:.2f} times an even spread. It {verdict} the "
            f"goal of {GOAL_RATIO:g} times. Lungs: the human masks of data/lung_masks ({row['human_masks']} films), else "
            "the lung model (core/assets/lungs-unet). `python -m core.lungs.evidence`.\n")


def write_card_section(model_dir: str | os.PathLike, row: dict[str, Any]) -> None:
    """Replace (or append) the CARD_HEADING section of models/<name>/card.md and store the row in card.json."""
    folder = Path(model_dir)
    md = folder / "card.md"
    text = md.read_text() if md.is_file() else ""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == CARD_HEADING), None)
    section = card_section(row).rstrip("\n").splitlines()
    if start is None:
        lines += [""] + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = section + ([""] if end < len(lines) else [])
    md.write_text("\n".join(lines).rstrip("\n") + "\n")
    card_json = folder / "card.json"
    if card_json.is_file():
        card = json.loads(card_json.read_text())
        card["lung_evidence"] = row
        card_json.write_text(json.dumps(card, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line over `model_evidence` for several model folders."""
    parser = argparse.ArgumentParser(prog="python -m core.lungs.evidence", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model folders (models/NAME)")
    parser.add_argument("--data", default=None)
    parser.add_argument("--json", default=None, help="write the rows here")
    parser.add_argument("--markdown", action="store_true", help="print the table")
    parser.add_argument("--write-card", action="store_true", help="add the section to each model's card")
    parser.add_argument("--cache", default=None, help="keep the Grad-CAMs here (npz per model) and reuse them")
    parser.add_argument("--heatmaps-only", action="store_true", help="only compute and cache the Grad-CAMs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for folder in args.models:
        if Path(folder).name == "lungs-unet" or not (Path(folder) / "model.keras").is_file():
            continue
        if args.heatmaps_only:
            pneumonia_heatmaps(folder, args.data, cache=args.cache)
            continue
        row = model_evidence(folder, args.data, cache=args.cache)
        logger.info("%s: %s", row["model"], {k: row.get(k) for k in ("evidence_share", "area_share", "ratio")})
        rows.append(row)
        if args.write_card:
            write_card_section(folder, row)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    if args.markdown:
        print(evidence_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
