"""Stakeholder summary and the self-contained HTML results report (shared by the Overview page and the CLI).

    python -m core.report --models models/ --data data/chest_xray --out report.html [--no-heatmaps]

The report is ONE file: plotly.js is embedded once (inline, no CDN), images are base64 PNG data URIs, and
nothing is fetched when it is opened. Every number comes from the functions the pages use: the model ranking
from `core.evaluation.metrics.roc_auc` on the validation split, the comparison rows from `core.models.registry.model_summary`
(bootstrap CIs), curves from `core.evaluation.metrics` frames, natural frequencies from `core.evaluation.metrics.per_population`.

Decisions:
- The recommended model is chosen on VALIDATION films only (docs/PREREGISTRATION.md, rule 2b): among the models
  whose threshold was chosen on perturbed validation views (threshold_views.csv: the films as given plus
  acquisition-perturbed views) and that pass every goal change of the validation robustness audit (card "audit",
  `core.audit.model_audit`), the highest ROC AUC on those views, ties within 0.002 going to the smaller model; when
  none passes the audit, the same among all the models with views (rule 2); when no model has views, the highest
  ROC AUC on the validation split of predictions.csv (ties: fewer parameters, then name). The test split is only
  reported, never used to choose.
- The example X-rays are taken from the TEST split of the recommended model's predictions.csv at the card's
  threshold: for each of "correct detection" (true positive), "miss" (false negative) and "false alarm"
  (false positive), the case whose score is closest to that group's median score (ties: path). Typical cases,
  not the most extreme ones, and the same ones on every run.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core import config
from core.evaluation import metrics
from core.models import registry

logger = logging.getLogger(__name__)

DATA_TITLE = "Chest X-Ray Images (Pneumonia), Kaggle release of Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images for Classification"
DATA_CENTRE = "Guangzhou Women and Children's Medical Center, Guangzhou, China"
DATA_CITATION = "Kermany D, Zhang K, Goldbaum M (2018). Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images for Classification. Mendeley Data, v2."
DATA_DOI = "10.17632/rscbjbr9sj.2"
DATA_DOI_URL = f"https://doi.org/{DATA_DOI}"
DATA_LICENCE = "CC BY 4.0"
DATA_LICENCE_URL = "https://creativecommons.org/licenses/by/4.0/"

PUBLISHED_BASELINE = (
    "For reference, Kermany et al. (Cell, 2018) report on the same 624 test images: accuracy 92.8%, sensitivity 93.2% "
    "(93 of 100 children with pneumonia flagged), specificity 90.1% (10 of 100 without wrongly flagged), ROC AUC 0.968."
)
INTENDED_USE = (
    "Decision support for research and teaching: the tool scores paediatric chest X-rays (children aged one to five, "
    f"anterior-posterior views, one centre: {DATA_CENTRE}) for signs of pneumonia and shows where the model looked. "
    "It is not a diagnosis and not a medical device: a clinician reads every image."
)
LIMITATIONS = (
    "Trained and tested on images from one hospital; accuracy on other hospitals, machines, adults or other "
    "populations is unknown and likely lower.",
    "The official test images were acquired differently from the training images; models trained here tend to "
    "flag too many healthy children on them (lower specificity than on validation).",
    "Labels come from the dataset's graders, not from a confirmed clinical outcome; some labels are wrong.",
    "A heatmap shows which pixels changed the score, not where the pneumonia is; a plausible heatmap does not prove "
    "a correct reason.",
    "Confidence intervals resample images, not patients, so they are slightly too narrow where a child contributed "
    "several images.",
    "Bacterial and viral pneumonia are one class here; the tool says nothing about other findings.",
)

GLOSSARY: tuple[tuple[str, str], ...] = (
    ("Sensitivity (recall)", "Of the children who have pneumonia, the share the tool flags. High sensitivity = few missed cases."),
    ("Specificity", "Of the children who do not have pneumonia, the share the tool correctly leaves unflagged. High specificity = few false alarms."),
    ("PPV (precision)", "Of the X-rays the tool flags, the share that really show pneumonia. Depends on how common pneumonia is where the tool is used."),
    ("NPV", "Of the X-rays the tool does not flag, the share that really are free of pneumonia. Also depends on how common pneumonia is."),
    ("ROC AUC", "The chance that the tool scores a random child with pneumonia higher than a random child without: 0.5 is a coin toss, 1.0 is perfect. It does not depend on the threshold."),
    ("Threshold", "The score above which an X-ray is flagged. Lower thresholds catch more cases but raise more false alarms. Ours is chosen on validation images, never on the test images."),
    ("Grad-CAM", "A heatmap of the regions of the image that pushed the model's score towards pneumonia (red = strongest). It explains the model, not the disease."),
    ("95% confidence interval", "The range the true value plausibly lies in, given how many test images there are (bootstrap over the test images)."),
)

EXAMPLE_KINDS: tuple[tuple[str, str, str], ...] = (
    ("correct detection", "tp", "Pneumonia, and the tool flagged it."),
    ("miss", "fn", "Pneumonia, but the tool did not flag it."),
    ("false alarm", "fp", "No pneumonia, but the tool flagged it."),
)
SPLIT_NAMES = {"train": "TRAIN", "val": "VALIDATION", "test": "TEST"}
EXAMPLE_IMAGE_SIDE = 320
_COLOURS = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7d8c", "#6e7781")


# --------------------------------------------------------------------------------------------------
# Choosing the model and its examples
# --------------------------------------------------------------------------------------------------
RECOMMENDATION_TIE = 0.002
"""Validation ROC AUCs closer than this count as a tie, won by the model with fewer parameters."""


def rank_models(models_dir: str | Path) -> pd.DataFrame:
    """Every available model ranked on validation: columns model, display_name, val_roc_auc, val_views_roc_auc,
    val_robust, parameters, threshold.

    ``val_views_roc_auc`` is the ROC AUC on the model's perturbed validation views (threshold_views.csv; NaN when
    absent). ``val_robust`` is the validation audit's verdict (True when every goal change keeps sensitivity and
    specificity within the tolerance; None when the card has no audit). Models with views come first (those that
    pass the audit before the others), by that AUC, then the others by ``val_roc_auc`` (ties: fewer parameters, then
    name). Unavailable and site-adapted models are left out (the registry logs why).
    """
    from core.evaluation import evaluate as evaluation

    rows = []
    for entry in registry.list_models(models_dir):
        if not entry.available or entry.card.get("adapted"):  # adapted models (core.site) never give headline numbers
            continue
        val = registry.load_predictions(entry, split="val")
        views_file = Path(entry.path) / evaluation.THRESHOLD_VIEWS_FILE
        views_auc = math.nan
        if views_file.is_file():
            views = pd.read_csv(views_file)
            views_auc = metrics.roc_auc(views["label"], views["score"])
        rows.append(
            {
                "model": entry.name,
                "display_name": entry.display_name,
                "val_roc_auc": metrics.roc_auc(val["label"], val["score"]),
                "val_views_roc_auc": views_auc,
                "val_robust": validation_robustness(entry.card),
                "parameters": (entry.card.get("parameters") or {}).get("total") or math.inf,
                "threshold": entry.threshold,
            }
        )
    columns = ["model", "display_name", "val_roc_auc", "val_views_roc_auc", "val_robust", "parameters", "threshold"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["_no_views"] = frame["val_views_roc_auc"].isna()
    frame["_not_robust"] = frame["val_robust"] != True  # noqa: E712 (None counts as not shown robust)
    frame["_key"] = frame["val_views_roc_auc"].fillna(frame["val_roc_auc"])
    frame = frame.sort_values(
        ["_no_views", "_not_robust", "_key", "parameters", "model"], ascending=[True, True, False, True, True],
        kind="mergesort",
    )
    return frame.drop(columns=["_no_views", "_not_robust", "_key"]).reset_index(drop=True)


def validation_robustness(card: dict) -> bool | None:
    """The validation audit's verdict stored in a card: True/False, or None when the card has no validation audit."""
    val = ((card or {}).get("audit") or {}).get("splits", {}).get("val")
    return None if not val else bool(val.get("robust"))


def recommended_name(ranking: pd.DataFrame) -> str:
    """The recommended model's name from a :func:`rank_models` frame (the rule of the module docstring).

    Raises ValueError when the frame is empty.
    """
    if ranking.empty:
        raise ValueError("No usable trained model to recommend.")
    with_views = ranking[ranking["val_views_roc_auc"].notna()]
    if with_views.empty:
        return str(ranking["model"].iat[0])
    if "val_robust" in with_views and (with_views["val_robust"] == True).any():  # noqa: E712 (None-safe)
        with_views = with_views[with_views["val_robust"] == True]  # noqa: E712
    best = float(with_views["val_views_roc_auc"].max())
    tied = with_views[with_views["val_views_roc_auc"] >= best - RECOMMENDATION_TIE]
    return str(tied.sort_values(["parameters", "model"], kind="mergesort")["model"].iat[0])


def recommendation_reason(ranking: pd.DataFrame, name: str) -> str:
    """One plain sentence (Markdown bold allowed) saying why ``name`` was recommended, with the validation numbers."""
    row = ranking.set_index("model").loc[name]
    if pd.notna(row["val_views_roc_auc"]):
        checked = int(ranking["val_views_roc_auc"].notna().sum())
        robust = ranking[ranking["val_views_roc_auc"].notna() & (ranking.get("val_robust") == True)]  # noqa: E712
        if row.get("val_robust") == True and len(robust):  # noqa: E712 (numpy bool or None)
            return (
                "Chosen on the **validation** images only: its decisions hold when the validation films are zoomed, "
                "shifted, re-exposed or padded with black bars (sensitivity and specificity move by at most 0.05), "
                f"and of the {len(robust)} of {checked} models that hold like this it ranks cases best "
                f"(ROC AUC **{row['val_views_roc_auc']:.3f}** on those perturbed validation films; "
                f"{row['val_roc_auc']:.3f} on the films as given)."
            )
        return (
            "Chosen on the **validation** images only: it ranks cases best when the validation films are also shown "
            "zoomed, shifted, re-exposed, blurred or noisier, as other hospitals' machines would produce them "
            f"(ROC AUC **{row['val_views_roc_auc']:.3f}** on those perturbed validation films; {row['val_roc_auc']:.3f} "
            f"on the films as given), the best of the {checked} models checked this way."
        )
    return (
        f"Chosen because it ranks cases best on the **validation** images: ROC AUC **{row['val_roc_auc']:.3f}** "
        f"(validation split), the highest of the {len(ranking)} trained models."
    )


def recommend_model(models_dir: str | Path) -> registry.ModelEntry:
    """The recommended model, chosen on validation only (see the module docstring); ValueError when there is none."""
    ranking = rank_models(models_dir)
    if ranking.empty:
        raise ValueError(
            f"No usable trained model in {models_dir}; train the shipped models with `make models` "
            "or point PNEUMONIA_MODELS at a folder written by train.py."
        )
    return registry.get_model(recommended_name(ranking), models_dir)


def pick_examples(predictions: pd.DataFrame, threshold: float, *, split: str = "test") -> pd.DataFrame:
    """One typical case per outcome (correct detection, miss, false alarm) of `split` at `threshold`.

    predictions: columns path, split, label, score (registry.load_predictions). Returns columns kind, outcome,
    caption, path, label, score; an outcome with no case (e.g. no miss at all) is left out.
    """
    rows = predictions[predictions["split"] == split]
    flagged = rows["score"].to_numpy() >= threshold
    positive = rows["label"].to_numpy() == 1
    masks = {"tp": flagged & positive, "fn": ~flagged & positive, "fp": flagged & ~positive}
    chosen = []
    for kind, outcome, caption in EXAMPLE_KINDS:
        group = rows[masks[outcome]]
        if group.empty:
            continue
        distance = (group["score"] - group["score"].median()).abs()
        best = group.assign(_distance=distance).sort_values(["_distance", "path"], kind="mergesort").iloc[0]
        chosen.append({"kind": kind, "outcome": outcome, "caption": caption, "path": str(best["path"]),
                       "label": int(best["label"]), "score": float(best["score"])})
    return pd.DataFrame(chosen, columns=["kind", "outcome", "caption", "path", "label", "score"])


@dataclass(frozen=True)
class ExampleImage:
    """One example X-ray for display: its case, and an RGB uint8 (H, W, 3) image (Grad-CAM overlay when available)."""

    kind: str
    caption: str
    path: str
    label: int
    score: float
    image: np.ndarray
    heatmap: bool
    note: str = ""

    @property
    def png(self) -> bytes:
        """The image as PNG bytes."""
        from core.explain import to_png

        return to_png(self.image)


def example_images(entry: registry.ModelEntry | Path, examples: pd.DataFrame, data_root: str | Path, *, heatmaps: bool = True) -> list[ExampleImage]:
    """Decode the `examples` (pick_examples) from `data_root` and, if `heatmaps`, overlay the model's Grad-CAM.

    `entry` is a registry.ModelEntry (or its folder). Loading the model needs TensorFlow; when the model has no
    convolution layer (e.g. an MLP) or cannot be loaded, the plain X-ray is returned with a note saying why.
    """
    from core.imaging import InvalidImageError, decode_xray, resize_for_display, to_uint8

    root = Path(data_root)
    decoded_rows = []
    for row in examples.itertuples(index=False):
        try:
            decoded_rows.append((row, decode_xray(root / row.path)))
        except (InvalidImageError, OSError) as exc:
            logger.warning("Example %s cannot be shown: %s", row.path, exc)
    gradcam, scorer, why_not = None, None, "" if heatmaps else "heatmaps switched off"
    if heatmaps and decoded_rows:  # load the model (TensorFlow) only when there is something to explain
        try:
            from core import explain, predict

            scorer = predict.load_scorer(getattr(entry, "path", entry))
            gradcam = explain.gradcam_for(scorer.model)
        except ValueError as exc:  # registry.ModelUnavailableError and "no convolution layer" are ValueErrors
            why_not = f"no Grad-CAM for this model: {exc}"
            logger.warning("Example heatmaps unavailable: %s", exc)
    images = []
    for row, decoded in decoded_rows:
        pixels = resize_for_display(decoded.pixels, EXAMPLE_IMAGE_SIDE)
        if gradcam is not None:
            from core import explain

            cam = gradcam.heatmaps(scorer.prepare(decoded)[None])[0]
            rgb, has_heatmap, note = explain.overlay(pixels, cam, opacity=0.4), True, ""
        else:
            rgb, has_heatmap, note = to_uint8(pixels, rgb=True), False, why_not
        images.append(ExampleImage(row.kind, row.caption, row.path, int(row.label), float(row.score), rgb, has_heatmap, note))
    return images


def _examples_for_report(chosen: registry.ModelEntry, predictions: pd.DataFrame, data_root: str | Path, *, split: str,
                         heatmaps: bool) -> list:
    """The examples stored with the model (core.report.examples: no TensorFlow) when `heatmaps` and they match it, else
    computed here (example_images: TensorFlow when `heatmaps`)."""
    if heatmaps and split == "test":
        from core.report import examples

        try:
            return examples.load_examples(chosen.path, threshold=chosen.threshold)
        except examples.ExamplesUnavailableError as exc:
            logger.info("Computing the example heatmaps here: %s", exc)
    return example_images(chosen, pick_examples(predictions, chosen.threshold, split=split), data_root, heatmaps=heatmaps)


# --------------------------------------------------------------------------------------------------
# Numbers for people
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NaturalFrequencies:
    """'Of 100 children with pneumonia it flags `caught`; of 100 without, it wrongly flags `false_alarms`', with 95% CIs."""

    caught: float
    caught_low: float
    caught_high: float
    false_alarms: float
    false_alarms_low: float
    false_alarms_high: float
    split: str
    n_pneumonia: int
    n_normal: int

    def sentences(self) -> tuple[str, str]:
        """The two plain sentences (rounded to whole children), naming the split and the 95% CI."""
        split = SPLIT_NAMES.get(self.split, self.split.upper())
        return (
            f"Of 100 children with pneumonia, it flags {self.caught:.0f} "
            f"(95% CI {self.caught_low:.0f}–{self.caught_high:.0f}; {split} split, {self.n_pneumonia} X-rays with pneumonia).",
            f"Of 100 children without pneumonia, it wrongly flags {self.false_alarms:.0f} "
            f"(95% CI {self.false_alarms_low:.0f}–{self.false_alarms_high:.0f}; {split} split, {self.n_normal} X-rays without).",
        )


def natural_frequencies(summary: dict, *, split: str, n_pneumonia: int, n_normal: int) -> NaturalFrequencies:
    """Natural frequencies per 100 sick / 100 healthy children from a summary with recall/specificity and CIs.

    `summary` is a registry.model_summary row (keys recall, recall_ci_low, ...) or a metrics.summarize_with_ci
    dict ({"recall": {"value", "ci_low", "ci_high"}, ...}). Uses metrics.per_population with 100 + 100 children.
    """
    def triple(key: str) -> tuple[float, float, float]:
        if isinstance(summary.get(key), dict):
            item = summary[key]
            return float(item["value"]), float(item["ci_low"]), float(item["ci_high"])
        return float(summary[key]), float(summary[f"{key}_ci_low"]), float(summary[f"{key}_ci_high"])

    recall, specificity = triple("recall"), triple("specificity")
    # 200 children, half of them with pneumonia: `caught` is per 100 sick, `false_alarms` per 100 healthy.
    per = [metrics.per_population(r, s, 0.5, population=200) for r, s in zip(recall, specificity)]
    return NaturalFrequencies(
        caught=per[0]["caught"], caught_low=per[1]["caught"], caught_high=per[2]["caught"],
        # The false-alarm rate is 1 - specificity, so the specificity CI's low end gives the high end.
        false_alarms=per[0]["false_alarms"], false_alarms_low=per[2]["false_alarms"], false_alarms_high=per[1]["false_alarms"],
        split=split, n_pneumonia=int(n_pneumonia), n_normal=int(n_normal),
    )


def icon_array_html(count: float, *, total: int = 100, colour: str = "#d1242f", label: str = "") -> str:
    """A 10-per-row grid of `total` person icons, the first round(count) filled with `colour` (HTML + inline CSS)."""
    filled = int(round(count))
    cells = "".join(
        f'<span style="display:inline-block;width:1.05em;height:1.05em;margin:0.08em;border-radius:50% 50% 20% 20%;'
        f'background:{colour if i < filled else "#d0d7de"}"></span>'
        + ("<br>" if (i + 1) % 10 == 0 else "")
        for i in range(total)
    )
    caption = f'<div style="font-size:0.9em;margin-top:0.3em">{html.escape(label)}</div>' if label else ""
    return f'<div class="icon-array" role="img" aria-label="{filled} of {total}" style="line-height:0">{cells}</div>{caption}'


def dataset_bars_html(images: pd.DataFrame, patients: pd.DataFrame | None = None) -> str:
    """dataset_figure as plain HTML + inline CSS (no JavaScript): one stacked bar per split, widths to scale.

    For the landing page, which then needs no plotly.js in the browser. images/patients: dataset_counts frames.
    """
    splits = [s for s in ("train", "val", "test") if s in images.index]
    colours = dict(zip(config.CLASS_NAMES, ("#1f6feb", "#d1242f")))
    largest = max(int(sum(int(images.at[s, c]) for c in config.CLASS_NAMES)) for s in splits) if splits else 1
    rows = []
    for split in splits:
        total = sum(int(images.at[split, c]) for c in config.CLASS_NAMES)
        segments = []
        for class_name in config.CLASS_NAMES:
            count = int(images.at[split, class_name])
            children = f" from {int(patients.at[split, class_name]):,} children" if patients is not None else ""
            segments.append(
                f'<span title="{class_name}: {count:,} X-rays{children}" style="display:inline-block;height:100%;'
                f'width:{100 * count / max(1, total):.3f}%;background:{colours[class_name]};color:#fff;text-align:center;'
                f'overflow:hidden;white-space:nowrap">{count:,}</span>')
        rows.append(
            f'<div style="display:flex;align-items:center;gap:0.6em;margin:0.35em 0">'
            f'<span style="width:6.5em;text-align:right">{SPLIT_NAMES[split].title()}</span>'
            f'<span role="img" aria-label="{SPLIT_NAMES[split].title()}: {total:,} X-rays" style="display:flex;height:1.8em;'
            f'width:{100 * total / largest:.3f}%;line-height:1.8em;font-size:0.9em">{"".join(segments)}</span>'
            f'<span style="white-space:nowrap">{total:,}</span></div>')
    legend = " ".join(f'<span style="display:inline-block;width:0.9em;height:0.9em;background:{colour};'
                      f'vertical-align:middle"></span> {name.title()}' for name, colour in colours.items())
    return (f'<div class="dataset-bars"><div style="font-weight:600">X-rays per split (validation carved from train, '
            f'grouped by child)</div>{"".join(rows)}<div style="font-size:0.9em">{legend}</div></div>')


# --------------------------------------------------------------------------------------------------
# Data for the report (and the Overview page)
# --------------------------------------------------------------------------------------------------
def dataset_counts(data_root: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(images, patients) per split x class with a total column (rows train/val/test), and the distinct patient ids.

    The same functions as the Dataset page: core.data.split_counts and core.data.summary.patient_counts.
    """
    from core import data
    from core.data import summary as dataset_summary

    index = data.load_index(data_root)
    return data.split_counts(index), dataset_summary.patient_counts(index), int(index["patient"].nunique())


def comparison_rows(models_dir: str | Path, *, split: str = "test", n_resamples: int = config.BOOTSTRAP_RESAMPLES) -> pd.DataFrame:
    """registry.model_summary of every available model on `split` (the Model comparison page's table), one row each."""
    rows = [registry.model_summary(e, split, n_resamples=n_resamples) for e in registry.list_models(models_dir) if e.available]
    return pd.DataFrame(rows)


def curve_frames(models_dir: str | Path, *, split: str = "test") -> dict[str, dict[str, pd.DataFrame | dict]]:
    """{model: {"roc", "pr", "calibration" frames, "point" (metrics at the card threshold)}} on `split`."""
    frames = {}
    for entry in registry.list_models(models_dir):
        if not entry.available:
            continue
        rows = registry.load_predictions(entry, split=split)
        y, s = rows["label"], rows["score"]
        frames[entry.name] = {
            "display_name": entry.display_name,
            "roc": metrics.roc_curve_frame(y, s),
            "pr": metrics.pr_curve_frame(y, s),
            "calibration": metrics.calibration_frame(y, s, n_bins=10),
            "point": metrics.ThresholdSweep.from_scores(y, s).at(entry.threshold),
            "auc": metrics.roc_auc(y, s),
            "ap": metrics.pr_auc(y, s),
            "brier": metrics.brier_score(y, s),
        }
    return frames


# --------------------------------------------------------------------------------------------------
# Figures (plotly; the page and the report draw the same ones)
# --------------------------------------------------------------------------------------------------
def dataset_figure(images: pd.DataFrame, patients: pd.DataFrame | None = None):  # -> plotly Figure
    """Stacked bars: images per split and class (hover: patients), the dataset 'in one picture'."""
    import plotly.graph_objects as go

    splits = [s for s in ("train", "val", "test") if s in images.index]
    labels = [f"{SPLIT_NAMES[s].title()}" for s in splits]
    fig = go.Figure()
    for class_name, colour in zip(config.CLASS_NAMES, ("#1f6feb", "#d1242f")):
        counts = [int(images.at[s, class_name]) for s in splits]
        hover = [
            f"{class_name}: {c} X-rays" + (f" from {int(patients.at[s, class_name])} children" if patients is not None else "")
            for s, c in zip(splits, counts)
        ]
        fig.add_trace(go.Bar(x=labels, y=counts, name=class_name.title(), marker_color=colour, text=counts,
                             textposition="inside", hovertext=hover, hoverinfo="text"))
    fig.update_layout(barmode="stack", title="X-rays per split (validation carved from train, grouped by child)",
                      yaxis_title="X-rays", height=380, margin=dict(l=10, r=10, t=50, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"))
    return fig


def _line_figure(title: str, x_title: str, y_title: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, height=440, margin=dict(l=10, r=10, t=50, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.18), xaxis=dict(range=[0, 1]), yaxis=dict(range=[0, 1.02]))
    return fig


def curve_figures(frames: dict, *, split: str = "test", highlight: str | None = None) -> dict:
    """{"roc", "pr", "calibration"} plotly figures overlaying every model of `frames` (curve_frames); × = operating point."""
    import plotly.graph_objects as go

    name = SPLIT_NAMES.get(split, split.upper())
    roc = _line_figure(f"ROC curve ({name} split)", "1 − specificity (false-alarm rate)", "Sensitivity (share of pneumonia flagged)")
    pr = _line_figure(f"Precision–recall curve ({name} split)", "Recall (sensitivity)", "Precision (PPV)")
    cal = _line_figure(f"Calibration ({name} split)", "Mean predicted probability", "Observed share with pneumonia")
    roc.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="chance"))
    cal.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="perfect calibration"))
    for i, (model, c) in enumerate(frames.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        width = 4 if model == highlight else 2
        label = c["display_name"] + (" (recommended)" if model == highlight else "")
        point = c["point"]
        roc.add_trace(go.Scatter(x=c["roc"]["fpr"], y=c["roc"]["tpr"], mode="lines", line=dict(color=colour, width=width),
                                 name=f"{label}, AUC {c['auc']:.3f}"))
        roc.add_trace(go.Scatter(x=[1 - point["specificity"]], y=[point["recall"]], mode="markers", showlegend=False,
                                 marker=dict(color=colour, size=12, symbol="x"),
                                 hovertext=f"{label}: threshold {point['threshold']:.3f}", hoverinfo="text"))
        pr.add_trace(go.Scatter(x=c["pr"]["recall"], y=c["pr"]["precision"], mode="lines", line=dict(color=colour, width=width, shape="hv"),
                                name=f"{label}, AP {c['ap']:.3f}"))
        pr.add_trace(go.Scatter(x=[point["recall"]], y=[point["precision"]], mode="markers", showlegend=False,
                                marker=dict(color=colour, size=12, symbol="x"),
                                hovertext=f"{label}: threshold {point['threshold']:.3f}", hoverinfo="text"))
        cal.add_trace(go.Scatter(x=c["calibration"]["mean_predicted"], y=c["calibration"]["fraction_positive"], mode="lines+markers",
                                 line=dict(color=colour, width=width), name=f"{label}, Brier {c['brier']:.3f}"))
    return {"roc": roc, "pr": pr, "calibration": cal}


# --------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1b1f24;max-width:1100px;margin:0 auto;padding:1.5em;line-height:1.5}
h1{font-size:2em;margin-bottom:0.2em}h2{border-bottom:2px solid #d0d7de;padding-bottom:0.2em;margin-top:2em}
.note{background:#fff8c5;border-left:4px solid #bf8700;padding:0.6em 1em}.muted{color:#57606a;font-size:0.9em}
table{border-collapse:collapse;font-size:0.85em;width:100%}th,td{border:1px solid #d0d7de;padding:0.3em 0.5em;text-align:right}
th{background:#f3f6fa}td:first-child,th:first-child{text-align:left}tr.recommended td{font-weight:bold;background:#ddf4ff}
.row{display:flex;flex-wrap:wrap;gap:1.5em}.row>div{flex:1 1 300px}.row.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr))}.charts>div{min-width:0}.big{font-size:1.3em}
figure{margin:0;flex:1 1 300px}figure img{width:100%;max-width:340px;border-radius:4px}figcaption{font-size:0.9em}
dl dt{font-weight:bold;margin-top:0.5em}
"""


def _esc(value: object) -> str:
    return html.escape(str(value))


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure_html(fig, *, first: bool, div_id: str) -> str:
    """One plotly figure as a <div>; plotly.js is inlined with the first figure only (never a CDN)."""
    return fig.to_html(full_html=False, include_plotlyjs=True if first else False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def _table_html(frame: pd.DataFrame, *, highlight_row: int | None = None) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    body = []
    for i, row in enumerate(frame.itertuples(index=False)):
        cls = ' class="recommended"' if i == highlight_row else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_esc(v)}</td>" for v in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def comparison_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Display frame of comparison rows (comparison_rows): one line per model, metrics as 'value (low–high)'."""
    shown = pd.DataFrame({"Model": rows["display_name"], "Threshold (chosen on validation)": rows["threshold"].map("{:.3f}".format)})
    for key, label in (("roc_auc", "ROC AUC"), ("recall", "Sensitivity"), ("specificity", "Specificity"),
                       ("precision", "PPV"), ("npv", "NPV"), ("accuracy", "Accuracy"), ("f1", "F1"), ("brier", "Brier")):
        shown[label] = [metrics.format_ci({"value": r[key], "ci_low": r[f"{key}_ci_low"], "ci_high": r[f"{key}_ci_high"]})
                        for _, r in rows.iterrows()]
    return shown


def build_report(
    models_dir: str | Path,
    data_root: str | Path,
    *,
    heatmaps: bool = True,
    model: str | None = None,
    split: str = "test",
    n_resamples: int = config.BOOTSTRAP_RESAMPLES,
    site: dict | None = None,
) -> str:
    """The whole results report as one self-contained HTML string (plotly.js inline, images as data URIs).

    `site` (core.site.SiteReport.to_dict(), e.g. the JSON of `python -m core.site validate --out`) adds a
    "Your site" section with every model's numbers on the site's own films.

    `model` overrides the recommended model (default: :func:`recommended_name`, chosen on validation); `split` is the split reported
    (thresholds and the model choice always come from validation); `heatmaps=False` skips TensorFlow.
    """
    started = time.perf_counter()
    ranking = rank_models(models_dir)
    if ranking.empty:
        raise ValueError(f"No usable trained model in {models_dir}; train one with `make models` before writing a report.")
    chosen = registry.get_model(model or recommended_name(ranking), models_dir)
    if not chosen.available:
        raise ValueError(f"Model {chosen.name} cannot be used: {chosen.reason}")
    split_name = SPLIT_NAMES.get(split, split.upper())

    rows = comparison_rows(models_dir, split=split, n_resamples=n_resamples)
    chosen_row = rows[rows["model"] == chosen.name].iloc[0].to_dict()
    predictions = registry.load_predictions(chosen)
    split_rows = predictions[predictions["split"] == split]
    freq = natural_frequencies(chosen_row, split=split, n_pneumonia=int((split_rows["label"] == 1).sum()),
                               n_normal=int((split_rows["label"] == 0).sum()))
    examples = _examples_for_report(chosen, predictions, data_root, split=split, heatmaps=heatmaps)
    images, patients, n_patients = dataset_counts(data_root)
    frames = curve_frames(models_dir, split=split)
    figures = curve_figures(frames, split=split, highlight=chosen.name)
    card_md = registry.load_card_markdown(chosen)

    parts: list[str] = []
    add = parts.append
    add(f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Pneumonia X-ray model report</title><style>{_CSS}</style></head><body>")
    add("<h1>Pneumonia detection from children's chest X-rays: results report</h1>")
    add(f"<p class='muted'>Generated {time.strftime('%Y-%m-%d %H:%M %Z')} from <code>{_esc(Path(models_dir).name or models_dir)}</code> "
        f"and <code>{_esc(Path(data_root).name or data_root)}</code>. Opens offline: everything is inside this file.</p>")
    add(f"<p class='note'><b>What this is, and is not.</b> {_esc(INTENDED_USE)}</p>")

    add("<h2>1. The data</h2>")
    add(f"<p>{int(images['total'].sum())} chest X-rays of {n_patients} children (distinct patient ids), from {_esc(DATA_CENTRE)}. "
        "The validation split is carved from the training images and grouped by child, so no child is in two splits.</p>")
    add(_figure_html(dataset_figure(images, patients), first=True, div_id="dataset-chart"))
    table = images.rename(index=SPLIT_NAMES).reset_index().rename(columns={"split": "Split"})
    table.columns = [str(c).title() for c in table.columns]
    table["Children"] = patients["total"].to_numpy()
    add(_table_html(table))

    add("<h2>2. The recommended model</h2>")
    add(f"<p class='big'><b>{_esc(chosen.display_name)}</b> (<code>{_esc(chosen.name)}</code>)</p>")
    how = "It was chosen by you." if model else recommendation_reason(ranking, chosen.name).replace("**", "")
    add(f"<p>{_esc(how)} The test split played no part in the choice. It flags an X-ray when its score is at least "
        f"<b>{chosen.threshold:.3f}</b>, a threshold chosen on the validation split ({_esc(chosen.threshold_rule)}).</p>")

    add(f"<h2>3. What that means for 100 children ({split_name} split)</h2>")
    sick, healthy = freq.sentences()
    add("<div class='row'>")
    add(f"<div><p class='big'>{_esc(sick)}</p>{icon_array_html(freq.caught, colour='#1a7f37', label='green = pneumonia flagged; grey = missed')}</div>")
    add(f"<div><p class='big'>{_esc(healthy)}</p>{icon_array_html(freq.false_alarms, colour='#d1242f', label='red = false alarm; grey = correctly not flagged')}</div>")
    add("</div>")
    add(f"<p>{_esc(PUBLISHED_BASELINE)}</p>")
    add(f"<p class='muted'>Counts are per 100 children in each group, from the {split_name} split; intervals are 95% bootstrap "
        f"confidence intervals ({n_resamples} resamples over the test images). How many flagged children really have pneumonia "
        "(PPV) depends on how common pneumonia is where the tool is used.</p>")

    add(f"<h2>4. All models compared ({split_name} split, 95% CI)</h2>")
    highlight = int(np.flatnonzero(rows["model"].to_numpy() == chosen.name)[0])
    add(_table_html(comparison_table(rows), highlight_row=highlight))
    add(f"<p class='muted'>Each model at its own threshold chosen on the validation split; values on the {split_name} split "
        f"with 95% stratified bootstrap confidence intervals. Validation ROC AUC (used for the choice): "
        + ", ".join(f"{_esc(r.display_name)} {r.val_roc_auc:.3f}" for r in ranking.itertuples()) + ".</p>")
    add("<div class='row charts'>")
    for key, fig in figures.items():
        add(f"<div>{_figure_html(fig, first=False, div_id=f'{key}-chart')}</div>")
    add("</div>")
    add("<p class='muted'>× marks each model's operating point. Calibration: on the diagonal, a predicted 0.8 means pneumonia "
        "80% of the time.</p>")

    add(f"<h2>5. Example X-rays from the {split_name} split</h2>")
    if not examples:
        add("<p>No example could be shown (the images were not found in the dataset folder).</p>")
    else:
        kind_note = "with the Grad-CAM heatmap of the recommended model" if any(e.heatmap for e in examples) else "without heatmaps"
        notes = "".join(f" <span class='muted'>Shown without heatmap: {_esc(n)}</span>" for n in sorted({e.note for e in examples if e.note}))
        add(f"<p>One typical case of each outcome at the model's threshold, {kind_note}.{notes}</p><div class='row'>")
        for ex in examples:
            truth = config.CLASS_NAMES[ex.label]
            extra = ""
            add(f"<figure><img alt='{_esc(ex.kind)}: {_esc(ex.path)}' src='{_data_uri(ex.png)}'>"
                f"<figcaption><b>{_esc(ex.kind.capitalize())}</b>: {_esc(ex.caption)} Truth {truth}, score {ex.score:.3f} "
                f"(threshold {chosen.threshold:.3f}). <span class='muted'>{_esc(ex.path)}</span>{extra}</figcaption></figure>")
        add("</div>")

    if site:
        add(site_section_html(site))

    add("<h2>6. Limitations</h2><ul>")
    for item in (*LIMITATIONS, *[str(x) for x in chosen.card.get("limitations", []) if str(x) not in LIMITATIONS]):
        add(f"<li>{_esc(item)}</li>")
    add("</ul>")

    add("<h2>7. Glossary</h2><dl>" + "".join(f"<dt>{_esc(t)}</dt><dd>{_esc(d)}</dd>" for t, d in GLOSSARY) + "</dl>")

    add("<h2>8. Data provenance and licence</h2>")
    add(f"<p>{_esc(DATA_CITATION)} doi:<a href='{DATA_DOI_URL}'>{DATA_DOI}</a>. Licence: "
        f"<a href='{DATA_LICENCE_URL}'>{DATA_LICENCE}</a>. Images resized to 224×224 for this project; the Kaggle "
        "train/test folders are kept, the 16-image Kaggle validation folder is folded into training.</p>")
    if card_md:
        add(f"<details><summary>Model card of {_esc(chosen.display_name)}</summary><pre style='white-space:pre-wrap'>{_esc(card_md)}</pre></details>")
    add(f"<p class='muted'>Report built in {time.perf_counter() - started:.1f} s by <code>python -m core.report</code>.</p>")
    add("</body></html>")
    return "\n".join(parts)


def _site_cell(entry: dict | None) -> str:
    """'0.930 (0.910–0.950), width 0.040' from a site metric entry."""
    if not entry:
        return "—"
    width = entry.get("ci_width")
    return metrics.format_ci(entry) + (f", width {width:.3f}" if isinstance(width, (int, float)) else "")


def site_section_html(site: dict) -> str:
    """The "Your site" section: every model at its own threshold and at the site operating point, on the site's films."""
    parts = [f"<h2 id='site'>Your site: {_esc(site.get('site', '?'))}</h2>",
             f"<p>{int(site.get('films', 0))} labelled films of the site scored (labels from {_esc(site.get('labels_from', '?'))}; "
             f"patients from {_esc(site.get('patients_from', '?'))}; set fingerprint <code>{_esc(site.get('fingerprint', '?'))}</code>; "
             f"{len(site.get('problems') or [])} file(s) not used). 95% CIs resample patients; none of these films played any "
             "part in training, thresholds or model choice, except where a row says the model was adapted on them.</p>"]
    rows, op_rows, notes = [], [], []
    for r in site.get("results") or []:
        m = r.get("metrics") or {}
        counts = r.get("counts") or {}
        ood_counts = r.get("ood") or {}
        rows.append({"Model": r.get("display_name", r.get("model")), "Films (N / P)": f"{counts.get('NORMAL', 0)} / {counts.get('PNEUMONIA', 0)}",
                     "Patients": counts.get("patients", 0), "Threshold (card)": f"{r.get('threshold', math.nan):.3f}",
                     **({"ROC AUC": _site_cell(m.get("roc_auc")), "Sensitivity": _site_cell(m.get("recall")),
                         "Specificity": _site_cell(m.get("specificity"))} if m else
                        {"ROC AUC": "not reported", "Sensitivity": "not reported", "Specificity": "not reported"}),
                     "OOD flagged": f"{ood_counts.get('flagged', 0)} / {ood_counts.get('checked', 0)}" if ood_counts.get("guard") else "no guard",
                     "Score drift (KS)": f"{(r.get('drift') or {}).get('ks_statistic') or math.nan:.2f}"})
        point = r.get("site_operating_point") or {}
        if point.get("threshold") is not None:
            pm = point.get("metrics") or {}
            op_rows.append({"Model": r.get("display_name", r.get("model")), "Site threshold": f"{point['threshold']:.3f}",
                            "Rule": point.get("rule_text", ""), "Evaluation films": (point.get("evaluation") or {}).get("films"),
                            "Sensitivity": _site_cell(pm.get("recall")), "Specificity": _site_cell(pm.get("specificity")),
                            "PPV": _site_cell(pm.get("precision"))})
        for text in (r.get("refusal"), point.get("refusal"), r.get("adaptation")):
            if text:
                notes.append(f"{r.get('display_name', r.get('model'))}: {text}")
    parts.append("<p>Each model at its own threshold, chosen on the training hospital's VALIDATION split:</p>")
    parts.append(_table_html(pd.DataFrame(rows)))
    if op_rows:
        parts.append("<p>The <b>site operating point</b>: a threshold chosen by the card's own rule on one half of the site's "
                     "films (calibration half, grouped by patient) and reported on the other half (evaluation half):</p>")
        parts.append(_table_html(pd.DataFrame(op_rows)))
    if notes:
        parts.append("<ul>" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>")
    return "\n".join(parts)


def write_report(out: str | Path, models_dir: str | Path, data_root: str | Path, **options) -> Path:
    """build_report(...) written to `out` (UTF-8, written to a temporary file then renamed); returns the path."""
    out = Path(out)
    text = build_report(models_dir, data_root, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the report; exit 0 on success, 1 when no report could be built, 2 on bad arguments."""
    parser = argparse.ArgumentParser(prog="python -m core.report", description="Write the self-contained HTML results report.")
    parser.add_argument("--models", default=str(config.models_dir()), help="folder of trained models (default: %(default)s)")
    parser.add_argument("--data", default=str(config.data_root()), help="dataset folder (default: %(default)s)")
    parser.add_argument("--out", default="report.html", help="HTML file to write (default: %(default)s)")
    parser.add_argument("--model", default=None, help="report this model instead of the recommended one (best validation ROC AUC)")
    parser.add_argument("--no-heatmaps", action="store_true", help="skip the Grad-CAM heatmaps (no TensorFlow, faster)")
    parser.add_argument("--resamples", type=int, default=config.BOOTSTRAP_RESAMPLES, help="bootstrap resamples for the CIs")
    parser.add_argument("--site", default=None, help="site results (JSON from python -m core.site validate --out) to add as a section")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config.quiet_tensorflow()
    try:
        site = json.loads(Path(args.site).read_text(encoding="utf-8")) if args.site else None
        path = write_report(args.out, args.models, args.data, heatmaps=not args.no_heatmaps, model=args.model,
                            n_resamples=args.resamples, site=site)
    except (ValueError, OSError) as exc:  # OSError: the --site file cannot be read
        logger.error("%s", exc)
        return 1
    logger.info("Wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return 0

