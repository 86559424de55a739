"""Saved models, loaded by reflstm without TensorFlow, against Keras's own predictions."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import reflstm
from keras_layers import keras_module
from saved_models import MODELS, build_model, model_inputs

TOLERANCE = {"float32": 2e-6, "float64": 1e-12}
FORMATS = [(3, "keras"), (3, "h5"), (2, "h5"), (2, "keras")]
FORMAT_IDS = ["keras3-keras", "keras3-h5", "tf_keras-h5", "tf_keras-keras"]


def keras_predict(model, x):
    out = model.predict(x, verbose=0)
    return [np.asarray(o) for o in out] if isinstance(out, list) else [np.asarray(out)]


def keras_eager(model, x):
    out = model(x, training=False)
    return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else np.asarray(out)


def as_list(value):
    return list(value) if isinstance(value, list) else [value]


def assert_close(actual, expected, dtype):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape
        tol = TOLERANCE[dtype]
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol)


def save(model, tmp_path, keras_version, fmt):
    path = tmp_path / f"model.{fmt}"
    model.save(path)
    return path


def lstm_layer_outputs(keras_version, model, name, x):
    """What Keras's layer `name` outputs inside `model`, through an intermediate model."""
    k = keras_module(keras_version)
    layer = model.get_layer(name)
    return keras_predict(k.Model(model.inputs, layer.output), x)


@pytest.mark.parametrize("keras_version, fmt", FORMATS, ids=["keras3-keras", "keras3-h5", "tf_keras-h5", "tf_keras-keras"])
@pytest.mark.parametrize("name", list(MODELS))
def test_saved_model_matches_keras(name, keras_version, fmt, tmp_path):
    """predict, and every recurrent layer's outputs, equal Keras's, from the saved file."""
    if keras_version == 3 and fmt == "h5" and name not in ("lstm_stack", "bidirectional_concat", "gru_family"):
        pytest.skip("legacy .h5 from Keras 3: three models cover the format; the rest are in .keras")
    dtype = "float32"
    model = build_model(name, keras_version, dtype)
    x = model_inputs(model)
    ref = reflstm.load(save(model, tmp_path, keras_version, fmt))
    assert ref.keras_version == keras_version
    assert_close(as_list(ref.predict(x)), keras_predict(model, x), dtype)
    traces = ref.trace(x)
    assert set(traces) == set(ref.recurrent_layers)
    for layer_name, layer in ref.recurrent_layers.items():
        expected = lstm_layer_outputs(keras_version, model, layer_name, x)
        assert_close(layer.outputs_from_trace(traces[layer_name]), expected, dtype)


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("name", ["lstm_stack", "bidirectional_state", "embedding", "encoder_decoder",
                                  "gru_family", "gru_encoder_decoder"])
def test_float64_models_match_to_1e_12(name, keras_version, tmp_path):
    """Saved float64 models agree with Keras to ~1e-12: the same arithmetic, not just close."""
    model = build_model(name, keras_version, "float64")
    x = model_inputs(model)
    fmt = "keras" if keras_version == 3 else "h5"
    ref = reflstm.load(save(model, tmp_path, keras_version, fmt))
    # Compared with the model called eagerly: Keras's predict runs a TensorFlow graph whose
    # float64 results differ from its own eager ones by ~1e-8 (see the README).
    assert_close(as_list(ref.predict(x)), as_list(keras_eager(model, x)), "float64")


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("name", ["branches", "bidirectional_none", "embedding", "gru_bidirectional"])
def test_live_model_matches_keras(name, keras_version):
    """Model.from_keras on a live model gives Keras's predictions."""
    model = build_model(name, keras_version)
    x = model_inputs(model)
    assert_close(as_list(reflstm.Model.from_keras(model).predict(x)), keras_predict(model, x), "float32")


def test_bidirectional_trace_has_both_directions(tmp_path):
    """A Bidirectional layer traces as .forward and .backward, the backward in processing order."""
    model = build_model("bidirectional_none", 3)
    x = model_inputs(model)
    ref = reflstm.load(save(model, tmp_path, 3, "keras"))
    tr = ref.trace(x)["bi"]
    forward, backward = keras_predict(model, x)
    np.testing.assert_allclose(tr.forward.output, forward, atol=2e-6)
    np.testing.assert_allclose(tr.backward.output[:, ::-1], backward, atol=2e-6)


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
def test_gru_gates_in_a_saved_model_match_keras_cell(keras_version, tmp_path):
    """m.trace(x)["gru"].z, .r, .h_tilde are the GRU equations on Keras's own inputs, outputs, weights."""
    model = build_model("gru_family", keras_version)
    x = model_inputs(model)
    fmt = "keras" if keras_version == 3 else "h5"
    ref = reflstm.load(save(model, tmp_path, keras_version, fmt))
    tr = ref.trace(x)["gru"]
    assert isinstance(tr, reflstm.GRUTrace) and tr.z.shape == (len(x), x.shape[1], 5)
    # The GRU's input and output as Keras computes them, and its weights: its outputs give
    # h_{t-1} (a masked step repeats the previous output, which is the carried state here, as
    # the state starts at zeros), and the gates follow from keras/src/layers/rnn/gru.py.
    k = keras_module(keras_version)
    layer = model.get_layer("gru")
    masked, outputs = (np.asarray(k.Model(model.inputs[0], t)(x))
                       for t in (model.layers[1].output, layer.output))  # Masking, then the GRU
    kernel, recurrent_kernel, bias = layer.get_weights()
    h_prev = np.concatenate([np.zeros_like(outputs[:, :1]), outputs[:, :-1]], axis=1)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    u = 5
    x_part = masked @ kernel + bias[0]  # (batch, timesteps, 3 * units); row 0: the input bias
    inner = h_prev @ recurrent_kernel + bias[1]  # row 1: the recurrent bias
    z = sigmoid(x_part[..., :u] + inner[..., :u])
    r = sigmoid(x_part[..., u:2 * u] + inner[..., u:2 * u])
    h_tilde = np.tanh(x_part[..., 2 * u:] + r * inner[..., 2 * u:])
    for ours, theirs in ((tr.z, z), (tr.r, r), (tr.h_tilde, h_tilde), (tr.output, outputs)):
        np.testing.assert_allclose(ours, theirs, atol=2e-6)


def test_predict_in_blocks(tmp_path):
    """predict works block by block: the same as calling it per block, and as one pass to rounding."""
    model = build_model("lstm_stack", 3)
    x = np.concatenate([model_inputs(model, seed) for seed in range(40)])  # 160 samples
    ref = reflstm.load(save(model, tmp_path, 3, "keras"))
    blocks = np.concatenate([ref.predict(x[i : i + 64]) for i in range(0, len(x), 64)])
    np.testing.assert_array_equal(ref.predict(x), blocks)
    # BLAS rounds a product by how many rows it multiplies at once: the last bit may move.
    for size in (1, 7, len(x)):
        np.testing.assert_allclose(ref.predict(x, batch_size=size), blocks, rtol=1e-6, atol=1e-6)


def test_keras3_refuses_tf_keras_h5_that_reflstm_loads(tmp_path):
    """Keras 3's own loader refuses a tf_keras .h5 with an LSTM; reflstm loads it (README claim)."""
    model = build_model("sequential", 2)
    path = save(model, tmp_path, 2, "h5")
    with pytest.raises(Exception):
        keras_module(3).saving.load_model(path)
    x = model_inputs(model)
    assert_close(as_list(reflstm.load(path).predict(x)), keras_predict(model, x), "float32")


def test_loading_and_predicting_imports_no_framework(tmp_path):
    """reflstm.load and predict import none of tensorflow, keras, tf_keras, torch."""
    paths = []
    for keras_version, fmt in ((3, "keras"), (2, "h5")):
        model = build_model("branches", keras_version)
        path = tmp_path / f"m{keras_version}.{fmt}"
        model.save(path)
        np.save(tmp_path / "x.npy", model_inputs(model))
        paths.append(str(path))
    code = (
        "import sys, numpy as np, reflstm\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"for p in {paths!r}: reflstm.load(p).predict(x); reflstm.load(p).trace(x)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'tensorflow', 'keras', 'tf_keras', 'torch', 'onnx'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# --- files that are broken or hostile --------------------------------------------------------


def test_missing_file(tmp_path):
    """A path that does not exist is named in the error."""
    with pytest.raises(reflstm.ReflstmError, match="does not exist"):
        reflstm.load(tmp_path / "nope.keras")


def test_saved_model_folder_is_named_with_what_to_do(tmp_path):
    """A TensorFlow SavedModel (tf_keras's save_format="tf") is told apart from a missing file."""
    k = keras_module(2)
    model = k.Sequential([k.layers.Input((5, 3)), k.layers.LSTM(4)])
    model.save(tmp_path / "exported", save_format="tf")
    for path in (tmp_path / "exported", tmp_path / "exported" / "saved_model.pb"):
        with pytest.raises(reflstm.ReflstmError, match="a TensorFlow SavedModel folder.*save.*model.keras.*from_keras"):
            reflstm.load(path)


def test_not_a_model_file(tmp_path):
    """A file that is neither a zip archive nor HDF5 is refused."""
    path = tmp_path / "notes.keras"
    path.write_text("hello")
    with pytest.raises(reflstm.ReflstmError, match="neither"):
        reflstm.load(path)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_truncated_file(fmt, tmp_path):
    """A file cut short is reported as truncated or corrupted."""
    model = build_model("sequential", 3 if fmt == "keras" else 2)
    path = save(model, tmp_path, 3 if fmt == "keras" else 2, fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(reflstm.ReflstmError, match="truncated or corrupted"):
        reflstm.load(path)


def test_hdf5_without_model_config(tmp_path):
    """An HDF5 file with weights only (a wrong tree for a model) is refused."""
    model = build_model("sequential", 2)
    path = tmp_path / "only.weights.h5"
    model.save_weights(path)
    with pytest.raises(reflstm.ReflstmError, match="model_config"):
        reflstm.load(path)


def test_lambda_layer_is_refused_not_run(tmp_path):
    """A Lambda layer loads but is never run: predict is refused by its name (tests/test_partial_models.py)."""
    k = keras_module(3)
    model = k.Sequential([k.Input((4, 2)), k.layers.LSTM(3, return_sequences=True),
                          k.layers.Lambda(lambda t: t * 2)])
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(reflstm.ReflstmError, match="Lambda: its Python code is never run"):
        reflstm.load(path).predict(np.ones((1, 4, 2), "float32"))


def test_custom_class_is_refused(tmp_path):
    """A layer of a custom registered class is never run, even if it says it is an LSTM."""
    model = build_model("sequential", 3)
    path = tmp_path / "model.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    config = json.loads(members["config.json"])
    config["config"]["layers"][2]["module"] = "my_package.layers"
    config["config"]["layers"][2]["registered_name"] = "my_package>LSTM"
    members["config.json"] = json.dumps(config).encode()
    hostile = tmp_path / "hostile.keras"
    with zipfile.ZipFile(hostile, "w") as archive:
        for n, data in members.items():
            archive.writestr(n, data)
    with pytest.raises(reflstm.ReflstmError, match="custom class"):
        reflstm.load(hostile).predict(model_inputs(model))


def test_unsupported_layer_is_named(tmp_path):
    """A layer reflstm does not model is refused at predict with its name and class."""
    k = keras_module(3)
    model = k.Sequential([k.Input((4, 2)), k.layers.SeparableConv1D(3, 2, name="convolution")])
    path = tmp_path / "conv.keras"
    model.save(path)
    with pytest.raises(reflstm.ReflstmError, match="'convolution' \\(SeparableConv1D"):
        reflstm.load(path).predict(np.ones((1, 4, 2), "float32"))


@pytest.mark.parametrize("keras_version, extension", FORMATS, ids=FORMAT_IDS)
def test_a_call_in_training_mode_is_refused(tmp_path, keras_version, extension):
    """A layer called with training=True (Monte Carlo dropout) is refused by name, not run as
    the identity; training=False loads."""
    k = keras_module(keras_version)
    inp = k.Input((5, 3))
    x = k.layers.LSTM(4, return_sequences=True, name="lstm")(inp, training=False)
    y = k.layers.Dropout(0.5, name="mc_dropout")(x, training=True)
    model = k.Model(inp, y)
    path = tmp_path / f"mc.{extension}"
    model.save(path)
    with pytest.raises(reflstm.ReflstmError, match="'mc_dropout'.*call argument 'training'.*received True"):
        reflstm.load(path)
    k.Model(inp, x).save(tmp_path / f"eval.{extension}")
    assert list(reflstm.load(tmp_path / f"eval.{extension}").recurrent_layers) == ["lstm"]


def test_wrong_input_shape_is_refused(tmp_path):
    """Input of the wrong shape for the saved model is refused, naming the input."""
    model = build_model("sequential", 3)
    ref = reflstm.load(save(model, tmp_path, 3, "keras"))
    with pytest.raises(reflstm.ReflstmError, match="input"):
        ref.predict(np.zeros((2, 6, 5), "float32"))


def test_gru_weights_are_checked_against_the_config(tmp_path):
    """A GRU bias of the other reset_after mode is refused by the shape its config predicts."""
    model = build_model("gru_family", 3)
    config = {"class_name": "Functional", "config": model.get_config()}
    weights = {layer.name: layer.get_weights() for layer in model.layers}
    kernel, recurrent_kernel, bias = weights["gru"]
    weights["gru"] = [kernel, recurrent_kernel, bias[0]]  # (15,): a reset_after=False bias
    with pytest.raises(reflstm.ReflstmError, match=r"'gru'.*shape \(2, 15\).*reset_after=True"):
        reflstm.Model(config, weights, 3)


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
def test_unrolled_masked_bidirectional_from_a_file(keras_version, tmp_path):
    """unroll changes masked outputs (unrolled TensorFlow zeroes a go_backwards sequence with the
    mask in input order): the config's unroll is read."""
    k = keras_module(keras_version)
    inp = k.Input((6, 3))
    y = k.layers.Bidirectional(k.layers.LSTM(3, return_sequences=True, unroll=True), name="bi")(
        k.layers.Masking()(inp))
    model = k.Model(inp, y)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    x = model_inputs(model)
    fmt = "keras" if keras_version == 3 else "h5"
    assert_close(as_list(reflstm.load(save(model, tmp_path, keras_version, fmt)).predict(x)),
                 keras_predict(model, x), "float32")
