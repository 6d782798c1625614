"""What the report and the Overview say about the data, the intended use and the limits, in one place."""
from __future__ import annotations

import logging

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
    "(93 of 100 X-rays with pneumonia flagged), specificity 90.1% (10 of 100 without wrongly flagged), ROC AUC 0.968."
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
    "Bacterial and viral pneumonia are one class here; other findings (effusion, tuberculosis, devices) are not "
    "recognised and may be called either way.",
    "Not a medical device: not cleared or approved for clinical use.",
)
"""The report's and the Overview's limitations, one point each (a model card's own list says the same in its words)."""

GLOSSARY: tuple[tuple[str, str], ...] = (
    ("Sensitivity (recall)", "Of the children who have pneumonia, the share the tool flags. High sensitivity = few missed cases."),
    ("Specificity", "Of the children who do not have pneumonia, the share the tool correctly leaves unflagged. High specificity = few false alarms."),
    ("PPV (precision)", "Of the X-rays the tool flags, the share that really show pneumonia. Depends on how common pneumonia is where the tool is used."),
    ("NPV", "Of the X-rays the tool does not flag, the share that really are free of pneumonia. Also depends on how common pneumonia is."),
    ("ROC AUC", "The chance that the tool scores a random child with pneumonia higher than a random child without: 0.5 is a coin toss, 1.0 is perfect. It does not depend on the threshold."),
    ("Score", "The model's output for an X-ray, between 0 and 1: higher means more signs of pneumonia. It is not the "
              "chance that the child has pneumonia (the calibration plot on the Model comparison page shows the scores "
              "are overconfident); what counts is which side of the threshold it falls on."),
    ("Threshold", "The score above which an X-ray is flagged. Lower thresholds catch more cases but raise more false alarms. Ours is chosen on validation images, never on the test images."),
    ("Grad-CAM", "A heatmap of the regions of the image that pushed the model's score towards pneumonia (red = strongest). It explains the model, not the disease."),
    ("95% confidence interval", "The range the true value plausibly lies in, given how many test images there are (bootstrap over the test images)."),
)

SPLIT_NAMES = {"train": "TRAIN", "val": "VALIDATION", "test": "TEST"}
_COLOURS = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7d8c", "#6e7781")
