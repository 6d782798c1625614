"""Your site: validate the models on a hospital's own labelled films, and adapt them to unlabelled ones.

    python -m core.site validate SITE_FOLDER_OR_ZIP [--labels labels.csv] [--models NAME ...] [--out site.json]
    python -m core.site adapt UNLABELLED_FOLDER_OR_ZIP --model NAME --site-name NAME [--method adabn] [--method prior]

Labelled films come as a folder or a ZIP in the Kaggle layout (``NORMAL/`` and ``PNEUMONIA/`` folders at any
depth) or as files plus a CSV with columns ``file,label[,patient]`` (label 0/1 or NORMAL/PNEUMONIA). Every format
`core.imaging.decode_xray` reads is accepted. Uploaded bytes stay in memory; DICOM tags are never read into the
results (only the pixels and non-identifying metadata are decoded). A set with unreadable members scores every
good film and lists every bad one with its reason.

Validation (per model, at the model's own card threshold): metrics with 95% CIs from a bootstrap over patients
(patients from Kaggle file names ``person123_...``/``IM-0115-...`` or a CSV ``patient`` column), ROC/PR curves,
calibration, the out-of-distribution guard's verdict counts, and the site's scores beside the model's validation
scores (drift). A *site operating point* is chosen on one patient-grouped half of the films (calibration) by the
card's own rule and reported on the other half (evaluation). No number is reported when a class has fewer than
`MIN_FILMS_PER_CLASS` films.

Adaptation (no labels used): AdaBN re-estimates the BatchNorm moving statistics on the site's films; prior-shift
correction (Saerens, Latinne & Decaestecker 2002, EM) re-estimates the site's prevalence and shifts the output
layer's bias accordingly. The result is a new model folder ``models/<name>-adapted-<site>/`` written atomically,
whose card says what it was adapted on; the source model is never changed."""
# The work lives in the private modules below; these are the names to import from here.
from core.site._sources import (  # noqa: F401
    MIN_FILMS_PER_CLASS,
    MAX_MEMBER_BYTES,
    MAX_TOTAL_BYTES,
    SPLIT_SEED,
    ADAPTATION_METHODS,
    BALANCED_TRAINING,
    SiteDataError,
    SiteFilm,
    FilmProblem,
    SiteSet,
    slug,
    read_site,
)
from core.site._validation import (  # noqa: F401
    SiteScores,
    films_fingerprint,
    score_site,
    refusal,
    patient_halves,
    card_rule,
    adaptation_note,
    validate_model,
    site_operating_point,
    SiteReport,
    summary_frame,
    json_bytes,
    validate_site,
)
from core.site._adaptation import (  # noqa: F401
    batchnorm_layers,
    reestimate_batchnorm,
    source_prior,
    estimate_prior_em,
    shift_output_prior,
    adapt_model,
)
from core.site._cli import (  # noqa: F401
    format_result,
    main,
)
