"""Weights-only files (save_weights) loaded with the model's JSON (to_json), against Keras."""

import json
import subprocess
import sys

import numpy as np
import pytest

import reflstm
from keras_layers import keras_module
from saved_models import build_model, model_inputs

TOLERANCE = 2e-6
# tf_keras's save_weights writes a legacy .h5; Keras 3's writes its own .weights.h5 layout.
SUFFIX = {2: "h5", 3: "weights.h5"}


def saved(model, keras_version, tmp_path):
    weights = tmp_path / f"model.{SUFFIX[keras_version]}"
    model.save_weights(weights)
    architecture = tmp_path / "model.json"
    architecture.write_text(model.to_json())
    return weights, architecture


def expected(model, x):
    out = model.predict(x, verbose=0)
    return out if isinstance(out, list) else [out]


def assert_close(actual, wanted):
    actual = actual if isinstance(actual, list) else [actual]
    assert len(actual) == len(wanted)
    for a, e in zip(actual, wanted):
        np.testing.assert_allclose(a, e, rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("name", ["lstm_stack", "gru_bidirectional", "embedding", "encoder_decoder"])
def test_weights_with_architecture_predict_as_keras(name, keras_version, tmp_path):
    model = build_model(name, keras_version)
    weights, architecture = saved(model, keras_version, tmp_path)
    x = model_inputs(model)
    for given in (architecture, architecture.read_text(), json.loads(architecture.read_text())):
        ref = reflstm.load(weights, architecture=given)
        assert ref.keras_version == keras_version
        assert_close(ref.predict(x), expected(model, x))


def test_old_defaults_come_from_the_architecture(tmp_path):
    """A model trained under Keras 2.2's defaults (hard_sigmoid) keeps them through its JSON; the
    same weights under today's defaults compute something else, which is why the JSON matters."""
    k = keras_module(2)
    model = k.Sequential([k.Input((6, 3)), k.layers.LSTM(4, recurrent_activation="hard_sigmoid"),
                          k.layers.Dense(2)])
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.8, w.shape).astype("float32") for w in model.get_weights()])
    weights, architecture = saved(model, 2, tmp_path)
    x = rng.normal(size=(4, 6, 3)).astype("float32")
    assert_close(reflstm.load(weights, architecture=architecture).predict(x), expected(model, x))
    today = json.loads(architecture.read_text())
    today["config"]["layers"][1]["config"]["recurrent_activation"] = "sigmoid"
    assert not np.allclose(reflstm.load(weights, architecture=today).predict(x), expected(model, x), atol=1e-3)


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
def test_a_layer_without_weights_in_the_file_is_named(keras_version, tmp_path):
    model = build_model("lstm_stack", keras_version)
    weights, architecture = saved(model, keras_version, tmp_path)
    config = json.loads(architecture.read_text())
    layer = next(e for e in config["config"]["layers"] if e["config"].get("name") == "second")
    layer["config"]["name"] = "renamed"
    if keras_version == 2:
        with pytest.raises(reflstm.ReflstmError, match="layer 'renamed'.*matched by name.*no group"):
            reflstm.load(weights, architecture=config)
    else:  # Keras 3's groups name their layers; the file's layer 'second' is not in the JSON
        with pytest.raises(reflstm.ReflstmError, match="layer 'renamed'.*weight arrays"):
            reflstm.load(weights, architecture=config)


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
def test_weights_of_another_shape_are_refused(keras_version, tmp_path):
    model = build_model("lstm_stack", keras_version)
    weights, architecture = saved(model, keras_version, tmp_path)
    config = json.loads(architecture.read_text())
    layer = next(e for e in config["config"]["layers"] if e["config"].get("name") == "second")
    layer["config"]["units"] = 7
    with pytest.raises(reflstm.ReflstmError, match="layer 'second'.*shape.*units=7"):
        reflstm.load(weights, architecture=config)


def test_architecture_must_be_a_model_json(tmp_path):
    model = build_model("lstm_stack", 2)
    weights, _ = saved(model, 2, tmp_path)
    for bad, message in [("[1, 2]", "model's JSON object"), ("{not json", "JSON text"),
                         (tmp_path / "missing.json", "does not exist"), (42, "model's JSON")]:
        with pytest.raises(reflstm.ReflstmError, match=message):
            reflstm.load(weights, architecture=bad)
    with pytest.raises(reflstm.ReflstmError, match="weights only\\? pass the model's JSON as architecture="):
        reflstm.load(weights)


def test_cli_reads_weights_with_architecture(tmp_path):
    model = build_model("lstm_stack", 2)
    weights, architecture = saved(model, 2, tmp_path)
    x = model_inputs(model)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "trace.npz"
    run = subprocess.run([sys.executable, "-m", "reflstm", "trace", str(weights), "--architecture",
                          str(architecture), "--input", str(tmp_path / "x.npy"), "--out", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    with np.load(out) as trace:
        assert_close([trace["second/h"][:, -1]], [model.get_layer("second")(
            keras_module(2).Model(model.inputs, model.get_layer("second").input)(x)).numpy()[:, -1]])
