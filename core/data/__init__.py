"""Dataset indexes (Kaggle and NIH layouts), patient-grouped splits, duplicates, leakage and fingerprints.

The index is a DataFrame with one row per image and the columns of docs/ARCHITECTURE.md:
`path, relpath, label, label_name, split, patient, subtype, width, height`, plus `folder_split`
(the split folder or official list the image came from, kept when the validation split is carved).

Decisions:
- Kaggle's official `val/` folder (16 images) is too small to validate on. It is indexed with
  `split="val"` / `folder_split="val"` and `with_validation_split` folds it into the training pool before it
  carves the patient-grouped validation split, so the images are used and no patient straddles the border.
- The validation split groups images by patient and stratifies patients by label (a patient counts as
  positive if any image is), with scikit-learn's `train_test_split` over the unique patients. Passing the
  result of `find_duplicates` merges patients that share an identical image, so a duplicate group always
  lands on one side. On the shipped set every train duplicate group already belongs to one patient.
- The official test split is never changed. Patient ids that also occur in train (the Kaggle test files
  reuse the same numbering) are reported by `leakage_report`, together with pixel-identical images that
  cross splits, so the reader can judge them."""
# The work lives in the private modules below; these are the names to import from here.
from core.data._duplicates import (  # noqa: F401
    LeakageReport,
    content_hashes,
    find_duplicates,
    leakage_report,
    patient_leakage,
    split_counts,
)
from core.data._index import (  # noqa: F401
    IMAGE_EXTENSIONS,
    INDEX_COLUMNS,
    NIH_LABELS_FILE,
    NIH_POSITIVE_FINDING,
    NIH_TEST_FRACTION,
    NIH_TEST_LIST,
    NIH_TRAIN_LIST,
    SPLITS,
    SUBTYPES,
    Layout,
    _digest,
    dataset_fingerprint,
    detect_layout,
    index_dataset,
    index_kaggle,
    index_nih,
    patient_from_filename,
    subtype_from_filename,
)
from core.data._splits import (  # noqa: F401
    load_index,
    with_validation_split,
)
