"""core.models.zoo: every model builds flat, takes raw pixels, carries its preprocessing, loads with safe_mode=True."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.models import zoo

keras = pytest.importorskip("keras")

SMALL = {"mlp": 32, "cnn_reference": 32, "cnn_deep": 32}
TRANSFER_SIZES = {
    "vgg16": 32, "resnet50": 32, "densenet121": 32, "xception": 71,
    "inceptionv3": 75, "mobilenetv2": 32, "efficientnetb0": 32,
}
PREPROCESS_MODULES = {
    "vgg16": "vgg16", "resnet50": "resnet50", "densenet121": "densenet", "xception": "xception",
    "inceptionv3": "inception_v3", "mobilenetv2": "mobilenet_v2",
}


def _roundtrip(model, tmp_path: Path, x: np.ndarray) -> None:
    """Save, reload with safe_mode=True, and check the predictions are identical."""
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    expected = np.asarray(model(x, training=False))  # eager calls: no graph tracing for one small batch
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("architecture", sorted(SMALL))
def test_small_models_take_raw_pixels_and_output_one_probability(architecture: str, tmp_path: Path) -> None:
    size = SMALL[architecture]
    model = zoo.build_model(architecture, img_size=size)
    assert tuple(model.input.shape) == (None, size, size, 1)
    assert tuple(model.output.shape) == (None, 1)
    x = np.random.default_rng(0).uniform(0, 255, (3, size, size, 1)).astype("float32")
    y = np.asarray(model(x, training=False))
    assert y.shape == (3, 1) and ((y > 0) & (y < 1)).all()
    assert model.layers[1].name.startswith(zoo.PREPROCESS_PREFIX)
    _roundtrip(model, tmp_path, x)


def test_reference_cnn_has_the_published_shape() -> None:
    model = zoo.build_model("cnn_reference", img_size=64)
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [(c.filters, c.kernel_size) for c in convs] == [(32, (5, 5))] * 3
    assert len([l for l in model.layers if type(l).__name__ == "MaxPooling2D"]) == 3
    assert [l.units for l in model.layers if type(l).__name__ == "Dense"] == [128, 1]


def test_deep_cnn_has_five_conv_blocks_with_batch_norm_and_dropout() -> None:
    model = zoo.build_model("cnn_deep", img_size=128)
    types = [type(layer).__name__ for layer in model.layers]
    assert types.count("Conv2D") == 5 and types.count("BatchNormalization") == 5 and types.count("Dropout") >= 5


@pytest.mark.parametrize("architecture", sorted(TRANSFER_SIZES))
def test_transfer_models_are_flat_lambda_free_and_load_safely(architecture: str, tmp_path: Path) -> None:
    size = TRANSFER_SIZES[architecture]
    model = zoo.build_model(architecture, img_size=size, weights="none")
    assert tuple(model.input.shape) == (None, size, size, 3) and tuple(model.output.shape) == (None, 1)
    assert not any(isinstance(layer, keras.Model) for layer in model.layers), "backbone must not be nested"
    assert not any(type(layer).__name__ == "Lambda" for layer in model.layers)
    assert len(zoo.backbone_layers(model)) > 10
    model.get_layer(zoo.get_spec(architecture).finetune_from)  # the top blocks are reachable by name
    last = model.get_layer(zoo.last_conv_layer_name(model))
    assert len(last.output.shape) == 4
    x = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype("float32")
    _roundtrip(model, tmp_path, x)


@pytest.mark.parametrize("architecture", sorted(PREPROCESS_MODULES))
def test_preprocessing_layers_equal_keras_preprocess_input(architecture: str) -> None:
    import importlib

    module = importlib.import_module(f"keras.applications.{PREPROCESS_MODULES[architecture]}")
    x = np.random.default_rng(2).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    inputs = keras.Input((8, 8, 3))
    y = inputs
    for layer in zoo.preprocessing_layers(architecture):
        y = layer(y)
    ours = np.asarray(keras.Model(inputs, y)(x))
    np.testing.assert_allclose(ours, module.preprocess_input(x.copy()), rtol=1e-5, atol=1e-4)


def test_unknown_architecture_and_too_small_input_are_explained() -> None:
    with pytest.raises(ValueError, match="Choose one of"):
        zoo.build_model("alexnet")
    with pytest.raises(ValueError, match="at least 71"):
        zoo.build_model("xception", img_size=32, weights="none")
    assert zoo.get_spec("cnn-reference").name == "cnn_reference"


def test_mlp_has_no_convolution_to_explain() -> None:
    with pytest.raises(ValueError, match="no convolutional layer"):
        zoo.last_conv_layer_name(zoo.build_model("mlp", img_size=32))


@pytest.mark.parametrize("architecture", ["cnn_deep", "mlp"])
def test_per_image_normalisation_standardises_each_film_inside_the_model(architecture: str, tmp_path: Path) -> None:
    """The layer computes (x/255 - mean) / sqrt(var + 1e-3) per film; so, whatever the weights, a film and the same
    film with another exposure offset get the same score."""
    model = zoo.build_model(architecture, img_size=64, normalize="per-image", seed=3)
    film = np.random.default_rng(1).uniform(20, 200, (2, 64, 64, 1)).astype("float32")
    standardize = keras.Model(model.input, model.get_layer(zoo.PREPROCESS_PREFIX + "standardize").output)
    scaled = film / 255.0
    mean = scaled.mean(axis=(1, 2, 3), keepdims=True)
    expected = (scaled - mean) / np.sqrt(scaled.var(axis=(1, 2, 3), keepdims=True) + 1e-3)
    np.testing.assert_allclose(np.asarray(standardize(film)), expected, atol=1e-4)
    brighter = film + 40.0
    np.testing.assert_allclose(model.predict(brighter, verbose=0), model.predict(film, verbose=0), atol=1e-5)
    _roundtrip(model, tmp_path, film)


def test_unknown_normalisation_is_explained() -> None:
    with pytest.raises(ValueError, match="per-image"):
        zoo.build_model("cnn_deep", img_size=64, normalize="z-score")
