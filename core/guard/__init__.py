"""Out-of-distribution guard: does an upload look like the chest X-rays a model was validated on?

Three checks, each calibrated on the model's VALIDATION images (the `val` rows of its predictions.csv):
1. colour: the mean HSV saturation of the raw file (X-rays are grey; a colour photo is not);
2. appearance: Mahalanobis distance of a few intensity statistics (brightness, contrast, dark/bright
   fractions, edge density) to those of the validation images;
3. features: Mahalanobis distance of the model's penultimate-layer embedding (PCA to at most 32 dimensions,
   Ledoit-Wolf covariance) plus the PCA reconstruction residual.
Thresholds of 2 and 3 are the `quantile` (default 99th percentile) of out-of-fold validation distances
(5-fold cross-fitting, so the threshold is not fitted on the same images it is read from); the final
model is then fitted on all validation images. The calibration is stored as models/<name>/ood.npz by

    python -m core.guard models/NAME [--data-root data/chest_xray]

`assess()` is the whole guard a user sees. It adds model-independent checks that run for every model, with or
without ood.npz: a negative (inverted) film (core.imaging.inversion), a "paediatric chest film" one-class check fitted on
the TRAINING films of the shipped dataset (gradient-orientation histograms and a standardised thumbnail, PCA +
Ledoit-Wolf Mahalanobis and residual distances combined into one score; core/assets/chest_film.npz, rebuilt by
`python -m core.guard fit-chest-film`), an image smaller than the model input, and what the decoder had to do
(DecodedXray notes: bit depth rescaled, encoding inferred, ...). Its detection rate on out-of-distribution sets
and its false-alarm rate on validation films are measured per model and written into the model card by

    python -m core.guard evaluate models/NAME [models/OTHER ...]"""
# The work lives in the private modules below; these are the names to import from here.
from core.guard._features import (  # noqa: F401
    OOD_FILE,
    DEFAULT_QUANTILE,
    MAX_COMPONENTS,
    FOLDS,
    SATURATION_LIMIT,
    STAT_SIZE,
    STATISTIC_NAMES,
    colour_saturation,
    image_statistics,
    embedding_function,
    embedding_and_probability_function,
    OodCalibration,
    OodResult,
    calibrate,
    check,
    check_many,
    model_fingerprint,
    calibration_path,
    load_calibration,
    validation_files,
    calibrate_model,
)
from core.guard._chest_film import (  # noqa: F401
    CHEST_FILM_ASSET,
    CHEST_FILM_SIDE,
    CHEST_FILM_CELL,
    CHEST_FILM_BINS,
    CHEST_FILM_COMPONENTS,
    CHEST_FILM_QUANTILE,
    orientation_histograms,
    chest_film_features,
    ChestFilmModel,
    fit_chest_film,
    load_chest_film,
    fit_chest_film_asset,
)
from core.guard._verdict import (  # noqa: F401
    VERDICT_PASSED,
    VERDICT_NOTES,
    VERDICT_PARTIAL,
    VERDICT_WARNING,
    INVERTED_SENTENCE,
    note_codes,
    GuardVerdict,
    GUARD_COLUMNS,
    looks_inverted,
    assess,
    assess_many,
)
from core.guard._measure import (  # noqa: F401
    GUARD_MD_END,
    GUARD_MD_START,
    FilmSet,
    out_of_distribution_sets,
    validation_sets,
    measure,
    evaluate_guard,
    guard_markdown,
    write_guard_card,
    guard_table,
)
from core.guard._cli import (  # noqa: F401
    main,
)
