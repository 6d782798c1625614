"""Fixtures shared by the reliability and privacy tests: a models folder with the tiny real-data CNN and its OOD guard."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def guarded_models_root(tmp_path_factory: pytest.TempPathFactory, tiny_cnn_dir: Path, data_root: Path) -> Path:
    """A models folder holding a copy of the tiny CNN plus its out-of-distribution calibration (ood.npz, from val)."""
    from core import guard as ood

    root = tmp_path_factory.mktemp("guarded_models")
    folder = root / tiny_cnn_dir.name
    shutil.copytree(tiny_cnn_dir, folder)
    ood.calibrate_model(folder, data_root)
    return root
