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
  not the most extreme ones, and the same ones on every run."""
# The work lives in the private modules below; these are the names to import from here.
from core.report._cli import (  # noqa: F401
    main,
)
from core.report._figures import (  # noqa: F401
    comparison_rows,
    curve_figures,
    curve_frames,
    dataset_counts,
    dataset_figure,
)
from core.report._changes import (  # noqa: F401
    RecommendationChange,
    recommendation_change,
    recommendation_history,
)
from core.report._frequencies import (  # noqa: F401
    NaturalFrequencies,
    dataset_bars_html,
    icon_array_html,
    natural_frequencies,
)
from core.report._html import (  # noqa: F401
    build_report,
    comparison_table,
    site_section_html,
    write_report,
)
from core.report._picking import (  # noqa: F401
    EXAMPLE_IMAGE_SIDE,
    EXAMPLE_KINDS,
    ExampleImage,
    example_images,
    pick_examples,
)
from core.report._recommendation import (  # noqa: F401
    RECOMMENDATION_TIE,
    rank_models,
    RECOMMENDED_MARK,
    ranking_display,
    recommend_model,
    recommendation_reason,
    recommended_label,
    recommended_name,
    validation_robustness,
    warm_landing_page,
)
from core.report._texts import (  # noqa: F401
    DATA_CENTRE,
    DATA_CITATION,
    DATA_DOI,
    DATA_DOI_URL,
    DATA_LICENCE,
    DATA_LICENCE_URL,
    DATA_TITLE,
    GLOSSARY,
    INTENDED_USE,
    LIMITATIONS,
    PUBLISHED_BASELINE,
    SPLIT_NAMES,
)
