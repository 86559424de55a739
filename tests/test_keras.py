"""LSTM.from_keras: which layers it takes, and how it refuses the rest."""

import numpy as np
import pytest

import reflstm
from keras_layers import TOLERANCE, call_keras, keras_module, make_layer


def built(layer, input_dim=3):
    layer.build((None, None, input_dim))
    return layer


def refused(layer, *words):
    with pytest.raises(reflstm.ReflstmError) as error:
        reflstm.LSTM.from_keras(layer)
    for word in words:
        assert word in str(error.value), str(error.value)


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
def test_other_layers_are_refused(keras_version):
    """GRU, SimpleRNN, Dense, RNN(GRUCell) and Bidirectional are refused, naming the class."""
    keras = keras_module(keras_version)
    refused(built(keras.layers.GRU(4)), "GRU")
    refused(built(keras.layers.SimpleRNN(4)), "SimpleRNN")
    refused(built(keras.layers.Dense(4)), "Dense")
    refused(built(keras.layers.RNN(keras.layers.GRUCell(4))), "GRUCell")
    bidirectional = keras.layers.Bidirectional(keras.layers.LSTM(4))
    bidirectional(np.zeros((1, 2, 3), "float32"))
    refused(bidirectional, "Bidirectional", "forward_layer")


def test_non_keras_objects_are_refused():
    """Something that is not a Keras layer at all is refused."""
    refused(np.zeros((3, 3)), "layer", "numpy.ndarray")


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
def test_unbuilt_layer_is_refused(keras_version):
    """A layer without weights yet is refused with what to do."""
    refused(keras_module(keras_version).layers.LSTM(4), "built")


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
def test_custom_activation_is_refused(keras_version):
    """A user's own activation function is refused, not guessed."""
    layer = built(keras_module(keras_version).layers.LSTM(4, activation=lambda z: z * 2))
    refused(layer, "activation", "built-in Keras")


def test_mixed_precision_is_refused():
    """A mixed_float16 layer (float32 weights, float16 arithmetic) is refused."""
    layer = built(keras_module(3).layers.LSTM(4, dtype="mixed_float16"))
    refused(layer, "mixed-precision")


def test_time_major_is_refused():
    """tf_keras's time_major=True is not modelled, and says so."""
    refused(built(keras_module(2).layers.LSTM(4, time_major=True)), "time_major")


def test_tf_keras_activation_layer_with_other_arguments_is_refused():
    """A tf_keras activation layer configured away from its defaults is refused."""
    keras = keras_module(2)
    layer = built(keras.layers.LSTM(4, activation=keras.layers.LeakyReLU(alpha=0.1)))
    refused(layer, "LeakyReLU", "default arguments")


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
def test_framework_tanh_and_sigmoid_are_accepted(keras_version):
    """tanh and sigmoid given as TensorFlow or keras.ops functions convert and match Keras."""
    import tensorflow as tf

    pairs = [(tf.tanh, tf.sigmoid), (tf.math.tanh, tf.math.sigmoid)]
    if keras_version == 3:
        import keras

        pairs.append((keras.ops.tanh, keras.ops.sigmoid))
    x = np.random.default_rng(0).normal(size=(2, 5, 3))
    for activation, recurrent in pairs:
        layer = make_layer(keras_version, 3, 4, activation=activation, recurrent_activation=recurrent,
                           return_sequences=True)
        ref = reflstm.LSTM.from_keras(layer)
        assert (ref.activation, ref.recurrent_activation) == ("tanh", "sigmoid")
        tol = TOLERANCE["float64"]
        np.testing.assert_allclose(ref(x), call_keras(layer, x), rtol=tol, atol=tol)


def test_converted_options_are_visible():
    """The converted LSTM shows the layer's options and Keras version."""
    layer = make_layer(2, 3, 4, recurrent_activation="hard_sigmoid", go_backwards=True, use_bias=False)
    ref = reflstm.LSTM.from_keras(layer)
    assert ref.keras_version == 2 and ref.go_backwards and ref.bias is None and ref.b_f is None
    assert "hard_sigmoid" in repr(ref) and "use_bias=False" in repr(ref)
