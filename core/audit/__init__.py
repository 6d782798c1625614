"""Audit of what a model relies on (issue 14, item 1), and why the official test films look different.

Two levels, each a command line:

    python -m core.audit data  [--data-root DIR] [--force]             # dataset: trivial baselines + domain classifier
    python -m core.audit model models/NAME [--write-card] [--splits val test]   # one model: perturbations + Grad-CAM mass

**Dataset level** (`dataset_audit`, cached as JSON in `config.AUDIT_DIR`, keyed by the dataset fingerprint):
- *Trivial baselines*: a logistic regression on the film shrunk to 4x4, 8x8 and 16x16 grey pixels (area averaging),
  fitted on the train split, ROC AUC on validation and on test; also after histogram equalisation, on the central
  half only and on the edges only (`THUMBNAIL_VARIANTS`). A high validation AUC from 16 numbers says the
  task inside the training distribution can be solved by coarse layout and brightness alone.
- *Domain classifier*: gradient boosting on simple per-film statistics (`film_statistics`) trained to tell
  validation films from test films (all films, and NORMAL films only), its cross-validated ROC AUC (folds grouped
  by patient) and its top statistics by permutation importance, each with its medians per split and class and
  whether the test normals move towards what pneumonia looks like in validation.

**Model level** (`model_audit`): a balanced, seeded sample of validation films (optionally test films, labelled as
such) at the model's input size as grey uint8; every perturbation of `core.imaging.perturbations.PERTURBATIONS` is applied
and the films rescored: mean |change in P(pneumonia)|, ROC AUC, sensitivity and specificity at the card threshold,
and a pass/fail of the robustness goal (sensitivity and specificity move by <= 0.05 on validation). Grad-CAM
(`core.explain.gradcam_for`) mass is split over image regions found by `image_regions` (documented there)."""
# The work lives in the private modules below; these are the names to import from here.
from core.audit._films import (  # noqa: F401
    AUDIT_VERSION,
    THUMBNAIL_SIZES,
    THUMBNAIL_VARIANTS,
    STATISTICS_SIDE,
    PER_CLASS,
    SAMPLE_SEED,
    BATCH_SIZE,
    DOMAIN_FOLDS,
    TOP_FEATURES,
    CORNER,
    BORDER,
    LOWER,
    BORDER_RELIANT_MASS,
    REGIONS,
    REGION_WORDS,
    to_grey_uint8,
    to_model_input,
    load_films,
    balanced_sample,
    threshold_metrics,
    perturbation_effect,
)
from core.audit._regions import (  # noqa: F401
    lung_fields,
    image_regions,
    region_mass,
    gradcam_mass,
    STATISTIC_WORDS,
    film_statistics,
    statistic_words,
)
from core.audit._dataset import (  # noqa: F401
    thumbnail_variant,
    thumbnail_baselines,
    domain_classifier,
    statistic_profile,
    score_correlations,
    audit_path,
    write_json_atomic,
    compute_dataset_audit,
    dataset_audit,
    load_dataset_audit,
)
from core.audit._model import (  # noqa: F401
    score_films,
    perturbation_table,
    model_gradcam_mass,
    edge_reliance,
    model_audit,
)
from core.audit._cards import (  # noqa: F401
    AUDIT_HEADING,
    audit_markdown,
    _replace_section,
    write_card_audit,
    robustness_summary,
    plain_findings,
    gradcam_verdict,
    shown_card_markdown,
)
from core.audit._cli import (  # noqa: F401
    main,
)
