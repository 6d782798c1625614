"""Fixtures of the reliability tests: the generated bad-input corpus (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.corpus import Case, build_corpus, write_corpus
from tests.reliability.fixtures import guarded_models_root  # noqa: F401  (re-exported fixture)


@pytest.fixture(scope="session")
def corpus(data_root: Path, samples_dir: Path) -> dict[str, Case]:
    """{filename: Case} of every generated bad or awkward file."""
    return {case.filename: case for case in build_corpus(data_root, samples_dir)}


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory, corpus: dict[str, Case]) -> Path:
    """The corpus written to a folder (for the batch CLI)."""
    folder = tmp_path_factory.mktemp("corpus")
    write_corpus(list(corpus.values()), folder)
    return folder
