"""Ablation table (core.evaluation.ablation) from synthetic card dicts (fixtures only; no model is trained)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from core.evaluation import ablation


def _metric(value: float, half: float = 0.02) -> dict:
    return {"value": value, "ci_low": value - half, "ci_high": value + half}


def _card(name: str, *, seconds: float | None = 600.0, fingerprint: str = "abc", **options) -> dict:
    """A card as train.py writes it, with the recipe options given (on top of a fixed baseline recipe)."""
    recipe = {"model": "cnn_deep", "name": name, "data": f"/somewhere/{name}/data", "img_size": 128, "epochs": 15,
              "augment": False, "label_smoothing": 0.0, "seed": 42, "bootstrap": 1000}
    recipe.update(options)
    base = 0.80 + 0.01 * len(options)
    return {
        "name": name,
        "display_name": f"Recipe {name}",
        "dataset": {"name": "Kaggle", "fingerprint": fingerprint},
        "training": {"config": recipe, "seconds": seconds, "epochs_run": 12},
        "threshold": {"value": 0.35, "rule": "highest validation sensitivity with validation specificity >= 0.95",
                      "chosen_on": "val"},
        "metrics": {
            "val": {"roc_auc": _metric(0.99, 0.005), "accuracy": _metric(0.97), "recall": _metric(0.98),
                    "specificity": _metric(0.95), "f1": _metric(0.97)},
            "test": {"roc_auc": _metric(0.95), "accuracy": _metric(base), "recall": _metric(0.99, 0.01),
                     "specificity": _metric(base - 0.3, 0.06)},
        },
    }


def test_changes_are_the_recipe_options_that_differ_from_the_baseline() -> None:
    cards = [_card("baseline"), _card("acq", augment="acquisition", label_smoothing=0.1), _card("same")]
    table = ablation.ablation_table(cards)
    assert list(table["recipe"]) == ["baseline", "acq", "same"]
    assert list(table["is_baseline"]) == [True, False, False]
    assert table["changes"].tolist() == ["baseline", "augment=acquisition, label_smoothing=0.1", "baseline"]
    assert table["changed_options"][1] == {
        "augment": {"value": "acquisition", "baseline": False},
        "label_smoothing": {"value": 0.1, "baseline": 0.0},
    }


def test_name_data_path_and_resamples_are_not_recipe_options() -> None:
    other = _card("moved", bootstrap=200)  # another name, another data folder, fewer CI resamples
    assert ablation.recipe_changes(other, _card("baseline")) == {}


def test_numbers_equal_in_value_are_not_changes() -> None:
    assert ablation.recipe_changes(_card("a", epochs=15.0), _card("b", epochs=15)) == {}


def test_missing_options_take_their_defaults() -> None:
    old = _card("old")
    del old["training"]["config"]["label_smoothing"]  # written before the option existed
    smoothed = _card("smoothed", label_smoothing=0.1)
    assert ablation.recipe_changes(_card("new"), old, defaults={"label_smoothing": 0.0}) == {}
    changes = ablation.recipe_changes(smoothed, old, defaults={"label_smoothing": 0.0})
    assert changes == {"label_smoothing": {"value": 0.1, "baseline": 0.0}}
    # Without defaults the absence is itself shown.
    assert ablation.recipe_changes(_card("new"), old) == {"label_smoothing": {"value": 0.0, "baseline": None}}
    assert ablation.describe_changes({"x": {"value": None, "baseline": 1}}) == "x=unset"


def test_another_dataset_counts_as_a_change() -> None:
    changes = ablation.recipe_changes(_card("nih", fingerprint="zzz"), _card("baseline"))
    assert changes == {"dataset": {"value": "Kaggle (fingerprint zzz)", "baseline": "Kaggle (fingerprint abc)"}}


def test_metrics_and_cis_come_from_the_cards_for_both_splits() -> None:
    cards = [_card("baseline"), _card("acq", augment="acquisition")]
    table = ablation.ablation_table(cards).set_index("recipe")
    for name, card in zip(("baseline", "acq"), cards):
        for split in ("val", "test"):
            for metric in ablation.ABLATION_METRICS:
                entry = card["metrics"][split][metric]
                assert table.loc[name, f"{split}_{metric}"] == entry["value"]
                assert table.loc[name, f"{split}_{metric}_ci_low"] == entry["ci_low"]
                assert table.loc[name, f"{split}_{metric}_ci_high"] == entry["ci_high"]
        assert table.loc[name, "threshold"] == 0.35 and table.loc[name, "threshold_chosen_on"] == "val"
        assert table.loc[name, "training_seconds"] == 600.0


def test_missing_metrics_and_time_are_nan_not_errors() -> None:
    card = _card("partial", seconds=None)
    del card["metrics"]["test"]["specificity"]
    card["metrics"]["val"]["accuracy"] = {"value": 0.9}  # no CI recorded
    row = ablation.ablation_table([_card("baseline"), card]).iloc[1]
    assert math.isnan(row["test_specificity"]) and math.isnan(row["training_seconds"])
    shown = ablation.display_frame(ablation.ablation_table([card])).iloc[0]
    assert shown["test specificity"] == "—" and shown["val accuracy"] == "0.900"
    assert shown["Training time"] == "not recorded"


def test_baseline_can_be_named_and_comes_first() -> None:
    cards = [_card("a", augment="acquisition"), _card("b")]
    table = ablation.ablation_table(cards, baseline="b")
    assert list(table["recipe"]) == ["b", "a"] and table["changes"].tolist() == ["baseline", "augment=acquisition"]
    with pytest.raises(ValueError, match="not among the cards"):
        ablation.ablation_table(cards, baseline="zzz")


def test_bad_inputs_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="No model cards"):
        ablation.ablation_table([])
    with pytest.raises(ValueError, match="Several cards are named a"):
        ablation.ablation_table([_card("a"), _card("a")])
    no_recipe = _card("x")
    del no_recipe["training"]["config"]
    with pytest.raises(ValueError, match="no training.config"):
        ablation.ablation_table([_card("a"), no_recipe])


def test_markdown_table() -> None:
    table = ablation.ablation_table([_card("baseline"), _card("acq", augment="acquisition")])
    lines = ablation.to_markdown(table).splitlines()
    assert len(lines) == 4
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:3] == ["Recipe", "Changes vs baseline", "val ROC AUC"]
    assert "test sensitivity" in header and "test specificity" in header and header[-1] == "Training time"
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    cells = [c.strip() for c in lines[3].strip("|").split("|")]
    assert cells[0] == "`acq`" and cells[1] == "augment=acquisition"
    assert cells[header.index("test accuracy")] == "0.810 (0.790–0.830)"
    assert cells[header.index("Threshold (chosen on)")] == "0.350 (val)"
    assert cells[-1] == "10 min 00 s"


def test_json_round_trip(tmp_path: Path) -> None:
    table = ablation.ablation_table([_card("baseline", seconds=None), _card("acq", augment="acquisition")])
    path = ablation.write_json(table, tmp_path / "docs" / "ablation.json")
    payload = json.loads(path.read_text())
    assert payload["baseline"] == "baseline" and payload["version"] == ablation.JSON_VERSION
    assert payload["rows"][0]["training_seconds"] is None  # NaN written as null, valid JSON
    back = ablation.read_json(path)
    pd.testing.assert_frame_equal(
        ablation.display_frame(back), ablation.display_frame(table), check_dtype=False
    )
    assert not list(tmp_path.joinpath("docs").glob(".*.tmp")), "no temporary file left behind"


def test_read_json_refuses_what_is_not_a_table(tmp_path: Path) -> None:
    bad = tmp_path / "ablation.json"
    bad.write_text("{ nope")
    with pytest.raises(ValueError, match="not a readable ablation table"):
        ablation.read_json(bad)
    bad.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="no ablation rows"):
        ablation.read_json(bad)
    bad.write_text(json.dumps({"rows": [{"recipe": "x"}]}))
    with pytest.raises(ValueError, match="lacks column"):
        ablation.read_json(bad)


def _write(root: Path, card: dict) -> Path:
    folder = root / card["name"]
    folder.mkdir(parents=True)
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def test_cards_are_found_in_files_model_folders_and_folders_of_them(tmp_path: Path) -> None:
    models = tmp_path / "models"
    _write(models, _card("b"))
    _write(models, _card("a"))
    _write(models, _card(".tmp-c"))  # an unfinished run is skipped
    extra = _write(tmp_path / "experiments", _card("tta", augment="acquisition"))
    found = ablation.find_cards([models, extra, extra / "card.json"])
    assert [p.parent.name for p in found] == ["a", "b", "tta", "tta"]
    with pytest.raises(ValueError, match="does not exist"):
        ablation.find_cards([tmp_path / "nowhere"])
    with pytest.raises(ValueError, match="holds no card.json"):
        ablation.find_cards([tmp_path])
    (extra / "card.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        ablation.load_cards([extra])


def test_command_line_prints_the_readme_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    models = tmp_path / "models"
    _write(models, _card("a-baseline"))
    _write(models, _card("b-acq", augment="acquisition"))
    out = tmp_path / "ablation.json"
    assert ablation.main([str(models), "--markdown", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| Recipe | Changes vs baseline |")
    assert "| `b-acq` | augment=acquisition |" in printed
    assert list(ablation.read_json(out)["recipe"]) == ["a-baseline", "b-acq"]
    assert ablation.baseline_recipe(ablation.read_json(out)) == "a-baseline"
    assert ablation.main([str(models), "--baseline", "nope"]) == 2
    assert "not among the cards" in capsys.readouterr().err


def test_ablation_path_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ablation.ABLATION_ENV, raising=False)
    assert ablation.ablation_path() == ablation.DEFAULT_JSON
    monkeypatch.setenv(ablation.ABLATION_ENV, str(tmp_path / "x.json"))
    assert ablation.ablation_path() == tmp_path / "x.json"


def test_training_defaults_are_train_py_options() -> None:
    """The defaults come from train.py's own option set (if it moves, this says so instead of silently degrading)."""
    defaults = ablation.training_defaults()
    assert {"model", "epochs", "augment", "learning_rate", "seed"} <= set(defaults)


def test_an_ensemble_shows_its_members_not_every_option_it_lacks() -> None:
    ensemble = _card("ens")
    ensemble["training"]["config"] = {"members": ["cnn-deep-128", "xception-224"], "candidates": ["a", "b", "c"],
                                      "img_size": 224, "seed": 42, "bootstrap": 1000, "limit": None}
    defaults = {"model": "cnn_reference", "epochs": 20, "augment": False, "limit": None}
    changes = ablation.recipe_changes(ensemble, _card("baseline"), defaults=defaults)
    assert list(changes) == ["members", "img_size"]
    assert changes["members"] == {"value": ["cnn-deep-128", "xception-224"], "baseline": None}
    assert ablation.describe_changes(changes) == "members=cnn-deep-128+xception-224, img_size=224"
    other = _card("ens2")
    other["training"]["config"] = {**ensemble["training"]["config"], "members": ["cnn-deep-128"]}
    assert list(ablation.recipe_changes(other, ensemble, defaults=defaults)) == ["members"]
