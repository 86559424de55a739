"""The step equations on numbers we did not compute: hand derivations and Keras's golden values."""

import itertools

import numpy as np
import pytest

import reflstm
from reflstm.cells.equations import GATES, gate_slice


def test_zero_weights_give_half_gates():
    """Zero weights and bias: i = f = o = ½, c̃ = 0, so C stays 0 and h = ½ tanh(0) = 0."""
    ref = reflstm.LSTM(np.zeros((3, 8)), np.zeros((2, 8)), np.zeros(8), return_sequences=True)
    tr = ref.trace(np.ones((1, 4, 3)))
    for gate in (tr.i, tr.f, tr.o):
        np.testing.assert_array_equal(gate, 0.5)
    np.testing.assert_array_equal(tr.c_tilde, 0.0)
    np.testing.assert_array_equal(tr.c, 0.0)
    np.testing.assert_array_equal(tr.h, 0.0)


def test_one_step_by_hand():
    """The README's worked example: one unit, one step, every number derived by hand."""
    # W = [W_i W_f W_c W_o], U likewise, b likewise; x_1 = 1, h_0 = 0.5, C_0 = 0.9.
    W, U, b = [0.5, -0.4, 0.8, 0.2], [0.1, 0.3, -0.6, 0.7], [0.3, -0.7, 1.1, 0.4]
    ref = reflstm.LSTM(np.array([W]), np.array([U]), np.array(b))
    tr = ref.trace(np.ones((1, 1, 1)), initial_state=[np.full((1, 1), 0.5), np.full((1, 1), 0.9)])
    z = [1 * W[k] + 0.5 * U[k] + b[k] for k in range(4)]  # 0.85, -0.95, 1.6, 0.95
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    i, f, c_tilde, o = sig(z[0]), sig(z[1]), np.tanh(z[2]), sig(z[3])
    c = f * 0.9 + i * c_tilde
    h = o * np.tanh(c)
    by_hand = dict(i=i, f=f, c_tilde=c_tilde, o=o, c=c, h=h)
    readme = dict(i=0.700567, f=0.278885, c_tilde=0.921669, o=0.721115, c=0.896687, h=0.515367)
    for name, value in by_hand.items():
        np.testing.assert_allclose(getattr(tr, name)[0, 0, 0], value, rtol=1e-14, err_msg=name)
        assert round(value, 6) == readme[name], name


def test_output_gate_has_no_peephole():
    """h_t = o_t ⊙ tanh(C_t): the output gate does not see C_t (no V_o C_t term)."""
    # A huge C_{t-1} with f = σ(+30) ≈ 1 keeps C_t large; a peephole would move o, Keras's o does not.
    bias = np.array([0.0, 30.0, 0.0, -0.5])
    ref = reflstm.LSTM(np.zeros((1, 4)), np.zeros((1, 4)), bias)
    for c0 in (0.0, 50.0):
        tr = ref.trace(np.zeros((1, 1, 1)), initial_state=[np.zeros((1, 1)), np.full((1, 1), c0)])
        np.testing.assert_allclose(tr.o, 1 / (1 + np.exp(0.5)), rtol=1e-15)
        np.testing.assert_allclose(tr.h, tr.o * np.tanh(tr.c), rtol=1e-15)


def test_gate_slices_follow_keras_order():
    """kernel columns [0:u] are i, [u:2u] f, [2u:3u] c, [3u:4u] o; the views are those blocks."""
    units = 3
    kernel = np.arange(2 * 4 * units, dtype=float).reshape(2, 4 * units)
    ref = reflstm.LSTM(kernel, np.zeros((units, 4 * units)), np.arange(4 * units, dtype=float))
    assert GATES == "ifco"
    for k, gate in enumerate(GATES):
        assert gate_slice(gate, units) == slice(k * units, (k + 1) * units)
        np.testing.assert_array_equal(getattr(ref, f"W_{gate}"), kernel[:, k * units : (k + 1) * units])
        np.testing.assert_array_equal(getattr(ref, f"b_{gate}"), np.arange(k * units, (k + 1) * units))


# Keras's own golden values: keras/src/layers/rnn/lstm_test.py (Keras 3.15), built with
# Constant(0.01) kernel, Constant(0.02) recurrent kernel, Constant(0.03) bias and
# unit_forget_bias=True, which makes the forget-gate bias 1.0 and so tells f from the others.
def keras_golden_lstm(units, input_dim, forget_bias=1.0, **options):
    bias = np.full(4 * units, 0.03, np.float32)
    bias[gate_slice("f", units)] = forget_bias
    return reflstm.LSTM(
        np.full((input_dim, 4 * units), 0.01, np.float32),
        np.full((units, 4 * units), 0.02, np.float32),
        bias,
        **options,
    )


GOLDEN_TOL = 1e-5  # the tolerance Keras's test uses for these values
SEQUENCE_3_6_4 = np.arange(72).reshape((3, 6, 4)).astype("float32")
SEQUENCE_2_4_3 = np.arange(24).reshape((2, 4, 3)).astype("float32")
MASK_2_4 = np.array([[True, True, True, False], [True, True, False, False]])

GOLDEN = {
    "correctness": (
        dict(units=3, input_dim=4), SEQUENCE_3_6_4, {},
        [[0.6288687] * 3, [0.86899155] * 3, [0.9460773] * 3],
    ),
    "correctness_go_backwards": (
        dict(units=3, input_dim=4, go_backwards=True), SEQUENCE_3_6_4, {},
        [[0.35622165] * 3, [0.74789524] * 3, [0.8872726] * 3],
    ),
    "unit_forget_bias_false": (
        dict(units=3, input_dim=4, forget_bias=0.03), SEQUENCE_3_6_4, {},
        [[0.57019705] * 3, [0.8661914] * 3, [0.9459622] * 3],
    ),
    "initial_state": (
        dict(units=2, input_dim=3), SEQUENCE_2_4_3,
        {"initial_state": [np.arange(4).reshape((2, 2)).astype("float32")] * 2},
        [[0.20574439, 0.3558822], [0.64930826, 0.66276]],
    ),
    "initial_state_go_backwards": (
        dict(units=2, input_dim=3, go_backwards=True), SEQUENCE_2_4_3,
        {"initial_state": [np.arange(4).reshape((2, 2)).astype("float32")] * 2},
        [[0.13281618, 0.2790356], [0.5839337, 0.5992567]],
    ),
    "masking": (
        dict(units=2, input_dim=3, return_sequences=True), SEQUENCE_2_4_3, {"mask": MASK_2_4},
        [[[0.01588910] * 2, [0.05552048] * 2, [0.11755939] * 2, [0.11755939] * 2],
         [[0.14185596] * 2, [0.28556206] * 2, [0.28556206] * 2, [0.28556206] * 2]],
    ),
    "masking_zero_output": (
        dict(units=2, input_dim=3, return_sequences=True, zero_output_for_mask=True),
        SEQUENCE_2_4_3, {"mask": MASK_2_4},
        [[[0.01588910] * 2, [0.05552048] * 2, [0.11755939] * 2, [0.0] * 2],
         [[0.14185596] * 2, [0.28556206] * 2, [0.0] * 2, [0.0] * 2]],
    ),
    "masking_go_backwards": (
        dict(units=2, input_dim=3, go_backwards=True), SEQUENCE_2_4_3,
        {"mask": np.array([[False, True, True, True], [False, False, True, True]])},
        [[0.15341201] * 2, [0.3844719] * 2],
    ),
}


@pytest.mark.parametrize("case", list(GOLDEN))
def test_keras_golden_values(case):
    """reflstm reproduces the values published in Keras's own LSTM tests."""
    options, x, call, expected = GOLDEN[case]
    actual = keras_golden_lstm(**options)(x, **call)
    np.testing.assert_allclose(actual, np.array(expected, np.float32), rtol=GOLDEN_TOL, atol=GOLDEN_TOL)


def test_keras_golden_statefulness():
    """Keras's stateful golden values: the second call continues from the first, reset restarts."""
    ref = keras_golden_lstm(units=4, input_dim=4, stateful=True)
    x = np.arange(24).reshape((2, 3, 4)).astype("float32")
    expected = np.array([[0.3124785] * 4, [0.6863672] * 4], np.float32)
    for _ in range(2):
        ref(x)
        np.testing.assert_allclose(ref(x), expected, rtol=GOLDEN_TOL, atol=GOLDEN_TOL)
        ref.reset_state()


def test_golden_values_catch_a_misplaced_forget_gate():
    """Every gate order that moves f off block 2 misses Keras's published values."""
    units = 3
    expected = np.array([[0.6288687] * 3, [0.86899155] * 3, [0.9460773] * 3], np.float32)
    ref = keras_golden_lstm(units=3, input_dim=4)
    for order in itertools.permutations(GATES):
        if order[1] == "f":
            continue
        cols = np.concatenate([np.arange(units) + GATES.index(g) * units for g in order])
        wrong = reflstm.LSTM(ref.kernel[:, cols], ref.recurrent_kernel[:, cols], ref.bias[cols])
        assert not np.allclose(wrong(SEQUENCE_3_6_4), expected, rtol=GOLDEN_TOL, atol=GOLDEN_TOL), order
