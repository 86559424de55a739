"""diagnose: broken extractions of real Keras and PyTorch LSTMs and GRUs, and the fix it finds."""

import numpy as np
import pytest

import reflstm
from keras_layers import KERAS_VERSIONS, TOLERANCE, call_keras, make_layer, random_cell_weights
from reflstm.frameworks.layouts import KERAS, KERAS_GRU, ONNX, TF1, TORCH_GRU, reorder

BATCH, TIMESTEPS, INPUT_DIM, UNITS = 4, 7, 3, 5
FLOAT64 = TOLERANCE["float64"]  # the fixed layer against the framework's own output


def keras_case(keras_version=3, kind="LSTM", input_dim=INPUT_DIM, units=UNITS, weights=None, **options):
    """A float64 Keras layer (Keras 3 or tf_keras), its arrays, an input and that layer's output."""
    layer = make_layer(keras_version, input_dim, units, "float64", seed=4, kind=kind, weights=weights,
                       **options)
    x = np.random.default_rng(5).normal(0, 1.5, (BATCH, TIMESTEPS, input_dim))
    return layer.get_weights(), x, call_keras(layer, x)


def check(report, *words):
    """The report fits and names each mistake."""
    assert report.fits, str(report)
    text = str(report)
    for word in words:
        assert word in text, text
    return text


def test_correct_arrays_are_reported_right():
    """Arrays extracted correctly: 'the arrays are right as given'."""
    (k, r, b), x, y = keras_case(return_sequences=True)
    report = reflstm.diagnose(k, r, b, x=x, expected=y)
    check(report, "Found (LSTM)", "the arrays are right as given")
    np.testing.assert_allclose(report.layer(x), y, rtol=FLOAT64, atol=FLOAT64)


@pytest.mark.parametrize("order, words", [(ONNX, "ONNX order i,o,f,c"), (TF1, "order i,c,f,o"),
                                          ("fico", "order f,i,c,o")])
def test_gate_order(order, words):
    """Gates stored in another order (ONNX, TF1 / Keras 1, any permutation) are named."""
    (k, r, b), x, y = keras_case()
    report = reflstm.diagnose(reorder(k, KERAS, order), reorder(r, KERAS, order),
                              reorder(b, KERAS, order), x=x, expected=y)
    check(report, words)
    np.testing.assert_allclose(report.layer.kernel, k)


def test_transposed_swapped_and_doubled_bias():
    """A transposed kernel, kernel and recurrent swapped, and a bias counted twice, together."""
    (k, r, b), x, y = keras_case(return_sequences=True)
    report = reflstm.diagnose(r, k.T, 2 * b, x=x, expected=y)
    check(report, "swapped", "kernel is transposed", "counted twice")


def test_missing_bias_and_hard_sigmoid_versions():
    """A layer without bias given a bias, and tf_keras's hard_sigmoid, are recognised."""
    (k, r), x, y = keras_case(2, use_bias=False, recurrent_activation="hard_sigmoid")
    report = reflstm.diagnose(k, r, np.ones(4 * UNITS), x=x, expected=y)
    check(report, "no bias", "Keras 2 defines it")


def test_backward_weights_and_time_major():
    """A go_backwards layer's weights, with a time-major input and output in processing order."""
    (k, r, b), x, y = keras_case(go_backwards=True, return_sequences=True)
    report = reflstm.diagnose(k, r, b, x=x.transpose(1, 0, 2), expected=y)
    check(report, "backward", "input is time-major")


# GRU mistakes: name -> (layer options, the reset_after values it applies to, the arrays given
# (from the layer's weights and input), words the report must say; "{keras_version}" is filled in).
def as_given(k, r, b, x):
    return k, r, b, x


def gates_in(order):
    return lambda k, r, b, x: (*[reorder(w, KERAS_GRU, order) for w in (k, r, b)], x)


GRU_MISTAKES = {
    "right": ({}, (True, False), as_given, ["the arrays are right as given"]),
    "pytorch_order": ({}, (True, False), gates_in(TORCH_GRU), ["PyTorch / cuDNN order r,z,n"]),
    "order_h_z_r": ({}, (True, False), gates_in("hzr"), ["order h,z,r"]),
    "swapped_and_transposed": ({}, (True, False), lambda k, r, b, x: (r, k.T, b, x),
                               ["swapped", "kernel is transposed ((3*units, input_dim)"]),
    "bias_doubled": ({}, (True, False), lambda k, r, b, x: (k, r, 2 * b, x), ["counted twice"]),
    "bias_flat": ({}, (True,), lambda k, r, b, x: (k, r, b.reshape(-1), x),
                  ["two biases given flat (6*units,)"]),
    "only_input_bias_belongs": ({}, (False,), lambda k, r, b, x: (k, r, np.stack([b, np.ones_like(b)]), x),
                                ["only the first half of the bias (b_ih)"]),
    "no_bias": ({"use_bias": False}, (True, False), lambda k, r, x: (k, r, np.ones(6 * UNITS), x), ["no bias"]),
    "hard_sigmoid": ({"recurrent_activation": "hard_sigmoid"}, (True, False), as_given,
                     ["hard_sigmoid as Keras {keras_version} defines it"]),
    "backward_time_major": ({"go_backwards": True, "return_sequences": True}, (True, False),
                            lambda k, r, b, x: (k, r, b, x.transpose(1, 0, 2)),
                            ["backward (go_backwards / reverse) GRU's weights", "the input is time-major"]),
}
GRU_CASES = [
    pytest.param(keras_version, reset_after, name, id=f"keras{keras_version}-reset_after_{reset_after}-{name}")
    for keras_version in KERAS_VERSIONS for reset_after in (True, False)
    for name, (_, modes, _, _) in GRU_MISTAKES.items() if reset_after in modes
]


@pytest.mark.parametrize("keras_version, reset_after, name", GRU_CASES)
def test_gru_mistakes(keras_version, reset_after, name):
    """Each GRU extraction mistake, on a real Keras GRU's arrays, is named and the fix reproduces it."""
    options, _, mistake, words = GRU_MISTAKES[name]
    weights, x, y = keras_case(keras_version, "GRU", reset_after=reset_after, **options)
    k, r, b, x_given = mistake(*weights, x)
    report = reflstm.diagnose(k, r, b, x=x_given, expected=y)
    text = check(report, "Found (GRU)", *(word.format(keras_version=keras_version) for word in words))
    # The bias's shape suggests a reset_after; the report names the real one where they differ.
    shaped_for_reset_after = np.size(b) == 6 * UNITS
    assert ("reset_after=" in text.splitlines()[0]) is (shaped_for_reset_after != reset_after), text
    assert report.layer.reset_after is reset_after
    np.testing.assert_allclose(report.layer(x), y, rtol=FLOAT64, atol=FLOAT64)


def zero_candidate_recurrent_bias(weights):
    """A reset_after GRU's weights with b'_h = 0, the one case its biases may be summed."""
    k, r, b = weights
    b = b.copy()
    b[1, 2 * UNITS:] = 0.0
    return [k, r, b]


# reset_after taken for reset-before and back: name -> (the real layer's reset_after, its layer
# options, its weights from random ones (None: random), the bias given (from the layer's), words).
RESET_AFTER_CONFUSIONS = {
    "reset_before_given_two_rows": (False, {}, None, lambda b: np.stack([b, np.zeros_like(b)]),
                                    ["the GRU is reset_after=False"]),
    "reset_after_biases_summed_b_h_zero": (True, {}, zero_candidate_recurrent_bias, lambda b: b[0] + b[1],
                                           ["the GRU is reset_after=True", "b'_h, the candidate's, is zero"]),
    "reset_before_no_bias": (False, {"use_bias": False}, None, lambda: None, ["the GRU is reset_after=False"]),
}


@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=lambda v: f"keras{v}")
@pytest.mark.parametrize("name", RESET_AFTER_CONFUSIONS)
def test_reset_after_confused(keras_version, name):
    """A reset-before GRU read as reset_after, and a reset_after GRU read as reset-before, are found."""
    reset_after, options, weights, given, words = RESET_AFTER_CONFUSIONS[name]
    if weights is not None:
        weights = weights(random_cell_weights(np.random.default_rng(4), "GRU", INPUT_DIM, UNITS, "float64"))
    (k, r, *b), x, y = keras_case(keras_version, "GRU", reset_after=reset_after, weights=weights,
                                  return_sequences=True, **options)
    report = reflstm.diagnose(k, r, given(*b), x=x, expected=y)
    check(report, *words)
    assert report.layer.reset_after is reset_after
    np.testing.assert_allclose(report.layer(x), y, rtol=FLOAT64, atol=FLOAT64)


def torch_case(kind, direction, bias_form, dtype="float64"):
    """A PyTorch nn.LSTM / nn.GRU direction's arrays exactly as stored, a time-major x and torch's output."""
    torch = pytest.importorskip("torch", reason="torch is a test extra; install reflstm[test]")
    torch.manual_seed(0)
    m = getattr(torch.nn, kind)(INPUT_DIM, UNITS, bidirectional=True, dtype=getattr(torch, dtype))
    # (timesteps, batch, input_dim): time-major, as torch takes it
    x = np.random.default_rng(6).normal(size=(TIMESTEPS, BATCH, INPUT_DIM)).astype(dtype)
    with torch.no_grad():
        y = m(torch.from_numpy(x))[0].numpy()  # (timesteps, batch, 2 * units)
    y = y[..., UNITS:] if direction == "reverse" else y[..., :UNITS]
    suffix = "_reverse" if direction == "reverse" else ""
    sd = {name: value.numpy() for name, value in m.state_dict().items()}
    biases = [sd[f"bias_ih_l0{suffix}"], sd[f"bias_hh_l0{suffix}"]]
    bias = np.concatenate(biases) if bias_form == "concatenated" else biases
    return sd[f"weight_ih_l0{suffix}"], sd[f"weight_hh_l0{suffix}"], bias, x, y


TORCH_WORDS = {
    "GRU": ["PyTorch / cuDNN order r,z,n"],
    ("GRU", "concatenated"): ["two biases given flat (6*units,), PyTorch's bias_ih and bias_hh"],
    ("LSTM", "concatenated"): ["the bias is two halves (b_ih, b_hh)"],
    "reverse": ["backward (go_backwards / reverse)", "its output given in input order"],
}


@pytest.mark.parametrize("kind, direction, bias_form, dtype", [
    ("GRU", "forward", "concatenated", "float64"), ("GRU", "forward", "two", "float64"),
    ("GRU", "reverse", "concatenated", "float64"), ("GRU", "forward", "concatenated", "float32"),
    ("LSTM", "reverse", "concatenated", "float64"),
])
def test_pytorch_arrays_as_stored(kind, direction, bias_form, dtype):
    """PyTorch's arrays as stored: gate order, transposed, two biases, time-major, reversed time named."""
    kernel, recurrent_kernel, bias, x, y = torch_case(kind, direction, bias_form, dtype)
    report = reflstm.diagnose(kernel, recurrent_kernel, bias, x=x, expected=y)
    words = [word for key in (kind, (kind, bias_form), direction) for word in TORCH_WORDS.get(key, [])]
    found = check(report, f"Found ({kind})", "kernel is transposed", "recurrent kernel is transposed",
                  "input is time-major", "expected output is time-major", *words).splitlines()[0]
    assert ("bias" in found) is (bias_form == "concatenated"), found
    out = report.layer(x.transpose(1, 0, 2))  # (batch, timesteps, units), in processing order
    out = out[:, ::-1] if direction == "reverse" else out
    assert out.dtype == dtype
    np.testing.assert_allclose(out, y.transpose(1, 0, 2), rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


NOTHING_FITS = {  # name -> (kind, layer options, arrays given (from the layer's), shift of the output)
    "lstm_output_shifted": ("LSTM", {}, lambda k, r, b: (k, r, b), 0.3),
    "gru_output_shifted": ("GRU", {}, lambda k, r, b: (k, r, b), 0.3),
    "gru_reset_after_biases_summed": ("GRU", {}, lambda k, r, b: (k, r, b[0] + b[1]), 0.0),
}


@pytest.mark.parametrize("name", NOTHING_FITS)
def test_nothing_fits_is_said(name):
    """When no reading reproduces the output, the report says so and lists the closest."""
    kind, options, given, shift = NOTHING_FITS[name]
    weights, x, y = keras_case(3, kind, **options)
    report = reflstm.diagnose(*given(*weights), x=x, expected=y + shift)
    text = str(report)
    assert not report.fits
    assert "Nothing tried reproduces" in text and f"the closest ({kind})" in text and "Next best" in text
    summed = name == "gru_reset_after_biases_summed"
    assert ("cannot be summed into one row unless b'_h" in text) is summed, text


@pytest.mark.parametrize("kind, input_dim, units, swap", [("LSTM", 4, 3, False), ("GRU", 3, 4, True)])
def test_cell_read_from_shapes_and_data(kind, input_dim, units, swap):
    """An LSTM's (4, 12), (3, 12) are a GRU's (3, 12), (4, 12) swapped: x and expected say which."""
    (k, r, b), x, y = keras_case(3, kind, input_dim, units, **({"reset_after": False} if kind == "GRU" else {}))
    given = (r, k) if swap else (k, r)
    assert sorted(w.shape for w in given) == [(3, 12), (4, 12)]
    report = reflstm.diagnose(*given, b, x=x, expected=y)
    check(report, f"Found ({kind})", *(["swapped"] if swap else []))
    with pytest.raises(reflstm.ReflstmError, match="^kind: expected \"LSTM\" or \"GRU\""):
        reflstm.diagnose(*given, b, x=np.zeros((BATCH, TIMESTEPS, 5)), expected=y)


def test_kind_forces_the_cell():
    """kind= takes that cell only, and refuses one it does not know by name."""
    (k, r, b), x, y = keras_case(3, "GRU")
    assert reflstm.diagnose(k, r, b, x=x, expected=y, kind="GRU").fits
    with pytest.raises(reflstm.ReflstmError, match="4\\*units \\(LSTM\\), in some order"):
        reflstm.diagnose(k, r, b, x=x, expected=y, kind="LSTM")
    with pytest.raises(reflstm.ReflstmError, match="^kind: .*'SimpleRNN'"):
        reflstm.diagnose(k, r, b, x=x, expected=y, kind="SimpleRNN")


def test_unusable_shapes_are_refused():
    """Arrays no reading can make into an LSTM or a GRU, or a bias of neither's shape, are refused."""
    with pytest.raises(reflstm.ReflstmError, match="4\\*units \\(LSTM\\) or 3\\*units \\(GRU\\)"):
        reflstm.diagnose(np.zeros((3, 7)), np.zeros((5, 9)), x=np.zeros((1, 2, 3)), expected=np.zeros((1, 5)))
    with pytest.raises(reflstm.ReflstmError, match="^bias: expected one \\(3\\*units,\\) bias or two"):
        reflstm.diagnose(np.zeros((3, 15)), np.zeros((5, 15)), np.zeros(20), x=np.zeros((1, 2, 3)),
                         expected=np.zeros((1, 5)))


def test_command_line(tmp_path, capsys):
    """reflstm diagnose reads an .npz and prints the finding; exit 1 when nothing fits."""
    from reflstm import cli

    (k, r, b), x, y = keras_case()
    path = tmp_path / "arrays.npz"
    np.savez(path, kernel=reorder(k, KERAS, ONNX), recurrent_kernel=reorder(r, KERAS, ONNX),
             bias=reorder(b, KERAS, ONNX), x=x, expected=y)
    assert cli.main(["diagnose", str(path)]) == 0
    assert "ONNX order i,o,f,c" in capsys.readouterr().out
    np.savez(path, kernel=k, recurrent_kernel=r, x=x, expected=y + 1)
    assert cli.main(["diagnose", str(path)]) == 1
    np.savez(path, kernel=k)
    assert cli.main(["diagnose", str(path)]) == 2
    assert "without recurrent_kernel, x, expected" in capsys.readouterr().err


def test_command_line_gru(tmp_path, capsys):
    """reflstm diagnose on PyTorch GRU arrays finds the GRU; --kind LSTM refuses them in one line."""
    from reflstm import cli

    kernel, recurrent_kernel, bias, x, y = torch_case("GRU", "forward", "concatenated")
    path = tmp_path / "gru.npz"
    np.savez(path, kernel=kernel, recurrent_kernel=recurrent_kernel, bias=bias, x=x, expected=y)
    assert cli.main(["diagnose", str(path)]) == 0
    assert "Found (GRU)" in capsys.readouterr().out
    assert cli.main(["diagnose", str(path), "--kind", "LSTM"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reflstm diagnose: kernel, recurrent_kernel: expected") and err.count("\n") == 1
