"""reflstm.LSTM against the real Keras layer, Keras 3 and tf_keras, float64 and float32."""

import warnings

import numpy as np
import pytest

import reflstm
from keras_layers import KERAS_VERSIONS, TOLERANCE, call_keras, make_layer

BATCH, TIMESTEPS, INPUT_DIM, UNITS = 3, 7, 4, 5

MASKS = {
    "right_padding": [[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0, 0]],
    "left_padding": [[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1, 1]],
    "holes": [[1, 0, 1, 0, 1, 1, 0], [0, 1, 1, 0, 0, 1, 1], [1, 1, 1, 1, 0, 0, 0]],
    "all_masked_row": [[1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0], [1, 0, 0, 1, 0, 0, 1]],
}

# name -> (layer options, call options)
CASES = {
    "default": ({}, {}),
    "return_sequences": ({"return_sequences": True}, {}),
    "return_state": ({"return_state": True}, {}),
    "sequences_and_state": ({"return_sequences": True, "return_state": True}, {}),
    "go_backwards": ({"go_backwards": True, "return_sequences": True, "return_state": True}, {}),
    "use_bias_false": ({"use_bias": False, "return_sequences": True}, {}),
    "unit_forget_bias_false": ({"unit_forget_bias": False, "return_sequences": True}, {}),
    "hard_sigmoid": ({"recurrent_activation": "hard_sigmoid", "return_sequences": True}, {}),
    "relu_activation": ({"activation": "relu", "return_sequences": True}, {}),
    "linear_activation": ({"activation": None, "return_sequences": True}, {}),
    "dropout_at_inference": (
        {"dropout": 0.4, "recurrent_dropout": 0.3, "return_sequences": True}, {"training": False}
    ),
    "implementation_1": ({"implementation": 1, "return_sequences": True}, {}),
    "unroll": ({"unroll": True, "return_sequences": True}, {}),
    "initial_state": ({"return_sequences": True, "return_state": True}, {"initial_state": True}),
    "initial_state_go_backwards": (
        {"return_sequences": True, "return_state": True, "go_backwards": True},
        {"initial_state": True},
    ),
    "rnn_lstmcell": ({"rnn_cell": True, "return_sequences": True, "return_state": True}, {}),
    **{
        f"mask_{name}": ({"return_sequences": True, "return_state": True}, {"mask": name})
        for name in MASKS
    },
    **{
        f"mask_{name}_last_output": ({"return_state": True}, {"mask": name})
        for name in ("right_padding", "holes")
    },
    "mask_zero_output": (
        {"return_sequences": True, "return_state": True, "zero_output_for_mask": True},
        {"mask": "holes"},
    ),
    "mask_zero_output_last_output": ({"zero_output_for_mask": True}, {"mask": "holes"}),
    "mask_go_backwards": (
        {"return_sequences": True, "return_state": True, "go_backwards": True},
        {"mask": "left_padding"},
    ),
    "mask_holes_go_backwards": (
        {"return_sequences": True, "return_state": True, "go_backwards": True},
        {"mask": "holes"},
    ),
    "mask_initial_state": (
        {"return_sequences": True, "return_state": True},
        {"mask": "left_padding", "initial_state": True},
    ),
    "mask_initial_state_go_backwards": (
        {"return_sequences": True, "return_state": True, "go_backwards": True},
        {"mask": "holes", "initial_state": True},
    ),
}


def inputs(dtype, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1.5, (BATCH, TIMESTEPS, INPUT_DIM)).astype(dtype)
    state = [rng.normal(0, 0.8, (BATCH, UNITS)).astype(dtype) for _ in range(2)]
    return x, state


def both(keras_version, dtype, layer_options, call_options):
    """(Keras result, reflstm result) for one case."""
    layer = make_layer(keras_version, INPUT_DIM, UNITS, dtype, **layer_options)
    x, state = inputs(dtype)
    mask = call_options.get("mask")
    mask = None if mask is None else np.array(MASKS[mask], dtype=bool)
    initial_state = state if call_options.get("initial_state") else None
    expected = call_keras(layer, x, mask, initial_state, call_options.get("training"))
    ref = reflstm.LSTM.from_keras(layer)
    return expected, ref(x, mask=mask, initial_state=initial_state)


def assert_same(actual, expected, dtype):
    """Same structure, same dtype, values within the dtype's tolerance."""
    if isinstance(expected, list):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_same(a, e, dtype)
        return
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype == np.dtype(dtype)
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_keras(case, keras_version, dtype):
    """The output, and the states with return_state, equal the Keras layer's."""
    layer_options, call_options = CASES[case]
    expected, actual = both(keras_version, dtype, dict(layer_options), call_options)
    assert_same(actual, expected, dtype)


@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=["keras3", "tf_keras"])
def test_return_state_container(keras_version):
    """return_state gives a tuple like Keras 3, a list like tf_keras."""
    expected, actual = both(keras_version, "float64", {"return_state": True}, {})
    assert type(actual) is (tuple if keras_version == 3 else list)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=["keras3", "tf_keras"])
def test_stateful(keras_version, dtype):
    """stateful=True carries state across calls and reset_state zeros it, as in Keras."""
    layer = make_layer(keras_version, INPUT_DIM, UNITS, dtype, stateful=True, return_sequences=True)
    ref = reflstm.LSTM.from_keras(layer)
    rng = np.random.default_rng(5)
    chunks = [rng.normal(0, 1.5, (BATCH, 4, INPUT_DIM)).astype(dtype) for _ in range(3)]
    for x in chunks[:2]:
        assert_same(ref(x), call_keras(layer, x), dtype)
    layer.reset_states() if keras_version == 2 else layer.reset_state()
    ref.reset_state()
    assert_same(ref(chunks[2]), call_keras(layer, chunks[2]), dtype)
    # A layer that is already carrying a state converts with that state.
    assert_same(reflstm.LSTM.from_keras(layer)(chunks[0]), call_keras(layer, chunks[0]), dtype)


@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=["keras3", "tf_keras"])
def test_extreme_inputs(keras_version):
    """Inputs of ±1e4 saturate as in Keras, with no floating-point warnings."""
    for dtype in ("float64", "float32"):
        layer = make_layer(keras_version, INPUT_DIM, UNITS, dtype, return_sequences=True)
        x = np.random.default_rng(2).choice([-1e4, 1e4], (BATCH, TIMESTEPS, INPUT_DIM)).astype(dtype)
        expected = call_keras(layer, x)
        with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
            warnings.simplefilter("error")
            actual = reflstm.LSTM.from_keras(layer)(x)
        assert_same(actual, expected, dtype)
