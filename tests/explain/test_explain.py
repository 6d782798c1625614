"""core.explain: fast Grad-CAM vs tf-keras-vis, other methods, overlays, deletion curve, activation maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core import explain, predict
from core.imaging import decode_xray


@pytest.fixture(scope="module")
def scorer(tiny_cnn_dir: Path) -> predict.Scorer:
    return predict.load_scorer(tiny_cnn_dir)


@pytest.fixture(scope="module")
def true_positive(scorer: predict.Scorer, data_root: Path) -> np.ndarray:
    """The model input of the test PNEUMONIA image (among the first 40) the tiny model is most sure about."""
    files = sorted((data_root / "test" / "PNEUMONIA").glob("*.jpeg"))[:40]
    inputs = np.stack([scorer.prepare(decode_xray(f)) for f in files])
    probabilities = scorer.predict_batch(inputs)
    assert probabilities.max() > scorer.threshold, "the fixture model finds no true positive"
    return inputs[int(np.argmax(probabilities))]


def test_layers_are_listed_with_shapes_and_the_last_convolution_is_the_default(scorer: predict.Scorer) -> None:
    layers = explain.feature_layers(scorer.model)
    assert [(i.name, i.output_shape) for i in layers if i.kind == "Conv2D"] == [
        ("conv1", (64, 64, 8)), ("conv2", (32, 32, 16)), ("conv3", (16, 16, 32))]
    assert explain.default_target_layer(scorer.model) == "conv3"
    assert [i.name for i in layers] == ["conv1", "pool1", "conv2", "pool2", "conv3"]  # no preprocessing layer
    assert [i.block for i in layers] == ["stage 1 · 64×64", "stage 1 · 64×64", "stage 2 · 32×32", "stage 2 · 32×32",
                                         "stage 3 · 16×16"]  # a pooling layer closes the stage it shrinks
    assert "16×16×32" in layers[-1].label
    assert explain.default_layer_index(layers[:2]) == 0  # conv1, not the pooling layer


def test_models_without_convolutions_or_nested_get_clear_errors() -> None:
    import keras

    inputs = keras.Input((8, 8, 1))
    dense = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match="SmoothGrad"):
        explain.default_target_layer(dense)
    outer_in = keras.Input((8, 8, 1))
    nested = keras.Model(outer_in, dense(outer_in))
    with pytest.raises(ValueError, match="flat"):
        explain.GradCam(nested)


def test_fast_gradcam_matches_tf_keras_vis(scorer: predict.Scorer, true_positive: np.ndarray) -> None:
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import BinaryScore

    gradcam = explain.gradcam_for(scorer.model)
    reference = Gradcam(scorer.model, model_modifier=ReplaceToLinear(), clone=True)
    options = {"penultimate_layer": "conv3", "seek_penultimate_conv_layer": False}
    at_layer = reference(BinaryScore(True), true_positive[None], expand_cam=False, **options)[0]
    np.testing.assert_allclose(gradcam(true_positive[None])[0][0], at_layer, atol=2e-3)  # same algorithm (float32 rounding)
    ours = gradcam.heatmaps(true_positive[None])[0]
    upsampled = reference(BinaryScore(True), true_positive[None], **options)[0]
    assert ours.shape == upsampled.shape == (64, 64)
    assert np.corrcoef(ours.ravel(), upsampled.ravel())[0, 1] > 0.9  # only the upsampling differs
    assert explain.gradcam_for(scorer.model) is explain.gradcam_for(scorer.model, "conv3")  # built once, reused
    # the shared model keeps its sigmoid: tf-keras-vis worked on a clone
    assert scorer.predict_batch(true_positive[None])[0] < 1.0


def test_gradcam_for_normal_is_the_complement_evidence(scorer: predict.Scorer, true_positive: np.ndarray) -> None:
    gradcam = explain.gradcam_for(scorer.model)
    raw_pos, probability = gradcam(true_positive[None], target="pneumonia")
    raw_neg, _ = gradcam(true_positive[None], target="normal")
    assert probability[0] == pytest.approx(scorer.predict_batch(true_positive[None])[0], abs=1e-5)
    # ReLU keeps the positive part of +cam and of -cam: where one is positive the other is zero
    assert np.all((raw_pos == 0) | (raw_neg == 0))


def _known_model(gain: float) -> object:
    """A CNN with known weights: log-odds = gain * mean(relu(x / 255 - 0.5)) - 1 over a (32, 32, 1) input in [0, 255].

    Its only convolution is that 1x1 'relu(x/255 - 0.5)', so its Grad-CAM is exactly that map (the head's gradient
    is the same positive number everywhere): the heatmap of any input is known without training anything.
    """
    import keras

    inputs = keras.Input((32, 32, 1), name="pixels")
    conv = keras.layers.Conv2D(1, 1, activation="relu", name="bright")
    pooled = keras.layers.GlobalAveragePooling2D(name="head_pool")(conv(inputs))
    dense = keras.layers.Dense(1, activation="sigmoid", name="output")
    model = keras.Model(inputs, dense(pooled))
    conv.set_weights([np.full((1, 1, 1, 1), 1 / 255.0, np.float32), np.array([-0.5], np.float32)])
    dense.set_weights([np.array([[gain]], np.float32), np.array([-1.0], np.float32)])
    return model


def _bright_square() -> np.ndarray:
    """A grey (32, 32, 1) input with a white 8x8 square at rows 4-11, columns 18-25 (the only pixels above 127.5)."""
    x = np.full((32, 32, 1), 100.0, np.float32)
    x[4:12, 18:26] = 255.0
    return x


def test_gradcam_of_a_known_model_is_the_known_map_and_its_deletion_curve_falls() -> None:
    model, x = _known_model(8.0), _bright_square()
    heatmap = explain.explain(model, x, method="gradcam")
    expected = np.zeros((32, 32), np.float32)
    expected[4:12, 18:26] = 1.0
    np.testing.assert_allclose(heatmap, expected, atol=1e-6)  # the layer is at input resolution: no upsampling
    logits = explain.logit_function(model)(x[None])
    assert logits[0] == pytest.approx(8.0 * 0.5 * 64 / 1024 - 1.0, abs=1e-5)  # gain * mean(relu) + bias
    predict_batch = predict.scorer_from_model(model).predict_batch
    curve = explain.deletion_curve(predict_batch, x, heatmap, steps=8, logit_batch=explain.logit_function(model))
    assert curve.fractions[0] == 0.0 and curve.fractions[-1] == 1.0
    assert curve.scores[0] == pytest.approx(logits[0], abs=1e-5)
    assert curve.scores[-1] == pytest.approx(curve.random_scores[-1], abs=1e-5)  # everything blurred either way
    assert curve.scores[1] < curve.random_scores[1]  # the square goes first under the heatmap's order
    assert curve.faithful and curve.verdict().startswith("Faithful")
    normal = explain.deletion_curve(predict_batch, x, heatmap, steps=8, target="normal", logit_batch=explain.logit_function(model))
    np.testing.assert_allclose(normal.scores, -curve.scores)  # the other class: the log-odds change sign
    np.testing.assert_allclose(normal.probabilities, 1.0 - curve.probabilities, atol=1e-6)


def test_deletion_test_stays_informative_at_a_saturated_prediction() -> None:
    """gain 4000: P(pneumonia) is exactly 1.0 in float32 until most of the square is blurred, yet the log-odds fall."""
    model, x = _known_model(4000.0), _bright_square()
    heatmap = explain.explain(model, x, method="gradcam")
    predict_batch = predict.scorer_from_model(model).predict_batch
    curve = explain.deletion_curve(predict_batch, x, heatmap, steps=8, logit_batch=explain.logit_function(model))
    assert curve.probabilities[0] == 1.0 and curve.random_probabilities[1] == 1.0  # saturated: probabilities say nothing
    assert curve.scores[0] == pytest.approx(4000.0 * 0.5 * 64 / 1024 - 1.0, rel=1e-5)
    assert curve.verdict().startswith("Faithful")
    # the old probability scale could not tell the orders apart at the start: both curves begin flat at 1.0
    assert curve.probabilities[0] == curve.random_probabilities[0] == 1.0


def test_deletion_curve_on_the_trained_fixture_has_consistent_mechanics(scorer: predict.Scorer, true_positive: np.ndarray) -> None:
    """What holds for any model: the curve starts at the model's own log-odds and both orders end fully blurred.
    (Whether this tiny model's heatmap is faithful depends on what it learned; that is measured, not asserted.)"""
    heatmap = explain.explain(scorer.model, true_positive, method="gradcam")
    curve = explain.deletion_curve(scorer.predict_batch, true_positive, heatmap, steps=10, logit_batch=explain.logit_function(scorer.model))
    probability = float(scorer.predict_batch(true_positive[None])[0])
    assert curve.probabilities[0] == pytest.approx(probability, abs=1e-5)
    assert curve.scores[0] == pytest.approx(np.log(probability / (1 - probability)), abs=1e-3)
    assert curve.scores[-1] == pytest.approx(curve.random_scores[-1], abs=1e-4)
    assert curve.area == pytest.approx(np.trapezoid(curve.scores - curve.scores[0], curve.fractions))


def test_deletion_curve_known_answer() -> None:
    """A 'model' scoring the contrast of the top-left quadrant: a heatmap on that quadrant must beat random."""
    x = np.full((32, 32, 1), 127.5, np.float32)
    x[:16, :16, 0] = np.indices((16, 16)).sum(axis=0) % 2 * 255.0  # a checkerboard: pure detail, blurs to grey

    def predict_batch(batch: np.ndarray) -> np.ndarray:
        return np.abs(batch[:, :16, :16, 0] - 127.5).mean(axis=(1, 2)) / 127.5 * 0.98 + 0.01  # in [0.01, 0.99]

    right = np.zeros((32, 32), np.float32)
    right[:16, :16] = 1.0
    good = explain.deletion_curve(predict_batch, x, right, steps=4)
    wrong = explain.deletion_curve(predict_batch, x, 1.0 - right, steps=4)
    assert good.probabilities[0] == pytest.approx(0.99)
    assert good.scores[0] == pytest.approx(np.log(0.99 / 0.01))  # log-odds computed from the probabilities
    assert good.probabilities[1] < 0.15  # the quadrant is a quarter of the image: gone after the first step
    assert good.area < good.random_area and wrong.area > good.random_area
    assert good.verdict().startswith("Faithful") and wrong.verdict().startswith("Not faithful")


@pytest.mark.parametrize("method", ["gradcam++", "scorecam", "smoothgrad"])
def test_tf_keras_vis_methods_give_normalised_maps(scorer: predict.Scorer, true_positive: np.ndarray, method: str) -> None:
    heatmap = explain.explain(scorer.model, true_positive, method=method, scorecam_max_channels=8, smoothgrad_samples=4)
    assert heatmap.shape == (64, 64) and heatmap.min() == 0.0 and heatmap.max() == pytest.approx(1.0)


def test_unknown_method_is_refused(scorer: predict.Scorer, true_positive: np.ndarray) -> None:
    with pytest.raises(ValueError, match="choose one of"):
        explain.explain(scorer.model, true_positive, method="lime")


def test_overlay_keeps_the_original_resolution_and_blends_known_pixels() -> None:
    import cv2

    pixels = np.full((90, 30), 0.5, np.float32)  # tall, non-square original
    heatmap = np.zeros((8, 8), np.float32)
    heatmap[0, 0] = 1.0
    grey = explain.overlay(pixels, heatmap, opacity=0.0)
    assert grey.shape == (90, 30, 3) and grey.dtype == np.uint8 and np.all(grey == 128)
    full = explain.overlay(pixels, heatmap, opacity=1.0)
    red = cv2.cvtColor(cv2.applyColorMap(np.array([[255]], np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)[0, 0]
    np.testing.assert_array_equal(full[0, 0], red)  # the hot corner maps to the top-left of the original
    assert full[-1, -1, 0] < 50  # the cold corner is blue
    with pytest.raises(ValueError, match="opacity"):
        explain.overlay(pixels, heatmap, opacity=1.5)
    assert explain.to_png(full)[:8] == b"\x89PNG\r\n\x1a\n"


def test_layer_activations_equal_the_keras_sub_model(scorer: predict.Scorer, true_positive: np.ndarray) -> None:
    import keras

    activations = explain.layer_activations(scorer.model, "conv2", true_positive)
    reference = keras.Model(scorer.model.inputs, scorer.model.get_layer("conv2").output).predict(true_positive[None], verbose=0)[0]
    np.testing.assert_allclose(activations, reference, rtol=1e-4, atol=1e-5)
    order = explain.channel_order(activations, by="mean")
    means = activations.mean(axis=(0, 1))
    assert np.all(np.diff(means[order]) <= 0) and sorted(order) == list(range(16))
    assert explain.colourise(activations[:, :, 0]).shape == (96, 96, 3)


def test_filter_visualisation_excites_its_filter(scorer: predict.Scorer, true_positive: np.ndarray) -> None:
    import keras

    chosen = [int(c) for c in explain.channel_order(explain.layer_activations(scorer.model, "conv2", true_positive))[:2]]
    images = explain.filter_visualisations(scorer.model, "conv2", chosen, steps=15)
    assert images.shape == (2, 64, 64) and images.min() >= 0.0 and images.max() <= 1.0
    sub_model = keras.Model(scorer.model.inputs, scorer.model.get_layer("conv2").output)
    start = np.clip(128.0 + np.random.default_rng(0).normal(0.0, explain.FILTER_VIS_NOISE, (2, 64, 64, 1)), 0, 255).astype(np.float32)
    # rerun the ascent without display scaling to compare activations before and after
    ascended = start.copy()
    ascend = explain.cached(scorer.model, ("filters", "conv2"), lambda: None)
    for _ in range(15):
        ascended = ascend(ascended, np.array(chosen, np.int32), np.float32(8.0)).numpy()
    before = sub_model.predict(start, verbose=0)
    after = sub_model.predict(ascended, verbose=0)
    for i, channel in enumerate(chosen):
        assert after[i, :, :, channel].mean() > before[i, :, :, channel].mean()
    with pytest.raises(ValueError, match="between"):
        explain.filter_visualisations(scorer.model, "conv2", [99])


def test_ensembles_average_their_convolutional_members(scorer: predict.Scorer, true_positive: np.ndarray) -> None:
    import keras

    from core import guard as ood
    from core.models import zoo

    inputs = keras.Input((32, 32, 1))
    dense = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inputs)), name="dense")
    ensemble = zoo.build_ensemble([scorer.model, dense], img_size=96)
    assert explain.available_methods(ensemble) == ["gradcam"]
    assert explain.available_methods(scorer.model) == list(explain.METHODS)
    rgb = np.repeat(predict.prepare_input(true_positive[:, :, 0] / 255.0, 96, 96, 1), 3, axis=2)
    heatmap = explain.explain(ensemble, rgb)
    member = ensemble.layers[[layer.name for layer in ensemble.layers].index(explain.members(ensemble)[0].name)]
    member_input = explain.member_adapter(ensemble, member)(rgb[None]).numpy()
    expected = explain.resize_maps(explain.gradcam_for(member).heatmaps(member_input), 96, 96)[0]
    np.testing.assert_allclose(heatmap, (expected - expected.min()) / (expected.max() - expected.min()), atol=1e-5)
    names = [info.name for info in explain.feature_layers(ensemble)]
    assert names[-1].endswith("/conv3") and names[-1].startswith(member.name)
    assert explain.layer_activations(ensemble, names[-1], rgb).shape == (16, 16, 32)
    assert explain.filter_visualisations(ensemble, names[-1], [0], steps=2).shape == (1, 64, 64)  # member's own size
    # members' penultimate features side by side: the tiny CNN's 32 pooled channels + the dense model's 32×32 pixels
    assert tuple(ood.embedding_function(ensemble)(rgb[None]).shape) == (1, 32 + 32 * 32)
    with pytest.raises(ValueError, match="ensemble"):
        explain.explain(ensemble, rgb, method="scorecam")
