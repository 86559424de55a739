"""reflstm.GRU against the real Keras layer, Keras 3 and tf_keras, both reset_after modes,
float64 and float32; its trace against values recorded inside Keras's own GRU cell."""

import numpy as np
import pytest

import reflstm
from keras_layers import KERAS_VERSIONS, TOLERANCE, call_keras, keras_module, make_layer, random_cell_weights
from reflstm.cells.equations import GRU_GATES, gate_slice
from test_lstm import MASKS, assert_same

BATCH, TIMESTEPS, INPUT_DIM, UNITS = 3, 7, 4, 5

# name -> (layer options, call options); every case runs with reset_after True and False.
CASES = {
    "default": ({}, {}),
    "return_sequences": ({"return_sequences": True}, {}),
    "return_state": ({"return_state": True}, {}),
    "sequences_and_state": ({"return_sequences": True, "return_state": True}, {}),
    "go_backwards": ({"go_backwards": True, "return_sequences": True, "return_state": True}, {}),
    "use_bias_false": ({"use_bias": False, "return_sequences": True}, {}),
    "hard_sigmoid": ({"recurrent_activation": "hard_sigmoid", "return_sequences": True}, {}),
    "relu_activation": ({"activation": "relu", "return_sequences": True}, {}),
    "linear_activation": ({"activation": None, "return_sequences": True}, {}),
    "softsign_and_tanh": (
        {"activation": "softsign", "recurrent_activation": "tanh", "return_sequences": True}, {}
    ),
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
    "rnn_grucell": ({"rnn_cell": True, "return_sequences": True, "return_state": True}, {}),
    **{
        f"mask_{name}": ({"return_sequences": True, "return_state": True}, {"mask": name})
        for name in MASKS
    },
    "mask_holes_last_output": ({"return_state": True}, {"mask": "holes"}),
    "mask_zero_output": (
        {"return_sequences": True, "return_state": True, "zero_output_for_mask": True},
        {"mask": "holes"},
    ),
    "mask_zero_output_last_output": ({"zero_output_for_mask": True}, {"mask": "holes"}),
    "mask_holes_go_backwards": (
        {"return_sequences": True, "return_state": True, "go_backwards": True},
        {"mask": "holes"},
    ),
    "mask_initial_state_go_backwards": (
        {"return_sequences": True, "return_state": True, "go_backwards": True},
        {"mask": "left_padding", "initial_state": True},
    ),
}
RESET_AFTER = [True, False]


def inputs(dtype, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1.5, (BATCH, TIMESTEPS, INPUT_DIM)).astype(dtype)
    h0 = rng.normal(0, 0.8, (BATCH, UNITS)).astype(dtype)
    return x, h0


def both(keras_version, dtype, reset_after, layer_options, call_options):
    """(Keras result, reflstm result) for one case."""
    layer = make_layer(keras_version, INPUT_DIM, UNITS, dtype, kind="GRU", reset_after=reset_after,
                       **layer_options)
    x, h0 = inputs(dtype)
    mask = call_options.get("mask")
    mask = None if mask is None else np.array(MASKS[mask], dtype=bool)
    initial_state = [h0] if call_options.get("initial_state") else None
    expected = call_keras(layer, x, mask, initial_state, call_options.get("training"))
    ref = reflstm.GRU.from_keras(layer)
    assert ref.reset_after is reset_after
    return expected, ref(x, mask=mask, initial_state=initial_state)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("reset_after", RESET_AFTER, ids=["reset_after", "reset_before"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_keras(case, reset_after, keras_version, dtype):
    """The output, and h with return_state, equal the Keras GRU's."""
    layer_options, call_options = CASES[case]
    expected, actual = both(keras_version, dtype, reset_after, dict(layer_options), call_options)
    assert_same(actual, expected, dtype)


@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=["keras3", "tf_keras"])
def test_return_state_container(keras_version):
    """return_state gives (output, h): a tuple like Keras 3, a list like tf_keras."""
    expected, actual = both(keras_version, "float64", True, {"return_state": True}, {})
    assert type(actual) is (tuple if keras_version == 3 else list) and len(actual) == 2


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("reset_after", RESET_AFTER, ids=["reset_after", "reset_before"])
def test_stateful(reset_after, keras_version, dtype):
    """stateful=True carries h across calls (chunks of one sequence) and reset_state zeros it."""
    layer = make_layer(keras_version, INPUT_DIM, UNITS, dtype, kind="GRU", reset_after=reset_after,
                       stateful=True, return_sequences=True)
    ref = reflstm.GRU.from_keras(layer)
    rng = np.random.default_rng(5)
    chunks = [rng.normal(0, 1.5, (BATCH, 4, INPUT_DIM)).astype(dtype) for _ in range(3)]
    for x in chunks[:2]:
        assert_same(ref(x), call_keras(layer, x), dtype)
    layer.reset_states() if keras_version == 2 else layer.reset_state()
    ref.reset_state()
    assert_same(ref(chunks[2]), call_keras(layer, chunks[2]), dtype)
    # A layer that is already carrying a state converts with that state.
    assert_same(reflstm.GRU.from_keras(layer)(chunks[0]), call_keras(layer, chunks[0]), dtype)


@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=["keras3", "tf_keras"])
def test_bare_initial_state(keras_version):
    """Keras takes a GRU's one state bare as well as in a list; so does reflstm."""
    layer = make_layer(keras_version, INPUT_DIM, UNITS, "float64", kind="GRU")
    x, h0 = inputs("float64")
    assert_same(reflstm.GRU.from_keras(layer)(x, initial_state=h0),
                call_keras(layer, x, initial_state=[h0]), "float64")


class Recorder:
    """Wraps an activation so that each call's argument and result are kept, in call order."""

    def __init__(self, keras, name):
        self.fn = keras.activations.get(name)
        self.calls = []

    def __call__(self, z):
        out = self.fn(z)
        self.calls.append((np.asarray(z), np.asarray(out)))
        return out


def recorded_run(keras_version, options, x, mask, h0):
    """Run a real Keras GRU whose activations record; return its weights, output and records."""
    keras = keras_module(keras_version)
    sigma, g = Recorder(keras, "sigmoid"), Recorder(keras, "tanh")
    layer = keras.layers.GRU(UNITS, activation=g, recurrent_activation=sigma, dtype="float64", **options)
    layer.build((None, None, INPUT_DIM))
    weights = random_cell_weights(np.random.default_rng(3), "GRU", INPUT_DIM, UNITS, "float64",
                                  reset_after=options["reset_after"])
    layer.set_weights(weights)
    output = call_keras(layer, x, mask, None if h0 is None else [h0])
    # Each cell call runs σ(z's argument), σ(r's), g(h̃'s) (GRUCell.call); the TensorFlow loop
    # makes one extra call before step 0 to learn the output's shape: drop it.
    extra = len(g.calls) - TIMESTEPS
    sigma_calls, g_calls = sigma.calls[2 * extra :], g.calls[extra:]
    steps = {name: [] for name in ("a_z", "z", "a_r", "r", "a_h", "h_tilde")}
    for t in range(TIMESTEPS):
        (a_z, z), (a_r, r) = sigma_calls[2 * t : 2 * t + 2]
        a_h, h_tilde = g_calls[t]
        for name, value in zip(steps, (a_z, z, a_r, r, a_h, h_tilde)):
            steps[name].append(value)
    return weights, output, {name: np.stack(values, axis=1) for name, values in steps.items()}


TRACE_CASES = {
    "plain": ({}, False, False),
    "go_backwards_mask_initial_state": ({"go_backwards": True}, True, True),
}


@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("reset_after", RESET_AFTER, ids=["reset_after", "reset_before"])
@pytest.mark.parametrize("case", list(TRACE_CASES))
def test_gates_match_keras_cell(case, reset_after, keras_version):
    """z, r, h̃ and their pre-activations equal what Keras's GRU cell computed at every step."""
    options, use_mask, use_state = TRACE_CASES[case]
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1.5, (BATCH, TIMESTEPS, INPUT_DIM))
    mask = rng.random((BATCH, TIMESTEPS)) < 0.6 if use_mask else None
    h0 = rng.normal(0, 0.8, (BATCH, UNITS)) if use_state else None
    options = {"return_sequences": True, "reset_after": reset_after, **options}
    weights, output, recorded = recorded_run(keras_version, options, x, mask, h0)

    ref = reflstm.GRU(*weights, keras_version=keras_version, **options)
    tr = ref.trace(x, mask=mask, initial_state=None if h0 is None else [h0])
    tol = TOLERANCE["float64"]
    for gate, name in (("z", "z"), ("r", "r"), ("h", "h_tilde")):
        np.testing.assert_allclose(getattr(tr, name), recorded[name], rtol=tol, atol=tol)
        np.testing.assert_allclose(tr.preactivation(gate).total, recorded[f"a_{gate}"], rtol=tol, atol=tol)
    np.testing.assert_allclose(tr.output, output, rtol=tol, atol=tol)
    # At the steps Keras kept, h_t = z ⊙ h_{t-1} + (1 - z) ⊙ h̃ with Keras's own z and h̃.
    kept = np.ones((BATCH, TIMESTEPS), bool) if mask is None else tr.mask
    mixed = recorded["z"] * tr.h_prev + (1 - recorded["z"]) * recorded["h_tilde"]
    np.testing.assert_allclose(tr.h[kept], mixed[kept], rtol=tol, atol=tol)


@pytest.mark.parametrize("reset_after", RESET_AFTER, ids=["reset_after", "reset_before"])
def test_trace_parts_add_up(reset_after):
    """Each pre-activation is its parts: the reset gate touches U_h's product (and b'_h) or h_{t-1}."""
    weights = random_cell_weights(np.random.default_rng(7), "GRU", INPUT_DIM, UNITS, "float64",
                                  reset_after=reset_after)
    ref = reflstm.GRU(*weights, reset_after=reset_after)
    x, h0 = inputs("float64")
    tr = ref.trace(x, initial_state=[h0])
    W, U = weights[0], weights[1]
    b_x, b_h = (weights[2][0], weights[2][1]) if reset_after else (weights[2], np.zeros(3 * UNITS))
    cols = {gate: gate_slice(gate, UNITS, GRU_GATES) for gate in GRU_GATES}
    h_prev = tr.h_prev
    for gate in "zr":
        part = tr.preactivation(gate)
        np.testing.assert_allclose(part.input, x @ W[:, cols[gate]], rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(part.recurrent, h_prev @ U[:, cols[gate]], rtol=1e-13, atol=1e-13)
        assert part.reset is None
    cand = tr.preactivation("h")
    if reset_after:
        expected = x @ W[:, cols["h"]] + b_x[cols["h"]] + tr.r * (h_prev @ U[:, cols["h"]] + b_h[cols["h"]])
        np.testing.assert_array_equal(cand.reset, tr.r)
    else:
        expected = x @ W[:, cols["h"]] + b_x[cols["h"]] + (tr.r * h_prev) @ U[:, cols["h"]]
        assert cand.reset is None and not cand.recurrent_bias.any()
    np.testing.assert_allclose(cand.total, expected, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(tr.h, tr.z * h_prev + (1 - tr.z) * tr.h_tilde, rtol=1e-15, atol=1e-15)


def test_gate_views_follow_keras_order():
    """kernel columns [0:u] are z, [u:2u] r, [2u:3u] h; with reset_after b_z is both bias rows."""
    units = 2
    kernel = np.arange(2 * 3 * units, dtype=float).reshape(2, 3 * units)
    bias = np.arange(2 * 3 * units, dtype=float).reshape(2, 3 * units)
    ref = reflstm.GRU(kernel, np.zeros((units, 3 * units)), bias)
    for k, gate in enumerate(GRU_GATES):
        np.testing.assert_array_equal(getattr(ref, f"W_{gate}"), kernel[:, k * units : (k + 1) * units])
        np.testing.assert_array_equal(getattr(ref, f"b_{gate}"), bias[:, k * units : (k + 1) * units])
    assert ref.U_r.shape == (units, units)


def test_one_step_by_hand():
    """The README's worked GRU step: one unit, both reset_after modes, every number by hand."""
    # W = [W_z W_r W_h], U likewise, input bias b, recurrent bias b'; x_1 = 1, h_0 = 0.5.
    W, U = [0.5, -0.4, 0.8], [0.1, 0.3, -0.6]
    b, b_rec = [0.3, -0.7, 1.1], [0.2, 0.1, -0.4]
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    x, h0 = np.ones((1, 1, 1)), np.full((1, 1), 0.5)

    after = reflstm.GRU(np.array([W]), np.array([U]), np.array([b, b_rec])).trace(x, initial_state=[h0])
    z = sig(1 * W[0] + b[0] + 0.5 * U[0] + b_rec[0])  # σ(1.05)
    r = sig(1 * W[1] + b[1] + 0.5 * U[1] + b_rec[1])  # σ(-0.85)
    h_tilde = np.tanh(1 * W[2] + b[2] + r * (0.5 * U[2] + b_rec[2]))
    h = z * 0.5 + (1 - z) * h_tilde
    readme = dict(z=0.740775, r=0.299433, h_tilde=0.934198, h=0.612555)
    for name, value in dict(z=z, r=r, h_tilde=h_tilde, h=h).items():
        np.testing.assert_allclose(getattr(after, name)[0, 0, 0], value, rtol=1e-14, err_msg=name)
        assert round(value, 6) == readme[name], name
    assert round(float(after.preactivation("h").total[0, 0, 0]), 6) == 1.690397

    before = reflstm.GRU(np.array([W]), np.array([U]), np.array(b), reset_after=False)
    tr = before.trace(x, initial_state=[h0])
    z = sig(1 * W[0] + b[0] + 0.5 * U[0])  # σ(0.85)
    r = sig(1 * W[1] + b[1] + 0.5 * U[1])  # σ(-0.95)
    h_tilde = np.tanh(1 * W[2] + b[2] + (r * 0.5) * U[2])
    h = z * 0.5 + (1 - z) * h_tilde
    readme = dict(z=0.700567, r=0.278885, h_tilde=0.948472, h=0.634287)
    for name, value in dict(z=z, r=r, h_tilde=h_tilde, h=h).items():
        np.testing.assert_allclose(getattr(tr, name)[0, 0, 0], value, rtol=1e-14, err_msg=name)
        assert round(value, 6) == readme[name], name
    assert round(float(tr.preactivation("h").total[0, 0, 0]), 6) == 1.816335


def test_update_gate_one_keeps_the_state():
    """z = 1 (a huge update bias) carries h_{t-1} through unchanged, whatever the input."""
    bias = np.array([[40.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    ref = reflstm.GRU(np.array([[0.3, -0.2, 0.9]]), np.array([[0.1, 0.4, -0.5]]), bias,
                      return_sequences=True)
    h0 = np.full((1, 1), 0.37)
    out = ref(np.linspace(-2, 2, 6).reshape(1, 6, 1), initial_state=[h0])
    np.testing.assert_allclose(out, 0.37, rtol=1e-15)


BAD_OPTIONS = {
    "bias_row_for_reset_after": (dict(bias=np.zeros(3 * UNITS)), "bias", "(2, 3 * units)"),
    "bias_rows_for_reset_before": (dict(bias=np.zeros((2, 3 * UNITS)), reset_after=False), "bias", "(3 * units,)"),
    "kernel_not_three_blocks": (dict(kernel=np.zeros((INPUT_DIM, 3 * UNITS + 1))), "kernel", "3 * units"),
    "reset_after_not_bool": (dict(reset_after="yes"), "reset_after", "True or False"),
    "activation_unknown": (dict(activation="nope"), "activation", "Keras 3 activations"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_arguments_are_refused(case):
    """A wrong bias shape for the reset_after mode, or a bad option, names the argument."""
    changes, argument, expected = BAD_OPTIONS[case]
    arguments = dict(kernel=np.zeros((INPUT_DIM, 3 * UNITS)), recurrent_kernel=np.zeros((UNITS, 3 * UNITS)),
                     bias=np.zeros((2, 3 * UNITS)))
    arguments.update(changes)
    with pytest.raises(reflstm.ReflstmError) as error:
        reflstm.GRU(**arguments)
    assert str(error.value).startswith(f"{argument}: expected") and expected in str(error.value)


def test_bad_initial_state_is_refused():
    """A GRU's initial state is [h0]: two states are refused with the expected structure."""
    ref = reflstm.GRU(np.zeros((INPUT_DIM, 3 * UNITS)), np.zeros((UNITS, 3 * UNITS)))
    with pytest.raises(reflstm.ReflstmError, match=r"initial_state: expected a list \[h0\]"):
        ref(np.zeros((2, 3, INPUT_DIM)), initial_state=[np.zeros((2, UNITS))] * 2)


@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=["keras3", "tf_keras"])
def test_from_keras_refuses_other_layers(keras_version):
    """GRU.from_keras refuses an LSTM layer, naming what it wanted."""
    layer = make_layer(keras_version, INPUT_DIM, UNITS)
    with pytest.raises(reflstm.ReflstmError, match=r"a Keras GRU layer or RNN\(GRUCell\)"):
        reflstm.GRU.from_keras(layer)


def test_tf_keras_gru_v1():
    """tf_keras's TF1-style GRU (reset_after=False, hard_sigmoid by default) converts and matches."""
    from tf_keras.src.layers.rnn import gru_v1

    layer = gru_v1.GRU(UNITS, return_sequences=True, dtype="float64")
    layer.build((None, None, INPUT_DIM))
    layer.set_weights(random_cell_weights(np.random.default_rng(0), "GRU", INPUT_DIM, UNITS, "float64",
                                          reset_after=False))
    x, _ = inputs("float64")
    ref = reflstm.GRU.from_keras(layer)
    assert not ref.reset_after and ref.recurrent_activation == "hard_sigmoid"
    assert_same(ref(x), call_keras(layer, x), "float64")
