"""ONNX LSTM, GRU and RNN <-> reflstm, checked with onnxruntime and the ONNX reference evaluator.

The reference evaluator (onnx/reference/ops/op_lstm.py, op_gru.py, op_rnn.py, onnx 1.23) ignores
the activations, activation_alpha/beta and clip attributes: it always computes Sigmoid and Tanh
(the RNN: its first activation, Tanh or Affine only). Its GRU follows the spec for both
linear_before_reset values: with 0 it adds Rb_h outside the reset product, with 1 it resets
(h R_h + Rb_h). So it is used here only with the default activations, in float64.
"""

import numpy as np
import pytest

import reflstm
from keras_layers import KERAS_VERSIONS, call_keras, make_layer, random_cell_weights
from reflstm.frameworks.onnx import layers_from_onnx_file

onnx = pytest.importorskip("onnx", reason="onnx is a test extra; install reflstm[test]")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is a test extra; install reflstm[test]")
from onnx import helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

BATCH, SEQ, FEATURES, UNITS = 3, 6, 4, 5
FLOAT32_TOL, FLOAT64_TOL = 2e-6, 1e-12
OPS = {"LSTM": "LSTM", "GRU": "GRU", "SimpleRNN": "RNN"}
GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}
CLASSES = {"LSTM": reflstm.LSTM, "GRU": reflstm.GRU, "SimpleRNN": reflstm.SimpleRNN}


def onnx_node(kind, node_inputs, prefix=""):
    """One ONNX node of reflstm layer `kind` reading X, its W, R, B as initializers named with
    `prefix`; returns (node, initializers, output names)."""
    outputs = [prefix + name for name in ("Y", "Y_h", "Y_c")[: 3 if kind == "LSTM" else 2]]
    attributes = {k: v for k, v in node_inputs.items() if k not in ("W", "R", "B")}
    node = helper.make_node(OPS[kind], ["X"] + [prefix + k for k in ("W", "R", "B")], outputs,
                            name=prefix + OPS[kind], **attributes)
    return node, {prefix + k: node_inputs[k] for k in ("W", "R", "B")}, outputs


def onnx_model(nodes, dtype):
    """A model of ONNX nodes (from `onnx_node`) all reading X (seq, batch, features)."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph = helper.make_graph(
        [node for node, _, _ in nodes], "recurrent",
        [helper.make_tensor_value_info("X", elem, [SEQ, BATCH, FEATURES])],
        [helper.make_tensor_value_info(name, elem, None) for _, _, outputs in nodes for name in outputs],
        [numpy_helper.from_array(np.asarray(a, dtype), name) for _, arrays, _ in nodes for name, a in arrays.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model


def run_onnxruntime(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": x})


def run_reference(model, x):
    return ReferenceEvaluator(model).run(None, {"X": x})


RUNNERS = {"onnxruntime": (run_onnxruntime, "float32", FLOAT32_TOL),
           "reference_evaluator": (run_reference, "float64", FLOAT64_TOL)}


def reflstm_layer(kind, dtype, seed=0, **options):
    """A reflstm layer with random per-gate weights and non-zero biases (both rows for reset_after)."""
    weights = random_cell_weights(np.random.default_rng(seed), kind, FEATURES, UNITS, dtype,
                                  reset_after=options.get("reset_after", True))
    return CLASSES[kind](*weights, return_sequences=True, return_state=True, **options)


def compare(layer, outputs, x_time_major, tol):
    """ONNX's Y (one direction, input order), Y_h (and Y_c) against the layer run on the same input."""
    y, *states = layer(x_time_major.transpose(1, 0, 2))
    if layer.go_backwards:
        y = y[:, ::-1]  # ONNX gives the reverse direction in input order
    Y, *Y_states = outputs
    np.testing.assert_allclose(Y[:, 0].transpose(1, 0, 2), y, rtol=tol, atol=tol)
    for Y_state, state in zip(Y_states, states, strict=True):
        np.testing.assert_allclose(Y_state[0], state, rtol=tol, atol=tol)


def time_major_input(dtype, seed=1):
    return np.random.default_rng(seed).normal(0, 1.5, (SEQ, BATCH, FEATURES)).astype(dtype)


def to_onnx_case(kind, options, runner):
    layer = reflstm_layer(kind, RUNNERS[runner][1], **options)
    run, dtype, tol = RUNNERS[runner]
    x = time_major_input(dtype)
    compare(layer, run(onnx_model([onnx_node(kind, layer.to_onnx())], dtype), x), x, tol)


# The reference evaluator computes only the default activations (see the module docstring).
REFERENCE_CASES = {
    "LSTM_forward": ("LSTM", {}),
    "LSTM_reverse": ("LSTM", {"go_backwards": True}),
    "GRU_reset_after": ("GRU", {}),
    "GRU_reset_before": ("GRU", {"reset_after": False}),
    "GRU_reverse": ("GRU", {"go_backwards": True}),
    "SimpleRNN_forward": ("SimpleRNN", {}),
    "SimpleRNN_reverse": ("SimpleRNN", {"go_backwards": True}),
}


@pytest.mark.parametrize("case", list(REFERENCE_CASES))
def test_to_onnx_with_reference_evaluator_float64(case):
    """to_onnx() in a graph run by the ONNX reference evaluator equals reflstm, float64."""
    to_onnx_case(*REFERENCE_CASES[case], "reference_evaluator")


ONNXRUNTIME_CASES = {
    "LSTM_forward": ("LSTM", {}),
    "LSTM_reverse": ("LSTM", {"go_backwards": True}),
    "LSTM_hard_sigmoid_keras3": ("LSTM", {"recurrent_activation": "hard_sigmoid", "keras_version": 3}),
    "LSTM_hard_sigmoid_keras2": ("LSTM", {"recurrent_activation": "hard_sigmoid", "keras_version": 2}),
    "LSTM_relu": ("LSTM", {"activation": "relu"}),
    "LSTM_softsign_elu": ("LSTM", {"activation": "softsign", "recurrent_activation": "elu"}),
    "GRU_reset_after": ("GRU", {}),
    "GRU_reset_before": ("GRU", {"reset_after": False}),
    "GRU_reverse_reset_before": ("GRU", {"go_backwards": True, "reset_after": False}),
    "GRU_hard_sigmoid_keras2": ("GRU", {"recurrent_activation": "hard_sigmoid", "keras_version": 2}),
    "GRU_hard_sigmoid_keras3_relu": ("GRU", {"recurrent_activation": "hard_sigmoid", "activation": "relu"}),
    "GRU_linear_candidate": ("GRU", {"activation": None}),
    "GRU_softsign": ("GRU", {"activation": "softsign"}),
    "SimpleRNN_forward": ("SimpleRNN", {}),
    "SimpleRNN_reverse": ("SimpleRNN", {"go_backwards": True}),
    "SimpleRNN_relu": ("SimpleRNN", {"activation": "relu"}),
    "SimpleRNN_hard_sigmoid_keras3": ("SimpleRNN", {"activation": "hard_sigmoid"}),
    "SimpleRNN_linear": ("SimpleRNN", {"activation": "linear"}),
}


@pytest.mark.parametrize("case", list(ONNXRUNTIME_CASES))
def test_to_onnx_with_onnxruntime(case):
    """to_onnx() in a graph run by onnxruntime equals reflstm (float32), activations included."""
    to_onnx_case(*ONNXRUNTIME_CASES[case], "onnxruntime")


KERAS_CASES = {
    "LSTM_hard_sigmoid": ("LSTM", {"recurrent_activation": "hard_sigmoid"}),
    "GRU_reset_after": ("GRU", {}),
    "GRU_reset_before_hard_sigmoid": ("GRU", {"reset_after": False, "recurrent_activation": "hard_sigmoid"}),
    "GRU_go_backwards": ("GRU", {"go_backwards": True}),
    "SimpleRNN_relu": ("SimpleRNN", {"activation": "relu"}),
}


@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("case", list(KERAS_CASES))
def test_keras_layer_survives_onnx(case, keras_version):
    """A real Keras layer, through from_keras().to_onnx(), gives Keras's output in onnxruntime."""
    kind, options = KERAS_CASES[case]
    layer = make_layer(keras_version, FEATURES, UNITS, "float32", kind=kind, return_sequences=True, **options)
    x = time_major_input("float32")
    expected = call_keras(layer, x.transpose(1, 0, 2))
    node = CLASSES[kind].from_keras(layer).to_onnx()
    if "hard_sigmoid" in options.values():
        assert node["activation_alpha"][0] == pytest.approx(0.2 if keras_version == 2 else 1 / 6)
    Y = run_onnxruntime(onnx_model([onnx_node(kind, node)], "float32"), x)[0]
    if options.get("go_backwards"):
        expected = expected[:, ::-1]  # Keras returns processing order, ONNX input order
    np.testing.assert_allclose(Y[:, 0].transpose(1, 0, 2), expected, rtol=FLOAT32_TOL, atol=FLOAT32_TOL)


def onnx_arrays(kind, num_directions, seed, linear_before_reset=0):
    """An ONNX node's W, R, B drawn in ONNX's layout: every gate block on its own, Wb and Rb
    different and non-zero."""
    rng = np.random.default_rng(seed)
    k = GATES[kind]

    def gate_blocks(columns, scale=0.6):
        offsets = rng.uniform(-0.3, 0.3, size=k)
        return np.stack([np.concatenate([rng.normal(o, scale, (UNITS, columns)) for o in offsets])
                         for _ in range(num_directions)])  # (num_directions, k*UNITS, columns)

    shift = np.repeat(np.linspace(0.5, -0.5, k), UNITS)
    B = np.stack([np.concatenate([rng.uniform(-1, 1, k * UNITS) + shift, rng.uniform(-1, 1, k * UNITS) - shift])
                  for _ in range(num_directions)])  # (num_directions, 2*k*UNITS)
    node = dict(W=gate_blocks(FEATURES), R=gate_blocks(UNITS), B=B, hidden_size=UNITS)
    if kind == "GRU":
        node["linear_before_reset"] = linear_before_reset
    return node


@pytest.mark.parametrize("runner", list(RUNNERS))
@pytest.mark.parametrize("linear_before_reset", [0, 1], ids=["reset_before", "linear_before_reset"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_nodes_from_file(direction, linear_before_reset, runner, tmp_path):
    """An .onnx file with an LSTM, a GRU and an RNN node made in ONNX's layout (non-zero Wb and
    Rb): layers_from_onnx_file's layers reproduce each direction's Y, Y_h (Y_c)."""
    run, dtype, tol = RUNNERS[runner]
    num_directions = 2 if direction == "bidirectional" else 1
    nodes = [onnx_node(kind, dict(onnx_arrays(kind, num_directions, seed, linear_before_reset),
                                  direction=direction), prefix=kind + "_")
             for seed, kind in enumerate(OPS)]
    model = onnx_model(nodes, dtype)
    path = tmp_path / "recurrent.onnx"
    onnx.save(model, str(path))
    x = time_major_input(dtype)
    outputs = dict(zip([name for _, _, names in nodes for name in names], run(model, x)))
    layers = layers_from_onnx_file(path)
    assert list(layers) == [kind + "_" + OPS[kind] for kind in OPS]
    for kind in OPS:
        directions = layers[kind + "_" + OPS[kind]]
        assert [type(layer).__name__ for layer in directions] == [kind] * num_directions
        assert [layer.go_backwards for layer in directions] == (
            [False, True] if num_directions == 2 else [direction == "reverse"])
        if kind == "GRU":
            assert directions[0].reset_after == bool(linear_before_reset)
        node_outputs = [outputs[kind + "_" + name] for name in ("Y", "Y_h", "Y_c")[: 3 if kind == "LSTM" else 2]]
        for d, layer in enumerate(directions):
            compare(layer, [Y[:, d : d + 1] if i == 0 else Y[d : d + 1] for i, Y in enumerate(node_outputs)],
                    x, tol)


@pytest.mark.parametrize("case", list(ONNXRUNTIME_CASES))
def test_from_onnx_of_to_onnx_round_trip(case):
    """from_onnx(**to_onnx()) gives back the same weights and options."""
    kind, options = ONNXRUNTIME_CASES[case]
    layer = reflstm_layer(kind, "float64", **options)
    back = CLASSES[kind].from_onnx(**layer.to_onnx())
    for name in ("kernel", "recurrent_kernel", "bias"):
        np.testing.assert_array_equal(getattr(back, name), getattr(layer, name))
    for name in ("activation", "recurrent_activation"):  # None is "linear" to Keras
        assert (getattr(back, name, None) or "linear") == (getattr(layer, name, None) or "linear"), name
    for name in ("reset_after", "go_backwards", "keras_version"):
        assert getattr(back, name, None) == getattr(layer, name, None), name


def test_gru_reset_before_puts_the_bias_in_wb():
    """to_onnx of a GRU with reset_after=False: Wb is Keras's bias, Rb zeros, linear_before_reset 0."""
    layer = reflstm_layer("GRU", "float64", reset_after=False)
    node = layer.to_onnx()
    assert node["linear_before_reset"] == 0
    np.testing.assert_array_equal(node["B"][0], np.concatenate([layer.bias, np.zeros(3 * UNITS)]))


def node_of(kind, **options):
    return reflstm_layer(kind, "float32", **options).to_onnx()


@pytest.mark.parametrize(
    "kind, attributes, words",
    [
        ("LSTM", dict(clip=3.0), "clip"),
        ("LSTM", dict(input_forget=1), "input_forget"),
        ("LSTM", dict(activations=["Sigmoid", "Tanh", "Relu"]), "same g and h"),
        ("LSTM", dict(activations=["ScaledTanh", "Tanh", "Tanh"]), "activations"),
        ("LSTM", dict(direction="bidirectional"), "W: expected 2 direction"),
        ("GRU", dict(clip=3.0), "clip"),
        ("GRU", dict(layout=1), "layout"),
        ("GRU", dict(linear_before_reset=2), "linear_before_reset"),
        ("GRU", dict(activations=["Sigmoid", "Tanh", "Tanh"]), "2 name"),
        ("GRU", dict(activations=["HardSigmoid", "HardSigmoid"], activation_alpha=[0.2, 1 / 6]),
         "HardSigmoid of one Keras version"),
        ("GRU", dict(activations=["Sigmoid", "Affine"]), "Affine alpha=None"),
        ("GRU", dict(input_forget=0), "input_forget: expected an attribute or input of ONNX's GRU"),
        ("GRU", dict(hidden_size=UNITS + 1), "hidden_size"),
        ("SimpleRNN", dict(clip=1.0), "clip"),
        ("SimpleRNN", dict(activations=["Tanh", "Tanh"]), "1 name"),
        ("SimpleRNN", dict(linear_before_reset=1), "linear_before_reset"),
    ],
)
def test_unrepresentable_nodes_are_refused(kind, attributes, words):
    """ONNX options Keras has no equivalent for are refused by name, never ignored."""
    node = node_of(kind)
    with pytest.raises(reflstm.ReflstmError, match=words):
        CLASSES[kind].from_onnx(**{**node, **attributes})


def test_bidirectional_index_is_required():
    """A bidirectional node's direction is picked by index, never guessed."""
    node = onnx_arrays("GRU", 2, seed=0)
    with pytest.raises(reflstm.ReflstmError, match="index"):
        reflstm.GRU.from_onnx(**node, direction="bidirectional")


def test_activation_onnx_lacks_is_refused_by_to_onnx():
    """A Keras activation with no ONNX counterpart is refused by to_onnx, naming it."""
    with pytest.raises(reflstm.ReflstmError, match="'selu'"):
        node_of("SimpleRNN", activation="selu")
