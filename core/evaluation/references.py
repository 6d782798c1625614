"""Published results to read beside ours: numbers as their authors reported them, never recomputed here.

Each entry says which films it was measured on, because only Kermany et al. 2018 and one reference project used
the same 624 official test films as this project; the others used their own re-splits or another dataset. These
rows are for reading, never for ranking: nothing here is compared statistically or highlighted as best.
Metric keys follow core.evaluation.metrics (recall = sensitivity); a metric a source did not report is absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

PUBLISHED_MARK = "published, not recomputed here"
"""The words every published row carries on screen."""


@dataclass(frozen=True)
class PublishedResult:
    """One model's reported test numbers and where they come from."""

    source: str  # short name, e.g. "Kermany et al. 2018"
    model: str  # what was trained, in the source's words
    citation: str  # where to read it
    evaluated_on: str  # which films the numbers are on
    same_test_films: bool  # True only for the 624 official Kaggle test films used here
    metrics: dict[str, float] = field(default_factory=dict)  # keys of core.evaluation.metrics.METRIC_KEYS
    note: str = ""  # what else was reported, and caveats

    @property
    def label(self) -> str:
        """Row label: 'Kermany et al. 2018 · Inception V3 ... (published, not recomputed here)'."""
        return f"{self.source} · {self.model} ({PUBLISHED_MARK})"


OFFICIAL_TEST = "official Kaggle test split, 624 films (234 NORMAL, 390 PNEUMONIA): the same films as here"

_PROJECT_001 = 'Reference project "X-ray Pneumonia Image Classification with Deep Learning" (public notebook write-up)'
_NOTE_001 = (
    "Accuracy from the project's own 'Test loss & accuracy' lines ({exact}/624). Its summary table also lists "
    "precision {precision}, recall {recall}, F1 {f1} and 'AUC' {auc}; they are not placed in our columns because "
    "the 'AUC' equals the recall in every row, which points to an AUC computed from 0/1 predictions and to recall "
    "and precision averaged over both classes (not sensitivity). One of its notebooks used the test films as "
    "validation data during training, so these test numbers may be optimistic."
)

PUBLISHED_RESULTS: tuple[PublishedResult, ...] = (
    PublishedResult(
        source="Kermany et al. 2018",
        model="Inception V3, ImageNet transfer learning",
        citation=(
            "Kermany DS, Goldbaum M, Cai W, et al. Identifying medical diagnoses and treatable diseases by "
            "image-based deep learning. Cell 2018;172(5):1122-1131.e9. doi:10.1016/j.cell.2018.02.010"
        ),
        evaluated_on=OFFICIAL_TEST,
        same_test_films=True,
        metrics={"accuracy": 0.928, "recall": 0.932, "specificity": 0.901, "roc_auc": 0.968},
        note="The dataset's authors; the test films are the ones this project's TEST split uses.",
    ),
    PublishedResult(
        source="Reference project 001",
        model="Multilayer perceptron",
        citation=_PROJECT_001,
        evaluated_on=OFFICIAL_TEST,
        same_test_films=True,
        metrics={"accuracy": 462 / 624},
        note=_NOTE_001.format(exact=462, precision=0.83, recall=0.66, f1=0.66, auc=0.66),
    ),
    PublishedResult(
        source="Reference project 001",
        model="Convolutional neural network",
        citation=_PROJECT_001,
        evaluated_on=OFFICIAL_TEST,
        same_test_films=True,
        metrics={"accuracy": 551 / 624},
        note=_NOTE_001.format(exact=551, precision=0.89, recall=0.86, f1=0.87, auc=0.86),
    ),
    PublishedResult(
        source="Reference project 001",
        model="VGG16 transfer learning",
        citation=_PROJECT_001,
        evaluated_on=OFFICIAL_TEST,
        same_test_films=True,
        metrics={"accuracy": 571 / 624},
        note=_NOTE_001.format(exact=571, precision=0.92, recall=0.90, f1=0.91, auc=0.90),
    ),
    PublishedResult(
        source="Reference project 002",
        model="Custom CNN, 64x64 grey",
        citation='Reference project "Pneumonia-Detection-using-Deep-Learning" (public README)',
        evaluated_on=(
            "its own 15% test split re-drawn from the whole Kaggle set (70/15/15): other films than here; "
            "grouping by patient not stated"
        ),
        same_test_films=False,
        metrics={"roc_auc": 0.9711, "recall": 0.9703},
        note="Also reports 5.71% false positives and 2.17% false negatives (denominator not stated).",
    ),
    PublishedResult(
        source="Reference project 004",
        model="Xception, ImageNet, all layers trained",
        citation='Reference project "X-ray_pneumonia_classification" (katehee/X-ray_pneumonia_classification, README)',
        evaluated_on="Kaggle paediatric set; which split is not stated",
        same_test_films=False,
        metrics={"accuracy": 0.95},
        note="Reported in words only: 'able to detect pneumonia with 95% in accuracy'.",
    ),
    PublishedResult(
        source="Reference project 000",
        model="VGG16 fine-tuned",
        citation='Reference project "Pneumonia Detection from Chest X-Ray Images" (public notebook write-up)',
        evaluated_on=(
            "NIH ChestX-ray14 (another dataset: adults): its own test set of 251 pneumonia and 1,002 "
            "under-sampled other films"
        ),
        same_test_films=False,
        metrics={"accuracy": 0.77, "precision": 0.41, "recall": 0.55, "f1": 0.47, "roc_auc": 0.58},
        note="At its threshold 0.58.",
    ),
)
"""Every published row, Kermany et al. first, then the reference projects on the same films, then the others."""

WITHOUT_NUMBERS: tuple[str, ...] = (
    'Reference project 003 ("Pneumonia Detection from x-ray images", VGG16 fine-tuned at 224 px) reports no test numbers.',
)
"""Reference projects that report nothing to put in a row."""


def published_results(*, same_test_films_only: bool = False) -> list[PublishedResult]:
    """The published rows (optionally only those measured on the same 624 official test films)."""
    return [r for r in PUBLISHED_RESULTS if r.same_test_films or not same_test_films_only]


def published_frame(metric_keys: tuple[str, ...], *, same_test_films_only: bool = False) -> pd.DataFrame:
    """One row per published result: label, source, model, evaluated_on, same_test_films, citation, note and one
    column per key of `metric_keys` (NaN where the source did not report it)."""
    rows = []
    for result in published_results(same_test_films_only=same_test_films_only):
        row = {
            "label": result.label,
            "source": result.source,
            "model": result.model,
            "evaluated_on": result.evaluated_on,
            "same_test_films": result.same_test_films,
            "citation": result.citation,
            "note": result.note,
        }
        row.update({key: result.metrics.get(key, float("nan")) for key in metric_keys})
        rows.append(row)
    return pd.DataFrame(rows)
