"""GRU and SimpleRNN on numbers published by other projects, not computed here.

- Keras's own golden values: keras/src/layers/rnn/gru_test.py and simple_rnn_test.py (Keras 3.15,
  Apache License 2.0), built from constant initialisers (kernel 0.01, recurrent 0.02, bias 0.03)
  and np.arange inputs.
- onnxruntime's GRU operator tests: onnxruntime/test/providers/cpu/rnn/deep_cpu_gru_op_test.cc
  (github.com/microsoft/onnxruntime, commit 0291220be484eed93f38da671ae8724caaab39ae, MIT
  License): weights that differ per gate, so a wrong gate order changes the answer. Only the
  numbers are carried over, read by `reflstm.GRU.from_onnx`.
"""

import numpy as np
import pytest

import reflstm

# Keras's golden tests compare in float32 with assertAllClose's default tolerance, 1e-6.
KERAS_GOLDEN_TOL = 1e-6


def constant_gru(input_dim, units, reset_after=True, use_bias=True, **options):
    bias = np.full((2, 3 * units) if reset_after else (3 * units,), 0.03, "float32")
    return reflstm.GRU(np.full((input_dim, 3 * units), 0.01, "float32"),
                       np.full((units, 3 * units), 0.02, "float32"),
                       bias if use_bias else None, reset_after=reset_after, **options)


def constant_simple_rnn(input_dim, units, **options):
    return reflstm.SimpleRNN(np.full((input_dim, units), 0.01, "float32"),
                             np.full((units, units), 0.02, "float32"),
                             np.full(units, 0.03, "float32"), **options)


def arange(*shape):
    return np.arange(np.prod(shape)).reshape(shape).astype("float32")


def rows(values, units):
    """Keras's golden rows, where every unit of a sample has the same value."""
    return np.repeat(np.array(values, "float32")[:, None], units, axis=1)


GRU_CORRECTNESS = {  # gru_test.py test_correctness: (3, 6, 4) input, 3 units
    "default": ({}, [0.5217289, 0.6371659, 0.39384964]),
    "go_backwards": ({"go_backwards": True}, [0.24406259, 0.611516, 0.3928808]),
    "reset_after_false": ({"reset_after": False}, [0.51447755, 0.6426879, 0.40208298]),
    "use_bias_false": ({"use_bias": False}, [0.49988455, 0.64701194, 0.4103359]),
}


@pytest.mark.parametrize("case", list(GRU_CORRECTNESS))
def test_keras_gru_golden_correctness(case):
    """gru_test.py test_correctness: the last output of each of three samples."""
    options, expected = GRU_CORRECTNESS[case]
    out = constant_gru(4, 3, **options)(arange(3, 6, 4))
    np.testing.assert_allclose(out, rows(expected, 3), atol=KERAS_GOLDEN_TOL, rtol=KERAS_GOLDEN_TOL)


def test_keras_gru_golden_stateful():
    """gru_test.py test_statefulness: the second call continues the first; reset_state restarts."""
    gru = constant_gru(4, 4, stateful=True)
    expected = rows([0.29542392, 0.5885018], 4)
    for _ in range(2):
        gru(arange(2, 3, 4))
        np.testing.assert_allclose(gru(arange(2, 3, 4)), expected, atol=KERAS_GOLDEN_TOL, rtol=KERAS_GOLDEN_TOL)
        gru.reset_state()


@pytest.mark.parametrize("go_backwards", [False, True], ids=["forward", "go_backwards"])
def test_keras_gru_golden_initial_state(go_backwards):
    """gru_test.py test_pass_initial_state and test_pass_return_state (a bare h0, as there)."""
    expected = {False: [[0.23774096, 0.33508456], [0.83659905, 1.0227708]],
                True: [[0.13486053, 0.23261218], [0.78257304, 0.9691353]]}[go_backwards]
    gru = constant_gru(3, 2, go_backwards=go_backwards, return_state=True)
    out, h = gru(arange(2, 4, 3), initial_state=arange(2, 2))
    np.testing.assert_allclose(out, expected, atol=KERAS_GOLDEN_TOL, rtol=KERAS_GOLDEN_TOL)
    np.testing.assert_array_equal(out, h)


MASK = np.array([[True, True, False, True], [True, False, False, True]])


@pytest.mark.parametrize("zero_output_for_mask", [False, True], ids=["repeat", "zero_output"])
def test_keras_gru_golden_masking(zero_output_for_mask):
    """gru_test.py test_masking: masked steps repeat the previous output, or are zeros."""
    gru = constant_gru(3, 2, return_sequences=True, zero_output_for_mask=zero_output_for_mask)
    out = gru(arange(2, 4, 3), mask=MASK)
    z = 0.0 if zero_output_for_mask else None
    expected = [
        [0.03606692, 0.09497581, z if z is not None else 0.09497581, 0.19393763],
        [0.16051409, z if z is not None else 0.16051409, z if z is not None else 0.16051409, 0.30818558],
    ]
    np.testing.assert_allclose(out, np.repeat(np.array(expected)[..., None], 2, axis=2),
                               atol=KERAS_GOLDEN_TOL, rtol=KERAS_GOLDEN_TOL)
    last = constant_gru(3, 2, go_backwards=True)(arange(2, 4, 3), mask=MASK)
    np.testing.assert_allclose(last, rows([0.11669192, 0.28380975], 2), atol=KERAS_GOLDEN_TOL,
                               rtol=KERAS_GOLDEN_TOL)


SIMPLE_RNN_GOLDEN = {  # simple_rnn_test.py: (options, input shape, units, call, expected rows)
    "correctness": ({}, (2, 3, 4), 4, {}, [0.405432, 0.73605347]),
    "correctness_go_backwards": ({"go_backwards": True}, (2, 3, 4), 4, {}, [0.11144729, 0.5528889]),
    "initial_state": ({}, (2, 4, 3), 4, {"initial_state": True}, [0.33621645, 0.6262637]),
    "initial_state_go_backwards": (
        {"go_backwards": True}, (2, 4, 3), 4, {"initial_state": True}, [0.07344437, 0.43043602]
    ),
    "masking": ({}, (2, 4, 3), 4, {"mask": True}, [0.32951632, 0.61799484]),
    "masking_go_backwards": ({"go_backwards": True}, (2, 4, 3), 4, {"mask": True}, [0.07376196, 0.43645123]),
}


@pytest.mark.parametrize("case", list(SIMPLE_RNN_GOLDEN))
def test_keras_simple_rnn_golden(case):
    """simple_rnn_test.py: test_correctness, test_pass_initial_state, test_masking (last outputs)."""
    options, shape, units, call, expected = SIMPLE_RNN_GOLDEN[case]
    rnn = constant_simple_rnn(shape[2], units, **options)
    kwargs = {}
    if call.get("initial_state"):
        kwargs["initial_state"] = [arange(2, 4)]
    if call.get("mask"):
        kwargs["mask"] = MASK
    np.testing.assert_allclose(rnn(arange(*shape), **kwargs), rows(expected, units),
                               atol=KERAS_GOLDEN_TOL, rtol=KERAS_GOLDEN_TOL)


def test_keras_simple_rnn_golden_stateful_and_mask_sequences():
    """simple_rnn_test.py test_statefulness and the return_sequences half of test_masking."""
    rnn = constant_simple_rnn(4, 4, stateful=True)
    rnn(arange(2, 3, 4))
    np.testing.assert_allclose(rnn(arange(2, 3, 4)), rows([0.40559256, 0.7361247], 4),
                               atol=KERAS_GOLDEN_TOL, rtol=KERAS_GOLDEN_TOL)
    for zero in (False, True):
        out = constant_simple_rnn(3, 2, return_sequences=True, zero_output_for_mask=zero)(arange(2, 4, 3), mask=MASK)
        fill = (lambda v: 0.0) if zero else (lambda v: v)  # noqa: E731
        expected = [[0.0599281, 0.15122814, fill(0.15122814), 0.32394567],
                    [0.3969304, fill(0.3969304), fill(0.3969304), 0.608085]]
        np.testing.assert_allclose(out, np.repeat(np.array(expected)[..., None], 2, axis=2),
                                   atol=KERAS_GOLDEN_TOL, rtol=KERAS_GOLDEN_TOL)


# --- onnxruntime deep_cpu_gru_op_test.cc -------------------------------------------------------
# One direction's W (3·hidden, input), R (3·hidden, hidden) and B = [Wb | Rb] (6·hidden), read by
# reflstm.GRU.from_onnx (ONNX's layout and linear_before_reset are in reflstm/frameworks/onnx.py).
# X and Y are time-major; a "reverse" Y is in input order, Keras's go_backwards output in
# processing order.

ORT_W = [[-0.494659, 0.0453352], [-0.487793, 0.417264],  # Wz
         [-0.0091708, -0.255364], [-0.106952, -0.266717],  # Wr
         [-0.0888852, -0.428709], [-0.283349, 0.208792]]  # Wh
ORT_R = [[0.146626, -0.0620289], [-0.0815302, 0.100482],  # Rz
         [-0.228172, 0.405972], [0.31576, 0.281487],  # Rr
         [-0.394864, 0.42111], [-0.386624, -0.390225]]  # Rh
ORT_B = [0.381619, 0.0323954, -0.258721, 0.45056, -0.250755, 0.0967895] + [0.0] * 6
ORT_X = [[[-0.455351, -0.276391], [-0.455351, -0.276391]],
         [[-0.185934, -0.269585], [-0.185934, -0.269585]]]  # (seq, batch, input)
ORT_H0 = [[0.5, -0.5], [0.0, 0.0]]

SIMPLE_W = [[0.1], [0.2], [0.3], [0.2], [0.3], [0.1], [0.3], [0.1], [0.2]]  # wz, wr, wh (input 1)
SIMPLE_R = [[0.1] * 3] * 9
SIMPLE_B = [-0.01, 0.1, 0.01, -0.2, -0.02, 0.02, 0.3, -0.3, -0.3,  # Wb z, r, h
            -0.03, 0.5, -0.7, 0.05, -0.7, 0.3, 0.07, -0.03, 0.5]  # Rb z, r, h
SIMPLE_X = [[[-0.1], [0.2]], [[-0.3], [0.4]]]

# name -> (W, R, B, X, initial_h, direction, linear_before_reset, ONNX activations (f, g), Y)
ORT_CASES = {
    "TestGRUOpForwardBatch": (ORT_W, ORT_R, ORT_B, ORT_X, ORT_H0, "forward", 0, ("sigmoid", "tanh"),
                              [[[0.2366661, -0.1500429], [-0.03255286, 0.0774838]],
                               [[0.07378622, -0.02782359], [-0.05556786, 0.0785508]]]),
    "TestGRUOpForwardBatchLinearBeforeReset": (
        ORT_W, ORT_R, ORT_B, ORT_X, ORT_H0, "forward", 1, ("sigmoid", "tanh"),
        [[[0.253942400, -0.174207777], [-0.0325528607, 0.0774837881]],
         [[0.0874997079, -0.0485242009], [-0.0577347837, 0.0796165839]]]),
    "TestGRUOpForwardActivation": (  # f = tanh on the gates, g = sigmoid on the candidate
        ORT_W, ORT_R, ORT_B, [s[:1] for s in ORT_X], [[0.0, 0.0]], "forward", 0, ("tanh", "sigmoid"),
        [[[0.222789, 0.4669829]], [[0.3810334, 0.4944591]]]),
    "ForwardDefaultActivationsSimpleWeightsWithBiasBatchParallel": (
        SIMPLE_W, SIMPLE_R, SIMPLE_B, SIMPLE_X, None, "forward", 0, ("sigmoid", "tanh"),
        [[[0.16783132, -0.11754231, 0.11977843], [0.2046872, -0.10372487, 0.15365849]],
         [[0.22688604, -0.19698407, 0.14017843], [0.33386092, -0.15799662, 0.2381169]]]),
    "ForwardDefaultActivationsSimpleWeightsWithBiasBatchParallelLinearBeforeReset": (
        SIMPLE_W, SIMPLE_R, SIMPLE_B, SIMPLE_X, None, "forward", 1, ("sigmoid", "tanh"),
        [[[0.15024948, -0.11097029, -0.02121867], [0.18887489, -0.09747667, 0.02093463]],
         [[0.19538902, -0.19016478, -0.05644283], [0.30856851, -0.15190377, 0.05999807]]]),
    "ReverseDefaultActivationsSimpleWeightsWithBiasBatchParallelLinearBeforeReset": (
        SIMPLE_W, SIMPLE_R, SIMPLE_B, SIMPLE_X, None, "reverse", 1, ("sigmoid", "tanh"),
        [[[0.20910699, -0.18880953, -0.04005555], [0.29700265, -0.15308119, 0.04537245]],
         [[0.12252139, -0.12032216, -0.05064924], [0.21249877, -0.08884402, 0.04751285]]]),
}
ORT_TOL = 1e-6  # the expected values are float32 results printed to 7-9 digits


def one_direction(*arrays):
    """W, R, B of one direction as float32 arrays with ONNX's num_directions axis."""
    return [np.array(a, "float32")[None] for a in arrays]


@pytest.mark.parametrize("case", list(ORT_CASES))
def test_onnxruntime_gru_vectors(case):
    """onnxruntime's GRU outputs, every step, from reflstm.GRU on the same weights in Keras's layout."""
    W, R, B, X, h0, direction, linear_before_reset, activations, Y = ORT_CASES[case]
    gru = reflstm.GRU.from_onnx(*one_direction(W, R, B), direction=direction,
                                linear_before_reset=linear_before_reset, activations=list(activations))
    x = np.array(X, "float32").transpose(1, 0, 2)  # (batch, seq, input)
    initial_state = None if h0 is None else [np.array(h0, "float32")]
    out, _ = gru(x, initial_state=initial_state)
    if direction == "reverse":
        out = out[:, ::-1]  # ONNX's reverse Y is in input order
    expected = np.array(Y, "float32").transpose(1, 0, 2)
    np.testing.assert_allclose(out, expected, atol=ORT_TOL, rtol=ORT_TOL)


def test_onnxruntime_vector_is_gate_order_sensitive():
    """Swapping the z and r blocks changes the answer: the vector pins Keras's z, r, h order."""
    W, R, B, X, h0, direction, lbr, activations, Y = ORT_CASES["TestGRUOpForwardBatch"]
    swap = lambda a: np.concatenate([a[2:4], a[0:2], a[4:6]])  # noqa: E731
    B = np.array(B)
    swapped_B = np.concatenate([swap(B[:6]), swap(B[6:])])
    gru = reflstm.GRU.from_onnx(*one_direction(swap(np.array(W)), swap(np.array(R)), swapped_B),
                                direction=direction, linear_before_reset=lbr, activations=list(activations))
    out, _ = gru(np.array(X, "float32").transpose(1, 0, 2), initial_state=[np.array(h0, "float32")])
    assert np.abs(out - np.array(Y, "float32").transpose(1, 0, 2)).max() > 1e-2
