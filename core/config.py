"""Paths, constants and defaults shared by the library, the pages and train.py (one place)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

CLASS_NAMES = ("NORMAL", "PNEUMONIA")
POSITIVE_LABEL = 1

VALIDATION_FRACTION = 0.15
SPLIT_SEED = 42

SAMPLES_DIR = PROJECT_ROOT / "data" / "samples"
AUDIT_DIR = PROJECT_ROOT / "data" / "audit"  # dataset audits (core.audit), one JSON per dataset fingerprint
CACHE_DIR = PROJECT_ROOT / ".cache"
ASSETS_DIR = PROJECT_ROOT / "core" / "assets"  # fitted checks shipped with the code (chest-film model, inversion)

# Decoding limits (pixels per side / total pixels).
MIN_IMAGE_SIDE = 64
MAX_IMAGE_SIDE = 16384
MAX_IMAGE_PIXELS = 16384 * 16384 // 2

# Uploads larger than this are refused by Streamlit (see .streamlit/config.toml, server.maxUploadSize).
MAX_UPLOAD_MB = 50

CONFIDENCE_LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 1000


def data_root() -> Path:
    """The dataset folder: $PNEUMONIA_DATA if set, else the shipped data/chest_xray."""
    return Path(os.environ.get("PNEUMONIA_DATA", PROJECT_ROOT / "data" / "chest_xray")).expanduser()


def models_dir() -> Path:
    """The folder holding trained models: $PNEUMONIA_MODELS if set, else models/."""
    return Path(os.environ.get("PNEUMONIA_MODELS", PROJECT_ROOT / "models")).expanduser()


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up logging (INFO/WARNING) before it is imported.

    Only the native log level is changed; Python warnings stay visible.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
