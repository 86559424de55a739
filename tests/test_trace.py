"""The trace against values recorded inside Keras's own LSTM cell while it runs."""

import numpy as np
import pytest

import reflstm
from keras_layers import KERAS_VERSIONS, TOLERANCE, call_keras, keras_module, random_weights

BATCH, TIMESTEPS, INPUT_DIM, UNITS = 2, 6, 3, 4


class Recorder:
    """Wraps σ and g so that each call's argument and result are kept, in call order."""

    def __init__(self, keras, name):
        self.fn = keras.activations.get(name)
        self.calls = []

    def __call__(self, z):
        out = self.fn(z)
        self.calls.append((np.asarray(z), np.asarray(out)))
        return out


def recorded_run(keras_version, options, x, mask, initial_state):
    """Run a real Keras LSTM whose activations record; return its weights, output and records."""
    keras = keras_module(keras_version)
    sigma, g = Recorder(keras, "sigmoid"), Recorder(keras, "tanh")
    layer = keras.layers.LSTM(
        UNITS, activation=g, recurrent_activation=sigma, dtype="float64", **options
    )
    layer.build((None, None, INPUT_DIM))
    weights = random_weights(np.random.default_rng(3), INPUT_DIM, UNITS, "float64")
    layer.set_weights(weights)
    output = call_keras(layer, x, mask, initial_state)
    # Each cell call runs σ(z_i), σ(z_f), g(z_c), σ(z_o), g(C_t) (keras LSTMCell.call); the
    # TensorFlow loop makes one extra call before step 0 to learn the output's shape: drop it.
    extra = len(g.calls) // 2 - TIMESTEPS
    sigma_calls = sigma.calls[3 * extra :]
    g_calls = g.calls[2 * extra :]
    steps = {name: [] for name in ("z_i", "i", "z_f", "f", "z_o", "o", "z_c", "c_tilde", "c_cell")}
    for t in range(TIMESTEPS):
        (z_i, i), (z_f, f), (z_o, o) = sigma_calls[3 * t : 3 * t + 3]
        (z_c, c_tilde), (c_cell, _) = g_calls[2 * t : 2 * t + 2]
        for name, value in zip(steps, (z_i, i, z_f, f, z_o, o, z_c, c_tilde, c_cell)):
            steps[name].append(value)
    recorded = {name: np.stack(values, axis=1) for name, values in steps.items()}
    return weights, output, recorded


CASES = {
    "plain": ({}, False, False),
    "go_backwards_mask_initial_state": ({"go_backwards": True}, True, True),
}


@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("case", list(CASES))
def test_gates_match_keras_cell(case, keras_version):
    """i, f, c̃, o, their pre-activations, C_t and h_t equal what Keras's cell computed."""
    options, use_mask, use_state = CASES[case]
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1.5, (BATCH, TIMESTEPS, INPUT_DIM))
    mask = np.array([[1, 0, 1, 1, 0, 1], [0, 0, 1, 1, 1, 0]], bool) if use_mask else None
    state = [rng.normal(0, 0.8, (BATCH, UNITS)) for _ in range(2)] if use_state else None
    options = {"return_sequences": True, **options}
    weights, output, recorded = recorded_run(keras_version, options, x, mask, state)

    ref = reflstm.LSTM(*weights, keras_version=keras_version, **options)
    tr = ref.trace(x, mask=mask, initial_state=state)
    tol = TOLERANCE["float64"]
    for gate, name in (("i", "i"), ("f", "f"), ("c", "c_tilde"), ("o", "o")):
        np.testing.assert_allclose(getattr(tr, name), recorded[name], rtol=tol, atol=tol)
        np.testing.assert_allclose(tr.preactivation(gate).total, recorded[f"z_{gate}"], rtol=tol, atol=tol)
    # Keras's cell computes C_t at every step; the layer keeps it only at unmasked steps.
    kept = np.ones((BATCH, TIMESTEPS), bool) if mask is None else tr.mask
    np.testing.assert_allclose(tr.c[kept], recorded["c_cell"][kept], rtol=tol, atol=tol)
    np.testing.assert_allclose(tr.output, output, rtol=tol, atol=tol)
