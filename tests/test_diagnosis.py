"""diagnose: broken extractions of real Keras and PyTorch LSTMs, and the fix it finds."""

import numpy as np
import pytest

import reflstm
from keras_layers import call_keras, make_layer
from reflstm.frameworks.layouts import KERAS, ONNX, TF1, reorder

BATCH, TIMESTEPS, INPUT_DIM, UNITS = 4, 7, 3, 5


def keras_case(**options):
    """A float64 Keras 3 layer, its correct arrays, an input and Keras's output for it."""
    layer = make_layer(options.pop("keras_version", 3), INPUT_DIM, UNITS, "float64", seed=4, **options)
    x = np.random.default_rng(5).normal(0, 1.5, (BATCH, TIMESTEPS, INPUT_DIM))
    return layer.get_weights(), x, call_keras(layer, x)


def check(report, *words):
    """The report fits, names each mistake, and its LSTM reproduces the expected output."""
    assert report.fits, str(report)
    text = str(report)
    for word in words:
        assert word in text, text
    return text


def test_correct_arrays_are_reported_right():
    """Arrays extracted correctly: 'the arrays are right as given'."""
    (k, r, b), x, y = keras_case(return_sequences=True)
    report = reflstm.diagnose(k, r, b, x=x, expected=y)
    check(report, "the arrays are right as given")
    np.testing.assert_allclose(report.layer(x), y, rtol=1e-12, atol=1e-12)


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
    (k, r), x, y = keras_case(use_bias=False, recurrent_activation="hard_sigmoid", keras_version=2)
    report = reflstm.diagnose(k, r, np.ones(4 * UNITS), x=x, expected=y)
    check(report, "no bias", "Keras 2 defines it")


def test_backward_weights_and_time_major():
    """A go_backwards layer's weights, with a time-major input and output in processing order."""
    (k, r, b), x, y = keras_case(go_backwards=True, return_sequences=True)
    report = reflstm.diagnose(k, r, b, x=x.transpose(1, 0, 2), expected=y)
    check(report, "backward", "input is time-major")


def test_pytorch_reverse_direction_as_is():
    """PyTorch's reverse-direction arrays as stored: transposed, two biases, output in input order."""
    torch = pytest.importorskip("torch", reason="torch is a test extra; install reflstm[test]")
    torch.manual_seed(0)
    m = torch.nn.LSTM(INPUT_DIM, UNITS, bidirectional=True, dtype=torch.float64)
    x = np.random.default_rng(6).normal(size=(TIMESTEPS, BATCH, INPUT_DIM))
    with torch.no_grad():
        y = m(torch.from_numpy(x))[0].numpy()[..., UNITS:]  # the reverse direction, time-major
    sd = {k: v.numpy() for k, v in m.state_dict().items()}
    bias = np.concatenate([sd["bias_ih_l0_reverse"], sd["bias_hh_l0_reverse"]])
    report = reflstm.diagnose(sd["weight_ih_l0_reverse"], sd["weight_hh_l0_reverse"], bias,
                              x=x, expected=y)
    check(report, "kernel is transposed", "recurrent kernel is transposed", "two halves",
          "backward", "input order", "input is time-major", "expected output is time-major")


def test_nothing_fits_is_said():
    """When no reading reproduces the output, the report says so and lists the closest."""
    (k, r, b), x, y = keras_case()
    report = reflstm.diagnose(k, r, b, x=x, expected=y + 0.3)
    assert not report.fits
    assert "Nothing tried reproduces" in str(report) and "Next best" in str(report)


def test_unusable_shapes_are_refused():
    """Arrays no reading can make into an LSTM are refused."""
    with pytest.raises(reflstm.ReflstmError, match="4\\*units"):
        reflstm.diagnose(np.zeros((3, 7)), np.zeros((5, 9)), x=np.zeros((1, 2, 3)), expected=np.zeros((1, 5)))


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
