"""Scoring decoded chest X-rays with a trained model, and the batch-scoring command line.

    python -m core.predict --model models/NAME FILE_OR_FOLDER... --out results.csv [--heatmaps DIR] [--threshold T]

Every readable file is scored; every unreadable one gets a row with its reason. Folders are streamed in
batches, so a folder of any size never sits in memory at once. DICOM patient tags are never written."""
# The work lives in the private modules below; these are the names to import from here.
from core.imaging.files import IMAGE_SUFFIXES, iter_image_files  # noqa: F401
from core.models.scorer import (  # noqa: F401
    EXAMPLE_MODEL,
    Scorer,
    decision_label,
    load_scorer,
    operating_threshold,
    plain_sentence,
    predict_probability,
    prepare_input,
    scorer_from_model,
)
from core.predict._batch import (  # noqa: F401
    CSV_COLUMNS,
    DEFAULT_BATCH_SIZE,
    score_files,
)
from core.predict._cli import (  # noqa: F401
    main,
)
from core.predict._uploads import (  # noqa: F401
    GalleryItem,
    ImageResult,
    gallery,
    result_json,
    score_uploads,
    unique_names,
)
