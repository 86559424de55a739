"""Models holding layers reflstm does not run (a Lambda, PReLU, GaussianNoise, a custom class):
they load, running them is refused by the layer's name, and their recurrent layers trace alone.

Every number compared is Keras's own: its intermediate models' outputs, its layers' weights,
parameter counts and output shapes.
"""

import json
import sys
import zipfile

import numpy as np
import pytest

import reflstm
from reflstm import cli
from reflstm.models.layers import Bidirectional
from reflstm.models.not_run import NotRun
from keras_layers import TOLERANCE, keras_module
from saved_models import build_model, model_inputs

import hostile_files as H
from sandbox import Sandbox

ORIGINS = {"keras3-keras": (3, "keras"), "keras3-h5": (3, "h5"), "tf_keras-keras": (2, "keras"),
           "tf_keras-h5": (2, "h5")}
NOT_RUN = {"lambda_before_lstm": {"scale": "Lambda"}, "unknown_layers": {"prelu": "PReLU", "noise": "GaussianNoise"}}
# The layer whose output reaches the LSTM, in each model.
BEFORE_LSTM = {"lambda_before_lstm": "scale", "unknown_layers": "prelu"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """saved(name, origin, dtype): (Keras model, its file, input x), built and saved once."""
    root, cache = tmp_path_factory.mktemp("partial"), {}

    def get(name, origin, dtype="float32"):
        if (name, origin, dtype) not in cache:
            keras_version, fmt = ORIGINS[origin]
            model = build_model(name, keras_version, dtype)
            path = root / f"{name}-{origin}-{dtype}.{fmt}"
            model.save(path)
            cache[(name, origin, dtype)] = model, path, model_inputs(model)
        return cache[(name, origin, dtype)]

    return get


def intermediate(model, keras_version, name, x):
    """What layer `name` outputs inside the Keras model: keras.Model(inputs, layer.output).predict(x)."""
    k = keras_module(keras_version)
    return np.asarray(k.Model(model.inputs, model.get_layer(name).output).predict(x, verbose=0))


def largest_difference(actual, expected):
    return float(np.max(np.abs(actual - expected) / np.maximum(1.0, np.abs(expected))))


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("origin", list(ORIGINS))
@pytest.mark.parametrize("name", list(NOT_RUN))
def test_model_with_layers_not_run_loads_and_names_them(saved, name, origin):
    """The file loads; `not_run` names each layer reflstm keeps but does not run, with its class."""
    model, path, _ = saved(name, origin)
    ref = reflstm.load(path)
    assert {n: why.split(":")[0] for n, why in ref.not_run.items()} == NOT_RUN[name]
    assert set(ref.recurrent_layers) == ({"lstm", "bi"} if name == "lambda_before_lstm" else {"lstm"})


@pytest.mark.parametrize("origin", list(ORIGINS))
def test_unknown_layers_keep_their_weights_as_saved(saved, origin):
    """A PReLU reflstm does not run keeps its alpha exactly as Keras holds it, read-only."""
    model, path, _ = saved("unknown_layers", origin)
    prelu = reflstm.load(path).layer("prelu")
    (alpha,) = model.get_layer("prelu").get_weights()
    assert isinstance(prelu, NotRun) and prelu.kind == "PReLU" and len(prelu.weights) == 1
    np.testing.assert_array_equal(prelu.weights[0], alpha)
    assert not prelu.weights[0].flags.writeable and np.unique(alpha).size == alpha.size


@pytest.mark.parametrize("name", list(NOT_RUN))
def test_running_the_model_is_refused_naming_the_layers_first(saved, name):
    """predict, trace and backward refuse by the layers' names, before looking at the input."""
    _, path, _ = saved(name, "keras3-keras")
    ref = reflstm.load(path)
    wrong = np.zeros((2, 9, 7), "float32")  # of no shape the model takes: refused for the layers first
    for run in (ref.predict, ref.trace, lambda x: ref.backward(x, np.ones((2, 6, 2)))):
        with pytest.raises(reflstm.ReflstmError) as refused:
            run(wrong)
        message = str(refused.value)
        assert all(f"layer {n!r} ({kind}" in message for n, kind in NOT_RUN[name].items()), message


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("origin", list(ORIGINS))
@pytest.mark.parametrize("name", list(NOT_RUN))
def test_lstm_traced_alone_equals_keras(saved, name, origin, dtype, record_property):
    """Model.layer("lstm") traced on Keras's intermediate output gives Keras's LSTM output."""
    if dtype == "float64" and origin not in ("keras3-keras", "tf_keras-h5"):
        pytest.skip("float64: one file format per Keras covers the dtype")
    model, path, x = saved(name, origin, dtype)
    keras_version = ORIGINS[origin][0]
    lstm = reflstm.load(path).layer("lstm")
    assert isinstance(lstm, reflstm.LSTM) and lstm.dtype == np.dtype(dtype)
    h_in = intermediate(model, keras_version, BEFORE_LSTM[name], x)
    expected = intermediate(model, keras_version, "lstm", x)
    trace = lstm.trace(h_in)
    record_property("largest_difference", largest_difference(trace.h, expected))
    np.testing.assert_allclose(trace.h, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


@pytest.mark.parametrize("origin", ["keras3-keras", "tf_keras-h5"])
def test_bidirectional_alone_equals_keras(saved, origin):
    """Model.layer("bi") is the Bidirectional, called on Keras's LSTM output as Keras's "bi" is."""
    model, path, x = saved("lambda_before_lstm", origin, "float64")
    keras_version = ORIGINS[origin][0]
    bi = reflstm.load(path).layer("bi")
    assert isinstance(bi, Bidirectional) and isinstance(bi.forward, reflstm.GRU)
    (y,), _ = bi([intermediate(model, keras_version, "lstm", x)], [None])
    np.testing.assert_allclose(y, intermediate(model, keras_version, "bi", x), rtol=1e-12, atol=1e-12)


def test_layer_of_an_unknown_name_is_refused_listing_names(saved):
    """Model.layer("nope") is refused, naming the layers there are."""
    _, path, _ = saved("lambda_before_lstm", "keras3-keras")
    with pytest.raises(reflstm.ReflstmError, match="name: expected one of the model's layers.*'lstm'.*'nope'"):
        reflstm.load(path).layer("nope")


@pytest.mark.parametrize("origin", ["keras3-keras", "tf_keras-h5"])
@pytest.mark.parametrize("name", list(NOT_RUN))
def test_cli_trace_layer_input_equals_keras(saved, name, origin, capsys, tmp_path):
    """reflstm trace --layer lstm --layer-input H.npy writes a trace whose h is Keras's LSTM output."""
    model, path, x = saved(name, origin)
    keras_version = ORIGINS[origin][0]
    h_in = tmp_path / "h.npy"
    np.save(h_in, intermediate(model, keras_version, BEFORE_LSTM[name], x))
    out = tmp_path / "trace.npz"
    code, printed, err = run_cli(capsys, "trace", path, "--layer", "lstm", "--layer-input", h_in, "--out", out)
    assert code == 0, err
    saved_trace = np.load(out)
    assert sorted(saved_trace) == [f"lstm/{q}" for q in sorted(("i", "f", "c_tilde", "o", "c", "h"))]
    np.testing.assert_allclose(saved_trace["lstm/h"], intermediate(model, keras_version, "lstm", x),
                               rtol=TOLERANCE["float32"], atol=TOLERANCE["float32"])


def test_cli_trace_layer_input_errors_write_nothing(saved, capsys, tmp_path):
    """--layer-input without --layer, of the wrong width, or with --input: one line, exit 2, no file."""
    model, path, x = saved("lambda_before_lstm", "keras3-keras")
    wide, h_in = tmp_path / "wide.npy", tmp_path / "h.npy"
    np.save(wide, np.zeros((2, 6, 4), "float32"))
    np.save(h_in, np.zeros((2, 6, 3), "float32"))
    out = tmp_path / "trace.npz"
    cases = [
        (["--layer-input", h_in], "--layer: expected the recurrent layer"),
        (["--layer", "lstm", "--layer-input", wide], "--layer-input: expected an array of numbers (batch, timesteps, 3)"),
        (["--layer", "head", "--layer-input", h_in], "--layer: expected one of the recurrent layers"),
    ]
    for extra, words in cases:
        code, _, err = run_cli(capsys, "trace", path, "--out", out, *extra)
        assert code == 2 and words in err and err.count("\n") == 1 and not out.exists(), err
    with pytest.raises(SystemExit) as usage:  # argparse: --input and --layer-input exclude each other
        run_cli(capsys, "trace", path, "--out", out, "--layer", "lstm", "--layer-input", h_in, "--input", h_in)
    _, err = capsys.readouterr()
    assert usage.value.code == 2 and "not allowed with argument" in err and not out.exists()


def test_cli_trace_layer_input_refuses_a_layer_given_initial_states(capsys, tmp_path):
    """A layer the model starts from another layer's states is not traced alone from zeros."""
    path = tmp_path / "encoder_decoder.keras"
    build_model("encoder_decoder", 3).save(path)
    h_in = tmp_path / "h.npy"
    np.save(h_in, np.zeros((2, 4, 2), "float32"))
    code, _, err = run_cli(capsys, "trace", path, "--layer", "decoder", "--layer-input", h_in,
                           "--out", tmp_path / "t.npz")
    assert code == 2 and "with initial states" in err and not (tmp_path / "t.npz").exists()


@pytest.mark.parametrize("origin", ["keras3-keras", "tf_keras-h5"])
def test_cli_inspect_marks_layers_not_run(saved, origin, capsys):
    """inspect lists every layer, those reflstm does not run marked with why, and the summary."""
    _, path, _ = saved("unknown_layers", origin)
    code, out, err = run_cli(capsys, "inspect", path)
    assert code == 0, err
    assert "layer 'prelu': PReLU (not run: a layer reflstm does not compute)" in out
    assert "prelu (PReLU) [not run]" in out and "noise (GaussianNoise) [not run]" in out
    assert "LSTM 'lstm'" in out and "Total params: " in out


def keras_rows(model, keras_version):
    """(name, output shape, parameter count) of each layer, from the live Keras model."""
    rows = []
    for layer in model.layers:
        if keras_version == 3:
            output = layer.output
            shape = [tuple(t.shape) for t in output] if isinstance(output, (list, tuple)) else tuple(output.shape)
        else:
            shape = layer.output_shape
            shape = shape[0] if layer.__class__.__name__ == "InputLayer" else shape  # [(None, 6, 3)]
            shape = [tuple(s) for s in shape] if isinstance(shape, list) else tuple(shape)
        rows.append((layer.name, shape, layer.count_params()))
    return rows


SUMMARY_MODELS = ["lambda_before_lstm", "unknown_layers", "lstm_stack", "bidirectional_state",
                  "encoder_decoder", "embedding", "repeat_flatten", "gru_encoder_decoder", "conv_lstm",
                  "causal_pooling", "masked_pooling", "shape_stack"]


@pytest.mark.parametrize("origin", list(ORIGINS))
@pytest.mark.parametrize("name", SUMMARY_MODELS)
def test_summary_matches_keras(saved, name, origin):
    """summary's layers, output shapes and parameter counts are Keras's own, as is the total."""
    if name not in NOT_RUN and origin in ("keras3-h5", "tf_keras-keras"):
        pytest.skip("models reflstm runs: their shapes come from running them, whatever the format")
    model, path, _ = saved(name, origin)
    ref = reflstm.load(path)
    rows = ref.summary_rows()
    expected = keras_rows(model, ORIGINS[origin][0])
    assert [row[0] for row in rows] == [row[0] for row in expected]
    assert [row[3] for row in rows] == [row[2] for row in expected]
    known = [(row[0], row[2]) for row in rows if row[2] != "?"]
    assert known == [(n, s) for n, s, _ in expected if n in dict(known)]
    # Past a layer not run, shapes come from what Keras recorded: Keras 3's .keras records every
    # call's tensors, tf_keras's .keras a Sequential's build_config, and the others no shape.
    if name not in NOT_RUN or origin == "keras3-keras" or (origin, name) == ("tf_keras-keras", "unknown_layers"):
        assert len(known) == len(rows)
    assert f"Total params: {model.count_params():,}" in ref.summary()


# ---- files reflstm does not trust ------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_unknown(tmp_path_factory):
    """The unknown_layers model saved as each origin the hostile helpers write (tests/hostile_files.py)."""
    root = tmp_path_factory.mktemp("hostile-partial")
    return {origin: H.save_clean("unknown_layers", origin, root) for origin in H.ORIGINS}


ODD_WEIGHTS = {
    "int64": np.arange(24).reshape(6, 4),
    "bool": np.ones((6, 4), bool),
    "float16": np.ones((6, 4), "f2"),
    "big_endian": np.ones((6, 4), ">f8"),
    "complex": np.ones((6, 4), "c8"),
    "strings": np.array([b"a", b"bc"]),
    "compound": np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")]),
    "scalar": np.float32(3.0),
    "empty": np.zeros((0, 7), "f4"),
    "rank_9": np.ones((1,) * 8 + (2,), "f4"),
    "wide": np.ones((3, 100_000), "f4"),
}


@pytest.mark.parametrize("origin", list(H.ORIGINS))
def test_odd_weights_of_a_layer_not_run_load_or_are_refused(clean_unknown, origin, tmp_path):
    """An unknown layer's weights of any shape or dtype, huge declared sizes, links outside the
    file, many arrays: loading gives a model or a ReflstmError, never another outcome."""
    clean = clean_unknown[origin]
    dest = tmp_path / f"odd.{H.ORIGINS[origin][1]}"
    secrets = H.Secrets(tmp_path / "secrets")
    mutants = {key: (lambda key=key: H.with_weight(clean, dest, "prelu", 0, ODD_WEIGHTS[key])) for key in ODD_WEIGHTS}
    mutants.update({
        "huge_declared": lambda: H.huge_declared_dataset(clean, dest, "prelu"),
        "external_storage": lambda: H.external_storage(clean, dest, secrets, "prelu"),
        "external_link": lambda: H.external_link(clean, dest, secrets, "prelu"),
        "virtual": lambda: H.virtual_dataset(clean, dest, secrets, "prelu"),
        "a_group": lambda: H.weight_is_group(clean, dest, "prelu"),
        "weights_on_noise": lambda: H.extra_weight_on_weightless_layer(clean, dest, "noise"),
    })
    outcomes = {}
    with Sandbox() as sandbox:
        for key, make in mutants.items():
            make()
            result = sandbox.load(dest, limits=dict(max_weight_bytes=50_000_000), inputs=clean.inputs, timeout=20)
            outcomes[key] = result.kind
            assert result.kind in ("refused", "refused_at_predict"), (key, str(result))
            if result.kind == "refused_at_predict":
                assert "'prelu'" in result.message, (key, result.message)
            dest.unlink()
    for outside in ("external_storage", "external_link", "virtual", "huge_declared", "complex", "strings", "compound"):
        assert outcomes[outside] == "refused", (outside, outcomes)


def test_custom_class_loads_without_importing_it(saved, tmp_path):
    """A layer of a custom class (its own module) loads as not run; its module is never imported."""
    _, path, x = saved("unknown_layers", "keras3-keras")
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    config = json.loads(members["config.json"])
    entry = next(e for e in config["config"]["layers"] if e["config"]["name"] == "lstm")
    entry["module"], entry["registered_name"] = "reflstm_never_imported.layers", "reflstm_never_imported>LSTM"
    members["config.json"] = json.dumps(config).encode()
    custom = tmp_path / "custom.keras"
    with zipfile.ZipFile(custom, "w") as archive:
        for n, data in members.items():
            archive.writestr(n, data)
    ref = reflstm.load(custom)
    assert "reflstm_never_imported" not in " ".join(sys.modules)
    assert "custom class from module 'reflstm_never_imported.layers'" in ref.not_run["lstm"]
    with pytest.raises(reflstm.ReflstmError, match="layer 'lstm' \\(LSTM: .*custom class"):
        ref.predict(x)


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
def test_live_model_with_a_lambda_loads_from_keras(keras_version):
    """Model.from_keras takes a live model holding a Lambda as a file's: the Lambda kept, not run."""
    model = build_model("lambda_before_lstm", keras_version)
    ref = reflstm.Model.from_keras(model)
    assert list(ref.not_run) == ["scale"]
    x = model_inputs(model)
    np.testing.assert_allclose(ref.layer("lstm")(intermediate(model, keras_version, "scale", x)),
                               intermediate(model, keras_version, "lstm", x),
                               rtol=TOLERANCE["float32"], atol=TOLERANCE["float32"])
