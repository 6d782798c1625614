"""core.models._wheels: putting a wheel's tensors into a Keras layer, shapes checked first."""

from __future__ import annotations

import numpy as np
import pytest

from core.models._wheels import set_layer_weights


def test_tensors_of_the_right_shapes_are_set_exactly_and_wrong_ones_are_refused():
    import keras

    layer = keras.layers.Dense(3, name="head")
    layer.build((None, 2))
    kernel, bias = np.arange(6, dtype="float32").reshape(2, 3), np.array([1, 2, 3], dtype="float32")
    set_layer_weights(layer, [kernel, bias], "A test wheel")
    np.testing.assert_array_equal(layer.get_weights()[0], kernel)
    np.testing.assert_array_equal(layer.get_weights()[1], bias)
    with pytest.raises(ValueError, match=r"A test wheel: layer head expects \[\(2, 3\), \(3,\)\], the weights have \[\(3, 2\), \(3,\)\]"):
        set_layer_weights(layer, [kernel.T, bias], "A test wheel")
    with pytest.raises(ValueError, match="A test wheel: layer head"):
        set_layer_weights(layer, [kernel], "A test wheel")  # a tensor missing
    np.testing.assert_array_equal(layer.get_weights()[0], kernel)  # a refused set changes nothing
