"""core.site: reading site sets, validation numbers against scikit-learn, patient-grouped halves, adaptation artifacts."""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from core import config
from core.evaluation import metrics
from core.models import registry
from core import site as site_check


# ------------------------------------------------------------------------------------------------ fixtures
def _films(data_root: Path, split: str, label: str, start: int, count: int) -> list[Path]:
    return sorted((data_root / split / label).glob("*.jpeg"))[start:start + count]


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries:
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def kaggle_folder(tmp_path_factory, data_root) -> Path:
    """45 real test films per class in a Kaggle layout one level down (site/NORMAL, site/PNEUMONIA)."""
    root = tmp_path_factory.mktemp("site")
    for label in config.CLASS_NAMES:
        (root / "batch1" / label).mkdir(parents=True)
        for path in _films(data_root, "test", label, 0, 45):
            shutil.copy(path, root / "batch1" / label / path.name)
    return root


@pytest.fixture()
def ruled_models(tiny_cnn_dir: Path, tmp_path: Path) -> Path:
    """A models folder with a copy of the tiny CNN whose card names its threshold rule (Youden J)."""
    folder = tmp_path / "models" / "tiny_cnn"
    shutil.copytree(tiny_cnn_dir, folder)
    card = json.loads((folder / "card.json").read_text())
    card["threshold"].update(rule_id="youden", target=None)
    (folder / "card.json").write_text(json.dumps(card))
    return folder.parent


def _bn_model(seed: int = 0):
    """A tiny 64-px grey CNN with one BatchNorm layer and random (untrained) weights."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((64, 64, 1), name="pixels")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=4, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="output")(x), name="tiny_bn")


@pytest.fixture()
def bn_model_dir(tmp_path: Path, data_root: Path) -> Path:
    """The tiny BatchNorm CNN saved as a models/<name>/ folder with val/test rows of real films."""
    from core.imaging import decode_xray
    from core.predict import prepare_input

    model = _bn_model()
    folder = tmp_path / "models" / "tiny_bn"
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    rows = []
    for split, source, start in (("val", "train", 500), ("test", "test", 100)):
        for label_index, label in enumerate(config.CLASS_NAMES):
            for path in _films(data_root, source, label, start, 12):
                score = float(model(prepare_input(decode_xray(path), 64, 64, 1)[None]).numpy().reshape(-1)[0])
                rows.append([path.relative_to(data_root).as_posix(), split, label_index, f"{score:.6f}"])
    with (folder / "predictions.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["path", "split", "label", "score"], *rows])
    (folder / "card.json").write_text(json.dumps({
        "name": "tiny_bn", "display_name": "Tiny BN test CNN", "architecture": "tiny_bn",
        "input": {"height": 64, "width": 64, "channels": 1},
        "training": {"config": {"balance": "class-weight"}},
        "threshold": {"value": 0.5, "rule": "fixed (test fixture)", "chosen_on": "val"}}))
    return folder


# ------------------------------------------------------------------------------------------------ reading
def test_kaggle_folder_at_any_depth_gives_labels_and_patients_from_names(kaggle_folder):
    site = site_check.read_site(kaggle_folder, name="st-test")
    assert site.labelled and site.class_counts() == {"NORMAL": 45, "PNEUMONIA": 45}
    film = next(f for f in site.films if "person" in f.name)
    assert film.group == film.name.split("/")[-1].split("_")[0]
    assert site.patients_from.startswith("file names")
    assert not site.problems


def test_csv_labels_with_a_patient_column(tmp_path, data_root):
    files = _films(data_root, "test", "NORMAL", 0, 4) + _films(data_root, "test", "PNEUMONIA", 0, 4)
    entries = [(f"films/img{i}.jpeg", path.read_bytes()) for i, path in enumerate(files)]
    table = "file,label,patient\n" + "".join(f"img{i}.jpeg,{'NORMAL' if i < 4 else 1},p{i // 2}\n" for i in range(8))
    table += "missing.jpeg,0,p9\n"
    site = site_check.read_site(_zip([*entries, ("labels.csv", table.encode())]), name="csv-site")
    assert site.labels_from.startswith("labels CSV") and site.patients_from == "the CSV's patient column"
    assert [f.label for f in site.films] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [f.group for f in site.films] == ["p0", "p0", "p1", "p1", "p2", "p2", "p3", "p3"]
    assert [p.name for p in site.problems] == ["missing.jpeg"]
    # The same CSV given separately for a folder of files.
    folder = tmp_path / "films"
    folder.mkdir()
    for name, content in entries:
        (folder / Path(name).name).write_bytes(content)
    (tmp_path / "labels.csv").write_text(table)
    from_folder = site_check.read_site(folder, labels_csv=tmp_path / "labels.csv")
    assert [f.label for f in from_folder.films] == [f.label for f in site.films]


def test_zip_with_bad_members_scores_every_good_one_and_lists_every_bad_one(tiny_cnn_dir, data_root):
    from core import predict

    good = [(f"x/{label}/{p.name}", p.read_bytes()) for label in config.CLASS_NAMES
            for p in _films(data_root, "test", label, 0, 3)]
    bad = [("x/NORMAL/readme.txt", b"hello"), ("x/PNEUMONIA/cut.jpeg", good[-1][1][:300]), ("nolabel.jpeg", good[0][1])]
    site = site_check.read_site(_zip(good + bad))
    scores = site_check.score_site(site, [predict.load_scorer(tiny_cnn_dir)], names=["tiny_cnn"])
    assert sorted(scores.frame["film"]) == sorted(name for name, _ in good)
    assert sorted(p.name for p in scores.problems) == sorted(name for name, _ in bad)
    assert all(len(p.reason) > 20 for p in scores.problems)


@pytest.mark.parametrize("content, message", [(b"PK\x05\x06" + b"\0" * 18, "holds no files"),
                                              (b"\x89PNG\r\n\x1a\n not a zip", "not a ZIP archive")])
def test_empty_or_not_a_zip_is_refused_with_a_message(content, message):
    with pytest.raises(site_check.SiteDataError, match=message):
        site_check.read_site(content)


# ------------------------------------------------------------------------------------------------ validation
def test_site_metrics_match_scikit_learn_on_the_reported_scores(kaggle_folder, ruled_models):
    from core import predict

    entry = registry.get_model("tiny_cnn", ruled_models)
    site = site_check.read_site(kaggle_folder)
    scores = site_check.score_site(site, [predict.load_scorer(entry.path)], names=[entry.name])
    result = site_check.validate_model(scores, entry, n_resamples=200)
    frame = scores.model_frame(entry.name)
    y, s = frame["label"].to_numpy(int), frame["score"].to_numpy(float)
    called = s >= entry.threshold
    got = result["metrics"]
    assert got["roc_auc"]["value"] == pytest.approx(skm.roc_auc_score(y, s))
    assert got["pr_auc"]["value"] == pytest.approx(skm.average_precision_score(y, s))
    assert got["brier"]["value"] == pytest.approx(skm.brier_score_loss(y, s))
    assert got["recall"]["value"] == pytest.approx(skm.recall_score(y, called))
    assert got["specificity"]["value"] == pytest.approx(skm.recall_score(1 - y, ~called))
    assert got["precision"]["value"] == pytest.approx(skm.precision_score(y, called, zero_division=0))
    for key in metrics.METRIC_KEYS:
        assert got[key]["ci_low"] <= got[key]["value"] <= got[key]["ci_high"]
        assert got[key]["ci_width"] == pytest.approx(got[key]["ci_high"] - got[key]["ci_low"])
    assert result["counts"]["patients"] < len(y)  # several films per patient in the Kaggle names
    drift = result["drift"]
    assert drift["ks_statistic"] == pytest.approx(__import__("scipy").stats.ks_2samp(s, registry.load_predictions(entry, "val")["score"]).statistic)
    # Site operating point: chosen on the calibration half by the card's rule, reported on the other half.
    point = result["site_operating_point"]
    calibration = site_check.patient_halves(y, frame["group"].to_numpy())
    assert point["threshold"] == pytest.approx(metrics.choose_threshold(y[calibration], s[calibration], "youden"))
    evaluation = metrics.metrics_at_threshold(y[~calibration], s[~calibration], point["threshold"])
    assert point["metrics"]["recall"]["value"] == pytest.approx(evaluation["recall"])
    assert point["evaluation"]["films"] == int((~calibration).sum())
    assert "calibration half" in point["source"]


def test_halves_are_grouped_by_patient_and_keep_both_classes(kaggle_folder):
    site = site_check.read_site(kaggle_folder)
    labels = np.array([f.label for f in site.films])
    groups = np.array([f.group for f in site.films])
    calibration = site_check.patient_halves(labels, groups)
    assert not set(groups[calibration]) & set(groups[~calibration])
    for half in (calibration, ~calibration):
        assert 0.3 < half.mean() < 0.7
        assert set(labels[half]) == {0, 1}


def test_fewer_than_20_films_of_a_class_are_refused(kaggle_folder, ruled_models, tmp_path):
    from core import predict

    entry = registry.get_model("tiny_cnn", ruled_models)
    site = site_check.read_site(kaggle_folder)
    normals = [f for f in site.films if f.label == 0][:19]
    small = site_check.SiteSet("small", normals + [f for f in site.films if f.label == 1])
    scores = site_check.score_site(small, [predict.load_scorer(entry.path)], names=[entry.name])
    result = site_check.validate_model(scores, entry, n_resamples=50)
    assert result["metrics"] is None and result["curves"] is None
    assert "19 NORMAL" in result["refusal"] and "at least 20" in result["refusal"]
    assert result["site_operating_point"]["threshold"] is None and result["site_operating_point"]["refusal"]
    assert site_check.refusal([0] * 20 + [1] * 20) is None


def test_group_bootstrap_ci_resamples_patients():
    rng = np.random.default_rng(0)
    y = np.repeat(rng.integers(0, 2, 60), 5)  # 60 patients with 5 identical-label films each
    s = np.clip(y * 0.3 + np.repeat(rng.random(60), 5) * 0.7, 0, 1)
    by_film = metrics.summarize_with_group_ci(y, s, 0.5, None, n_resamples=400)
    by_patient = metrics.summarize_with_group_ci(y, s, 0.5, np.repeat(np.arange(60), 5), n_resamples=400)
    assert by_patient["roc_auc"]["value"] == pytest.approx(skm.roc_auc_score(y, s))
    # Films of one patient are not independent: the patient bootstrap is honestly wider.
    assert by_patient["roc_auc"]["ci_width"] > 1.5 * by_film["roc_auc"]["ci_width"]


# ------------------------------------------------------------------------------------------------ adaptation
def test_batchnorm_reestimation_changes_only_the_moving_statistics():
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="dense")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(hidden)
    x = keras.layers.Dropout(0.9, name="dropout")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="output")(x))
    kernel = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], np.float32)
    bias = np.array([0.1, -0.2, 0.3], np.float32)
    model.get_layer("dense").set_weights([kernel, bias])
    before = {v.path: v.numpy().copy() for v in model.weights}
    films = np.random.default_rng(0).normal(3.0, 2.0, size=(40, 4)).astype(np.float32)

    used = site_check.reestimate_batchnorm(model, [films[:30], films[30:]])
    assert used == 40
    bn = model.get_layer("bn")
    expected = films @ kernel + bias
    np.testing.assert_allclose(bn.moving_mean.numpy(), expected.mean(axis=0), rtol=1e-5, atol=1e-5)
    pooled = (30 * expected[:30].var(axis=0) + 10 * expected[30:].var(axis=0)) / 40  # film-weighted batch variances
    np.testing.assert_allclose(bn.moving_variance.numpy(), pooled, rtol=1e-4, atol=1e-5)
    changed = {v.path for v in model.weights if not np.array_equal(v.numpy(), before[v.path])}
    assert changed == {bn.moving_mean.path, bn.moving_variance.path}
    assert bn.momentum == 0.99 and "call" not in bn.__dict__  # the layer is left as it was
    # With one batch the statistics are exact, and inference is deterministic again (dropout off).
    site_check.reestimate_batchnorm(model, [films])
    np.testing.assert_allclose(bn.moving_variance.numpy(), expected.var(axis=0), rtol=1e-4)
    np.testing.assert_array_equal(model(films, training=False).numpy(), model(films, training=False).numpy())
    plain = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    with pytest.raises(ValueError, match="no BatchNorm"):
        site_check.reestimate_batchnorm(plain, [films])


def test_prior_em_recovers_a_known_prevalence_and_the_bias_shift_is_bayes():
    import keras

    rng = np.random.default_rng(0)
    labels = rng.random(20_000) < 0.2
    x = rng.normal(np.where(labels, 1.0, -1.0), 1.0)
    posterior_at_half = 1 / (1 + np.exp(-2 * x))  # exact posterior for N(±1, 1) at prevalence 0.5
    prior, iterations = site_check.estimate_prior_em(posterior_at_half, 0.5)
    assert prior == pytest.approx(0.2, abs=0.02) and iterations > 1

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    features = rng.normal(size=(50, 2)).astype(np.float32)
    p = model(features).numpy().ravel()
    site_check.shift_output_prior(model, 0.5, 0.2)
    expected = p * 0.2 / 0.5 / (p * 0.2 / 0.5 + (1 - p) * 0.8 / 0.5)
    np.testing.assert_allclose(model(features).numpy().ravel(), expected, rtol=1e-4)


def test_adaptation_writes_a_new_listed_model_atomically_with_its_card(bn_model_dir, data_root, tmp_path):
    models_dir = bn_model_dir.parent
    source_files = {p.name: p.read_bytes() for p in bn_model_dir.iterdir()}
    test_films = [(f"t/{p.name}", p.read_bytes()) for label in config.CLASS_NAMES for p in _films(data_root, "test", label, 100, 12)]
    site = site_check.read_site(_zip(test_films + [("t/bad.txt", b"x")]), labelled=False)
    path = site_check.adapt_model(bn_model_dir, site, methods=["prior", "adabn"], site_name="Test Films", models_dir=models_dir,
                                  data_root=data_root, n_resamples=100, guard=False)
    assert path == models_dir / "tiny_bn-adapted-test-films"
    card = registry.load_card(path)
    info = card["adaptation"]
    assert card["adapted"] is True and info["methods"] == ["adabn", "prior"] and info["films"] == 24
    assert info["source_model"] == "tiny_bn" and info["labels_used"] is False and info["unreadable_films"] == 1
    assert info["fingerprint"] == site_check.films_fingerprint(__import__("hashlib").sha256(c).hexdigest() for _, c in test_films)
    assert info["official_test_films"] == 24 and "TRANSDUCTIVE" in card["display_name"]
    assert "AFTER adapting" in card["metrics_note"] and "transductive" in card["metrics_note"]
    assert 0 < info["prior"]["site"] < 1 and info["prior"]["source"] == 0.5
    listed = {e.name: e for e in registry.list_models(models_dir)}
    assert listed[path.name].available and listed["tiny_bn"].available
    from core import report

    assert list(report.rank_models(models_dir)["model"]) == ["tiny_bn"]  # never the headline model
    # predictions.csv holds the adapted model's own scores of the source's val/test films.
    from core import predict
    from core.imaging import decode_xray

    adapted = predict.load_scorer(path)
    stored = registry.load_predictions(path)
    first = stored.iloc[0]
    assert first["score"] == pytest.approx(adapted.probability(decode_xray(data_root / first["path"])), abs=1e-5)
    assert {p.name: p.read_bytes() for p in bn_model_dir.iterdir()} == source_files  # the source is untouched
    assert not [p for p in models_dir.iterdir() if p.name.startswith(".")]  # no temporary folder left
    with pytest.raises(site_check.SiteDataError, match="already exists"):
        site_check.adapt_model(bn_model_dir, site, site_name="Test Films", models_dir=models_dir, data_root=data_root, guard=False)


def test_a_failed_adaptation_leaves_nothing_behind(bn_model_dir, data_root, monkeypatch):
    import keras

    models_dir = bn_model_dir.parent
    site = site_check.read_site(_zip([(f"{p.name}", p.read_bytes()) for p in _films(data_root, "train", "NORMAL", 0, 8)]),
                                labelled=False)

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        site_check.adapt_model(bn_model_dir, site, site_name="x", models_dir=models_dir, data_root=data_root, guard=False)
    assert sorted(p.name for p in models_dir.iterdir()) == ["tiny_bn"]


def test_cli_help_and_validate_writes_json(kaggle_folder, ruled_models, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        site_check.main(["--help"])
    assert exit_info.value.code == 0
    out = tmp_path / "site.json"
    code = site_check.main(["validate", str(kaggle_folder), "--models-dir", str(ruled_models), "--no-guard",
                            "--resamples", "100", "--out", str(out)])
    assert code == 0
    payload = json.loads(out.read_text())
    assert payload["films"] == 90 and payload["results"][0]["model"] == "tiny_cnn"
    assert "roc_auc" in capsys.readouterr().out
    assert site_check.main(["validate", str(tmp_path / "nothing-here")]) == 1


def test_html_report_gets_a_site_section_with_the_site_numbers(kaggle_folder, ruled_models, tmp_path, data_root):
    from core import report
    from tests.report.test_report import write_report_models

    site_report = site_check.validate_site(site_check.read_site(kaggle_folder, name="St Test"),
                                           models_dir=ruled_models, guard=False, n_resamples=100)
    payload = json.loads(site_check.json_bytes(site_report))
    auc = payload["results"][0]["metrics"]["roc_auc"]
    section = report.site_section_html(payload)
    assert "Your site: St Test" in section and metrics.format_ci(auc) in section and "width" in section
    assert "calibration half" in section
    models_dir = write_report_models(tmp_path / "models", data_root)
    html = report.build_report(models_dir, data_root, heatmaps=False, n_resamples=50, site=payload)
    assert "id='site'" in html and metrics.format_ci(auc) in html
    assert "id='site'" not in report.build_report(models_dir, data_root, heatmaps=False, n_resamples=50)


def test_patient_tags_of_a_dicom_in_the_set_never_reach_the_results(kaggle_folder, ruled_models, samples_dir, caplog, capsys):
    import logging

    from tests.test_privacy import leaks, private_dicom

    entries = [(f"s/{label}/{p.name}", p.read_bytes()) for label in config.CLASS_NAMES
               for p in sorted((kaggle_folder / "batch1" / label).glob("*.jpeg"))[:22]]
    entries.append(("s/NORMAL/private.dcm", private_dicom(samples_dir)))
    caplog.set_level(logging.DEBUG)
    report = site_check.validate_site(site_check.read_site(_zip(entries), name="private"), models_dir=ruled_models, guard=False,
                                      n_resamples=50)
    assert report.films == 45  # the DICOM is scored with the films
    assert not leaks(site_check.json_bytes(report))
    assert not leaks("\n".join(site_check.format_result(r) for r in report.results))
    assert not leaks(caplog.text) and not leaks(capsys.readouterr().out)


def test_batchnorm_reestimation_reaches_frozen_layers_inside_a_nested_backbone():
    import keras

    keras.utils.set_random_seed(2)
    inner_inputs = keras.Input((4,))
    inner = keras.Model(inner_inputs, keras.layers.BatchNormalization(name="inner_bn")(keras.layers.Dense(3)(inner_inputs)),
                        name="backbone")
    inner.trainable = False  # like a frozen ImageNet backbone: its BatchNorm runs in inference mode
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inner(inputs)))
    films = np.random.default_rng(1).normal(5.0, 3.0, size=(25, 4)).astype(np.float32)
    site_check.reestimate_batchnorm(model, [films])
    bn = inner.get_layer("inner_bn")
    hidden = films @ inner.layers[1].kernel.numpy() + inner.layers[1].bias.numpy()
    np.testing.assert_allclose(bn.moving_mean.numpy(), hidden.mean(axis=0), rtol=1e-5, atol=1e-5)
    assert bn.trainable is False and inner.trainable is False  # flags restored
