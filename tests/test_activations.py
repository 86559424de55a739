"""Every activation name against Keras's own function of that name, in both Keras versions."""

import warnings

import numpy as np
import pytest

from keras_layers import keras_module
from reflstm.cells import activations
from reflstm.errors import ReflstmError

# Ordinary values, the kinks of the piecewise functions, and extremes.
GRID = np.concatenate(
    [np.linspace(-8, 8, 161), [-3, -2.5, -1, -0.5, 0, 0.5, 1, 2.5, 3], [-1e4, -88, 88, 1e4, 0.25]]
)
TOLERANCE = {"float64": 1e-13, "float32": 1e-6}


def keras_activation(keras_version, name, x):
    import tensorflow as tf

    fn = keras_module(keras_version).activations.get(name)
    return np.asarray(fn(tf.constant(x)))


def cases():
    for keras_version in (3, 2):
        for name in activations.names(keras_version):
            for dtype in ("float64", "float32"):
                if dtype == "float64" and name in FLOAT32_ONLY:
                    continue  # refused in float64, as tested below
                yield pytest.param(keras_version, name, dtype, id=f"keras{keras_version}-{name}-{dtype}")


FLOAT32_ONLY = ("ReLU", "ELU", "LeakyReLU", "Softmax", "ThresholdedReLU")  # tf_keras layer names


@pytest.mark.parametrize("keras_version, name, dtype", list(cases()))
def test_matches_keras_function(keras_version, name, dtype):
    """Same values as Keras's function, same dtype, and no floating-point warnings."""
    x = GRID.astype(dtype).reshape(-1, 7)  # softmax-like functions act along the last axis
    expected = keras_activation(keras_version, name, x)
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        actual = activations.get(name, keras_version)(x)
    assert actual.dtype == x.dtype
    finite = np.isfinite(expected)
    assert np.array_equal(np.isfinite(actual), finite)
    assert np.array_equal(actual[~finite], expected[~finite], equal_nan=True)
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=tol, atol=tol)


def test_hard_sigmoid_differs_between_keras_versions():
    """hard_sigmoid is relu6(x + 3) / 6 in Keras 3 and clip(0.2 x + 0.5, 0, 1) in Keras 2."""
    x = np.array([-3.0, -2.5, -1.0, 0.0, 1.0, 2.5, 3.0])
    np.testing.assert_array_equal(
        activations.get("hard_sigmoid", 3)(x), [0, 1 / 12, 1 / 3, 0.5, 2 / 3, 11 / 12, 1]
    )
    np.testing.assert_array_equal(
        activations.get("hard_sigmoid", 2)(x), [0, 0, 0.3, 0.5, 0.7, 1, 1]
    )


@pytest.mark.parametrize(
    "name, keras_version, words",
    [
        ("glu", 3, "halves the units axis"),
        ("threshold", 3, "two arguments"),
        ("PReLU", 2, "trainable weights"),
        ("sparsemax", 2, "keras_version=3"),
        ("ReLU", 3, "keras_version=2"),
        ("swishy", 3, "one of the Keras 3 activations"),
    ],
)
def test_unusable_and_unknown_names_are_refused(name, keras_version, words):
    """A name Keras cannot use in an LSTM, or does not know, is refused with the reason."""
    with pytest.raises(ReflstmError, match="activation") as error:
        activations.get(name, keras_version)
    assert words in str(error.value)
    assert repr(name) in str(error.value)


@pytest.mark.parametrize("name", ["glu", "threshold"])
def test_keras_also_fails_on_unusable_names(name):
    """The Keras 3 names refused as unusable really fail inside a Keras 3 LSTM."""
    keras = keras_module(3)
    layer = keras.layers.LSTM(5, activation=name)
    with pytest.raises(Exception):
        layer(np.zeros((2, 3, 4), "float32"))


@pytest.mark.parametrize("name", FLOAT32_ONLY)
def test_tf_keras_layer_names_are_float32_only(name):
    """tf_keras's activation-layer names fail in a float64 tf_keras LSTM, and reflstm refuses them."""
    keras = keras_module(2)
    layer = keras.layers.LSTM(5, activation=name, dtype="float64")
    with pytest.raises(Exception):
        layer(np.zeros((2, 3, 4)))
    with pytest.raises(ReflstmError, match="float32 layer"):
        activations.get(name, 2, dtype="float64")
    assert activations.get(name, 2, dtype="float32") is not None
