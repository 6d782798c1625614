"""core.models.efficientnet_lite: the legacy PyTorch reader on a hand-made file, the conversion against real photographs."""

from __future__ import annotations

import io
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from core.models import efficientnet_lite, zoo

pytest.importorskip("keras")


def _legacy_file(path: Path, tensors: dict[str, tuple[np.ndarray, int, tuple, tuple]]) -> None:
    """Write ``tensors`` (name -> (storage values, offset, size, stride)) as torch.save's legacy format would.

    Stand-in modules named torch / torch._utils make pickle record the same globals PyTorch records; nothing of
    PyTorch is needed, which is the point of the reader under test.
    """
    torch_module, utils_module = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # pragma: no cover - only its name is pickled
        raise AssertionError

    class FloatStorage:
        pass

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    utils_module._rebuild_tensor_v2, torch_module.FloatStorage, torch_module._utils = _rebuild_tensor_v2, FloatStorage, utils_module

    class _Tensor:
        def __init__(self, key, offset, size, stride):
            self.args = (key, offset, size, stride)

        def __reduce__(self):
            key, offset, size, stride = self.args
            return (_rebuild_tensor_v2, (("storage", key), offset, size, stride, False, OrderedDict()))

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "storage":
                key = obj[1]
                return ("storage", FloatStorage, key, "cpu", int(tensors_by_key[key].size))
            return None

    tensors_by_key = {str(i): np.asarray(values, dtype="<f4") for i, (values, *_rest) in enumerate(tensors.values())}
    state = OrderedDict((name, _Tensor(str(i), offset, size, stride)) for i, (name, (_, offset, size, stride)) in enumerate(tensors.items()))
    saved = dict(sys.modules)
    sys.modules.update({"torch": torch_module, "torch._utils": utils_module})
    try:
        buffer = io.BytesIO()
        for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, buffer, protocol=2)
        _Pickler(buffer, protocol=2).dump(state)
        pickle.dump(list(tensors_by_key), buffer, protocol=2)
        for values in tensors_by_key.values():
            buffer.write(np.int64(values.size).tobytes())
            buffer.write(values.tobytes())
    finally:
        sys.modules.clear()
        sys.modules.update(saved)
    path.write_bytes(buffer.getvalue())


def test_legacy_reader_returns_the_exact_values_with_offsets_and_strides(tmp_path: Path):
    storage = np.arange(12, dtype="float32")
    _legacy_file(tmp_path / "w.pth", {
        "conv.weight": (storage, 0, (2, 3, 2), (6, 2, 1)),
        "transposed": (storage, 0, (3, 4), (1, 3)),  # a non-contiguous view (stride 1 along the first axis)
        "tail": (storage, 8, (4,), (1,)),
    })
    tensors = efficientnet_lite.read_legacy_state_dict(tmp_path / "w.pth")
    assert list(tensors) == ["conv.weight", "transposed", "tail"]
    np.testing.assert_array_equal(tensors["conv.weight"], storage.reshape(2, 3, 2))
    np.testing.assert_array_equal(tensors["transposed"], storage.reshape(4, 3).T)
    np.testing.assert_array_equal(tensors["tail"], [8, 9, 10, 11])


def test_legacy_reader_refuses_a_file_that_names_other_code(tmp_path: Path):
    buffer = io.BytesIO()
    for header in (1, 1001, {}):
        pickle.dump(header, buffer, protocol=2)
    pickle.dump(OrderedDict(hook=print), buffer, protocol=2)  # builtins.print: a global no weights file needs
    (tmp_path / "evil.pth").write_bytes(buffer.getvalue())
    with pytest.raises(pickle.UnpicklingError, match=r"print; a weights file"):
        efficientnet_lite.read_legacy_state_dict(tmp_path / "evil.pth")


def test_wheel_weights_are_read_whole():
    state = efficientnet_lite.imagenet_state_dict()
    assert len(state) == 296 and state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280) and state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert all(np.isfinite(v).all() for v in state.values())


@pytest.fixture(scope="module")
def classifier():
    return efficientnet_lite.imagenet_classifier()


def _photo(name: str) -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    picture = Image.fromarray(getattr(skimage_data, name)()).resize((224, 224), Image.BILINEAR)
    return np.asarray(picture, dtype="float32")[None]


def test_converted_classifier_recognises_the_cat_in_chelsea(classifier):
    probabilities = classifier.predict(_photo("chelsea"), verbose=0)[0]
    top5 = set(np.argsort(probabilities)[::-1][:5].tolist())
    assert top5 & set(efficientnet_lite.CAT_CLASSES), top5  # tabby / tiger / Persian / Siamese / Egyptian cat
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-4)


def test_converted_classifier_recognises_the_cup_of_coffee(classifier):
    top5 = np.argsort(classifier.predict(_photo("coffee"), verbose=0)[0])[::-1][:5].tolist()
    assert {967, 968} & set(top5), top5  # ImageNet 967 espresso, 968 cup


def test_every_wheel_tensor_lands_in_the_layer_of_its_role(classifier):
    state = efficientnet_lite.imagenet_state_dict()
    np.testing.assert_array_equal(classifier.get_layer("stem_conv").get_weights()[0], state["_conv_stem.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(classifier.get_layer("block4_dwconv").get_weights()[0], state["_blocks.4._depthwise_conv.weight"].transpose(2, 3, 0, 1))
    gamma, beta, mean, variance = classifier.get_layer("top_bn").get_weights()
    np.testing.assert_array_equal(variance, state["_bn1.running_var"])
    copied = efficientnet_lite.load_imagenet_weights(classifier)
    assert copied == len([k for k in state if not k.endswith("num_batches_tracked")])  # every tensor but the counters


def test_a_wrong_shape_is_refused(classifier):
    state = dict(efficientnet_lite.imagenet_state_dict())
    state["_conv_head.weight"] = state["_conv_head.weight"][:10]
    with pytest.raises(ValueError, match="top_conv"):
        efficientnet_lite.load_imagenet_weights(classifier, state)


def test_zoo_builds_the_transfer_model_with_imagenet_weights_and_it_reloads_safely(tmp_path: Path):
    import keras

    model = zoo.build_model("efficientnet-lite0", img_size=64, weights="imagenet")
    assert model.output.shape[1:] == (1,) and zoo.last_conv_layer_name(model) == efficientnet_lite.LAST_CONV
    assert zoo.finetune_input_layer(model, "efficientnet_lite0").name == efficientnet_lite.FINETUNE_FROM
    state = efficientnet_lite.imagenet_state_dict()
    np.testing.assert_array_equal(model.get_layer("block15_project_conv").get_weights()[0],
                                  state["_blocks.15._project_conv.weight"].transpose(2, 3, 1, 0))
    films = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    model.save(tmp_path / "model.keras")
    again = keras.saving.load_model(tmp_path / "model.keras", compile=False, safe_mode=True)
    np.testing.assert_allclose(again.predict(films, verbose=0), model.predict(films, verbose=0), atol=1e-6)
