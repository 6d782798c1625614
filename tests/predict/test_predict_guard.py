"""core.predict command line: the guard's verdict and reasons as CSV columns, and --fix-inverted, on the field cases."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from core.imaging import inversion
from core import guard as ood, predict
from core.imaging import decode_xray
from tests.conftest import FIELD_CASES_DIR

FIELD_CASES = FIELD_CASES_DIR  # noqa
NEGATIVE = FIELD_CASES / "negative_film_normal_IM-0015.png"


def _run(tiny_cnn_dir: Path, tmp_path: Path, *sources: Path, options: tuple[str, ...] = ()) -> dict[str, dict]:
    out = tmp_path / "results.csv"
    assert predict.main(["--model", str(tiny_cnn_dir), *map(str, sources), "--out", str(out), *options]) == 0
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert set(ood.GUARD_COLUMNS) <= set(rows[0])
    return {Path(row["file"]).name: row for row in rows}


def test_csv_says_which_films_the_model_does_not_know_and_why(tiny_cnn_dir: Path, data_root: Path, tmp_path: Path) -> None:
    normal = data_root / "test" / "NORMAL" / "IM-0001-0001.jpeg"
    rows = _run(tiny_cnn_dir, tmp_path, NEGATIVE, FIELD_CASES / "adult_pa_nih_00027426_000.png",
                FIELD_CASES / "dicom_extremity_not_chest.dcm", FIELD_CASES / "png16_with_12bit_values_normal_IM-0001.png", normal)
    negative = rows[NEGATIVE.name]
    assert negative["guard"] == "warning" and negative["guard_reasons"].startswith("inverted (negative film)")
    assert "looks inverted (white lungs, dark bones)" in negative["guard_details"]
    for name in ("adult_pa_nih_00027426_000.png", "dicom_extremity_not_chest.dcm"):
        assert rows[name]["guard"] == "warning", name
        assert "out of distribution: not like the paediatric chest films" in rows[name]["guard_reasons"], name
    assert "bit depth rescaled" in rows["png16_with_12bit_values_normal_IM-0001.png"]["guard_reasons"]
    # the fixture model has no ood.npz: a film that passes the other checks is not called in-distribution
    assert rows[normal.name]["guard"] == ood.VERDICT_PARTIAL
    # Not a paediatric chest film (the negative film too, as it is): decision WITHHELD, no score in the CSV ...
    for name in (NEGATIVE.name, "adult_pa_nih_00027426_000.png", "dicom_extremity_not_chest.dcm"):
        assert rows[name]["decision"] == "WITHHELD" and rows[name]["probability"] == "", name
    assert rows[normal.name]["decision"] in ("NORMAL", "PNEUMONIA") and rows[normal.name]["probability"]
    # ... unless asked for, for auditing: the model's own raw output.
    raw = _run(tiny_cnn_dir, tmp_path, NEGATIVE, options=("--raw-scores",))[NEGATIVE.name]
    scorer = predict.load_scorer(tiny_cnn_dir)
    assert raw["decision"] == "WITHHELD"
    assert float(raw["probability"]) == pytest.approx(scorer.probability(decode_xray(NEGATIVE)), abs=1e-5)


def test_fix_inverted_scores_the_negative_film_the_right_way_up(tiny_cnn_dir: Path, data_root: Path, tmp_path: Path) -> None:
    normal = data_root / "test" / "NORMAL" / "IM-0001-0001.jpeg"
    rows = _run(tiny_cnn_dir, tmp_path, NEGATIVE, normal, options=("--fix-inverted",))
    scorer = predict.load_scorer(tiny_cnn_dir)
    upright = inversion.invert(decode_xray(NEGATIVE))
    assert float(rows[NEGATIVE.name]["probability"]) == pytest.approx(scorer.probability(upright), abs=1e-5)
    assert "scored the right way up (inverted)" in rows[NEGATIVE.name]["guard_reasons"]
    assert "inverted (negative film)" not in rows[NEGATIVE.name]["guard_reasons"]
    assert float(rows[normal.name]["probability"]) == pytest.approx(scorer.probability(decode_xray(normal)), abs=1e-5)  # untouched


def test_the_guards_model_pass_is_the_score_and_no_second_pass_is_made(project_root: Path, data_root: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = project_root / "models" / "cnn-deep-128"
    scorer = predict.load_scorer(model_dir)
    calibration = ood.load_calibration(model_dir)
    assert calibration is not None, "the shipped cnn-deep-128 has an ood.npz"
    files = [NEGATIVE, *sorted((data_root / "test" / "PNEUMONIA").glob("*.jpeg"))[:2], data_root / "test" / "NORMAL" / "IM-0001-0001.jpeg"]
    uploads = [(f.name, f.read_bytes()) for f in files] + [("broken.png", b"not an image")]
    expected = scorer.probabilities([inversion.invert(decode_xray(NEGATIVE)), *(decode_xray(f) for f in files[1:])])

    def second_pass(*_args, **_kwargs):
        raise AssertionError("score_uploads ran a second model pass after the guard's")

    monkeypatch.setattr(scorer, "predict_batch", second_pass)
    results = predict.score_uploads(scorer, uploads, guard=True, calibration=calibration, fix_inverted=True)
    assert [r.status for r in results] == ["ok"] * 4 + ["error"]
    assert [r.probability for r in results[:4]] == pytest.approx(expected.tolist(), abs=1e-6)
    assert all(r.verdict.model_check.probability == r.probability for r in results[:4])
