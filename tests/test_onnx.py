"""ONNX LSTM <-> reflstm, checked with onnxruntime and the ONNX reference evaluator."""

import numpy as np
import pytest

import reflstm
from keras_layers import call_keras, make_layer, random_weights
from reflstm.frameworks.onnx import lstms_from_onnx_file

onnx = pytest.importorskip("onnx", reason="onnx is a test extra; install reflstm[test]")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is a test extra; install reflstm[test]")
from onnx import helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

BATCH, SEQ, FEATURES, UNITS = 3, 6, 4, 5


def onnx_model(node_inputs, dtype):
    """A one-node ONNX model: X (seq, batch, features) -> LSTM -> Y, Y_h, Y_c."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    attributes = {k: v for k, v in node_inputs.items() if k not in ("W", "R", "B")}
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "Y_h", "Y_c"], **attributes)
    initializers = [numpy_helper.from_array(node_inputs[k].astype(dtype), k) for k in ("W", "R", "B")]
    graph = helper.make_graph(
        [node], "lstm",
        [helper.make_tensor_value_info("X", elem, [SEQ, BATCH, FEATURES])],
        [helper.make_tensor_value_info(name, elem, None) for name in ("Y", "Y_h", "Y_c")],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model


def run_onnxruntime(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": x})


def run_reference(model, x):
    return ReferenceEvaluator(model).run(None, {"X": x})


def reflstm_lstm(dtype, seed=0, **options):
    kernel, recurrent, bias = random_weights(np.random.default_rng(seed), FEATURES, UNITS, dtype)
    return reflstm.LSTM(kernel, recurrent, bias, return_sequences=True, return_state=True, **options)


def compare(ref, outputs, x_time_major, tol):
    """ONNX's Y (input order), Y_h, Y_c against the reflstm LSTM run on the same input."""
    y, h, c = ref(x_time_major.transpose(1, 0, 2))
    if ref.go_backwards:
        y = y[:, ::-1]  # ONNX gives the reverse direction in input order
    Y, Y_h, Y_c = outputs
    np.testing.assert_allclose(Y[:, 0].transpose(1, 0, 2), y, rtol=tol, atol=tol)
    np.testing.assert_allclose(Y_h[0], h, rtol=tol, atol=tol)
    np.testing.assert_allclose(Y_c[0], c, rtol=tol, atol=tol)


def time_major_input(dtype, seed=1):
    return np.random.default_rng(seed).normal(0, 1.5, (SEQ, BATCH, FEATURES)).astype(dtype)


@pytest.mark.parametrize("go_backwards", [False, True], ids=["forward", "reverse"])
def test_to_onnx_with_reference_evaluator_float64(go_backwards):
    """to_onnx() in a graph run by the ONNX reference evaluator equals reflstm, float64."""
    ref = reflstm_lstm("float64", go_backwards=go_backwards)
    x = time_major_input("float64")
    compare(ref, run_reference(onnx_model(ref.to_onnx(), "float64"), x), x, 1e-12)


CASES = {
    "forward": {},
    "reverse": {"go_backwards": True},
    "hard_sigmoid_keras3": {"recurrent_activation": "hard_sigmoid", "keras_version": 3},
    "hard_sigmoid_keras2": {"recurrent_activation": "hard_sigmoid", "keras_version": 2},
    "relu": {"activation": "relu"},
    "softsign_elu": {"activation": "softsign", "recurrent_activation": "elu"},
}


@pytest.mark.parametrize("case", list(CASES))
def test_to_onnx_with_onnxruntime(case):
    """to_onnx() in a graph run by onnxruntime equals reflstm (float32), activations included."""
    ref = reflstm_lstm("float32", **CASES[case])
    x = time_major_input("float32")
    compare(ref, run_onnxruntime(onnx_model(ref.to_onnx(), "float32"), x), x, 2e-6)


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
def test_keras_hard_sigmoid_survives_onnx(keras_version):
    """A Keras LSTM with hard_sigmoid, through to_onnx, gives Keras's output in onnxruntime."""
    layer = make_layer(keras_version, FEATURES, UNITS, "float32", recurrent_activation="hard_sigmoid",
                       return_sequences=True)
    x = time_major_input("float32")
    expected = call_keras(layer, x.transpose(1, 0, 2))
    node = reflstm.LSTM.from_keras(layer).to_onnx()
    assert node["activation_alpha"][0] == pytest.approx(0.2 if keras_version == 2 else 1 / 6)
    Y, _, _ = run_onnxruntime(onnx_model(node, "float32"), x)
    np.testing.assert_allclose(Y[:, 0].transpose(1, 0, 2), expected, rtol=2e-6, atol=2e-6)


def test_bidirectional_node_from_file(tmp_path):
    """A bidirectional ONNX node read from an .onnx file: each direction reproduces its Y."""
    forward = reflstm_lstm("float32", seed=2).to_onnx()
    backward = reflstm_lstm("float32", seed=3, go_backwards=True).to_onnx()
    # Non-zero Rb too, so both halves of B matter: move part of Wb into Rb.
    node = dict(forward, direction="bidirectional", activations=forward["activations"] * 2)
    for key in ("W", "R", "B"):
        node[key] = np.concatenate([forward[key], backward[key]])
    half = node["B"].shape[1] // 2
    node["B"][:, half:] = 0.25
    node["B"][:, :half] -= 0.25
    model = onnx_model(node, "float32")
    path = tmp_path / "lstm.onnx"
    onnx.save(model, str(path))
    x = time_major_input("float32")
    Y, Y_h, Y_c = run_onnxruntime(model, x)
    (name, lstms), = lstms_from_onnx_file(path).items()
    assert [l.go_backwards for l in lstms] == [False, True]
    for d, lstm in enumerate(lstms):
        compare(lstm, (Y[:, d : d + 1], Y_h[d : d + 1], Y_c[d : d + 1]), x, 2e-6)


def test_from_onnx_arrays_round_trip():
    """from_onnx(to_onnx()) gives back the same weights and options."""
    ref = reflstm_lstm("float64", recurrent_activation="hard_sigmoid", keras_version=2, go_backwards=True)
    node = ref.to_onnx()
    back = reflstm.LSTM.from_onnx(node["W"], node["R"], node["B"], direction=node["direction"],
                                  activations=node["activations"],
                                  activation_alpha=node.get("activation_alpha"),
                                  activation_beta=node.get("activation_beta"))
    np.testing.assert_allclose(back.kernel, ref.kernel)
    np.testing.assert_allclose(back.bias, ref.bias)
    assert back.go_backwards and back.recurrent_activation == "hard_sigmoid" and back.keras_version == 2


@pytest.mark.parametrize(
    "attributes, words",
    [
        (dict(clip=3.0), "clip"),
        (dict(input_forget=1), "input_forget"),
        (dict(activations=["Sigmoid", "Tanh", "Relu"]), "same g and h"),
        (dict(activations=["ScaledTanh", "Tanh", "Tanh"]), "activations"),
        (dict(direction="bidirectional"), "index"),
    ],
)
def test_unrepresentable_nodes_are_refused(attributes, words):
    """ONNX options Keras has no equivalent for are refused, never ignored."""
    node = reflstm_lstm("float32").to_onnx()
    with pytest.raises(reflstm.ReflstmError, match=words):
        reflstm.LSTM.from_onnx(node["W"], node["R"], node["B"], **attributes)
