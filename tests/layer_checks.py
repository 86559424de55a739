"""One check shared by the tests of the layers around recurrent layers: a saved model's predict,
and every layer's output inside it, equal to what Keras computes for the same layers."""

import numpy as np

from keras_layers import keras_module
from test_files import TOLERANCE, as_list, keras_eager


def largest_relative_difference(actual, expected):
    """max |actual - expected| / max(1, |expected|)."""
    return float(np.max(np.abs(actual - expected) / np.maximum(1, np.abs(expected))))


def assert_every_layer_matches_keras(model, ref, x, keras_version, dtype):
    """`ref` (reflstm's load of `model`) predicts what Keras does, and `ref.layer_outputs(x)` holds
    every layer of `model` but its inputs, each equal to Keras's output of that layer (one
    intermediate model with every layer's output, called eagerly), relative to max(1, |Keras|)."""
    tolerance = TOLERANCE[dtype]
    for ours, theirs in zip(as_list(ref.predict(x)), as_list(keras_eager(model, x)), strict=True):
        assert ours.shape == theirs.shape
        assert largest_relative_difference(ours, theirs) < tolerance, "predict"
    outputs = ref.layer_outputs(x)
    names = [layer.name for layer in model.layers if type(layer).__name__ != "InputLayer"]
    assert set(names) <= set(outputs), f"layers not run: {set(names) - set(outputs)}"
    k = keras_module(keras_version)
    wanted = [as_list(model.get_layer(name).output) for name in names]
    probe = k.Model(model.inputs, [tensor for tensors in wanted for tensor in tensors])
    theirs = iter(as_list(keras_eager(probe, x)))
    for name, tensors in zip(names, wanted):
        for ours in as_list(outputs[name])[: len(tensors)]:
            expected = next(theirs)
            assert ours.shape == expected.shape, name
            assert largest_relative_difference(ours, expected) < tolerance, name
