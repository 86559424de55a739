"""reflstm.SimpleRNN against the real Keras layer, Keras 3 and tf_keras, float64 and float32."""

import numpy as np
import pytest

import reflstm
from keras_layers import KERAS_VERSIONS, TOLERANCE, call_keras, make_layer, random_cell_weights
from test_lstm import MASKS, assert_same

BATCH, TIMESTEPS, INPUT_DIM, UNITS = 3, 7, 4, 5

# name -> (layer options, call options)
CASES = {
    "default": ({}, {}),
    "return_sequences": ({"return_sequences": True}, {}),
    "return_state": ({"return_state": True}, {}),
    "sequences_and_state": ({"return_sequences": True, "return_state": True}, {}),
    "go_backwards": ({"go_backwards": True, "return_sequences": True, "return_state": True}, {}),
    "use_bias_false": ({"use_bias": False, "return_sequences": True}, {}),
    "relu_activation": ({"activation": "relu", "return_sequences": True}, {}),
    "linear_activation": ({"activation": None, "return_sequences": True}, {}),
    "hard_sigmoid_activation": ({"activation": "hard_sigmoid", "return_sequences": True}, {}),
    "dropout_at_inference": (
        {"dropout": 0.4, "recurrent_dropout": 0.3, "return_sequences": True}, {"training": False}
    ),
    "unroll": ({"unroll": True, "return_sequences": True}, {}),
    "initial_state": ({"return_sequences": True, "return_state": True}, {"initial_state": True}),
    "initial_state_go_backwards": (
        {"return_sequences": True, "return_state": True, "go_backwards": True},
        {"initial_state": True},
    ),
    "rnn_simplernncell": ({"rnn_cell": True, "return_sequences": True, "return_state": True}, {}),
    **{
        f"mask_{name}": ({"return_sequences": True, "return_state": True}, {"mask": name})
        for name in MASKS
    },
    "mask_holes_last_output": ({"return_state": True}, {"mask": "holes"}),
    "mask_zero_output": (
        {"return_sequences": True, "return_state": True, "zero_output_for_mask": True},
        {"mask": "holes"},
    ),
    "mask_holes_go_backwards": (
        {"return_sequences": True, "return_state": True, "go_backwards": True},
        {"mask": "holes"},
    ),
    "mask_initial_state_go_backwards": (
        {"return_sequences": True, "return_state": True, "go_backwards": True},
        {"mask": "left_padding", "initial_state": True},
    ),
}


def inputs(dtype, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1.5, (BATCH, TIMESTEPS, INPUT_DIM)).astype(dtype)
    return x, rng.normal(0, 0.8, (BATCH, UNITS)).astype(dtype)


def both(keras_version, dtype, layer_options, call_options):
    """(Keras result, reflstm result) for one case."""
    layer = make_layer(keras_version, INPUT_DIM, UNITS, dtype, kind="SimpleRNN", **layer_options)
    x, h0 = inputs(dtype)
    mask = call_options.get("mask")
    mask = None if mask is None else np.array(MASKS[mask], dtype=bool)
    initial_state = [h0] if call_options.get("initial_state") else None
    expected = call_keras(layer, x, mask, initial_state, call_options.get("training"))
    return expected, reflstm.SimpleRNN.from_keras(layer)(x, mask=mask, initial_state=initial_state)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_keras(case, keras_version, dtype):
    """The output, and h with return_state, equal the Keras SimpleRNN's."""
    layer_options, call_options = CASES[case]
    expected, actual = both(keras_version, dtype, dict(layer_options), call_options)
    assert_same(actual, expected, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=["keras3", "tf_keras"])
def test_stateful(keras_version, dtype):
    """stateful=True carries h across calls and reset_state zeros it, as in Keras."""
    layer = make_layer(keras_version, INPUT_DIM, UNITS, dtype, kind="SimpleRNN", stateful=True,
                       return_sequences=True)
    ref = reflstm.SimpleRNN.from_keras(layer)
    rng = np.random.default_rng(5)
    chunks = [rng.normal(0, 1.5, (BATCH, 4, INPUT_DIM)).astype(dtype) for _ in range(3)]
    for x in chunks[:2]:
        assert_same(ref(x), call_keras(layer, x), dtype)
    layer.reset_states() if keras_version == 2 else layer.reset_state()
    ref.reset_state()
    assert_same(ref(chunks[2]), call_keras(layer, chunks[2]), dtype)
    assert_same(reflstm.SimpleRNN.from_keras(layer)(chunks[0]), call_keras(layer, chunks[0]), dtype)


@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=["keras3", "tf_keras"])
def test_trace_matches_keras_sequence(keras_version):
    """The trace's h at every step is Keras's return_sequences output, and its parts add up."""
    layer = make_layer(keras_version, INPUT_DIM, UNITS, "float64", kind="SimpleRNN",
                       return_sequences=True, go_backwards=True)
    x, h0 = inputs("float64")
    expected = call_keras(layer, x, initial_state=[h0])
    tr = reflstm.SimpleRNN.from_keras(layer).trace(x, initial_state=[h0])
    tol = TOLERANCE["float64"]
    np.testing.assert_allclose(tr.h, expected, rtol=tol, atol=tol)
    kernel, recurrent, bias = layer.get_weights()
    part = tr.preactivation()
    np.testing.assert_allclose(part.input, x[:, ::-1] @ kernel, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(part.recurrent, tr.h_prev @ recurrent, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(np.tanh(part.total), tr.h, rtol=1e-15, atol=1e-15)


def test_one_step_by_hand():
    """The README's worked SimpleRNN step: h_1 = tanh(1·0.5 + 0.3 + 0.5·0.1) = tanh(0.85)."""
    ref = reflstm.SimpleRNN(np.array([[0.5]]), np.array([[0.1]]), np.array([0.3]))
    h = ref(np.ones((1, 1, 1)), initial_state=[np.full((1, 1), 0.5)])
    np.testing.assert_allclose(h[0, 0], np.tanh(0.85), rtol=1e-15)
    assert round(float(h[0, 0]), 6) == 0.691069


def test_weights_are_checked():
    """A bias of the wrong length, or a non-square recurrent kernel, names the argument."""
    kernel, recurrent, bias = random_cell_weights(np.random.default_rng(0), "SimpleRNN", 2, 3, "float64")
    with pytest.raises(reflstm.ReflstmError, match=r"^bias: expected shape \(units,\)"):
        reflstm.SimpleRNN(kernel, recurrent, np.zeros(4))
    with pytest.raises(reflstm.ReflstmError, match=r"^recurrent_kernel: expected shape \(units, units\)"):
        reflstm.SimpleRNN(kernel, np.zeros((3, 4)), bias)
    assert reflstm.SimpleRNN(kernel, recurrent, bias).W is not None
