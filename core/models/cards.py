"""Model cards and artifacts: the operating-point rule, dataset texts, card.json / card.md, atomic publishing.

A trained model is a folder ``models/<name>/`` holding ``model.keras``, ``history.csv``, ``predictions.csv``,
``card.json`` and ``card.md`` (docs/ARCHITECTURE.md gives the card schema). It is written into
``models/.tmp-<name>-<random>/`` and moved into place by :func:`publish` only when complete, so the app never
lists a half-written model. Paths in cards are relative to the project when they lie inside it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import config

log = logging.getLogger(__name__)


THRESHOLD_RULE = "specificity"
THRESHOLD_TARGET = 0.95
THRESHOLD_RULE_TEXT = "highest validation sensitivity with validation specificity >= {target:.2f}"
"""The one documented operating-point rule, fixed before any test number was seen.

Why a specificity floor rather than F1: the dataset's own notes (data/README) say models trained on this
data over-call pneumonia on the official test images (different acquisition). A threshold that keeps 95% of
validation NORMAL films negative is the guard against that, at little cost in sensitivity where the
validation AUC is high. It is applied identically to every model.
"""

INTENDED_USE = (
    "Research and teaching demonstration: flags paediatric anterior-posterior chest X-rays that look like "
    "pneumonia, to compare models and study operating points. Not a diagnostic device; every output needs "
    "review by a qualified clinician."
)
LIMITATIONS = [
    "Trained and evaluated only on paediatric (age 1-5) anterior-posterior films from one centre "
    "(Guangzhou Women and Children's Medical Center, Kermany et al. 2018); adult, PA, lateral or other "
    "hospitals' films are out of distribution.",
    "The official test set was acquired differently from the training films; validation numbers "
    "(carved from train) are optimistic, and test numbers are the ones to quote.",
    "Two classes only (NORMAL / PNEUMONIA): other findings (effusion, tuberculosis, COVID-19, devices) "
    "are not recognised and may be called either way.",
    "Labels come from the dataset's folders (expert grading of the original study), not from "
    "microbiology; bacterial and viral pneumonia are merged.",
    "Confidence intervals resample images, not patients; they are slightly optimistic where one "
    "patient has several films.",
    "Not a medical device: not cleared or approved for clinical use.",
]
DATASET_PROVENANCE = (
    "Kermany, Zhang, Goldbaum (2018), 'Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images "
    "for Classification', Mendeley Data, doi:10.17632/rscbjbr9sj.2, CC BY 4.0; shipped resized to 224x224."
)

NIH_INTENDED_USE = (
    "Research and teaching demonstration: flags adult chest X-rays (NIH ChestX-ray14) whose report mentions "
    "pneumonia, to compare models and study operating points at a low prevalence. Not a diagnostic device; "
    "every output needs review by a qualified clinician."
)
NIH_LIMITATIONS = [
    "Trained and evaluated on NIH ChestX-ray14 (Wang et al. 2017, NIH Clinical Center): adult PA and AP films "
    "from one hospital; paediatric films and other hospitals' films are out of distribution.",
    "Labels are text-mined from radiology reports (estimated > 90% accurate), not read from the images; "
    "'Pneumonia' overlaps with infiltration and consolidation.",
    "Pneumonia prevalence is about 1%: PPV stays low at any useful sensitivity; read it next to the prevalence.",
    "Confidence intervals resample images, not patients; they are slightly optimistic where one "
    "patient has several films.",
    "Not a medical device: not cleared or approved for clinical use.",
]
NIH_PROVENANCE = (
    "Wang et al. (2017), 'ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks', NIH Clinical "
    "Center; labels from Data_Entry_2017.csv ('Pneumonia' in Finding Labels)."
)
DATASET_TEXTS = {
    "kaggle": {
        "name": "Chest X-Ray Images (Pneumonia), Kermany et al. 2018 (paediatric, Guangzhou)",
        "provenance": DATASET_PROVENANCE,
        "intended_use": INTENDED_USE,
        "limitations": LIMITATIONS,
    },
    "nih": {
        "name": "NIH ChestX-ray14 (adult, NIH Clinical Center)",
        "provenance": NIH_PROVENANCE,
        "intended_use": NIH_INTENDED_USE,
        "limitations": NIH_LIMITATIONS,
    },
}
"""Name, provenance, intended use and limitations written in the card, by dataset layout."""


def dataset_texts(data_root: str | Path) -> dict:
    """The card texts for the dataset at `data_root` (Kaggle paediatric set unless the folder is NIH-layout)."""
    from core import data

    try:
        layout = data.detect_layout(data_root)
    except (ValueError, OSError):
        layout = "kaggle"
    return DATASET_TEXTS.get(layout, DATASET_TEXTS["kaggle"])


def project_relative(path: str | Path) -> str:
    """``path`` relative to the project root (POSIX) when it lies inside the project, else as given (absolute)."""
    resolved = Path(path).expanduser().resolve()
    try:
        return resolved.relative_to(config.PROJECT_ROOT).as_posix()
    except ValueError:
        return str(path)


def dataset_summary(index: pd.DataFrame, data_root: str | Path) -> dict:
    """The card's dataset section: name, root, fingerprint, provenance, split seed, images/patients per split."""
    from core import data

    try:
        fingerprint = data.dataset_fingerprint(data_root)
    except Exception as error:  # a fingerprint is informative only; never fail a finished run on it
        log.warning("Dataset fingerprint failed: %s", error)
        from core.training import features

        fingerprint = features.files_fingerprint(index)
    root_text = project_relative(data_root)
    return {
        "name": dataset_texts(data_root)["name"],
        "root": root_text,
        "fingerprint": fingerprint,
        "provenance": dataset_texts(data_root)["provenance"],
        "split_seed": config.SPLIT_SEED,
        "validation_fraction": config.VALIDATION_FRACTION,
        "images_per_split": {s: int((index["split"] == s).sum()) for s in ("train", "val", "test")},
        "patients_per_split": {
            s: int(index.loc[index["split"] == s, "patient"].nunique()) for s in ("train", "val", "test")
        },
        "images_per_class": {
            s: {
                "NORMAL": int(((index["split"] == s) & (index["label"] == 0)).sum()),
                "PNEUMONIA": int(((index["split"] == s) & (index["label"] == 1)).sum()),
            }
            for s in ("train", "val", "test")
        },
    }


def _versions() -> dict[str, str]:
    """Library versions recorded in the card."""
    import keras
    import sklearn
    import tensorflow as tf

    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }


def render_card_markdown(card: dict) -> str:
    """card.md: the same content as card.json for people (threshold, metrics with CIs, data, limitations)."""
    from core.evaluation import goals, metrics

    lines = [f"# {card['display_name']} (`{card['name']}`)", ""]
    inp = card["input"]
    lines += [
        f"- **Architecture:** {card['architecture']}; input {inp['height']}x{inp['width']}x{inp['channels']}, "
        f"raw pixels 0-255; preprocessing inside the model: {inp['preprocessing']}",
        f"- **Weights:** {card['weights_source']}",
        f"- **Parameters:** {card['parameters']['total']:,} ({card['parameters']['trainable']:,} trainable)",
        f"- **Operating threshold:** {card['threshold']['value']:.4f}, chosen on **{card['threshold']['chosen_on']}** "
        f"by the rule: {card['threshold']['rule']}",
        f"- **Training:** {card['training']['epochs_run']} epochs, {card['training']['seconds'] / 60:.1f} min, "
        f"finished {card['training']['finished']}",
        "",
        "## Metrics at the operating threshold (95% bootstrap CIs)",
        "",
        "| metric | validation | test (official 624 images) |",
        "| --- | --- | --- |",
    ]
    for key in metrics.METRIC_KEYS:
        lines.append(
            f"| {key} | {metrics.format_ci(card['metrics']['val'][key])} | {metrics.format_ci(card['metrics']['test'][key])} |"
        )
    data = card["dataset"]
    if goals.has_goal_metrics(card):
        lines += ["", *goals.card_goal_section(card).rstrip("\n").splitlines()]
    lines += [
        "",
        "## Data",
        "",
        f"{data['name']} at `{data['root']}` (fingerprint `{data['fingerprint']}`).",
        f"Provenance: {data['provenance']}",
        f"Validation: {data['validation_fraction']:.0%} of train, grouped by patient, seed {data['split_seed']}.",
        "",
        "| split | images | patients |",
        "| --- | --- | --- |",
    ]
    for split in ("train", "val", "test"):
        lines.append(f"| {split} | {data['images_per_split'][split]} | {data['patients_per_split'][split]} |")
    lines += ["", "## Intended use", "", card["intended_use"], "", "## Limitations", ""]
    lines += [f"- {item}" for item in card["limitations"]]
    lines += [
        "",
        "## Training configuration",
        "",
        "```json",
        json.dumps(card["training"]["config"], indent=2),
        "```",
        "",
    ]
    text = "\n".join(lines)
    # Sections added after training by their own tools; kept whenever the card is rewritten.
    if card.get("guard"):
        from core import guard as ood

        text += "\n" + ood.guard_markdown(card["guard"])
    if card.get("audit"):
        from core import audit

        text += "\n" + audit.audit_markdown(card["audit"])
    if card.get("lung_evidence"):
        from core.lungs import evidence

        text += "\n" + evidence.card_section(card["lung_evidence"])
    return text


def write_artifacts(folder: Path, *, model: Any, card: dict, history: pd.DataFrame, predictions: pd.DataFrame) -> None:
    """Write model.keras, history.csv, predictions.csv, card.json and card.md into ``folder`` (which must exist).

    The model is saved without its optimizer's state (a shipped model is only ever scored; for EfficientNet-Lite0
    Adam's moments would triple the file).
    """
    import keras

    if getattr(model, "optimizer", None) is not None:
        # The same layers, not compiled; one input and one output stay tensors (a list would change model.input).
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        outputs = model.outputs[0] if len(model.outputs) == 1 else model.outputs
        model = keras.Model(inputs, outputs, name=model.name)
    model.save(folder / "model.keras")
    history.to_csv(folder / "history.csv", index=False)
    predictions.to_csv(folder / "predictions.csv", index=False)  # full precision: the card agrees exactly
    (folder / "card.json").write_text(json.dumps(card, indent=2, default=json_default) + "\n")
    (folder / "card.md").write_text(render_card_markdown(card))


def write_card(folder: Path, card: dict) -> None:
    """Rewrite ``folder``'s card.json and card.md from ``card``, each through a temporary file and os.replace."""
    for name, text in (
        ("card.json", json.dumps(card, indent=2, default=json_default) + "\n"),
        ("card.md", render_card_markdown(card)),
    ):
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, folder / name)


def json_default(value: Any) -> Any:
    """JSON for numpy scalars and paths (``json.dumps(..., default=json_default)``)."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Cannot write {type(value).__name__} to JSON")


@contextlib.contextmanager
def staged_folder(final_folder: Path | str, *, overwrite: bool = True) -> Iterator[Path]:
    """A hidden folder beside ``final_folder`` (``.tmp-<name>-<random>``) to write a complete folder into.

    When the ``with`` block ends without error it is published as ``final_folder`` (:func:`publish`: a reader sees
    the old folder or the new one, never half of either); when the block raises, it is deleted and the error goes on.
    """
    final_folder = Path(final_folder)
    final_folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = final_folder.parent / f".tmp-{final_folder.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        publish(tmp, final_folder, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish(tmp_folder: Path, final_folder: Path, *, overwrite: bool = True) -> Path:
    """Move a complete ``models/.tmp-*`` folder to ``models/<name>``; an old model of that name is replaced."""
    if final_folder.exists():
        if not overwrite:
            raise FileExistsError(f"{final_folder} exists; pass --overwrite or choose another --name.")
        trash = final_folder.parent / f".old-{final_folder.name}-{os.getpid()}"
        os.replace(final_folder, trash)
        os.replace(tmp_folder, final_folder)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp_folder, final_folder)
    return final_folder


def display_name(architecture_name: str, size: int, run_config: dict) -> str:
    """The model's name on screen: the architecture and input size, then what sets its recipe apart.

    Plain recipes keep the architecture's full name (``"Deeper CNN (5 conv blocks, batch norm, dropout), 128 px"``);
    a recipe against the acquisition shift is named short, the part that tells models apart first:
    ``"Deeper CNN, 128 px, seed 7: acquisition aug., per-image std., label smoothing 0.1"``.
    """
    parts = []
    if run_config.get("augment") == "acquisition":
        parts.append("acquisition aug.")
    elif run_config.get("augment") == "acquisition-aspect":
        parts.append("acquisition aug. with aspect changes")
    elif run_config.get("augment") == "acquisition-letterbox":
        parts.append("acquisition aug. + letterbox")
    if run_config.get("framing", "none") != "none":
        parts.append("cropped to content")
    if run_config.get("normalize", "none") != "none":
        parts.append(f"{run_config['normalize']} std.")
    if run_config.get("label_smoothing"):
        parts.append(f"label smoothing {run_config['label_smoothing']:g}")
    if run_config.get("mixup"):
        parts.append(f"mixup {run_config['mixup']:g}")
    if run_config.get("augment_views"):
        parts.append(f"{run_config['augment_views']} augmented feature views")
    if not parts:
        return f"{architecture_name}, {size} px"
    seed = f", seed {run_config['seed']}" if run_config.get("seed", 42) != 42 else ""
    return f"{architecture_name.split(' (')[0]}, {size} px{seed}: {', '.join(parts)}"


def build_card(
    *,
    cfg: Any,
    model: Any,
    weights_source: str,
    dataset: dict,
    threshold: float,
    results: dict,
    seconds: float,
    epochs_run: int,
    extra: dict | None = None,
) -> dict:
    """The card.json content (docs/ARCHITECTURE.md keys, plus a few extra informative ones)."""
    import datetime

    from core.models import zoo

    spec = zoo.get_spec(cfg.model)
    texts = next((t for t in DATASET_TEXTS.values() if t["name"] == dataset.get("name")), DATASET_TEXTS["kaggle"])
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    run_config = {k: v for k, v in asdict(cfg).items() if k not in {"progress", "models_dir", "cache_dir", "overwrite"}}
    run_config["img_size"] = cfg.size()
    run_config["data"] = project_relative(run_config["data"])
    card = {
        "name": cfg.resolved_name(),
        "display_name": display_name(spec.display_name, cfg.size(), run_config),
        "architecture": spec.name,
        "input": {
            "height": cfg.size(),
            "width": cfg.size(),
            "channels": spec.channels,
            "preprocessing": spec.preprocessing,
        },
        "weights_source": weights_source,
        "parameters": {"total": int(model.count_params()), "trainable": trainable},
        "dataset": dataset,
        "training": {
            "config": run_config,
            "seconds": round(float(seconds), 1),
            "epochs_run": int(epochs_run),
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
        "threshold": {
            "value": float(threshold),
            "rule": cfg.threshold_rule_text(),
            "chosen_on": "val",
            "rule_id": cfg.threshold_rule,
            "target": cfg.threshold_target,
        },
        "metrics": results,
        "intended_use": texts["intended_use"],
        "limitations": texts["limitations"],
        "versions": _versions(),
    }
    card.update(extra or {})
    return card
