"""Keras 1 and CuDNNLSTM layouts, against tf_keras's own legacy converters and its LSTM."""

import numpy as np
import pytest

import reflstm
from keras_layers import TOLERANCE, call_keras, keras_module

INPUT_DIM, UNITS = 3, 4


def tf_keras_converter():
    from tf_keras.src.saving.legacy.hdf5_format import preprocess_weights_for_loading

    return preprocess_weights_for_loading


def target_layer(**options):
    k = keras_module(2)
    layer = k.layers.LSTM(UNITS, return_sequences=True, dtype="float64", **options)
    layer.build((None, None, INPUT_DIM))
    return layer


def test_keras1_arrays_match_tf_keras_conversion():
    """Keras 1's 12 arrays: the same LSTM as tf_keras's loader makes of them, and its output."""
    rng = np.random.default_rng(0)
    arrays = []
    for _ in "icfo":
        arrays += [rng.normal(size=(INPUT_DIM, UNITS)), rng.normal(size=(UNITS, UNITS)), rng.normal(size=UNITS)]
    layer = target_layer(recurrent_activation="hard_sigmoid")
    layer.set_weights(tf_keras_converter()(layer, arrays, original_keras_version="1"))
    ref = reflstm.LSTM.from_keras1(arrays, return_sequences=True)
    assert ref.keras_version == 2 and ref.recurrent_activation == "hard_sigmoid"
    x = rng.normal(size=(2, 5, INPUT_DIM))
    tol = TOLERANCE["float64"]
    np.testing.assert_allclose(ref(x), call_keras(layer, x), rtol=tol, atol=tol)


def test_cudnn_weights_match_tf_keras_conversion():
    """CuDNNLSTM weights (8*units bias, non-zero halves): as tf_keras converts them, same output."""
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(INPUT_DIM, 4 * UNITS))
    recurrent = rng.normal(size=(UNITS, 4 * UNITS))
    bias = rng.normal(size=8 * UNITS)
    layer = target_layer()
    converted = tf_keras_converter()(layer, [kernel, recurrent, bias])
    layer.set_weights(converted)
    ref = reflstm.LSTM.from_cudnn(kernel, recurrent, bias, return_sequences=True, keras_version=2)
    for ours, theirs in zip((ref.kernel, ref.recurrent_kernel, ref.bias), converted):
        np.testing.assert_array_equal(ours, theirs)
    x = rng.normal(size=(2, 5, INPUT_DIM))
    tol = TOLERANCE["float64"]
    np.testing.assert_allclose(ref(x), call_keras(layer, x), rtol=tol, atol=tol)


def test_wrong_array_counts_are_refused():
    """Not twelve arrays, or a 4*units bias for cuDNN: refused with what was expected."""
    with pytest.raises(reflstm.ReflstmError, match="12"):
        reflstm.LSTM.from_keras1([np.zeros((2, 2))] * 3)
    with pytest.raises(reflstm.ReflstmError, match="8\\*units"):
        reflstm.LSTM.from_cudnn(np.zeros((3, 16)), np.zeros((4, 16)), np.zeros(16))


def test_to_cudnn_matches_tf_keras_conversion():
    """to_cudnn() gives the CuDNNLSTM weights tf_keras's converter makes, and converts back."""
    from tf_keras.src.layers.rnn.cudnn_lstm import CuDNNLSTM

    rng = np.random.default_rng(2)
    ref = reflstm.LSTM(rng.normal(size=(INPUT_DIM, 4 * UNITS)), rng.normal(size=(UNITS, 4 * UNITS)),
                       rng.normal(size=4 * UNITS))
    cudnn = CuDNNLSTM(UNITS)
    cudnn.build((None, None, INPUT_DIM))
    theirs = tf_keras_converter()(cudnn, [ref.kernel, ref.recurrent_kernel, ref.bias])
    ours = ref.to_cudnn()
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_array_equal(ours[1], theirs[1])
    np.testing.assert_allclose(ours[2][: 4 * UNITS] + ours[2][4 * UNITS :],
                               theirs[2][: 4 * UNITS] + theirs[2][4 * UNITS :], rtol=1e-15)
    back = reflstm.LSTM.from_cudnn(*ours)
    np.testing.assert_array_equal(back.kernel, ref.kernel)
    np.testing.assert_array_equal(back.bias, ref.bias)


def test_to_keras1_round_trip_through_tf_keras():
    """to_keras1() arrays, loaded by tf_keras's Keras 1 converter, give back the LSTM's weights."""
    rng = np.random.default_rng(3)
    ref = reflstm.LSTM(rng.normal(size=(INPUT_DIM, 4 * UNITS)), rng.normal(size=(UNITS, 4 * UNITS)),
                       rng.normal(size=4 * UNITS), recurrent_activation="hard_sigmoid", keras_version=2)
    layer = target_layer(recurrent_activation="hard_sigmoid")
    converted = tf_keras_converter()(layer, ref.to_keras1(), original_keras_version="1")
    for ours, theirs in zip((ref.kernel, ref.recurrent_kernel, ref.bias), converted):
        np.testing.assert_array_equal(ours, theirs)
