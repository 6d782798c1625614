"""Published reference rows (core.evaluation.references): what each source reported, marked, and never mixed with ours."""

from __future__ import annotations

import math

from core.evaluation import metrics, references


def test_kermany_2018_is_the_first_row_on_the_same_test_films() -> None:
    kermany = references.PUBLISHED_RESULTS[0]
    assert kermany.source == "Kermany et al. 2018" and kermany.same_test_films
    assert kermany.metrics == {"accuracy": 0.928, "recall": 0.932, "specificity": 0.901, "roc_auc": 0.968}
    assert "doi:10.1016/j.cell.2018.02.010" in kermany.citation and "Cell 2018" in kermany.citation


def test_every_row_is_marked_cited_and_uses_card_metric_keys() -> None:
    for result in references.PUBLISHED_RESULTS:
        assert result.label.endswith(f"({references.PUBLISHED_MARK})")
        assert result.citation and result.evaluated_on
        assert result.metrics, f"{result.source} has no number; list it in WITHOUT_NUMBERS instead"
        assert set(result.metrics) <= set(metrics.METRIC_KEYS)
        assert all(0.0 <= v <= 1.0 for v in result.metrics.values())


def test_reference_project_001_accuracies_are_counts_of_the_624_official_test_films() -> None:
    rows = [r for r in references.PUBLISHED_RESULTS if r.source == "Reference project 001"]
    # As printed in its summary table (two decimals): 0.74, 0.88, 0.92.
    assert [round(r.metrics["accuracy"], 2) for r in rows] == [0.74, 0.88, 0.92]
    assert all(round(r.metrics["accuracy"] * 624, 6).is_integer() for r in rows)
    assert all(r.same_test_films for r in rows)


def test_only_rows_on_the_official_test_films_claim_to_be_on_them() -> None:
    same = references.published_results(same_test_films_only=True)
    assert {r.source for r in same} == {"Kermany et al. 2018", "Reference project 001"}
    assert all("same films as here" in r.evaluated_on for r in same)
    others = [r for r in references.PUBLISHED_RESULTS if not r.same_test_films]
    assert others and all("same films as here" not in r.evaluated_on for r in others)


def test_published_frame_has_one_column_per_metric_nan_where_not_reported() -> None:
    frame = references.published_frame(("accuracy", "roc_auc", "brier"))
    assert len(frame) == len(references.PUBLISHED_RESULTS)
    assert frame.loc[0, "roc_auc"] == 0.968 and math.isnan(frame.loc[0, "brier"])
    assert frame["label"].str.contains(references.PUBLISHED_MARK, regex=False).all()
