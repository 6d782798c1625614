"""The batch CLI (python -m core.predict, a real subprocess) on the whole corpus plus good files: every good file is
scored with the model's own probability, every bad one gets a row with a reason, and nothing crashes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import predict
from core.guard import scope
from core.imaging import InvalidImageError, decode_xray
from tests.reliability.corpus import GOOD_NORMAL, GOOD_PNEUMONIA
from tests.reliability.test_decode_corpus import CASE_NAMES

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_batch_cli_scores_the_good_files_and_explains_each_bad_one(corpus, corpus_dir: Path, guarded_models_root: Path,
                                                                   data_root: Path, tmp_path: Path) -> None:
    model_dir = guarded_models_root / "tiny_cnn"
    good = [data_root / GOOD_NORMAL, data_root / GOOD_PNEUMONIA]
    inputs = [good[0], *(corpus_dir / name for name in CASE_NAMES), good[1]]
    out = tmp_path / "results.csv"
    completed = subprocess.run(
        [sys.executable, "-m", "core.predict", "--model", str(model_dir), *map(str, inputs), "--out", str(out), "--batch-size", "4"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr, completed.stderr[-3000:]
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(row["file"]).name for row in rows] == [path.name for path in inputs]  # one row per input, in order

    scorer = predict.load_scorer(model_dir)
    for row, path in zip(rows, inputs):
        try:
            expected = scorer.probability(decode_xray(path))
        except InvalidImageError as refusal:
            assert row["status"] == "error" and row["probability"] == "" and row["decision"] == "", row
            assert row["error"] == str(refusal) and path.name in row["error"], row
        else:
            assert row["status"] == "ok" and row["error"] == "", row
            if row["decision"] == scope.WITHHELD:  # the guard: not a paediatric chest film, so no score and no decision
                assert row["probability"] == "" and set(row["guard_reasons"].split("; ")) & set(scope.OUT_OF_SCOPE_REASONS), row
                continue
            assert float(row["probability"]) == pytest.approx(expected, abs=1e-5), path.name
            assert row["decision"] == predict.decision_label(expected, scorer.threshold)
    refused = sum(row["status"] == "error" for row in rows)
    assert refused == sum(corpus[name].expect in ("refuse", "huge") for name in CASE_NAMES)
    assert f"{refused} could not be read" in completed.stderr
