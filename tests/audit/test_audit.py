"""The audit of what a model relies on (core/audit/__init__.py): numbers against scikit-learn on known inputs, a change that
changes nothing gives delta p = 0, a model that reads only the border is caught. Models here have known weights;
nothing depends on what a trained model happens to learn."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, recall_score, roc_auc_score
from tests.conftest import PROJECT_ROOT
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core import audit
from core.imaging import perturbations


# --------------------------------------------------------------------------------------------- numbers


def test_threshold_metrics_match_scikit_learn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = np.clip(0.3 * y + rng.normal(0.4, 0.25, 300), 0, 1)
    found = audit.threshold_metrics(y, s, 0.5)
    tn, fp, fn, tp = confusion_matrix(y, s >= 0.5).ravel()
    assert found["roc_auc"] == pytest.approx(roc_auc_score(y, s))
    assert found["sensitivity"] == pytest.approx(recall_score(y, s >= 0.5))
    assert found["specificity"] == pytest.approx(tn / (tn + fp))


def test_a_change_that_changes_nothing_gives_zero_delta():
    rng = np.random.default_rng(4)
    y, s = rng.integers(0, 2, 100), rng.random(100)
    effect = audit.perturbation_effect(y, s, s.copy(), 0.5)
    assert effect["mean_abs_delta_p"] == 0.0 and effect["flipped"] == 0.0
    assert effect["delta_sensitivity"] == effect["delta_specificity"] == effect["delta_roc_auc"] == 0.0


def test_perturbation_effect_on_known_numbers():
    y = np.array([0, 0, 1, 1])
    before = np.array([0.1, 0.4, 0.6, 0.9])
    after = np.array([0.6, 0.4, 0.6, 0.3])  # one normal pushed over 0.5, one pneumonia pulled under
    effect = audit.perturbation_effect(y, before, after, 0.5)
    assert effect["mean_abs_delta_p"] == pytest.approx((0.5 + 0 + 0 + 0.6) / 4)
    assert effect["mean_delta_p"] == pytest.approx((0.5 - 0.6) / 4)
    assert effect["flipped"] == 0.5
    assert effect["sensitivity"] == 0.5 and effect["specificity"] == 0.5
    assert effect["delta_sensitivity"] == -0.5 and effect["delta_specificity"] == -0.5
    assert effect["roc_auc"] == pytest.approx(roc_auc_score(y, after))


def test_thumbnail_baselines_match_a_scikit_learn_fit():
    rng = np.random.default_rng(5)
    n = 240
    labels = rng.integers(0, 2, n)
    thumbs = {4: np.clip(rng.normal(0.5, 0.1, (n, 4, 4)) + 0.05 * labels[:, None, None], 0, 1)}
    splits = np.array(["train"] * 160 + ["val"] * 40 + ["test"] * 40)
    (row,) = audit.thumbnail_baselines(thumbs, labels, splits)
    X = thumbs[4].reshape(n, -1)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)).fit(X[:160], labels[:160])
    assert row["size"] == 4 and row["features"] == 16 and row["val_n"] == 40
    assert row["val_roc_auc"] == pytest.approx(roc_auc_score(labels[160:200], model.predict_proba(X[160:200])[:, 1]))
    assert row["test_roc_auc"] == pytest.approx(roc_auc_score(labels[200:], model.predict_proba(X[200:])[:, 1]))


def test_thumbnail_variants_on_known_pixels():
    film = np.full((8, 8), 200, np.uint8)
    film[:, :4] = 50
    assert np.array_equal(audit.thumbnail_variant(film, "film"), film)
    equalised = audit.thumbnail_variant(film, "equalised")
    assert set(np.unique(equalised)) == {0, 255}  # two grey levels, each half the pixels: spread to the extremes
    assert np.array_equal(audit.thumbnail_variant(film, "centre"), film[2:6, 2:6])
    edges = audit.thumbnail_variant(film, "edges")
    assert (edges[2:6, 2:6] == 0).all() and edges[0, 7] == 200 and edges[7, 0] == 50
    with pytest.raises(ValueError, match="variant"):
        audit.thumbnail_variant(film, "nope")


def test_domain_classifier_finds_the_statistic_that_moved():
    rng = np.random.default_rng(6)
    n = 400
    is_test = np.r_[np.zeros(n // 2), np.ones(n // 2)].astype(int)
    features = pd.DataFrame({"noise_a": rng.normal(size=n), "moved": rng.normal(size=n) + 2.0 * is_test, "noise_b": rng.normal(size=n)})
    groups = np.array([f"p{i // 2}" for i in range(n)])  # two films per patient
    found = audit.domain_classifier(features, is_test, groups, folds=4, repeats=3)
    assert found["roc_auc"] > 0.8
    assert found["importance"][0]["statistic"] == "moved"
    same = audit.domain_classifier(features.drop(columns="moved"), is_test, groups, folds=4, repeats=3)
    assert same["roc_auc"] < 0.65  # nothing moved: close to guessing


def test_statistic_profile_medians_and_directions():
    labels = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    splits = np.array(["val"] * 4 + ["test"] * 4)
    features = pd.DataFrame({"x": [1.0, 2.0, 5.0, 6.0, 4.0, 5.0, 7.0, 8.0]})
    (row,) = audit.statistic_profile(features, labels, splits, ["x"])
    assert row["median_val_normal"] == 1.5 and row["median_test_normal"] == 4.5 and row["median_val_pneumonia"] == 5.5
    assert row["auc_pneumonia_vs_normal_val"] == pytest.approx(roc_auc_score([0, 0, 1, 1], [1, 2, 5, 6]))
    assert row["auc_test_normal_vs_val_normal"] == 1.0
    assert row["test_normals_move_towards_pneumonia"] is True


# --------------------------------------------------------------------------------------------- regions and film statistics


def synthetic_chest(side: int = 128) -> np.ndarray:
    """Black surround, a bright body, two dark lung ellipses inside it."""
    import cv2

    film = np.zeros((side, side), np.uint8)
    cv2.ellipse(film, (side // 2, side // 2), (int(0.38 * side), int(0.45 * side)), 0, 0, 360, 200, -1)
    for cx in (0.33, 0.67):
        cv2.ellipse(film, (int(cx * side), int(0.42 * side)), (int(0.11 * side), int(0.2 * side)), 0, 0, 360, 60, -1)
    return film


def test_regions_partition_the_film_and_find_synthetic_lungs():
    film = synthetic_chest()
    regions, method = audit.image_regions(film)
    assert set(regions) == set(audit.REGIONS)
    stacked = np.stack(list(regions.values())).astype(int)
    assert (stacked.sum(axis=0) == 1).all()  # disjoint and covering
    assert method == "heuristic"
    lung_pixels = film == 60
    assert (regions["lungs"] & lung_pixels).sum() / lung_pixels.sum() > 0.9
    assert regions["corners"][0, 0] and regions["border"][0, 64] and regions["lower"][120 - 12, 64]


def test_regions_fall_back_to_boxes_on_a_flat_film():
    regions, method = audit.image_regions(np.full((64, 64), 120, np.uint8))
    assert method == "boxes" and regions["lungs"].any()


def test_region_mass_and_border_verdict():
    film = synthetic_chest(64)
    regions, _ = audit.image_regions(film)
    on_border = (regions["border"] | regions["corners"]).astype(np.float32)
    mass = audit.region_mass(on_border, regions)
    assert mass["border"] + mass["corners"] == pytest.approx(1.0) and mass["lungs"] == 0.0
    assert audit.region_mass(np.zeros((64, 64)), regions) is None
    films = np.stack([film, film])
    edges = audit.gradcam_mass(np.stack([on_border, np.zeros((64, 64), np.float32)]), films)
    assert edges["border_reliant"] and edges["empty"] == 1 and edges["edge_mass"] == pytest.approx(1.0)
    lungs = audit.gradcam_mass(regions["lungs"].astype(np.float32)[None], film[None])
    assert not lungs["border_reliant"] and lungs["mass"]["lungs"] == pytest.approx(1.0)


def test_film_statistics_on_known_pixels():
    film = np.zeros((128, 128), np.uint8)
    film[32:96, 32:96] = 255  # a white square filling the middle quarter of the area
    stats = audit.film_statistics(film)
    assert stats["mean"] == pytest.approx(0.25)
    assert stats["border_mean"] == 0.0 and stats["centre_mean"] == 1.0
    assert stats["entropy"] == pytest.approx(-(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75)))
    assert stats["box_area"] == pytest.approx(0.25) and stats["box_top"] == pytest.approx(0.25)
    assert stats["thumb_r0c0"] == 0.0 and stats["thumb_r1c1"] == 1.0
    assert all(np.isfinite(v) for v in stats.values())


# --------------------------------------------------------------------------------------------- models with known weights


def band_model(side: int, *, border: bool):
    """A tiny flat CNN whose output depends only on the border band (border=True) or only on the inside.

    mask layer (fixed 0/1) -> 1x1 conv (x / 255, ReLU) -> global average -> Dense sigmoid(8 * (mean - 0.25)).
    """
    import keras

    band = int(round(audit.BORDER * side))
    mask = np.zeros((side, side, 1), np.float32)
    mask[:band], mask[-band:], mask[:, :band], mask[:, -band:] = 1, 1, 1, 1
    if not border:
        mask = 1 - mask

    class FixedMask(keras.layers.Layer):
        def call(self, x):
            return x * mask

    inputs = keras.Input((side, side, 1))
    x = FixedMask(name="fixed_mask")(inputs)
    x = keras.layers.Conv2D(1, 1, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="output")(x))
    model.get_layer("conv").set_weights([np.full((1, 1, 1, 1), 1 / 255, np.float32), np.zeros(1, np.float32)])
    share = mask.mean()
    model.get_layer("output").set_weights([np.full((1, 1), 8.0 / share, np.float32), np.array([-2.0], np.float32)])
    return model


@pytest.fixture(scope="module")
def films() -> tuple[np.ndarray, np.ndarray]:
    """20 seeded synthetic films (64 px) with random bright borders, and labels 0/1."""
    rng = np.random.default_rng(7)
    out = np.stack([synthetic_chest(64) for _ in range(20)])
    band = int(round(audit.BORDER * 64))
    for film in out:
        value = rng.integers(0, 256)
        film[:band], film[-band:], film[:, :band], film[:, -band:] = value, value, value, value
    return out, np.r_[np.zeros(10), np.ones(10)].astype(int)


def test_a_border_reading_model_is_caught(films):
    from core.predict import scorer_from_model

    images, labels = films
    model = band_model(64, border=True)
    scorer = scorer_from_model(model, threshold=0.5)
    table = {row["name"]: row for row in audit.perturbation_table(scorer, images, labels, 0.5)}
    assert table["identity"]["mean_abs_delta_p"] == 0.0
    assert table["black_frame_6"]["mean_abs_delta_p"] > 0.05  # blacking out the frame moves it
    scores = scorer.predict_batch(audit.to_model_input(images, 1))
    cam = audit.model_gradcam_mass(model, images, labels, scores, 0.5)
    assert cam["all"]["border_reliant"] and cam["all"]["mass"]["lungs"] == 0.0
    edges = audit.edge_reliance(list(table.values()), cam)
    assert edges["reliant"] and edges["by_gradcam"] and edges["by_black_frame"]


def test_an_inside_reading_model_ignores_the_frame_and_is_not_border_reliant(films):
    from core.predict import scorer_from_model

    images, labels = films
    model = band_model(64, border=False)
    scorer = scorer_from_model(model, threshold=0.5)
    table = {row["name"]: row for row in audit.perturbation_table(scorer, images, labels, 0.5,
                                                                 chosen=[perturbations.by_name("identity"), perturbations.by_name("black_frame_6")])}
    assert table["black_frame_6"]["mean_abs_delta_p"] == 0.0  # the 6 % frame lies inside the 8 % band it never reads
    assert table["black_frame_6"]["passed"] is True
    scores = scorer.predict_batch(audit.to_model_input(images, 1))
    cam = audit.model_gradcam_mass(model, images, labels, scores, 0.5)
    assert not cam["all"]["border_reliant"] and cam["all"]["edge_mass"] == 0.0
    assert audit.edge_reliance(list(table.values()), cam) == {
        "by_black_frame": False, "black_frame_mean_abs_delta_p": 0.0, "by_gradcam": False, "gradcam_edge_mass": 0.0, "reliant": False}


def test_a_model_without_convolution_has_no_gradcam_mass(films):
    import keras

    images, labels = films
    inputs = keras.Input((64, 64, 1))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inputs)))
    assert audit.model_gradcam_mass(model, images, labels, np.zeros(len(images)), 0.5) is None


# --------------------------------------------------------------------------------------------- model folder, card, CLI


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A models/<name>/ folder holding a seeded, untrained 32-px CNN (known weights, nothing learned)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Rescaling(1 / 255.0, name="preprocess_rescale")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="output")(x))
    folder = tmp_path_factory.mktemp("models") / "seeded-cnn-32"
    folder.mkdir()
    model.save(folder / "model.keras")
    (folder / "card.json").write_text(json.dumps({"name": "seeded-cnn-32", "input": {"height": 32, "width": 32, "channels": 1},
                                                  "threshold": {"value": 0.5, "rule": "fixed (test)", "chosen_on": "val"}}))
    (folder / "card.md").write_text("# seeded-cnn-32\n\n## Metrics\n\nnone\n")
    return folder


def test_model_audit_on_real_validation_films_and_card_writing(model_dir, data_root):
    found = audit.model_audit(model_dir, data_root, per_class=6, seed=1)
    val = found["splits"]["val"]
    assert val["n"] == 12 and val["per_class"] == 6
    rows = {row["name"]: row for row in val["table"]}
    assert set(rows) == {p.name for p in perturbations.PERTURBATIONS}
    assert rows["identity"]["mean_abs_delta_p"] == 0.0 and rows["identity"]["passed"] is None
    assert val["robust"] == all(rows[name]["passed"] for name in rows if rows[name]["goal"])
    assert val["gradcam"]["all"]["n"] == 12
    assert val["edges"]["reliant"] == bool(val["edges"]["by_black_frame"] or val["edges"]["by_gradcam"])
    json.dumps(found, allow_nan=False)  # the audit is plain JSON

    audit.write_card_audit(model_dir, found)
    audit.write_card_audit(model_dir, found)  # again: replaced, not repeated
    card = json.loads((model_dir / "card.json").read_text())
    assert card["audit"]["splits"]["val"]["n"] == 12 and card["name"] == "seeded-cnn-32"
    markdown = (model_dir / "card.md").read_text()
    assert markdown.count(audit.AUDIT_HEADING) == 1 and "## Metrics" in markdown and "| zoom_in_15 |" in markdown
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".tmp")]


def test_robustness_summary_reads_the_audited_cards(model_dir, tmp_path):
    import shutil

    models = tmp_path / "models"
    models.mkdir()
    assert audit.robustness_summary(models).empty
    shutil.copytree(model_dir, models / "audited")
    (models / "audited" / "predictions.csv").write_text("path,split,label,score\na.png,val,0,0.1\nb.png,val,1,0.9\nc.png,test,0,0.2\nd.png,test,1,0.8\n")
    table = [{"name": "zoom_in_15", "goal": True, "passed": False, "delta_sensitivity": 0.01, "delta_specificity": -0.2},
             {"name": "gamma_0.7", "goal": True, "passed": True, "delta_sensitivity": -0.03, "delta_specificity": 0.0},
             {"name": "noise_8", "goal": False, "passed": None, "delta_sensitivity": 0.0, "delta_specificity": -0.5}]
    audit.write_card_audit(models / "audited", {"computed": "now", "threshold": 0.5, "goal": "g", "splits": {"val": {
        "n": 10, "per_class": 5, "seed": 0, "table": [dict(row, description="", mean_abs_delta_p=0.1, flipped=0.1, roc_auc=0.9,
                                                             sensitivity=0.9, specificity=0.8) for row in table],
        "robust": False, "failing": ["zoom_in_15"], "edges": {"reliant": True, "by_black_frame": None, "by_gradcam": None}}}})
    (row,) = audit.robustness_summary(models).to_dict("records")
    assert row["model"] == "audited" and row["robust (VALIDATION)"] == "fail" and row["failing changes"] == "zoom_in_15"
    assert row["max |change| specificity"] == 0.2 and row["max |change| sensitivity"] == 0.03  # noise is not a goal change
    assert row["reads the edges"] == "yes"


def test_audit_section_is_replaced_in_place():
    markdown = f"# m\n\n{audit.AUDIT_HEADING}\n\nold\n### sub\nold\n\n## Limitations\n\n- x\n"
    out = audit._replace_section(markdown, f"{audit.AUDIT_HEADING}\n\nnew\n")
    assert "old" not in out and "new" in out and out.index("new") < out.index("## Limitations") and "- x" in out


def test_write_card_refuses_a_folder_without_card(tmp_path):
    with pytest.raises(ValueError, match="No card.json"):
        audit.write_card_audit(tmp_path, {"splits": {}})


def test_plain_findings_speak_in_natural_frequencies():
    dataset = {"baselines": [{"size": 4, "features": 16, "val_roc_auc": 0.95, "test_roc_auc": 0.88},
                             {"variant": "edges", "size": 8, "features": 64, "val_roc_auc": 0.98}],
               "domain": {"normal": {"roc_auc": 0.9, "profile": [
                   {"words": "framing", "test_normals_move_towards_pneumonia": True}]}}}
    model = {"splits": {"val": {"robust": False, "failing": ["zoom_in_15"], "table": [
        {"name": "zoom_in_15", "description": "zoom in 15 %", "goal": True, "delta_specificity": -0.3, "delta_sensitivity": 0.0},
        {"name": "noise_8", "description": "noise", "goal": False, "delta_specificity": -0.04, "delta_sensitivity": 0.01}]}}}
    sentences = audit.plain_findings(dataset, "Model X", model)
    assert "4×4" in sentences[0] and "0.95" in sentences[0]
    assert "only its edges" in sentences[1] and "0.98" in sentences[1]
    assert "framing" in sentences[2]
    assert "30 more of every 100 healthy children" in sentences[3]
    assert "Of the 2 changes tried, 2 make it call more healthy children sick and 0 fewer, while it keeps finding" in sentences[4]


def test_command_line_help():
    result = subprocess.run([sys.executable, "-m", "core.audit", "--help"], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 0 and "model" in result.stdout and "data" in result.stdout


# --------------------------------------------------------------------------------------------- dataset audit


def test_dataset_audit_on_a_small_real_subset_and_its_cache(data_root, tmp_path, monkeypatch):
    from core import config, data

    index = data.load_index(data_root)
    small = pd.concat([rows.sort_values("relpath").head(24) for _, rows in index.groupby(["split", "label"])])
    found = audit.compute_dataset_audit(small, models_dir=tmp_path / "no-models", folds=3, repeats=2)
    assert [(row["variant"], row["size"]) for row in found["baselines"]] == [
        (variant, size) for variant in audit.THUMBNAIL_VARIANTS for size in audit.THUMBNAIL_SIZES]
    assert all(0.0 <= row["val_roc_auc"] <= 1.0 and row["test_n"] == 48 for row in found["baselines"])
    assert set(found["domain"]) == {"all", "normal"}
    normal = found["domain"]["normal"]
    assert normal["n_validation"] == normal["n_test"] == 24 and len(normal["profile"]) == audit.TOP_FEATURES
    assert found["score_correlations"] == {}
    json.dumps(found, allow_nan=False)

    monkeypatch.setattr(config, "AUDIT_DIR", tmp_path / "audit")
    assert audit.load_dataset_audit(data_root) is None
    found["fingerprint"] = data.dataset_fingerprint(data_root)
    audit.write_json_atomic(audit.audit_path(found["fingerprint"]), found)
    from core.audit import _dataset  # where dataset_audit() calls it

    monkeypatch.setattr(_dataset, "compute_dataset_audit", lambda *a, **k: pytest.fail("recomputed despite the cache"))
    assert audit.dataset_audit(data_root) == found
    assert audit.load_dataset_audit(tmp_path / "missing-folder") is None


def test_command_line_refuses_a_folder_without_a_model(tmp_path, caplog):
    assert audit.main(["model", str(tmp_path)]) == 1
    assert "No model.keras" in caplog.text
