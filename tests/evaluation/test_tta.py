"""core.evaluation.tta: the views on known pixels, the wrapped model against the mean of its views, and a study folder whose
numbers match scikit-learn (a fixed-weight model on a small real subset: nothing here depends on training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import recall_score

from core.evaluation import metrics, tta


def _brightness_model(size: int = 32, channels: int = 1):
    """P(pneumonia) = sigmoid(4 * (mean pixel / 255 - 0.5)): a fixed model whose score is the film's brightness."""
    import keras

    inputs = keras.Input((size, size, channels), name="pixels")
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(inputs)
    output = keras.layers.Dense(1, activation="sigmoid", name="output")
    model = keras.Model(inputs, output(x))
    output.set_weights([np.full((channels, 1), 4.0 / 255.0 / channels, np.float32), np.array([-2.0], np.float32)])
    return model


def test_views_have_the_known_pixels() -> None:
    wrapped = tta.TestTimeAugmented(_brightness_model(20))
    image = np.full((1, 20, 20, 1), 255.0, np.float32)
    views = dict(zip(wrapped.views, (v.numpy() for v in wrapped.view_batches(image))))
    np.testing.assert_array_equal(views["as given"], image)
    np.testing.assert_array_equal(views["zoom in 10 %"], image)  # a crop of a white film is white
    zoomed_out = views["zoom out 10 %"][0, ..., 0]
    assert (zoomed_out[[0, -1], :] == 0).all() and (zoomed_out[:, [0, -1]] == 0).all()  # black fill all round
    assert (zoomed_out[1:-1, 1:-1] > 0).all()
    right = views["shift right 5 %"][0, ..., 0]
    assert (right[:, 0] == 0).all() and (right[:, 1:] == 255).all()  # black fill on the left only
    left = views["shift left 5 %"][0, ..., 0]
    assert (left[:, -1] == 0).all() and (left[:, :-1] == 255).all()


def test_the_wrapped_model_is_the_mean_of_its_views_and_one_view_is_the_model() -> None:
    model = _brightness_model(20)
    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 255, (3, 20, 20, 1)).astype(np.float32)
    wrapped = tta.TestTimeAugmented(model)
    expected = np.mean([model.predict(v.numpy(), verbose=0).ravel() for v in wrapped.view_batches(batch)], axis=0)
    np.testing.assert_allclose(np.asarray(wrapped(batch)).ravel(), expected, rtol=1e-6)
    single = tta.TestTimeAugmented(model, {"as given": (0.0, 0.0, 1.0, 1.0)})
    np.testing.assert_allclose(np.asarray(single(batch)).ravel(), model.predict(batch, verbose=0).ravel(), rtol=1e-6)
    with pytest.raises(ValueError, match="at least one view"):
        tta.TestTimeAugmented(model, {})


def test_evaluate_tta_writes_a_study_folder_that_matches_scikit_learn(tmp_path: Path, data_root: Path) -> None:
    from core.data import pipeline

    folder = tmp_path / "models" / "bright"
    folder.mkdir(parents=True)
    _brightness_model(32).save(folder / "model.keras")
    card = json.loads((data_root.parents[1] / "models" / "cnn-deep-128" / "card.json").read_text())  # a full card
    card.update({"name": "bright", "display_name": "Brightness", "architecture": "fixture",
                 "input": {"height": 32, "width": 32, "channels": 1, "preprocessing": "none"},
                 "threshold": {"value": 0.5, "rule": "fixture", "rule_id": "specificity", "target": 0.9, "chosen_on": "val"},
                 "guard": {"measured": "on the model without TTA"}, "audit": {"splits": {}}})
    card["training"]["config"].update(seed=3, threshold_views=1)
    (folder / "card.json").write_text(json.dumps(card))
    out = tmp_path / "experiments"
    written = tta.evaluate_tta(folder, out, data_root=data_root, limit=6, bootstrap=100)
    assert written == out / "bright-tta" and not list(out.glob(".tmp-*"))
    study = json.loads((written / "card.json").read_text())
    assert study["training"]["config"]["tta"] == list(tta.TTA_VIEWS) and "guard" not in study and "audit" not in study
    predictions = pd.read_csv(written / "predictions.csv")
    assert sorted(predictions["split"].unique()) == ["test", "val"] and len(predictions) == 24
    # The stored scores are the mean of the model over the five views (recomputed here from the image files).
    frame = predictions.assign(relpath=predictions["path"], path=[str(data_root / p) for p in predictions["path"]])
    images = pipeline.load_arrays(frame, img_size=32, channels=1)
    model = _brightness_model(32)
    wrapped = tta.TestTimeAugmented(model)
    expected = np.mean([model.predict(v.numpy(), verbose=0).ravel() for v in wrapped.view_batches(images)], axis=0)
    np.testing.assert_allclose(predictions["score"], expected, atol=1e-5)
    # Threshold by the card's rule on the validation films plus 1 perturbed view each; test reported at it.
    views = pd.read_csv(written / "threshold_views.csv")
    assert len(views) == 2 * (predictions["split"] == "val").sum()
    threshold = study["threshold"]["value"]
    assert threshold == metrics.choose_threshold(views["label"], views["score"], "specificity", target=0.9)
    test = predictions[predictions["split"] == "test"]
    called = (test["score"] >= threshold).astype(int)
    assert study["metrics"]["test"]["recall"]["value"] == pytest.approx(recall_score(test["label"], called))
    assert study["metrics"]["test"]["specificity"]["value"] == pytest.approx(recall_score(1 - test["label"], 1 - called))


def test_cli_reports_a_broken_folder(tmp_path: Path, capsys) -> None:
    assert tta.main([str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "core.evaluation.tta:" in capsys.readouterr().err
