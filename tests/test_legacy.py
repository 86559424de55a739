"""Keras 1's per-gate arrays and Keras 2's CuDNNLSTM / CuDNNGRU weights, against tf_keras's own
legacy converter (tf_keras/src/saving/legacy/hdf5_format.py) and its LSTM, GRU and SimpleRNN."""

import numpy as np
import pytest

import reflstm
from keras_layers import TOLERANCE, call_keras, make_layer

INPUT_DIM, UNITS = 3, 4
CLASSES = {"LSTM": reflstm.LSTM, "GRU": reflstm.GRU, "SimpleRNN": reflstm.SimpleRNN}
KERAS1_GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}
# The tf_keras layer each Keras 1 layer loads into: Keras 1's GRU reset before U_h, and its
# inner_activation defaulted to hard_sigmoid.
KERAS1_TARGETS = {
    "LSTM": {"recurrent_activation": "hard_sigmoid"},
    "GRU": {"recurrent_activation": "hard_sigmoid", "reset_after": False},
    "SimpleRNN": {},
}
CUDNN_GATES = {"LSTM": 4, "GRU": 3}


def tf_keras_converter():
    from tf_keras.src.saving.legacy.hdf5_format import preprocess_weights_for_loading

    return preprocess_weights_for_loading


def tf_keras_layer(kind, **options):
    """A built float64 tf_keras layer of `kind` returning sequences (its weights to be replaced)."""
    return make_layer(2, INPUT_DIM, UNITS, "float64", kind=kind, return_sequences=True, **options)


def keras1_arrays(kind, rng):
    """Keras 1's per-gate arrays of `kind`: every gate's W, U and b drawn on its own, b non-zero."""
    arrays = []
    for k in range(KERAS1_GATES[kind]):
        arrays += [rng.normal(0.2 * k, 0.6, (INPUT_DIM, UNITS)), rng.normal(-0.2 * k, 0.6, (UNITS, UNITS)),
                   rng.uniform(-1, 1, UNITS) + 0.25 * (k + 1)]
    return arrays


def assert_same_weights(ref, weights):
    for ours, theirs in zip((ref.kernel, ref.recurrent_kernel, ref.bias), weights, strict=True):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("kind", list(KERAS1_TARGETS))
def test_keras1_arrays_match_tf_keras_conversion(kind):
    """Keras 1's arrays: the weights tf_keras's Keras 1 loader makes of them, and its layer's output."""
    rng = np.random.default_rng(0)
    arrays = keras1_arrays(kind, rng)
    layer = tf_keras_layer(kind, **KERAS1_TARGETS[kind])
    converted = tf_keras_converter()(layer, arrays, original_keras_version="1")
    layer.set_weights(converted)
    ref = CLASSES[kind].from_keras1(arrays, return_sequences=True)
    assert_same_weights(ref, converted)
    assert ref.keras_version == 2 and getattr(ref, "reset_after", False) is False
    assert getattr(ref, "recurrent_activation", "hard_sigmoid") == "hard_sigmoid"
    x = rng.normal(size=(2, 5, INPUT_DIM))
    tol = TOLERANCE["float64"]
    np.testing.assert_allclose(ref(x), call_keras(layer, x), rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", list(KERAS1_TARGETS))
def test_to_keras1_round_trip_through_tf_keras(kind):
    """to_keras1() arrays, loaded by tf_keras's Keras 1 converter, give back the layer's weights."""
    ref = CLASSES[kind].from_keras1(keras1_arrays(kind, np.random.default_rng(3)))
    layer = tf_keras_layer(kind, **KERAS1_TARGETS[kind])
    assert_same_weights(ref, tf_keras_converter()(layer, ref.to_keras1(), original_keras_version="1"))


def cudnn_weights(kind, rng):
    """CuDNN kernel, recurrent_kernel and bias: distinct gate blocks, both bias halves non-zero."""
    gates = CUDNN_GATES[kind]
    return [rng.normal(size=(INPUT_DIM, gates * UNITS)), rng.normal(size=(UNITS, gates * UNITS)),
            np.concatenate([rng.uniform(0.1, 1, gates * UNITS), rng.uniform(-1, -0.1, gates * UNITS)])]


@pytest.mark.parametrize("kind", list(CUDNN_GATES))
def test_cudnn_weights_match_tf_keras_conversion(kind):
    """CuDNN weights (2*k*units bias, non-zero halves): as tf_keras converts them, same output."""
    rng = np.random.default_rng(1)
    weights = cudnn_weights(kind, rng)
    layer = tf_keras_layer(kind)  # tf_keras's defaults: sigmoid, tanh, and a GRU's reset_after=True
    converted = tf_keras_converter()(layer, weights)
    layer.set_weights(converted)
    ref = CLASSES[kind].from_cudnn(*weights, return_sequences=True, keras_version=2)
    assert_same_weights(ref, converted)
    x = rng.normal(size=(2, 5, INPUT_DIM))
    tol = TOLERANCE["float64"]
    np.testing.assert_allclose(ref(x), call_keras(layer, x), rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", list(CUDNN_GATES))
def test_to_cudnn_matches_tf_keras_conversion(kind):
    """to_cudnn() gives the CuDNN weights tf_keras's converter makes, and converts back."""
    from tf_keras.src.layers.rnn.cudnn_gru import CuDNNGRU
    from tf_keras.src.layers.rnn.cudnn_lstm import CuDNNLSTM

    ref = CLASSES[kind].from_cudnn(*cudnn_weights(kind, np.random.default_rng(2)))
    cudnn = {"LSTM": CuDNNLSTM, "GRU": CuDNNGRU}[kind](UNITS)
    cudnn.build((None, None, INPUT_DIM))
    theirs = tf_keras_converter()(cudnn, [ref.kernel, ref.recurrent_kernel, ref.bias])
    ours = ref.to_cudnn()
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_array_equal(ours[1], theirs[1])
    if kind == "LSTM":  # only the halves' sum is fixed: tf_keras splits it evenly, to_cudnn not
        half = 4 * UNITS
        np.testing.assert_allclose(ours[2][:half] + ours[2][half:], theirs[2][:half] + theirs[2][half:], rtol=1e-15)
    else:
        np.testing.assert_array_equal(ours[2], theirs[2])
    assert_same_weights(CLASSES[kind].from_cudnn(*ours), [ref.kernel, ref.recurrent_kernel, ref.bias])


def gru(reset_after=True, **options):
    rng = np.random.default_rng(4)
    bias = rng.normal(size=(2, 3 * UNITS) if reset_after else 3 * UNITS)
    return reflstm.GRU(rng.normal(size=(INPUT_DIM, 3 * UNITS)), rng.normal(size=(UNITS, 3 * UNITS)), bias,
                       reset_after=reset_after, **options)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: reflstm.LSTM.from_keras1([np.zeros((2, 2))] * 3), "12 LSTM arrays"),
        (lambda: reflstm.GRU.from_keras1([np.zeros((2, 2))] * 12), "9 GRU arrays \\[W_z, U_z, b_z"),
        (lambda: reflstm.SimpleRNN.from_keras1([np.zeros((2, 2))] * 9), "3 SimpleRNN arrays \\[W, U, b\\]"),
        (lambda: reflstm.GRU.from_keras1([np.zeros((3, 4)), np.zeros((4, 4)), np.zeros(4)] * 2
                                         + [np.zeros((3, 4)), np.zeros((4, 4)), np.zeros(5)]), "b_h: expected shape"),
        (lambda: reflstm.SimpleRNN.from_keras1([np.zeros((3, 4)), np.zeros((4, 4)), np.zeros(4)],
                                               inner_activation="sigmoid"), "inner_activation"),
        (lambda: gru(reset_after=True).to_keras1(), "reset_after=False"),
        (lambda: gru(reset_after=False, recurrent_activation="hard_sigmoid", keras_version=3).to_keras1(),
         "keras_version=2"),
        (lambda: reflstm.LSTM.from_cudnn(np.zeros((3, 16)), np.zeros((4, 16)), np.zeros(16)), "8\\*units"),
        (lambda: reflstm.GRU.from_cudnn(np.zeros((3, 12)), np.zeros((4, 12)), np.zeros((2, 12))), "6\\*units"),
        (lambda: reflstm.SimpleRNN.from_cudnn(np.zeros((3, 4)), np.zeros((4, 4)), np.zeros(8)),
         "a layer Keras 2's cuDNN has \\(LSTM, GRU\\)"),
        (lambda: gru(reset_after=False).to_cudnn(), "reset_after=True"),
        (lambda: gru(activation="relu").to_cudnn(), "tanh, sigmoid"),
    ],
    ids=["lstm_count", "gru_count", "simple_rnn_count", "gru_shape", "simple_rnn_inner_activation",
         "to_keras1_reset_after", "to_keras1_keras3_hard_sigmoid", "cudnn_lstm_bias", "cudnn_gru_bias",
         "cudnn_simple_rnn", "to_cudnn_reset_before", "to_cudnn_relu"],
)
def test_layouts_that_do_not_fit_are_refused(make, words):
    """Arrays or layers an older layout cannot hold are refused, saying what was expected."""
    with pytest.raises(reflstm.ReflstmError, match=words):
        make()
